//! Staged rows kept in runs by their key's first byte, so a write-back sorts each run on
//! its own and writes the runs out in turn.
//!
//! Why: a merge sort of a replay's two million 60-byte rows streams the whole list
//! through memory at each of its ~21 levels, while a run is sorted in a core's cache.
//! Spreading a finished list into runs and joining the sorted runs again each copied
//! every row once more (0.36–0.47 s of `addr_utxo`'s write-back alone in the 1M-tx
//! rebuild, BENCHMARKS.md, session 20); a blind list is therefore kept in its runs from
//! its first change, and the sorted runs go to redb one after the other.

use super::{Pending, Rows, Staging, ValueBuf};
use rayon::iter::{IntoParallelRefMutIterator, ParallelIterator};
use rayon::slice::ParallelSliceMut;
use redb::{Key, Value};
use std::cmp::Ordering;

/// Runs of a byte-ordered key: one per first byte.
const RUNS: usize = 256;

/// How many runs rows of `K` are kept in.
fn runs_for<K: Staging>() -> usize {
    if K::BYTE_ORDERED {
        RUNS
    } else {
        1
    }
}

/// Rows below which the runs are sorted on the calling thread alone.
const PARALLEL_SORT_ROWS: usize = 1 << 12;

/// Rows in key order, as runs: every key of a run sorts before every key of the next.
pub type SortedRuns<K, V> = Vec<Rows<K, V>>;

/// The run a key belongs to: its first byte where redb orders the keys as bytes (an
/// empty key sorts before every other: run 0, first in it once sorted); else the one run.
fn run_of<K: Staging>(key: &[u8]) -> usize {
    if K::BYTE_ORDERED {
        key.first().map_or(0, |&b| usize::from(b))
    } else {
        0
    }
}

/// Changes (a key, its new value or `None` for a deletion), each run in the order added.
pub struct Runs<K: Key + Staging + 'static, V: Value + Staging + 'static> {
    /// Allocated on first use; a run holds no memory until a key of it is added.
    runs: Vec<Rows<K, V>>,
    len: usize,
}

impl<K: Key + Staging + 'static, V: Value + Staging + 'static> Default for Runs<K, V> {
    fn default() -> Self {
        Runs {
            runs: Vec::new(),
            len: 0,
        }
    }
}

impl<K: Key + Staging + 'static, V: Value + Staging + 'static> Runs<K, V> {
    /// The rows of `map`, moved out, each run allocated to its size first (the keys are
    /// counted) so that no run grows by copying.
    pub fn drained_from(map: &mut Pending<K, V>) -> Self {
        let mut counts = vec![0usize; runs_for::<K>()];
        for (key, _) in map.iter() {
            counts[run_of::<K>(key.as_ref())] += 1;
        }
        let mut runs = Runs {
            runs: counts.into_iter().map(Vec::with_capacity).collect(),
            len: 0,
        };
        map.drain().for_each(|row| runs.push(row));
        runs
    }

    pub fn push(&mut self, row: (K::Buf, Option<ValueBuf<V>>)) {
        let run = run_of::<K>(row.0.as_ref());
        if self.runs.is_empty() {
            self.runs.resize_with(runs_for::<K>(), Vec::new);
        }
        self.runs[run].push(row);
        self.len += 1;
    }

