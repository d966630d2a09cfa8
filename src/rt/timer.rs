//! Timers on the shard's reactor (no threads, no polling): a plain sleep and a deadline around
//! any future. Only usable inside a shard executor.

use std::time::Duration;

use futures_lite::future;

/// Sleeps on the reactor.
pub async fn sleep(duration: Duration) {
    glommio::timer::sleep(duration).await;
}

/// Runs `work` for at most `limit`; `None` if the limit passed first (the work is dropped).
pub async fn within<T>(limit: Duration, work: impl Future<Output = T>) -> Option<T> {
    future::or(async { Some(work.await) }, async {
        sleep(limit).await;
        None
    })
    .await
}
