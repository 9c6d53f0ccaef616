//! The `[workers]` section of the node's configuration: one
//! `#[serde(default)]` struct per worker, units in the field names,
//! [`WorkersConfig::validate`] before [`crate::run`].

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::WorkerError;

/// Everything the workers role needs (`[workers]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkersConfig {
    /// Kafka bootstrap servers, `host:port[,host:port...]`. Empty: no
    /// worker runs (the embedded default has no Kafka).
    pub kafka_brokers: String,
    /// Consumer `session.timeout.ms`. The first group join takes about half
    /// of it on tansu, so keep it low (2000-6000).
    pub session_timeout_ms: u32,
    /// Consumer `heartbeat.interval.ms`.
    pub heartbeat_interval_ms: u32,
    /// librdkafka statistics interval, which feeds the consumer-lag gauge;
    /// 0 turns the gauge off.
    pub statistics_interval_ms: u32,
    /// How often the consumer refreshes topic metadata (a topic created
    /// after the worker started is picked up within this).
    pub metadata_refresh_ms: u32,
    /// Consumer `fetch.wait.max.ms`: how long the broker may hold a fetch
    /// that found nothing new. It bounds the delay of the first event after
    /// a quiet spell (librdkafka's default, 500, shows in order -> mail
    /// latency); lower costs one more fetch round trip per quiet wait.
    pub fetch_wait_max_ms: u32,
    /// The workers' own durable files (the email sender's sent-ids log,
    /// and by default its `.eml` directory). Empty: `<node data dir>/workers`
    /// (see [`WorkersConfig::with_node_data_dir`]).
    pub data_dir: PathBuf,
    /// Longest wait between two retries of a failed effect or poll.
    pub retry_max_ms: u64,
    /// Order mails.
    pub email: EmailConfig,
    /// The chat archive in MongoDB.
    pub chat: ChatPersisterConfig,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        Self {
            kafka_brokers: String::new(),
            session_timeout_ms: 6000,
            heartbeat_interval_ms: 500,
            statistics_interval_ms: 1000,
            metadata_refresh_ms: 5000,
            fetch_wait_max_ms: 20,
            data_dir: PathBuf::new(),
            retry_max_ms: 5000,
            email: EmailConfig::default(),
            chat: ChatPersisterConfig::default(),
        }
    }
}

/// How the email sender hands over a rendered mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailTransport {
    /// Write `{event_id}.eml` files into [`EmailConfig::eml_dir`] (the
    /// embedded default: nothing leaves the machine).
    Eml,
    /// Send over SMTP to [`EmailConfig::smtp_host`]:[`EmailConfig::smtp_port`].
    Smtp,
}

/// The email sender (`rayltics.orders` -> mails).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailConfig {
    /// Run it (when `kafka_brokers` is set).
    pub enabled: bool,
    /// Consumer group.
    pub group_id: String,
    /// Topic of order events.
    pub topic: String,
    /// `eml` (default) or `smtp`.
    pub transport: MailTransport,
    /// Directory of the `.eml` files; empty: `<data_dir>/mail`.
    pub eml_dir: PathBuf,
    /// SMTP server host (plain SMTP, no TLS).
    pub smtp_host: String,
    /// SMTP server port.
    pub smtp_port: u16,
    /// SMTP user name; empty: no authentication.
    pub smtp_username: String,
    /// SMTP password (with `smtp_username`).
    pub smtp_password: String,
    /// Timeout of one SMTP command.
    pub smtp_timeout_ms: u64,
    /// `From:` of every mail, `Name <address>` or `address`; its domain is
    /// also the right-hand side of each `Message-ID`.
    pub from: String,
    /// The shop's name in subjects and bodies.
    pub shop_name: String,
    /// Most events handled per batch (one offset commit per batch).
    pub max_batch: usize,
    /// Longest wait for a batch to fill once its first event arrived.
    pub max_wait_ms: u64,
    /// Mails of one batch in flight at once.
    pub concurrency: usize,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            group_id: "rayltics-email".into(),
            topic: "rayltics.orders".into(),
            transport: MailTransport::Eml,
            eml_dir: PathBuf::new(),
            smtp_host: "127.0.0.1".into(),
            smtp_port: 25,
            smtp_username: String::new(),
            smtp_password: String::new(),
            smtp_timeout_ms: 10_000,
            from: "rayltics <orders@rayltics.invalid>".into(),
            shop_name: "rayltics".into(),
            max_batch: 100,
            max_wait_ms: 10,
            concurrency: 8,
        }
    }
}

/// The chat persister (`rayltics.chat` -> MongoDB).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatPersisterConfig {
    /// MongoDB URL (`mongodb://host:port`); empty: the persister does not
    /// run and history stays in the embedded archive.
    pub mongo_url: String,
    /// Database.
    pub database: String,
    /// Collection (unique index on `(room, seq)`).
    pub collection: String,
    /// Consumer group.
    pub group_id: String,
    /// Topic of chat events.
    pub topic: String,
    /// Most messages per `insert_many`.
    pub max_batch: usize,
    /// Longest wait for a batch to fill once its first message arrived.
    pub max_wait_ms: u64,
    /// How long the driver looks for a reachable server before an
    /// operation fails (and is retried).
    pub server_selection_timeout_ms: u64,
}