    /// Makes room for `rows` more rows spread evenly over the runs (a run that gets more
    /// than its share grows as usual; memory reserved and never written costs no page).
    pub fn reserve(&mut self, rows: usize) {
        if self.runs.is_empty() {
            self.runs.resize_with(runs_for::<K>(), Vec::new);
        }
        let share = rows.div_ceil(self.runs.len());
        self.runs.iter_mut().for_each(|run| run.reserve(share));
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The last change made to `key`, if any: searched in the key's run only.
    pub fn latest(&self, key: &[u8]) -> Option<&Option<ValueBuf<V>>> {
        let run = self.runs.get(run_of::<K>(key))?;
        run.iter()
            .rev()
            .find(|(k, _)| k.as_ref() == key)
            .map(|(_, value)| value)
    }

    /// Every change, taken out; a key's changes come in the order made.
    pub fn drain(&mut self) -> impl Iterator<Item = (K::Buf, Option<ValueBuf<V>>)> {
        self.len = 0;
        std::mem::take(&mut self.runs).into_iter().flatten()
    }

    pub fn clear(&mut self) {
        self.runs.clear();
        self.len = 0;
    }

    /// The rows in key order, rows of equal keys in the order added (a stable sort of
    /// each run, the runs on every core).
    pub fn sorted(self) -> SortedRuns<K, V> {
        let compare = |a: &(K::Buf, _), b: &(K::Buf, _)| key_order::<K>(&a.0, &b.0);
        let mut runs = self.runs;
        match runs.as_mut_slice() {
            [one] => one.par_sort_by(compare),
            many if self.len < PARALLEL_SORT_ROWS => {
                many.iter_mut().for_each(|run| run.sort_by(compare))
            }
            many => many.par_iter_mut().for_each(|run| run.sort_by(compare)),
        }
        runs
    }

    /// The rows in key order, each key once with its last change.
    pub fn settled(self) -> SortedRuns<K, V> {
        let mut runs = self.sorted();
        runs.par_iter_mut()
            .for_each(|run| keep_last_of_each_key::<K, V>(run));
        runs
    }
}

/// Two keys in redb's order for `K`.
fn key_order<K: Key + Staging>(a: &K::Buf, b: &K::Buf) -> Ordering {
    if K::BYTE_ORDERED {
        bytes_order(a.as_ref(), b.as_ref())
    } else {
        K::compare(a.as_ref(), b.as_ref())
    }
}

/// Lexicographic order of byte strings, eight bytes at a time. Why: a write-back's sort
/// compares tens of millions of pairs of 28- to 56-byte keys, and the slice comparison
/// calls libc's `memcmp` for each pair, which was half of the sorts' time in the 1M-tx
/// rebuild's profile; inlined at a fixed key width this unrolls to a few loads.
#[inline]
fn bytes_order(a: &[u8], b: &[u8]) -> Ordering {
    let common = a.len().min(b.len());
    let (mut x, mut y) = (&a[..common], &b[..common]);
    while let (Some((p, rest_x)), Some((q, rest_y))) =
        (x.split_first_chunk(), y.split_first_chunk())
    {
        let (p, q) = (u64::from_be_bytes(*p), u64::from_be_bytes(*q));
        if p != q {
            return p.cmp(&q);
        }
        (x, y) = (rest_x, rest_y);
    }
    for (p, q) in x.iter().zip(y) {
        if p != q {
            return p.cmp(q);
        }
    }
    a.len().cmp(&b.len())
}

/// In rows sorted by key (equal keys in the order made), keeps each key's last row.
fn keep_last_of_each_key<K: Staging, V: Staging>(run: &mut Rows<K, V>) {
    // `dedup_by` keeps the first of a run and hands each later one as `later`: swap so
    // that the kept slot holds the latest change.
    run.dedup_by(|later, kept| {
        let same = later.0 == kept.0;
        if same {
            std::mem::swap(later, kept);
        }
        same
    });
}

/// Splits rows in key order before the first key that sorts after `last` (redb's
/// greatest key): rows that may replace a stored one, and rows past every stored key.
pub fn split_after<K: Key + Staging + 'static, V: Value + Staging + 'static>(
    mut runs: SortedRuns<K, V>,
    last: Option<&[u8]>,
) -> (SortedRuns<K, V>, SortedRuns<K, V>) {
    let Some(last) = last else {
        return (Vec::new(), runs);
    };
    let past = |key: &K::Buf| K::compare(key.as_ref(), last) == Ordering::Greater;
    let first_past = runs
        .iter()
        .position(|run| run.last().is_some_and(|(key, _)| past(key)))
        .unwrap_or(runs.len());
    let mut appended = runs.split_off(first_past);
    if let Some(straddling) = appended.first_mut() {
        let at = straddling.partition_point(|(key, _)| !past(key));
        if at > 0 {
            let tail = straddling.split_off(at);
            runs.push(std::mem::replace(straddling, tail));
        }
    }
    (runs, appended)
}

#[cfg(test)]
mod tests {
    use super::*;
    use smallvec::SmallVec;

    type Bytes = &'static [u8];

