//! Journal behaviour: round trip, group commit, torn tails, corruption,
//! snapshots, locking.

mod common;

use std::cell::RefCell;
use std::fs;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::{Event, Rng, event, opts, run, segments, shard0, snapshots};
use rayltics_journal::{Error, Journal, JournalOptions, Recovered};

type J = Journal<Event>;

fn open(root: &Path) -> (J, Recovered<Event>) {
    J::open(root, 0, opts()).expect("open journal")
}

/// Byte offset of every record's frame when `ids` were appended in order to
/// an empty segment (frame = 16-byte header + payload padded to 16).
fn frame_offsets(ids: impl IntoIterator<Item = u64>) -> Vec<u64> {
    let mut off = 0u64;
    let mut v = Vec::new();
    for i in ids {
        v.push(off);
        let len = rkyv::to_bytes::<rkyv::rancor::Error>(&event(i))
            .unwrap()
            .len() as u64;
        off += 16 + len.div_ceil(16) * 16;
    }
    v.push(off);
    v
}

fn assert_records(rec: &Recovered<Event>, first: u64, last: u64) {
    assert_eq!(rec.len() as u64, last + 1 - first, "record count");
    let mut expect = first;
    for r in rec.records() {
        assert_eq!(r.seq(), expect);
        let a = r.access().expect("valid archive");
        assert_eq!(a.id, expect);
        assert_eq!(r.deserialize().unwrap(), event(expect));
        expect += 1;
    }
    assert_eq!(expect, last + 1);
}

#[test]
fn round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let (j, rec) = open(tmp.path());
        assert!(rec.is_empty() && rec.snapshot().is_none() && rec.last_seq() == 0);
        for i in 1..=2000 {
            assert_eq!(j.append(&event(i)).unwrap(), i);
            if i % 100 == 0 {
                assert_eq!(j.commit_blocking().unwrap(), i);
            }
        }
        assert_eq!(j.durable_seq(), 2000);
        assert!(segments(&shard0(tmp.path())).len() > 3, "crossed segments");
    }
    let (j, rec) = open(tmp.path());
    assert_records(&rec, 1, 2000);
    assert!(rec.torn_tail().is_none());
    assert_eq!(rec.last_seq(), 2000);
    drop(rec);
    // Appends continue the sequence, into the open segment.
    assert_eq!(j.append_encoded(b"raw bytes").unwrap(), 2001);
    j.commit_blocking().unwrap();
    drop(j);
    let (_j, rec) = open(tmp.path());
    let last = rec.records().last().unwrap();
    assert_eq!((last.seq(), last.bytes()), (2001, &b"raw bytes"[..]));
    assert_eq!(
        last.bytes().as_ptr() as usize % 16,
        0,
        "payloads are aligned"
    );
}

#[test]
fn appended_but_uncommitted_records_are_not_durable_yet() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let (j, _) = open(tmp.path());
        j.append(&event(1)).unwrap();
        j.commit_blocking().unwrap();
        j.append(&event(2)).unwrap(); // never committed
    }
    let (_j, rec) = open(tmp.path());
    assert_records(&rec, 1, 1);
}

