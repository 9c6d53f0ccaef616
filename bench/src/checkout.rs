//! The `checkout` scenario's bookkeeping and correctness gate.
//!
//! A checkout is three requests on one connection, as one user:
//! `PUT /api/v1/cart/items/{sku}` (`{"quantity":1}`, the SKU drawn from the
//! catalog's Zipf popularity), `POST /api/v1/orders` (`{"from_cart":true}`,
//! a fresh `Idempotency-Key`), then `POST /api/v1/orders/{id}/pay` with the
//! id read from the 201. The requests are written by
//! [`workload::ConnScript`](crate::workload::ConnScript); this module keeps
//! what each connection was told ([`CheckoutLog`]) and, after the last run,
//! checks it against the orders the server lists for each user ([`gate`]).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::Serialize;
use serde_json::json;

use crate::setup::{Api, User};
use crate::stats::Tally;

/// A test card that pays.
pub(crate) const CARD_OK: &str = "4242424242424242";
/// The test card the server declines (API.md).
pub(crate) const CARD_DECLINED: &str = "4000000000000002";

/// Options of `--scenario checkout` (and of checkouts in `mixed`).
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Checkout (--scenario checkout, mixed)")]
pub(crate) struct CheckoutArgs {
    /// Pay every Nth checkout of a connection with the declined test card
    /// (`payment_failed`, stock released); 0 never does.
    #[arg(long, default_value_t = 0)]
    pub(crate) decline_every: u64,
    /// To prove the checkout gate works only: it expects declined orders to
    /// be `paid` too (with `--decline-every`, the gate must fail).
    #[arg(long)]
    pub(crate) gate_expect_paid: bool,
    /// Writes `order_id<TAB>unix_ns` for every order answered 201, over
    /// every run (warm-ups included), to FILE: `unix_ns` is the wall clock
    /// (`CLOCK_REALTIME`) when the generator read the 201. For latencies
    /// from an order's commit to its effects elsewhere
    /// (`bench/scripts/order-email.sh`).
    #[arg(long, value_name = "FILE")]
    pub(crate) order_times: Option<PathBuf>,
}

/// What the client knows an order's status must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Expect {
    /// Never paid (the run ended before the payment was sent): `pending`,
    /// or `expired` once the reservation TTL has passed.
    Pending,
    /// Payment answered 200 with the card that pays.
    Paid,
    /// Payment answered 200 with the declined card.
    PaymentFailed,
    /// The payment was sent but its answer never came, or was an error.
    Unknown,
}

impl Expect {
    fn describe(self) -> &'static str {
        match self {
            Self::Pending => "pending (never paid)",
            Self::Paid => "paid",
            Self::PaymentFailed => "payment_failed",
            Self::Unknown => "any (payment unanswered)",
        }
    }

    fn admits(self, status: &str) -> bool {
        match self {
            Self::Pending => matches!(status, "pending" | "expired"),
            Self::Paid => status == "paid",
            Self::PaymentFailed => status == "payment_failed",
            Self::Unknown => matches!(status, "pending" | "expired" | "paid" | "payment_failed"),
        }
    }
}

/// An order answered 201.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OrderEntry {
    pub(crate) id: String,
    pub(crate) expect: Expect,
    /// Wall clock (ns since the Unix epoch) when the 201 was read.
    pub(crate) answered_unix_ns: u64,
}

/// Now, in ns since the Unix epoch (0 before it).
pub(crate) fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Writes `id<TAB>answered_unix_ns` of every order in `logs` to `path`.
pub(crate) fn write_order_times<'a>(
    path: &Path,
    logs: impl IntoIterator<Item = &'a CheckoutLog>,
) -> anyhow::Result<u64> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = std::io::BufWriter::new(file);
    let mut n = 0;
    for o in logs.into_iter().flat_map(|l| &l.orders) {
        writeln!(w, "{}\t{}", o.id, o.answered_unix_ns)?;
        n += 1;
    }
    w.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(n)
}

/// One connection's checkouts over a whole run (warm-up, window and drain).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CheckoutLog {
    /// Orders answered 201 whose id was read.
    pub(crate) orders: Vec<OrderEntry>,
    /// `POST /orders` handed to the socket, and of them answered (any status).
    pub(crate) posts_sent: u64,
    pub(crate) posts_answered: u64,
    /// 201s whose body held no readable order id (a gate failure).
    pub(crate) ids_missing: u64,
    /// Payments answered 200 whose status was not the one the card implies.
    pub(crate) pay_mismatch: u64,
}

