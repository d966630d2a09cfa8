//! Shard executors: one glommio `LocalExecutor` thread per shard, started by an explicit loop of
//! `LocalExecutorBuilder` so each thread knows its own shard index (glommio's executor ids are a
//! process-wide counter, not shard indices).
//!
//! Settings, and why: `preempt_timer` 2 ms (the default 100 ms lets one busy task starve a
//! shard's timers); `io_memory` 256 KiB (the broker does not use glommio's DMA files, and large
//! buffers only fail to register under a memlock limit); blocking pool of one unpinned thread (so
//! an fsync never steals the shard's core); `spin_before_park` only when configured (spinning
//! cuts cross-shard wake-up latency but costs CPU after activity).

use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement, PoolPlacement};

/// Preemption timer of every shard executor.
pub const PREEMPT_TIMER: Duration = Duration::from_millis(2);
/// io_uring buffer memory of every shard executor.
pub const IO_MEMORY_BYTES: usize = 256 * 1024;

/// How to start the shard executors.
#[derive(Debug, Clone)]
pub struct ExecutorPlan {
    /// Shards to start (≥ 1).
    pub shards: usize,
    /// `Some(cpus)`: pin shard `i` to `cpus[i]`; `None`: let the kernel place threads.
    pub pinned_cpus: Option<Vec<usize>>,
    /// Busy-poll before parking; zero = off.
    pub spin_before_park: Duration,
}

/// Why a shard executor failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// The executor thread could not be created.
    #[error("cannot start the executor of shard {shard}")]
    Start {
        /// The shard.
        shard: usize,
        /// glommio's error.
        #[source]
        source: glommio::GlommioError<()>,
    },
    /// A pinned plan has fewer CPUs than shards.
    #[error("no CPU to pin shard {shard} to")]
    NoCpu {
        /// The shard.
        shard: usize,
    },
    /// The executor ended with an error or a panic.
    #[error("shard {shard} stopped abnormally: {reason}")]
    Crashed {
        /// The shard.
        shard: usize,
        /// glommio's description (panic or reactor error).
        reason: String,
    },
}

/// A running shard executor.
pub struct ShardThread<T: Send + 'static> {
    shard: usize,
    handle: glommio::ExecutorJoinHandle<T>,
}

impl<T: Send + 'static> ShardThread<T> {
    /// The shard index.
    pub fn shard(&self) -> usize {
        self.shard
    }

    /// Waits for the shard's future to finish. A panic anywhere on the shard, or an executor
    /// that could not start (io_uring missing, memlock), is `Crashed`.
    pub fn join(self) -> Result<T, ExecutorError> {
        let shard = self.shard;
        self.handle.join().map_err(|error| ExecutorError::Crashed {
            shard,
            reason: error.to_string(),
        })
    }
}

/// Starts one executor per shard. `shard_future(i)` is called on this thread and returns the
/// `Send` closure that builds shard `i`'s future on its own thread (the future itself may hold
/// `!Send` values such as sockets).
pub fn start_shards<G, F, T>(
    plan: &ExecutorPlan,
    mut shard_future: impl FnMut(usize) -> G,
) -> Result<Vec<ShardThread<T>>, ExecutorError>
where
    G: FnOnce() -> F + Send + 'static,
    F: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let mut threads = Vec::with_capacity(plan.shards);
    for shard in 0..plan.shards {
        let placement = match &plan.pinned_cpus {
            Some(cpus) => Placement::Fixed(*cpus.get(shard).ok_or(ExecutorError::NoCpu { shard })?),
            None => Placement::Unbound,
        };
        let mut builder = LocalExecutorBuilder::new(placement)
            .name(&format!("fila-shard-{shard}"))
            .preempt_timer(PREEMPT_TIMER)
            .io_memory(IO_MEMORY_BYTES)
            .blocking_thread_pool_placement(PoolPlacement::Unbound(1));
        if !plan.spin_before_park.is_zero() {
            builder = builder.spin_before_park(plan.spin_before_park);
        }
        let handle = builder
            .spawn(shard_future(shard))
            .map_err(|source| ExecutorError::Start { shard, source })?;
        threads.push(ShardThread { shard, handle });
    }
    Ok(threads)
}

/// Runs `work` on the current shard's blocking thread (for fsync, large scans, anything that
/// may block) while the shard keeps serving. Must be called from inside a shard executor.
pub async fn spawn_blocking<R: Send + 'static>(work: impl FnOnce() -> R + Send + 'static) -> R {
    glommio::executor().spawn_blocking(work).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rt::mesh::build_mesh;

    fn plan(shards: usize) -> ExecutorPlan {
        ExecutorPlan {
            shards,
            pinned_cpus: None,
            spin_before_park: Duration::ZERO,
        }
    }

    #[test]
    fn each_shard_runs_its_future_with_its_index_and_the_mesh_connects_them() {
        let shards = 3;
        let mut mesh = build_mesh::<usize>(shards, 16).into_iter();
        let threads = start_shards(&plan(shards), |shard| {
            let endpoint = mesh.next().unwrap();
            move || async move {
                // Every shard sends its index to every shard, then sums what it receives.
                for target in 0..endpoint.shard_count() {
                    endpoint.send_to(target, endpoint.shard()).await.unwrap();
                }
                let mut sum = 0;
                for _ in 0..endpoint.shard_count() {
                    sum += endpoint.recv().await.unwrap();
                }
                (shard, endpoint.shard(), sum)
            }
        })
        .unwrap();
        let results: Vec<_> = threads
            .into_iter()
            .map(|thread| thread.join().unwrap())
            .collect();
        assert_eq!(results, [(0, 0, 3), (1, 1, 3), (2, 2, 3)]);
    }

    #[test]
    fn blocking_work_runs_off_the_executor() {
        let threads = start_shards(&plan(1), |_| {
            move || async move {
                let executor_thread = std::thread::current().id();
                let worker_thread = spawn_blocking(|| std::thread::current().id()).await;
                executor_thread != worker_thread
            }
        })
        .unwrap();
        assert!(threads.into_iter().all(|thread| thread.join().unwrap()));
    }

    #[test]
    fn a_panicking_shard_is_reported_as_crashed() {
        let threads = start_shards(&plan(1), |_| move || async move { panic!("boom") }).unwrap();
        let error = threads.into_iter().next().unwrap().join().unwrap_err();
        assert!(
            matches!(error, ExecutorError::Crashed { shard: 0, .. }),
            "{error}"
        );
    }
}
