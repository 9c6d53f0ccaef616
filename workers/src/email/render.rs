//! The order mails: subject, plain text and an HTML alternative, rendered
//! from the order in the event.
//!
//! Templates are Rust format strings, not a template engine: there are
//! three fixed mails, the compiler checks every placeholder, nothing can
//! fail at run time, and no dependency is added. Values that reach the HTML
//! part go through [`html_escape`]. Operator-editable templates would call
//! for a crate (minijinja); that is not needed yet.

use std::fmt::Write as _;

use rayltics_proto::events::v1 as pb;

/// Which mail an event asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailKind {
    /// `order.created`: the order was received (pending payment).
    Confirmation,
    /// `order.payment_failed`: the card was declined, stock released.
    PaymentFailed,
    /// `order.expired`: not paid in time, stock released.
    Expired,
}

impl MailKind {
    /// The mail an event kind asks for; `None` for kinds that send none.
    pub fn for_event(kind: &str) -> Option<Self> {
        match kind {
            "order.created" => Some(Self::Confirmation),
            "order.payment_failed" => Some(Self::PaymentFailed),
            "order.expired" => Some(Self::Expired),
            _ => None,
        }
    }

    /// The event kind, also the metric label.
    pub fn event_kind(self) -> &'static str {
        match self {
            Self::Confirmation => "order.created",
            Self::PaymentFailed => "order.payment_failed",
            Self::Expired => "order.expired",
        }
    }
}

/// A rendered mail, before addressing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// `Subject:`.
    pub subject: String,
    /// The text/plain part.
    pub text: String,
    /// The text/html alternative.
    pub html: String,
}

/// Renders the mail `kind` for `order`, signed by `shop`.
pub fn render(kind: MailKind, order: &pb::Order, shop: &str) -> Rendered {
    let id = &order.id;
    let (subject, lead) = match kind {
        MailKind::Confirmation => (
            format!("[{shop}] Order {id} received"),
            format!(
                "Thank you for your order. We have reserved your items until {}; \
                 please pay before then.",
                order.expires_at
            ),
        ),
        MailKind::PaymentFailed => (
            format!("[{shop}] Payment failed for order {id}"),
            "Your payment was declined, so the order was not completed and the \
             reserved items were released. You can place the order again."
                .to_owned(),
        ),
        MailKind::Expired => (
            format!("[{shop}] Order {id} expired"),
            format!(
                "Your order was not paid by {} and has expired; the reserved items \
                 were released.",
                order.expires_at
            ),
        ),
    };
    let total = money(order.total_cents, &order.currency);
    let mut text = format!("Hello,\n\n{lead}\n\nOrder {id}\n");
    let mut rows = String::new();
    for l in &order.items {
        let price = money(l.price_cents, &order.currency);
        let _ = writeln!(text, "  {} x {} at {}", l.quantity, l.sku, price);
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            html_escape(&l.sku),
            l.quantity,
            html_escape(&price)
        );
    }
    let _ = write!(text, "Total: {total}\n\n-- \n{shop}\n");
    let html = format!(
        "<!DOCTYPE html><html><body><p>Hello,</p><p>{lead}</p>\
         <p>Order <b>{id}</b></p>\
         <table><tr><th>SKU</th><th>Quantity</th><th>Price</th></tr>{rows}</table>\
         <p>Total: <b>{total}</b></p><p>&mdash; {shop}</p></body></html>",
        lead = html_escape(&lead),
        id = html_escape(id),
        total = html_escape(&total),
        shop = html_escape(shop),
    );
    Rendered {
        subject,
        text,
        html,
    }
}

/// Minor units as a decimal amount with its currency (`1234 EUR` ->
/// `12.34 EUR`; currencies without minor units as they are).
pub fn money(cents: i64, currency: &str) -> String {
    const ZERO_DECIMALS: &[&str] = &["JPY", "KRW", "VND", "CLP", "ISK", "UGX", "XAF", "XOF"];
    if ZERO_DECIMALS.contains(&currency) {
        return format!("{cents} {currency}");
    }
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02} {currency}", abs / 100, abs % 100)
}

/// Escapes `&`, `<`, `>`, `"` and `'` for HTML text and attributes.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> pb::Order {
        pb::Order {
            id: "o-1".into(),
            user_id: "u-1".into(),
            status: "pending".into(),
            items: vec![pb::OrderLine {
                sku: "<b>SKU</b>".into(),
                quantity: 2,
                price_cents: 1999,
            }],
            total_cents: 3998,
            currency: "EUR".into(),
            expires_at: "2026-11-25T10:15:00Z".into(),
            user_email: "a@b.test".into(),
            ..Default::default()
        }
    }

    #[test]
    fn kinds_map_to_mails() {
        assert_eq!(
            MailKind::for_event("order.created"),
            Some(MailKind::Confirmation)
        );
        assert_eq!(MailKind::for_event("order.paid"), None);
        for k in [
            MailKind::Confirmation,
            MailKind::PaymentFailed,
            MailKind::Expired,
        ] {
            assert_eq!(MailKind::for_event(k.event_kind()), Some(k));
        }
    }

    #[test]
    fn a_confirmation_names_the_order_its_lines_and_total() {
        let r = render(MailKind::Confirmation, &order(), "Shop");
        assert_eq!(r.subject, "[Shop] Order o-1 received");
        assert!(r.text.contains("2 x <b>SKU</b> at 19.99 EUR"), "{}", r.text);
        assert!(r.text.contains("Total: 39.98 EUR"), "{}", r.text);
        assert!(r.html.contains("&lt;b&gt;SKU&lt;/b&gt;"), "{}", r.html);
        assert!(!r.html.contains("<b>SKU"), "{}", r.html);
    }

    #[test]
    fn failure_and_expiry_subjects() {
        assert_eq!(
            render(MailKind::PaymentFailed, &order(), "S").subject,
            "[S] Payment failed for order o-1"
        );
        assert_eq!(
            render(MailKind::Expired, &order(), "S").subject,
            "[S] Order o-1 expired"
        );
    }

    #[test]
    fn money_formats_minor_units() {
        assert_eq!(money(5, "EUR"), "0.05 EUR");
        assert_eq!(money(-1234, "USD"), "-12.34 USD");
        assert_eq!(money(500, "JPY"), "500 JPY");
    }
}
