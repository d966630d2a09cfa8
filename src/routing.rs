//! Which shard owns a queue. One pure function, stable across releases and restarts: FNV-1a
//! (64 bit) of the queue name with every trailing `.dlq` removed, modulo the shard count, so a
//! queue and its dead-letter queue always live on the same shard (dead-lettering and redrive
//! stay one atomic write in one database).
//!
//! Changing this function moves queues between shards and strands their data: never change
//! it for an existing data directory (the shard count is recorded there for the same reason).

/// The shard (in `0..shards`) that owns `queue`. `shards` of 0 is treated as 1.
pub fn shard_for(queue: &str, shards: usize) -> usize {
    let mut name = queue;
    while let Some(parent) = name.strip_suffix(".dlq") {
        name = parent;
    }
    // The same FNV-1a as throttle keys' home shards (`fila_shard::throttle::home_of`).
    let hash = fila_shard::throttle::stable_hash(name);
    let shards = u64::try_from(shards.max(1)).unwrap_or(1);
    usize::try_from(hash % shards).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_and_its_dlq_share_a_shard() {
        for shards in 1..8 {
            for name in ["orders", "a", "", "x.dlq", "payments.eu"] {
                assert_eq!(
                    shard_for(name, shards),
                    shard_for(&format!("{name}.dlq"), shards)
                );
            }
        }
    }

    #[test]
    fn the_function_is_stable() {
        // Pinned values: a change here strands existing data directories.
        assert_eq!(shard_for("orders", 2), 0);
        assert_eq!(shard_for("orders", 7), 4);
        assert_eq!(shard_for("", 3), 2);
        assert_eq!(shard_for("anything", 1), 0);
        assert_eq!(shard_for("anything", 0), 0);
    }

    #[test]
    fn names_spread_over_shards() {
        let mut counts = [0_u32; 4];
        for i in 0..4000 {
            counts[shard_for(&format!("queue-{i}"), 4)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
    }
}
