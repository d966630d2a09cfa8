//! The mesh: bounded channels between shards, generic over the message type, so any shard can
//! send to any shard (itself included).
//!
//! Each shard has one inbox of `capacity` messages (`[scheduler] command_channel_capacity`) that
//! every shard holds a sender to; flume is MPMC, so N inboxes give the full mesh without N²
//! channels or a select over N receivers, and the bound is per receiving shard (the "shard
//! inbox" of compat.md). A full inbox is backpressure: `send_to` waits, `try_send_to` hands the
//! message back; nothing is dropped. Never use flume's blocking calls on an executor thread.

/// One shard's end of the mesh: its inbox and a sender to every shard.
#[derive(Debug)]
pub struct MeshEndpoint<M> {
    shard: usize,
    senders: Vec<flume::Sender<M>>,
    inbox: flume::Receiver<M>,
}

/// Why a message could not be delivered; the message comes back.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MeshSendError<M> {
    /// No such shard.
    #[error("no shard {shard} in a mesh of {shard_count}")]
    NoSuchShard {
        /// The target asked for.
        shard: usize,
        /// Shards in the mesh.
        shard_count: usize,
        /// The message, returned.
        message: M,
    },
    /// The target's inbox is full (only from `try_send_to`).
    #[error("the inbox of shard {shard} is full")]
    Full {
        /// The target.
        shard: usize,
        /// The message, returned.
        message: M,
    },
    /// The target shard has stopped.
    #[error("shard {shard} has stopped")]
    Stopped {
        /// The target.
        shard: usize,
        /// The message, returned.
        message: M,
    },
}

/// Builds the mesh for `shard_count` shards: one endpoint per shard, index = shard.
pub fn build_mesh<M>(shard_count: usize, capacity: usize) -> Vec<MeshEndpoint<M>> {
    let (senders, inboxes): (Vec<_>, Vec<_>) =
        (0..shard_count).map(|_| flume::bounded(capacity)).unzip();
    inboxes
        .into_iter()
        .enumerate()
        .map(|(shard, inbox)| MeshEndpoint {
            shard,
            senders: senders.clone(),
            inbox,
        })
        .collect()
}

impl<M> MeshEndpoint<M> {
    /// The shard this endpoint belongs to.
    pub fn shard(&self) -> usize {
        self.shard
    }

    /// Shards in the mesh.
    pub fn shard_count(&self) -> usize {
        self.senders.len()
    }

    /// Sends to `shard`, waiting while its inbox is full.
    pub async fn send_to(&self, shard: usize, message: M) -> Result<(), MeshSendError<M>> {
        let (sender, message) = self.sender(shard, message)?;
        sender
            .send_async(message)
            .await
            .map_err(|error| MeshSendError::Stopped {
                shard,
                message: error.into_inner(),
            })
    }

    /// Sends to `shard` if its inbox has room; otherwise the message comes back.
    pub fn try_send_to(&self, shard: usize, message: M) -> Result<(), MeshSendError<M>> {
        let (sender, message) = self.sender(shard, message)?;
        sender.try_send(message).map_err(|error| match error {
            flume::TrySendError::Full(message) => MeshSendError::Full { shard, message },
            flume::TrySendError::Disconnected(message) => MeshSendError::Stopped { shard, message },
        })
    }

    /// The next message for this shard. `None` would mean the inbox lost every sender, which
    /// cannot happen while this endpoint (holding a sender to itself) lives: shards stop on the
    /// shutdown signal, not on inbox closure.
    pub async fn recv(&self) -> Option<M> {
        self.inbox.recv_async().await.ok()
    }

    /// A message for this shard if one is waiting.
    pub fn try_recv(&self) -> Option<M> {
        self.inbox.try_recv().ok()
    }

    fn sender(&self, shard: usize, message: M) -> Result<(&flume::Sender<M>, M), MeshSendError<M>> {
        match self.senders.get(shard) {
            Some(sender) => Ok((sender, message)),
            None => Err(MeshSendError::NoSuchShard {
                shard,
                shard_count: self.senders.len(),
                message,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;

    #[test]
    fn any_shard_reaches_any_shard_and_itself() {
        let mesh = build_mesh::<(usize, usize)>(3, 4);
        for from in &mesh {
            for to in 0..3 {
                block_on(from.send_to(to, (from.shard(), to))).unwrap();
            }
        }
        for endpoint in &mesh {
            let mut got: Vec<_> = std::iter::from_fn(|| endpoint.try_recv()).collect();
            got.sort();
            assert_eq!(
                got,
                [
                    (0, endpoint.shard()),
                    (1, endpoint.shard()),
                    (2, endpoint.shard())
                ]
            );
        }
    }

    #[test]
    fn full_and_missing_targets_hand_the_message_back() {
        let mesh = build_mesh::<u32>(2, 1);
        mesh[0].try_send_to(1, 1).unwrap();
        assert_eq!(
            mesh[0].try_send_to(1, 2),
            Err(MeshSendError::Full {
                shard: 1,
                message: 2
            })
        );
        assert_eq!(
            mesh[0].try_send_to(5, 3),
            Err(MeshSendError::NoSuchShard {
                shard: 5,
                shard_count: 2,
                message: 3
            })
        );
        assert_eq!(block_on(mesh[1].recv()), Some(1));
    }

    #[test]
    fn a_stopped_shard_is_reported() {
        let mut mesh = build_mesh::<u32>(2, 1);
        let gone = mesh.pop().unwrap();
        drop(gone);
        assert_eq!(
            block_on(mesh[0].send_to(1, 7)),
            Err(MeshSendError::Stopped {
                shard: 1,
                message: 7
            })
        );
    }
}
