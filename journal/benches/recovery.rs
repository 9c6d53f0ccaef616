//! Recovery speed: how fast a shard gets its journal back at start-up.
//!
//! Writes `RECORDS` (default 1,000,000) order events of ~100 bytes each with
//! group commits of 4096 records, then times `Journal::open` (read + verify
//! every frame) followed by a pass over every record: cold (segments evicted
//! from the page cache with `posix_fadvise(DONTNEED)` after an fdatasync) and
//! warm, with checked zero-copy access and with full deserialization.
//!
//! Segments are preallocated as on a node (the writer waits for the first
//! spare before writing, so every segment is one): the last
//! segment ends in zeros after its last record, which recovery reads and
//! checks too (`RECORDS=540000` leaves it almost all zeros: the worst case).
//!
//! `cargo bench -p rayltics-journal --bench recovery`

use std::path::Path;
use std::time::{Duration, Instant};

use rayltics_journal::{Journal, JournalOptions};

mod common;
use common::{ArchivedOrderEvent, OrderEvent, event};

fn rate(n: u64, d: Duration) -> String {
    format!("{:.2} M records/s", n as f64 / d.as_secs_f64() / 1e6)
}

fn evict(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let file = std::fs::File::open(&path).unwrap();
        file.sync_data().unwrap();
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open descriptor; the advice has no memory effects.
        let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(rc, 0, "posix_fadvise");
    }
}

/// Opens the journal and visits every record with `visit`; returns
/// (open time, total time, records).
fn recover(
    root: &Path,
    visit: impl Fn(rayltics_journal::Record<'_, OrderEvent>) -> u64,
) -> (Duration, Duration, u64) {
    let t = Instant::now();
    let (j, rec) = Journal::<OrderEvent>::open(root, 0, JournalOptions::default()).unwrap();
    let opened = t.elapsed();
    let mut sum = 0u64;
    for r in rec.records() {
        sum = sum.wrapping_add(visit(r));
    }
    let total = t.elapsed();
    std::hint::black_box(sum);
    let n = rec.len() as u64;
    drop(rec);
    drop(j);
    (opened, total, n)
}

fn main() {
    let n: u64 = std::env::var("RECORDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();

    let payload = rkyv::to_bytes::<rkyv::rancor::Error>(&event(n / 2))
        .unwrap()
        .len();
    let t = Instant::now();
    let stats;
    {
        let opts = JournalOptions {
            sync: false,
            ..JournalOptions::default()
        };
        let (j, _) = Journal::<OrderEvent>::open(root, 0, opts).unwrap();
        while !j.stats_view().spare_ready {
            std::thread::sleep(Duration::from_millis(1));
        }
        for i in 1..=n {
            j.append(&event(i)).unwrap();
            if i % 4096 == 0 {
                j.commit_blocking().unwrap();
            }
        }
        j.commit_blocking().unwrap();
        stats = j.stats_view();
    }
    let wrote = t.elapsed();
    let dir = rayltics_journal::shard_dir(root, 0);
    let bytes = stats.bytes_written;
    let files: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    println!(
        "wrote {n} records ({payload} B rkyv payload, {:.1} B/record framed, {:.1} MiB) in {:.2?} ({})",
        bytes as f64 / n as f64,
        bytes as f64 / (1 << 20) as f64,
        wrote,
        rate(n, wrote)
    );
    println!(
        "segments: {} preallocated, {} grown; {:.1} MiB of segment files ({:.1} MiB zero tail)",
        stats.segments_preallocated,
        stats.segments_grown,
        files as f64 / (1 << 20) as f64,
        (files - bytes) as f64 / (1 << 20) as f64,
    );

    evict(&dir);
    let (open, total, got) = recover(root, |r| r.access().unwrap().qty.to_native() as u64);
    assert_eq!(got, n);
    println!(
        "cold  open+verify {open:>9.2?}  + checked access of every record {total:>9.2?}  ({})",
        rate(n, total)
    );

    for _ in 0..3 {
        let (open, total, _) = recover(root, |r| r.bytes().len() as u64);
        println!(
            "warm  open+verify {open:>9.2?}  + iterate bytes                  {total:>9.2?}  ({})",
            rate(n, total)
        );
    }
    for _ in 0..3 {
        let (open, total, _) = recover(root, |r| r.access().unwrap().qty.to_native() as u64);
        println!(
            "warm  open+verify {open:>9.2?}  + checked access of every record {total:>9.2?}  ({})",
            rate(n, total)
        );
    }
    // The alternative to padded, aligned frames: unpadded payloads copied
    // into an aligned scratch buffer before access. Measured here as the copy
    // cost on top of the aligned path.
    for _ in 0..2 {
        let scratch = std::cell::RefCell::new(rkyv::util::AlignedVec::<16>::with_capacity(256));
        let (open, total, _) = recover(root, |r| {
            let mut s = scratch.borrow_mut();
            s.clear();
            s.extend_from_slice(r.bytes());
            rkyv::access::<ArchivedOrderEvent, rkyv::rancor::Error>(&s)
                .unwrap()
                .qty
                .to_native() as u64
        });
        println!(
            "warm  open+verify {open:>9.2?}  + copy to aligned, checked access {total:>9.2?}  ({})",
            rate(n, total)
        );
    }
    for _ in 0..2 {
        let (open, total, _) = recover(root, |r| r.deserialize().unwrap().qty as u64);
        println!(
            "warm  open+verify {open:>9.2?}  + deserialize every record       {total:>9.2?}  ({})",
            rate(n, total)
        );
    }
}
