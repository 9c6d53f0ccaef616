//! The `flash-sale` scenario: every request is
//! `POST /api/v1/flash-sales/{id}/purchase` of one unit, each connection as
//! one registered user (connection `i` is user `i % users`) with a fresh
//! `Idempotency-Key` per request.
//!
//! - [`setup`] (not measured): as the admin, create a product with a unique
//!   SKU and a sale on it (started 1 h ago, ending in a day), for users
//!   registered by [`crate::setup::register_users`].
//! - The engine tallies every connection's answers over the whole run (warm-up
//!   and measured window, then a drain of the requests still in flight).
//! - [`gate`] (after the last run): `sold = quantity - remaining` read back
//!   from the server must equal `min(gate_stock, 201s)`, no more 201s than
//!   `gate_stock`, and no user above the per-user limit; else the run fails.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::Serialize;
use serde_json::{Value, json};

use crate::http1::KeyedPost;
use crate::setup::Api;
use crate::stats::Tally;

/// The purchase body: one unit per request.
const BODY: &str = r#"{"quantity":1}"#;

/// Options of `--scenario flash-sale` (and of the setup of the other
/// scenarios: admin, users).
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Setup and flash sale (--scenario flash-sale, mixed)")]
pub(crate) struct FlashSaleArgs {
    /// Admin account that creates the products and the sale (every scenario
    /// but healthz and get).
    #[arg(long, env = "RAYLTICS_ADMIN_EMAIL")]
    pub(crate) admin_email: Option<String>,
    /// Its password.
    #[arg(long, env = "RAYLTICS_ADMIN_PASSWORD", hide_env_values = true)]
    pub(crate) admin_password: Option<String>,
    /// Users registered at setup (default: `--connections`); connection `i`
    /// buys (flash-sale, checkout, mixed) as user `i % users` in the first
    /// run, as user `(i + connections) % users` in the second, and so on:
    /// `--users` = connections x runs keeps every run to its own users.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) users: Option<u64>,
    /// Units in the sale (the default does not sell out in a timed run).
    #[arg(long, default_value_t = 100_000_000)]
    pub(crate) sale_quantity: u64,
    /// Units one user may buy. The default is the most the server accepts
    /// (a purchase line's limit, 10 000); with many runs or few users it can
    /// be reached, and `limit_exceeded` answers then replace purchases.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) per_user_limit: u64,
    /// To prove the gate works only: the gate checks the units sold against
    /// this instead of the sale's real quantity (default: the quantity).
    #[arg(long)]
    pub(crate) gate_stock: Option<u64>,
}

/// The sale a run buys from (JSON `config.flash_sale`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Sale {
    pub(crate) sale_id: String,
    pub(crate) sku: String,
    pub(crate) quantity: u64,
    pub(crate) per_user_limit: u64,
    /// What the gate compares the units sold against.
    pub(crate) gate_stock: u64,
    pub(crate) users: usize,
    /// Unique part of the SKU and the users' emails.
    pub(crate) setup_id: String,
    /// Setup time, seconds (not measured).
    pub(crate) setup_s: f64,
    /// Bearer token of each user.
    #[serde(skip)]
    pub(crate) tokens: Vec<String>,
}

impl Sale {
    /// The purchase requests for `host` (the target's authority).
    pub(crate) fn requests(&self, host: &str) -> Arc<KeyedPost> {
        let path = format!("/api/v1/flash-sales/{}/purchase", self.sale_id);
        Arc::new(KeyedPost::new(host, &path, self.tokens.clone(), BODY))
    }
}

fn str_field<'a>(v: &'a Value, field: &str) -> anyhow::Result<&'a str> {
    v[field]
        .as_str()
        .with_context(|| format!("no string {field:?} in {v}"))
}