#[test]
fn group_commit_one_fdatasync_covers_a_tick() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    run(async move {
        let (j, _) = open(&root);
        monoio::spawn(j.flusher());
        // 200 tasks that each append and await their commit, all in one tick.
        let tasks: Vec<_> = (1..=200)
            .map(|i| {
                let j = j.clone();
                monoio::spawn(async move {
                    let seq = j.append(&event(i)).unwrap();
                    let done = j.commit().await.unwrap();
                    assert!(done >= seq);
                    seq
                })
            })
            .collect();
        let mut seqs = Vec::new();
        for t in tasks {
            seqs.push(t.await);
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
        let s = j.stats_view();
        assert_eq!(s.appended, 200);
        assert_eq!(s.batches, 1, "{s:?}");
        assert_eq!(s.fdatasyncs, 1, "one fdatasync for the whole tick: {s:?}");
        assert_eq!(j.durable_seq(), 200);

        // Sustained load: 64 tasks x 20 rounds of append + commit. Each round
        // of the 64 shares a sync.
        let tasks: Vec<_> = (0..64u64)
            .map(|t| {
                let j = j.clone();
                monoio::spawn(async move {
                    for r in 0..20u64 {
                        let seq = j.append(&event(1000 + t * 100 + r)).unwrap();
                        assert!(j.commit().await.unwrap() >= seq);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
        let s2 = j.stats_view();
        let syncs = s2.fdatasyncs - s.fdatasyncs;
        eprintln!("1280 commits took {syncs} fdatasyncs");
        assert!(
            syncs <= 42,
            "group commit should batch: {syncs} syncs for 1280 commits"
        );
        assert_eq!(j.durable_seq(), 1480);
        j.close().await.unwrap();
    });
    let (_j, rec) = open(tmp.path());
    assert_eq!(rec.len(), 1480);
}

#[test]
fn works_on_a_plain_thread_executor() {
    let tmp = tempfile::tempdir().unwrap();
    let (j, _) = open(tmp.path());
    let mut pool = futures::executor::LocalPool::new();
    use futures::task::LocalSpawnExt;
    pool.spawner().spawn_local(j.flusher()).unwrap();
    let done = Rc::new(RefCell::new(Vec::new()));
    let commits = (1..=50).map(|i| {
        let j = j.clone();
        let done = done.clone();
        async move {
            let seq = j.append(&event(i)).unwrap();
            j.commit().await.unwrap();
            done.borrow_mut().push(seq);
        }
    });
    pool.run_until(futures::future::join_all(commits));
    assert_eq!(done.borrow().len(), 50);
    assert_eq!(j.durable_seq(), 50);
    assert!(j.stats_view().fdatasyncs <= 2);
    // A blocking commit while the flusher exists works too.
    j.append(&event(51)).unwrap();
    assert_eq!(j.commit_blocking().unwrap(), 51);
    pool.run_until(j.clone().close()).unwrap();
    assert!(matches!(j.append(&event(52)), Err(Error::Closed)));
}

#[test]
fn a_dropped_flusher_fails_waiting_commits() {
    let tmp = tempfile::tempdir().unwrap();
    let (j, _) = open(tmp.path());
    let flusher = j.flusher();
    j.append(&event(1)).unwrap();
    let mut commit = Box::pin(j.commit());
    let waker = futures::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    assert!(commit.as_mut().poll(&mut cx).is_pending());
    drop(flusher); // e.g. its runtime shut down
    assert!(matches!(
        commit.as_mut().poll(&mut cx),
        std::task::Poll::Ready(Err(Error::NoFlusher))
    ));
    // A new flusher can take over.
    let mut pool = futures::executor::LocalPool::new();
    use futures::task::LocalSpawnExt;
    pool.spawner().spawn_local(j.flusher()).unwrap();
    assert_eq!(pool.run_until(j.commit()).unwrap(), 1);
}

#[test]
fn commit_without_flusher_is_an_error_not_a_hang() {
    let tmp = tempfile::tempdir().unwrap();
    let (j, _) = open(tmp.path());
    j.append(&event(1)).unwrap();
    let r = futures::executor::block_on(j.commit());
    assert!(matches!(r, Err(Error::NoFlusher)), "{r:?}");
    // Nothing appended: a commit is immediately done.
    let (j2, _) = J::open(tmp.path(), 1, opts()).unwrap();
    assert_eq!(futures::executor::block_on(j2.commit()).unwrap(), 0);
}

/// Writes records `1..=n`, one write group each, into one segment; returns
/// the segment path and its bytes.
fn write_single_groups(root: &Path, n: u64) -> (std::path::PathBuf, Vec<u8>) {
    let (j, _) = J::open(root, 0, JournalOptions::default()).unwrap();
    for i in 1..=n {
        j.append(&event(i)).unwrap();
        j.commit_blocking().unwrap();
    }
    drop(j);
    let segs = segments(&shard0(root));
    assert_eq!(segs.len(), 1);
    let bytes = fs::read(&segs[0]).unwrap();
    (segs[0].clone(), bytes)
}

#[test]
fn torn_tail_is_cut_off_and_appends_continue() {
    let tmp = tempfile::tempdir().unwrap();
    let (seg, bytes) = write_single_groups(tmp.path(), 20);
    let offs = frame_offsets(1..=20);
    let (l0, l1) = (offs[19], offs[20]);
    assert_eq!(bytes.len() as u64, l1);
    let mut rng = Rng::new("torn_tail");
    let mut cuts: Vec<u64> = (0..12).map(|_| rng.range(l0 + 1, l1)).collect();
    cuts.extend([l0 + 1, l0 + 15, l0 + 16, l1 - 1]);
    for cut in cuts {
        fs::write(&seg, &bytes[..cut as usize]).unwrap();
        {
            let (j, rec) = J::open(tmp.path(), 0, JournalOptions::default()).unwrap();
            assert_records(&rec, 1, 19);
            let torn = rec.torn_tail().expect("torn tail reported");
            assert_eq!(
                (torn.offset, torn.discarded),
                (l0, cut - l0),
                "cut at {cut}"
            );
            assert_eq!(fs::metadata(&seg).unwrap().len(), l0);
            assert_eq!(j.append(&event(20)).unwrap(), 20);
            j.commit_blocking().unwrap();
        }
        let (_j, rec) = J::open(tmp.path(), 0, JournalOptions::default()).unwrap();
        assert_records(&rec, 1, 20);
        assert!(rec.torn_tail().is_none());
    }
}

#[test]
fn damaged_last_record_and_garbage_after_the_end_are_torn_tails() {
    let tmp = tempfile::tempdir().unwrap();
    let (seg, bytes) = write_single_groups(tmp.path(), 10);
    let offs = frame_offsets(1..=10);
    // A flipped bit in the last record's payload, then in its header.
    for at in [offs[9] + 20, offs[9] + 5, offs[9] + 9] {
        let mut b = bytes.clone();
        b[at as usize] ^= 0x10;
        fs::write(&seg, &b).unwrap();
        let (_j, rec) = J::open(tmp.path(), 0, JournalOptions::default()).unwrap();
        assert_records(&rec, 1, 9);
        assert_eq!(rec.torn_tail().unwrap().offset, offs[9]);
    }
    // Garbage after the last record, even followed by zeros (a torn write
    // into a preallocated tail).
    let mut b = bytes.clone();
    b.extend([0xa5u8; 40]);
    b.extend(std::iter::repeat_n(0u8, 4096));
    fs::write(&seg, &b).unwrap();
    {
        let (_j, rec) = J::open(tmp.path(), 0, JournalOptions::default()).unwrap();
        assert_records(&rec, 1, 10);
        assert_eq!(rec.torn_tail().unwrap().offset, offs[10]);
        assert_eq!(fs::metadata(&seg).unwrap().len(), offs[10], "cut");
    }
    // Zeros alone after the last record (a preallocated tail, or the pages
    // of an unsynced write that never reached the disk) are a clean end:
    // nothing is cut, and the next record goes right after the last one.
    let mut b = bytes.clone();
    b.extend(std::iter::repeat_n(0u8, 4096));
    fs::write(&seg, &b).unwrap();
    {
        let (j, rec) = J::open(tmp.path(), 0, JournalOptions::default()).unwrap();
        assert_records(&rec, 1, 10);
        assert!(rec.torn_tail().is_none());
        assert_eq!(fs::metadata(&seg).unwrap().len(), b.len() as u64);
        j.append(&event(11)).unwrap();
        j.commit_blocking().unwrap();
    }
    let (_j, rec) = J::open(tmp.path(), 0, JournalOptions::default()).unwrap();
    assert_records(&rec, 1, 11);
    assert_eq!(fs::metadata(&seg).unwrap().len(), b.len() as u64);
}

#[test]
fn corrupt_middle_record_stops_startup_naming_file_and_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let (seg, bytes) = write_single_groups(tmp.path(), 30);
    let offs = frame_offsets(1..=30);
    let mut b = bytes.clone();
    b[offs[4] as usize + 24] ^= 0x01; // record 5's payload
    fs::write(&seg, &b).unwrap();
    let err = J::open(tmp.path(), 0, JournalOptions::default()).unwrap_err();
    match &err {
        Error::Corrupt { file, offset, .. } => {
            assert_eq!(file, &seg);
            assert_eq!(*offset, offs[4]);
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("journal-00000000000000000001.log") && msg.contains(&offs[4].to_string()),
        "{msg}"
    );
    assert!(
        msg.contains("checksum mismatch") && msg.contains("in record 5"),
        "{msg}"
    );
    // Nothing was truncated.
    assert_eq!(fs::read(&seg).unwrap(), b);

    // An impossible length field in the middle is corrupt too.
    let mut b = bytes.clone();
    b[offs[9] as usize + 7] = 0x7f; // reserved bit of record 10's length
    fs::write(&seg, &b).unwrap();
    let err = J::open(tmp.path(), 0, JournalOptions::default()).unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt { offset, .. } if *offset == offs[9]),
        "{err}"
    );
}

/// Appends records 1..=n (small segments: several files), committing every 20.
fn write_in_batches_of_20(root: &Path, n: u64) {
    let (j, _) = open(root);
    for i in 1..=n {
        j.append(&event(i)).unwrap();
        if i % 20 == 0 {
            j.commit_blocking().unwrap();
        }
    }
}

#[test]
fn damage_in_a_closed_segment_is_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    write_in_batches_of_20(tmp.path(), 600);
    let segs = segments(&shard0(tmp.path()));
    assert!(segs.len() >= 3);
    // The last record of the first segment: not a tail, its segment is closed.
    let mut b = fs::read(&segs[0]).unwrap();
    let n = b.len();
    b[n - 20] ^= 0xff;
    fs::write(&segs[0], &b).unwrap();
    let err = open_err(tmp.path());
    assert!(
        matches!(&err, Error::Corrupt { file, .. } if file == &segs[0]),
        "{err}"
    );
    assert!(err.to_string().contains("not the last one"), "{err}");
}

fn open_err(root: &Path) -> Error {
    J::open(root, 0, opts()).unwrap_err()
}

#[test]
fn damage_inside_the_last_write_is_a_torn_tail() {
    // Power loss can persist the pages of the last (unsynced) write in any
    // order: a bad record followed by good ones of the *same* write is a torn
    // tail, not corruption.
    let tmp = tempfile::tempdir().unwrap();
    {
        let (j, _) = J::open(tmp.path(), 0, JournalOptions::default()).unwrap();
        for i in 1..=5 {
            j.append(&event(i)).unwrap();
        }
        j.commit_blocking().unwrap(); // group 1..=5
        for i in 6..=15 {
            j.append(&event(i)).unwrap();
        }
        j.commit_blocking().unwrap(); // group 6..=15, the last write
    }
    let seg = segments(&shard0(tmp.path())).remove(0);
    let offs = frame_offsets(1..=15);
    let mut b = fs::read(&seg).unwrap();
    b[offs[8] as usize + 20] ^= 0x04; // record 9, inside the last group
    fs::write(&seg, &b).unwrap();
    let (_j, rec) = J::open(tmp.path(), 0, JournalOptions::default()).unwrap();
    assert_records(&rec, 1, 8);
    assert_eq!(rec.torn_tail().unwrap().offset, offs[8]);
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
struct State {
    upto: u64,
    ids: u64,
}

#[test]
fn snapshot_truncates_segments_and_recovery_replays_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let dir = shard0(&root);
    let r = root.clone();
    run(async move {
        let (j, _) = open(&r);
        monoio::spawn(j.flusher());
        for i in 1..=1000 {
            j.append(&event(i)).unwrap();
            if i % 50 == 0 {
                j.commit().await.unwrap();
            }
        }
        let before = segments(&shard0(&r)).len();
        assert!(before > 4, "{before} segments");
        let state = State {
            upto: 600,
            ids: (1..=600).sum(),
        };
        j.write_snapshot_of(600, &state).await.unwrap();
        // Refused: older than the current snapshot, beyond the last record.
        assert!(matches!(
            j.write_snapshot(500, vec![1u8]).await,
            Err(Error::Snapshot { .. })
        ));
        assert!(matches!(
            j.write_snapshot(1001, vec![1u8]).await,
            Err(Error::Snapshot { .. })
        ));
        let segs = segments(&shard0(&r));
        assert!(segs.len() < before);
        assert_eq!(
            j.stats_view().segments_removed as usize,
            before - segs.len()
        );
        j.close().await.unwrap();
    });
    // Remaining segments: the first one still holds record 601.
    let segs = segments(&dir);
    let first_seq = |p: &Path| -> u64 {
        let n = p.file_name().unwrap().to_str().unwrap();
        n["journal-".len().."journal-".len() + 20].parse().unwrap()
    };
    assert!(first_seq(&segs[0]) <= 601);
    if segs.len() > 1 {
        assert!(first_seq(&segs[1]) > 601);
    }
    assert_eq!(snapshots(&dir).len(), 1);

    let r = root.clone();
    run(async move {
        let (j, rec) = open(&r);
        let snap = rec.snapshot().unwrap();
        assert_eq!(snap.seq(), 600);
        assert_eq!(
            snap.deserialize::<State>().unwrap(),
            State {
                upto: 600,
                ids: (1..=600).sum()
            }
        );
        assert_eq!(snap.access::<State>().unwrap().upto, 600);
        assert_records(&rec, 601, 1000);
        drop(rec);
        monoio::spawn(j.flusher());
        // A snapshot at the last record covers every segment.
        j.write_snapshot(1000, b"all".to_vec()).await.unwrap();
        assert!(segments(&shard0(&r)).is_empty());
        assert_eq!(
            snapshots(&shard0(&r)),
            vec![shard0(&r).join("snapshot-00000000000000001000.snap")]
        );
        assert_eq!(j.append(&event(1001)).unwrap(), 1001);
        j.commit().await.unwrap();
        j.close().await.unwrap();
    });
    let (_j, rec) = open(&root);
    assert_eq!(rec.snapshot().unwrap().bytes(), b"all");
    assert_records(&rec, 1001, 1001);
    assert_eq!(
        segments(&dir),
        vec![dir.join("journal-00000000000000001001.log")]
    );
}

#[test]
fn interrupted_truncation_and_leftover_temp_files_are_finished_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let (j, _) = open(tmp.path());
        for i in 1..=500 {
            j.append(&event(i)).unwrap();
            if i % 25 == 0 {
                j.commit_blocking().unwrap();
            }
        }
    }
    let dir = shard0(tmp.path());
    let before: Vec<_> = segments(&dir)
        .into_iter()
        .map(|p| {
            let b = fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    {
        let (j, _) = open(tmp.path());
        run(async {
            monoio::spawn(j.flusher());
            j.write_snapshot(400, b"s400".to_vec()).await.unwrap();
        });
    }
    let after_snapshot = segments(&dir);
    assert!(after_snapshot.len() < before.len());
    // Put the removed segments back, as if a crash had come between the
    // snapshot's rename and the truncation; and leave a half-written newer
    // snapshot behind.
    for (p, b) in &before {
        if !p.exists() {
            fs::write(p, b).unwrap();
        }
    }
    fs::write(
        dir.join("snapshot-00000000000000000450.snap.tmp"),
        b"partial",
    )
    .unwrap();
    let (_j, rec) = open(tmp.path());
    assert_eq!(rec.snapshot().unwrap().seq(), 400);
    assert_records(&rec, 401, 500);
    assert!(!dir.join("snapshot-00000000000000000450.snap.tmp").exists());
    assert_eq!(segments(&dir), after_snapshot);
}

#[test]
fn missing_segment_is_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    write_in_batches_of_20(tmp.path(), 600);
    let segs = segments(&shard0(tmp.path()));
    fs::remove_file(&segs[1]).unwrap();
    let err = open_err(tmp.path());
    assert!(
        matches!(&err, Error::Corrupt { file, .. } if file == &segs[2]),
        "{err}"
    );
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn a_journal_directory_is_opened_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (j, _) = open(tmp.path());
    let err = J::open(tmp.path(), 0, opts()).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    // Another shard's journal is independent.
    let _other = J::open(tmp.path(), 1, opts()).unwrap();
    drop(j);
    let _again = open(tmp.path());
}

#[test]
fn oversized_records_are_refused_without_damaging_the_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let o = JournalOptions {
        max_record_size: 64,
        ..opts()
    };
    {
        let (j, _) = J::open(tmp.path(), 0, o.clone()).unwrap();
        j.append_encoded(b"small").unwrap();
        let err = j.append_encoded(&[0u8; 65]).unwrap_err();
        assert!(matches!(err, Error::RecordTooLarge { len: 65, max: 64 }));
        assert_eq!(j.append_encoded(b"next").unwrap(), 2);
        j.commit_blocking().unwrap();
    }
    let (_j, rec) = J::open(tmp.path(), 0, o).unwrap();
    let v: Vec<_> = rec.records().map(|r| r.bytes().to_vec()).collect();
    assert_eq!(v, vec![b"small".to_vec(), b"next".to_vec()]);
}

