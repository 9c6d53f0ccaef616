//! Append + commit throughput with group commit.
//!
//! On a monoio (epoll) runtime, as on a shard: `C` tasks each loop
//! `append(event); commit().await` for `SECS` seconds (default 2) with
//! fdatasync on, for several concurrency levels. Reports commits/s, how many
//! commits one fdatasync covered, the mean fdatasync time and commit latency
//! percentiles. Then the framing alone (sync off, one task, 1M records):
//! encode + CRC + hand-off + write.
//!
//! `cargo bench -p rayltics-journal --bench append`
//! (`CONCURRENCY=1,16,256` and `SECS=5` to change the defaults)

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rayltics_journal::{Journal, JournalOptions};

mod common;
use common::{OrderEvent, event};

fn runtime() -> monoio::Runtime<monoio::LegacyDriver> {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .build()
        .unwrap()
}

fn group_commit(concurrency: usize, secs: f64) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    runtime().block_on(async move {
        let (j, _) = Journal::<OrderEvent>::open(&root, 0, JournalOptions::default()).unwrap();
        monoio::spawn(j.flusher());
        let hist = Rc::new(RefCell::new(
            Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap(),
        ));
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        let start = Instant::now();
        let tasks: Vec<_> = (0..concurrency)
            .map(|t| {
                let j = j.clone();
                let hist = hist.clone();
                monoio::spawn(async move {
                    let mut i = t as u64;
                    while Instant::now() < deadline {
                        let t0 = Instant::now();
                        j.append(&event(i)).unwrap();
                        j.commit().await.unwrap();
                        hist.borrow_mut()
                            .record(t0.elapsed().as_nanos() as u64)
                            .unwrap();
                        i += concurrency as u64;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
        let elapsed = start.elapsed();
        let s = j.stats_view();
        let h = hist.borrow().clone();
        let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "sync  C={concurrency:<4} {:>9.0} commits/s  {:>7} fdatasyncs ({:>6.1} commits each, \
             mean {:>6.1} us)  latency us p50 {:>7.1} p99 {:>7.1} p99.9 {:>7.1} max {:>8.1}",
            s.appended as f64 / elapsed.as_secs_f64(),
            s.fdatasyncs,
            s.appended as f64 / s.fdatasyncs.max(1) as f64,
            s.fdatasync_micros as f64 / s.fdatasyncs.max(1) as f64,
            us(0.5),
            us(0.99),
            us(0.999),
            h.max() as f64 / 1000.0,
        );
        j.close().await.unwrap();
    });
}

fn framing_only(n: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let (j, _) = Journal::<OrderEvent>::open(tmp.path(), 0, opts_nosync()).unwrap();
    let events: Vec<_> = (0..4096).map(event).collect();
    let t = Instant::now();
    for i in 0..n {
        j.append(&events[(i % 4096) as usize]).unwrap();
    }
    let encode = t.elapsed();
    j.commit_blocking().unwrap();
    drop(j);
    let (j, _) = Journal::<OrderEvent>::open(tmp.path(), 1, opts_nosync()).unwrap();
    let t = Instant::now();
    for i in 0..n {
        j.append(&events[(i % 4096) as usize]).unwrap();
        if i % 4096 == 4095 {
            j.commit_blocking().unwrap();
        }
    }
    j.commit_blocking().unwrap();
    let total = t.elapsed();
    println!(
        "nosync framing: append (encode + frame + crc) {:.0} ns/record; append + commit of \
         4096-record batches {:.2} M records/s ({:.0} MiB/s)",
        encode.as_nanos() as f64 / n as f64,
        n as f64 / total.as_secs_f64() / 1e6,
        j.stats_view().bytes_written as f64 / (1 << 20) as f64 / total.as_secs_f64(),
    );
}

fn opts_nosync() -> JournalOptions {
    JournalOptions {
        sync: false,
        ..JournalOptions::default()
    }
}

fn main() {
    let secs: f64 = std::env::var("SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let levels: Vec<usize> = std::env::var("CONCURRENCY")
        .unwrap_or_else(|_| "1,8,64,512".into())
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    for c in levels {
        group_commit(c, secs);
    }
    framing_only(1_000_000);
}
