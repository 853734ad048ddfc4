//! Rate limits: a token bucket, and a table of buckets by key (client address, user name).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// A token bucket: `rate` tokens per second, holding at most `burst`.
pub struct TokenBucket {
    pub rate: u32,
    per_second: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
}

impl TokenBucket {
    /// `rate` per second with a burst of one second's worth.
    pub fn new(rate: u32) -> Self {
        Self::refilling(f64::from(rate), rate)
    }

    fn refilling(per_second: f64, burst: u32) -> Self {
        let burst = f64::from(burst);
        Self { rate: per_second.ceil() as u32, per_second, burst, tokens: burst, refilled: Instant::now() }
    }

    /// Takes one token; false when none is left.
    pub fn take(&mut self) -> bool {
        self.try_take().is_ok()
    }

    /// Takes one token, or says how long until one is there.
    pub fn try_take(&mut self) -> Result<(), Duration> {
        self.refill();
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.per_second))
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let earned = now.duration_since(self.refilled).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + earned).min(self.burst);
        self.refilled = now;
    }

    /// True when the bucket is full again: forgetting it changes nothing.
    fn is_full(&mut self) -> bool {
        self.refill();
        self.tokens >= self.burst
    }
}

/// Keys a table holds before it first forgets the buckets that are full again; after each
/// sweep the next comes when the table has doubled, so sweeping costs O(1) per key amortized.
const FORGET_PAST: usize = 10_000;

/// One token bucket per key, created full on first use: `per_minute` tokens a minute, a burst
/// of as many. The table forgets full buckets once it
/// holds many keys, so a flood of distinct keys costs memory only while they are being limited.
pub struct KeyedBuckets {
    per_minute: u32,
    table: Mutex<Table>,
}

struct Table {
    buckets: HashMap<String, TokenBucket>,
    /// The size at which the next sweep runs.
    sweep_at: usize,
}

impl KeyedBuckets {
    /// At least one token a minute.
    pub fn per_minute(per_minute: u32) -> Self {
        let table = Table { buckets: HashMap::new(), sweep_at: FORGET_PAST };
        Self { per_minute: per_minute.max(1), table: Mutex::new(table) }
    }

    /// Takes one token from `key`'s bucket, or says how long until one is there.
    pub fn try_take(&self, key: &str) -> Result<(), Duration> {
        let mut table = self.table.lock().expect("rate table lock");
        if table.buckets.len() >= table.sweep_at && !table.buckets.contains_key(key) {
            table.buckets.retain(|_, bucket| !bucket.is_full());
            table.sweep_at = FORGET_PAST.max(table.buckets.len() * 2);
        }
        let buckets = &mut table.buckets;
        match buckets.get_mut(key) {
            Some(bucket) => bucket.try_take(),
            None => buckets
                .entry(key.to_owned())
                .or_insert(TokenBucket::refilling(f64::from(self.per_minute) / 60.0, self.per_minute))
                .try_take(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_key_gets_its_burst_then_one_token_per_interval() {
        let table = KeyedBuckets::per_minute(3);
        for _ in 0..3 {
            assert!(table.try_take("mallory").is_ok());
        }
        let wait = table.try_take("mallory").unwrap_err();
        assert!(wait > Duration::from_secs(19) && wait <= Duration::from_secs(20), "{wait:?}");
        assert!(table.try_take("alice").is_ok(), "keys do not share a bucket");
        tokio::time::advance(Duration::from_secs(20)).await;
        assert!(table.try_take("mallory").is_ok());
        assert!(table.try_take("mallory").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_crowded_table_forgets_full_buckets_only() {
        let table = KeyedBuckets::per_minute(1);
        assert!(table.try_take("limited").is_ok());
        for key in 0..FORGET_PAST {
            let _ = table.try_take(&key.to_string());
        }
        assert!(table.try_take("limited").is_err(), "a bucket in use is kept");
        let size = || table.table.lock().unwrap().buckets.len();
        let sweep_at = table.table.lock().unwrap().sweep_at;
        assert!(sweep_at >= 2 * FORGET_PAST, "a sweep that freed nothing waits for the table to double");
        tokio::time::advance(Duration::from_secs(61)).await;
        // newcomers until the next sweep: the older keys, full again, are forgotten then
        for key in 0..=(sweep_at - size()) {
            let _ = table.try_take(&format!("new{key}"));
        }
        assert!(size() < sweep_at / 2 + 10, "{} keys kept", size());
        assert!(table.try_take("limited").is_ok(), "forgotten, so full again");
    }
}