#[test]
fn read_durable_sees_the_snapshot_and_records_up_to_a_seq_without_touching_files() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let r = root.clone();
    run(async move {
        let (j, _) = open(&r);
        monoio::spawn(j.flusher());
        for i in 1..=1000 {
            j.append(&event(i)).unwrap();
            if i % 50 == 0 {
                j.commit().await.unwrap();
            }
        }
        j.write_snapshot(300, vec![7u8; 16]).await.unwrap();
        let dir = shard0(&r);
        // (The preallocator's spare files come and go on their own.)
        let listing = |d: &Path| {
            let mut v: Vec<_> = fs::read_dir(d)
                .unwrap()
                .map(|e| {
                    let e = e.unwrap();
                    (e.file_name(), e.metadata().unwrap().len())
                })
                .filter(|(name, _)| !name.to_str().unwrap().starts_with("spare."))
                .collect();
            v.sort();
            v
        };
        let before = listing(&dir);
        // While the journal stays open and keeps appending.
        j.append(&event(1001)).unwrap();
        let rec = rayltics_journal::read_durable::<Event>(&dir, 800).unwrap();
        assert_eq!(rec.snapshot().map(|s| s.seq()), Some(300));
        assert_records(&rec, 301, 800);
        let rec = rayltics_journal::read_durable::<Event>(&dir, 300).unwrap();
        assert!(rec.is_empty());
        assert!(rayltics_journal::read_durable::<Event>(&dir, 5000).is_err());
        assert_eq!(
            listing(&dir),
            before,
            "read_durable changes nothing on disk"
        );
        j.commit().await.unwrap();
        j.close().await.unwrap();
    });
}

