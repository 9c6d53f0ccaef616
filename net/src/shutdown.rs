//! A shard-local drain signal.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use slab::Slab;

/// Set once when the shard starts draining; connections finish the request
/// in hand, answer it with `Connection: close` and stop; idle ones stop at
/// once. Owned by one shard (`!Send`); clone freely.
///
/// Waiting costs O(1): each [`Wait`] holds one slot in a slab and frees it
/// when dropped, so the waiter set is exactly the connections waiting now.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    inner: Rc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    triggered: Cell<bool>,
    waiters: RefCell<Slab<Waker>>,
}

impl Shutdown {
    /// A signal that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts the drain: wakes every waiter.
    pub fn trigger(&self) {
        if self.inner.triggered.replace(true) {
            return;
        }
        let waiters = std::mem::take(&mut *self.inner.waiters.borrow_mut());
        for (_, waker) in waiters {
            waker.wake();
        }
    }

    /// Whether the drain has started.
    pub fn is_triggered(&self) -> bool {
        self.inner.triggered.get()
    }

    /// Completes when the drain starts.
    pub fn wait(&self) -> Wait<'_> {
        Wait {
            shutdown: self,
            slot: None,
        }
    }

    /// Futures currently waiting (for tests and metrics).
    pub fn waiting(&self) -> usize {
        self.inner.waiters.borrow().len()
    }
}

/// Future returned by [`Shutdown::wait`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Wait<'a> {
    shutdown: &'a Shutdown,
    slot: Option<usize>,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let inner = &self.shutdown.inner;
        if inner.triggered.get() {
            return Poll::Ready(());
        }
        let mut waiters = inner.waiters.borrow_mut();
        match self.slot {
            Some(slot) => match waiters.get_mut(slot) {
                Some(w) if w.will_wake(cx.waker()) => {}
                Some(w) => *w = cx.waker().clone(),
                None => {}
            },
            None => {
                let slot = waiters.insert(cx.waker().clone());
                drop(waiters);
                self.slot = Some(slot);
            }
        }
        Poll::Pending
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            let mut waiters = self.shutdown.inner.waiters.borrow_mut();
            // After a trigger the slab was emptied (and may be reused).
            if !self.shutdown.inner.triggered.get() && waiters.contains(slot) {
                waiters.remove(slot);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[test]
    fn waiters_are_released_when_dropped() {
        let s = Shutdown::new();
        for _ in 0..1000 {
            let mut w = s.wait();
            assert!((&mut w).now_or_never().is_none());
            assert_eq!(s.waiting(), 1);
        }
        assert_eq!(s.waiting(), 0);
        let mut w = s.wait();
        assert!((&mut w).now_or_never().is_none());
        s.trigger();
        assert!(w.now_or_never().is_some());
    }
}
