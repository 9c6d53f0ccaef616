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
        let id = new_id();
        if shard_count <= 1 || shard_for(id.as_bytes(), shard_count) == shard {
            return id;
        }
    }
}

/// An order id as the shard's maps and indexes key it: the UUID's 128 bits.
/// Inline and `Copy`, so a map grows without re-reading a heap string per
/// entry, and an index entry costs no allocation. For ids in canonical form
/// (lower-case, hyphenated, as [`id_on_shard`] makes them) the numeric
/// order is the order of the strings.
pub type OrderKey = u128;

/// The key of `id` if it is in canonical form (what [`id_on_shard`] makes);
/// `None` for anything else, so a lookup of a non-canonical spelling finds
/// nothing, as a lookup of the string did.
pub fn order_key(id: &str) -> Option<OrderKey> {
    let b = id.as_bytes();
    if b.len() != 36 {
        return None;
    }
    let mut key: u128 = 0;
    for (i, &c) in b.iter().enumerate() {
        let digit = match c {
            b'-' if matches!(i, 8 | 13 | 18 | 23) => continue,
            b'0'..=b'9' if !matches!(i, 8 | 13 | 18 | 23) => c - b'0',
            b'a'..=b'f' if !matches!(i, 8 | 13 | 18 | 23) => c - b'a' + 10,
            _ => return None,
        };
        key = key << 4 | u128::from(digit);
    }
    Some(key)
}

/// The canonical id of `key` (inverse of [`order_key`]).
pub fn order_id_of(key: OrderKey) -> String {
    uuid::Uuid::from_u128(key).hyphenated().to_string()
}

/// A fresh UUIDv7, canonical (lower-case, hyphenated), on no particular
/// shard (event ids).
pub fn new_id() -> String {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    uuid::Uuid::now_v7()
        .hyphenated()
        .encode_lower(&mut buf)
        .to_owned()
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

    #[test]
    fn order_keys_round_trip_and_keep_the_order_of_the_ids() {
        let mut ids: Vec<String> = (0..50).map(|_| id_on_shard(0, 1)).collect();
        ids.push("00000000-0000-0000-0000-000000000000".into());
        ids.push("ffffffff-ffff-ffff-ffff-ffffffffffff".into());
        for id in &ids {
            let key = order_key(id).expect("canonical");
            assert_eq!(&order_id_of(key), id);
        }
        let mut by_key = ids.clone();
        by_key.sort_by_key(|id| order_key(id));
        ids.sort();
        assert_eq!(by_key, ids);
    }

    #[test]
    fn only_canonical_ids_have_a_key() {
        let id = id_on_shard(0, 1);
        assert!(order_key(&id.to_uppercase()).is_none());
        assert!(order_key(&id.replace('-', "")).is_none());
        assert!(order_key(&format!("{}x", &id[..35])).is_none());
        assert!(order_key(&id[..35]).is_none());
        let moved = format!("{}-{}", &id[..7], &id[8..]);
        assert!(order_key(&moved).is_none(), "a hyphen out of place");
    }
}
