//! The PostgreSQL store (`storage = "postgres"`) against a real server
//! (`RAYLTICS_TEST_PG_URL`; infra/local): PostgreSQL stopped and started
//! during a purchase storm, kill -9 of the node, and clear start-up errors.
//!
//! The outage test stops and starts the server with `infra/local/down.sh pg`
//! and `up.sh pg`, run from the repository root with this process's
//! `RAYLTICS_INFRA_DIR` / `RAYLTICS_PG_PORT` (the ones `up.sh` was run with),
//! so the tests of this file take turns.

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use support::Node;
use support::api::Client;

/// The tests of this file share one server, and one of them stops it.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether a server is configured; says why not otherwise.
fn have_pg(test: &str) -> bool {
    if support::test_pg_url().is_some() {
        return true;
    }
    eprintln!("skipping {test}: RAYLTICS_TEST_PG_URL is not set (infra/local/up.sh pg)");
    false
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the server crate lives in the workspace")
        .to_owned()
}

/// Runs `infra/local/{script} pg` from the repository root.
fn infra(script: &str) {
    let root = repo_root();
    let out = Command::new("bash")
        .arg(root.join("infra/local").join(script))
        .arg("pg")
        .current_dir(&root)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run infra/local/{script}: {e}"));
    assert!(
        out.status.success(),
        "infra/local/{script} pg failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts PostgreSQL again when dropped (a failing test must not leave it
/// down for the next one).
struct ServerDown;

impl ServerDown {
    fn stop() -> ServerDown {
        infra("down.sh");
        ServerDown
    }
}

impl Drop for ServerDown {
    fn drop(&mut self) {
        infra("up.sh");
    }
}

fn pg_node(data: &std::path::Path) -> Node {
    Node::builder()
        .commerce()
        .postgres()
        .env("RAYLTICS_POSTGRES__COMMIT_TIMEOUT_MS", 1000)
        .env("RAYLTICS_COMMERCE__ACCESS_TOKEN_TTL_SECS", 86_400)
        .data_dir(data)
        .start()
}

/// What a storm thread saw.
#[derive(Debug, Default)]
struct Seen {
    /// `(order id, owner's token)` of every 201.
    created: Vec<(String, String)>,
    /// 503 problem+json `unavailable` answers.
    unavailable: usize,
    /// Slowest answer.
    slowest: Duration,
}

/// Places orders until told to stop. Every answer must be a 201 or a 503
/// problem+json `unavailable`, within the client's I/O timeout.
/// A storm thread: requests as buyer `who` until `stop`, returning what it saw.
type Storm<T> = fn(&Node, usize, String, &AtomicBool) -> T;

/// Creates product `sku`, registers `buyers` users (`{tag}{i}@pg.test`) and
/// starts one `storm` thread per buyer.
fn start_storms<T: Send + 'static>(
    node: Node,
    sku: &str,
    buyers: usize,
    tag: &str,
    storm: Storm<T>,
) -> (Arc<Node>, Arc<AtomicBool>, Vec<thread::JoinHandle<T>>) {
    let mut admin = Client::admin(&node);
    admin.create_product(sku, 700, 1_000_000);
    let stop = Arc::new(AtomicBool::new(false));
    let node = Arc::new(node);
    let storms = (0..buyers)
        .map(|who| {
            let token = Client::register(&node, &format!("{tag}{who}@pg.test"))
                .0
                .token
                .unwrap();
            let (node, stop) = (node.clone(), stop.clone());
            thread::spawn(move || storm(&node, who, token, &stop))
        })
        .collect();
    (node, stop, storms)
}

fn order_storm(node: &Node, who: usize, token: String, stop: &AtomicBool) -> Seen {
    let mut c = Client::new(node);
    c.token = Some(token.clone());
    let mut seen = Seen::default();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let t = Instant::now();
        let r = c.post_idem(
            "/api/v1/orders",
            &format!("outage-{who}-{i}"),
            &json!({"items": [{"sku": "pg-stock", "quantity": 1}]}),
        );
        seen.slowest = seen.slowest.max(t.elapsed());
        match r.status {
            201 => seen
                .created
                .push((r.json()["id"].as_str().unwrap().to_owned(), token.clone())),
            503 => {
                r.assert_problem(503, "unavailable");
                seen.unavailable += 1;
                thread::sleep(Duration::from_millis(20));
            }
            other => panic!("unexpected {other} during the storm: {}", r.text()),
        }
    }
    seen
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_postgres_restart_during_writes_answers_503_and_loses_nothing() {
    if !have_pg("a_postgres_restart_during_writes_answers_503_and_loses_nothing") {
        return;
    }
    let _serial = serial();
    let data = support::unique_temp_path("pg-outage");
    let node = pg_node(&data);
    let ready = node.get("/readyz").json();
    assert_eq!(ready["backends"]["postgres"], "up", "{ready}");
    let (node, stop, storms) = start_storms(node, "pg-stock", 4, "outage", order_storm);

    thread::sleep(Duration::from_millis(700));
    let down = ServerDown::stop();
    // The node notices and says so.
    wait_until(
        "/readyz turns 503 naming postgres",
        Duration::from_secs(10),
        || {
            let r = node.get("/readyz");
            r.status == 503 && r.text().contains("postgres")
        },
    );
    let metrics = node.get("/metrics").text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("rayltics_journal_available{") && l.ends_with(" 0")),
        "the outage shows in rayltics_journal_available"
    );
    thread::sleep(Duration::from_millis(2500));
    drop(down); // up.sh pg
    wait_until("/readyz is 200 again", Duration::from_secs(30), || {
        node.get("/readyz").status == 200
    });
    // Orders succeed again by themselves.
    let (mut probe, _) = Client::register(&node, "probe@pg.test");
    let mut attempt = 0;
    wait_until(
        "an order succeeds after the restart",
        Duration::from_secs(30),
        || {
            attempt += 1;
            let r = probe.post_idem(
                "/api/v1/orders",
                &format!("probe-{attempt}"),
                &json!({"items": [{"sku": "pg-stock", "quantity": 1}]}),
            );
            if r.status != 201 {
                eprintln!("probe {attempt}: {} {}", r.status, r.text());
            }
            r.status == 201
        },
    );
    thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let seen: Vec<Seen> = storms.into_iter().map(|t| t.join().unwrap()).collect();
    let unavailable: usize = seen.iter().map(|s| s.unavailable).sum();
    let slowest = seen.iter().map(|s| s.slowest).max().unwrap_or_default();
    let created: Vec<(String, String)> = seen.into_iter().flat_map(|s| s.created).collect();
    eprintln!(
        "{} orders created, {unavailable} answered 503, slowest answer {slowest:?}",
        created.len()
    );
    assert!(unavailable > 0, "no request saw the outage");
    assert!(
        slowest < Duration::from_millis(4000),
        "an answer took {slowest:?} (commit timeout 1 s)"
    );

    // Every acknowledged order is there, now and after a kill -9 + restart
    // (which reads it back from PostgreSQL).
    let check = |node: &Node| {
        let mut c = Client::new(node);
        for (id, token) in &created {
            c.token = Some(token.clone());
            let r = c.get(&format!("/api/v1/orders/{id}"));
            assert_eq!(r.status, 200, "acknowledged order {id} lost: {}", r.text());
            assert_eq!(r.json()["status"], "pending");
        }
    };
    check(&node);
    node.signal(libc::SIGKILL);
    drop(node);
    let node = pg_node(&data);
    check(&node);
    drop(node);
    if let Some(url) = support::test_pg_url() {
        let schema = std::fs::read_to_string(data.join("test-pg-schema")).unwrap_or_default();
        support::drop_pg_schema(&url, schema.trim());
    }
    let _ = std::fs::remove_dir_all(&data);
}