impl Default for ChatPersisterConfig {
    fn default() -> Self {
        Self {
            mongo_url: String::new(),
            database: "rayltics".into(),
            collection: "chat_messages".into(),
            group_id: "rayltics-chat-persister".into(),
            topic: "rayltics.chat".into(),
            max_batch: 500,
            max_wait_ms: 100,
            server_selection_timeout_ms: 2000,
        }
    }
}

impl WorkersConfig {
    /// Fills the empty `data_dir` with `<node_data_dir>/workers`.
    pub fn with_node_data_dir(mut self, node_data_dir: &Path) -> Self {
        if self.data_dir.as_os_str().is_empty() {
            self.data_dir = node_data_dir.join("workers");
        }
        self
    }

    /// Whether the email sender runs with this configuration.
    pub fn email_enabled(&self) -> bool {
        !self.kafka_brokers.is_empty() && self.email.enabled
    }

    /// Whether the chat persister runs with this configuration.
    pub fn chat_enabled(&self) -> bool {
        !self.kafka_brokers.is_empty() && !self.chat.mongo_url.is_empty()
    }

    /// The directory `.eml` files go to.
    pub fn eml_dir(&self) -> PathBuf {
        if self.email.eml_dir.as_os_str().is_empty() {
            self.data_dir.join("mail")
        } else {
            self.email.eml_dir.clone()
        }
    }

    /// Checks the values, naming the first wrong field.
    pub fn validate(&self) -> Result<(), WorkerError> {
        let bad =
            |field: &str, why: &str| Err(WorkerError::Config(format!("workers.{field}: {why}")));
        if !(1000..=300_000).contains(&self.session_timeout_ms) {
            return bad("session_timeout_ms", "must be 1000..=300000");
        }
        if self.heartbeat_interval_ms == 0
            || self.heartbeat_interval_ms.saturating_mul(3) > self.session_timeout_ms
        {
            return bad(
                "heartbeat_interval_ms",
                "must be > 0 and at most a third of session_timeout_ms",
            );
        }
        if self.retry_max_ms == 0 {
            return bad("retry_max_ms", "must be > 0");
        }
        if self.email_enabled() {
            let e = &self.email;
            if self.data_dir.as_os_str().is_empty() {
                return bad("data_dir", "must be set (the sent-ids log lives there)");
            }
            if e.group_id.is_empty() || e.topic.is_empty() {
                return bad("email.group_id / email.topic", "must not be empty");
            }
            if e.from.parse::<lettre::message::Mailbox>().is_err() {
                return bad("email.from", "is not a mailbox (`Name <a@b>` or `a@b`)");
            }
            if e.max_batch == 0 || e.concurrency == 0 {
                return bad("email.max_batch / email.concurrency", "must be > 0");
            }
            if e.transport == MailTransport::Smtp && e.smtp_host.is_empty() {
                return bad("email.smtp_host", "must be set with transport = \"smtp\"");
            }
            if e.smtp_password.is_empty() != e.smtp_username.is_empty() {
                return bad(
                    "email.smtp_username / email.smtp_password",
                    "set both or neither",
                );
            }
        }
        // A MongoDB URL is used for history reads even without Kafka (no
        // persister then), so it is checked whenever it is set.
        if !self.chat.mongo_url.is_empty() {
            let c = &self.chat;
            if !c.mongo_url.starts_with("mongodb://") && !c.mongo_url.starts_with("mongodb+srv://")
            {
                return bad(
                    "chat.mongo_url",
                    "must start with mongodb:// or mongodb+srv://",
                );
            }
            if c.database.is_empty() || c.collection.is_empty() {
                return bad("chat.database / chat.collection", "must not be empty");
            }
            if c.group_id.is_empty() || c.topic.is_empty() {
                return bad("chat.group_id / chat.topic", "must not be empty");
            }
            if c.max_batch == 0 || c.server_selection_timeout_ms == 0 {
                return bad(
                    "chat.max_batch / chat.server_selection_timeout_ms",
                    "must be > 0",
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_run_nothing_and_validate() {
        let c = WorkersConfig::default();
        assert!(!c.email_enabled());
        assert!(!c.chat_enabled());
        c.validate().expect("defaults are valid");
    }

    #[test]
    fn the_email_sender_needs_a_data_dir_and_a_mailbox() {
        let mut c = WorkersConfig {
            kafka_brokers: "127.0.0.1:9092".into(),
            ..Default::default()
        };
        assert!(c.validate().is_err());
        c = c.with_node_data_dir(Path::new("/tmp/node"));
        assert_eq!(c.data_dir, Path::new("/tmp/node/workers"));
        assert_eq!(c.eml_dir(), Path::new("/tmp/node/workers/mail"));
        c.validate().expect("valid");
        c.email.from = "not a mailbox".into();
        let e = c.validate().expect_err("bad from");
        assert!(e.to_string().contains("workers.email.from"), "{e}");
    }

    #[test]
    fn a_mongo_url_is_checked_even_without_kafka() {
        let mut c = WorkersConfig::default();
        c.chat.mongo_url = "mongo://nowhere".into();
        assert!(!c.chat_enabled());
        let e = c.validate().expect_err("bad scheme");
        assert!(e.to_string().contains("workers.chat.mongo_url"), "{e}");
        c.chat.mongo_url = "mongodb://127.0.0.1:27017".into();
        c.validate().expect("valid");
    }

    #[test]
    fn heartbeat_must_fit_the_session() {
        let c = WorkersConfig {
            session_timeout_ms: 2000,
            heartbeat_interval_ms: 1000,
            ..Default::default()
        };
        assert!(c.validate().is_err());
    }
}
