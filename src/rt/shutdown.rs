//! Shutdown: one trigger, observed by every shard and connection task, and the thread that turns
//! SIGINT/SIGTERM (and SIGHUP, the reload request) into calls the server decides about.
//!
//! The broadcast is a flume channel on which nothing is ever sent: dropping the only sender
//! disconnects it, and every clone of the receiver sees that at once, from any thread and inside
//! glommio (flume wakers work across executors). No polling, no atomics to check.
//! Signals come through `signal-hook`'s iterator (a self-pipe written by a minimal handler, read
//! by a plain thread): glommio has no signal API, and the workspace forbids `unsafe`.

use std::thread::JoinHandle;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

/// Fires the shutdown. Dropping it fires it too, so a crashed owner cannot leave shards running.
#[derive(Debug)]
pub struct ShutdownTrigger {
    _sender: flume::Sender<()>,
}

/// Observes the shutdown; cheap to clone into every task.
#[derive(Debug, Clone)]
pub struct ShutdownSignal {
    receiver: flume::Receiver<()>,
}

/// A trigger and the signal it fires.
pub fn shutdown_channel() -> (ShutdownTrigger, ShutdownSignal) {
    let (sender, receiver) = flume::bounded(1);
    (
        ShutdownTrigger { _sender: sender },
        ShutdownSignal { receiver },
    )
}

impl ShutdownTrigger {
    /// Fires the shutdown (same as dropping the trigger, but says so at the call site).
    pub fn fire(self) {
        drop(self);
    }
}

impl ShutdownSignal {
    /// Completes once the shutdown has fired (at once if it already has).
    pub async fn wait(&self) {
        // Nothing is ever sent: the only outcome is `Disconnected`, which is the signal.
        let _ = self.receiver.recv_async().await;
    }

    /// Whether the shutdown has fired.
    pub fn is_fired(&self) -> bool {
        self.receiver.is_disconnected()
    }
}

/// A termination signal the process received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TerminationSignal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM.
    Terminate,
}

impl TerminationSignal {
    /// `SIGINT` / `SIGTERM`.
    pub fn name(self) -> &'static str {
        match self {
            TerminationSignal::Interrupt => "SIGINT",
            TerminationSignal::Terminate => "SIGTERM",
        }
    }
}

/// The thread that listens for SIGINT/SIGTERM and SIGHUP. While it exists, those signals no
/// longer kill the process; each termination signal is passed to `on_signal`, each SIGHUP to
/// `on_hangup`. Dropping it stops the thread.
pub struct SignalWatcher {
    handle: Handle,
    thread: Option<JoinHandle<()>>,
}

impl SignalWatcher {
    /// Installs the handlers and starts the thread; the callbacks run on that thread.
    pub fn start(
        on_signal: impl Fn(TerminationSignal) + Send + 'static,
        on_hangup: impl Fn() + Send + 'static,
    ) -> std::io::Result<SignalWatcher> {
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        let handle = signals.handle();
        let thread = std::thread::Builder::new()
            .name("fila-signals".to_owned())
            .spawn(move || {
                for signal in signals.forever() {
                    match signal {
                        SIGINT => on_signal(TerminationSignal::Interrupt),
                        SIGTERM => on_signal(TerminationSignal::Terminate),
                        SIGHUP => on_hangup(),
                        _ => {}
                    }
                }
            })?;
        Ok(SignalWatcher {
            handle,
            thread: Some(thread),
        })
    }
}

impl Drop for SignalWatcher {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_clone_observes_the_trigger() {
        let (trigger, signal) = shutdown_channel();
        let other = signal.clone();
        assert!(!signal.is_fired());
        let waiter = std::thread::spawn(move || futures_lite::future::block_on(other.wait()));
        trigger.fire();
        waiter.join().unwrap();
        assert!(signal.is_fired());
        futures_lite::future::block_on(signal.wait());
    }
}
