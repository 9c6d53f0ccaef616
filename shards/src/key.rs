//! Key ownership: which shard owns a key.

/// Index of a shard within a node, `0..shard_count`.
pub type ShardId = usize;

/// The shard that owns `key` on a node with `shard_count` shards.
///
/// Stable across processes, builds and platforms (XXH3-64 with seed 0, a
/// published, versioned algorithm), so two nodes and a restarted node agree
/// on ownership. Changing it is a data migration.
///
/// # Panics
/// Never for `shard_count >= 1`; a count of 0 is a configuration error caught
/// at start-up and mapped to shard 0 here.
pub fn shard_for(key: &[u8], shard_count: usize) -> ShardId {
    if shard_count <= 1 {
        return 0;
    }
    (stable_hash(key) % shard_count as u64) as ShardId
}

/// The stable 64-bit hash behind [`shard_for`]: XXH3-64, seed 0.
pub fn stable_hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    // XXH3-64("sku-1"), cross-checked with the reference implementation
    // (Python `xxhash.xxh3_64_intdigest`).
    const PINNED_SKU_1: u64 = 16_031_833_883_593_195_447;

    #[test]
    fn stable_values_do_not_change() {
        // Pinned: a change here re-homes every key of every deployment.
        assert_eq!(stable_hash(b"sku-1"), PINNED_SKU_1);
        assert_eq!(shard_for(b"sku-1", 1), 0);
        let a = shard_for(b"sku-1", 7);
        assert_eq!(a, shard_for(b"sku-1", 7));
    }

    #[test]
    fn spreads_keys_evenly() {
        let shards = 4;
        let mut counts = [0usize; 4];
        for i in 0..40_000 {
            counts[shard_for(format!("user-{i}").as_bytes(), shards)] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "uneven spread: {counts:?}");
        }
    }
}
