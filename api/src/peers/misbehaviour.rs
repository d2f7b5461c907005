//! Misbehaviour scores of the clients that push to `/v1/p2p/blocks` and `/v1/p2p/tx`, as
//! Bitcoin Core scores peers and discourages the bad ones: anyone may push, so a push that
//! makes the node work for nothing must cost the pusher more than a rate-limit token.
//!
//! - Data that breaks a consensus rule for good ([`block_offence`], [`tx_offence`]) scores
//!   [`BAN_SCORE`] at once: a node of ours relays only blocks it connected and transactions
//!   it admitted, so an honest peer never sends it. The same classification as what the
//!   engine remembers as invalid (`engine::invalid::is_final`): never a bad signature (the
//!   block hash does not commit to signatures, and batch verification's verdict on an odd
//!   signature is not the same on every node), a time ahead of our clock, a policy refusal
//!   (fees, a full mempool, `fork_too_far_behind`) or a conflict with our mempool. Unlike
//!   what is remembered, a body that does not match its header (merkle root, duplicated
//!   transactions) is the pusher's own doing and scores too: the hash is not to blame, the
//!   pusher is.
//! - A block whose parent is unknown (an orphan) scores [`ORPHAN_POINTS`]. An honest peer
//!   relays a block ahead of its parent now and then (relays run concurrently, and a peer
//!   syncing relays what it connects), a flood is an attack.
//! - A score drains by [`DECAY_PER_SEC`]: about one orphan every two seconds is forgiven as
//!   it comes, a burst of 50 is not.
//! - A client at [`BAN_SCORE`] is banned for [`BanConfig::ban_for`]: its pushes are refused
//!   before their body is parsed (`403 banned` with `Retry-After`). Its other requests are
//!   served: reads cost little and are rate limited, and an address may be shared (NAT,
//!   CGNAT, one IPv6 /64) by clients that did nothing.
//!
//! Clients are keyed like the rate limiter's buckets (IPv6 by /64, see
//! [`RateLimiter::key`]), at most [`MAX_TRACKED`] of them (the least suspicious forgotten
//! first). Loopback clients are exempt unless [`BanConfig::loopback`]: behind a reverse proxy
//! on the same host every client is loopback. Times are passed in, so tests drive the clock.

use crate::ratelimit::RateLimiter;
use engine::{Reject, RejectClass};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The score at which a client is banned.
pub const BAN_SCORE: f64 = 100.0;
/// What one orphan block push scores.
pub const ORPHAN_POINTS: f64 = 2.0;
/// How fast a score drains, points per second.
pub const DECAY_PER_SEC: f64 = 1.0;
/// Most clients tracked at once.
pub const MAX_TRACKED: usize = 16_384;

/// How pushes are policed (from the command line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BanConfig {
    /// How long a client at [`BAN_SCORE`] is refused pushes; zero turns scoring off.
    pub ban_for: Duration,
    /// Score loopback clients too (by default they are exempt).
    pub loopback: bool,
}

impl Default for BanConfig {
    fn default() -> Self {
        BanConfig {
            ban_for: Duration::from_secs(super::BAN_SECS),
            loopback: false,
        }
    }
}

/// What a push did wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offence {
    /// Consensus-invalid for good; the refusal's code.
    Invalid(&'static str),
    /// A block whose parent we do not know.
    Orphan,
}

impl Offence {
    pub fn points(self) -> f64 {
        match self {
            Offence::Invalid(_) => BAN_SCORE,
            Offence::Orphan => ORPHAN_POINTS,
        }
    }

    /// Why, as the ban says it.
    pub fn reason(self) -> &'static str {
        match self {
            Offence::Invalid(code) => code,
            Offence::Orphan => "orphan_blocks",
        }
    }
}

/// What a pushed block's refusal says of its pusher.
pub fn block_offence(r: &Reject) -> Option<Offence> {
    if matches!(r, Reject::UnknownParent(_)) {
        return Some(Offence::Orphan);
    }
    engine::invalid::is_final(r).then(|| Offence::Invalid(r.code()))
}

