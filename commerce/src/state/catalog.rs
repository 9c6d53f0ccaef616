//! Products and their search (the SKU's shard).

use crate::change::Change;
use crate::clock::Millis;
use crate::error::{DomainError, DomainResult};
use crate::model::{ProductRec, Stock};
use crate::search::{Query, SearchPage};

use super::ShardData;

/// A partial product update; `None` keeps the field.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProductPatch {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New price.
    pub price_cents: Option<i64>,
    /// New currency.
    pub currency: Option<String>,
    /// New category.
    pub category: Option<String>,
    /// New attributes (compact JSON object text).
    pub attributes_json: Option<String>,
}

impl ShardData {
    /// A product and its stock.
    pub fn product(&self, sku: &str) -> Option<(&ProductRec, Stock)> {
        let p = self.d.products.get(sku)?;
        Some((p, self.stock_of(sku)))
    }

    /// Stock of a SKU (zero when it never had any).
    pub fn stock_of(&self, sku: &str) -> Stock {
        self.d.stock.get(sku).copied().unwrap_or_default()
    }

    /// Creates a product with `stock` units on hand.
    pub fn plan_create_product(&self, p: ProductRec, stock: i64) -> DomainResult<Vec<Change>> {
        if self.d.products.contains_key(&p.sku) {
            return Err(DomainError::SkuTaken);
        }
        let sku = p.sku.clone();
        Ok(vec![
            Change::ProductPut(p),
            Change::StockSet {
                sku,
                on_hand: stock,
            },
        ])
    }

    /// Applies `patch` to an existing product.
    pub fn plan_update_product(
        &self,
        sku: &str,
        patch: ProductPatch,
        now: Millis,
    ) -> DomainResult<(Vec<Change>, ProductRec)> {
        let mut p = self
            .d
            .products
            .get(sku)
            .cloned()
            .ok_or(DomainError::NotFound("product"))?;
        let ProductPatch {
            name,
            description,
            price_cents,
            currency,
            category,
            attributes_json,
        } = patch;
        p.name = name.unwrap_or(p.name);
        p.description = description.unwrap_or(p.description);
        p.price_cents = price_cents.unwrap_or(p.price_cents);
        p.currency = currency.unwrap_or(p.currency);
        p.category = category.unwrap_or(p.category);
        p.attributes_json = attributes_json.unwrap_or(p.attributes_json);
        p.updated_at = now.max(p.updated_at);
        Ok((vec![Change::ProductPut(p.clone())], p))
    }

    /// Deletes a product.
    pub fn plan_delete_product(&self, sku: &str) -> DomainResult<Vec<Change>> {
        if !self.d.products.contains_key(sku) {
            return Err(DomainError::NotFound("product"));
        }
        Ok(vec![Change::ProductDeleted {
            sku: sku.to_owned(),
        }])
    }

    /// Runs `query` on this shard's products: its page, and the products
    /// (with stock) of its hits.
    pub fn search(&self, query: &Query) -> (SearchPage, Vec<(ProductRec, Stock)>) {
        let page = self.search.search(query);
        let products = page
            .hits
            .iter()
            .filter_map(|h| self.product(&h.sku).map(|(p, s)| (p.clone(), s)))
            .collect();
        (page, products)
    }
}
