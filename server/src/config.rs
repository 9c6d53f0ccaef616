//! Node configuration: embedded defaults, then a TOML file, then `RAYLTICS_*`
//! environment variables, then command-line flags; validated once at start.

use std::net::SocketAddr;
use std::path::PathBuf;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Every role a node can run (API.md Operations, DESIGN.md section 1).
pub const ROLES: &[&str] = &[
    "gateway",
    "auth",
    "catalog",
    "inventory",
    "order",
    "chat",
    "workers",
];

/// The whole configuration of one node. `rayltics.example.toml` documents
/// every field with its default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// HTTP listen address (REST, GraphQL and WebSocket share it).
    pub http_addr: SocketAddr,
    /// gRPC listen address (served by the tokio sidecar).
    pub grpc_addr: SocketAddr,
    /// Directory for journals, snapshots and generated keys.
    pub data_dir: PathBuf,
    /// Shard threads; 0 = one per available core.
    pub shards: usize,
    /// Roles this process runs (`all` or a subset of [`ROLES`]); a list, or
    /// a comma-separated string (`RAYLTICS_ROLES=gateway,auth`).
    #[serde(deserialize_with = "list_or_csv")]
    pub roles: Vec<String>,
    /// `pretty` (human) or `json` (one object per line).
    pub log_format: LogFormat,
    /// `tracing` filter directive, e.g. `info` or `rayltics=debug,info`.
    pub log_level: String,
    /// Where shards make their changes durable: `journal` (embedded, files
    /// under `data_dir`) or `postgres` (the `[postgres]` section).
    pub storage: Storage,
    /// Shard runtime tuning.
    pub runtime: RuntimeConfig,
    /// HTTP edge limits and timeouts.
    pub http: HttpConfig,
    /// Graceful stop.
    pub shutdown: ShutdownConfig,
    /// The embedded store (per-shard journals); `snapshot_every_records`
    /// applies to both stores.
    pub journal: JournalConfig,
    /// The PostgreSQL store (`storage = "postgres"`).
    pub postgres: PostgresConfig,
    /// Auth, orders and flash sales.
    pub commerce: CommerceConfig,
    /// WebSocket chat and notifications.
    pub realtime: RealtimeConfig,
    /// The outbox relay to Kafka (off while `kafka.brokers` is empty).
    pub kafka: crate::relay::KafkaConfig,
    /// The workers role (email sender, chat persister): Kafka consumer
    /// groups; `workers.kafka_brokers` defaults to `kafka.brokers`.
    pub workers: rayltics_workers::WorkersConfig,
    /// Switches for tests; all off in production.
    pub debug: DebugConfig,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Where shards make their changes durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// Per-shard journal files under `data_dir` (the embedded default).
    #[default]
    Journal,
    /// PostgreSQL: the same batches, one transaction each, with the outbox.
    Postgres,
}

impl Storage {
    /// The name `/readyz` and the logs use.
    pub fn name(self) -> &'static str {
        match self {
            Storage::Journal => "journal",
            Storage::Postgres => "postgres",
        }
    }
}

/// The PostgreSQL store: each shard's journal batches, snapshots and outbox
/// rows in one schema of one database.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresConfig {
    /// `postgres://user:password@host:port/database`; required when
    /// `storage = "postgres"` (and for `rayltics migrate`).
    pub url: String,
    /// Schema holding this node's tables; one per node. Created by the
    /// migrations if missing.
    pub schema: String,
    /// Apply the embedded migrations at start (otherwise run `rayltics
    /// migrate` first).
    pub migrate_on_start: bool,
    /// How long a request waits for its commit before answering 503
    /// (the batch still commits once the server answers), ms.
    pub commit_timeout_ms: u64,
    /// Limit for one connection attempt, ms.
    pub connect_timeout_ms: u64,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            schema: "rayltics".into(),
            migrate_on_start: true,
            commit_timeout_ms: 2000,
            connect_timeout_ms: 5000,
        }
    }
}