/// What a pushed transaction's refusal says of its pusher: only data no chain makes valid.
/// Conflicts (spent or unknown inputs) are races between honest mempools; an immature
/// coinbase spend is fine on a peer whose tip is ahead of ours.
pub fn tx_offence(r: &Reject) -> Option<Offence> {
    let broken = matches!(r.class(), RejectClass::Malformed | RejectClass::Invalid);
    let honest = matches!(r, Reject::BadSignature(_) | Reject::ImmatureCoinbase { .. });
    (broken && !honest).then(|| Offence::Invalid(r.code()))
}

/// The verdict on one offence.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scored {
    /// Not scored: scoring is off, or the client is loopback and exempt.
    Exempt,
    /// Scored; the client's score now.
    Counted(f64),
    /// This offence banned the client.
    Banned,
    /// Banned already (a push that was under way when the ban began).
    AlreadyBanned,
}

/// A banned client, as `GET /v1/peers/banned` lists it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct BannedView {
    /// The address (an IPv6 client as its /64, written `prefix::`).
    #[schema(value_type = String)]
    pub ip: IpAddr,
    /// The offence that banned it: a refusal code, or `orphan_blocks`.
    pub reason: &'static str,
    /// Seconds until its pushes are taken again.
    pub seconds_left: u64,
}

/// Counts for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BanCounts {
    /// Bans since start.
    pub bans: u64,
    /// Pushes refused since start because their client was banned.
    pub refused: u64,
    /// Clients banned now.
    pub banned: u64,
}

struct Record {
    score: f64,
    /// When `score` was last brought up to date.
    at: Instant,
    banned_until: Option<Instant>,
    reason: &'static str,
}

impl Record {
    fn score_at(&self, now: Instant) -> f64 {
        let drained = now.saturating_duration_since(self.at).as_secs_f64() * DECAY_PER_SEC;
        (self.score - drained).max(0.0)
    }

    fn ban_left(&self, now: Instant) -> Option<Duration> {
        self.banned_until
            .filter(|t| *t > now)
            .map(|t| t.duration_since(now))
    }

    /// Indistinguishable from a client never seen.
    fn forgotten(&self, now: Instant) -> bool {
        self.ban_left(now).is_none() && self.score_at(now) == 0.0
    }

    /// Lower is evicted first: unbanned clients by score, then banned ones by time left.
    fn keep_rank(&self, now: Instant) -> (bool, f64) {
        match self.ban_left(now) {
            Some(left) => (true, left.as_secs_f64()),
            None => (false, self.score_at(now)),
        }
    }
}

/// The scores of every client that pushed something wrong recently.
pub struct Misbehaviour {
    config: BanConfig,
    clients: Mutex<HashMap<IpAddr, Record>>,
    bans: AtomicU64,
    refused: AtomicU64,
}