// Preallocated segments (the spare the preallocator thread keeps ready).

/// `opts().segment_size`.
const SEGMENT: u64 = 16 << 10;

/// Waits until `j` has a spare segment ready.
/// Asserts the journal's (created, preallocated, grown) segment counts.
fn assert_segment_counts(j: &J, want: (u64, u64, u64)) {
    let s = j.stats_view();
    assert_eq!(
        (
            s.segments_created,
            s.segments_preallocated,
            s.segments_grown
        ),
        want,
        "{s:?}"
    );
}

fn wait_for_spare(j: &J) {
    let t = Instant::now();
    while !j.stats_view().spare_ready {
        assert!(t.elapsed() < Duration::from_secs(30), "no spare after 30 s");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Number of records from `first` on whose frames fill at least one
/// segment.
fn records_per_segment(first: u64) -> u64 {
    let offs = frame_offsets(first..first + SEGMENT / 16);
    offs.iter().position(|&o| o >= SEGMENT).unwrap() as u64
}

/// Appends `n` records from `first` on as one write group; returns the
/// next record's id.
fn append_group(j: &J, first: u64, n: u64) -> u64 {
    for i in first..first + n {
        assert_eq!(j.append(&event(i)).unwrap(), i);
    }
    j.commit_blocking().unwrap();
    first + n
}

/// A journal (16 KiB segments, preallocation on) whose only segment is full
/// (records `1..first`, written without preallocation) and whose spare is
/// ready: its next batch starts a preallocated segment at `first`.
fn with_a_spare_ready(root: &Path) -> (J, u64) {
    {
        let o = JournalOptions {
            preallocate: false,
            ..opts()
        };
        let (j, _) = J::open(root, 0, o).unwrap();
        append_group(&j, 1, records_per_segment(1));
    }
    let (j, rec) = open(root);
    let first = rec.last_seq() + 1;
    wait_for_spare(&j);
    (j, first)
}

fn file_len(p: &Path) -> u64 {
    fs::metadata(p).unwrap().len()
}

#[test]
fn a_preallocated_segment_recovers_with_its_zero_tail_and_appends_continue_in_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = shard0(tmp.path());
    let (j, first) = with_a_spare_ready(tmp.path());
    let mut next = first;
    for _ in 0..10 {
        next = append_group(&j, next, 1);
    }
    let s = j.stats_view();
    assert_eq!((s.segments_preallocated, s.segments_grown), (1, 0), "{s:?}");
    drop(j);
    let segs = segments(&dir);
    assert_eq!(segs.len(), 2);
    let seg = dir.join(format!("journal-{first:020}.log"));
    assert_eq!(segs[1], seg);
    let offs = frame_offsets(first..next);
    let logical = offs[10] as usize;
    let bytes = fs::read(&seg).unwrap();
    assert_eq!(bytes.len() as u64, SEGMENT, "the spare's size");
    assert!(bytes[logical..].iter().all(|&b| b == 0), "a zero tail");

    {
        let (j, rec) = open(tmp.path());
        assert_records(&rec, 1, next - 1);
        assert!(rec.torn_tail().is_none(), "a zero tail is a clean end");
        assert_eq!(file_len(&seg), SEGMENT, "nothing cut");
        append_group(&j, next, 5);
    }
    assert_eq!(segments(&dir), segs, "appended into the same segment");
    let bytes = fs::read(&seg).unwrap();
    assert_eq!(bytes.len() as u64, SEGMENT);
    // Record `next` starts exactly at the old logical end.
    assert_eq!(bytes[logical + 8..logical + 16], next.to_le_bytes());
    let (_j, rec) = open(tmp.path());
    assert_records(&rec, 1, next + 4);
    assert!(rec.torn_tail().is_none());
}

#[test]
fn rotation_takes_the_ready_spare_and_a_new_one_is_prepared() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = shard0(tmp.path());
    let (j, first) = with_a_spare_ready(tmp.path());
    let mut next = first;
    for round in 0..4 {
        if round > 0 {
            wait_for_spare(&j);
        }
        // One batch that fills the segment: the next batch rotates.
        next = append_group(&j, next, records_per_segment(next));
    }
    wait_for_spare(&j);
    next = append_group(&j, next, 3);
    assert_segment_counts(&j, (5, 5, 0));
    drop(j);
    let segs = segments(&dir);
    assert_eq!(segs.len(), 6);
    // Full segments: the batch that filled the spare went past its end.
    for seg in &segs[1..5] {
        assert!(file_len(seg) >= SEGMENT, "{}", seg.display());
    }
    // The last holds 3 records in a spare's worth of bytes.
    let last = segs.last().unwrap();
    assert_eq!(file_len(last), SEGMENT);
    let (_j, rec) = open(tmp.path());
    assert_records(&rec, 1, next - 1);
    assert!(rec.torn_tail().is_none());
}

