//! A shard-local drain signal.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// Set once when the shard starts draining; connections finish the request
/// in hand, answer it with `Connection: close` and stop; idle ones stop at
/// once. Owned by one shard (`!Send`); clone freely.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    inner: Rc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    triggered: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
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
        for waker in self.inner.waiters.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    /// Whether the drain has started.
    pub fn is_triggered(&self) -> bool {
        self.inner.triggered.get()
    }

    /// Completes when the drain starts.
    pub fn wait(&self) -> Wait<'_> {
        Wait { shutdown: self }
    }
}

/// Future returned by [`Shutdown::wait`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Wait<'a> {
    shutdown: &'a Shutdown,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let inner = &self.shutdown.inner;
        if inner.triggered.get() {
            return Poll::Ready(());
        }
        let mut waiters = inner.waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}
