//! Scripted scenarios: what each connection sends next, decided per request
//! from a seeded random stream and the answers so far.
//!
//! A [`Workload`] (shared, read-only) holds everything encoded once: the
//! product pages and searches of the catalog, the users' tokens, the
//! purchase template of a flash sale. Each connection runs a [`ConnScript`]
//! on it: an action is drawn by the [`Mix`]'s weights (`browse`: one search
//! or product page; `checkout`: cart line, order, payment, one request each,
//! the next one written when the previous answer is in; `flash-sale`: one
//! purchase), and the answers are classified into outcomes and logged for
//! the correctness gates. `browse`, `checkout` and `flash-sale` are mixes
//! of one action; `mixed` reads its weights from a scenario file
//! ([`Mix::parse`]).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::checkout::{CARD_DECLINED, CARD_OK, CheckoutLog, Expect, OrderEntry, json_str, unix_ns};
use crate::http1::{KeyedPost, push_decimal};
use crate::sampling::{Rng, Weighted, Zipf};
use crate::setup::User;
use crate::stats::{Outcome, Tally};

/// A kind of request, for per-step counts and latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// `GET /api/v1/products?q=...[&category=...]`.
    Search,
    /// `GET /api/v1/products/{sku}`.
    Product,
    /// `PUT /api/v1/cart/items/{sku}`.
    Cart,
    /// `POST /api/v1/orders` from the cart.
    Order,
    /// `POST /api/v1/orders/{id}/pay`.
    Pay,
    /// `POST /api/v1/flash-sales/{id}/purchase`.
    Purchase,
}

impl Step {
    pub(crate) const ALL: [Step; 6] = [
        Step::Search,
        Step::Product,
        Step::Cart,
        Step::Order,
        Step::Pay,
        Step::Purchase,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Search => "search",
            Self::Product => "product",
            Self::Cart => "cart",
            Self::Order => "order",
            Self::Pay => "pay",
            Self::Purchase => "purchase",
        }
    }

    pub(crate) fn index(self) -> u8 {
        self as u8
    }

    pub(crate) fn of(index: u8) -> Self {
        Self::ALL[usize::from(index).min(Self::ALL.len() - 1)]
    }
}

/// The blend of a run: weights of browse, checkout and flash-sale
/// (JSON `config.mix`). A weight is a share of the *requests*: a checkout
/// is three requests, so it is started a third as often as its weight
/// alone would say.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Mix {
    pub(crate) browse: f64,
    pub(crate) checkout: f64,
    #[serde(rename = "flash-sale")]
    pub(crate) flash_sale: f64,
    /// The scenario file it was read from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) description: Option<String>,
}

/// Requests one action of each kind makes: browse, checkout, flash-sale.
const ACTION_REQUESTS: [f64; 3] = [1.0, 3.0, 1.0];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MixFile {
    description: Option<String>,
    weights: WeightsFile,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightsFile {
    #[serde(default)]
    browse: f64,
    #[serde(default)]
    checkout: f64,
    #[serde(default, rename = "flash-sale", alias = "flash_sale")]
    flash_sale: f64,
}

impl Mix {
    /// One scenario alone.
    pub(crate) fn only(browse: bool, checkout: bool, flash_sale: bool) -> Self {
        Self {
            browse: f64::from(u8::from(browse)),
            checkout: f64::from(u8::from(checkout)),
            flash_sale: f64::from(u8::from(flash_sale)),
            file: None,
            description: None,
        }
    }

    /// Parses a scenario file:
    ///
    /// ```toml
    /// description = "optional"
    /// [weights]          # shares of the requests, any scale
    /// browse = 80
    /// checkout = 15
    /// flash-sale = 5
    /// ```
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let f: MixFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let w = f.weights;
        let mix = Self {
            browse: w.browse,
            checkout: w.checkout,
            flash_sale: w.flash_sale,
            file: None,
            description: f.description,
        };
        mix.actions()?;
        Ok(mix)
    }

    /// Reads and parses the scenario file at `path`.
    pub(crate) fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut mix = Self::parse(&text)
            .map_err(|e| anyhow::anyhow!("scenario file {}: {e}", path.display()))?;
        mix.file = Some(path.display().to_string());
        Ok(mix)
    }

    /// The pick of each next action (browse, checkout, flash-sale).
    fn actions(&self) -> Result<Weighted, String> {
        let w = [self.browse, self.checkout, self.flash_sale];
        Weighted::new(&[
            w[0] / ACTION_REQUESTS[0],
            w[1] / ACTION_REQUESTS[1],
            w[2] / ACTION_REQUESTS[2],
        ])
        .map_err(|e| format!("[weights] browse, checkout, flash-sale: {e}"))
    }

    pub(crate) fn browses(&self) -> bool {
        self.browse > 0.0
    }

    pub(crate) fn checks_out(&self) -> bool {
        self.checkout > 0.0
    }

    pub(crate) fn buys_flash_sale(&self) -> bool {
        self.flash_sale > 0.0
    }
}

