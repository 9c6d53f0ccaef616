//! rayltics net.