/// The first JSON string value of `"field"` in `body` (no escapes: ids and
/// status codes have none). `"id"` does not match `"user_id"`.
pub(crate) fn json_str<'a>(body: &'a [u8], field: &str) -> Option<&'a str> {
    let key = format!("\"{field}\":\"");
    let start = body.windows(key.len()).position(|w| w == key.as_bytes())? + key.len();
    let len = body[start..].iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&body[start..start + len]).ok()
}

/// The checkout gate's verdict (JSON `checkout_gate`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct CheckoutGate {
    pub(crate) passed: bool,
    pub(crate) detail: String,
    /// Orders answered 201 over every run (warm-ups and drains included).
    pub(crate) orders_created: u64,
    /// Of them, by what the client expects: paid, payment failed, never paid,
    /// payment outcome unknown.
    pub(crate) expect_paid: u64,
    pub(crate) expect_payment_failed: u64,
    pub(crate) expect_pending: u64,
    pub(crate) expect_unknown: u64,
    /// 201s found with an admissible status.
    pub(crate) confirmed: u64,
    /// 201s the server does not list.
    pub(crate) missing: u64,
    /// 201s listed with another status than expected.
    pub(crate) wrong_status: u64,
    /// 201s without a readable id, and payments whose answer contradicted
    /// the card.
    pub(crate) ids_missing: u64,
    pub(crate) pay_mismatch: u64,
    /// `POST /orders` whose answer never came (such an order may exist).
    pub(crate) unanswered: u64,
    /// Orders the server lists for the bench users.
    pub(crate) listed: u64,
    /// Listed orders that are not checkout 201s: flash-sale purchases
    /// (`mixed`), or orders nobody was told about.
    pub(crate) other_listed: u64,
    /// Flash-sale purchases answered 201 (`mixed`), which are orders too.
    pub(crate) purchases_created: u64,
}

/// What one user was told, over every connection and run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct UserOrders {
    pub(crate) orders: Vec<OrderEntry>,
    /// Checkout 201s whose id could not be read / payments contradicting the card.
    pub(crate) ids_missing: u64,
    pub(crate) pay_mismatch: u64,
    /// Flash-sale purchases answered 201.
    pub(crate) purchases_created: u64,
    /// Order posts and purchases sent without an answer.
    pub(crate) unanswered_posts: u64,
    pub(crate) unanswered_purchases: u64,
}

impl UserOrders {
    /// `--gate-expect-paid`: expects the declined orders to be paid.
    pub(crate) fn expect_paid(&mut self) {
        for o in &mut self.orders {
            if o.expect == Expect::PaymentFailed {
                o.expect = Expect::Paid;
            }
        }
    }

    /// Adds one run's per-connection logs and purchase tallies to `users`
    /// (connection `i` is user `i % users.len()`).
    pub(crate) fn add(users: &mut [UserOrders], logs: &[CheckoutLog], tallies: &[Tally]) {
        let n = users.len();
        for (conn, log) in logs.iter().enumerate() {
            let u = &mut users[conn % n];
            u.orders.extend(log.orders.iter().cloned());
            u.ids_missing += log.ids_missing;
            u.pay_mismatch += log.pay_mismatch;
            u.unanswered_posts += log.posts_sent.saturating_sub(log.posts_answered);
        }
        for (conn, t) in tallies.iter().enumerate() {
            let u = &mut users[conn % n];
            u.purchases_created += t.outcomes.created;
            u.unanswered_purchases += t.sent.saturating_sub(t.answered);
        }
    }
}

