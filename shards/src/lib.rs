//! rayltics shards.
