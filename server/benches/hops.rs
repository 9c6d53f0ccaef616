//! Cross-shard and shard -> sidecar -> shard hop costs, on real pinned shards.
//!
//! `cargo bench -p rayltics --bench hops [-- --secs S]`
//!
//! Reports, for the mesh (shard 0 calling shard 1) and for the sidecar bridge
//! (shard 0 calling the tokio sidecar):
//! - one call at a time, target idle-but-spinning (back-to-back calls),
//! - one call at a time, target parked (1 ms gap: includes the wake-up),
//! - one call at a time, target busy (a CPU-bound task yields every ~2 us),
//! - throughput with 64 calls in flight.
//!
//! Results go to stdout (Markdown) and `target/bench-results/hops.json`.

use std::rc::Rc;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rayltics::bridge::{ShardInboxes, SidecarHandle};
use rayltics::commerce::CommerceShared;
use rayltics::service::{ShardEnvelope, ShardRequest, ShardRouter};
use rayltics::sidecar::Sidecar;
use rayltics_shards::{Mesh, MeshOptions, RuntimeOptions, spawn_shards, yield_now};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    Mesh,
    Sidecar,
}

#[derive(Debug)]
struct Row {
    path: &'static str,
    case: &'static str,
    p50_us: f64,
    p99_us: f64,
    per_sec: f64,
}

fn main() {
    let secs: f64 = std::env::args()
        .skip_while(|a| a != "--secs")
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let cores = RuntimeOptions::available_cores();
    let (inboxes, _rx) = ShardInboxes::new(2);
    let sidecar = Sidecar::start("127.0.0.1:0".parse().unwrap(), inboxes, None).expect("sidecar");
    let handle = sidecar.handle();

    let mut rows = Vec::new();
    for target in [Target::Mesh, Target::Sidecar] {
        for case in [
            "sequential",
            "target parked (1 ms gaps)",
            "target busy",
            "64 in flight",
        ] {
            rows.push(run(target, case, secs, &cores, handle.clone()));
        }
    }
    sidecar.stop();

    println!("| path | case | p50 us | p99 us | calls/s |");
    println!("|---|---|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.0} |",
            r.path, r.case, r.p50_us, r.p99_us, r.per_sec
        );
    }
    let json: Vec<_> = rows
        .iter()
        .map(|r| {
            serde_json::json!({"path": r.path, "case": r.case, "p50_us": r.p50_us,
                               "p99_us": r.p99_us, "calls_per_sec": r.per_sec})
        })
        .collect();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-results");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(
        dir.join("hops.json"),
        serde_json::to_vec_pretty(
            &serde_json::json!({"schema_version": 1, "cores": cores, "rows": json}),
        )
        .unwrap(),
    );
}

fn run(
    target: Target,
    case: &'static str,
    secs: f64,
    cores: &[usize],
    sidecar: SidecarHandle,
) -> Row {
    let endpoints = Mesh::build::<ShardEnvelope>(2, MeshOptions::default()).expect("mesh");
    let (tx, rx) = mpsc::channel();
    let per_shard: Vec<_> = endpoints
        .into_iter()
        .map(|e| (e, tx.clone(), sidecar.clone()))
        .collect();
    drop(tx);
    let config = rayltics::config::Config {
        data_dir: std::env::temp_dir().join(format!("rayltics-hops-{}", std::process::id())),
        journal: rayltics::config::JournalConfig {
            fsync: false,
            ..Default::default()
        },
        ..Default::default()
    };
    let commerce = Arc::new(CommerceShared::new(&config).expect("commerce context"));
    let data_dir = config.data_dir.clone();
    let options = RuntimeOptions {
        cores: cores.to_vec(),
        ..RuntimeOptions::default()
    };
    let duration = Duration::from_secs_f64(secs);
    let threads = spawn_shards(&options, per_shard, move |id, (endpoint, tx, sidecar)| {
        let state = commerce.open_shard(id, 2, None).expect("shard state");
        async move {
            let state = Rc::new(state);
            let router = ShardRouter::start(endpoint, state.clone()).expect("router");
            *state.router.borrow_mut() = Some(router.clone());
            if id == 1 {
                if case == "target busy" {
                    // Simulated request work: ~2 us of CPU between yields.
                    let until = Instant::now() + duration + Duration::from_millis(500);
                    while Instant::now() < until {
                        let t = Instant::now();
                        while t.elapsed() < Duration::from_micros(2) {
                            std::hint::spin_loop();
                        }
                        yield_now().await;
                    }
                } else {
                    monoio::time::sleep(duration + Duration::from_millis(500)).await;
                }
                return;
            }
            monoio::time::sleep(Duration::from_millis(100)).await;
            let result = drive(&router, &sidecar, target, case, duration).await;
            let _ = tx.send(result);
        }
    })
    .expect("shards");
    let (hist, calls, elapsed) = rx.recv().expect("driver result");
    for t in threads {
        let _ = t.join();
    }
    let _ = std::fs::remove_dir_all(data_dir);
    Row {
        path: if target == Target::Mesh {
            "mesh shard0->shard1"
        } else {
            "shard0->sidecar->shard0"
        },
        case,
        p50_us: hist.value_at_quantile(0.5) as f64 / 1000.0,
        p99_us: hist.value_at_quantile(0.99) as f64 / 1000.0,
        per_sec: calls as f64 / elapsed.as_secs_f64(),
    }
}

async fn one(router: &ShardRouter, sidecar: &SidecarHandle, target: Target) {
    match target {
        Target::Mesh => {
            router.call(1, ShardRequest::Ping).await.expect("ping");
        }
        Target::Sidecar => {
            sidecar.echo().await.expect("echo");
        }
    }
}

async fn drive(
    router: &ShardRouter,
    sidecar: &SidecarHandle,
    target: Target,
    case: &str,
    duration: Duration,
) -> (Histogram<u64>, u64, Duration) {
    let mut hist = Histogram::<u64>::new(3).unwrap();
    let started = Instant::now();
    let mut calls = 0u64;
    if case == "64 in flight" {
        let done = Rc::new(std::cell::Cell::new(0u64));
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (router, sidecar, done) = (router.clone(), sidecar.clone(), done.clone());
            tasks.push(monoio::spawn(async move {
                let mut h = Histogram::<u64>::new(3).unwrap();
                while started.elapsed() < duration {
                    let t = Instant::now();
                    one(&router, &sidecar, target).await;
                    let _ = h.record(t.elapsed().as_nanos() as u64);
                    done.set(done.get() + 1);
                }
                h
            }));
        }
        for t in tasks {
            hist.add(t.await).unwrap();
        }
        calls = done.get();
    } else {
        while started.elapsed() < duration {
            if case.starts_with("target parked") {
                monoio::time::sleep(Duration::from_millis(1)).await;
            }
            let t = Instant::now();
            one(router, sidecar, target).await;
            let _ = hist.record(t.elapsed().as_nanos() as u64);
            calls += 1;
        }
    }
    (hist, calls, started.elapsed())
}
