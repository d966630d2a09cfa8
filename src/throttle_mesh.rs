//! The server side of global throttling (a child module of `broker`): ships the shard
//! core's token-lease messages over the mesh and feeds incoming ones to the core.
//!
//! Sends never wait: `try_send_to` on the bounded mesh, and a message that does not fit is
//! dropped (logged at debug). The protocol tolerates loss: an unanswered request is retried
//! after one lease window, a lost return is settled by the home at lease expiry plus grace
//! (its tokens counted as used), a lost grant strands its tokens for at most that long.
//! The lease window and refill instants are driven by the broker's timer task through
//! `Shard::next_timer` / `Shard::tick`.

use fila_shard::Shard;
use fila_shard::storage::fjall::FjallStorage;
use fila_shard::throttle::TokenMsg;

use super::{Broker, ShardMessage, clock};

/// Tells the core its place among the shards (throttle homes; buckets start full).
pub(super) fn set_topology(core: &mut Shard<FjallStorage>, index: usize, shards: usize) {
    let index = u32::try_from(index).unwrap_or(0);
    let shards = u32::try_from(shards).unwrap_or(1);
    core.set_throttle_topology(clock::now(), index, shards);
}

impl Broker {
    /// Ships the core's outgoing lease-protocol messages without waiting.
    pub(super) fn ship_throttle(&self) {
        let messages = {
            let mut core = self.core.borrow_mut();
            if !core.has_throttle_messages() {
                return;
            }
            core.take_throttle_messages()
        };
        for (to, msg) in messages {
            let to = usize::try_from(to).unwrap_or(usize::MAX);
            if let Err(error) = self.mesh.try_send_to(to, ShardMessage::Throttle(msg)) {
                tracing::debug!(%error, shard = to, "throttle message dropped");
            }
        }
    }

    /// A lease-protocol message from another shard.
    pub(super) fn receive_throttle(&self, msg: TokenMsg) {
        self.core.borrow_mut().throttle_receive(clock::now(), msg);
        self.after_change();
    }

    /// After a delivery poll that delivered nothing: ship token requests and make sure the
    /// timer task sleeps only until the earliest refill instant (without re-waking the pump).
    pub(super) fn after_idle_poll(&self) {
        self.ship_throttle();
        let next = self.core.borrow().next_timer();
        self.arm_timer(next);
    }
}
