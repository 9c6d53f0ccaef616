//! Identifiers: UUIDv7 (time-ordered) strings, placed on a chosen shard.
//!
//! Related state is co-located by choosing ids that hash to the shard that
//! should own them: a user's id hashes to the shard of their email, so login
//! (by email) and everything keyed by user id meet on one shard; an order's
//! id hashes to its owner's shard; a sale's id to its SKU's shard. With `n`
//! shards this takes `n` draws on average.

use rayltics_shards::{ShardId, shard_for};

/// A fresh UUIDv7 whose `shard_for` is `shard` among `shard_count` shards.
pub fn id_on_shard(shard: ShardId, shard_count: usize) -> String {
    loop {
        let id = uuid::Uuid::now_v7().hyphenated().to_string();
        if shard_count <= 1 || shard_for(id.as_bytes(), shard_count) == shard {
            return id;
        }
    }
}

/// Whether `s` looks like one of our ids (a hyphenated UUID). Used to
/// reject garbage path parameters before routing them.
pub fn is_id(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::try_parse(s).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_land_on_the_requested_shard() {
        for shard in 0..4 {
            let id = id_on_shard(shard, 4);
            assert_eq!(shard_for(id.as_bytes(), 4), shard);
            assert!(is_id(&id));
        }
        assert!(!is_id("not-an-id"));
    }
}
