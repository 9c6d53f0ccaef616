//! kill -9 loses nothing acknowledged.
//!
//! The test re-executes its own binary as a child process (selected by an
//! environment variable) that appends and commits from several tasks on a
//! monoio runtime, takes snapshots now and then, and prints `ACK <seq>` only
//! after the commit covering `<seq>` completed. The parent SIGKILLs it at a
//! random moment, reopens the journal and checks that every acknowledged
//! record is there (in the snapshot or after it), intact. Several rounds run
//! on the same directory, so later children recover what earlier ones left,
//! torn tails included. Rounds alternate segment preallocation on and off,
//! so torn writes land in preallocated (zero-tailed) and growing segments,
//! and each kind is recovered and continued by the other.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{Event, Rng, run};
use rayltics_journal::{Error, Journal, JournalOptions};

const CHILD_ENV: &str = "RAYLTICS_JOURNAL_KILL9_CHILD_DIR";
const PREALLOCATE_ENV: &str = "RAYLTICS_JOURNAL_KILL9_PREALLOCATE";
const TEST_NAME: &str = "kill9_loses_nothing_acknowledged";

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
struct Snap {
    upto: u64,
    sum: u64,
}

/// The record with sequence number `seq`: every 13th is several pages and
/// every 211th is 1 MiB, so a kill can land in the middle of a multi-page write
/// (a SIGKILL can cut a `write` short between pages: a torn tail).
fn record(seq: u64) -> Event {
    let mut e = common::event(seq);
    if seq.is_multiple_of(211) {
        e.note = "m".repeat(1 << 20);
    } else if seq.is_multiple_of(13) {
        e.note = "k".repeat(5000 + (seq % 3000) as usize);
    }
    e
}

fn options(preallocate: bool) -> JournalOptions {
    JournalOptions {
        segment_size: 256 << 10,
        preallocate,
        ..JournalOptions::default()
    }
}

#[test]
fn kill9_loses_nothing_acknowledged() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let preallocate = std::env::var(PREALLOCATE_ENV).is_ok_and(|v| v == "1");
        child(Path::new(&dir), preallocate);
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(TEST_NAME);
    let exe = std::env::current_exe().unwrap();
    let mut total_acked = 0usize;
    let mut torn = 0;
    let mut prev_last = 0;
    for round in 0..8 {
        let preallocate = round % 2 == 0;
        let mut child = Command::new(&exe)
            .args([TEST_NAME, "--exact", "--nocapture", "--test-threads", "1"])
            .env(CHILD_ENV, tmp.path())
            .env(PREALLOCATE_ENV, if preallocate { "1" } else { "0" })
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut acked = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(n) = line.strip_prefix("ACK ") {
                    let seq: u64 = n.trim().parse().expect("ACK line");
                    if acked.is_empty() {
                        let _ = tx.send(());
                    }
                    acked.push(seq);
                }
            }
            acked
        });
        // Wait for the child to be up and committing, then kill it at a
        // random moment.
        rx.recv_timeout(Duration::from_secs(60))
            .expect("child acknowledged a first commit");
        std::thread::sleep(Duration::from_millis(rng.range(20, 400)));
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        let acked = reader.join().unwrap();

        let reopen = options(!preallocate);
        let (j, rec) = Journal::<Event>::open(tmp.path(), 0, reopen).unwrap_or_else(|e| {
            panic!("round {round}: reopening after kill -9 failed: {e}");
        });
        let snap_seq = match rec.snapshot() {
            Some(s) => {
                let state = s.deserialize::<Snap>().unwrap();
                assert_eq!(state.upto, s.seq());
                assert_eq!(state.sum, s.seq() * (s.seq() + 1) / 2, "snapshot state");
                s.seq()
            }
            None => 0,
        };
        for (expect, r) in (snap_seq + 1..).zip(rec.records()) {
            assert_eq!(r.seq(), expect);
            assert_eq!(r.deserialize().unwrap(), record(expect), "record {expect}");
        }
        let last = rec.last_seq();
        let max_acked = acked.iter().copied().max().unwrap();
        assert!(
            max_acked <= last,
            "round {round}: seq {max_acked} was acknowledged but recovery ends at {last}"
        );
        assert!(
            last >= prev_last,
            "round {round}: the journal went backwards"
        );
        if rec.torn_tail().is_some() {
            torn += 1;
        }
        eprintln!(
            "round {round} (preallocate {preallocate}): {} acknowledged (max {max_acked}), \
             recovered up to {last} (snapshot {snap_seq}, {} records after it), torn tail: {:?}",
            acked.len(),
            rec.len(),
            rec.torn_tail().map(|t| t.offset)
        );
        total_acked += acked.len();
        prev_last = last;
        drop(rec);
        drop(j);
    }
    eprintln!("{total_acked} acknowledged commits checked, {torn} torn tails cut");
}

/// The child: recover, then append + commit from 8 tasks until killed.
fn child(root: &Path, preallocate: bool) {
    run(async {
        let (j, rec) = match Journal::<Event>::open(root, 0, options(preallocate)) {
            Ok(x) => x,
            Err(Error::Locked { .. }) => panic!("child: journal still locked"),
            Err(e) => panic!("child: open failed: {e}"),
        };
        drop(rec);
        monoio::spawn(j.flusher());
        let mut tasks: Vec<_> = (0..8)
            .map(|_| {
                let j = j.clone();
                monoio::spawn(async move {
                    let mut out = std::io::stdout();
                    loop {
                        let seq = j.last_seq() + 1;
                        assert_eq!(j.append(&record(seq)).unwrap(), seq);
                        if seq.is_multiple_of(700) {
                            // State after `seq`: the sum of ids 1..=seq.
                            let snap = Snap {
                                upto: seq,
                                sum: seq * (seq + 1) / 2,
                            };
                            match j.write_snapshot_of(seq, &snap).await {
                                Ok(()) | Err(Error::Snapshot { .. }) => {}
                                Err(e) => panic!("child: snapshot failed: {e}"),
                            }
                        }
                        j.commit().await.unwrap();
                        writeln!(out, "ACK {seq}").unwrap();
                    }
                })
            })
            .collect();
        // The tasks loop until the process is killed.
        tasks.pop().unwrap().await
    });
}
