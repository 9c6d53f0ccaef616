//! Operating the node: Prometheus `/metrics` (content and `promtool check
//! metrics`), the gRPC side (health, reflection, `rayltics.node.v1`), and
//! configuration errors at start-up.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use rayltics_proto::node::v1::WhoOwnsRequest;
use rayltics_proto::node::v1::node_service_client::NodeServiceClient;
use support::{Node, get};
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

// ---------------------------------------------------------------------------
// /metrics
// ---------------------------------------------------------------------------

/// One sample line of the text exposition.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the sample lines of a Prometheus text exposition (label values may
/// contain braces, e.g. `route="/debug/shards/{key}"`).
fn parse_samples(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => (&line[..i], &line[i..]),
            None => panic!("sample without value: {line:?}"),
        };
        let mut labels = BTreeMap::new();
        let mut rest = rest;
        if let Some(mut inner) = rest.strip_prefix('{') {
            loop {
                if let Some(after) = inner.strip_prefix('}') {
                    rest = after;
                    break;
                }
                let inner_trim = inner.trim_start_matches(',');
                let eq = inner_trim
                    .find("=\"")
                    .unwrap_or_else(|| panic!("bad labels: {line:?}"));
                let key = inner_trim[..eq].to_owned();
                let value_start = &inner_trim[eq + 2..];
                let mut value = String::new();
                let mut chars = value_start.char_indices();
                let end = loop {
                    match chars.next() {
                        Some((_, '\\')) => {
                            if let Some((_, c)) = chars.next() {
                                value.push(if c == 'n' { '\n' } else { c });
                            }
                        }
                        Some((i, '"')) => break i,
                        Some((_, c)) => value.push(c),
                        None => panic!("unterminated label value: {line:?}"),
                    }
                };
                labels.insert(key, value);
                inner = &value_start[end + 1..];
            }
        }
        let value = rest
            .split_whitespace()
            .next()
            .unwrap_or_else(|| panic!("no value: {line:?}"));
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        out.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    out
}

/// The samples named `name` whose labels include every pair of `want`.
fn select<'a>(samples: &'a [Sample], name: &str, want: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            want.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

fn sum(samples: &[&Sample]) -> f64 {
    samples.iter().map(|s| s.value).sum()
}

