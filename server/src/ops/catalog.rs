//! Products, search and stock, on the SKU's shard.

use rayltics_commerce::{DomainError, DomainResult};

use super::{Op, OpReply};
use crate::service::ShardState;

pub(super) async fn execute(state: &ShardState, op: Op) -> DomainResult<OpReply> {
    let store = &state.store;
    match op {
        Op::CreateProduct { product, stock } => {
            let changes = store.read().plan_create_product(product, stock)?;
            let sku = match &changes[0] {
                rayltics_commerce::Change::ProductPut(p) => p.sku.clone(),
                _ => String::new(),
            };
            store.commit(changes).await?;
            product_reply(state, &sku)
        }
        Op::GetProduct { sku } => product_reply(state, &sku),
        Op::UpdateProduct { sku, patch } => {
            let now = state.shared.clock.now_ms();
            let (changes, _) = store.read().plan_update_product(&sku, patch, now)?;
            store.commit(changes).await?;
            product_reply(state, &sku)
        }
        Op::DeleteProduct { sku } => {
            let changes = store.read().plan_delete_product(&sku)?;
            store.commit(changes).await?;
            Ok(OpReply::Done)
        }
        Op::Search { query } => {
            let (page, products) = store.read().search(&query);
            Ok(OpReply::Search(page, products))
        }
        Op::GetStock { sku } => {
            let data = store.read();
            data.product(&sku)
                .map(|(_, s)| OpReply::Stock(s))
                .ok_or(DomainError::NotFound("product"))
        }
        Op::AdjustStock { sku, delta } => {
            let (changes, stock) = store.read().plan_adjust(&sku, delta)?;
            store.commit(changes).await?;
            Ok(OpReply::Stock(stock))
        }
        other => Err(super::unexpected_op(other)),
    }
}

fn product_reply(state: &ShardState, sku: &str) -> DomainResult<OpReply> {
    let data = state.store.read();
    let (p, s) = data.product(sku).ok_or(DomainError::NotFound("product"))?;
    Ok(OpReply::Product(p.clone(), s))
}
