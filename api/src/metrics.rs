//! Prometheus metrics, hand-formatted (a handful of series does not need a registry
//! crate). Every series is prefixed `bitplace_`.

use crate::listen::ConnStats;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Reads a live count when `/metrics` is rendered.
pub type CountSource = Box<dyn Fn() -> u64 + Send + Sync>;

/// Reads the push bans' counts when `/metrics` is rendered.
pub type BanSource = Box<dyn Fn() -> crate::peers::BanCounts + Send + Sync>;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
pub struct Metrics {
    pub tx_accepted: AtomicU64,
    pub blocks_accepted: AtomicU64,
    /// Peer count when no live source is set (see [`Metrics::set_peer_source`]).
    pub peers: AtomicU64,
    /// Where `bitplace_peers` is read from at each scrape, e.g. the peer service's list.
    peer_source: OnceLock<CountSource>,
    /// Where `bitplace_orphan_txs` is read from: the peer service's orphan pool.
    orphan_source: OnceLock<CountSource>,
    /// Where the `bitplace_p2p_ban*` series are read from: the peer service's bans.
    ban_source: OnceLock<BanSource>,
    pub sse_clients: AtomicU64,
    /// Inbound connection counts, kept by the listener ([`crate::listen`]).
    pub connections: Arc<ConnStats>,
    /// (route, method, status class) → latency histogram. Routes are the matched route
    /// patterns, so the label set stays bounded whatever paths clients send.
    requests: Mutex<BTreeMap<(String, String, String), Histogram>>,
}

impl Metrics {
    /// Makes `bitplace_peers` read `source` at every scrape, so registrations and
    /// removals after start show. Only the first source set counts.
    pub fn set_peer_source(&self, source: impl Fn() -> u64 + Send + Sync + 'static) {
        let _ = self.peer_source.set(Box::new(source));
    }

    /// Makes `bitplace_orphan_txs` read `source` at every scrape.
    pub fn set_orphan_source(&self, source: impl Fn() -> u64 + Send + Sync + 'static) {
        let _ = self.orphan_source.set(Box::new(source));
    }

    /// Makes the `bitplace_p2p_ban*` series read `source` at every scrape.
    pub fn set_ban_source(
        &self,
        source: impl Fn() -> crate::peers::BanCounts + Send + Sync + 'static,
    ) {
        let _ = self.ban_source.set(Box::new(source));
    }

    /// The current peer count.
    pub fn peer_count(&self) -> u64 {
        match self.peer_source.get() {
            Some(f) => f(),
            None => self.peers.load(Ordering::Relaxed),
        }
    }

    pub fn observe(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let class = format!("{}xx", status / 100);
        let mut map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let h = map
            .entry((route.to_string(), method.to_string(), class))
            .or_default();
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// The text exposition format, with the chain gauges read by the caller.
    pub fn render(&self, height: u64, mempool: u64) -> String {
        let mut out = String::new();
        let gauge = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP bitplace_{name} {help}");
            let _ = writeln!(out, "# TYPE bitplace_{name} gauge");
            let _ = writeln!(out, "bitplace_{name} {v}");
        };
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP bitplace_{name} {help}");
            let _ = writeln!(out, "# TYPE bitplace_{name} counter");
            let _ = writeln!(out, "bitplace_{name} {v}");
        };
        gauge(&mut out, "height", "Height of the best chain.", height);
        gauge(
            &mut out,
            "mempool_size",
            "Transactions in the mempool.",
            mempool,
        );
        gauge(&mut out, "peers", "Known peers.", self.peer_count());
        gauge(
            &mut out,
            "orphan_txs",
            "Transactions from peers held until a parent arrives.",
            self.orphan_source.get().map_or(0, |f| f()),
        );
        gauge(
            &mut out,
            "sse_clients",
            "Open push-event streams.",
            self.sse_clients.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "http_connections",
            "Open HTTP connections.",
            self.connections.open.load(Ordering::Relaxed) as u64,
        );
        counter(
            &mut out,
            "http_connections_refused_total",
            "HTTP connections refused (global or per-client connection cap) since start.",
            self.connections.refused.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "http_connections_timed_out_total",
            "HTTP connections closed by the header-read or idle timeout since start.",
            self.connections.timed_out.load(Ordering::Relaxed),
        );
        let bans = self.ban_source.get().map(|f| f()).unwrap_or_default();
        gauge(
            &mut out,
            "p2p_banned_clients",
            "Client addresses (IPv6 by /64) whose pushes to /v1/p2p/* are refused now.",
            bans.banned,
        );
        counter(
            &mut out,
            "p2p_bans_total",
            "Client addresses banned from pushing to /v1/p2p/* since start (invalid data or an orphan flood).",
            bans.bans,
        );
        counter(
            &mut out,
            "p2p_banned_pushes_total",
            "Pushes to /v1/p2p/blocks and /v1/p2p/tx refused unparsed since start: their client was banned.",
            bans.refused,
        );
        counter(
            &mut out,
            "tx_accepted_total",
            "Transactions admitted to the mempool since start.",
            self.tx_accepted.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "blocks_accepted_total",
            "Blocks connected to the best chain since start.",
            self.blocks_accepted.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP bitplace_http_request_duration_seconds HTTP request latency until the response head."
        );
        let _ = writeln!(
            out,
            "# TYPE bitplace_http_request_duration_seconds histogram"
        );
        let map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        for ((route, method, class), h) in map.iter() {
            let labels = format!(
                "route=\"{}\",method=\"{}\",status=\"{}\"",
                escape(route),
                escape(method),
                class
            );
            for (i, le) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "bitplace_http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "bitplace_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "bitplace_http_request_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "bitplace_http_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        out
    }
}