/// Everything the connections of a scripted run share, encoded once.
#[derive(Debug)]
pub(crate) struct Workload {
    actions: Weighted,
    seed: u64,
    search_fraction: f64,
    /// SKU popularity over the catalog (browse and checkout).
    zipf: Option<Zipf>,
    /// `GET /api/v1/products/{sku}`, by popularity rank.
    product_gets: Vec<Box<[u8]>>,
    /// Searches: every word alone, and with every category.
    searches: Vec<Box<[u8]>>,
    /// `PUT /api/v1/cart/items/{sku}` up to the headers of the user, by rank.
    cart_heads: Vec<Box<[u8]>>,
    /// Bearer tokens; connection `i` is user `i % tokens.len()`.
    tokens: Vec<String>,
    /// `POST /api/v1/orders` up to the user's headers.
    order_head: String,
    /// `Host` and the headers every JSON request carries, after the path.
    json_head: String,
    purchase: Option<Arc<KeyedPost>>,
    decline_every: u64,
}

const CART_BODY: &str = r#"{"quantity":1}"#;
const ORDER_BODY: &str = r#"{"from_cart":true}"#;

fn pay_body(card: &str) -> String {
    format!(r#"{{"payment_method":"test_card","card_number":"{card}"}}"#)
}

impl Workload {
    /// The workload of `mix` for the target `host`; `catalog` is needed to
    /// browse or check out, `users` to check out, `purchase` to buy the sale.
    pub(crate) fn new(
        host: &str,
        mix: &Mix,
        catalog: Option<&Catalog>,
        users: &[User],
        purchase: Option<Arc<KeyedPost>>,
        decline_every: u64,
        seed: u64,
    ) -> anyhow::Result<Self> {
        let actions = mix.actions().map_err(anyhow::Error::msg)?;
        if (mix.browses() || mix.checks_out()) && catalog.is_none() {
            anyhow::bail!("browse and checkout need a catalog");
        }
        if mix.checks_out() && users.is_empty() {
            anyhow::bail!("checkout needs users");
        }
        if mix.buys_flash_sale() && purchase.is_none() {
            anyhow::bail!("flash-sale needs a sale");
        }
        let get = |path: &str| crate::http1::encode_get(host, path).into_boxed_slice();
        let json_head = format!("HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n");
        let (zipf, product_gets, searches, cart_heads) = match catalog {
            Some(c) => {
                let zipf = Zipf::new(c.skus.len(), c.zipf_s).map_err(anyhow::Error::msg)?;
                let products = c
                    .skus
                    .iter()
                    .map(|s| get(&format!("/api/v1/products/{s}")))
                    .collect();
                let mut searches = Vec::new();
                for word in Catalog::words() {
                    searches.push(get(&format!("/api/v1/products?q={word}")));
                    for cat in &c.categories {
                        searches.push(get(&format!("/api/v1/products?q={word}&category={cat}")));
                    }
                }
                let carts = if mix.checks_out() {
                    c.skus
                        .iter()
                        .map(|s| {
                            format!(
                                "PUT /api/v1/cart/items/{s} {json_head}Content-Length: {}\r\n",
                                CART_BODY.len()
                            )
                            .into_bytes()
                            .into_boxed_slice()
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                (Some(zipf), products, searches, carts)
            }
            None => (None, Vec::new(), Vec::new(), Vec::new()),
        };
        Ok(Self {
            actions,
            seed,
            search_fraction: catalog.map_or(0.0, |c| c.search_fraction),
            zipf,
            product_gets,
            searches,
            cart_heads,
            tokens: users.iter().map(|u| u.token.clone()).collect(),
            order_head: format!(
                "POST /api/v1/orders {json_head}Content-Length: {}\r\n",
                ORDER_BODY.len()
            ),
            json_head,
            purchase,
            decline_every,
        })
    }

    /// Each next request depends on the previous answer (checkouts): no
    /// pipelining.
    pub(crate) fn needs_answers(&self) -> bool {
        !self.cart_heads.is_empty()
    }

    fn sku_rank(&self, rng: &mut Rng) -> usize {
        self.zipf.as_ref().map_or(0, |z| z.sample(rng))
    }
}

/// Where a connection is in its checkout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cycle {
    /// Not checking out: the next request starts a new action.
    Idle,
    CartSent,
    /// The cart line is set: place the order next.
    CartReady,
    OrderSent,
    /// Order `i` of the log is placed: pay it next.
    Ordered(usize),
    PaySent(usize),
}

/// One connection's script: its random stream, its checkout and what it
/// was told.
#[derive(Debug)]
pub(crate) struct ConnScript {
    w: Arc<Workload>,
    rng: Rng,
    /// `Authorization: Bearer ...\r\n` of the connection's user (checkout).
    auth: Vec<u8>,
    /// The order head, the user's token and `Idempotency-Key: {run}-{conn}-`.
    order_prefix: Vec<u8>,
    /// The purchase's counterpart (flash-sale).
    purchase_prefix: Vec<u8>,
    /// Idempotency-key counter, shared by orders and purchases.
    seq: u64,
    state: Cycle,
    /// Checkouts started, and whether the current one pays with the
    /// declined card.
    cycles: u64,
    declining: bool,
    tally: Tally,
    log: CheckoutLog,
}

impl ConnScript {
    /// Connection `conn` of run `run` (the idempotency keys' unique part).
    pub(crate) fn new(w: &Arc<Workload>, run: &str, conn: usize) -> Self {
        let auth = match w.tokens.is_empty() {
            true => Vec::new(),
            false => format!(
                "Authorization: Bearer {}\r\n",
                w.tokens[conn % w.tokens.len()]
            )
            .into_bytes(),
        };
        let mut order_prefix = w.order_head.clone().into_bytes();
        order_prefix.extend_from_slice(&auth);
        order_prefix.extend_from_slice(format!("Idempotency-Key: {run}-{conn}-").as_bytes());
        Self {
            rng: Rng::for_stream(w.seed, conn as u64),
            auth,
            order_prefix,
            purchase_prefix: w
                .purchase
                .as_ref()
                .map_or_else(Vec::new, |p| p.conn_prefix(run, conn)),
            seq: 0,
            state: Cycle::Idle,
            cycles: 0,
            declining: false,
            tally: Tally::default(),
            log: CheckoutLog::default(),
            w: w.clone(),
        }
    }

    /// Appends the next request to `out`; its step index.
    pub(crate) fn next(&mut self, out: &mut Vec<u8>) -> u8 {
        let w = &*self.w;
        match self.state {
            Cycle::CartReady => {
                out.extend_from_slice(&self.order_prefix);
                push_decimal(out, self.seq);
                self.seq += 1;
                out.extend_from_slice(b"\r\n\r\n");
                out.extend_from_slice(ORDER_BODY.as_bytes());
                self.log.posts_sent += 1;
                self.state = Cycle::OrderSent;
                return Step::Order.index();
            }
            Cycle::Ordered(i) => {
                let order = &mut self.log.orders[i];
                // Unknown until the answer says how the payment went.
                order.expect = Expect::Unknown;
                let body = pay_body(if self.declining {
                    CARD_DECLINED
                } else {
                    CARD_OK
                });
                out.extend_from_slice(b"POST /api/v1/orders/");
                out.extend_from_slice(order.id.as_bytes());
                out.extend_from_slice(b"/pay ");
                out.extend_from_slice(w.json_head.as_bytes());
                out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
                out.extend_from_slice(&self.auth);
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(body.as_bytes());
                self.state = Cycle::PaySent(i);
                return Step::Pay.index();
            }
            Cycle::Idle => {}
            // Only with pipelining, which checkouts refuse: start afresh.
            Cycle::CartSent | Cycle::OrderSent | Cycle::PaySent(_) => self.state = Cycle::Idle,
        }
        match w.actions.pick(&mut self.rng) {
            0 => {
                if self.rng.unit() <= w.search_fraction {
                    let i = self.rng.below(w.searches.len());
                    out.extend_from_slice(&w.searches[i]);
                    Step::Search.index()
                } else {
                    let rank = w.sku_rank(&mut self.rng);
                    out.extend_from_slice(&w.product_gets[rank]);
                    Step::Product.index()
                }
            }
            1 => {
                self.cycles += 1;
                self.declining = w.decline_every > 0 && self.cycles.is_multiple_of(w.decline_every);
                let rank = w.sku_rank(&mut self.rng);
                out.extend_from_slice(&w.cart_heads[rank]);
                out.extend_from_slice(&self.auth);
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(CART_BODY.as_bytes());
                self.state = Cycle::CartSent;
                Step::Cart.index()
            }
            _ => {
                let p = w.purchase.as_ref().expect("a flash-sale mix has a sale");
                p.encode(&self.purchase_prefix, self.seq, out);
                self.seq += 1;
                self.tally.sent += 1;
                Step::Purchase.index()
            }
        }
    }

    /// The answer to a request of `step`: its expected outcome, if any
    /// (`body`: the first bytes of the body).
    pub(crate) fn answered(&mut self, step: u8, status: u16, body: &[u8]) -> Option<Outcome> {
        let ok = (200..300).contains(&status);
        match Step::of(step) {
            Step::Search | Step::Product => None,
            Step::Cart => {
                if self.state == Cycle::CartSent {
                    self.state = if ok { Cycle::CartReady } else { Cycle::Idle };
                }
                None
            }
            Step::Order => {
                self.log.posts_answered += 1;
                let waiting = self.state == Cycle::OrderSent;
                if waiting {
                    self.state = Cycle::Idle;
                }
                if ok {
                    match json_str(body, "id") {
                        Some(id) => {
                            self.log.orders.push(OrderEntry {
                                id: id.to_string(),
                                expect: Expect::Pending,
                                answered_unix_ns: unix_ns(),
                            });
                            if waiting {
                                self.state = Cycle::Ordered(self.log.orders.len() - 1);
                            }
                        }
                        None => self.log.ids_missing += 1,
                    }
                    Some(Outcome::Created)
                } else if status == 409 && contains(body, b"out_of_stock\"") {
                    Some(Outcome::OutOfStock)
                } else {
                    None
                }
            }
            Step::Pay => {
                let Cycle::PaySent(i) = self.state else {
                    return None;
                };
                self.state = Cycle::Idle;
                if status != 200 {
                    return None;
                }
                let want = if self.declining {
                    Expect::PaymentFailed
                } else {
                    Expect::Paid
                };
                self.log.orders[i].expect = want;
                let got = match json_str(body, "status") {
                    Some("paid") => Some(Expect::Paid),
                    Some("payment_failed") => Some(Expect::PaymentFailed),
                    _ => None,
                };
                if got != Some(want) {
                    self.log.pay_mismatch += 1;
                }
                got.map(|g| match g {
                    Expect::PaymentFailed => Outcome::PaymentFailed,
                    _ => Outcome::Paid,
                })
            }
            Step::Purchase => {
                self.tally.answered += 1;
                let o = Outcome::of(status, body);
                if let Some(o) = o {
                    self.tally.outcomes.count(o);
                }
                o
            }
        }
    }

    /// A request of `step` will get no answer (its connection closed).
    pub(crate) fn lost(&mut self, step: u8) {
        let waiting = match Step::of(step) {
            Step::Cart => self.state == Cycle::CartSent,
            Step::Order => self.state == Cycle::OrderSent,
            Step::Pay => matches!(self.state, Cycle::PaySent(_)),
            _ => false,
        };
        if waiting {
            self.state = Cycle::Idle;
        }
    }

    /// What the connection was told over the run (purchases, checkouts).
    pub(crate) fn take_log(&mut self) -> (Tally, CheckoutLog) {
        (self.tally, std::mem::take(&mut self.log))
    }
}

fn contains(body: &[u8], needle: &[u8]) -> bool {
    body.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::CatalogArgs;

    #[test]
    fn scenario_files() {
        let m = Mix::parse(
            "description = \"shop\"\n[weights]\nbrowse = 80\ncheckout = 15\nflash-sale = 5\n",
        )
        .unwrap();
        assert_eq!((m.browse, m.checkout, m.flash_sale), (80.0, 15.0, 5.0));
        assert_eq!(m.description.as_deref(), Some("shop"));
        assert!(m.browses() && m.checks_out() && m.buys_flash_sale());
        // Missing weights are 0, fractions and the underscore spelling work.
        let m = Mix::parse("[weights]\nbrowse = 0.5\nflash_sale = 0.5\n").unwrap();
        assert_eq!((m.browse, m.checkout, m.flash_sale), (0.5, 0.0, 0.5));
        assert!(!m.checks_out());
        for bad in [
            "",                                      // no [weights]
            "[weights]\n",                           // all zero
            "[weights]\nbrowse = 0\ncheckout = 0\n", // all zero
            "[weights]\nbrowse = -1\ncheckout = 2\n",
            "[weights]\nbrowse = 1\nchat = 2\n", // unknown scenario
            "[weights]\nbrowse = \"80\"\n",      // not a number
            "weights = 3\n",
            "[weights]\nbrowse = 1\n[extra]\n", // unknown table
            "[weights]\nbrowse = nan\n",
        ] {
            assert!(Mix::parse(bad).is_err(), "accepted {bad:?}");
        }
        let e = Mix::parse("[weights]\nbrowse = 1\nchat = 2\n").unwrap_err();
        assert!(e.contains("chat"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.toml");
        std::fs::write(&path, "[weights]\ncheckout = 1\n").unwrap();
        let m = Mix::load(&path).unwrap();
        assert_eq!(m.file.as_deref(), path.to_str());
        assert!(Mix::load(&dir.path().join("none.toml")).is_err());
    }

    #[test]
    fn the_shipped_scenario_files_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.extension().is_some_and(|x| x == "toml") {
                Mix::load(&path).unwrap();
                n += 1;
            }
        }
        assert!(n > 0, "no scenario file in {}", dir.display());
    }

    fn catalog(products: u32) -> Catalog {
        Catalog::plan(&CatalogArgs {
            products,
            categories: 2,
            zipf_s: 1.0,
            search_fraction: 0.25,
            catalog: "t".into(),
            stock: 10,
        })
    }

    fn users(n: usize) -> Vec<User> {
        (0..n)
            .map(|i| User {
                id: format!("user-{i}"),
                token: format!("tok{i}"),
            })
            .collect()
    }

    fn text(out: &[u8]) -> &str {
        std::str::from_utf8(out).unwrap()
    }

    #[test]
    fn browsing_is_seeded_and_skewed() {
        let c = catalog(50);
        let w = Arc::new(
            Workload::new(
                "h:1",
                &Mix::only(true, false, false),
                Some(&c),
                &[],
                None,
                0,
                9,
            )
            .unwrap(),
        );
        assert!(!w.needs_answers());
        let draw = |conn| {
            let mut s = ConnScript::new(&w, "r", conn);
            let mut out = Vec::new();
            let mut steps = Vec::new();
            for _ in 0..4000 {
                steps.push(s.next(&mut out));
            }
            (String::from_utf8(out).unwrap(), steps)
        };
        let (a, steps) = draw(0);
        assert_eq!(a, draw(0).0, "the same seed and connection repeat");
        assert_ne!(a, draw(1).0);
        let searches = steps.iter().filter(|s| **s == Step::Search.index()).count();
        assert!(
            (800..1200).contains(&searches),
            "{searches} searches of 4000"
        );
        assert!(a.starts_with("GET /api/v1/products"), "{a}");
        assert!(!a.contains("Authorization"), "browsing is anonymous");
        // Rank 0 is the most requested page, about 22 % of them (s = 1, 50 SKUs).
        let hot = a.matches("GET /api/v1/products/t-50x2-000000 ").count();
        let cold = a.matches("GET /api/v1/products/t-50x2-000049 ").count();
        let pages = 4000 - searches;
        assert!(
            hot * 100 > pages * 18 && hot * 100 < pages * 27,
            "{hot} of {pages}"
        );
        assert!(cold * 20 < hot, "{cold} vs {hot}");
        assert!(a.contains(
            "GET /api/v1/products?q=lamp&category=t-50x2-outdoor HTTP/1.1\r\nHost: h:1\r\n\r\n"
        ));
    }

    #[test]
    fn a_checkout_cycle() {
        let c = catalog(5);
        let w = Arc::new(
            Workload::new(
                "h:1",
                &Mix::only(false, true, false),
                Some(&c),
                &users(2),
                None,
                2,
                1,
            )
            .unwrap(),
        );
        assert!(w.needs_answers());
        let mut s = ConnScript::new(&w, "run", 3);
        let mut out = Vec::new();
        // Cycle 1: cart, order, pay with the card that pays.
        assert_eq!(s.next(&mut out), Step::Cart.index());
        let cart = text(&out).to_string();
        assert!(
            cart.starts_with("PUT /api/v1/cart/items/t-5x2-00000"),
            "{cart}"
        );
        assert!(cart.ends_with(
            "Content-Type: application/json\r\nContent-Length: 14\r\nAuthorization: Bearer tok1\r\n\r\n{\"quantity\":1}"
        ), "{cart}");
        assert_eq!(s.answered(Step::Cart.index(), 200, b"{}"), None);
        out.clear();
        assert_eq!(s.next(&mut out), Step::Order.index());
        assert!(
            text(&out).contains(
                "Authorization: Bearer tok1\r\nIdempotency-Key: run-3-0\r\n\r\n{\"from_cart\":true}"
            ),
            "{}",
            text(&out)
        );
        let id = "0190a1b2-0000-7000-8000-000000000001";
        let created = format!(r#"{{"id":"{id}","user_id":"u","status":"pending"}}"#);
        assert_eq!(
            s.answered(Step::Order.index(), 201, created.as_bytes()),
            Some(Outcome::Created)
        );
        out.clear();
        assert_eq!(s.next(&mut out), Step::Pay.index());
        let pay = text(&out);
        assert!(
            pay.starts_with(&format!(
                "POST /api/v1/orders/{id}/pay HTTP/1.1\r\nHost: h:1\r\n"
            )),
            "{pay}"
        );
        assert!(
            pay.ends_with(
                "\r\n\r\n{\"payment_method\":\"test_card\",\"card_number\":\"4242424242424242\"}"
            ),
            "{pay}"
        );
        let len = pay
            .split("Content-Length: ")
            .nth(1)
            .unwrap()
            .split("\r\n")
            .next()
            .unwrap();
        assert_eq!(
            len.parse::<usize>().unwrap(),
            pay.split("\r\n\r\n").nth(1).unwrap().len()
        );
        assert_eq!(
            s.answered(
                Step::Pay.index(),
                200,
                br#"{"id":"x","user_id":"u","status":"paid"}"#
            ),
            Some(Outcome::Paid)
        );
        // Cycle 2 (every 2nd declines): the order gets 409 out_of_stock.
        out.clear();
        assert_eq!(s.next(&mut out), Step::Cart.index());
        s.answered(Step::Cart.index(), 200, b"{}");
        out.clear();
        assert_eq!(s.next(&mut out), Step::Order.index());
        assert!(text(&out).contains("Idempotency-Key: run-3-1\r\n"));
        assert_eq!(
            s.answered(
                Step::Order.index(),
                409,
                br#"{"type":"https://x/out_of_stock","code":"out_of_stock"}"#
            ),
            Some(Outcome::OutOfStock)
        );
        // Cycle 3: a cart error starts afresh; cycle 4 declines, its
        // payment is lost with its connection.
        out.clear();
        assert_eq!(s.next(&mut out), Step::Cart.index());
        assert_eq!(s.answered(Step::Cart.index(), 422, b"{}"), None);
        out.clear();
        assert_eq!(s.next(&mut out), Step::Cart.index());
        s.answered(Step::Cart.index(), 200, b"{}");
        s.next(&mut out);
        s.answered(
            Step::Order.index(),
            201,
            br#"{"id":"second","status":"pending"}"#,
        );
        out.clear();
        assert_eq!(s.next(&mut out), Step::Pay.index());
        assert!(text(&out).contains(CARD_DECLINED));
        s.lost(Step::Pay.index());
        // Cycle 5: an order whose payment is never sent.
        out.clear();
        assert_eq!(s.next(&mut out), Step::Cart.index());
        s.answered(Step::Cart.index(), 200, b"{}");
        s.next(&mut out);
        s.answered(Step::Order.index(), 201, br#"{"id":"third"}"#);
        let (tally, log) = s.take_log();
        assert_eq!(tally, Tally::default());
        assert_eq!((log.posts_sent, log.posts_answered), (4, 4));
        let expect: Vec<_> = log
            .orders
            .iter()
            .map(|o| (o.id.as_str(), o.expect))
            .collect();
        assert_eq!(
            expect,
            vec![
                (id, Expect::Paid),
                ("second", Expect::Unknown),
                ("third", Expect::Pending)
            ]
        );
        assert_eq!((log.ids_missing, log.pay_mismatch), (0, 0));
    }

    #[test]
    fn payments_that_contradict_the_card_and_ids_that_cannot_be_read() {
        let c = catalog(3);
        let w = Arc::new(
            Workload::new(
                "h",
                &Mix::only(false, true, false),
                Some(&c),
                &users(1),
                None,
                1,
                1,
            )
            .unwrap(),
        );
        let mut s = ConnScript::new(&w, "r", 0);
        let mut out = Vec::new();
        s.next(&mut out);
        s.answered(Step::Cart.index(), 200, b"");
        s.next(&mut out);
        s.answered(Step::Order.index(), 201, br#"{"id":"o1"}"#);
        s.next(&mut out);
        // Every checkout declines here, yet the server says paid.
        assert_eq!(
            s.answered(Step::Pay.index(), 200, br#"{"status":"paid"}"#),
            Some(Outcome::Paid)
        );
        s.next(&mut out);
        s.answered(Step::Cart.index(), 200, b"");
        s.next(&mut out);
        assert_eq!(
            s.answered(Step::Order.index(), 201, b"{}"),
            Some(Outcome::Created)
        );
        let (_, log) = s.take_log();
        assert_eq!(log.orders[0].expect, Expect::PaymentFailed);
        assert_eq!((log.pay_mismatch, log.ids_missing), (1, 1));
    }

    #[test]
    fn a_mix_follows_its_weights_in_requests() {
        let c = catalog(20);
        let sale = Arc::new(KeyedPost::new("h", "/buy", vec!["t0".into()], "{}"));
        let mix = Mix::parse("[weights]\nbrowse = 60\ncheckout = 30\nflash-sale = 10\n").unwrap();
        let w = Arc::new(Workload::new("h", &mix, Some(&c), &users(3), Some(sale), 0, 5).unwrap());
        let mut s = ConnScript::new(&w, "r", 0);
        let mut out = Vec::new();
        let mut per_step = [0u32; 6];
        for _ in 0..30_000 {
            let step = s.next(&mut out);
            per_step[usize::from(step)] += 1;
            // Answer everything well so that checkouts go the whole way.
            let body: &[u8] = match Step::of(step) {
                Step::Order => br#"{"id":"o"}"#,
                Step::Pay => br#"{"status":"paid"}"#,
                _ => b"{}",
            };
            s.answered(
                step,
                if step == Step::Order.index() {
                    201
                } else {
                    200
                },
                body,
            );
            out.clear();
        }
        let share = |steps: &[Step]| {
            steps
                .iter()
                .map(|s| per_step[usize::from(s.index())])
                .sum::<u32>() as f64
                / 30_000.0
        };
        assert!(
            (share(&[Step::Search, Step::Product]) - 0.6).abs() < 0.02,
            "{per_step:?}"
        );
        assert!(
            (share(&[Step::Cart, Step::Order, Step::Pay]) - 0.3).abs() < 0.02,
            "{per_step:?}"
        );
        assert!(
            (share(&[Step::Purchase]) - 0.1).abs() < 0.02,
            "{per_step:?}"
        );
        let (tally, log) = s.take_log();
        assert_eq!(tally.sent, u64::from(per_step[5]));
        assert_eq!(tally.answered, tally.sent);
        assert_eq!(log.posts_sent, u64::from(per_step[3]));
        // Every order was paid but perhaps the last, whose payment is next.
        let paid = log
            .orders
            .iter()
            .filter(|o| o.expect == Expect::Paid)
            .count();
        assert!(
            paid + 1 >= log.orders.len(),
            "{paid} of {}",
            log.orders.len()
        );
    }

    #[test]
    fn steps_round_trip() {
        for s in Step::ALL {
            assert_eq!(Step::of(s.index()), s);
        }
    }
}
