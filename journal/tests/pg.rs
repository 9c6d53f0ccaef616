//! The PostgreSQL medium against a real server (`RAYLTICS_TEST_PG_URL`, see
//! infra/local): round trip with outbox rows, group commit, snapshots and
//! truncation, durable reads, damaged rows, a dropped connection, the shard
//! lock, a missing schema. Each test works in a fresh schema of its own.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Event, event, run};
use rayltics_journal::{
    Error, Journal, JournalOptions, Medium, Outbox, OutboxEntry, OutboxRow, PgOptions, Recovered,
};
use sqlx::Connection;

type J = Journal<Event>;

/// A fresh schema, migrated, dropped at the end of the test.
struct Schema {
    url: String,
    name: String,
}

impl Schema {
    /// `None` (after saying why) when no server is configured.
    fn new(test: &str) -> Option<Schema> {
        let Ok(url) = std::env::var("RAYLTICS_TEST_PG_URL") else {
            eprintln!("skipping {test}: RAYLTICS_TEST_PG_URL is not set (infra/local/up.sh pg)");
            return None;
        };
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "jt_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let s = Schema { url, name };
        rayltics_journal::pg::migrate(&s.pg()).expect("migrate a fresh schema");
        Some(s)
    }

    fn pg(&self) -> PgOptions {
        let mut o = PgOptions::new(&self.url, &self.name);
        o.outbox = Some(Outbox::new(outbox_of));
        o
    }

    fn opts(&self) -> JournalOptions {
        JournalOptions {
            medium: Medium::Postgres(self.pg()),
            ..JournalOptions::default()
        }
    }

    fn open(&self, root: &Path) -> Result<(J, Recovered<Event>), Error> {
        J::open(root, 0, self.opts())
    }

    /// Runs `sql` (no result) in the schema.
    fn exec(&self, sql: &str) {
        self.query(sql, |_| ());
    }

    /// The first column of the first row of `sql`, as i64.
    fn scalar(&self, sql: &str) -> i64 {
        self.query(sql, |rows| {
            use sqlx::Row;
            rows.first().map_or(0, |r| r.get::<i64, _>(0))
        })
    }

    fn query<T>(&self, sql: &str, f: impl FnOnce(&[sqlx::postgres::PgRow]) -> T) -> T {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
            sqlx::query(&format!("SET search_path TO {}", self.name))
                .execute(&mut conn)
                .await
                .unwrap();
            let rows = sqlx::raw_sql(sql).fetch_all(&mut conn).await.unwrap();
            f(&rows)
        })
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        let url = self.url.clone();
        // Best effort: a test that failed may leave a connection behind.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&url).await.ok()?;
                sqlx::raw_sql(&sql).execute(&mut conn).await.ok()
            })
        })
        .join();
    }
}

/// Every tenth event carries an outbox row, and event 777 says the rows up
/// to offset 50 were published.
fn outbox_of(payload: &[u8]) -> Option<OutboxEntry> {
    let e = rkyv::access::<rkyv::Archived<Event>, rkyv::rancor::Error>(payload).ok()?;
    let id = e.id.to_native();
    if id == 777 {
        return Some(OutboxEntry::Published { upto: 50 });
    }
    (id % 10 == 0).then(|| {
        OutboxEntry::Event(OutboxRow {
            event_offset: id / 10,
            event_id: format!("ev-{id}"),
            topic: "rayltics.test".into(),
            key: e.sku.as_str().to_owned(),
            kind: "test.event".into(),
            at_ms: id as i64,
            payload: e.note.as_bytes().to_vec(),
        })
    })
}

fn assert_records(rec: &Recovered<Event>, first: u64, last: u64) {
    assert_eq!(rec.len() as u64, last + 1 - first, "record count");
    let mut expect = first;
    for r in rec.records() {
        assert_eq!(r.seq(), expect);
        assert_eq!(r.access().expect("valid archive").id, expect);
        assert_eq!(r.deserialize().unwrap(), event(expect));
        expect += 1;
    }
    assert_eq!(expect, last + 1);
}