/// Pipes `body` to `promtool check metrics`; requires exit 0. Fails when
/// promtool is missing unless `RAYLTICS_TEST_SKIP_PROMTOOL=1`.
fn promtool_check(body: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if std::env::var("RAYLTICS_TEST_SKIP_PROMTOOL").as_deref() == Ok("1") {
                eprintln!("promtool not found; skipped (RAYLTICS_TEST_SKIP_PROMTOOL=1)");
                return;
            }
            panic!(
                "promtool not found on PATH: install it (Debian package `prometheus`) \
                 or set RAYLTICS_TEST_SKIP_PROMTOOL=1 to skip this check"
            );
        }
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool output");
    assert!(
        out.status.success(),
        "promtool check metrics failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_count_requests_per_route_and_pass_promtool() {
    let node = Node::start();
    let shards = node.shards;

    // A guaranteed cross-shard hop: learn this connection's shard, then ask
    // for a key owned by another one.
    let mut conn = node.connect();
    let first = conn.request(&get("/debug/shards/probe")).json();
    let accepted = first["accepted_by"].as_u64().unwrap() as usize;
    let remote = (0..)
        .map(|i| format!("remote-{i}"))
        .find(|k| rayltics_shards::shard_for(k.as_bytes(), shards) != accepted)
        .unwrap();
    let hop = conn
        .request(&get(&format!("/debug/shards/{remote}")))
        .json();
    assert_ne!(hop["answered_by"], hop["accepted_by"], "{hop}");

    for _ in 0..3 {
        assert_eq!(node.get("/healthz").status, 200);
    }
    assert_eq!(node.get("/nope").status, 404);
    let bad = support::exchange_until_close(node.http, b"GARBAGE\r\n\r\n", Duration::from_secs(3));
    assert_eq!(support::statuses(&bad), vec![400]);

    let resp = conn.request(&get("/metrics"));
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let body = resp.text();
    let samples = parse_samples(&body);

    // Requests by route and status, labelled by shard.
    let requests = "rayltics_http_requests_total";
    let healthz = select(
        &samples,
        requests,
        &[("route", "/healthz"), ("status", "200")],
    );
    assert!(!healthz.is_empty(), "no /healthz series:\n{body}");
    for s in &healthz {
        let shard: usize = s.labels["shard"].parse().expect("numeric shard label");
        assert!(shard < shards, "{s:?}");
    }
    assert_eq!(sum(&healthz), 3.0, "{healthz:?}");
    let debug = select(
        &samples,
        requests,
        &[("route", "/debug/shards/{key}"), ("status", "200")],
    );
    assert_eq!(sum(&debug), 2.0, "{debug:?}");
    let unmatched = select(
        &samples,
        requests,
        &[("route", "unmatched"), ("status", "404")],
    );
    assert_eq!(sum(&unmatched), 1.0, "{unmatched:?}");
    let edge = select(&samples, requests, &[("route", "edge"), ("status", "400")]);
    assert_eq!(sum(&edge), 1.0, "{edge:?}");

    // Latency histogram alongside.
    let hist = "rayltics_http_request_duration_seconds";
    let count = select(&samples, &format!("{hist}_count"), &[("route", "/healthz")]);
    assert_eq!(sum(&count), 3.0, "{count:?}");
    let inf = select(
        &samples,
        &format!("{hist}_bucket"),
        &[("route", "/healthz"), ("le", "+Inf")],
    );
    assert_eq!(sum(&inf), 3.0, "{inf:?}");

    // Open connections per shard: at least this one.
    let open = select(&samples, "rayltics_http_open_connections", &[]);
    assert_eq!(open.len(), shards, "one gauge per shard: {open:?}");
    assert!(sum(&open) >= 1.0, "{open:?}");

    // Mesh events: the hop above was sent and received.
    let mesh = "rayltics_mesh_events_total";
    assert!(
        sum(&select(&samples, mesh, &[("kind", "sent")])) >= 1.0,
        "{body}"
    );
    assert!(
        sum(&select(&samples, mesh, &[("kind", "received")])) >= 1.0,
        "{body}"
    );

    for family in [requests, hist, "rayltics_http_open_connections", mesh] {
        assert!(
            body.contains(&format!("# HELP {family} ")),
            "no HELP for {family}"
        );
        assert!(
            body.contains(&format!("# TYPE {family} ")),
            "no TYPE for {family}"
        );
    }

    promtool_check(&body);
}

// ---------------------------------------------------------------------------
// gRPC
// ---------------------------------------------------------------------------

async fn channel(node: &Node) -> Channel {
    Channel::from_shared(node.grpc_url())
        .expect("grpc url")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to gRPC at {}: {e}", node.grpc))
}

#[tokio::test]
async fn grpc_health_reports_serving() {
    let node = Node::start();
    let mut health = HealthClient::new(channel(&node).await);
    for service in ["", "rayltics.node.v1.NodeService"] {
        let resp = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("Check({service:?}): {e}"))
            .into_inner();
        assert_eq!(
            resp.status,
            ServingStatus::Serving as i32,
            "Check({service:?})"
        );
    }
    let err = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
}

#[tokio::test]
async fn grpc_who_owns_is_answered_by_the_owner() {
    let node = Node::builder().shards(3).start();
    let mut client = NodeServiceClient::new(channel(&node).await);
    // More calls than shards: the sidecar spreads them over entry shards,
    // so some are routed over the mesh.
    for i in 0..12 {
        let key = format!("order-{i}");
        let resp = client
            .who_owns(WhoOwnsRequest { key: key.clone() })
            .await
            .unwrap_or_else(|e| panic!("WhoOwns({key}): {e}"))
            .into_inner();
        let owner = rayltics_shards::shard_for(key.as_bytes(), 3) as u32;
        assert_eq!(resp.owner_shard, owner, "{key}: {resp:?}");
        assert_eq!(resp.answered_by, owner, "{key}: {resp:?}");
        assert_eq!(resp.shard_count, 3, "{key}: {resp:?}");
    }
    for bad in [String::new(), "k".repeat(1025)] {
        let err = client
            .who_owns(WhoOwnsRequest { key: bad.clone() })
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "key of {} bytes: {err}",
            bad.len()
        );
    }
}

