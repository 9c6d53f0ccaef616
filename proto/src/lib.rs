//! rayltics proto.
