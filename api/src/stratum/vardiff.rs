//! Variable share difficulty, one per connection: start at the operator's (or the
//! miner's suggested) difficulty and retarget toward one share every `share_secs`,
//! measured from the difficulty the accepted shares were credited with.
//!
//! Rules (times in seconds since the window opened, S = share_secs):
//! - **up or down from shares**: once the window holds [`MIN_SHARES`] shares and lasted
//!   S, or holds [`FAST_SHARES`] (a device far too fast for its difficulty), or holds any
//!   share after [`LONG_WINDOWS`]·S, the new difficulty is `work / elapsed · S`, where
//!   `work` is the sum of the credited share difficulties — the measured hash rate times
//!   the wanted share time.
//! - **down without shares**: no share for [`QUIET_WINDOWS`]·S divides by [`QUIET_STEP`],
//!   then again after each further S without a share, so a device 1000× too slow for its
//!   start is within reach in about a minute (S = 10 s) instead of never.
//! - changes under [`HYSTERESIS`] are not sent (they are noise and would only churn jobs);
//!   the result is kept within `[floor, ceiling]` where the ceiling is the network
//!   difficulty: a share harder than a block would only hide blocks.
//!
//! The caller sends the new value with `mining.set_difficulty` and a fresh job; shares of
//! older jobs are checked against the easier of their own and the new difficulty.

use super::protocol::wire_difficulty;

/// Shares (and at least one interval) before a share-based retarget.
pub const MIN_SHARES: u32 = 3;
/// Shares that retarget at once, however short the window.
pub const FAST_SHARES: u32 = 10;
/// Intervals after which even one share is enough to retarget.
pub const LONG_WINDOWS: f64 = 4.0;
/// Intervals without any share before lowering.
pub const QUIET_WINDOWS: f64 = 2.0;
/// Lowering factor when no share comes.
pub const QUIET_STEP: f64 = 4.0;
/// Relative change below which a retarget is not worth a message.
pub const HYSTERESIS: f64 = 1.4;
/// Lowest share difficulty the server hands out (about 43 hashes a share); a miner
/// suggesting less gets this.
pub const MIN_DIFFICULTY: f64 = 1e-8;

#[derive(Debug, Clone)]
pub struct Vardiff {
    share_secs: f64,
    floor: f64,
    current: f64,
    window_start: f64,
    shares: u32,
    work: f64,
}

impl Vardiff {
    /// Starts at `start` (clamped to the floor; the ceiling applies at each retarget and
    /// through [`Vardiff::effective`]). `now` is any monotonic clock in seconds.
    pub fn new(start: f64, share_secs: f64, now: f64) -> Vardiff {
        Vardiff {
            share_secs: share_secs.max(0.001),
            floor: MIN_DIFFICULTY,
            current: start.max(MIN_DIFFICULTY),
            window_start: now,
            shares: 0,
            work: 0.0,
        }
    }

    /// The difficulty a new job gets under `ceiling` (the network difficulty).
    pub fn effective(&self, ceiling: f64) -> f64 {
        self.current.min(ceiling)
    }

    /// A miner's `mining.suggest_difficulty` (or BIP 310 `minimum-difficulty`): the
    /// starting point, within bounds; vardiff moves on from it.
    pub fn suggest(&mut self, d: f64, now: f64) {
        if d.is_finite() && d > 0.0 {
            self.current = d.max(self.floor);
            self.restart(now);
        }
    }

    /// A floor the miner asked for (BIP 310 `minimum-difficulty`).
    pub fn set_floor(&mut self, d: f64) {
        if d.is_finite() && d > 0.0 {
            self.floor = d.max(MIN_DIFFICULTY);
            self.current = self.current.max(self.floor);
        }
    }

    /// Counts an accepted share credited at `difficulty`; returns the new difficulty when
    /// a retarget is due.
    pub fn on_share(&mut self, difficulty: f64, now: f64, ceiling: f64) -> Option<f64> {
        self.shares += 1;
        self.work += difficulty;
        self.retarget(now, ceiling)
    }

    /// Called periodically (every S/2 or so): lowers a connection that finds nothing.
    pub fn on_tick(&mut self, now: f64, ceiling: f64) -> Option<f64> {
        self.retarget(now, ceiling)
    }