/// Compares what the users were told with what the server lists for them
/// (`listed[u]`: order id -> status). Passes when every checkout 201 is
/// listed with an admissible status, every id was read, no payment
/// contradicted its card, and the other listed orders number at least the
/// purchases answered 201 and at most those plus the requests whose answer
/// never came (no order nobody was told about).
pub(crate) fn judge(users: &[UserOrders], listed: &[HashMap<String, String>]) -> CheckoutGate {
    let mut g = CheckoutGate::default();
    let mut failures = Vec::new();
    for (u, (told, server)) in users.iter().zip(listed).enumerate() {
        g.ids_missing += told.ids_missing;
        g.pay_mismatch += told.pay_mismatch;
        g.purchases_created += told.purchases_created;
        g.unanswered += told.unanswered_posts;
        g.listed += server.len() as u64;
        let mut matched = 0u64;
        for o in &told.orders {
            g.orders_created += 1;
            match o.expect {
                Expect::Paid => g.expect_paid += 1,
                Expect::PaymentFailed => g.expect_payment_failed += 1,
                Expect::Pending => g.expect_pending += 1,
                Expect::Unknown => g.expect_unknown += 1,
            }
            match server.get(&o.id) {
                None => {
                    g.missing += 1;
                    if g.missing <= 3 {
                        failures.push(format!(
                            "order {} (user {u}) answered 201 is not listed",
                            o.id
                        ));
                    }
                }
                Some(status) => {
                    matched += 1;
                    if o.expect.admits(status) {
                        g.confirmed += 1;
                    } else {
                        g.wrong_status += 1;
                        if g.wrong_status <= 3 {
                            failures.push(format!(
                                "order {} (user {u}) is {status}, expected {}",
                                o.id,
                                o.expect.describe()
                            ));
                        }
                    }
                }
            }
        }
        g.orders_created += told.ids_missing;
        let others = server.len() as u64 - matched;
        g.other_listed += others;
        let unknown = told.unanswered_posts + told.unanswered_purchases;
        if others < told.purchases_created {
            failures.push(format!(
                "user {u}: {others} listed orders besides its checkouts, fewer than its {} purchases answered 201",
                told.purchases_created
            ));
        } else if others > told.purchases_created + unknown + told.ids_missing {
            failures.push(format!(
                "user {u}: {others} listed orders besides its checkouts, more than its {} purchases answered 201 + {unknown} unanswered requests",
                told.purchases_created
            ));
        }
    }
    if g.missing > 3 {
        failures.push(format!("{} orders answered 201 are not listed", g.missing));
    }
    if g.wrong_status > 3 {
        failures.push(format!(
            "{} orders have an unexpected status",
            g.wrong_status
        ));
    }
    if g.ids_missing > 0 {
        failures.push(format!("{} order 201s held no readable id", g.ids_missing));
    }
    if g.pay_mismatch > 0 {
        failures.push(format!(
            "{} payments answered a status the card does not imply",
            g.pay_mismatch
        ));
    }
    g.passed = failures.is_empty();
    g.detail = if g.passed {
        format!(
            "{} orders answered 201 all listed as expected ({} paid, {} payment_failed, {} never paid, {} payment unanswered)",
            g.orders_created,
            g.expect_paid,
            g.expect_payment_failed,
            g.expect_pending,
            g.expect_unknown
        )
    } else {
        failures.join("; ")
    };
    if g.unanswered > 0 {
        g.detail.push_str(&format!(
            "; {} order request(s) got no answer (timeout or reset): their outcome is unknown",
            g.unanswered
        ));
    }
    g
}

/// Every order of `user_id` (id -> status), listed by the admin 100 at a time.
fn list_orders(api: &Api, admin: &str, user_id: &str) -> anyhow::Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/orders?user_id={user_id}&limit=100");
        if let Some(c) = &cursor {
            path.push_str("&cursor=");
            path.push_str(c);
        }
        let page = api.expect(200, "GET", &path, Some(admin), None)?;
        let items = page["items"]
            .as_array()
            .with_context(|| format!("no items in {page}"))?;
        for o in items {
            if let (Some(id), Some(status)) = (o["id"].as_str(), o["status"].as_str()) {
                out.insert(id.to_string(), status.to_string());
            }
        }
        match page["next_cursor"].as_str() {
            Some(c) if !items.is_empty() => cursor = Some(c.to_string()),
            _ => return Ok(out),
        }
    }
}

