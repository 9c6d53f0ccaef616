//! A cooperative yield for monoio tasks.
//!
//! monoio re-queues a task that wakes itself during its own poll at the
//! *front* of the run queue, so the usual `wake_by_ref(); Pending` yield runs
//! the same task again at once and starves every other task (and cross-thread
//! wake-ups, which join the back of the queue). This yield parks the waker in
//! a per-thread list and spawns one helper task per batch; the helper joins
//! the back of the queue and wakes the batch, so a yielding task runs again
//! only after everything that was ready before it.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

thread_local! {
    static YIELDED: RefCell<Vec<Waker>> = const { RefCell::new(Vec::new()) };
    static HELPER_QUEUED: Cell<bool> = const { Cell::new(false) };
}

/// Yields to the shard's scheduler: every task that is ready now runs (and
/// the driver is polled without blocking) before this task continues.
pub fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

/// Future returned by [`yield_now`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        YIELDED.with(|list| list.borrow_mut().push(cx.waker().clone()));
        if !HELPER_QUEUED.replace(true) {
            monoio::spawn(async {
                HELPER_QUEUED.set(false);
                let batch = YIELDED.with(|list| std::mem::take(&mut *list.borrow_mut()));
                for waker in batch {
                    waker.wake();
                }
            });
        }
        Poll::Pending
    }
}

/// Awaits `fut`, but for up to `spin` first keeps re-polling it between
/// other tasks instead of letting the thread park: an answer from another
/// thread that arrives within `spin` is then picked up without the 25-45 us
/// cross-thread wake-up. Costs nothing extra on a busy shard (other tasks run
/// in between); burns up to `spin` of CPU on an idle one.
pub async fn spin_then_await<F: Future>(fut: F, spin: std::time::Duration) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let started = std::time::Instant::now();
    loop {
        if let Some(out) = futures::FutureExt::now_or_never(&mut fut) {
            return out;
        }
        if started.elapsed() >= spin {
            return fut.await;
        }
        yield_now().await;
    }
}
