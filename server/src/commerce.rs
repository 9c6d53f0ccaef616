//! Node-wide commerce context and each shard's commerce start-up:
//! open the store, bootstrap the admin, run the background sweeps
//! (reservation and order expiry, snapshots).

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use rayltics_commerce::auth::{Argon2Params, PasswordHasher, RateLimiter, TokenCache, TokenKeys};
use rayltics_commerce::model::{ROLE_ADMIN, UserRec};
use rayltics_commerce::{Clock, Store};
use rayltics_shards::ShardId;

use crate::config::Config;
use crate::ops::orders::expire_order;
use crate::service::ShardState;

/// How often a shard looks for expired orders and reservations.
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);
/// Sweeps between two scans for idempotency records past their TTL (~1 min).
const IDEMPOTENCY_SWEEP_TICKS: u64 = 600;
/// Most expirations one sweep starts.
const SWEEP_BATCH: usize = 256;

/// Node-wide commerce context shared (read-only) by every shard.
#[derive(Debug)]
pub struct CommerceShared {
    /// The node's clock.
    pub clock: Clock,
    /// Access-token signing keys.
    pub keys: TokenKeys,
    /// The argon2id pool.
    pub hasher: PasswordHasher,
    /// Access token lifetime, seconds.
    pub access_ttl_secs: i64,
    /// Refresh token lifetime, ms.
    pub refresh_ttl_ms: i64,
    /// Reservation lifetime of a pending order, ms.
    pub reservation_ttl_ms: i64,
    /// `POST /debug/clock` is enabled.
    pub manual_clock: bool,
    /// Admin to bootstrap: (email, password).
    pub admin: Option<(String, String)>,
    config: Config,
}

impl CommerceShared {
    /// Builds the context: loads or creates the signing key, starts the
    /// hasher threads, picks the clock.
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let c = &config.commerce;
        let secret = (!c.jwt_secret.is_empty()).then_some(c.jwt_secret.as_str());
        let keys = TokenKeys::load_or_create(&config.data_dir, secret)
            .context("cannot load the access-token key")?;
        let params = Argon2Params {
            memory_kib: c.argon2_memory_kib,
            iterations: c.argon2_iterations,
            parallelism: 1,
        };
        let hasher = PasswordHasher::start(c.hasher_threads, c.hasher_queue, params)
            .context("cannot start the password hasher")?;
        let admin = match (
            std::env::var("RAYLTICS_ADMIN_EMAIL"),
            std::env::var("RAYLTICS_ADMIN_PASSWORD"),
        ) {
            (Ok(e), Ok(p)) if !e.trim().is_empty() && !p.is_empty() => {
                Some((e.trim().to_lowercase(), p))
            }
            _ => None,
        };
        Ok(Self {
            clock: if config.debug.manual_clock {
                Clock::manual()
            } else {
                Clock::System
            },
            keys,
            hasher,
            access_ttl_secs: i64::try_from(c.access_token_ttl_secs).unwrap_or(i64::MAX),
            refresh_ttl_ms: millis(c.refresh_token_ttl_secs),
            reservation_ttl_ms: millis(c.reservation_ttl_secs),
            manual_clock: config.debug.manual_clock,
            admin,
            config: config.clone(),
        })
    }

    /// Opens shard `id`'s store and builds its state.
    pub fn open_shard(
        self: &Arc<Self>,
        id: ShardId,
        shard_count: usize,
        chat_archive: Option<crate::bridge::SidecarHandle>,
    ) -> anyhow::Result<ShardState> {
        let j = &self.config.journal;
        let opts = self.config.journal_options();
        let (store, report) =
            Store::open(&self.config.data_dir, id, opts, j.snapshot_every_records)
                .with_context(|| format!("shard {id}: cannot recover its journal"))?;
        tracing::info!(
            shard = id,
            snapshot_seq = report.snapshot_seq,
            replayed = report.replayed,
            torn_bytes = report.torn_bytes,
            elapsed_ms = report.elapsed_ms as u64,
            "store recovered"
        );
        let c = &self.config.commerce;
        Ok(ShardState {
            id,
            shard_count,
            store,
            shared: self.clone(),
            tokens: RefCell::new(TokenCache::new(c.token_cache_entries)),
            ip_limits: RefCell::new(RateLimiter::new(c.login_burst, c.login_per_minute, 100_000)),
            email_limits: RefCell::new(RateLimiter::new(
                c.login_burst,
                c.login_per_minute,
                100_000,
            )),
            in_flight: RefCell::new(HashSet::new()),
            router: RefCell::new(None),
            realtime: Default::default(),
            chat_archive,
        })
    }
}

