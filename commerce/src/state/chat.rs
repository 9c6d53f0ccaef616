//! Chat rooms (the room's shard): each room's gap-free sequence and its
//! message archive, the latest [`ROOM_ARCHIVE_RETAINED`] messages per room.

use std::collections::VecDeque;

use rkyv::{Archive, Deserialize, Serialize};

use crate::change::Change;
use crate::clock::Millis;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::model::ChatMessageRec;

use super::ShardData;

/// Messages kept per room by default (in memory, snapshots and so for
/// `history` and `join` with `since`); older ones can no longer be replayed
/// here (history then comes from the MongoDB archive when configured).
pub const ROOM_ARCHIVE_RETAINED: usize = 10_000;

/// Messages kept per room in this process (see [`set_room_messages_retained`]).
static RETAINED: AtomicUsize = AtomicUsize::new(ROOM_ARCHIVE_RETAINED);

/// Sets how many messages each room keeps; once at start, before any shard
/// opens its store (recovery and the snapshot builder trim the same way).
pub fn set_room_messages_retained(n: usize) {
    RETAINED.store(n.max(1), Ordering::Relaxed);
}

fn room_messages_retained() -> usize {
    RETAINED.load(Ordering::Relaxed)
}

/// The topic of chat events (API.md Events).
const CHAT_TOPIC: &str = "rayltics.chat";

/// The kind of the event a posted message records.
const CHAT_EVENT_KIND: &str = "chat.message";

/// A room's durable part.
#[derive(Archive, Serialize, Deserialize, Debug, Default, Clone)]
pub struct RoomLog {
    /// Seq of the latest message (0: none yet).
    pub last_seq: u64,
    /// The latest messages, oldest first, consecutive seqs.
    pub messages: VecDeque<ChatMessageRec>,
}

/// Messages read from a room's archive.
#[derive(Debug, PartialEq)]
pub struct RoomSlice<'a> {
    /// Seq of the room's latest message.
    pub last_seq: u64,
    /// Whether the slice covers everything asked for (false: messages the
    /// request reached back to are no longer retained).
    pub complete: bool,
    /// The messages, oldest first.
    pub messages: Vec<&'a ChatMessageRec>,
}

impl ShardData {
    /// Seq of `room`'s latest message (0 when it has none).
    pub fn room_last_seq(&self, room: &str) -> u64 {
        self.d.rooms.get(room).map_or(0, |r| r.last_seq)
    }

    /// Accepts a message into `room`: it gets the next seq, and its
    /// `rayltics.chat` event (kind `chat.message`, key = room, payload =
    /// `payload(&msg)`) goes into the same commit (outbox), so the archive
    /// downstream (Kafka -> MongoDB) sees every message exactly as committed.
    pub fn plan_chat_post(
        &self,
        room: &str,
        id: String,
        from: &str,
        text: &str,
        at: Millis,
        payload: impl FnOnce(&ChatMessageRec) -> Vec<u8>,
    ) -> (ChatMessageRec, Vec<Change>) {
        let msg = ChatMessageRec {
            room: room.to_owned(),
            seq: self.room_last_seq(room) + 1,
            id,
            from: from.to_owned(),
            text: text.to_owned(),
            at,
        };
        let event = self.next_event(CHAT_TOPIC, room, CHAT_EVENT_KIND, payload(&msg), at, 0);
        (
            msg.clone(),
            vec![Change::ChatPosted(msg), Change::Event(event)],
        )
    }