impl PostgresConfig {
    /// The journal's options for this server (no outbox extractor: the
    /// commerce store installs its own).
    pub fn pg_options(&self) -> rayltics_journal::PgOptions {
        use std::time::Duration;
        let mut o = rayltics_journal::PgOptions::new(&self.url, &self.schema);
        o.commit_timeout = Duration::from_millis(self.commit_timeout_ms);
        o.connect_timeout = Duration::from_millis(self.connect_timeout_ms);
        o
    }

    /// Checks the fields that any use of the server needs.
    pub fn validate(&self) -> Result<(), String> {
        let url = self.url.trim();
        if url.is_empty() {
            return Err("config: postgres.url is empty; set it (RAYLTICS_POSTGRES__URL) to                         postgres://user:password@host:port/database"
                .into());
        }
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(format!(
                "config: postgres.url = {:?} must start with postgres:// or postgresql://",
                rayltics_journal::pg::redact(url)
            ));
        }
        rayltics_journal::PgOptions::validate_schema(&self.schema)
            .map_err(|e| format!("config: postgres.schema: {e}"))?;
        positive("postgres.commit_timeout_ms", self.commit_timeout_ms)?;
        positive("postgres.connect_timeout_ms", self.connect_timeout_ms)?;
        Ok(())
    }
}

/// Shard runtime tuning.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// monoio driver: `epoll` (default, fastest on the measured VMs) or `io_uring`.
    pub driver: String,
    /// Pin shard i to core i (modulo the available cores).
    pub pin_cores: bool,
    /// Slots per cross-shard ring (one ring per ordered shard pair).
    pub mesh_ring_capacity: usize,
    /// Microseconds an idle mesh pump keeps polling before it parks.
    pub mesh_spin_us: u64,
}

/// HTTP edge limits and timeouts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Request line + headers, bytes (431 beyond).
    pub max_header_bytes: usize,
    /// Header fields per request, at most 128 (431 beyond).
    pub max_headers: usize,
    /// Request target, bytes (414 beyond).
    pub max_uri_bytes: usize,
    /// Decoded request body, bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Time for a request head to arrive once started, ms (408 beyond).
    pub header_read_timeout_ms: u64,
    /// Time for a request body to arrive, ms (408 beyond).
    pub body_read_timeout_ms: u64,
    /// Idle keep-alive time between requests, ms (then closed).
    pub idle_timeout_ms: u64,
    /// Time to write a response to a slow reader, ms (then closed).
    pub write_timeout_ms: u64,
    /// Open connections per shard; further connections are closed at accept.
    pub max_connections_per_shard: usize,
}

/// Graceful stop.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish, ms.
    pub drain_timeout_ms: u64,
}

/// The embedded store: one journal per shard under `data_dir`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JournalConfig {
    /// fdatasync every commit batch. Turning it off loses acknowledged writes
    /// on power loss; for throwaway benchmarks only.
    pub fsync: bool,
    /// Write a snapshot once this many durable records follow the last one.
    /// A helper thread rebuilds the state from the previous snapshot and the
    /// journal and serialises it (the shard does not pause; the build costs
    /// another core and a second copy of the state meanwhile); this trades
    /// that work against replay at start (about 1.5 s per million records).
    pub snapshot_every_records: u64,
    /// Start a new segment file after this many bytes.
    pub segment_bytes: u64,
    /// Keep one zero-filled spare segment (`segment_bytes`) ready, written
    /// in the background, and start each new segment from it: commits then
    /// overwrite instead of growing the file, so an fdatasync has no size
    /// change to commit (~30 % less fdatasync time here, ADR-0013). Costs every journal byte
    /// written twice (once as zeros) and one more segment of disk per shard;
    /// when the spare is not ready in time, a segment grows as without it.
    pub preallocate_segments: bool,
}