/// Places, pays or cancels orders until told to stop; records the last
/// acknowledged status of each.
fn lifecycle_storm(
    node: &Node,
    who: usize,
    token: String,
    stop: &AtomicBool,
) -> Vec<(String, String, &'static str)> {
    let mut c = Client::new(node);
    c.token = Some(token.clone());
    let mut out = Vec::new();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let r = c.post_idem(
                "/api/v1/orders",
                &format!("kill-{who}-{i}"),
                &json!({"items": [{"sku": "pg-kill", "quantity": 1}]}),
            );
            if r.status != 201 {
                return None;
            }
            let id = r.json()["id"].as_str().unwrap().to_owned();
            let mut status = "pending";
            let path = match i % 3 {
                0 => None,
                1 => Some(format!("/api/v1/orders/{id}/pay")),
                _ => Some(format!("/api/v1/orders/{id}/cancel")),
            };
            if let Some(path) = path {
                let body =
                    json!({"payment_method": "test_card", "card_number": "4242424242424242"});
                let r = c.post(&path, &body);
                if r.status == 200 {
                    status = if i % 3 == 1 { "paid" } else { "cancelled" };
                }
            }
            Some((id, status))
        }));
        match step {
            Ok(Some((id, status))) => out.push((id, token.clone(), status)),
            Ok(None) => {}
            Err(_) => break, // the node died under us
        }
    }
    out
}

