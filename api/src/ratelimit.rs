//! Per-client rate limit: a token bucket per client IP (IPv6 clients by their /64, the
//! smallest block one subscriber usually gets). Each bucket holds up to `rate` tokens
//! (one second's worth, so a client may burst that many requests) and refills at `rate`
//! tokens per second; a request that finds the bucket empty is answered
//! `429 {"error":"rate_limited","message":...}` with `Retry-After`, and the handler never runs.
//!
//! Loopback clients are exempt unless [`NodeConfig::rate_limit_loopback`] is set: the
//! local wallet, the web page, a miner on the same box and load tests should never be
//! throttled by their own node, and an operator behind a reverse proxy on the same host
//! limits at the proxy. Requests without a known peer address (routers driven in-process,
//! as in tests) are not limited either.
//!
//! [`NodeConfig::rate_limit_loopback`]: crate::NodeConfig::rate_limit_loopback

use crate::{AppError, AppState};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Instant;

/// Buckets kept before idle (full) ones are dropped.
const PRUNE_AT: usize = 65_536;

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The buckets of every client seen recently.
pub struct RateLimiter {
    /// Requests per second per client (also the burst size); 0 = no limit.
    rate: u32,
    loopback: bool,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl RateLimiter {
    pub fn new(rate: u32, loopback: bool) -> RateLimiter {
        RateLimiter {
            rate,
            loopback,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The client key: the address, or for IPv6 its /64 (IPv4-mapped addresses as IPv4).
    pub fn key(ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(_) => ip,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let s = v6.segments();
                    IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
                }
            },
        }
    }

    /// Takes one token for `ip`: `Ok` to go ahead, `Err(seconds)` until one is available.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        if self.rate == 0 {
            return Ok(());
        }
        let key = Self::key(ip);
        if !self.loopback && (ip.is_loopback() || key.is_loopback()) {
            return Ok(());
        }
        let rate = f64::from(self.rate);
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= PRUNE_AT && !map.contains_key(&key) {
            // Forget clients whose bucket has refilled: they are indistinguishable from new.
            map.retain(|_, b| b.tokens + now.duration_since(b.last).as_secs_f64() * rate < rate);
        }
        let b = map.entry(key).or_insert(Bucket {
            tokens: rate,
            last: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate).min(rate);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

/// The middleware: refuses a request over its client's budget with 429. A connection's
/// first request was paid for when the listener accepted the connection.
pub async fn limit(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let prepaid = req.extensions().get::<crate::listen::Prepaid>().is_some();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .filter(|_| !prepaid)
        .map(|c| c.0.ip());
    if let Some(ip) = peer {
        if let Err(retry) = s.limiter.check(ip, Instant::now()) {
            let mut resp = AppError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "too many requests from {ip}: at most {} per second per client; retry in {retry} s",
                    s.config.rate_limit
                ),
            )
            .into_response();
            resp.headers_mut()
                .insert("retry-after", HeaderValue::from(retry));
            return resp;
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_bursts_then_refills() {
        let l = RateLimiter::new(5, false);
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(l.check(ip, t0).is_ok());
        }
        assert_eq!(l.check(ip, t0), Err(1));
        // Another client has its own bucket.
        assert!(l.check("203.0.113.8".parse().unwrap(), t0).is_ok());
        // 0.2 s refills one token at 5/s.
        assert!(l.check(ip, t0 + Duration::from_millis(210)).is_ok());
        assert!(l.check(ip, t0 + Duration::from_millis(210)).is_err());
    }

    #[test]
    fn loopback_exempt_unless_asked_and_zero_is_off() {
        let t0 = Instant::now();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let l = RateLimiter::new(1, false);
        for _ in 0..10 {
            assert!(l.check(lo, t0).is_ok());
            assert!(l.check("::1".parse().unwrap(), t0).is_ok());
        }
        let l = RateLimiter::new(1, true);
        assert!(l.check(lo, t0).is_ok());
        assert!(l.check(lo, t0).is_err());
        let off = RateLimiter::new(0, true);
        for _ in 0..10 {
            assert!(off.check("198.51.100.1".parse().unwrap(), t0).is_ok());
        }
    }

    #[test]
    fn ipv6_shares_a_bucket_per_64() {
        let l = RateLimiter::new(1, false);
        let t0 = Instant::now();
        assert!(l.check("2001:db8:1:2::1".parse().unwrap(), t0).is_ok());
        assert!(l.check("2001:db8:1:2::ffff".parse().unwrap(), t0).is_err());
        assert!(l.check("2001:db8:1:3::1".parse().unwrap(), t0).is_ok());
    }
}