#[test]
fn round_trip_with_outbox_rows() {
    let Some(s) = Schema::new("round_trip_with_outbox_rows") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    {
        let (j, rec) = s.open(tmp.path()).unwrap();
        assert!(rec.is_empty() && rec.snapshot().is_none() && rec.last_seq() == 0);
        assert!(j.available());
        assert_eq!(j.commit_timeout(), Some(Duration::from_secs(2)));
        for i in 1..=1000 {
            assert_eq!(j.append(&event(i)).unwrap(), i);
            if i % 100 == 0 {
                assert_eq!(j.commit_blocking().unwrap(), i);
            }
        }
        let v = j.stats_view();
        assert_eq!(
            (v.writes, v.fdatasyncs),
            (10, 10),
            "one transaction per batch"
        );
    }
    assert_eq!(s.scalar("SELECT count(*) FROM journal_batches"), 10);
    assert_eq!(s.scalar("SELECT count(*) FROM outbox"), 100);
    assert_eq!(
        s.scalar("SELECT count(*) FROM outbox WHERE published"),
        50,
        "rows up to the published offset are marked"
    );
    assert_eq!(
        s.scalar(
            "SELECT count(*) FROM outbox WHERE event_id = 'ev-510' AND seq = 510 AND NOT published"
        ),
        1
    );
    let (j, rec) = s.open(tmp.path()).unwrap();
    assert_records(&rec, 1, 1000);
    drop(rec);
    assert_eq!(j.append_encoded(b"raw bytes").unwrap(), 1001);
    j.commit_blocking().unwrap();
    drop(j);
    let (_j, rec) = s.open(tmp.path()).unwrap();
    let last = rec.records().last().unwrap();
    assert_eq!((last.seq(), last.bytes()), (1001, &b"raw bytes"[..]));
    assert_eq!(
        last.bytes().as_ptr() as usize % 16,
        0,
        "payloads are aligned"
    );
}

#[test]
fn group_commit_one_transaction_per_tick() {
    let Some(s) = Schema::new("group_commit_one_transaction_per_tick") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (j, _) = s.open(tmp.path()).unwrap();
    run(async {
        monoio::spawn(j.flusher());
        let mut tasks = Vec::new();
        for i in 1..=200u64 {
            let j = j.clone();
            tasks.push(monoio::spawn(async move {
                j.append(&event(i)).unwrap();
                j.commit().await.unwrap()
            }));
        }
        for t in tasks {
            t.await;
        }
    });
    let v = j.stats_view();
    assert_eq!(j.durable_seq(), 200);
    assert!(v.writes < 20, "200 commits took {} transactions", v.writes);
    drop(j);
    let (_j, rec) = s.open(tmp.path()).unwrap();
    assert_records(&rec, 1, 200);
}

#[test]
fn snapshot_truncates_and_recovery_replays_the_tail() {
    let Some(s) = Schema::new("snapshot_truncates_and_recovery_replays_the_tail") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    {
        let (j, _) = s.open(tmp.path()).unwrap();
        for i in 1..=300 {
            j.append(&event(i)).unwrap();
            if i % 50 == 0 {
                j.commit_blocking().unwrap();
            }
        }
        // A durable read off the shard thread, as the snapshot builder does.
        let reader = j.durable_reader();
        let rec = std::thread::spawn(move || reader.read::<Event>(120).unwrap())
            .join()
            .unwrap();
        assert_records(&rec, 1, 120);
        run(async {
            monoio::spawn(j.flusher());
            j.write_snapshot(120, b"state at 120".to_vec())
                .await
                .unwrap();
        });
        assert_eq!(j.stats_view().snapshots, 1);
    }
    // Batches wholly covered (last_seq <= 120) are gone; 101..=150 stays.
    assert_eq!(s.scalar("SELECT count(*) FROM journal_batches"), 4);
    assert_eq!(s.scalar("SELECT min(first_seq) FROM journal_batches"), 101);
    assert_eq!(
        s.scalar("SELECT count(*) FROM outbox"),
        30,
        "unpublished rows outlive the batches that carried them"
    );
    let (j, mut rec) = s.open(tmp.path()).unwrap();
    let snap = rec.take_snapshot().expect("snapshot");
    assert_eq!((snap.seq(), snap.bytes()), (120, &b"state at 120"[..]));
    assert_records(&rec, 121, 300);
    drop(rec);
    // A read from the snapshot on: snapshot + 121..=200.
    let rec = j.durable_reader().read::<Event>(200).unwrap();
    assert_eq!(rec.snapshot().map(|s| s.seq()), Some(120));
    assert_records(&rec, 121, 200);
    // Asking beyond what is durable is an error, not a short answer.
    let err = j.durable_reader().read::<Event>(301).unwrap_err();
    assert!(matches!(err, Error::CorruptRow { .. }), "{err}");
}

