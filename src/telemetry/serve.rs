//! The shard side of the gather: a task on the shard's executor that answers snapshot
//! requests. Taking a snapshot is a short synchronous read of the core (linear in queues and
//! live keys); the reply channel never blocks (it has room for every shard's answer).

use std::rc::Rc;

use fila_shard::metrics::MetricsSnapshot;

use crate::broker::Broker;

/// A request for one shard's snapshot.
#[derive(Debug)]
pub struct SnapshotRequest {
    /// The asked shard's index (echoed in the reply).
    pub shard: usize,
    /// Fairness-key series cap per queue.
    pub max_key_series: usize,
    /// Where to answer.
    pub reply: flume::Sender<(usize, MetricsSnapshot)>,
}

/// Serves snapshot requests until the exporter goes away.
pub async fn serve_snapshots(requests: flume::Receiver<SnapshotRequest>, broker: Rc<Broker>) {
    while let Ok(request) = requests.recv_async().await {
        let snapshot = broker.with_core(|core| core.metrics_snapshot(request.max_key_series));
        let _ = request.reply.try_send((request.shard, snapshot));
    }
}
