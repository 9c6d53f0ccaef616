//! Write coalescing for busy sockets: one shard-wide tick instead of a
//! timer per connection.
//!
//! A socket's writer that wrote less than one interval ago does not write
//! again at once: it waits for the shard's next tick and then writes every
//! frame queued meanwhile with one `write`. A socket written to rarely is
//! written at once, so coalescing costs latency only where it saves
//! syscalls (a member of a busy room gets several frames per `write`).

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

/// The shard's write tick.
#[derive(Debug, Default)]
pub struct FlushTick {
    generation: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
    ticker: RefCell<Option<Waker>>,
}

impl FlushTick {
    /// Resolves at the next tick.
    pub async fn wait(&self) {
        let start = self.generation.get();
        poll_fn(|cx| {
            if self.generation.get() != start {
                return Poll::Ready(());
            }
            self.waiters.borrow_mut().push(cx.waker().clone());
            if let Some(t) = self.ticker.borrow_mut().take() {
                t.wake();
            }
            Poll::Pending
        })
        .await
    }

    /// The ticker: every `interval` while writers wait, wakes them all;
    /// parked (no timer) while none does. Spawn one per shard.
    pub async fn run(self: Rc<Self>, interval: Duration) {
        loop {
            poll_fn(|cx| {
                if self.waiters.borrow().is_empty() {
                    *self.ticker.borrow_mut() = Some(cx.waker().clone());
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            })
            .await;
            monoio::time::sleep(interval).await;
            self.generation.set(self.generation.get() + 1);
            let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
            for w in waiters {
                w.wake();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[monoio::test(enable_timer = true)]
    async fn waiters_are_released_together_at_the_next_tick() {
        let tick = Rc::new(FlushTick::default());
        monoio::spawn(tick.clone().run(Duration::from_millis(5)));
        let started = std::time::Instant::now();
        let a = monoio::spawn({
            let t = tick.clone();
            async move { t.wait().await }
        });
        let b = monoio::spawn({
            let t = tick.clone();
            async move { t.wait().await }
        });
        a.await;
        b.await;
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(4), "{waited:?}");
        assert!(waited < Duration::from_millis(500), "{waited:?}");
    }
}
