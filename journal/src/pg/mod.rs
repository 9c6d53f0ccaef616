//! The PostgreSQL medium: the same batches, sequence numbers and frames as
//! the segment files, kept in a node's schema instead.
//!
//! ```text
//! journal_batches(shard, first_seq, last_seq, frames bytea)   one row per batch
//! snapshots(shard, seq, bytes bytea, checksum)                the latest snapshot
//! outbox(shard, event_offset, event_id, topic, key, kind, at, payload, seq, published)
//! ```
//!
//! - `writer`: the writer thread. It owns a tokio current-thread runtime and
//!   one `PgConnection` (sqlx needs a tokio reactor; shard threads never call
//!   sqlx). One batch = one statement in one transaction: the batch row and
//!   its outbox rows. A failed attempt is retried in order, with backoff and
//!   reconnection, while [`JournalStats::available`] says the medium is down;
//!   a retry after an ambiguous commit finds its own row and succeeds.
//! - `load`: recovery and [`DurableReader`](crate::DurableReader) reads:
//!   the latest snapshot plus the batches after it, concatenated and verified
//!   by the frame parser (checksums, consecutive sequence numbers, no gaps).
//! - this module: connecting (`search_path` = the schema), [`migrate`], the
//!   snapshot insert, URL redaction.
//!
//! [`JournalStats::available`]: crate::JournalStats::available

pub(crate) mod load;
pub(crate) mod writer;

use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use crate::options::PgOptions;
use crate::{Error, Seq};

/// The embedded migrations (`journal/migrations/*.sql`).
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Applies the embedded migrations to `opts.schema`, creating the schema if
/// it is missing. Blocking (it runs its own tokio runtime): call it from a
/// plain thread, e.g. at start-up before the shards open their journals.
pub fn migrate(opts: &PgOptions) -> Result<(), Error> {
    PgOptions::validate_schema(&opts.schema).map_err(|e| config_error(opts, "migrate", e))?;
    block_on(opts, async {
        let mut conn = connect(opts).await?;
        let create = format!("CREATE SCHEMA IF NOT EXISTS {}", opts.schema);
        sqlx::query(&create)
            .execute(&mut conn)
            .await
            .map_err(|e| pg_error(opts, "create the schema", e))?;
        MIGRATOR
            .run(&mut conn)
            .await
            .map_err(|source| Error::Migrate {
                url: redact(&opts.url),
                source,
            })?;
        let _ = conn.close().await;
        tracing::info!(url = %redact(&opts.url), schema = %opts.schema, "PostgreSQL migrations applied");
        Ok(())
    })
}

/// Connects to the server and checks that the schema holds the journal's
/// tables (for start-up checks with clear messages). Blocking, like
/// [`migrate`].
pub fn check(opts: &PgOptions) -> Result<(), Error> {
    block_on(opts, async {
        let mut conn = connect(opts).await?;
        require_tables(opts, &mut conn).await?;
        let _ = conn.close().await;
        Ok(())
    })
}

/// Runs `fut` on a fresh current-thread tokio runtime.
pub(crate) fn block_on<T>(
    opts: &PgOptions,
    fut: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    let rt = runtime(opts)?;
    rt.block_on(fut)
}

/// A current-thread tokio runtime for sqlx.
pub(crate) fn runtime(opts: &PgOptions) -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            pg_error(
                opts,
                "start a tokio runtime for",
                sqlx::Error::Io(std::io::Error::other(e)),
            )
        })
}

/// Opens one connection with `search_path` set to the schema, within the
/// connect timeout. Its `application_name` is `rayltics/{schema}`.
pub(crate) async fn connect(opts: &PgOptions) -> Result<PgConnection, Error> {
    let options: PgConnectOptions = opts
        .url
        .parse()
        .map_err(|e| pg_error(opts, "parse the URL of", e))?;
    let options = options
        .options([("search_path", opts.schema.as_str())])
        .application_name(&format!("rayltics/{}", opts.schema));
    match tokio::time::timeout(opts.connect_timeout, PgConnection::connect_with(&options)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(pg_error(opts, "connect", e)),
        Err(_) => Err(pg_error(
            opts,
            "connect",
            sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "no connection within {} ms",
                    opts.connect_timeout.as_millis()
                ),
            )),
        )),
    }
}

/// Fails with a clear message when the schema lacks the journal's tables.
pub(crate) async fn require_tables(opts: &PgOptions, conn: &mut PgConnection) -> Result<(), Error> {
    let present: bool = sqlx::query_scalar(
        "SELECT to_regclass('journal_batches') IS NOT NULL \
         AND to_regclass('snapshots') IS NOT NULL AND to_regclass('outbox') IS NOT NULL",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| pg_error(opts, "inspect the schema of", e))?;
    if present {
        Ok(())
    } else {
        Err(config_error(
            opts,
            "open the journal in",
            format!(
                "schema {:?} has no journal tables; run `rayltics migrate` or set \
                 postgres.migrate_on_start = true",
                opts.schema
            ),
        ))
    }
}

