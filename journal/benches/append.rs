//! Append + commit throughput with group commit, preallocated segments
//! against growing ones.
//!
//! On a monoio (epoll) runtime, as on a shard: `C` tasks each loop
//! `append(event); commit().await` for `SECS` seconds (default 2) with
//! fdatasync on, for several concurrency levels. Each level runs `ROUNDS`
//! (default 3) A/B pairs, alternating which goes first: `grown` (no
//! preallocation: every batch grows the segment file) and `prealloc` (the
//! segment is a zero-filled spare: every batch overwrites). Each run
//! starts in a fresh segment of its kind (a record, a snapshot that covers
//! it, then the timed batches rotate). Reports commits/s, commits per
//! fdatasync, fdatasync mean/p50/p99 and commit latency percentiles per
//! run, then the medians per kind. Then the framing alone (sync off, one
//! task, 1M records): encode + CRC + hand-off + write.
//!
//! fdatasync percentiles come from the journal's own counters: after each
//! commit a task reads `fdatasyncs` and `fdatasync_micros`, and when exactly
//! one fdatasync completed since the last look, the difference is its
//! duration (microsecond resolution).
//!
//! `cargo bench -p rayltics-journal --bench append`
//! (`CONCURRENCY=1,16,256`, `SECS=5`, `ROUNDS=5` to change the defaults)

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rayltics_journal::{Journal, JournalOptions, JournalStats};

mod common;
use common::{OrderEvent, event};

fn runtime() -> monoio::Runtime<monoio::LegacyDriver> {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .build()
        .unwrap()
}

/// One timed run.
#[derive(Debug, Clone, Copy)]
struct Run {
    commits_per_sec: f64,
    commits_per_sync: f64,
    sync_mean_us: f64,
    sync_p50_us: f64,
    sync_p99_us: f64,
    commit_p50_us: f64,
    commit_p99_us: f64,
    commit_p999_us: f64,
}

/// Durations of single fdatasyncs, read off the journal's counters.
struct SyncSampler {
    last: (u64, u64),
    hist: Histogram<u64>,
}

