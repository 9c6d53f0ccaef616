//! `[kafka]`: the outbox relay's settings (brokers empty = relay off).

use serde::{Deserialize, Serialize};

/// Compression codecs the relay accepts (`compression.type`).
pub const COMPRESSIONS: &[&str] = &["lz4", "zstd", "none"];

/// The outbox relay to Kafka. Off while `brokers` is empty: events then stay
/// in the embedded event log only (read over gRPC `EventLog/Read`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port[,host:port...]`; empty = relay off.
    pub brokers: String,
    /// `client.id` the broker sees.
    pub client_id: String,
    /// How long the producer waits to fill a batch (`linger.ms`), ms.
    pub linger_ms: u64,
    /// Largest batch per partition (`batch.size`), bytes.
    pub batch_size_bytes: u64,
    /// Most messages per batch (`batch.num.messages`).
    pub batch_num_messages: u64,
    /// `lz4` (default), `zstd` or `none`.
    pub compression: String,
    /// Partitions of each topic the relay creates at start.
    pub topic_partitions: i32,
    /// Replication factor of each topic the relay creates at start.
    pub topic_replication: i32,
    /// First wait after a failed delivery before the relay re-sends from the
    /// first unacknowledged event (doubling up to `retry_backoff_max_ms`);
    /// also librdkafka's own `retry.backoff.ms`, ms.
    pub retry_backoff_ms: u64,
    /// Longest wait between two re-send rounds, ms.
    pub retry_backoff_max_ms: u64,
    /// A message the broker has not acknowledged after this long fails
    /// (`message.timeout.ms`) and the relay re-sends from it, ms.
    pub delivery_timeout_ms: u64,
    /// Events per shard handed to the producer and not yet acknowledged.
    pub max_in_flight_events: usize,
    /// Most events one read of a shard's outbox returns.
    pub read_batch_events: usize,
    /// Log a warning when a shard's unpublished backlog passes this many
    /// events (they are kept in memory until published: about 0.5 KiB each).
    pub backlog_warn_events: u64,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: String::new(),
            client_id: "rayltics".into(),
            linger_ms: 5,
            batch_size_bytes: 1_000_000,
            batch_num_messages: 10_000,
            compression: "lz4".into(),
            topic_partitions: 3,
            topic_replication: 1,
            retry_backoff_ms: 100,
            retry_backoff_max_ms: 5_000,
            delivery_timeout_ms: 30_000,
            max_in_flight_events: 20_000,
            read_batch_events: 1_000,
            backlog_warn_events: 1_000_000,
        }
    }
}

impl KafkaConfig {
    /// Whether the relay runs.
    pub fn enabled(&self) -> bool {
        !self.brokers.trim().is_empty()
    }

    /// Checks every field; the message names the field and the rule.
    pub fn validate(&self) -> Result<(), String> {
        if self.enabled() {
            for b in self.brokers.split(',') {
                let b = b.trim();
                let port = b.rsplit_once(':').map(|(_, p)| p);
                if b.is_empty() || !port.is_some_and(|p| p.parse::<u16>().is_ok_and(|p| p > 0)) {
                    return Err(format!(
                        "config: kafka.brokers: {b:?} is not host:port (brokers = {:?})",
                        self.brokers
                    ));
                }
            }
        }
        if self.client_id.trim().is_empty() {
            return Err("config: kafka.client_id must not be empty".into());
        }
        if !COMPRESSIONS.contains(&self.compression.as_str()) {
            return Err(format!(
                "config: kafka.compression = {:?} is not one of {}",
                self.compression,
                COMPRESSIONS.join(", ")
            ));
        }
        let ranged = |field: &str, v: u64, lo: u64, hi: u64| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(format!(
                    "config: kafka.{field} = {v} is outside {lo}..={hi}"
                ))
            }
        };
        ranged("linger_ms", self.linger_ms, 0, 900_000)?;
        ranged("batch_size_bytes", self.batch_size_bytes, 1, 2_147_483_647)?;
        ranged("batch_num_messages", self.batch_num_messages, 1, 1_000_000)?;
        ranged(
            "topic_partitions",
            u64::try_from(self.topic_partitions).unwrap_or(0),
            1,
            10_000,
        )?;
        ranged(
            "topic_replication",
            u64::try_from(self.topic_replication).unwrap_or(0),
            1,
            100,
        )?;
        ranged("retry_backoff_ms", self.retry_backoff_ms, 1, 300_000)?;
        ranged(
            "retry_backoff_max_ms",
            self.retry_backoff_max_ms,
            self.retry_backoff_ms,
            300_000,
        )?;
        ranged(
            "delivery_timeout_ms",
            self.delivery_timeout_ms,
            1_000,
            3_600_000,
        )?;
        ranged(
            "max_in_flight_events",
            self.max_in_flight_events as u64,
            1,
            1_000_000,
        )?;
        ranged(
            "read_batch_events",
            self.read_batch_events as u64,
            1,
            crate::events::MAX_READ as u64 * 10,
        )?;
        ranged("backlog_warn_events", self.backlog_warn_events, 1, u64::MAX)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_off() {
        let c = KafkaConfig::default();
        c.validate().unwrap();
        assert!(!c.enabled());
    }

    #[test]
    fn bad_fields_are_named() {
        let bad = |f: fn(&mut KafkaConfig)| {
            let mut c = KafkaConfig::default();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert!(bad(|c| c.brokers = "localhost".into()).contains("kafka.brokers"));
        assert!(bad(|c| c.brokers = "a:1,,b:2".into()).contains("kafka.brokers"));
        assert!(bad(|c| c.compression = "gzip".into()).contains("kafka.compression"));
        assert!(bad(|c| c.topic_partitions = 0).contains("kafka.topic_partitions"));
        assert!(bad(|c| c.retry_backoff_max_ms = 1).contains("kafka.retry_backoff_max_ms"));
        let mut ok = KafkaConfig {
            brokers: "127.0.0.1:9092, kafka-2:9093".into(),
            ..KafkaConfig::default()
        };
        ok.validate().unwrap();
        ok.compression = "zstd".into();
        ok.validate().unwrap();
    }
}
