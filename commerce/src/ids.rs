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

/// An id (order, user) as the shard's maps and indexes key it: 128 bits.
/// Inline and `Copy`, so a map grows without re-reading a heap string per
/// entry, and an index entry costs no allocation.
pub type IdKey = u128;

/// The key of `id`. For an id in canonical form (lower-case, hyphenated, as
/// [`id_on_shard`] makes every id) it is the UUID's bits, so keys sort as
/// the ids do. Any other string gets the first 128 bits of its SHA-256 with
/// the UUID version nibble cleared (never the key of one of our UUIDv7s):
/// distinct strings keep distinct keys, as the string-keyed maps had them,
/// and another spelling of an id finds nothing.
pub fn id_key(id: &str) -> IdKey {
    canonical_bits(id).unwrap_or_else(|| {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(id.as_bytes());
        let mut bits = [0u8; 16];
        bits.copy_from_slice(&digest[..16]);
        u128::from_be_bytes(bits) & !(0xf << 76)
    })
}

/// The bits of a canonical UUID string; `None` for any other string.
fn canonical_bits(id: &str) -> Option<u128> {
    let b = id.as_bytes();
    if b.len() != 36 {
        return None;
    }
    let mut bits: u128 = 0;
    for (i, &c) in b.iter().enumerate() {
        let digit = match c {
            b'-' if matches!(i, 8 | 13 | 18 | 23) => continue,
            b'0'..=b'9' if !matches!(i, 8 | 13 | 18 | 23) => c - b'0',
            b'a'..=b'f' if !matches!(i, 8 | 13 | 18 | 23) => c - b'a' + 10,
            _ => return None,
        };
        bits = bits << 4 | u128::from(digit);
    }
    Some(bits)
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
    fn canonical_ids_key_as_their_bits_in_the_order_of_the_ids() {
        let mut ids: Vec<String> = (0..50).map(|_| id_on_shard(0, 1)).collect();
        ids.push("00000000-0000-0000-0000-000000000000".into());
        ids.push("ffffffff-ffff-ffff-ffff-ffffffffffff".into());
        for id in &ids {
            assert_eq!(id_key(id), uuid::Uuid::parse_str(id).unwrap().as_u128());
        }
        let mut by_key = ids.clone();
        by_key.sort_by_key(|id| id_key(id));
        ids.sort();
        assert_eq!(by_key, ids);
    }

    #[test]
    fn other_strings_key_apart_from_every_uuidv7() {
        let id = id_on_shard(0, 1);
        let moved = format!("{}-{}", &id[..7], &id[8..]);
        let others = [
            id.to_uppercase(),
            id.replace('-', ""),
            format!("{}x", &id[..35]),
            id[..35].to_owned(),
            moved,
            "u1".to_owned(),
            "u2".to_owned(),
        ];
        for other in &others {
            let key = id_key(other);
            assert_ne!(key, id_key(&id), "{other}");
            assert_eq!(uuid::Uuid::from_u128(key).get_version_num(), 0, "{other}");
            assert_eq!(key, id_key(other), "stable");
        }
        assert_ne!(id_key("u1"), id_key("u2"));
    }
}
