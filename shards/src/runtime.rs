//! Starting the shard threads: one pinned OS thread per shard, each with its
//! own monoio runtime.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::key::ShardId;

/// Which monoio driver a shard runs. ADR-0001 has the measurements behind the
/// default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Driver {
    /// epoll readiness (monoio's legacy driver). The default: see ADR-0001.
    #[default]
    Epoll,
    /// io_uring completion driver. Faster on keep-alive HTTP here, but monoio
    /// 0.2 processes cross-thread wake-ups only when the thread goes idle, so
    /// a shard that stays busy starves its mesh doorbell and sidecar replies
    /// (ADR-0001). For measurement, not production.
    IoUring,
}

impl std::str::FromStr for Driver {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "epoll" => Ok(Self::Epoll),
            "io_uring" | "iouring" => Ok(Self::IoUring),
            other => Err(format!(
                "unknown driver {other:?} (expected \"epoll\" or \"io_uring\")"
            )),
        }
    }
}

/// How shard threads are started.
#[derive(Debug, Clone, Default)]
pub struct RuntimeOptions {
    /// monoio driver.
    pub driver: Driver,
    /// Pin shard `i` to core `cores[i % cores.len()]`. Empty = do not pin.
    pub cores: Vec<usize>,
    /// Thread name prefix (`{prefix}-{id}`).
    pub thread_prefix: String,
}

impl RuntimeOptions {
    /// The cores this process may run on, in order (for pinning by default).
    pub fn available_cores() -> Vec<usize> {
        core_affinity::get_core_ids()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.id)
            .collect()
    }
}

/// Starts one thread per element of `per_shard`; thread `i` builds a monoio
/// runtime (timer enabled) and runs `main(i, per_shard[i])` to completion.
///
/// `per_shard` carries what each shard owns from birth (its mesh endpoint,
/// its listener); `main` builds the shard's `!Send` state inside the thread.
pub fn spawn_shards<T, F, Fut>(
    options: &RuntimeOptions,
    per_shard: Vec<T>,
    main: F,
) -> io::Result<Vec<JoinHandle<()>>>
where
    T: Send + 'static,
    F: Fn(ShardId, T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let main = Arc::new(main);
    let prefix = if options.thread_prefix.is_empty() {
        "shard"
    } else {
        &options.thread_prefix
    };
    let mut handles = Vec::with_capacity(per_shard.len());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<(ShardId, io::Result<()>)>();
    let count = per_shard.len();
    for (id, init) in per_shard.into_iter().enumerate() {
        let ready_tx = ready_tx.clone();
        let main = main.clone();
        let core = (!options.cores.is_empty()).then(|| options.cores[id % options.cores.len()]);
        let driver = options.driver;
        let handle = std::thread::Builder::new()
            .name(format!("{prefix}-{id}"))
            .spawn(move || {
                if let Some(core) = core
                    && !core_affinity::set_for_current(core_affinity::CoreId { id: core })
                {
                    tracing::warn!(shard = id, core, "could not pin shard thread");
                }
                let fut = async move { main(id, init).await };
                let ready = |result: io::Result<()>| {
                    let _ = ready_tx.send((id, result));
                };
                match driver {
                    Driver::Epoll => {
                        run_on::<monoio::time::TimeDriver<monoio::LegacyDriver>, _>(fut, ready)
                    }
                    Driver::IoUring => {
                        run_on::<monoio::time::TimeDriver<monoio::IoUringDriver>, _>(fut, ready)
                    }
                }
            })?;
        handles.push(handle);
    }
    drop(ready_tx);
    for _ in 0..count {
        match ready_rx.recv() {
            Ok((_, Ok(()))) => {}
            Ok((id, Err(e))) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!(
                        "shard {id}: cannot build the {driver:?} runtime: {e}",
                        driver = options.driver
                    ),
                ));
            }
            Err(_) => return Err(io::Error::other("a shard thread died during start-up")),
        }
    }
    Ok(handles)
}

/// Builds a runtime on driver `D`, reports whether that worked, and runs
/// `fut` to completion on it.
fn run_on<D, F>(fut: F, ready: impl FnOnce(io::Result<()>))
where
    D: monoio::Buildable + monoio::Driver,
    F: Future,
{
    match <D as monoio::Buildable>::build(monoio::RuntimeBuilder::<D>::new()) {
        Ok(mut runtime) => {
            ready(Ok(()));
            runtime.block_on(fut);
        }
        Err(e) => ready(Err(e)),
    }
}
