//! A JSON client of the REST API over one keep-alive connection, and the
//! steps most commerce tests share (register, log in, create products).

use serde_json::{Value, json};

use super::{ADMIN_EMAIL, ADMIN_PASSWORD, Conn, Node, Resp};

/// RFC 3339 UTC of now plus `secs` (negative: in the past), for sale windows.
pub fn rfc3339_in(secs: i64) -> String {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    rayltics_commerce::clock::rfc3339(now_ms + secs * 1000)
}

/// One client: a connection, and the bearer token it sends (if any).
#[derive(Debug)]
pub struct Client {
    conn: Conn,
    addr: std::net::SocketAddr,
    /// Access token sent as `Authorization: Bearer`.
    pub token: Option<String>,
}

impl Client {
    /// An anonymous client of `node`.
    pub fn new(node: &Node) -> Client {
        Client {
            conn: node.connect(),
            addr: node.http,
            token: None,
        }
    }

    /// Sends a request with an optional JSON body and extra headers.
    pub fn call(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut req = format!("{method} {path} HTTP/1.1\r\nhost: test\r\n");
        if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
            req.push_str("content-type: application/json\r\n");
        }
        req.push_str(&format!("content-length: {}\r\n", body.len()));
        if let Some(t) = &self.token {
            req.push_str(&format!("authorization: Bearer {t}\r\n"));
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(&body);
        let resp = self.conn.request(req.as_bytes());
        if resp.closes() {
            self.conn = Conn::open(self.addr);
        }
        resp
    }

    /// GET.
    pub fn get(&mut self, path: &str) -> Resp {
        self.call("GET", path, None, &[])
    }

    /// POST with a JSON body.
    pub fn post(&mut self, path: &str, body: &Value) -> Resp {
        self.call("POST", path, Some(body), &[])
    }

    /// POST with a JSON body and an `Idempotency-Key`.
    pub fn post_idem(&mut self, path: &str, key: &str, body: &Value) -> Resp {
        self.call("POST", path, Some(body), &[("idempotency-key", key)])
    }

    /// Registers a user and keeps its access token; returns the session.
    pub fn register(node: &Node, email: &str) -> (Client, Value) {
        let mut c = Client::new(node);
        let r = c.post(
            "/api/v1/auth/register",
            &json!({"email": email, "password": "password-123", "name": "Test User"}),
        );
        assert_eq!(r.status, 201, "register {email}: {}", r.text());
        let session = r.json();
        c.token = Some(session["access_token"].as_str().unwrap().to_owned());
        (c, session)
    }

    /// Logs the bootstrapped admin in.
    pub fn admin(node: &Node) -> Client {
        let mut c = Client::new(node);
        let r = c.post(
            "/api/v1/auth/login",
            &json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}),
        );
        assert_eq!(r.status, 200, "admin login: {}", r.text());
        c.token = Some(r.json()["access_token"].as_str().unwrap().to_owned());
        c
    }

    /// (admin) Creates a product with `stock` units at `price_cents` USD.
    pub fn create_product(&mut self, sku: &str, price_cents: i64, stock: i64) -> Value {
        let r = self.post(
            "/api/v1/products",
            &json!({
                "sku": sku, "name": format!("Product {sku}"),
                "description": "A product for tests", "price_cents": price_cents,
                "currency": "USD", "category": "test", "attributes": {}, "stock": stock
            }),
        );
        assert_eq!(r.status, 201, "create product {sku}: {}", r.text());
        r.json()
    }
}
