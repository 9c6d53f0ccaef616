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

/// An id (order, user) as the shard's maps and indexes key it: the UUID's
/// 128 bits.
/// Inline and `Copy`, so a map grows without re-reading a heap string per
/// entry, and an index entry costs no allocation. For ids in canonical form
/// (lower-case, hyphenated, as [`id_on_shard`] makes them) the numeric
/// order is the order of the strings.
pub type IdKey = u128;

/// The key of `id` if it is in canonical form (what [`id_on_shard`] makes);
/// `None` for anything else, so a lookup of a non-canonical spelling finds
/// nothing, as a lookup of the string did.
pub fn id_key(id: &str) -> Option<IdKey> {
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

/// The key of a user id: [`id_key`] for a canonical id (every id the node
/// makes), else the first 128 bits of its SHA-256 with the UUID version
/// nibble cleared (never a UUIDv7's key), so that state keyed by user
/// accepts any id string as the string-keyed maps did.
pub fn user_key(id: &str) -> IdKey {
    use sha2::{Digest, Sha256};
    id_key(id).unwrap_or_else(|| {
        let digest = Sha256::digest(id.as_bytes());
        let mut bits = [0u8; 16];
        bits.copy_from_slice(&digest[..16]);
        u128::from_be_bytes(bits) & !(0xf << 76)
    })
}

/// The canonical id of `key` (inverse of [`id_key`]).
pub fn id_of_key(key: IdKey) -> String {
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
            let key = id_key(id).expect("canonical");
            assert_eq!(&id_of_key(key), id);
        }
        let mut by_key = ids.clone();
        by_key.sort_by_key(|id| id_key(id));
        ids.sort();
        assert_eq!(by_key, ids);
    }

    #[test]
    fn only_canonical_ids_have_a_key() {
        let id = id_on_shard(0, 1);
        assert!(id_key(&id.to_uppercase()).is_none());
        assert!(id_key(&id.replace('-', "")).is_none());
        assert!(id_key(&format!("{}x", &id[..35])).is_none());
        assert!(id_key(&id[..35]).is_none());
        let moved = format!("{}-{}", &id[..7], &id[8..]);
        assert!(id_key(&moved).is_none(), "a hyphen out of place");
    }

    #[test]
    fn user_keys_of_other_spellings_are_distinct_and_never_a_v7_key() {
        let id = id_on_shard(0, 1);
        assert_eq!(Some(user_key(&id)), id_key(&id));
        let (a, b) = (user_key("u1"), user_key("u2"));
        assert_ne!(a, b);
        assert_eq!(a, user_key("u1"), "stable");
        for k in [a, b, user_key(&id.to_uppercase())] {
            assert_eq!(uuid::Uuid::from_u128(k).get_version_num(), 0);
        }
    }
}