    /// Up to `limit` messages with seq > `since`, oldest first.
    pub fn room_after(&self, room: &str, since: u64, limit: usize) -> RoomSlice<'_> {
        let Some(log) = self.d.rooms.get(room) else {
            return RoomSlice {
                last_seq: 0,
                complete: since == 0,
                messages: Vec::new(),
            };
        };
        let first = log.messages.front().map_or(log.last_seq + 1, |m| m.seq);
        let skip = (since + 1).saturating_sub(first) as usize;
        let messages: Vec<_> = log.messages.iter().skip(skip).take(limit).collect();
        let reached_end = messages
            .last()
            .map_or(since >= log.last_seq, |m| m.seq == log.last_seq);
        RoomSlice {
            last_seq: log.last_seq,
            complete: since + 1 >= first && reached_end,
            messages,
        }
    }

    /// Up to `limit` of the latest messages with seq < `before` (all when
    /// `None`), oldest first.
    pub fn room_before(&self, room: &str, before: Option<u64>, limit: usize) -> RoomSlice<'_> {
        let Some(log) = self.d.rooms.get(room) else {
            return RoomSlice {
                last_seq: 0,
                complete: true,
                messages: Vec::new(),
            };
        };
        let first = log.messages.front().map_or(log.last_seq + 1, |m| m.seq);
        let end = before.unwrap_or(u64::MAX).min(log.last_seq + 1);
        let end_idx = end.saturating_sub(first) as usize;
        let start_idx = end_idx.saturating_sub(limit);
        let messages: Vec<_> = log
            .messages
            .range(start_idx..end_idx.min(log.messages.len()))
            .collect();
        let wanted_from = end.saturating_sub(limit as u64).max(1);
        RoomSlice {
            last_seq: log.last_seq,
            complete: wanted_from >= first || end <= 1,
            messages,
        }
    }

    pub(super) fn apply_chat_posted(&mut self, m: ChatMessageRec) {
        let log = self.d.rooms.entry(m.room.clone()).or_default();
        if m.seq <= log.last_seq {
            return;
        }
        log.last_seq = m.seq;
        log.messages.push_back(m);
        while log.messages.len() > room_messages_retained() {
            log.messages.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(s: &mut ShardData, room: &str, text: &str) -> u64 {
        let (msg, changes) = s.plan_chat_post(room, format!("id-{text}"), "u1", text, 7, |m| {
            m.text.clone().into_bytes()
        });
        for c in changes {
            s.apply(c);
        }
        msg.seq
    }

    fn seqs(slice: &RoomSlice<'_>) -> Vec<u64> {
        slice.messages.iter().map(|m| m.seq).collect()
    }

    #[test]
    fn a_post_records_its_event_in_the_same_commit() {
        let mut s = ShardData::new();
        post(&mut s, "a", "1");
        post(&mut s, "b", "2");
        let (events, last, _) = s.events_after(0, 10);
        assert_eq!(last, 2);
        let got: Vec<_> = events
            .iter()
            .map(|e| {
                (
                    e.offset,
                    e.topic.as_str(),
                    e.key.as_str(),
                    e.kind.as_str(),
                    e.payload.as_slice(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (1, CHAT_TOPIC, "a", CHAT_EVENT_KIND, b"1".as_slice()),
                (2, CHAT_TOPIC, "b", CHAT_EVENT_KIND, b"2".as_slice()),
            ]
        );
        assert_ne!(events[0].id, events[1].id);
    }

    #[test]
    fn seqs_are_gap_free_per_room() {
        let mut s = ShardData::new();
        assert_eq!(post(&mut s, "a", "1"), 1);
        assert_eq!(post(&mut s, "a", "2"), 2);
        assert_eq!(post(&mut s, "b", "1"), 1);
        assert_eq!(s.room_last_seq("a"), 2);
        assert_eq!(s.room_last_seq("none"), 0);
    }

    #[test]
    fn after_and_before_slice_the_archive() {
        let mut s = ShardData::new();
        for i in 0..10 {
            post(&mut s, "r", &i.to_string());
        }
        let after = s.room_after("r", 7, 100);
        assert_eq!(seqs(&after), vec![8, 9, 10]);
        assert!(after.complete);
        assert_eq!(seqs(&s.room_after("r", 2, 3)), vec![3, 4, 5]);
        assert!(s.room_after("r", 10, 100).messages.is_empty());
        assert_eq!(seqs(&s.room_before("r", Some(5), 2)), vec![3, 4]);
        assert_eq!(seqs(&s.room_before("r", None, 3)), vec![8, 9, 10]);
        assert_eq!(seqs(&s.room_before("r", Some(1), 3)), Vec::<u64>::new());
        assert!(s.room_after("nowhere", 0, 5).complete);
        assert!(!s.room_after("nowhere", 3, 5).complete);
    }

    #[test]
    fn the_archive_keeps_the_latest_messages_and_says_when_a_gap_is_lost() {
        let mut s = ShardData::new();
        for i in 0..(ROOM_ARCHIVE_RETAINED + 5) {
            post(&mut s, "r", &i.to_string());
        }
        let last = (ROOM_ARCHIVE_RETAINED + 5) as u64;
        let lost = s.room_after("r", 2, 10);
        assert!(!lost.complete);
        assert_eq!(lost.messages[0].seq, 6);
        let kept = s.room_after("r", 5, usize::MAX);
        assert!(kept.complete);
        assert_eq!(kept.messages.len(), ROOM_ARCHIVE_RETAINED);
        assert_eq!(kept.last_seq, last);
        assert!(!s.room_before("r", Some(7), 5).complete);
    }
}