    fn retarget(&mut self, now: f64, ceiling: f64) -> Option<f64> {
        let s = self.share_secs;
        let elapsed = (now - self.window_start).max(1e-3);
        let wanted = if self.shares >= FAST_SHARES
            || (self.shares >= MIN_SHARES && elapsed >= s)
            || (self.shares >= 1 && elapsed >= LONG_WINDOWS * s)
        {
            self.work / elapsed * s
        } else if self.shares == 0 && elapsed >= QUIET_WINDOWS * s {
            self.current / QUIET_STEP
        } else {
            return None;
        };
        let quiet = self.shares == 0;
        let old = self.effective(ceiling);
        let new = wire_difficulty(wanted).max(self.floor).min(ceiling);
        self.current = new;
        if quiet {
            // The next lowering is one interval away, not QUIET_WINDOWS.
            self.window_start = now - (QUIET_WINDOWS - 1.0) * s;
            self.shares = 0;
            self.work = 0.0;
        } else {
            self.restart(now);
        }
        let ratio = new / old;
        if (1.0 / HYSTERESIS..HYSTERESIS).contains(&ratio) {
            self.current = old.max(self.floor);
            return None;
        }
        Some(new)
    }

    fn restart(&mut self, now: f64) {
        self.window_start = now;
        self.shares = 0;
        self.work = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A simulated device: `rate` difficulty-1 shares per second (hashes / 2^32), its
    /// shares arriving at their expected times (no luck), ticking every S/2.
    fn settle(start: f64, rate: f64, share_secs: f64, secs: f64) -> (f64, Vec<(f64, f64)>) {
        let mut v = Vardiff::new(start, share_secs, 0.0);
        let ceiling = f64::MAX;
        let mut changes = Vec::new();
        let dt = 0.01;
        let mut t = 0.0;
        // Work done, in difficulty-1 shares; a share costs its difficulty.
        let mut work = 0.0;
        let mut next_tick = share_secs / 2.0;
        while t < secs {
            t += dt;
            work += rate * dt;
            while work >= v.effective(ceiling) {
                let d = v.effective(ceiling);
                work -= d;
                if let Some(n) = v.on_share(d, t, ceiling) {
                    changes.push((t, n));
                }
            }
            if t >= next_tick {
                next_tick += share_secs / 2.0;
                if let Some(n) = v.on_tick(t, ceiling) {
                    changes.push((t, n));
                }
            }
        }
        (v.effective(ceiling), changes)
    }

    #[test]
    fn a_slow_device_settles_within_a_minute() {
        // 1000× too slow for its start: one share every 10,000 s at difficulty 1.
        let (d, changes) = settle(1.0, 1e-4, 10.0, 60.0);
        let wanted = 1e-4 * 10.0;
        assert!(
            d / wanted < 4.0 && wanted / d < 4.0,
            "{d} vs {wanted}: {changes:?}"
        );
        let (d, _) = settle(1.0, 1e-4, 10.0, 180.0);
        assert!(d / wanted < 1.5 && wanted / d < 1.5, "{d} vs {wanted}");
    }

    #[test]
    fn a_fast_device_is_raised_quickly_and_stays() {
        // 10^5 difficulty-1 shares a second (an ASIC at ~430 TH/s) starting at 1.
        let (d, changes) = settle(1.0, 1e5, 10.0, 60.0);
        let wanted = 1e5 * 10.0;
        assert!(d / wanted < 1.5 && wanted / d < 1.5, "{d}: {changes:?}");
        assert!(changes[0].0 < 1.0, "first retarget within a second");
        // Once there, it does not churn.
        let late = changes.iter().filter(|c| c.0 > 30.0).count();
        assert_eq!(late, 0, "{changes:?}");
    }

    #[test]
    fn never_above_the_ceiling_nor_below_the_floor() {
        let mut v = Vardiff::new(1.0, 1.0, 0.0);
        for i in 1..=20 {
            v.on_share(1.0, i as f64 * 0.01, 0.5);
        }
        assert_eq!(v.effective(0.5), 0.5);
        let mut v = Vardiff::new(1.0, 1.0, 0.0);
        v.set_floor(0.25);
        for t in 1..100 {
            v.on_tick(t as f64, 10.0);
        }
        assert_eq!(v.effective(10.0), 0.25);
        v.suggest(1e-30, 100.0);
        assert_eq!(v.effective(10.0), 0.25);
    }

    proptest! {
        /// Whatever the shares and ticks, the difficulty stays within its bounds.
        #[test]
        fn difficulty_stays_within_bounds(
            start in 1e-9f64..1e9,
            events in prop::collection::vec((0.0f64..5.0, any::<bool>(), 1e-9f64..1e9), 1..200),
            ceiling in 1e-6f64..1e12,
        ) {
            let mut v = Vardiff::new(start, 2.0, 0.0);
            let mut t = 0.0;
            for (dt, share, d) in events {
                t += dt;
                let out = if share { v.on_share(d, t, ceiling) } else { v.on_tick(t, ceiling) };
                if let Some(n) = out {
                    prop_assert!(n <= ceiling && n >= MIN_DIFFICULTY.min(ceiling));
                }
                let e = v.effective(ceiling);
                prop_assert!(e <= ceiling && e > 0.0);
            }
        }
    }
}