/// Stores the snapshot of shard `shard` as of `seq` (its own connection, on
/// the snapshot thread; the writer's connection keeps committing batches).
pub(crate) fn write_snapshot(
    opts: &PgOptions,
    shard: usize,
    seq: Seq,
    bytes: &[u8],
) -> Result<(), Error> {
    block_on(opts, async {
        let mut conn = connect(opts).await?;
        sqlx::query(
            "INSERT INTO snapshots (shard, seq, bytes, checksum) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (shard, seq) DO UPDATE SET bytes = EXCLUDED.bytes, \
             checksum = EXCLUDED.checksum",
        )
        .bind(shard_key(shard))
        .bind(seq_key(seq))
        .bind(bytes)
        .bind(i64::from(crc32c::crc32c(bytes)))
        .execute(&mut conn)
        .await
        .map_err(|e| pg_error(opts, "store a snapshot in", e))?;
        let _ = conn.close().await;
        Ok(())
    })
}

/// The `shard` column value.
pub(crate) fn shard_key(shard: usize) -> i32 {
    i32::try_from(shard).unwrap_or(i32::MAX)
}

/// A sequence number as a `bigint`.
pub(crate) fn seq_key(seq: Seq) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// A [`Error::Postgres`] for `op` on the server of `opts`.
pub(crate) fn pg_error(opts: &PgOptions, op: &'static str, source: sqlx::Error) -> Error {
    Error::Postgres {
        op,
        url: redact(&opts.url),
        source,
    }
}

/// A [`Error::Postgres`] that carries our own message.
pub(crate) fn config_error(opts: &PgOptions, op: &'static str, msg: String) -> Error {
    pg_error(opts, op, sqlx::Error::Configuration(msg.into()))
}

/// Whether retrying (on a new connection) can help after `e`: the server is
/// down, restarting, overloaded, or the connection broke. Errors about the
/// statement or the data are permanent.
pub(crate) fn transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => match db.code() {
            // 08: connection exception, 53: insufficient resources, 57:
            // operator intervention (shutdown, cannot connect now), 58:
            // system error, 40001/40P01: serialization failure, deadlock,
            // 25006: read-only transaction (a failover in progress), 55P03:
            // lock not available.
            Some(code) => {
                ["08", "53", "57", "58"].iter().any(|c| code.starts_with(c))
                    || ["40001", "40P01", "25006", "55P03"].contains(&code.as_ref())
            }
            None => true,
        },
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        _ => false,
    }
}

/// `url` without its password (in the user info or a `password=` query
/// parameter), for messages and logs.
pub fn redact(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, url),
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((user_info, host)) => {
            let user = user_info.split_once(':').map_or(user_info, |(u, _)| u);
            format!("{user}@{host}")
        }
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|kv| !kv.to_ascii_lowercase().starts_with("password="))
                .collect();
            if kept.is_empty() {
                path.to_owned()
            } else {
                format!("{path}?{}", kept.join("&"))
            }
        }
        None => tail.to_owned(),
    };
    match scheme {
        Some(s) => format!("{s}://{authority}{tail}"),
        None => format!("{authority}{tail}"),
    }
}

/// Delay before the first retry; doubles up to [`MAX_BACKOFF`].
pub(crate) const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// Longest delay between two retries.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_millis(1000);
/// Longest one attempt to commit a batch may take before the connection is
/// dropped and the attempt retried on a new one.
pub(crate) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_drops_passwords_only() {
        assert_eq!(
            redact("postgres://bob:s3cret@db.example:5432/app?sslmode=require&password=x"),
            "postgres://bob@db.example:5432/app?sslmode=require"
        );
        assert_eq!(
            redact("postgresql://postgres@127.0.0.1:55442/rayltics"),
            "postgresql://postgres@127.0.0.1:55442/rayltics"
        );
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
        assert_eq!(redact("postgres://u:p@h"), "postgres://u@h");
    }

    #[test]
    fn schema_names() {
        assert!(PgOptions::validate_schema("rayltics").is_ok());
        assert!(PgOptions::validate_schema("_t_01").is_ok());
        for bad in ["", "Upper", "1abc", "a-b", "a b", "pg_x", &"x".repeat(64)] {
            assert!(PgOptions::validate_schema(bad).is_err(), "{bad}");
        }
    }
}