fn millis(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// Creates the admin from `RAYLTICS_ADMIN_EMAIL` / `_PASSWORD` on the shard
/// that owns the email, unless that email is registered already.
pub async fn bootstrap_admin(state: &Rc<ShardState>) -> anyhow::Result<()> {
    let Some((email, password)) = state.shared.admin.clone() else {
        return Ok(());
    };
    if rayltics_shards::shard_for(email.as_bytes(), state.shard_count) != state.id {
        return Ok(());
    }
    if state.store.read().user_by_email(&email).is_some() {
        return Ok(());
    }
    let phc = state
        .shared
        .hasher
        .hash(password)
        .await
        .map_err(|e| anyhow::anyhow!("cannot hash the admin password: {e}"))?;
    let user = UserRec {
        id: rayltics_commerce::ids::id_on_shard(state.id, state.shard_count),
        email: email.clone(),
        name: "admin".into(),
        role: ROLE_ADMIN,
        password_phc: phc,
        created_at: state.shared.clock.now_ms(),
    };
    let changes = state.store.read().plan_register(user)?;
    state.store.commit(changes).await?;
    tracing::info!(shard = state.id, %email, "admin created");
    Ok(())
}

/// Runs forever on a shard: expires overdue orders and reservations and
/// writes snapshots when due.
pub async fn sweep(state: Rc<ShardState>) {
    let mut ticks: u64 = 0;
    loop {
        monoio::time::sleep(SWEEP_INTERVAL).await;
        ticks += 1;
        let now = state.shared.clock.now_ms();
        if ticks.is_multiple_of(IDEMPOTENCY_SWEEP_TICKS) {
            let expiry = state.store.read().plan_idempotency_expiry(now);
            if let Some(change) = expiry
                && let Err(e) = state.store.commit(vec![change]).await
            {
                tracing::warn!(shard = state.id, error = %e, "cannot expire idempotency records");
            }
        }
        let orders = state.store.read().overdue_orders(now, SWEEP_BATCH);
        for id in orders {
            let state = state.clone();
            monoio::spawn(async move {
                if let Err(e) = expire_order(&state, &id).await {
                    tracing::debug!(order = %id, error = %e, "expiry deferred");
                }
            });
        }
        let releases: Vec<_> = {
            let data = state.store.read();
            data.overdue_reservations(now, SWEEP_BATCH)
                .iter()
                .filter_map(|order_id| data.plan_settle(order_id, false).ok())
                .flatten()
                .collect()
        };
        if !releases.is_empty() {
            tracing::info!(
                shard = state.id,
                releases = releases.len(),
                "releasing unsettled reservations past their grace period"
            );
            if let Err(e) = state.store.commit(releases).await {
                tracing::warn!(shard = state.id, error = %e, "cannot release overdue reservations");
            }
        }
        if let Some(snapshot) = state.store.snapshot_if_due() {
            let state = state.clone();
            monoio::spawn(async move {
                if let Err(e) = snapshot.await {
                    tracing::warn!(shard = state.id, error = %e, "snapshot failed");
                }
                state.store.snapshot_done();
            });
        }
    }
}