#[test]
fn kill_9_with_postgres_keeps_every_acknowledged_order_and_status() {
    if !have_pg("kill_9_with_postgres_keeps_every_acknowledged_order_and_status") {
        return;
    }
    let _serial = serial();
    let data = support::unique_temp_path("pg-kill9");
    let node = pg_node(&data);
    let (node, stop, storms) = start_storms(node, "pg-kill", 6, "kill", lifecycle_storm);
    thread::sleep(Duration::from_millis(1200));
    node.signal(libc::SIGKILL);
    stop.store(true, Ordering::Relaxed);
    let acknowledged: Vec<_> = storms.into_iter().flat_map(|t| t.join().unwrap()).collect();
    assert!(
        !acknowledged.is_empty(),
        "nothing was acknowledged before the kill"
    );
    drop(node);

    let node = pg_node(&data);
    assert!(
        node.stderr().contains("journal recovered from PostgreSQL"),
        "{}",
        node.stderr_tail()
    );
    let mut c = Client::new(&node);
    let mut reserved = 0;
    for (id, token, status) in &acknowledged {
        c.token = Some(token.clone());
        let r = c.get(&format!("/api/v1/orders/{id}"));
        assert_eq!(r.status, 200, "acknowledged order {id} lost: {}", r.text());
        let now = r.json()["status"].as_str().unwrap().to_owned();
        // A pay or cancel cut off by the kill may have committed unanswered.
        let ok = now == *status
            || (*status == "pending"
                && ["paid", "cancelled", "payment_failed"].contains(&now.as_str()));
        assert!(ok, "order {id}: acknowledged {status}, now {now}");
        if now == "pending" {
            reserved += 1;
        }
    }
    let inv = Client::new(&node).get("/api/v1/inventory/pg-kill").json();
    assert!(
        inv["reserved"].as_i64().unwrap() >= reserved,
        "pending orders hold their stock: {inv}"
    );
    eprintln!(
        "{} acknowledged orders checked after kill -9",
        acknowledged.len()
    );
    drop(node);
    if let Some(url) = support::test_pg_url() {
        let schema = std::fs::read_to_string(data.join("test-pg-schema")).unwrap_or_default();
        support::drop_pg_schema(&url, schema.trim());
    }
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn a_wrong_url_is_a_clear_start_up_error() {
    if !have_pg("a_wrong_url_is_a_clear_start_up_error") {
        return;
    }
    let _serial = serial();
    let data = support::unique_temp_path("pg-wrong-url");
    let dir = data.to_str().unwrap().to_owned();
    let serve = |url: &str| {
        support::run_to_exit(
            &[
                "serve",
                "--shards",
                "1",
                "--data-dir",
                &dir,
                "--http-addr",
                "127.0.0.1:0",
                "--grpc-addr",
                "127.0.0.1:0",
            ],
            &[
                ("RAYLTICS_STORAGE", "postgres"),
                ("RAYLTICS_POSTGRES__URL", url),
            ],
            Duration::from_secs(20),
        )
    };
    // Nobody listens there.
    let out = serve("postgres://rayltics:hunter2@127.0.0.1:1/nowhere");
    assert!(
        !out.status.success(),
        "started without a server: {}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("postgres://rayltics@127.0.0.1:1/nowhere"),
        "the URL is named: {}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("hunter2"),
        "the password leaked: {}",
        out.stderr
    );
    // The server is there, the database is not.
    let url = support::test_pg_url().unwrap();
    let (base, _) = url.rsplit_once('/').unwrap();
    let out = serve(&format!("{base}/no_such_database"));
    assert!(!out.status.success());
    assert!(out.stderr.contains("no_such_database"), "{}", out.stderr);
    // Wrong credentials: a role the server does not know.
    let (scheme_and_user, host_and_db) = url.split_once('@').unwrap();
    let (scheme, _) = scheme_and_user.split_once("//").unwrap();
    let out = serve(&format!("{scheme}//no_such_role@{host_and_db}"));
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("role \"no_such_role\" does not exist"),
        "{}",
        out.stderr
    );
    // Nothing configured at all.
    let out = support::run_to_exit(
        &["serve", "--data-dir", &dir],
        &[("RAYLTICS_STORAGE", "postgres")],
        Duration::from_secs(20),
    );
    assert!(!out.status.success());
    assert!(out.stderr.contains("postgres.url"), "{}", out.stderr);

    // `rayltics migrate` applies the migrations, idempotently.
    let schema = format!("t_migrate_{}", std::process::id());
    for _ in 0..2 {
        let out = support::run_to_exit(
            &["migrate"],
            &[
                ("RAYLTICS_POSTGRES__URL", &url),
                ("RAYLTICS_POSTGRES__SCHEMA", &schema),
            ],
            Duration::from_secs(20),
        );
        assert!(out.status.success(), "{}", out.stderr);
        assert!(out.stdout.contains("migrations applied"), "{}", out.stdout);
    }
    support::drop_pg_schema(&url, &schema);
    let _ = std::fs::remove_dir_all(&data);
}