#[test]
fn without_preallocation_segments_grow_as_before() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = shard0(tmp.path());
    let o = JournalOptions {
        preallocate: false,
        ..opts()
    };
    let mut next = 1;
    {
        let (j, _) = J::open(tmp.path(), 0, o.clone()).unwrap();
        for _ in 0..4 {
            next = append_group(&j, next, records_per_segment(next));
            std::thread::sleep(Duration::from_millis(20)); // time a spare would take
        }
        next = append_group(&j, next, 3);
        assert_segment_counts(&j, (5, 0, 5));
    }
    let names: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with("spare.")), "{names:?}");
    let segs = segments(&dir);
    let last = segs.last().unwrap();
    let first_of_last = next - 3;
    assert_eq!(file_len(last), frame_offsets(first_of_last..next)[3]);
    let (_j, rec) = J::open(tmp.path(), 0, o).unwrap();
    assert_records(&rec, 1, next - 1);
}

/// Writes records `first..first + 5` as single groups and then
/// `first + 5..first + 8` as one group into a preallocated segment; returns
/// its path, bytes and frame offsets.
fn preallocated_groups(root: &Path) -> (PathBuf, Vec<u8>, Vec<u64>, u64) {
    let (j, first) = with_a_spare_ready(root);
    let mut next = first;
    for _ in 0..5 {
        next = append_group(&j, next, 1);
    }
    append_group(&j, next, 3);
    assert_eq!(j.stats_view().segments_preallocated, 1);
    drop(j);
    let seg = segments(&shard0(root)).pop().unwrap();
    let bytes = fs::read(&seg).unwrap();
    assert_eq!(bytes.len() as u64, SEGMENT);
    (seg, bytes, frame_offsets(first..first + 8), first)
}