/// WebSocket chat and notifications (`GET /ws`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RealtimeConfig {
    /// Serve an unauthenticated echo WebSocket at `/ws/echo` (conformance
    /// tests only; off in production).
    pub echo_endpoint: bool,
    /// Largest client message after reassembling fragments, bytes (1009).
    pub max_message_bytes: usize,
    /// Send backlog per connection, bytes; a reader that falls further
    /// behind is cut off with 1008.
    pub send_queue_bytes: usize,
    /// A connection silent this long (no frame, not even a pong) is closed
    /// with 1001, ms.
    pub idle_timeout_ms: u64,
    /// The server pings a connection it has sent nothing to for this long, ms.
    pub ping_interval_ms: u64,
    /// A socket written to less than this long ago waits for the shard's
    /// next write tick and then sends everything queued with one write
    /// (members of busy rooms: fewer syscalls, up to this much latency); 0
    /// writes every frame at once, us.
    pub write_coalesce_us: u64,
    /// Rooms one connection may be in.
    pub max_rooms_per_connection: usize,
    /// Connections one room may hold.
    pub max_members_per_room: usize,
    /// Client frames per second per connection (sustained).
    pub messages_per_second: u32,
    /// Client frames per connection in a burst.
    pub message_burst: u32,
    /// Messages each room keeps on its shard (for `history` and `join` with
    /// `since`); older history comes from MongoDB when
    /// `workers.chat.mongo_url` is set.
    pub room_messages_retained: usize,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        Self {
            echo_endpoint: false,
            max_message_bytes: 64 * 1024,
            send_queue_bytes: 1024 * 1024,
            idle_timeout_ms: 60_000,
            ping_interval_ms: 20_000,
            write_coalesce_us: 0,
            max_rooms_per_connection: 64,
            max_members_per_room: 100_000,
            messages_per_second: 50,
            message_burst: 100,
            room_messages_retained: rayltics_commerce::state::ROOM_ARCHIVE_RETAINED,
        }
    }
}

impl RealtimeConfig {
    /// The settings shards use.
    pub fn settings(&self) -> crate::realtime::Settings {
        use std::time::Duration;
        crate::realtime::Settings {
            echo_endpoint: self.echo_endpoint,
            socket: crate::realtime::socket::SocketLimits {
                max_message_bytes: self.max_message_bytes,
                send_queue_bytes: self.send_queue_bytes,
                idle_timeout: Duration::from_millis(self.idle_timeout_ms),
                ping_interval: Duration::from_millis(self.ping_interval_ms),
                write_coalesce: Duration::from_micros(self.write_coalesce_us),
            },
            max_rooms_per_connection: self.max_rooms_per_connection,
            max_members_per_room: self.max_members_per_room,
            messages_per_second: self.messages_per_second,
            message_burst: self.message_burst,
        }
    }
}

/// Auth, orders and flash sales.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CommerceConfig {
    /// HS256 secret for access tokens (at least 32 bytes). Empty: generated
    /// once and kept in `data_dir/jwt-hs256.key`.
    pub jwt_secret: String,
    /// Access token lifetime, seconds.
    pub access_token_ttl_secs: u64,
    /// Refresh token lifetime, seconds (each rotation starts it again).
    pub refresh_token_ttl_secs: u64,
    /// How long a pending order holds its stock before it expires, seconds.
    pub reservation_ttl_secs: u64,
    /// argon2id memory per hash, KiB.
    pub argon2_memory_kib: u32,
    /// argon2id passes.
    pub argon2_iterations: u32,
    /// Threads that hash passwords (off the shards' event loops).
    pub hasher_threads: usize,
    /// Hash requests that may wait for a hasher thread (503 beyond).
    pub hasher_queue: usize,
    /// Login attempts allowed at once per email and per client IP.
    pub login_burst: u32,
    /// Login attempts regained per minute, per email and per client IP.
    pub login_per_minute: u32,
    /// Verified access tokens cached per shard.
    pub token_cache_entries: usize,
}

