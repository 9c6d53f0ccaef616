//! Key ownership: which shard owns a key.

/// Index of a shard within a node, `0..shard_count`.
pub type ShardId = usize;

/// The shard that owns `key` on a node with `shard_count` shards.
///
/// Stable across processes, builds and platforms (FNV-1a 64 followed by the
/// murmur3 finaliser for well-mixed low bits), so two nodes and a restarted
/// node agree on ownership. Changing it is a data migration.
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

/// The stable 64-bit hash behind [`shard_for`].
pub fn stable_hash(key: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    // murmur3 fmix64
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PINNED_SKU_1: u64 = 12_925_573_406_494_748_265;

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
