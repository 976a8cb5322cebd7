//! Token buckets: a client may send `rate` things per second on average, `burst` at
//! once. Pure (time is an argument), so tests need no clock.

use std::time::Instant;

#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl TokenBucket {
    pub fn new(rate_per_sec: f64, burst: u32) -> Self {
        Self {
            rate: rate_per_sec,
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            last: None,
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last {
            let elapsed = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Fixed one-minute windows per IP address: at most `per_minute` events in each.
#[derive(Debug)]
pub struct PerIpLimiter {
    per_minute: u32,
    windows: dashmap::DashMap<std::net::IpAddr, (Instant, u32)>,
}

impl PerIpLimiter {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            windows: dashmap::DashMap::new(),
        }
    }

    /// Counts one event from `ip`; false when over the limit.
    pub fn allow(&self, ip: std::net::IpAddr, now: Instant) -> bool {
        const WINDOW: std::time::Duration = std::time::Duration::from_secs(60);
        // Old windows go when the map grows, so a scan of many addresses costs bounded
        // memory.
        if self.windows.len() > 10_000 {
            self.windows
                .retain(|_, (start, _)| now.saturating_duration_since(*start) < WINDOW);
        }
        let mut entry = self.windows.entry(ip).or_insert((now, 0));
        let (start, count) = &mut *entry;
        if now.saturating_duration_since(*start) >= WINDOW {
            *start = now;
            *count = 0;
        }
        *count += 1;
        *count <= self.per_minute
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn per_ip_windows() {
        let l = PerIpLimiter::new(2);
        let t0 = Instant::now();
        let a: std::net::IpAddr = [10, 0, 0, 1].into();
        let b: std::net::IpAddr = [10, 0, 0, 2].into();
        assert!(l.allow(a, t0) && l.allow(a, t0));
        assert!(!l.allow(a, t0), "third in the minute");
        assert!(l.allow(b, t0), "another address has its own window");
        assert!(l.allow(a, t0 + Duration::from_secs(61)), "a new minute");
    }

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 3);
        assert!(b.take(t0) && b.take(t0) && b.take(t0));
        assert!(!b.take(t0), "burst spent");
        assert!(!b.take(t0 + Duration::from_millis(50)), "half a token");
        assert!(
            b.take(t0 + Duration::from_millis(110)),
            "one token after 100 ms"
        );
        // A long pause refills only up to the burst.
        let later = t0 + Duration::from_secs(60);
        assert!(b.take(later) && b.take(later) && b.take(later));
        assert!(!b.take(later));
    }
}