#[test]
fn a_torn_write_into_a_preallocated_segment_is_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let (seg, bytes, offs, first) = preallocated_groups(tmp.path());
    let last_group = offs[5] as usize..offs[8] as usize;

    // Garbage where the last write began, zeros after it.
    let mut b = bytes.clone();
    b[last_group.clone()].fill(0);
    b[last_group.start..last_group.start + 40].fill(0x5a);
    fs::write(&seg, &b).unwrap();
    {
        let (j, rec) = open(tmp.path());
        assert_records(&rec, 1, first + 4);
        let torn = rec.torn_tail().expect("torn tail");
        assert_eq!((torn.offset, torn.discarded), (offs[5], SEGMENT - offs[5]));
        assert_eq!(file_len(&seg), offs[5], "cut as without preallocation");
        append_group(&j, first + 5, 1);
    }
    let (_j, rec) = open(tmp.path());
    assert_records(&rec, 1, first + 5);
    drop((_j, rec));

    // Valid frames of the last write, then one whose second half never
    // reached the disk (zeros, like the rest of the spare).
    let mut b = bytes.clone();
    b[offs[7] as usize + 20..].fill(0);
    fs::write(&seg, &b).unwrap();
    let (_j, rec) = open(tmp.path());
    assert_records(&rec, 1, first + 6);
    assert_eq!(rec.torn_tail().unwrap().offset, offs[7]);
    assert_eq!(file_len(&seg), offs[7]);
}