#[tokio::test]
async fn grpc_reflection_v1_lists_and_describes_the_services() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let node = Node::start();
    let mut client = ServerReflectionClient::new(channel(&node).await);
    let requests = vec![
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        },
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(
                "rayltics.node.v1.NodeService".into(),
            )),
        },
    ];
    let mut stream = client
        .server_reflection_info(futures::stream::iter(requests))
        .await
        .expect("ServerReflectionInfo")
        .into_inner();

    let listed = stream.message().await.expect("stream").expect("a reply");
    let Some(MessageResponse::ListServicesResponse(list)) = listed.message_response else {
        panic!("not a ListServices reply: {listed:?}");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for want in [
        "grpc.health.v1.Health",
        "rayltics.node.v1.NodeService",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(names.contains(&want), "{want} not listed in {names:?}");
    }

    let described = stream.message().await.expect("stream").expect("a reply");
    let Some(MessageResponse::FileDescriptorResponse(files)) = described.message_response else {
        panic!("not a FileDescriptor reply: {described:?}");
    };
    let found = files.file_descriptor_proto.iter().any(|f| {
        let text = String::from_utf8_lossy(f);
        text.contains("rayltics.node.v1") && text.contains("WhoOwns")
    });
    assert!(found, "no descriptor for rayltics.node.v1.NodeService");
}

#[tokio::test]
async fn grpc_reflection_v1alpha_lists_the_services() {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

    let node = Node::start();
    let mut client = ServerReflectionClient::new(channel(&node).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .expect("ServerReflectionInfo")
        .into_inner();
    let reply = stream.message().await.expect("stream").expect("a reply");
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("not a ListServices reply: {reply:?}");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
    assert!(names.contains(&"rayltics.node.v1.NodeService"), "{names:?}");
}

// ---------------------------------------------------------------------------
// Configuration errors
// ---------------------------------------------------------------------------

const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `serve` with `extra` args and env on port 0; requires exit code 2
/// and a stderr that names `field` (in any case: env keys are upper-case).
fn expect_config_error(extra: &[&str], env: &[(&str, &str)], field: &str) {
    let data_dir = support::unique_temp_path("cfg");
    let data_dir = data_dir.to_str().unwrap();
    let mut args = vec![
        "serve",
        "--http-addr",
        "127.0.0.1:0",
        "--grpc-addr",
        "127.0.0.1:0",
        "--data-dir",
        data_dir,
    ];
    args.extend_from_slice(extra);
    let out = support::run_to_exit(&args, env, EXIT_TIMEOUT);
    let _ = std::fs::remove_dir_all(data_dir);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{extra:?} {env:?}: {:?}\nstderr: {}",
        out.status,
        out.stderr
    );
    assert!(
        out.stderr.to_lowercase().contains(&field.to_lowercase()),
        "{extra:?} {env:?}: stderr does not name {field:?}:\n{}",
        out.stderr
    );
    assert!(
        !out.stdout.contains("listening"),
        "a rejected configuration must not start: {}",
        out.stdout
    );
}

#[test]
fn too_many_shards_is_rejected_with_exit_2() {
    expect_config_error(&["--shards", "2000"], &[], "shards");
}

#[test]
fn unknown_toml_fields_are_rejected_with_exit_2() {
    let dir = support::unique_temp_path("toml");
    std::fs::create_dir_all(&dir).unwrap();
    let top = dir.join("top.toml");
    std::fs::write(&top, "shards = 2\nhttp_adress = \"127.0.0.1:0\"\n").unwrap();
    let nested = dir.join("nested.toml");
    std::fs::write(&nested, "[http]\nmax_body_byte = 10\n").unwrap();
    let result = std::panic::catch_unwind(|| {
        expect_config_error(&["--config", top.to_str().unwrap()], &[], "http_adress");
        expect_config_error(
            &["--config", nested.to_str().unwrap()],
            &[],
            "max_body_byte",
        );
    });
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn invalid_env_and_missing_file_are_rejected_with_exit_2() {
    expect_config_error(
        &[],
        &[("RAYLTICS_HTTP__MAX_HEADERS", "500")],
        "http.max_headers",
    );
    expect_config_error(
        &[],
        &[("RAYLTICS_HTTP__IDLE_TIMEOUT_MS", "0")],
        "http.idle_timeout_ms",
    );
    expect_config_error(&[], &[("RAYLTICS_SHARDS", "many")], "shards");
    expect_config_error(
        &["--config", "/nonexistent/rayltics.toml"],
        &[],
        "/nonexistent/rayltics.toml",
    );
}
