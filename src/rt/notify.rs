//! Single-threaded wake-up primitives for tasks of one shard (never shared across threads).
//!
//! [`Notify`] is a level-triggered flag with any number of waiters: `notify` sets it and wakes
//! them, `wait` returns once it is set and clears it. It is how the shard's committer, delivery
//! pump and timer learn that there is work, and how a connection's writer learns there are
//! bytes to send.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};

/// A wake-up flag for tasks of one shard.
#[derive(Debug, Default)]
pub struct Notify {
    set: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

impl Notify {
    /// A cleared flag.
    pub fn new() -> Notify {
        Notify::default()
    }

    /// Sets the flag and wakes every waiter.
    pub fn notify(&self) {
        self.set.set(true);
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for waker in waiters {
            waker.wake();
        }
    }

    /// Waits until the flag is set, then clears it.
    pub async fn wait(&self) {
        poll_fn(|cx| {
            if self.set.replace(false) {
                return Poll::Ready(());
            }
            let mut waiters = self.waiters.borrow_mut();
            if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                waiters.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await;
    }

    /// Waits until `ready()` holds, re-checking after every notification. Does not clear the
    /// flag for other waiters when `ready()` already holds.
    pub async fn wait_until(&self, mut ready: impl FnMut() -> bool) {
        poll_fn(|cx| {
            if ready() {
                return Poll::Ready(());
            }
            self.set.set(false);
            let mut waiters = self.waiters.borrow_mut();
            if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                waiters.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::{block_on, poll_once};
    use std::cell::Cell;

    #[test]
    fn a_notification_before_the_wait_is_not_lost() {
        let notify = Notify::new();
        notify.notify();
        block_on(notify.wait());
        assert!(block_on(poll_once(notify.wait())).is_none());
    }

    #[test]
    fn wait_until_sees_the_condition_after_a_notification() {
        let notify = Notify::new();
        let value = Cell::new(0);
        let mut waiting = Box::pin(notify.wait_until(|| value.get() == 2));
        assert!(block_on(poll_once(&mut waiting)).is_none());
        value.set(1);
        notify.notify();
        assert!(block_on(poll_once(&mut waiting)).is_none());
        value.set(2);
        notify.notify();
        assert!(block_on(poll_once(&mut waiting)).is_some());
    }
}
