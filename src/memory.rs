//! Gives the memory the allocator holds free back to the system, so resident memory follows
//! what is live.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often the allocator is asked to give its free pages back.
const RELEASE_EVERY: Duration = Duration::from_secs(1);

/// Releases the allocator's free pages every [`RELEASE_EVERY`] until `stopped`.
///
/// glibc keeps what was freed in its per-thread arenas and returns pages to the system only
/// from the top of each heap. Connections and rooms that come and go free their memory below
/// longer-lived allocations, so without this, resident memory ratchets up with every burst
/// although the live heap stays flat (measured in ARCHITECTURE.md, "Memory").
pub async fn release_periodically(stopped: impl Future<Output = ()>) {
    tokio::pin!(stopped);
    let mut every = tokio::time::interval(RELEASE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            _ = every.tick() => {}
        }
        // the walk locks one arena at a time; off the runtime's workers it stalls none of them
        let started = Instant::now();
        let released = tokio::task::spawn_blocking(release_free_pages).await.unwrap_or(false);
        tracing::debug!(released, took_us = started.elapsed().as_micros() as u64, "allocator trimmed");
    }
}

/// Asks glibc to return the free pages of every arena; whether it returned any.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn release_free_pages() -> bool {
    // SAFETY: malloc_trim takes no pointers and glibc serializes it with every other
    // allocator call; it only hands free pages of its own lists back to the kernel.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Other allocators (musl, macOS, Windows) have no such call; they return memory themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_pages() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stops_with_the_process() {
        tokio::time::timeout(Duration::from_secs(5), release_periodically(async {}))
            .await
            .expect("returns once stopped");
    }

    /// What freed memory below a live allocation looks like: glibc cannot shrink its heap past
    /// the survivor, so the pages stay resident until the trim gives them back.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn gives_back_pages_freed_below_live_memory() {
        let resident_kib = || {
            let status = std::fs::read_to_string("/proc/self/status").expect("proc status");
            let line = status.lines().find(|line| line.starts_with("VmRSS:")).expect("VmRSS line");
            line.split_whitespace().nth(1).and_then(|kib| kib.parse::<i64>().ok()).expect("VmRSS in kB")
        };
        let mut chunks: Vec<Vec<u8>> = (0..4096).map(|_| vec![1u8; 16 * 1024]).collect();
        let survivor = vec![1u8; 16 * 1024];
        chunks.clear();
        chunks.shrink_to_fit();
        let before = resident_kib();
        assert!(release_free_pages());
        let given_back = before - resident_kib();
        assert!(given_back >= 32 * 1024, "64 MiB freed, {given_back} KiB given back");
        drop(survivor);
    }
}
