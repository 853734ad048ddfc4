//! Rate limits: a token bucket per connection for publishes and one for the whole edge for CONNECTs.

use tokio::time::Instant;

/// A token bucket: `rate` tokens per second, holding at most one second's worth.
pub(crate) struct TokenBucket {
    pub(crate) rate: u32,
    tokens: f64,
    refilled: Instant,
}

impl TokenBucket {
    pub(crate) fn new(rate: u32) -> Self {
        Self { rate, tokens: f64::from(rate), refilled: Instant::now() }
    }

    /// Takes one token; false when none is left.
    pub(crate) fn take(&mut self) -> bool {
        let now = Instant::now();
        let rate = f64::from(self.rate);
        self.tokens = (self.tokens + now.duration_since(self.refilled).as_secs_f64() * rate).min(rate);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