/// Logs the admin in afresh (a long run outlives access tokens), lists
/// every bench user's orders and [`judge`]s them.
pub(crate) fn gate(
    api: &Api,
    admin_email: &str,
    admin_password: &str,
    users: &[User],
    told: &[UserOrders],
) -> anyhow::Result<CheckoutGate> {
    let login = api
        .expect(
            200,
            "POST",
            "/api/v1/auth/login",
            None,
            Some(&json!({"email": admin_email, "password": admin_password})),
        )
        .context("logging the admin in for the checkout gate")?;
    let admin = login["access_token"]
        .as_str()
        .with_context(|| format!("no access_token in {login}"))?;
    let listed = users
        .iter()
        .map(|u| {
            list_orders(api, admin, &u.id)
                .with_context(|| format!("listing the orders of {}", u.id))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(judge(told, &listed))
}

/// A failed gate when the server could not be asked.
pub(crate) fn unreadable(e: &anyhow::Error) -> CheckoutGate {
    CheckoutGate {
        passed: false,
        detail: format!("cannot list the orders back: {e:#}"),
        ..CheckoutGate::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, expect: Expect) -> OrderEntry {
        OrderEntry {
            id: id.into(),
            expect,
            answered_unix_ns: 0,
        }
    }

    fn listed(orders: &[(&str, &str)]) -> HashMap<String, String> {
        orders
            .iter()
            .map(|(i, s)| (i.to_string(), s.to_string()))
            .collect()
    }

    #[test]
    fn ids_and_statuses_are_read_from_bodies() {
        let body = br#"{"id":"0190a1b2-0000-7000-8000-000000000001","user_id":"u-1","status":"pending","items":[]"#;
        assert_eq!(
            json_str(body, "id"),
            Some("0190a1b2-0000-7000-8000-000000000001")
        );
        assert_eq!(json_str(body, "status"), Some("pending"));
        assert_eq!(
            json_str(br#"{"user_id":"u-1","id":"x"}"#, "id"),
            Some("x"),
            "user_id is not id"
        );
        assert_eq!(json_str(br#"{"id":"cut-off"#, "id"), None);
        assert_eq!(json_str(b"", "id"), None);
    }

    #[test]
    fn the_gate_passes_when_everything_is_listed_as_told() {
        let users = vec![
            UserOrders {
                orders: vec![
                    entry("a", Expect::Paid),
                    entry("b", Expect::PaymentFailed),
                    entry("c", Expect::Pending),
                ],
                ..UserOrders::default()
            },
            UserOrders {
                orders: vec![entry("d", Expect::Unknown)],
                purchases_created: 2,
                ..UserOrders::default()
            },
        ];
        let server = vec![
            listed(&[("a", "paid"), ("b", "payment_failed"), ("c", "pending")]),
            listed(&[("d", "paid"), ("p1", "pending"), ("p2", "pending")]),
        ];
        let g = judge(&users, &server);
        assert!(g.passed, "{g:?}");
        assert_eq!((g.orders_created, g.confirmed, g.listed), (4, 4, 6));
        assert_eq!((g.other_listed, g.purchases_created), (2, 2));
        assert_eq!(
            (
                g.expect_paid,
                g.expect_payment_failed,
                g.expect_pending,
                g.expect_unknown
            ),
            (1, 1, 1, 1)
        );
    }

    #[test]
    fn the_gate_fails_on_lost_wrong_or_phantom_orders() {
        let told = vec![UserOrders {
            orders: vec![entry("a", Expect::Paid), entry("b", Expect::Paid)],
            ..UserOrders::default()
        }];
        // A 201 the server does not know.
        let g = judge(&told, &[listed(&[("a", "paid")])]);
        assert!(!g.passed && g.missing == 1, "{g:?}");
        assert!(g.detail.contains("order b (user 0)"), "{}", g.detail);
        // Paid with the good card but listed as pending.
        let g = judge(&told, &[listed(&[("a", "paid"), ("b", "pending")])]);
        assert!(!g.passed && g.wrong_status == 1, "{g:?}");
        // An order nobody was told about.
        let g = judge(
            &told,
            &[listed(&[("a", "paid"), ("b", "paid"), ("z", "pending")])],
        );
        assert!(!g.passed, "{g:?}");
        assert!(g.detail.contains("more than"), "{}", g.detail);
        // ... unless a request went unanswered: that order may be it.
        let maybe = vec![UserOrders {
            unanswered_posts: 1,
            ..told[0].clone()
        }];
        let g = judge(
            &maybe,
            &[listed(&[("a", "paid"), ("b", "paid"), ("z", "pending")])],
        );
        assert!(g.passed, "{g:?}");
        assert!(g.detail.contains("got no answer"), "{}", g.detail);
        // A purchase answered 201 whose order is missing.
        let bought = vec![UserOrders {
            purchases_created: 1,
            ..told[0].clone()
        }];
        let g = judge(&bought, &[listed(&[("a", "paid"), ("b", "paid")])]);
        assert!(!g.passed && g.detail.contains("fewer than"), "{g:?}");
        // A 201 without an id, or a payment contradicting its card.
        let g = judge(
            &[UserOrders {
                ids_missing: 1,
                ..UserOrders::default()
            }],
            &[listed(&[("q", "pending")])],
        );
        assert!(!g.passed && g.detail.contains("no readable id"), "{g:?}");
        let g = judge(
            &[UserOrders {
                pay_mismatch: 1,
                ..UserOrders::default()
            }],
            &[HashMap::new()],
        );
        assert!(!g.passed, "{g:?}");
    }

    #[test]
    fn logs_add_up_per_user() {
        let log = |id: &str| CheckoutLog {
            orders: vec![entry(id, Expect::Paid)],
            posts_sent: 3,
            posts_answered: 2,
            ..CheckoutLog::default()
        };
        let mut users = vec![UserOrders::default(); 2];
        let tallies = vec![
            Tally {
                sent: 4,
                answered: 4,
                outcomes: crate::stats::Outcomes {
                    created: 4,
                    ..Default::default()
                },
            };
            3
        ];
        UserOrders::add(&mut users, &[log("a"), log("b"), log("c")], &tallies);
        assert_eq!(users[0].orders.len(), 2, "connections 0 and 2");
        assert_eq!(users[0].unanswered_posts, 2);
        assert_eq!(users[0].purchases_created, 8);
        assert_eq!(users[1].orders[0].id, "b");
    }
}
