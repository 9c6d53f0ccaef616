//! Auth through the public HTTP API: register, login, me, refresh rotation
//! with family revocation on re-use, logout, roles, login rate limits.

mod support;

use serde_json::json;

use support::api::Client;
use support::{ADMIN_EMAIL, Node};

#[test]
fn register_login_me_and_errors() {
    let node = Node::builder().commerce().start();
    let (mut c, session) = Client::register(&node, "Carol@Auth.Test");
    assert_eq!(session["token_type"], "Bearer");
    assert_eq!(session["expires_in"], 900);
    assert_eq!(session["user"]["email"], "carol@auth.test");
    assert_eq!(session["user"]["role"], "customer");
    let me = c.get("/api/v1/me");
    assert_eq!(me.status, 200);
    assert_eq!(me.json(), session["user"]);

    let mut anon = Client::new(&node);
    let dup = anon.post(
        "/api/v1/auth/register",
        &json!({"email": "carol@auth.test", "password": "password-123", "name": "C"}),
    );
    dup.assert_problem(409, "email_taken");
    let login = |c: &mut Client, email: &str, pw: &str| {
        c.post(
            "/api/v1/auth/login",
            &json!({"email": email, "password": pw}),
        )
    };
    login(&mut anon, "carol@auth.test", "wrong-password")
        .assert_problem(401, "invalid_credentials");
    login(&mut anon, "nobody@auth.test", "password-123").assert_problem(401, "invalid_credentials");
    let ok = login(&mut anon, "CAROL@auth.test", "password-123");
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.json()["user"]["id"], session["user"]["id"]);

    anon.get("/api/v1/me").assert_problem(401, "unauthorized");
    anon.token = Some("not.a.jwt".into());
    let r = anon.get("/api/v1/me");
    r.assert_problem(401, "unauthorized");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));

    // Customers are not admins; the bootstrapped admin is.
    c.post("/api/v1/products", &json!({"sku": "x"}))
        .assert_problem(403, "forbidden");
    let mut admin = Client::admin(&node);
    let me = admin.get("/api/v1/me").json();
    assert_eq!(
        (me["email"].as_str(), me["role"].as_str()),
        (Some(ADMIN_EMAIL), Some("admin"))
    );
}

#[test]
fn register_validates_every_field() {
    let node = Node::builder().commerce().start();
    let mut c = Client::new(&node);
    let cases = [
        (
            json!({"email": "", "password": "password-123", "name": "n"}),
            "email",
        ),
        (
            json!({"email": "no-at-sign", "password": "password-123", "name": "n"}),
            "email",
        ),
        (
            json!({"email": "a@b.co", "password": "short", "name": "n"}),
            "password",
        ),
        (
            json!({"email": "a@b.co", "password": "x".repeat(129), "name": "n"}),
            "password",
        ),
        (
            json!({"email": "a@b.co", "password": "password-123", "name": ""}),
            "name",
        ),
        (
            json!({"email": "a@b.co", "password": "password-123", "name": "n".repeat(101)}),
            "name",
        ),
        (
            json!({"email": "a@b.co", "password": 12345678, "name": "n"}),
            "password",
        ),
        (
            json!({"email": "a@b.co", "password": "password-123"}),
            "name",
        ),
        (
            json!({"email": "a@b.co", "password": "password-123", "name": "n", "x": 1}),
            "x",
        ),
        (json!(["not", "an", "object"]), ""),
    ];
    for (body, field) in cases {
        let r = c.post("/api/v1/auth/register", &body);
        r.assert_problem(422, "validation_failed");
        assert!(
            r.json()["detail"].as_str().unwrap().contains(field),
            "{body}: {}",
            r.text()
        );
    }
    // An empty or broken body is malformed, not merely invalid.
    c.call("POST", "/api/v1/auth/register", None, &[])
        .assert_problem(400, "bad_request");
}

#[test]
fn refresh_rotates_and_reuse_revokes_the_family() {
    let node = Node::builder().commerce().start();
    let (mut c, session) = Client::register(&node, "dave@auth.test");
    let first = session["refresh_token"].as_str().unwrap().to_owned();
    let r = c.post("/api/v1/auth/refresh", &json!({"refresh_token": first}));
    assert_eq!(r.status, 200, "{}", r.text());
    let second = r.json()["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    assert!(r.json()["access_token"].is_string());

    // Re-using the rotated token revokes the whole family...
    c.post("/api/v1/auth/refresh", &json!({"refresh_token": first}))
        .assert_problem(401, "unauthorized");
    // ...so even the latest token no longer works.
    c.post("/api/v1/auth/refresh", &json!({"refresh_token": second}))
        .assert_problem(401, "unauthorized");

    // Logout ends a session; a garbage token is refused without detail.
    let login = c
        .post(
            "/api/v1/auth/login",
            &json!({"email": "dave@auth.test", "password": "password-123"}),
        )
        .json();
    let t = login["refresh_token"].as_str().unwrap();
    assert_eq!(
        c.post("/api/v1/auth/logout", &json!({"refresh_token": t}))
            .status,
        204
    );
    c.post("/api/v1/auth/refresh", &json!({"refresh_token": t}))
        .assert_problem(401, "unauthorized");
    c.post(
        "/api/v1/auth/refresh",
        &json!({"refresh_token": "rt1.garbage"}),
    )
    .assert_problem(401, "unauthorized");
}

#[test]
fn login_attempts_are_rate_limited_per_email() {
    let node = Node::builder()
        .commerce()
        .env("RAYLTICS_COMMERCE__LOGIN_BURST", 3)
        .env("RAYLTICS_COMMERCE__LOGIN_PER_MINUTE", 1)
        .start();
    let (mut c, _) = Client::register(&node, "eve@auth.test");
    for _ in 0..3 {
        c.post(
            "/api/v1/auth/login",
            &json!({"email": "eve@auth.test", "password": "nope-nope"}),
        )
        .assert_problem(401, "invalid_credentials");
    }
    let r = c.post(
        "/api/v1/auth/login",
        &json!({"email": "eve@auth.test", "password": "password-123"}),
    );
    r.assert_problem(429, "rate_limited");
    assert!(r.header("retry-after").is_some());
}

#[test]
fn sessions_survive_a_restart() {
    let data = support::unique_temp_path("auth-restart");
    let node = Node::builder().commerce().data_dir(&data).start();
    let (mut c, session) = Client::register(&node, "frank@auth.test");
    drop(node);
    let node = Node::builder().commerce().data_dir(&data).start();
    // The signing key was kept in the data dir; the refresh family too.
    let mut c2 = Client::new(&node);
    c2.token = c.token.take();
    assert_eq!(c2.get("/api/v1/me").status, 200);
    let r = c2.post(
        "/api/v1/auth/refresh",
        &json!({"refresh_token": session["refresh_token"]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    drop(node);
    let _ = std::fs::remove_dir_all(&data);
}
