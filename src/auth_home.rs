//! Key changes of the broker (child module of `broker.rs`): every CreateApiKey, RevokeApiKey
//! and SetAcl runs on [`HOME_SHARD`], which persists it and then applies it on every shard's
//! copy of the key store before the request is answered (see `crate::auth`).

use std::pin::Pin;
use std::rc::Rc;

use fila_shard::auth::AuthChange;

use crate::auth::{AuthFailure, AuthMutation, AuthReply, HOME_SHARD, ShardAuth};

use super::{Broker, ShardMessage};

/// The result of a key change, once every shard has it.
pub type AuthPending = Pin<Box<dyn Future<Output = Result<AuthReply, AuthFailure>>>>;

impl Broker {
    /// This shard's authentication state.
    pub fn auth(&self) -> &ShardAuth {
        &self.auth
    }

    /// Tells this shard's connections that a key changed (after it was applied here).
    pub(super) fn auth_changed(&self, change: &AuthChange) {
        let key_id = match change {
            AuthChange::Put(record) => record.id.as_str(),
            AuthChange::Remove(id) => id.as_str(),
        };
        let sinks: Vec<_> = self
            .connections
            .borrow()
            .values()
            .filter_map(std::rc::Weak::upgrade)
            .collect();
        for sink in sinks {
            sink.auth_changed(key_id);
        }
    }

    /// Runs `mutation` on the home shard (here, or forwarded over the mesh).
    pub async fn auth_request(self: &Rc<Self>, mutation: AuthMutation) -> AuthPending {
        if self.index == HOME_SHARD {
            return Box::pin(Rc::clone(self).auth_mutate_here(mutation));
        }
        let (reply, answer) = flume::bounded(1);
        let message = ShardMessage::AuthMutate { mutation, reply };
        if self.mesh.send_to(HOME_SHARD, message).await.is_err() {
            return Box::pin(async { Err(AuthFailure::Stopped) });
        }
        Box::pin(async move {
            answer
                .recv_async()
                .await
                .unwrap_or(Err(AuthFailure::Stopped))
        })
    }

    /// On the home shard: validate, persist, apply here, then on every other shard.
    pub(super) async fn auth_mutate_here(
        self: Rc<Self>,
        mutation: AuthMutation,
    ) -> Result<AuthReply, AuthFailure> {
        let _turn = self.auth.turn().await?;
        let (reply, change) = self.auth.mutate(mutation).await?;
        let Some(change) = change else {
            return Ok(reply);
        };
        audit(&change);
        self.auth_changed(&change);
        let mut acks = Vec::with_capacity(self.shards.saturating_sub(1));
        for shard in (0..self.shards).filter(|&shard| shard != self.index) {
            let (done, ack) = flume::bounded(1);
            let message = ShardMessage::AuthApply {
                change: change.clone(),
                done,
            };
            if self.mesh.send_to(shard, message).await.is_err() {
                return Err(AuthFailure::Stopped);
            }
            acks.push(ack);
        }
        for ack in acks {
            ack.recv_async().await.map_err(|_| AuthFailure::Stopped)?;
        }
        Ok(reply)
    }
}

/// One log line per persisted key change (never the token or its digest).
fn audit(change: &AuthChange) {
    match change {
        AuthChange::Put(record) => {
            let grants: Vec<String> = record
                .grants
                .iter()
                .map(|grant| format!("{}:{}", grant.kind.as_str(), grant.pattern))
                .collect();
            tracing::info!(
                key_id = %record.id,
                name = %record.name,
                superadmin = record.superadmin,
                expires_at_ms = record.expires_at_ms,
                permissions = %grants.join(" "),
                "API key stored"
            );
        }
        AuthChange::Remove(id) => tracing::info!(key_id = %id, "API key revoked"),
    }
}