    fn xorshift() -> impl FnMut() -> u64 {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    /// `n` rows of random keys 0 to 3 bytes long (an empty one, short keys before their
    /// extensions, many repeats), valued by the order made.
    fn random_rows(n: u64) -> Rows<Bytes, u64> {
        let mut next = xorshift();
        (0..n)
            .map(|i| {
                let r = next();
                let len = (r % 4) as usize;
                let key: SmallVec<[u8; 52]> = r.to_be_bytes()[4..4 + len].into();
                (key, Some(i.to_le_bytes()))
            })
            .collect()
    }

    fn runs_of(rows: &Rows<Bytes, u64>) -> Runs<Bytes, u64> {
        let mut runs = Runs::default();
        rows.iter().cloned().for_each(|row| runs.push(row));
        runs
    }

    /// The order must be the keys' and rows of one key must keep the order made, or
    /// `settled` would keep a stale change (an unstable sort fails this).
    #[test]
    fn sorted_runs_order_keys_and_keep_equal_keys_in_order() {
        for n in [100, 3 * PARALLEL_SORT_ROWS as u64] {
            let rows = random_rows(n);
            assert!(rows.iter().any(|r| r.0.is_empty()));
            let mut expected = rows.clone();
            expected.sort_by(|a, b| a.0.cmp(&b.0));
            let sorted: Rows<Bytes, u64> = runs_of(&rows).sorted().into_iter().flatten().collect();
            assert_eq!(sorted, expected, "{n} rows");
        }
    }

    proptest::proptest! {
        /// The unrolled comparison is the slices' own, at every length and common prefix.
        #[test]
        fn bytes_order_is_the_slice_order(
            prefix in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            a in proptest::collection::vec(0u8..3, 0..20),
            b in proptest::collection::vec(0u8..3, 0..20),
        ) {
            let (a, b) = ([&prefix[..], &a].concat(), [&prefix[..], &b].concat());
            proptest::prop_assert_eq!(bytes_order(&a, &b), a.cmp(&b));
            proptest::prop_assert_eq!(bytes_order(&b, &a), b.cmp(&a));
            proptest::prop_assert_eq!(bytes_order(&a, &a), std::cmp::Ordering::Equal);
        }
    }

    #[test]
    fn settled_runs_keep_each_keys_last_change() {
        let rows = random_rows(3 * PARALLEL_SORT_ROWS as u64);
        let mut expected: std::collections::BTreeMap<_, _> = Default::default();
        for (key, value) in &rows {
            expected.insert(key.clone(), *value);
        }
        let settled: Vec<_> = runs_of(&rows).settled().into_iter().flatten().collect();
        assert_eq!(settled, expected.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn a_key_answers_its_latest_change_and_a_drain_keeps_the_order_made() {
        let mut runs = runs_of(&random_rows(0));
        for (key, value) in [
            (&[7u8][..], Some(1)),
            (&[7, 1], None),
            (&[7], None),
            (&[], Some(2)),
        ] {
            runs.push((key.into(), value.map(|v: u64| v.to_le_bytes())));
        }
        assert_eq!(runs.len(), 4);
        assert_eq!(runs.latest(&[7]), Some(&None));
        assert_eq!(runs.latest(&[]), Some(&Some(2u64.to_le_bytes())));
        assert_eq!(runs.latest(&[8]), None);
        let sevens: Vec<_> = runs.drain().filter(|(k, _)| k.as_ref() == [7]).collect();
        assert_eq!(sevens.len(), 2);
        assert_eq!(sevens[0].1, Some(1u64.to_le_bytes()));
        assert!(runs.is_empty());
    }

    #[test]
    fn a_split_puts_every_key_up_to_the_last_stored_one_first() {
        let rows = random_rows(2000);
        let last: &[u8] = &[0x80, 0x10];
        let (replacing, appended) = split_after::<Bytes, u64>(runs_of(&rows).sorted(), Some(last));
        let replacing: Vec<_> = replacing.into_iter().flatten().collect();
        let appended: Vec<_> = appended.into_iter().flatten().collect();
        assert!(!replacing.is_empty() && !appended.is_empty());
        assert!(replacing.iter().all(|(k, _)| k.as_ref() <= last));
        assert!(appended.iter().all(|(k, _)| k.as_ref() > last));
        assert_eq!(replacing.len() + appended.len(), rows.len());
        let (none, all) = split_after::<Bytes, u64>(runs_of(&rows).sorted(), None);
        assert!(none.is_empty());
        assert_eq!(all.into_iter().flatten().count(), rows.len());
    }
}