#[test]
fn damage_followed_by_a_later_write_in_a_preallocated_segment_is_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let (seg, bytes, offs, first) = preallocated_groups(tmp.path());
    let mut b = bytes.clone();
    b[offs[1] as usize + 20] ^= 0x08; // record first + 1; groups follow it
    fs::write(&seg, &b).unwrap();
    let err = open_err(tmp.path());
    match &err {
        Error::Corrupt { file, offset, .. } => assert_eq!((file, *offset), (&seg, offs[1])),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("in record {}", first + 1)) && msg.contains("later write follows"),
        "{msg}"
    );
    assert_eq!(fs::read(&seg).unwrap(), b, "nothing truncated");
}

#[test]
fn a_zero_tail_in_an_earlier_segment_is_a_clean_end_for_recovery_and_read_durable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = shard0(tmp.path());
    let (j, first) = with_a_spare_ready(tmp.path());
    let next = append_group(&j, first, 3);
    drop(j);
    // Reopened with smaller segments, the preallocated one counts as full:
    // it is closed with its zero tail and a new segment follows.
    let small = JournalOptions {
        segment_size: 256,
        ..opts()
    };
    let next = {
        let (j, _) = J::open(tmp.path(), 0, small).unwrap();
        append_group(&j, next, 3)
    };
    let segs = segments(&dir);
    assert_eq!(segs.len(), 3);
    assert_eq!(file_len(&segs[1]), SEGMENT);
    let (j, rec) = open(tmp.path());
    assert_records(&rec, 1, next - 1);
    assert!(rec.torn_tail().is_none());
    assert_eq!(file_len(&segs[1]), SEGMENT, "nothing cut");
    drop(rec);
    let rec = rayltics_journal::read_durable::<Event>(&dir, next - 1).unwrap();
    assert_records(&rec, 1, next - 1);
    let rec = j.durable_reader().read::<Event>(next - 2).unwrap();
    assert_records(&rec, 1, next - 2);
}

#[test]
fn a_spare_left_at_open_is_replaced_by_a_fresh_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = shard0(tmp.path());
    drop(open(tmp.path()));
    // Not all zeros: what a crash between the writer's rename of the spare
    // and its directory fsync can leave under the spare's name.
    fs::write(dir.join("spare.zero"), vec![0x77u8; SEGMENT as usize]).unwrap();
    let (j, _) = open(tmp.path());
    wait_for_spare(&j);
    let spare = fs::read(dir.join("spare.zero")).unwrap();
    assert_eq!(spare.len() as u64, SEGMENT);
    assert!(spare.iter().all(|&b| b == 0));
    drop(j);
}
