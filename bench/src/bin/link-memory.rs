//! Resident memory of rumqttd's router per idle local link, with Roost's router settings: the
//! share of a Roost connection's memory that lives in the embedded router.
//!
//! Usage: link-memory [LINKS] (default 5,000). Each link subscribes to one room filter and
//! stays idle; prints one JSON line with the resident memory per link.

use rumqttd::local::LinkBuilder;
use rumqttd::Router;
use std::time::Duration;

fn main() -> anyhow::Result<()> {
    let links: usize = std::env::args().nth(1).map(|n| n.parse()).transpose()?.unwrap_or(5_000);
    let router_tx = Router::new(0, roost_broker::router_config(100_064)).spawn();
    std::thread::sleep(Duration::from_millis(200));
    let before = resident_kib()?;
    let mut held = Vec::with_capacity(links);
    for i in 0..links {
        let (mut tx, rx, _) = LinkBuilder::new(&format!("link:{i}"), router_tx.clone()).build()?;
        tx.subscribe("rooms/lobby/messages")?;
        held.push((tx, rx));
    }
    std::thread::sleep(Duration::from_secs(1));
    release_free_pages();
    let after = resident_kib()?;
    let per_link = (after - before) as f64 / links as f64;
    println!(
        "{{\"scenario\":\"link-memory\",\"links\":{links},\"rss_before_kib\":{before},\"rss_after_kib\":{after},\"kib_per_link\":{:.2}}}",
        per_link
    );
    Ok(())
}

fn resident_kib() -> anyhow::Result<i64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).ok_or_else(|| anyhow::anyhow!("no VmRSS"))?;
    Ok(line.split_whitespace().nth(1).unwrap_or("0").parse()?)
}

/// As Roost does every second (src/memory.rs): free pages back to the system before measuring.
#[allow(unsafe_code)]
fn release_free_pages() {
    // SAFETY: malloc_trim takes no pointers; glibc serializes it with every allocator call.
    unsafe {
        libc::malloc_trim(0);
    }
}