/// Switches for tests; all off in production.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DebugConfig {
    /// Run on a manual clock moved by `POST /debug/clock` (expiry tests).
    pub manual_clock: bool,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            fsync: true,
            snapshot_every_records: 1_000_000,
            segment_bytes: 64 << 20,
            preallocate_segments: true,
        }
    }
}

impl Default for CommerceConfig {
    fn default() -> Self {
        Self {
            jwt_secret: String::new(),
            access_token_ttl_secs: 900,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            reservation_ttl_secs: 900,
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            hasher_threads: 1,
            hasher_queue: 256,
            login_burst: 10,
            login_per_minute: 10,
            token_cache_entries: 65_536,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http_addr: ([127, 0, 0, 1], 8080).into(),
            grpc_addr: ([127, 0, 0, 1], 50051).into(),
            data_dir: PathBuf::from("rayltics-data"),
            shards: 0,
            roles: vec!["all".into()],
            log_format: LogFormat::Pretty,
            log_level: "info".into(),
            storage: Storage::default(),
            runtime: RuntimeConfig::default(),
            http: HttpConfig::default(),
            shutdown: ShutdownConfig::default(),
            journal: JournalConfig::default(),
            postgres: PostgresConfig::default(),
            commerce: CommerceConfig::default(),
            realtime: RealtimeConfig::default(),
            kafka: crate::relay::KafkaConfig::default(),
            workers: rayltics_workers::WorkersConfig::default(),
            debug: DebugConfig::default(),
        }
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            driver: "epoll".into(),
            pin_cores: true,
            mesh_ring_capacity: 4096,
            mesh_spin_us: 50,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        let l = rayltics_net::HttpLimits::default();
        Self {
            max_header_bytes: l.max_header_bytes,
            max_headers: l.max_headers,
            max_uri_bytes: l.max_uri_bytes,
            max_body_bytes: l.max_body_bytes,
            header_read_timeout_ms: l.header_read_timeout.as_millis() as u64,
            body_read_timeout_ms: l.body_read_timeout.as_millis() as u64,
            idle_timeout_ms: l.idle_timeout.as_millis() as u64,
            write_timeout_ms: l.write_timeout.as_millis() as u64,
            max_connections_per_shard: 100_000,
        }
    }
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            drain_timeout_ms: 10_000,
        }
    }
}

/// Top-level keys that `RAYLTICS_*` variables may set. Other `RAYLTICS_*`
/// variables (admin bootstrap, test URLs) are not configuration fields.
const ENV_KEYS: &[&str] = &[
    "http_addr",
    "grpc_addr",
    "data_dir",
    "shards",
    "roles",
    "log_format",
    "log_level",
    "storage",
    "runtime",
    "http",
    "shutdown",
    "journal",
    "postgres",
    "commerce",
    "realtime",
    "kafka",
    "workers",
    "debug",
];

/// Overrides given as command-line flags (highest precedence).
#[derive(Debug, Default, Serialize)]
pub struct FlagOverrides {
    /// `--http-addr`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_addr: Option<SocketAddr>,
    /// `--grpc-addr`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_addr: Option<SocketAddr>,
    /// `--data-dir`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// `--shards`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shards: Option<usize>,
    /// `--roles`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// `--log-format`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
}

