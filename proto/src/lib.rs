//! gRPC contracts of rayltics, generated from `proto/` by tonic-prost-build.
//!
//! # Layout
//! - [`node::v1`]: `rayltics.node.v1.NodeService` (key ownership).
//! - [`events::v1`]: `rayltics.events.v1.EventLog` (the embedded event log,
//!   read by offset) and the event payloads.
//! - [`FILE_DESCRIPTOR_SET`]: every compiled file, for server reflection.

#![allow(missing_docs, unreachable_pub, missing_debug_implementations)]

/// `rayltics.node.*`
pub mod node {
    /// `rayltics.node.v1`
    pub mod v1 {
        tonic::include_proto!("rayltics.node.v1");
    }
}

/// `rayltics.events.*`
pub mod events {
    /// `rayltics.events.v1`
    pub mod v1 {
        tonic::include_proto!("rayltics.events.v1");
    }
}

/// Encoded `FileDescriptorSet` of every proto in this crate.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("rayltics_descriptor");
