//! `rayltics`: run one node.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use signal_hook::consts::{SIGINT, SIGTERM};

use rayltics::config::{Config, FlagOverrides, LogFormat, Storage};

/// rayltics: a shard-per-core e-commerce backend node.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node (the default).
    Serve(ServeArgs),
    /// Print the effective configuration (after file, env and flags) as TOML.
    Config(ServeArgs),
    /// Apply the embedded PostgreSQL migrations to `postgres.url` /
    /// `postgres.schema` (creating the schema if missing), then exit.
    Migrate(ServeArgs),
}

#[derive(Debug, Default, clap::Args)]
struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "RAYLTICS_CONFIG")]
    config: Option<PathBuf>,
    /// HTTP listen address, HOST:PORT (port 0 = any free port).
    #[arg(long)]
    http_addr: Option<std::net::SocketAddr>,
    /// gRPC listen address, HOST:PORT.
    #[arg(long)]
    grpc_addr: Option<std::net::SocketAddr>,
    /// Data directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Shard threads (default: one per core).
    #[arg(long)]
    shards: Option<usize>,
    /// Roles to run, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    roles: Option<Vec<String>>,
    /// Log format: pretty or json.
    #[arg(long, value_parser = parse_log_format)]
    log_format: Option<LogFormat>,
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    match s {
        "json" => Ok(LogFormat::Json),
        "pretty" => Ok(LogFormat::Pretty),
        other => Err(format!("unknown log format {other:?} (json or pretty)")),
    }
}

fn load(args: ServeArgs) -> Config {
    let flags = FlagOverrides {
        http_addr: args.http_addr,
        grpc_addr: args.grpc_addr,
        data_dir: args.data_dir,
        shards: args.shards,
        roles: args.roles,
        log_format: args.log_format,
    };
    match Config::load(args.config.as_deref(), &flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rayltics: invalid configuration\n{e}");
            std::process::exit(2);
        }
    }
}

/// Applies the PostgreSQL migrations; on failure says why (the URL without
/// its password) and exits 1.
fn migrate_or_exit(config: &Config) {
    if let Err(e) = rayltics_journal::pg::migrate(&config.postgres.pg_options()) {
        eprintln!("rayltics: cannot prepare the PostgreSQL store: {e}");
        std::process::exit(1);
    }
}

fn main() {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Config(args)) => {
            let config = load(args);
            print!("{}", toml::to_string_pretty(&config).unwrap_or_default());
            return;
        }
        Some(Command::Migrate(args)) => {
            let config = load(args);
            rayltics::telemetry::init(config.log_format, &config.log_level);
            if let Err(e) = config.postgres.validate() {
                eprintln!("rayltics: cannot migrate: {e}");
                std::process::exit(2);
            }
            migrate_or_exit(&config);
            println!(
                "rayltics: migrations applied to schema {:?} at {}",
                config.postgres.schema,
                rayltics_journal::pg::redact(&config.postgres.url)
            );
            return;
        }
        Some(Command::Serve(args)) => args,
        None => ServeArgs::default(),
    };
    let config = load(args);
    rayltics::telemetry::init(config.log_format, &config.log_level);
    if config.storage == Storage::Postgres && config.postgres.migrate_on_start {
        migrate_or_exit(&config);
    }
    // Every connection is a descriptor: a node holding tens of thousands of
    // WebSockets needs more than the usual soft limit of 1024.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open file limit"),
    }

    // A shard that panics leaves its keys unserved: crash the whole node so
    // the supervisor restarts it (crash-only; the journal makes that safe).
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!(%info, "panic; aborting the node");
        default_hook(info);
        std::process::abort();
    }));

    let mut signals = match signal_hook::iterator::Signals::new([SIGTERM, SIGINT]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rayltics: cannot install signal handlers: {e}");
            std::process::exit(1);
        }
    };
    let node = match rayltics::node::start(&config) {
        Ok(node) => node,
        Err(e) => {
            eprintln!("rayltics: cannot start: {e:#}");
            std::process::exit(1);
        }
    };
    tracing::info!(http = %node.http_addr, grpc = %node.grpc_addr, shards = node.shards, "node ready");
    // One machine-readable line for scripts and tests that started us on port 0.
    println!(
        "rayltics listening http={} grpc={} shards={}",
        node.http_addr, node.grpc_addr, node.shards
    );

    if let Some(signal) = signals.forever().next() {
        tracing::info!(signal, "stopping: draining in-flight requests");
    }
    node.shutdown();
    tracing::info!("stopped");
}
