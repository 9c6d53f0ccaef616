//! Shared helpers of the journal's integration tests.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::path::{Path, PathBuf};

use rayltics_journal::JournalOptions;

/// A realistic record: an order event of ~100 bytes once archived.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
pub struct Event {
    pub id: u64,
    pub user: u64,
    pub sku: String,
    pub qty: u32,
    pub note: String,
}

/// The event with id `i` (deterministic, so recovery can be checked).
pub fn event(i: u64) -> Event {
    Event {
        id: i,
        user: i.wrapping_mul(2_654_435_761) % 100_000,
        sku: format!("SKU-{:06}", i % 1000),
        qty: (i % 7) as u32 + 1,
        note: "x".repeat((i % 40) as usize),
    }
}

/// Default options with small segments, so tests cross segment boundaries.
pub fn opts() -> JournalOptions {
    JournalOptions {
        segment_size: 16 << 10,
        ..JournalOptions::default()
    }
}

/// Runs `f` on a monoio (epoll) runtime, as a shard does.
pub fn run<F: Future>(f: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .build()
        .expect("monoio runtime")
        .block_on(f)
}

/// The shard-0 directory under `root`.
pub fn shard0(root: &Path) -> PathBuf {
    rayltics_journal::shard_dir(root, 0)
}

/// Segment files of a shard directory, oldest first.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    files(dir, ".log")
}

/// Snapshot files of a shard directory, oldest first.
pub fn snapshots(dir: &Path) -> Vec<PathBuf> {
    files(dir, ".snap")
}

fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_str().unwrap().ends_with(suffix))
        .collect();
    v.sort();
    v
}

/// A tiny xorshift generator (seeded from the clock unless given), so the
/// tests need no extra dependency and print their seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(name: &str) -> Rng {
        let seed = std::env::var("JOURNAL_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("{name}: JOURNAL_TEST_SEED={seed}");
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}
