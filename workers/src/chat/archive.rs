//! The chat archive in MongoDB: collection `chat_messages`, one document
//! per message, unique on `(room, seq)`; bulk unordered inserts where a
//! duplicate key (11000) means "already archived"; history reads.

use std::time::Duration;

use futures::TryStreamExt as _;
use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::error::ErrorKind;
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Collection, IndexModel};
use rayltics_commerce::model::ChatMessageRec;

use crate::config::ChatPersisterConfig;
use crate::error::WorkerError;

/// MongoDB's duplicate-key error code.
const DUPLICATE_KEY: i32 = 11000;

/// Most messages one history read returns.
pub const MAX_HISTORY: usize = 1000;

/// What one bulk insert did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Inserted {
    /// New documents.
    pub inserted: usize,
    /// Documents that were there already (same room and seq).
    pub duplicates: usize,
}

/// A handle on the archive collection (cheap to clone; the driver pools
/// connections). Needs a tokio runtime.
#[derive(Debug, Clone)]
pub struct ChatArchive {
    coll: Collection<Document>,
}

impl ChatArchive {
    /// A client for `cfg.mongo_url` (no round trip yet: the driver connects
    /// lazily, so this works while MongoDB is down).
    pub async fn connect(cfg: &ChatPersisterConfig) -> Result<Self, WorkerError> {
        let mut opts = ClientOptions::parse(&cfg.mongo_url).await?;
        opts.app_name = Some("rayltics-workers".into());
        let timeout = Duration::from_millis(cfg.server_selection_timeout_ms);
        opts.server_selection_timeout = Some(timeout);
        opts.connect_timeout = Some(timeout);
        let client = Client::with_options(opts)?;
        Ok(Self {
            coll: client.database(&cfg.database).collection(&cfg.collection),
        })
    }

    /// Creates the unique `(room, seq)` index (idempotent). Must have
    /// succeeded before the first insert, or a retried batch could store a
    /// message twice.
    pub async fn ensure_indexes(&self) -> Result<(), WorkerError> {
        let index = IndexModel::builder()
            .keys(doc! { "room": 1, "seq": 1 })
            .options(
                IndexOptions::builder()
                    .unique(true)
                    .name("room_seq_unique".to_owned())
                    .build(),
            )
            .build();
        self.coll.create_index(index).await?;
        Ok(())
    }

    /// Inserts `docs` unordered; documents already archived are counted as
    /// duplicates, any other failure is an error (retry the whole batch:
    /// what landed becomes a duplicate).
    pub async fn insert(&self, docs: Vec<Document>) -> Result<Inserted, WorkerError> {
        let n = docs.len();
        if n == 0 {
            return Ok(Inserted::default());
        }
        match self.coll.insert_many(docs).ordered(false).await {
            Ok(r) => Ok(Inserted {
                inserted: r.inserted_ids.len(),
                duplicates: n - r.inserted_ids.len(),
            }),
            Err(e) => match *e.kind {
                ErrorKind::InsertMany(ref f)
                    if f.write_concern_error.is_none()
                        && f.write_errors
                            .as_ref()
                            .is_some_and(|w| w.iter().all(|w| w.code == DUPLICATE_KEY)) =>
                {
                    let duplicates = f.write_errors.as_ref().map_or(0, Vec::len);
                    Ok(Inserted {
                        inserted: n - duplicates,
                        duplicates,
                    })
                }
                _ => Err(e.into()),
            },
        }
    }

    /// Up to `limit` (at most [`MAX_HISTORY`]) of `room`'s latest messages
    /// with seq < `before` (all when `None`), oldest first: what
    /// `GET /api/v1/chat/rooms/{room}/messages?before=&limit=` answers.
    pub async fn history(
        &self,
        room: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ChatMessageRec>, WorkerError> {
        let limit = limit.clamp(1, MAX_HISTORY);
        let mut filter = doc! { "room": room };
        if let Some(b) = before {
            filter.insert("seq", doc! { "$lt": i64::try_from(b).unwrap_or(i64::MAX) });
        }
        let docs: Vec<Document> = self
            .coll
            .find(filter)
            .sort(doc! { "seq": -1 })
            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .await?
            .try_collect()
            .await?;
        let mut out: Vec<ChatMessageRec> = docs.iter().filter_map(from_doc).collect();
        out.reverse();
        Ok(out)
    }
}

/// The document of one message (`event_id` kept for tracing).
pub fn to_doc(m: &ChatMessageRec, event_id: &str) -> Document {
    doc! {
        "room": &m.room,
        "seq": i64::try_from(m.seq).unwrap_or(i64::MAX),
        "id": &m.id,
        "user_id": &m.from,
        "text": &m.text,
        "sent_at": DateTime::from_millis(m.at),
        "event_id": event_id,
    }
}

/// The message a document holds; `None` if it is not one of ours.
pub fn from_doc(d: &Document) -> Option<ChatMessageRec> {
    let seq = match d.get("seq")? {
        Bson::Int64(v) => u64::try_from(*v).ok()?,
        Bson::Int32(v) => u64::try_from(*v).ok()?,
        _ => return None,
    };
    Some(ChatMessageRec {
        room: d.get_str("room").ok()?.to_owned(),
        seq,
        id: d.get_str("id").ok()?.to_owned(),
        from: d.get_str("user_id").ok()?.to_owned(),
        text: d.get_str("text").ok()?.to_owned(),
        at: d.get_datetime("sent_at").ok()?.timestamp_millis(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_round_trip() {
        let m = ChatMessageRec {
            room: "lobby".into(),
            seq: 42,
            id: "m-1".into(),
            from: "u-1".into(),
            text: "hi".into(),
            at: 1_764_000_000_123,
        };
        let d = to_doc(&m, "e-1");
        assert_eq!(d.get_str("event_id").ok(), Some("e-1"));
        assert_eq!(from_doc(&d), Some(m));
        assert_eq!(from_doc(&doc! { "room": "x" }), None);
    }
}