/// Workers shown by name in `bitplace_stratum_worker_hashrate`; the rest are summed
/// under `worker="_other"`, so a pool of thousands of rigs cannot blow up the series.
pub const MAX_WORKER_SERIES: usize = 20;

/// Appends the `bitplace_stratum_*` series.
pub fn render_stratum(out: &mut String, t: &crate::stratum::accounting::Totals) {
    fn head(out: &mut String, name: &str, kind: &str, help: &str) {
        let _ = writeln!(out, "# HELP bitplace_stratum_{name} {help}");
        let _ = writeln!(out, "# TYPE bitplace_stratum_{name} {kind}");
    }
    head(out, "connections", "gauge", "Open Stratum connections.");
    let _ = writeln!(out, "bitplace_stratum_connections {}", t.connections);
    head(
        out,
        "shares_total",
        "counter",
        "Stratum shares since start by result (accepted includes those that were blocks).",
    );
    let _ = writeln!(
        out,
        "bitplace_stratum_shares_total{{result=\"accepted\"}} {}",
        t.accepted
    );
    let _ = writeln!(
        out,
        "bitplace_stratum_shares_total{{result=\"stale\"}} {}",
        t.stale
    );
    for (reason, n) in &t.rejected {
        let _ = writeln!(
            out,
            "bitplace_stratum_shares_total{{result=\"{reason}\"}} {n}"
        );
    }
    head(
        out,
        "blocks_total",
        "counter",
        "Blocks found through Stratum since start.",
    );
    let _ = writeln!(out, "bitplace_stratum_blocks_total {}", t.blocks);
    head(
        out,
        "hashrate",
        "gauge",
        "Estimated hash rate of all connected workers, H/s.",
    );
    let _ = writeln!(out, "bitplace_stratum_hashrate {}", t.hashrate);
    head(
        out,
        "worker_hashrate",
        "gauge",
        "Estimated hash rate per worker, H/s (the fastest by name, the rest as _other).",
    );
    let mut workers = t.workers.clone();
    workers.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (name, h) in workers.iter().take(MAX_WORKER_SERIES) {
        let _ = writeln!(
            out,
            "bitplace_stratum_worker_hashrate{{worker=\"{}\"}} {h}",
            escape(name)
        );
    }
    if workers.len() > MAX_WORKER_SERIES {
        let rest: f64 = workers[MAX_WORKER_SERIES..].iter().map(|w| w.1).sum();
        let _ = writeln!(
            out,
            "bitplace_stratum_worker_hashrate{{worker=\"_other\"}} {rest}"
        );
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stratum::accounting::Totals;

    #[test]
    fn worker_series_are_bounded_and_the_rest_summed() {
        let t = Totals {
            connections: 30,
            accepted: 7,
            rejected: vec![("duplicate", 2)],
            workers: (0..30)
                .map(|i| (format!("bp1w.rig{i}"), i as f64))
                .collect(),
            hashrate: (0..30).sum::<i32>() as f64,
            ..Totals::default()
        };
        let mut out = String::new();
        render_stratum(&mut out, &t);
        let series = out
            .lines()
            .filter(|l| l.starts_with("bitplace_stratum_worker_hashrate{"))
            .count();
        assert_eq!(series, MAX_WORKER_SERIES + 1, "{out}");
        // The fastest are named; rigs 0..=9 (sum 45) are summed as _other.
        assert!(out.contains("bitplace_stratum_worker_hashrate{worker=\"bp1w.rig29\"} 29"));
        assert!(out.contains("bitplace_stratum_worker_hashrate{worker=\"_other\"} 45"));
        assert!(out.contains("bitplace_stratum_shares_total{result=\"accepted\"} 7"));
        assert!(out.contains("bitplace_stratum_shares_total{result=\"duplicate\"} 2"));
        assert!(out.contains("bitplace_stratum_connections 30"));
    }
}
