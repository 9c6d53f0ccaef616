//! Where a worker failure came from, and whether waiting can help.

use std::path::PathBuf;

/// A failure of the workers role.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// A configuration value is wrong (never retried: fix the config).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The Kafka client could not be created or subscribed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// MongoDB refused or could not be reached.
    #[error("mongodb: {0}")]
    Mongo(#[from] mongodb::error::Error),
    /// A file of the worker's data dir.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A worker task ended abnormally.
    #[error("worker task failed: {0}")]
    Task(String),
}

impl WorkerError {
    /// An I/O error on `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// Whether retrying the same operation later can succeed (a server
    /// away, a timeout), as opposed to a configuration or data error.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Config(_) | Self::Task(_) => false,
            Self::Kafka(_) | Self::Io { .. } => true,
            Self::Mongo(e) => !matches!(
                *e.kind,
                mongodb::error::ErrorKind::InvalidArgument { .. }
                    | mongodb::error::ErrorKind::Authentication { .. }
            ),
        }
    }
}