#[test]
fn damaged_rows_and_gaps_stop_recovery() {
    let Some(s) = Schema::new("damaged_rows_and_gaps_stop_recovery") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    {
        let (j, _) = s.open(tmp.path()).unwrap();
        for i in 1..=30 {
            j.append(&event(i)).unwrap();
            if i % 10 == 0 {
                j.commit_blocking().unwrap();
            }
        }
    }
    // One flipped payload byte in the middle batch.
    s.exec(
        "UPDATE journal_batches SET frames = set_byte(frames, 20, get_byte(frames, 20) # 1) \
         WHERE first_seq = 11",
    );
    let err = s.open(tmp.path()).unwrap_err();
    assert!(
        matches!(&err, Error::CorruptRow { what, reason }
            if what.contains("first_seq 11") && reason.contains("checksum")),
        "{err}"
    );
    // A missing batch is a gap.
    s.exec("DELETE FROM journal_batches WHERE first_seq = 11");
    let err = s.open(tmp.path()).unwrap_err();
    assert!(
        err.to_string().contains("records 11..=20 are missing"),
        "{err}"
    );
    // A batch whose frames do not reach its last_seq.
    s.exec("DELETE FROM journal_batches WHERE first_seq = 21");
    s.exec("UPDATE journal_batches SET last_seq = 11 WHERE first_seq = 1");
    let err = s.open(tmp.path()).unwrap_err();
    assert!(err.to_string().contains("last_seq is 11"), "{err}");
}

#[test]
fn a_dropped_connection_is_retried_not_fatal() {
    let Some(s) = Schema::new("a_dropped_connection_is_retried_not_fatal") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    {
        let (j, _) = s.open(tmp.path()).unwrap();
        j.append(&event(1)).unwrap();
        j.commit_blocking().unwrap();
        // The server ends the writer's session (as a restart would).
        let killed = s.scalar(&format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = 'rayltics/{}'",
            s.name
        ));
        assert_eq!(killed, 1);
        for i in 2..=20 {
            j.append(&event(i)).unwrap();
            assert_eq!(j.commit_blocking().unwrap(), i);
        }
        let v = j.stats_view();
        assert!(v.retries >= 1, "the broken connection was retried: {v:?}");
        assert!(v.available && j.available());
    }
    let (_j, rec) = s.open(tmp.path()).unwrap();
    assert_records(&rec, 1, 20);
}

#[test]
fn a_shard_is_written_by_one_process_only() {
    let Some(s) = Schema::new("a_shard_is_written_by_one_process_only") else {
        return;
    };
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let (_j, _) = s.open(a.path()).unwrap();
    // Another data directory, the same schema and shard.
    let err = s.open(b.path()).unwrap_err();
    assert!(
        matches!(&err, Error::Conflict(m) if m.contains("held by another process")),
        "{err}"
    );
}

#[test]
fn a_schema_without_tables_names_the_fix() {
    let Some(s) = Schema::new("a_schema_without_tables_names_the_fix") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut o = s.pg();
    o.schema = format!("{}_none", s.name);
    let err = J::open(
        tmp.path(),
        0,
        JournalOptions {
            medium: Medium::Postgres(o),
            ..JournalOptions::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("rayltics migrate"), "{err}");
}

#[test]
fn a_wrong_url_fails_fast_without_the_password() {
    if std::env::var("RAYLTICS_TEST_PG_URL").is_err() {
        eprintln!("skipping: RAYLTICS_TEST_PG_URL is not set");
        return;
    }
    let o = PgOptions::new("postgres://someone:s3cret@127.0.0.1:1/nothing", "x");
    let err = rayltics_journal::pg::migrate(&o).unwrap_err().to_string();
    assert!(
        err.contains("postgres://someone@127.0.0.1:1/nothing"),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
}
