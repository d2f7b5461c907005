//! The HTTP listener: accepts connections under bounds, so that idle or slow clients
//! cannot exhaust the node's file descriptors or hold sockets forever.
//!
//! - a **global connection cap** ([`ConnLimits::max_connections`]), kept below the
//!   process's file-descriptor limit ([`raise_fd_limit`], [`connection_cap`]) so `accept`
//!   never fails with "Too many open files" and the redb file, peer connections and the
//!   Stratum listener always have descriptors left;
//! - a **per-client cap** ([`ConnLimits::max_per_ip`], IPv6 by /64, loopback included: a
//!   local process is as able to open a thousand sockets as a remote one);
//! - the **rate limit counts connections** as well as requests: every accepted connection
//!   takes a token from its client's bucket ([`RateLimiter::check`]), which pays for the
//!   connection's first request ([`Prepaid`]), so a client opening a connection per
//!   request pays once per request and one opening connections without requests pays too.
//!   A connection that finds the bucket empty is still accepted (within the caps) but
//!   unpaid: its first request meets the limit itself and gets a proper HTTP `429` with
//!   `Retry-After` (answering before the request is read would leave an HTTP client with
//!   an unsolicited response it cannot read);
//! - a **header-read timeout**: a request head (the first one, and each next one on a
//!   kept-alive connection) must arrive whole within [`ConnLimits::header_timeout`], so a
//!   socket that sends nothing, or a slowloris trickling a header, is closed;
//! - an **idle timeout**: a connection on which nothing was read or written for
//!   [`ConnLimits::idle_timeout`] is closed (an event stream writes a keep-alive every 15 s,
//!   so only a stream whose client stopped reading goes quiet that long).
//!
//! A connection refused by a cap gets a short JSON `503` with `Retry-After` written
//! without waiting, then is closed. HTTP/1.1 only: the node's clients (wallet, miner,
//! peers, browsers over plain http) never speak h2c, and the version sniffing of an
//! HTTP/2-capable server would wait for the first bytes without any timeout.

use crate::ratelimit::RateLimiter;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

/// File descriptors kept free below the limit for everything that is not an inbound
/// HTTP connection: the ledger, outbound peer requests, Stratum, logs.
pub const FD_HEADROOM: u64 = 256;
/// Default global connection cap (lowered to fit the descriptor limit).
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default connections per client IP. Above what a browser (6), a wallet, a miner or the
/// 128-connection load test open; far below the global cap.
pub const DEFAULT_MAX_PER_IP: usize = 256;
/// Default time for a whole request head to arrive.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a connection may stay with nothing read or written.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest buffered request head (hyper's default is ~400 KB per connection, which times
/// the connection cap is more memory than a node should give to headers).
const MAX_BUF: usize = 64 * 1024;

/// Marks a connection's first request, whose rate-limit token the connection already took
/// when it was accepted ([`crate::ratelimit::limit`] lets it through without another).
#[derive(Clone, Copy, Debug)]
pub struct Prepaid;

/// Bounds on inbound connections (see the module docs).
#[derive(Clone, Debug)]
pub struct ConnLimits {
    pub max_connections: usize,
    /// 0 = no per-client cap.
    pub max_per_ip: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_per_ip: DEFAULT_MAX_PER_IP,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit now in force
/// (`None` where the platform has no such limit).
pub fn raise_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!(error = %e, "cannot raise the open-file limit");
                rlimit::getrlimit(rlimit::Resource::NOFILE)
                    .ok()
                    .map(|(soft, _)| soft)
            }
        }
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The connection cap to use: `requested`, lowered to leave [`FD_HEADROOM`] descriptors
/// under `fd_limit`, never below 1.
pub fn connection_cap(requested: usize, fd_limit: Option<u64>) -> usize {
    match fd_limit {
        Some(limit) => {
            let room = usize::try_from(limit.saturating_sub(FD_HEADROOM)).unwrap_or(usize::MAX);
            requested.min(room).max(1)
        }
        None => requested.max(1),
    }
}