impl SyncSampler {
    fn look(&mut self, stats: &JournalStats) {
        let micros = || stats.fdatasync_micros.load(Ordering::Relaxed);
        let before = micros();
        let n = stats.fdatasyncs.load(Ordering::Relaxed);
        if micros() != before {
            return; // an fdatasync finished while reading
        }
        if n == self.last.0 + 1 {
            self.hist.record((before - self.last.1).max(1)).unwrap();
        }
        self.last = (n, before);
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap()
}

fn group_commit(concurrency: usize, secs: f64, preallocate: bool) -> Run {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    runtime().block_on(async move {
        let opts = JournalOptions {
            preallocate,
            ..JournalOptions::default()
        };
        let (j, _) = Journal::<OrderEvent>::open(&root, 0, opts).unwrap();
        monoio::spawn(j.flusher());
        // Start in a fresh segment: record 1 in the first one, a snapshot
        // that covers it, and the next batch starts another (the spare, once
        // it is ready).
        j.append(&event(0)).unwrap();
        j.commit().await.unwrap();
        let t = Instant::now();
        while preallocate && !j.stats_view().spare_ready {
            assert!(t.elapsed() < Duration::from_secs(60), "no spare after 60 s");
            std::thread::sleep(Duration::from_millis(1));
        }
        j.write_snapshot(1, vec![0u8; 16]).await.unwrap();
        let s0 = j.stats_view();
        let hist = Rc::new(RefCell::new(histogram()));
        let sampler = Rc::new(RefCell::new(SyncSampler {
            last: (s0.fdatasyncs, s0.fdatasync_micros),
            hist: histogram(),
        }));
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        let start = Instant::now();
        let tasks: Vec<_> = (0..concurrency)
            .map(|t| {
                let j = j.clone();
                let hist = hist.clone();
                let sampler = sampler.clone();
                monoio::spawn(async move {
                    let mut i = 1 + t as u64;
                    while Instant::now() < deadline {
                        let t0 = Instant::now();
                        j.append(&event(i)).unwrap();
                        j.commit().await.unwrap();
                        hist.borrow_mut()
                            .record(t0.elapsed().as_nanos() as u64)
                            .unwrap();
                        sampler.borrow_mut().look(j.stats());
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
        let (commits, syncs) = (s.appended - s0.appended, s.fdatasyncs - s0.fdatasyncs);
        let micros = s.fdatasync_micros - s0.fdatasync_micros;
        let h = hist.borrow().clone();
        let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        let sh = sampler.borrow().hist.clone();
        let run = Run {
            commits_per_sec: commits as f64 / elapsed.as_secs_f64(),
            commits_per_sync: commits as f64 / syncs.max(1) as f64,
            sync_mean_us: micros as f64 / syncs.max(1) as f64,
            sync_p50_us: sh.value_at_quantile(0.5) as f64,
            sync_p99_us: sh.value_at_quantile(0.99) as f64,
            commit_p50_us: us(0.5),
            commit_p99_us: us(0.99),
            commit_p999_us: us(0.999),
        };
        let kind = if preallocate { "prealloc" } else { "grown" };
        println!(
            "sync  C={concurrency:<4} {kind:<8} {:>9.0} commits/s  {syncs:>7} fdatasyncs \
             ({:>6.1} commits each; {} timed) us mean {:>6.1} p50 {:>6.0} p99 {:>6.0}  \
             commit latency us p50 {:>7.1} p99 {:>7.1} p99.9 {:>7.1}  segments: {} \
             preallocated, {} grown",
            run.commits_per_sec,
            run.commits_per_sync,
            sh.len(),
            run.sync_mean_us,
            run.sync_p50_us,
            run.sync_p99_us,
            run.commit_p50_us,
            run.commit_p99_us,
            run.commit_p999_us,
            s.segments_preallocated,
            s.segments_grown,
        );
        j.close().await.unwrap();
        run
    })
}

fn median(runs: &[Run], f: impl Fn(&Run) -> f64) -> f64 {
    let mut v: Vec<f64> = runs.iter().map(f).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Medians of each kind's runs at one level, and prealloc / grown.
fn summary(concurrency: usize, grown: &[Run], prealloc: &[Run]) {
    type Metric = (&'static str, fn(&Run) -> f64);
    let metrics: [Metric; 8] = [
        ("commits/s", |r| r.commits_per_sec),
        ("commits/fdatasync", |r| r.commits_per_sync),
        ("fdatasync mean us", |r| r.sync_mean_us),
        ("fdatasync p50 us", |r| r.sync_p50_us),
        ("fdatasync p99 us", |r| r.sync_p99_us),
        ("commit p50 us", |r| r.commit_p50_us),
        ("commit p99 us", |r| r.commit_p99_us),
        ("commit p99.9 us", |r| r.commit_p999_us),
    ];
    println!(
        "median of {} runs each, C={concurrency}:",
        grown.len().min(prealloc.len())
    );
    for (name, f) in metrics {
        let (g, p) = (median(grown, f), median(prealloc, f));
        println!(
            "  {name:<18} grown {g:>10.1}  prealloc {p:>10.1}  prealloc/grown x{:.3}",
            p / g
        );
    }
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

/// Framing alone: no syncs, and no spare being zero-filled meanwhile.
fn opts_nosync() -> JournalOptions {
    JournalOptions {
        sync: false,
        preallocate: false,
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
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    for c in levels {
        let (mut grown, mut prealloc) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let order = if round % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for preallocate in order {
                let run = group_commit(c, secs, preallocate);
                if preallocate {
                    prealloc.push(run);
                } else {
                    grown.push(run);
                }
            }
        }
        summary(c, &grown, &prealloc);
    }
    framing_only(1_000_000);
}
