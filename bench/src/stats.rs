//! Payloads carrying their send time, latency histograms, and the broker's memory and CPU time.

use hdrhistogram::Histogram;
use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or_default()
}

/// Words a payload is padded with: text like a chat message's, so that what a store does with
/// words (search indexing) costs what it would.
const PAD: &[u8] = b"see you at the usual place for lunch around noon, bring the notes from friday ";

/// A Roost message body of about `size` bytes stamped with the send time.
pub(crate) fn payload(size: usize) -> Vec<u8> {
    let head = format!("{{\"body\":\"{} ", now_ns());
    let pad = size.saturating_sub(head.len() + 2);
    let mut out = Vec::with_capacity(head.len() + pad + 2);
    out.extend_from_slice(head.as_bytes());
    out.extend(PAD.iter().cycle().take(pad));
    out.extend_from_slice(b"\"}");
    out
}

/// When the payload was made (ns since the epoch), read from the `"body":"<ns> ` it carries
/// (raw or inside a Roost envelope).
pub(crate) fn sent_ns(received: &[u8]) -> Option<u64> {
    const MARK: &[u8] = b"\"body\":\"";
    let start = received.windows(MARK.len()).position(|w| w == MARK)? + MARK.len();
    let digits = received[start..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&received[start..start + digits]).ok()?.parse().ok()
}

/// A latency histogram in microseconds, 1 µs to 60 s.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// `{"p50_ms","p90_ms","p99_ms","max_ms"}` of a histogram in microseconds.
pub(crate) fn percentiles(h: &Histogram<u64>) -> serde_json::Value {
    let ms = |us: u64| (us as f64 / 1000.0 * 100.0).round() / 100.0;
    serde_json::json!({
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p90_ms": ms(h.value_at_quantile(0.90)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "max_ms": ms(h.max()),
    })
}

/// `value` rounded to two decimals, for reports.
pub(crate) fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// Microseconds of `cpu_s` CPU seconds per unit of work, `units` of it done.
pub(crate) fn micros_per(cpu_s: f64, units: u64) -> f64 {
    round2(cpu_s * 1e6 / units.max(1) as f64)
}

/// Resident memory of process `pid` in KiB.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Clock ticks per second of the times in `/proc/PID/stat` (`USER_HZ`, which Linux fixes at 100
/// for what it shows user space; proc(5): divide by `sysconf(_SC_CLK_TCK)`).
const USER_HZ: f64 = 100.0;

/// CPU seconds process `pid` has used so far, user and system, all its threads (`utime` +
/// `stime` of `/proc/PID/stat`, to 10 ms).
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name (field 2) is in parentheses and may hold spaces; fields 14 and 15 are
    // the 12th and 13th after it
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

#[cfg(test)]
mod tests {
    #[test]
    fn payload_carries_its_send_time_and_size() {
        let p = super::payload(100);
        assert_eq!(p.len(), 100);
        let value: serde_json::Value = serde_json::from_slice(&p).unwrap();
        assert!(value["body"].is_string());
        let envelope = format!(r#"{{"id":"x","seq":1,"body":{}}}"#, value["body"]);
        let age = super::now_ns() - super::sent_ns(envelope.as_bytes()).unwrap();
        assert!(age < 60_000_000_000);
    }

    #[test]
    fn cpu_time_of_this_process_is_read_and_grows() {
        let before = super::cpu_seconds(std::process::id()).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while super::cpu_seconds(std::process::id()).unwrap() <= before {
            assert!(std::time::Instant::now() < deadline, "no CPU time counted after 10 s of spinning");
        }
    }
}