/// Live counts the listener exposes (for `/metrics` and tests).
#[derive(Default, Debug)]
pub struct ConnStats {
    /// Connections open now.
    pub open: AtomicUsize,
    /// Connections refused since start (global or per-client cap).
    pub refused: AtomicU64,
    /// Connections closed by the header or idle timeout since start.
    pub timed_out: AtomicU64,
}

/// Why a connection was refused.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    Full,
    PerIp,
}

/// Open connections, in total and per client key.
struct Tracker {
    limits: ConnLimits,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    stats: Arc<ConnStats>,
}

/// Holds one connection's place; frees it on drop.
struct Slot {
    tracker: Arc<Tracker>,
    key: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self
            .tracker
            .per_ip
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.key);
            }
        }
        self.tracker.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Tracker {
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let key = RateLimiter::key(ip);
        let mut map = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if self.stats.open.load(Ordering::Relaxed) >= self.limits.max_connections {
            return Err(Refusal::Full);
        }
        let n = map.entry(key).or_insert(0);
        if self.limits.max_per_ip > 0 && *n >= self.limits.max_per_ip {
            return Err(Refusal::PerIp);
        }
        *n += 1;
        self.stats.open.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            tracker: self.clone(),
            key,
        })
    }
}

/// Serves `app` on `listener` under `limits` until `shutdown` completes, then lets open
/// connections finish (each is told to close after its current request).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limiter: Arc<RateLimiter>,
    limits: ConnLimits,
    stats: Arc<ConnStats>,
    shutdown: impl Future<Output = ()>,
) {
    let tracker = Arc::new(Tracker {
        limits,
        per_ip: Mutex::new(HashMap::new()),
        stats,
    });
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(tracker.limits.header_timeout)
        .max_buf_size(MAX_BUF);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors despite the cap (or another transient error):
                    // back off instead of spinning; the connections already open go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let (slot, paid) = match admit(&tracker, &limiter, peer.ip()) {
            Ok(s) => s,
            Err(why) => {
                tracker.stats.refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, ?why, "connection refused");
                refuse(stream, &why);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Watched {
            inner: stream,
            activity: activity.clone(),
        });
        let app = app.clone();
        let first = AtomicBool::new(paid);
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            if first.swap(false, Ordering::Relaxed) {
                req.extensions_mut().insert(Prepaid);
            }
            app.clone().oneshot(req.map(Body::new))
        });
        let conn = graceful.watch(http.serve_connection(io, service));
        let idle = tracker.limits.idle_timeout;
        let stats = tracker.stats.clone();
        tokio::spawn(async move {
            let _slot = slot;
            tokio::select! {
                r = conn => if let Err(e) = r {
                    if e.is_timeout() {
                        stats.timed_out.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::trace!(%peer, error = %e, "connection ended");
                },
                _ = activity.idle_for(idle) => {
                    stats.timed_out.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%peer, "closing a connection idle for {idle:?}");
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// A place for a connection from `ip` (or why not), and whether its rate-limit token was
/// taken (then its first request is paid for).
fn admit(
    tracker: &Arc<Tracker>,
    limiter: &RateLimiter,
    ip: IpAddr,
) -> Result<(Slot, bool), Refusal> {
    let slot = tracker.admit(ip)?;
    Ok((slot, limiter.check(ip, Instant::now()).is_ok()))
}

/// Writes a one-shot JSON answer if the socket takes it at once, then closes.
fn refuse(stream: TcpStream, why: &Refusal) {
    let (status, code, message, retry) = match why {
        Refusal::Full => (
            "503 Service Unavailable",
            "too_many_connections",
            "the node has as many connections open as it allows; retry shortly".to_string(),
            1,
        ),
        Refusal::PerIp => (
            "503 Service Unavailable",
            "too_many_connections",
            "too many connections from your address; close some and retry".to_string(),
            1,
        ),
    };
    let body = serde_json::json!({"error": code, "message": message}).to_string();
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: {retry}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    // Never wait on a refused client: what the send buffer does not take is dropped.
    let _ = stream.try_write(format!("{head}{body}").as_bytes());
    drop(stream);
}

/// When a connection last moved a byte, in milliseconds since [`epoch`].
struct Activity(AtomicU64);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl Activity {
    fn new() -> Activity {
        Activity(AtomicU64::new(now_ms()))
    }

    fn touch(&self) {
        self.0.store(now_ms(), Ordering::Relaxed);
    }

    /// Completes once nothing has moved for `idle`.
    async fn idle_for(&self, idle: Duration) {
        let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        loop {
            let quiet = now_ms().saturating_sub(self.0.load(Ordering::Relaxed));
            if quiet >= idle_ms {
                return;
            }
            tokio::time::sleep(Duration::from_millis(idle_ms - quiet)).await;
        }
    }
}

/// A socket that records every read or write that moved bytes.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(max: usize, per_ip: usize) -> Arc<Tracker> {
        Arc::new(Tracker {
            limits: ConnLimits {
                max_connections: max,
                max_per_ip: per_ip,
                ..ConnLimits::default()
            },
            per_ip: Mutex::new(HashMap::new()),
            stats: Arc::new(ConnStats::default()),
        })
    }

    #[test]
    fn per_client_cap_counts_loopback_and_frees_on_drop() {
        let t = tracker(10, 2);
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let a = t.admit(lo).unwrap();
        let _b = t.admit(lo).unwrap();
        assert_eq!(t.admit(lo).err(), Some(Refusal::PerIp));
        // Another loopback address is another client.
        let _c = t.admit("127.0.0.2".parse().unwrap()).unwrap();
        drop(a);
        assert!(t.admit(lo).is_ok());
    }

    #[test]
    fn global_cap_refuses_every_client_once_full() {
        let t = tracker(3, 0);
        let held: Vec<Slot> = (1..=3)
            .map(|i| t.admit(format!("10.0.0.{i}").parse().unwrap()).unwrap())
            .collect();
        assert_eq!(
            t.admit("10.0.0.9".parse().unwrap()).err(),
            Some(Refusal::Full)
        );
        assert_eq!(t.stats.open.load(Ordering::Relaxed), 3);
        drop(held);
        assert_eq!(t.stats.open.load(Ordering::Relaxed), 0);
        assert!(t.per_ip.lock().unwrap().is_empty());
    }

    #[test]
    fn ipv6_clients_share_a_cap_per_64() {
        let t = tracker(10, 1);
        let _a = t.admit("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert_eq!(
            t.admit("2001:db8:1:2::9".parse().unwrap()).err(),
            Some(Refusal::PerIp)
        );
        assert!(t.admit("2001:db8:1:3::1".parse().unwrap()).is_ok());
    }

    #[test]
    fn connection_cap_leaves_headroom_below_the_fd_limit() {
        assert_eq!(
            connection_cap(4096, Some(1024)),
            1024 - FD_HEADROOM as usize
        );
        assert_eq!(connection_cap(100, Some(1_000_000)), 100);
        assert_eq!(connection_cap(4096, Some(10)), 1);
        assert_eq!(connection_cap(7, None), 7);
    }

    #[test]
    fn rate_limit_counts_connections() {
        let t = tracker(100, 0);
        let limiter = RateLimiter::new(2, false);
        let ip: IpAddr = "198.51.100.4".parse().unwrap();
        let (_a, paid_a) = admit(&t, &limiter, ip).unwrap();
        let (_b, paid_b) = admit(&t, &limiter, ip).unwrap();
        assert!(paid_a && paid_b);
        // The bucket is empty: accepted, unpaid (its first request will get the 429).
        let (_c, paid_c) = admit(&t, &limiter, ip).unwrap();
        assert!(!paid_c);
        assert!(limiter.check(ip, Instant::now()).is_err());
    }
}