impl Config {
    /// Layers defaults, `file`, the environment and `flags`, then validates.
    pub fn load(file: Option<&std::path::Path>, flags: &FlagOverrides) -> Result<Self, String> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(format!("config file {} does not exist", path.display()));
            }
            figment = figment.merge(Toml::file(path));
        }
        let env = Env::prefixed("RAYLTICS_")
            .filter(|key| {
                let first = key.as_str().split("__").next().unwrap_or_default();
                ENV_KEYS.iter().any(|k| first.eq_ignore_ascii_case(k))
            })
            .split("__");
        figment = figment.merge(env).merge(Serialized::defaults(flags));
        let config: Config = figment.extract().map_err(|e| {
            e.into_iter()
                .map(|e| format!("config: {e}"))
                .collect::<Vec<_>>()
                .join("\n")
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every field; the message names the field and the rule.
    pub fn validate(&self) -> Result<(), String> {
        if self.shards > 1024 {
            return Err(format!(
                "config: shards = {} is above the maximum of 1024",
                self.shards
            ));
        }
        for role in &self.roles {
            if role != "all" && !ROLES.contains(&role.as_str()) {
                return Err(format!(
                    "config: roles contains unknown role {role:?} (known: all, {})",
                    ROLES.join(", ")
                ));
            }
        }
        if self.roles.is_empty() {
            return Err("config: roles is empty (use \"all\")".into());
        }
        self.runtime
            .driver
            .parse::<rayltics_shards::Driver>()
            .map_err(|e| format!("config: runtime.driver: {e}"))?;
        if !(2..=1 << 20).contains(&self.runtime.mesh_ring_capacity) {
            return Err(format!(
                "config: runtime.mesh_ring_capacity = {} is outside 2..=1048576",
                self.runtime.mesh_ring_capacity
            ));
        }
        let h = &self.http;
        positive("http.max_header_bytes", h.max_header_bytes as u64)?;
        positive("http.max_uri_bytes", h.max_uri_bytes as u64)?;
        positive("http.header_read_timeout_ms", h.header_read_timeout_ms)?;
        positive("http.body_read_timeout_ms", h.body_read_timeout_ms)?;
        positive("http.idle_timeout_ms", h.idle_timeout_ms)?;
        positive("http.write_timeout_ms", h.write_timeout_ms)?;
        positive(
            "http.max_connections_per_shard",
            h.max_connections_per_shard as u64,
        )?;
        if !(1..=rayltics_net::HttpLimits::HARD_MAX_HEADERS).contains(&h.max_headers) {
            return Err(format!(
                "config: http.max_headers = {} is outside 1..={}",
                h.max_headers,
                rayltics_net::HttpLimits::HARD_MAX_HEADERS
            ));
        }
        if h.max_uri_bytes > h.max_header_bytes {
            return Err(format!(
                "config: http.max_uri_bytes = {} exceeds http.max_header_bytes = {}",
                h.max_uri_bytes, h.max_header_bytes
            ));
        }
        if h.max_body_bytes > 1 << 30 {
            return Err(format!(
                "config: http.max_body_bytes = {} is above 1 GiB",
                h.max_body_bytes
            ));
        }
        let c = &self.commerce;
        if !c.jwt_secret.is_empty() && c.jwt_secret.len() < 32 {
            return Err("config: commerce.jwt_secret must be at least 32 bytes".into());
        }
        positive("commerce.access_token_ttl_secs", c.access_token_ttl_secs)?;
        positive("commerce.refresh_token_ttl_secs", c.refresh_token_ttl_secs)?;
        positive("commerce.reservation_ttl_secs", c.reservation_ttl_secs)?;
        positive("commerce.argon2_iterations", u64::from(c.argon2_iterations))?;
        if c.argon2_memory_kib < 8 {
            return Err("config: commerce.argon2_memory_kib must be at least 8".into());
        }
        positive("commerce.hasher_threads", c.hasher_threads as u64)?;
        positive("commerce.hasher_queue", c.hasher_queue as u64)?;
        positive("commerce.login_burst", u64::from(c.login_burst))?;
        positive("commerce.login_per_minute", u64::from(c.login_per_minute))?;
        positive("commerce.token_cache_entries", c.token_cache_entries as u64)?;
        positive(
            "journal.snapshot_every_records",
            self.journal.snapshot_every_records,
        )?;
        positive("journal.segment_bytes", self.journal.segment_bytes)?;
        if self.storage == Storage::Postgres {
            self.postgres.validate()?;
        }
        let r = &self.realtime;
        if !(126..=64 << 20).contains(&r.max_message_bytes) {
            return Err("config: realtime.max_message_bytes must be within 126..=64 MiB".into());
        }
        if r.send_queue_bytes < r.max_message_bytes.min(64 * 1024) {
            return Err(
                "config: realtime.send_queue_bytes must hold at least one 64 KiB message".into(),
            );
        }
        positive("realtime.idle_timeout_ms", r.idle_timeout_ms)?;
        positive("realtime.ping_interval_ms", r.ping_interval_ms)?;
        if r.write_coalesce_us > 100_000 {
            return Err("config: realtime.write_coalesce_us must be at most 100000 (0.1 s)".into());
        }
        if r.ping_interval_ms >= r.idle_timeout_ms {
            return Err(
                "config: realtime.ping_interval_ms must be below realtime.idle_timeout_ms".into(),
            );
        }
        positive(
            "realtime.max_rooms_per_connection",
            r.max_rooms_per_connection as u64,
        )?;
        positive(
            "realtime.max_members_per_room",
            r.max_members_per_room as u64,
        )?;
        positive(
            "realtime.messages_per_second",
            u64::from(r.messages_per_second),
        )?;
        positive("realtime.message_burst", u64::from(r.message_burst))?;
        positive(
            "realtime.room_messages_retained",
            r.room_messages_retained as u64,
        )?;
        self.kafka.validate()?;
        self.workers_config()
            .validate()
            .map_err(|e| format!("config: {e}"))?;
        Ok(())
    }

    /// Whether this process runs `role` (listed, or `all`).
    pub fn runs_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == "all" || r == role)
    }

    /// The workers' configuration as they run on this node: their Kafka
    /// brokers default to the relay's, their files to `<data_dir>/workers`.
    pub fn workers_config(&self) -> rayltics_workers::WorkersConfig {
        let mut w = self.workers.clone().with_node_data_dir(&self.data_dir);
        if w.kafka_brokers.is_empty() {
            w.kafka_brokers = self.kafka.brokers.clone();
        }
        w
    }

    /// The shards' journal options: the configured store and its settings.
    pub fn journal_options(&self) -> rayltics_journal::JournalOptions {
        let j = &self.journal;
        rayltics_journal::JournalOptions {
            sync: j.fsync,
            segment_size: j.segment_bytes,
            preallocate: j.preallocate_segments,
            medium: match self.storage {
                Storage::Journal => rayltics_journal::Medium::Files,
                Storage::Postgres => rayltics_journal::Medium::Postgres(self.postgres.pg_options()),
            },
            ..rayltics_journal::JournalOptions::default()
        }
    }

    /// The shard count to run: `shards`, or one per available core.
    pub fn shard_count(&self) -> usize {
        if self.shards > 0 {
            self.shards
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }
    }

    /// The edge limits.
    pub fn http_limits(&self) -> rayltics_net::HttpLimits {
        use std::time::Duration;
        let h = &self.http;
        rayltics_net::HttpLimits {
            max_header_bytes: h.max_header_bytes,
            max_headers: h.max_headers,
            max_uri_bytes: h.max_uri_bytes,
            max_body_bytes: h.max_body_bytes,
            header_read_timeout: Duration::from_millis(h.header_read_timeout_ms),
            body_read_timeout: Duration::from_millis(h.body_read_timeout_ms),
            idle_timeout: Duration::from_millis(h.idle_timeout_ms),
            write_timeout: Duration::from_millis(h.write_timeout_ms),
        }
    }
}