impl Misbehaviour {
    pub fn new(config: BanConfig) -> Misbehaviour {
        Misbehaviour {
            config,
            clients: Mutex::new(HashMap::new()),
            bans: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    pub fn config(&self) -> &BanConfig {
        &self.config
    }

    /// The key `ip` is scored under, None when it is not scored.
    fn key(&self, ip: IpAddr) -> Option<IpAddr> {
        let key = RateLimiter::key(ip);
        let exempt = !self.config.loopback && (ip.is_loopback() || key.is_loopback());
        (!self.config.ban_for.is_zero() && !exempt).then_some(key)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Record>> {
        // Every update is complete before the guard drops; a poisoned map is consistent.
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Err((time left, reason))` when `ip` is banned now (counted as a refused push).
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), (Duration, &'static str)> {
        let Some(key) = self.key(ip) else {
            return Ok(());
        };
        let clients = self.lock();
        let Some(r) = clients.get(&key) else {
            return Ok(());
        };
        match r.ban_left(now) {
            Some(left) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                Err((left, r.reason))
            }
            None => Ok(()),
        }
    }

    /// Scores `offence` against `ip` at `now`.
    pub fn record(&self, ip: IpAddr, offence: Offence, now: Instant) -> Scored {
        let Some(key) = self.key(ip) else {
            return Scored::Exempt;
        };
        let mut clients = self.lock();
        if !clients.contains_key(&key) && clients.len() >= MAX_TRACKED {
            make_room(&mut clients, now);
        }
        let r = clients.entry(key).or_insert(Record {
            score: 0.0,
            at: now,
            banned_until: None,
            reason: "",
        });
        if r.ban_left(now).is_some() {
            return Scored::AlreadyBanned;
        }
        r.score = r.score_at(now) + offence.points();
        r.at = now;
        if r.score < BAN_SCORE {
            return Scored::Counted(r.score);
        }
        // A fresh start once the ban is over.
        r.score = 0.0;
        r.banned_until = Some(now + self.config.ban_for);
        r.reason = offence.reason();
        self.bans.fetch_add(1, Ordering::Relaxed);
        Scored::Banned
    }

    /// The clients banned now, longest ban left first.
    pub fn banned(&self, now: Instant) -> Vec<BannedView> {
        let mut out: Vec<BannedView> = self
            .lock()
            .iter()
            .filter_map(|(ip, r)| {
                r.ban_left(now).map(|left| BannedView {
                    ip: *ip,
                    reason: r.reason,
                    seconds_left: left.as_secs_f64().ceil() as u64,
                })
            })
            .collect();
        out.sort_by(|a, b| b.seconds_left.cmp(&a.seconds_left).then(a.ip.cmp(&b.ip)));
        out
    }

    pub fn counts(&self, now: Instant) -> BanCounts {
        let banned = self
            .lock()
            .values()
            .filter(|r| r.ban_left(now).is_some())
            .count();
        BanCounts {
            bans: self.bans.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            banned: banned as u64,
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.lock().len()
    }
}

/// Frees at least one place in a full map: forgets the clients indistinguishable from new
/// ones, then, if that is not enough, the lowest-ranked quarter ([`Record::keep_rank`]), so
/// a full map is not scanned again on each of the next pushes.
fn make_room(clients: &mut HashMap<IpAddr, Record>, now: Instant) {
    clients.retain(|_, r| !r.forgotten(now));
    if clients.len() < MAX_TRACKED {
        return;
    }
    let mut ranked: Vec<((bool, f64), IpAddr)> = clients
        .iter()
        .map(|(ip, r)| (r.keep_rank(now), *ip))
        .collect();
    let drop = (ranked.len() / 4).max(1);
    let by_rank = |a: &((bool, f64), IpAddr), b: &((bool, f64), IpAddr)| {
        a.0 .0.cmp(&b.0 .0).then(a.0 .1.total_cmp(&b.0 .1))
    };
    ranked.select_nth_unstable_by(drop - 1, by_rank);
    for (_, ip) in &ranked[..drop] {
        clients.remove(ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::Hash256;

    fn on() -> Misbehaviour {
        Misbehaviour::new(BanConfig::default())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const INFLATED: Offence = Offence::Invalid("coinbase_too_large");

    #[test]
    fn an_invalid_push_bans_at_once_for_the_configured_time() {
        let m = Misbehaviour::new(BanConfig {
            ban_for: Duration::from_secs(30),
            loopback: false,
        });
        let (bad, good, t0) = (ip("203.0.113.7"), ip("203.0.113.8"), Instant::now());
        assert_eq!(m.check(bad, t0), Ok(()));
        assert_eq!(m.record(bad, INFLATED, t0), Scored::Banned);
        assert_eq!(
            m.check(bad, t0 + Duration::from_secs(1)),
            Err((Duration::from_secs(29), "coinbase_too_large"))
        );
        assert_eq!(m.check(good, t0), Ok(()), "another client is not banned");
        assert_eq!(m.record(bad, Offence::Orphan, t0), Scored::AlreadyBanned);
        // Over at the end of the ban, with a clean slate.
        let later = t0 + Duration::from_secs(30);
        assert_eq!(m.check(bad, later), Ok(()));
        assert_eq!(
            m.record(bad, Offence::Orphan, later),
            Scored::Counted(ORPHAN_POINTS)
        );
        assert_eq!(
            m.counts(t0),
            BanCounts {
                bans: 1,
                refused: 1,
                banned: 1
            }
        );
        let listed = m.banned(t0 + Duration::from_millis(500));
        assert_eq!(
            listed,
            vec![BannedView {
                ip: bad,
                reason: "coinbase_too_large",
                seconds_left: 30
            }]
        );
    }

    #[test]
    fn orphans_ban_only_past_the_threshold_and_drain_over_time() {
        let m = on();
        let (c, t0) = (ip("198.51.100.1"), Instant::now());
        let at_once = (BAN_SCORE / ORPHAN_POINTS) as usize;
        for i in 1..at_once {
            assert_eq!(
                m.record(c, Offence::Orphan, t0),
                Scored::Counted(i as f64 * ORPHAN_POINTS)
            );
        }
        assert_eq!(
            m.check(c, t0),
            Ok(()),
            "{} orphans are not a ban",
            at_once - 1
        );
        assert_eq!(m.record(c, Offence::Orphan, t0), Scored::Banned);
        assert_eq!(m.check(c, t0).map_err(|e| e.1), Err("orphan_blocks"));

        // One orphan every 2 s forever drains as fast as it scores: never banned.
        let honest = ip("198.51.100.2");
        for i in 0..10_000u64 {
            let t = t0 + Duration::from_secs(2 * i);
            assert_eq!(
                m.record(honest, Offence::Orphan, t),
                Scored::Counted(ORPHAN_POINTS)
            );
        }
        // A burst drains: 40 orphans (80 points), 30 s later 50 points, 25 more ban.
        let burst = ip("198.51.100.3");
        for _ in 0..40 {
            m.record(burst, Offence::Orphan, t0);
        }
        let t1 = t0 + Duration::from_secs(30);
        assert_eq!(m.record(burst, Offence::Orphan, t1), Scored::Counted(52.0));
        for _ in 0..23 {
            assert!(matches!(
                m.record(burst, Offence::Orphan, t1),
                Scored::Counted(_)
            ));
        }
        assert_eq!(m.record(burst, Offence::Orphan, t1), Scored::Banned);
    }

    #[test]
    fn loopback_is_exempt_unless_asked_and_zero_turns_scoring_off() {
        let t0 = Instant::now();
        let m = on();
        for lo in ["127.0.0.2", "::1", "::ffff:127.0.0.1"] {
            assert_eq!(m.record(ip(lo), INFLATED, t0), Scored::Exempt, "{lo}");
            assert_eq!(m.check(ip(lo), t0), Ok(()));
        }
        let strict = Misbehaviour::new(BanConfig {
            loopback: true,
            ..BanConfig::default()
        });
        assert_eq!(strict.record(ip("127.0.0.2"), INFLATED, t0), Scored::Banned);
        assert!(strict.check(ip("127.0.0.2"), t0).is_err());
        assert_eq!(strict.check(ip("127.0.0.1"), t0), Ok(()));
        let off = Misbehaviour::new(BanConfig {
            ban_for: Duration::ZERO,
            loopback: true,
        });
        assert_eq!(off.record(ip("203.0.113.9"), INFLATED, t0), Scored::Exempt);
        assert_eq!(off.tracked(), 0);
    }

    #[test]
    fn ipv6_clients_are_scored_per_64() {
        let (m, t0) = (on(), Instant::now());
        assert_eq!(
            m.record(ip("2001:db8:1:2::1"), INFLATED, t0),
            Scored::Banned
        );
        assert!(m.check(ip("2001:db8:1:2:ffff::9"), t0).is_err());
        assert_eq!(m.check(ip("2001:db8:1:3::1"), t0), Ok(()));
        assert_eq!(m.banned(t0)[0].ip, ip("2001:db8:1:2::"));
        // An IPv4-mapped address is the IPv4 client.
        m.record(ip("203.0.113.20"), INFLATED, t0);
        assert!(m.check(ip("::ffff:203.0.113.20"), t0).is_err());
    }

    #[test]
    fn the_table_is_capped_and_forgets_the_least_suspicious_first() {
        let (m, t0) = (on(), Instant::now());
        let v4 = |i: usize| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i as u32));
        // The first 100 are banned, the rest have one orphan each.
        for i in 0..MAX_TRACKED {
            let offence = if i < 100 { INFLATED } else { Offence::Orphan };
            m.record(v4(i), offence, t0);
        }
        assert_eq!(m.tracked(), MAX_TRACKED);
        // One more: nothing has drained yet, so a quarter of the lowest goes.
        m.record(v4(MAX_TRACKED), Offence::Orphan, t0);
        assert_eq!(m.tracked(), MAX_TRACKED - MAX_TRACKED / 4 + 1);
        for i in 0..100 {
            assert!(m.check(v4(i), t0).is_err(), "ban of {} kept", v4(i));
        }
        // Once the orphans have drained, a newcomer finds room by forgetting them alone.
        let t1 = t0 + Duration::from_secs(10);
        let fill = MAX_TRACKED / 4 - 1;
        for i in 0..fill {
            m.record(v4(MAX_TRACKED + 1 + i), Offence::Orphan, t1);
        }
        assert_eq!(m.tracked(), MAX_TRACKED);
        m.record(v4(2 * MAX_TRACKED), Offence::Orphan, t1);
        assert_eq!(m.counts(t1).banned, 100);
        assert_eq!(
            m.tracked(),
            100 + fill + 1,
            "the banned and the recent are kept"
        );
    }

    #[test]
    fn refusals_score_as_the_engine_classifies_them() {
        let inflated = Reject::CoinbaseTooLarge {
            paid: 2,
            allowed: 1,
        };
        let heavy = [
            inflated.clone(),
            Reject::HighHash,
            Reject::BadMerkleRoot,
            Reject::MissingInput(0, Hash256::ZERO, 0),
            Reject::TimeTooOld { time: 1, median: 2 },
        ];
        for r in &heavy {
            assert_eq!(block_offence(r), Some(Offence::Invalid(r.code())), "{r}");
        }
        assert_eq!(
            block_offence(&Reject::UnknownParent(Hash256::ZERO)),
            Some(Offence::Orphan)
        );
        let free = [
            Reject::BadSignature(0),
            Reject::TimeTooNew { time: 2, max: 1 },
            Reject::ForkTooFarBehind {
                behind: 200,
                reach: 144,
            },
            Reject::FeeTooLow { rate: 1, min: 2 },
            Reject::MempoolFull,
        ];
        for r in &free {
            assert_eq!(block_offence(r), None, "{r}");
            assert_eq!(tx_offence(r), None, "{r}");
        }
        assert_eq!(
            tx_offence(&Reject::NoInputs),
            Some(Offence::Invalid("no_inputs"))
        );
        assert_eq!(
            tx_offence(&Reject::KeyMismatch(0)),
            Some(Offence::Invalid("key_mismatch"))
        );
        for honest in [
            Reject::MissingInput(0, Hash256::ZERO, 0),
            Reject::DoubleSpend(
                0,
                engine::testkit::outpoint(Hash256::ZERO, 0),
                Hash256::ZERO,
            ),
            Reject::ImmatureCoinbase {
                input: 0,
                coinbase_height: 1,
                mature_at: 3,
            },
        ] {
            assert_eq!(tx_offence(&honest), None, "{honest}");
        }
    }
}