/// Creates the product and the sale on the server behind `api`, as the
/// admin (`admin`: its access token), for `tokens` (the users' access
/// tokens); `setup_id` makes the SKU unique. `setup_s` is left at 0.
pub(crate) fn setup(
    api: &Api,
    args: &FlashSaleArgs,
    admin: &str,
    setup_id: &str,
    tokens: Vec<String>,
) -> anyhow::Result<Sale> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
    let sku = format!("BENCH-FS-{setup_id}");
    let product = json!({
        "sku": sku, "name": "Flash sale bench item", "description": "rayltics-bench flash-sale scenario",
        "price_cents": 1000, "currency": "USD", "category": "bench", "attributes": {},
        "stock": args.sale_quantity.min(1_000_000_000),
    });
    api.expect(201, "POST", "/api/v1/products", Some(admin), Some(&product))
        .context("creating the product")?;
    let secs = now.as_secs();
    let sale = json!({
        "sku": sku, "quantity": args.sale_quantity, "price_cents": 500,
        "starts_at": crate::report::utc_stamps(secs.saturating_sub(3600)).0,
        "ends_at": crate::report::utc_stamps(secs + 86_400).0,
        "per_user_limit": args.per_user_limit,
    });
    let sale = api
        .expect(201, "POST", "/api/v1/flash-sales", Some(admin), Some(&sale))
        .context("creating the sale")?;
    let sale_id = str_field(&sale, "id")?.to_string();
    Ok(Sale {
        sale_id,
        sku,
        quantity: args.sale_quantity,
        per_user_limit: args.per_user_limit,
        gate_stock: args.gate_stock.unwrap_or(args.sale_quantity),
        users: tokens.len(),
        setup_id: setup_id.to_string(),
        setup_s: 0.0,
        tokens,
    })
}

/// The sale's `remaining`, read back from the server.
pub(crate) fn remaining(api: &Api, sale_id: &str) -> anyhow::Result<u64> {
    let v = api.expect(
        200,
        "GET",
        &format!("/api/v1/flash-sales/{sale_id}"),
        None,
        None,
    )?;
    v["remaining"]
        .as_u64()
        .with_context(|| format!("no remaining in {v}"))
}

/// What a run's tallies add up to, per user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Purchases {
    /// 201s of each user.
    pub(crate) created_per_user: Vec<u64>,
    /// Requests sent whose answer never came (timeouts, resets).
    pub(crate) unanswered: u64,
}

impl Purchases {
    pub(crate) fn new(users: usize) -> Self {
        Self {
            created_per_user: vec![0; users],
            unanswered: 0,
        }
    }

    /// Adds one run's per-connection tallies (connection `i` is user
    /// `(script_base + i) % users`).
    pub(crate) fn add(&mut self, tallies: &[Tally], script_base: usize) {
        let users = self.created_per_user.len();
        for (conn, t) in tallies.iter().enumerate() {
            self.created_per_user[(script_base + conn) % users] += t.outcomes.created;
            self.unanswered += t.sent.saturating_sub(t.answered);
        }
    }
}

/// The correctness gate's verdict (JSON `gate`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Gate {
    pub(crate) passed: bool,
    pub(crate) detail: String,
    pub(crate) quantity: u64,
    pub(crate) remaining: u64,
    /// `quantity - remaining`, as the server sees it.
    pub(crate) sold: u64,
    pub(crate) gate_stock: u64,
    /// 201 answers over every run, warm-ups and drains included.
    pub(crate) successful_201s: u64,
    /// Purchases sent that got no answer (their outcome is unknown).
    pub(crate) unanswered: u64,
    pub(crate) per_user_limit: u64,
    /// Most 201s one user got.
    pub(crate) max_per_user: u64,
}