fn list_or_csv<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrCsv {
        List(Vec<String>),
        Csv(String),
    }
    Ok(match ListOrCsv::deserialize(d)? {
        ListOrCsv::List(v) => v,
        ListOrCsv::Csv(s) => s
            .split(',')
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty())
            .collect(),
    })
}

fn positive(field: &str, value: u64) -> Result<(), String> {
    if value == 0 {
        Err(format!("config: {field} must be greater than 0"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closure signature, not ours
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn example_file_documents_exactly_the_defaults() {
        let example: Config = toml::from_str(include_str!("../../rayltics.example.toml")).unwrap();
        assert_eq!(
            toml::to_string(&example).unwrap(),
            toml::to_string(&Config::default()).unwrap()
        );
    }

    #[test]
    fn file_env_and_flags_layer_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "node.toml",
                "http_addr = \"127.0.0.1:1000\"\nshards = 3\n[http]\nmax_body_bytes = 5\n",
            )?;
            jail.set_env("RAYLTICS_SHARDS", "4");
            jail.set_env("RAYLTICS_HTTP__MAX_HEADERS", "9");
            jail.set_env("RAYLTICS_ADMIN_EMAIL", "not-a-config-field@example.com");
            let flags = FlagOverrides {
                http_addr: Some("127.0.0.1:2000".parse().unwrap()),
                ..Default::default()
            };
            let c =
                Config::load(Some("node.toml".as_ref()), &flags).map_err(figment::Error::from)?;
            assert_eq!(c.http_addr.to_string(), "127.0.0.1:2000");
            assert_eq!(c.shards, 4);
            assert_eq!(c.http.max_body_bytes, 5);
            assert_eq!(c.http.max_headers, 9);
            Ok(())
        });
    }

    #[test]
    fn postgres_storage_needs_a_valid_url_and_schema() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("RAYLTICS_STORAGE", "postgres");
            let err = Config::load(None, &FlagOverrides::default()).unwrap_err();
            assert!(err.contains("postgres.url"), "{err}");
            jail.set_env("RAYLTICS_POSTGRES__URL", "mysql://u:secret@h/db");
            let err = Config::load(None, &FlagOverrides::default()).unwrap_err();
            assert!(
                err.contains("postgres://") && !err.contains("secret"),
                "{err}"
            );
            jail.set_env("RAYLTICS_POSTGRES__URL", "postgres://u@h/db");
            jail.set_env("RAYLTICS_POSTGRES__SCHEMA", "Bad-Name");
            let err = Config::load(None, &FlagOverrides::default()).unwrap_err();
            assert!(err.contains("postgres.schema"), "{err}");
            jail.set_env("RAYLTICS_POSTGRES__SCHEMA", "node_a");
            let c = Config::load(None, &FlagOverrides::default()).map_err(figment::Error::from)?;
            assert_eq!(c.storage, Storage::Postgres);
            let rayltics_journal::Medium::Postgres(o) = c.journal_options().medium else {
                panic!("postgres medium expected");
            };
            assert_eq!(
                (o.schema.as_str(), o.commit_timeout.as_millis()),
                ("node_a", 2000)
            );
            Ok(())
        });
    }

    #[test]
    fn bad_fields_are_named() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "[http]\nmax_headers = 500\n")?;
            let err =
                Config::load(Some("bad.toml".as_ref()), &FlagOverrides::default()).unwrap_err();
            assert!(err.contains("http.max_headers"), "{err}");
            jail.create_file("typo.toml", "htp_addr = \"x\"\n")?;
            let err =
                Config::load(Some("typo.toml".as_ref()), &FlagOverrides::default()).unwrap_err();
            assert!(err.contains("htp_addr"), "{err}");
            jail.create_file("addr.toml", "http_addr = \"localhost\"\n")?;
            let err =
                Config::load(Some("addr.toml".as_ref()), &FlagOverrides::default()).unwrap_err();
            assert!(err.contains("http_addr"), "{err}");
            jail.set_env("RAYLTICS_SHARDS", "many");
            let err = Config::load(None, &FlagOverrides::default()).unwrap_err();
            assert!(err.to_lowercase().contains("shards"), "{err}");
            Ok(())
        });
    }
}