/// Checks the server's count against what the clients were told: `sold ==
/// min(gate_stock, 201s)`, `201s <= gate_stock` (nothing oversold; the
/// first check alone would accept more 201s than units) and every user at
/// most `per_user_limit`. Each unit needs exactly one 201 (quantity 1).
pub(crate) fn gate(sale: &Sale, remaining: u64, p: &Purchases) -> Gate {
    let sold = sale.quantity.saturating_sub(remaining);
    let created: u64 = p.created_per_user.iter().sum();
    let expected = sale.gate_stock.min(created);
    let (max_user, max_per_user) = p
        .created_per_user
        .iter()
        .copied()
        .enumerate()
        .max_by_key(|(_, n)| *n)
        .unwrap_or((0, 0));
    let mut failures = Vec::new();
    if sold != expected {
        failures.push(format!(
            "sold {sold} (quantity {} - remaining {remaining}) != min(gate stock {}, 201s {created}) = {expected}",
            sale.quantity, sale.gate_stock
        ));
    }
    if created > sale.gate_stock {
        failures.push(format!(
            "{created} purchases answered 201, more than the stock of {}",
            sale.gate_stock
        ));
    }
    if max_per_user > sale.per_user_limit {
        failures.push(format!(
            "user {max_user} got {max_per_user} units, above the per-user limit of {}",
            sale.per_user_limit
        ));
    }
    let passed = failures.is_empty();
    let mut detail = if passed {
        format!(
            "sold {sold} = min(gate stock {}, 201s {created}); most per user {max_per_user} <= limit {}",
            sale.gate_stock, sale.per_user_limit
        )
    } else {
        failures.join("; ")
    };
    if p.unanswered > 0 {
        detail.push_str(&format!(
            "; {} purchase(s) got no answer (timeout or reset): their outcome is unknown",
            p.unanswered
        ));
    }
    Gate {
        passed,
        detail,
        quantity: sale.quantity,
        remaining,
        sold,
        gate_stock: sale.gate_stock,
        successful_201s: created,
        unanswered: p.unanswered,
        per_user_limit: sale.per_user_limit,
        max_per_user,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Outcomes;

    fn sale(quantity: u64, gate_stock: u64, limit: u64) -> Sale {
        Sale {
            sale_id: "s".into(),
            sku: "k".into(),
            quantity,
            per_user_limit: limit,
            gate_stock,
            users: 2,
            setup_id: "x".into(),
            setup_s: 0.0,
            tokens: vec!["a".into(), "b".into()],
        }
    }

    fn purchases(created: &[u64]) -> Purchases {
        let mut p = Purchases::new(2);
        let tallies: Vec<Tally> = created
            .iter()
            .map(|&c| Tally {
                sent: c + 3,
                answered: c + 3,
                outcomes: Outcomes {
                    created: c,
                    ..Outcomes::default()
                },
            })
            .collect();
        p.add(&tallies, 0);
        p
    }

    #[test]
    fn tallies_add_up_per_user() {
        // Connections 0 and 2 are user 0, connection 1 is user 1.
        let mut p = purchases(&[4, 5, 6]);
        assert_eq!(p.created_per_user, vec![10, 5]);
        p.add(
            &[Tally {
                sent: 3,
                answered: 1,
                outcomes: Outcomes::default(),
            }],
            0,
        );
        assert_eq!(p.unanswered, 2);
    }

    #[test]
    fn a_later_run_buys_as_the_next_users() {
        // Four users; a run of two connections whose scripts start at 3:
        // its connections are users 3 and 0.
        let mut p = Purchases::new(4);
        let tally = |c| Tally {
            sent: c,
            answered: c,
            outcomes: Outcomes {
                created: c,
                ..Outcomes::default()
            },
        };
        p.add(&[tally(7), tally(9)], 3);
        assert_eq!(p.created_per_user, vec![9, 0, 0, 7]);
    }

    #[test]
    fn gate_arithmetic() {
        // Not sold out: every 201 is one unit sold.
        let g = gate(&sale(100, 100, 10), 85, &purchases(&[7, 8]));
        assert!(g.passed, "{g:?}");
        assert_eq!((g.sold, g.successful_201s, g.max_per_user), (15, 15, 8));
        // Sold out: 300 units, 300 201s (the refusals are not counted).
        let g = gate(&sale(300, 300, 200), 0, &purchases(&[150, 150]));
        assert!(g.passed, "{g:?}");
        // The same run checked against a stock of 299 must fail.
        let g = gate(&sale(300, 299, 200), 0, &purchases(&[150, 150]));
        assert!(!g.passed);
        assert!(
            g.detail.contains("min(gate stock 299, 201s 300) = 299"),
            "{}",
            g.detail
        );
        // A 201 the server does not count (a lost purchase), or one more
        // unit sold than answered.
        assert!(!gate(&sale(100, 100, 10), 86, &purchases(&[7, 8])).passed);
        assert!(!gate(&sale(100, 100, 10), 84, &purchases(&[7, 8])).passed);
        // Oversold: more 201s than units, though sold == min(stock, 201s).
        let g = gate(&sale(10, 10, 100), 0, &purchases(&[6, 6]));
        assert!(!g.passed);
        assert!(g.detail.contains("more than the stock"), "{}", g.detail);
        // A user above the limit.
        let g = gate(&sale(100, 100, 7), 85, &purchases(&[7, 8]));
        assert!(!g.passed);
        assert!(g.detail.contains("user 1 got 8 units"), "{}", g.detail);
    }
}
