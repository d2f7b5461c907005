//! A projection table as the fold writes it: straight through to redb (the writer's
//! normal mode), or staged in memory and written to redb in one sorted pass (replays).
//!
//! Why: replaying a long log one event at a time costs a dozen random B-tree operations
//! per transaction, most of them on rows that do not survive the replay (an output
//! created and spent inside the log, a mempool entry later mined, a balance rewritten
//! thousands of times). Staged, those rows live and die in a hash map; only the final
//! rows reach redb, in key order. The fold code is the same in both modes, so a rebuild
//! still folds exactly what the writer folded.
//!
//! The write-back sorts the rows (in runs by their key's first byte, see `runs`) and
//! appends those past redb's last key (all of them into a table a rebuild emptied)
//! through one cursor, which builds full leaves in bulk.
//! A table may also keep a digest sum over its rows ([`Staged::digesting`]: the UTXO-set
//! hash), computed at the write-back from the rows that survive.
//!
//! Staged rows are written back by [`Staged::flush`] (from `Tables::flush_meta`, which
//! every path calls before it commits), before any range read ([`Staged::flushed`]), and
//! whenever more than [`MAX_STAGED_ROWS`] are pending, which bounds a replay's memory
//! whatever the log's length.
//!
//! A third mode, *cached* ([`Staged::cache_over`]), is the live writer's for the coin
//! cache's tables (`store::coin_cache`): staged over the frozen layers of earlier
//! transactions (`layer`), looked through between the pending rows and redb, and frozen
//! into a layer of its own at the end ([`Staged::freeze`]) instead of written back.

pub mod layer;
mod pending;
mod runs;

use super::StoreResult;
use layer::Layer;
use pending::Pending;
use primitive_types::U256;
use rayon::iter::{IntoParallelRefIterator, ParallelIterator};
use redb::{AccessGuard, Key, ReadableTable, ReadableTableMetadata, Table, Value};
use runs::{Runs, SortedRuns};
use smallvec::SmallVec;
use std::borrow::Borrow;
use std::hash::Hash;
use std::marker::PhantomData;
use std::ops::Bound;
use std::sync::Arc;

/// Pending rows per table before they are written back mid-replay (~150 MB per table at
/// most). After a write-back every miss costs a redb lookup again, so this trades memory
/// for speed: rebuilding 1M transactions ran at 71k tx/s with 2^19, 90k with 2^20 and
/// 86k with 2^21 (one run each, loaded VM); the process peaked at 2.0 GB either way,
/// mostly redb's dirty pages of the one big write transaction.
pub const MAX_STAGED_ROWS: usize = 1 << 20;

/// How many times [`MAX_STAGED_ROWS`] a blind list ([`Staged::stage_blind`]) may hold.
const BLIND_LIMIT_FACTOR: usize = 4;

/// A row read through [`Staged`]: borrowed from redb or from the staging map, or owned
/// (a value just replaced or deleted).
pub enum Row<'a, V: Value + Staging + 'static> {
    Stored(AccessGuard<'a, V>),
    Pending(&'a [u8], PhantomData<V>),
    Taken(ValueBuf<V>, PhantomData<V>),
}

impl<V: Value + Staging + 'static> Row<'_, V> {
    pub fn value(&self) -> V::SelfType<'_> {
        match self {
            Row::Stored(guard) => guard.value(),
            Row::Pending(bytes, _) => V::from_bytes(bytes),
            Row::Taken(bytes, _) => V::from_bytes(bytes.as_ref()),
        }
    }
}

fn taken<V: Value + Staging + 'static>(bytes: Option<ValueBuf<V>>) -> Option<Row<'static, V>> {
    bytes.map(|b| Row::Taken(b, PhantomData))
}

/// How a staged key or value is held in memory: inline, at its table's width where the
/// width is fixed, so a replay's million rows cost no allocation each, a sort of them
/// reads each key where the row is, and a row takes no more bytes than it needs (the
/// staging maps of a 200k-transaction rebuild were a quarter of its time in the kernel
/// zeroing fresh pages while they were 112 bytes a row for every table).
pub trait Staging {
    type Buf: AsRef<[u8]> + Borrow<[u8]> + Eq + Hash + Clone + Send + Sync;
    /// Whether redb orders these keys as their bytes (lexicographically), so a sort may
    /// keep them in runs by their first byte ([`runs::Runs`]).
    const BYTE_ORDERED: bool = false;
    /// `bytes` as stored; for a fixed width, `bytes` is that wide (redb's encoding).
    fn buf(bytes: &[u8]) -> Self::Buf;
}

impl<const N: usize> Staging for &'static [u8; N] {
    type Buf = [u8; N];
    const BYTE_ORDERED: bool = true;
    fn buf(bytes: &[u8]) -> [u8; N] {
        bytes.try_into().expect("a fixed-width row has its width")
    }
}

/// Variable-length bytes: inline up to the longest mempool index key (52 bytes), so only
/// mempool rows (whole transactions) spill to the heap.
impl Staging for &'static [u8] {
    type Buf = SmallVec<[u8; 52]>;
    const BYTE_ORDERED: bool = true;
    fn buf(bytes: &[u8]) -> Self::Buf {
        SmallVec::from_slice(bytes)
    }
}

impl Staging for u64 {
    type Buf = [u8; 8];
    fn buf(bytes: &[u8]) -> [u8; 8] {
        bytes.try_into().expect("a u64 is 8 bytes")
    }
}

impl Staging for () {
    type Buf = [u8; 0];
    fn buf(_: &[u8]) -> [u8; 0] {
        []
    }
}

/// A staged value of table value type `V`.
pub type ValueBuf<V> = <V as Staging>::Buf;

/// Staged rows drained for a write-back.
type Rows<K, V> = Vec<pending::Row<K, V>>;

/// A redb table with an optional in-memory staging layer (see the module docs).
pub struct Staged<'t, K: Key + Staging + 'static, V: Value + Staging + 'static> {
    table: Table<'t, K, V>,
    /// `None` in write-through mode.
    pending: Option<Pending<K, V>>,
    /// Staged blind ([`Staged::stage_blind`]): changes in the order made, not yet
    /// folded into `pending` (which is empty while this is not).
    log: Runs<K, V>,
    blind: bool,
    /// The redb table holds no rows, so a staged deletion needs no tombstone.
    base_empty: bool,
    /// Pending rows that trigger a write-back ([`MAX_STAGED_ROWS`]; lower in tests).
    limit: usize,
    /// A digest of a row (key, value) whose sum over the table the caller keeps (the
    /// UTXO-set hash); see [`Staged::digesting`].
    digest: Option<RowDigest>,
    /// Σ digest(rows written back) − Σ digest(rows they replaced or deleted), mod 2^256,
    /// since the caller last took it.
    digest_delta: U256,
    /// Cached ([`Staged::cache_over`]): earlier transactions' changes not yet in redb,
    /// oldest first, looked through after the pending rows and before redb; the pending
    /// rows end as a layer of their own ([`Staged::freeze`]), never written back here.
    behind: Vec<Arc<Layer<K, V>>>,
    cached: bool,
}

/// A row's digest: key bytes, value bytes.
pub type RowDigest = fn(&[u8], &[u8]) -> U256;

impl<'t, K: Key + Staging + 'static, V: Value + Staging + 'static> Staged<'t, K, V> {
    /// Write-through: every call goes straight to redb.
    pub fn new(table: Table<'t, K, V>) -> Self {
        Staged {
            table,
            pending: None,
            log: Runs::default(),
            blind: false,
            base_empty: false,
            limit: MAX_STAGED_ROWS,
            digest: None,
            digest_delta: U256::zero(),
            behind: Vec::new(),
            cached: false,
        }
    }

    /// Keeps the sum of `digest` over the rows written back while staged, so the caller
    /// need not digest each change as it folds: a row created and deleted within the
    /// staging window (most outputs a replay creates) is never digested at all, and the
    /// rows that reach redb are digested on every core. Write-through, nothing changes:
    /// the caller digests as before ([`Staged::defers_digest`] says which applies).
    pub fn digesting(mut self, digest: RowDigest) -> Self {
        self.digest = Some(digest);
        self
    }

    /// Whether the digest of changes is left to the write-back (staged with a digest).
    pub fn defers_digest(&self) -> bool {
        self.pending.is_some() && self.digest.is_some() && !self.cached
    }

    /// The digest sum of the rows written back since the last call (added minus
    /// removed, mod 2^256); zero unless [`Staged::defers_digest`].
    pub fn take_digest_delta(&mut self) -> U256 {
        std::mem::take(&mut self.digest_delta)
    }

    /// From now on, changes are staged in memory until [`Staged::flush`].
    pub fn stage(&mut self) -> StoreResult<()> {
        if self.pending.is_none() {
            self.base_empty = self.table.is_empty()?;
            self.pending = Some(Pending::<K, V>::default());
        }
        Ok(())
    }

    /// Stages this transaction's changes over `behind` (earlier transactions' layers, not
    /// yet written to redb, oldest first) and keeps them for [`Staged::freeze`] instead
    /// of writing them back: the coin cache (`store::coin_cache`). A digesting table's
    /// caller still digests every change, so its sum stays current with each commit.
    pub fn cache_over(&mut self, behind: Vec<Arc<Layer<K, V>>>) -> StoreResult<()> {
        self.stage()?;
        self.base_empty &= behind.iter().all(|layer| layer.is_empty());
        self.behind = behind;
        self.cached = true;
        // Never written back mid-transaction: rows in redb newer than a layer behind
        // would be hidden by it.
        self.limit = usize::MAX;
        Ok(())
    }

    /// Whether this table is cached ([`Staged::cache_over`]).
    pub fn is_cached(&self) -> bool {
        self.cached
    }

    /// Whether this table has changes not in redb: pending here or in a layer behind.
    pub fn has_cached_changes(&self) -> bool {
        self.cached && (self.staged_rows() > 0 || !self.behind.is_empty())
    }

    /// This transaction's changes to a cached table, sorted, as a layer (None when it
    /// changed nothing); the staging map is left empty.
    pub fn freeze(&mut self) -> Option<Layer<K, V>> {
        debug_assert!(self.cached, "only a cached table is frozen");
        self.settle_log();
        let pending = self.pending.as_mut()?;
        if pending.is_empty() {
            return None;
        }
        let rows = Runs::<K, V>::drained_from(pending).sorted();
        Some(Layer::from_sorted(rows.into_iter().flatten().collect()))
    }

    /// Like [`Staged::stage`], for a table that is only written ([`Staged::put`],
    /// [`Staged::delete`]) until its write-back: changes are kept as a list, in order, and
    /// the write-back's sort settles them (the last change of a key wins). Why: a
    /// replay's index tables take two changes per transaction, each a hash and a probe
    /// into a map far larger than the cache; the index thread spent most of its time so,
    /// and the fold thread waited for it. A read of such a table still answers right
    /// (the list is folded into the map first, or searched for `get`), only slower.
    pub fn stage_blind(&mut self) -> StoreResult<()> {
        self.stage()?;
        self.blind = true;
        Ok(())
    }

    /// Makes room for about `rows` staged changes at once (within the write-back limit),
    /// so the staging map or list does not grow through every doubling. Why: a map of
    /// a million rows that doubles its way there allocates and rehashes twice its final
    /// size, every page of it fresh for the kernel to zero, on the fold thread (the UTXO
    /// map of the 1M-tx rebuild: 73k page faults, a quarter of the rebuild's).
    pub fn reserve(&mut self, rows: usize) {
        let Some(pending) = self.pending.as_mut() else {
            return;
        };
        if self.blind {
            self.log
                .reserve(rows.min(self.limit.saturating_mul(BLIND_LIMIT_FACTOR)));
        } else {
            pending.reserve(rows.min(self.limit));
        }
    }

    /// Folds the blind list into the map, for an operation that answers an old value.
    fn settle_log(&mut self) {
        if let Some(pending) = self.pending.as_mut() {
            pending.extend(self.log.drain());
        }
    }

    /// The redb table itself, brought up to date first, for reads the staging layer
    /// does not offer (ranges, iteration).
    pub fn flushed(&mut self) -> StoreResult<&Table<'t, K, V>> {
        self.flush()?;
        Ok(&self.table)
    }

    pub fn get<'k>(&self, key: impl Borrow<K::SelfType<'k>>) -> StoreResult<Option<Row<'_, V>>> {
        let key = key.borrow();
        if let Some(pending) = &self.pending {
            let bytes = K::as_bytes(key);
            if let Some(row) = self.log.latest(bytes.as_ref()) {
                return Ok(row.as_ref().map(|b| Row::Pending(b.as_ref(), PhantomData)));
            }
            if let Some(row) = pending.get(bytes.as_ref()) {
                return Ok(row.as_ref().map(|b| Row::Pending(b.as_ref(), PhantomData)));
            }
            if let Some(row) = layer::newest(&self.behind, bytes.as_ref()) {
                return Ok(row.as_ref().map(|b| Row::Pending(b.as_ref(), PhantomData)));
            }
            if self.base_empty {
                return Ok(None);
            }
        }
        Ok(self.table.get(key)?.map(Row::Stored))
    }

    /// Writes a row; returns the value it replaced.
    pub fn insert<'k, 'v>(
        &mut self,
        key: impl Borrow<K::SelfType<'k>>,
        value: impl Borrow<V::SelfType<'v>>,
    ) -> StoreResult<Option<Row<'_, V>>> {
        let (key, value) = (key.borrow(), value.borrow());
        if self.pending.is_none() {
            return Ok(self.table.insert(key, value)?.map(Row::Stored));
        }
        self.settle_log();
        let (table, behind, pending, base_empty) = self.staged_parts();
        let new = Some(V::buf(V::as_bytes(value).as_ref()));
        let old = match pending.insert(K::buf(K::as_bytes(key).as_ref()), new) {
            Some(old) => old,
            None if base_empty => None,
            None => layer::get(behind, table, K::as_bytes(key).as_ref())?,
        };
        self.spill_if_full()?;
        Ok(taken(old))
    }

    /// Deletes a row; returns its value.
    pub fn remove<'k>(
        &mut self,
        key: impl Borrow<K::SelfType<'k>>,
    ) -> StoreResult<Option<Row<'_, V>>> {
        let key = key.borrow();
        if self.pending.is_none() {
            return Ok(self.table.remove(key)?.map(Row::Stored));
        }
        self.settle_log();
        let (table, behind, pending, base_empty) = self.staged_parts();
        let key_bytes = K::as_bytes(key);
        let key_bytes = key_bytes.as_ref();
        let old = if base_empty {
            pending.remove(key_bytes).flatten()
        } else if let Some(row) = pending.get_mut(key_bytes) {
            row.take() // leaves a tombstone: redb may hold an older value
        } else {
            let old = layer::get(behind, table, key_bytes)?;
            if old.is_some() {
                pending.insert(K::buf(key_bytes), None);
            }
            old
        };
        self.spill_if_full()?;
        Ok(taken(old))
    }

    /// Writes a row whose previous value nobody needs: staged, this never reads redb
    /// (after a write-back the base is no longer empty, and [`Staged::insert`] would
    /// have to look every new key up there).
    pub fn put<'k, 'v>(
        &mut self,
        key: impl Borrow<K::SelfType<'k>>,
        value: impl Borrow<V::SelfType<'v>>,
    ) -> StoreResult<()> {
        let (key, value) = (key.borrow(), value.borrow());
        match &mut self.pending {
            None => {
                self.table.insert(key, value)?;
            }
            Some(pending) => {
                let row = (
                    K::buf(K::as_bytes(key).as_ref()),
                    Some(V::buf(V::as_bytes(value).as_ref())),
                );
                if self.blind && pending.is_empty() {
                    self.log.push(row);
                } else {
                    pending.insert(row.0, row.1);
                }
                self.spill_if_full()?;
            }
        }
        Ok(())
    }

    /// Deletes a row whose value nobody needs; staged, this never reads redb (a
    /// tombstone for a key redb lacks is harmless).
    pub fn delete<'k>(&mut self, key: impl Borrow<K::SelfType<'k>>) -> StoreResult<()> {
        let key = key.borrow();
        match &mut self.pending {
            None => {
                self.table.remove(key)?;
            }
            Some(pending) if self.blind && pending.is_empty() => {
                // A tombstone even over an empty base: an earlier entry may set the key.
                self.log.push((K::buf(K::as_bytes(key).as_ref()), None));
                self.spill_if_full()?;
            }
            Some(pending) if self.base_empty => {
                pending.remove(K::as_bytes(key).as_ref());
            }
            Some(pending) => {
                pending.insert(K::buf(K::as_bytes(key).as_ref()), None);
                self.spill_if_full()?;
            }
        }
        Ok(())
    }

    /// Calls `f` with every row of the table (key bytes, value bytes), in no particular
    /// order. While everything the table holds is staged (redb's table empty and never
    /// written back into: a rebuild's), the rows come straight from the staging map and
    /// stay staged; otherwise the staged rows are written back first and redb's table
    /// is walked.
    pub fn for_each_row(
        &mut self,
        mut f: impl FnMut(&[u8], &[u8]) -> StoreResult<()>,
    ) -> StoreResult<()> {
        if let Some(pending) = self.pending.as_ref().filter(|_| self.base_empty) {
            if self.log.is_empty() {
                return pending
                    .iter()
                    .filter_map(|(key, value)| Some((key, value.as_ref()?)))
                    .try_for_each(|(key, value)| f(key.as_ref(), value.as_ref()));
            }
        }
        for row in self.flushed()?.iter()? {
            let (key, value) = row?;
            f(
                K::as_bytes(&key.value()).as_ref(),
                V::as_bytes(&value.value()).as_ref(),
            )?;
        }
        Ok(())
    }

    /// Staged over an empty redb table, with nothing staged yet.
    pub fn is_staged_and_empty(&self) -> bool {
        self.pending.is_some() && self.base_empty && self.staged_rows() == 0
    }

    /// Whether changes are staged in memory (a replay) rather than written through.
    pub fn is_staged(&self) -> bool {
        self.pending.is_some()
    }

    /// Deletes the rows `keep` rejects (given key and value bytes) in one pass over the
    /// table. Why: redb's retain walks the leaves with a cursor, so removing a large share
    /// of a table costs a scan rather than a root-to-leaf descent and a page copy per row
    /// (a block that takes most of the mempool). Staged rows are written back first.
    /// Not for a digesting table: the removed rows would escape its sum.
    pub fn retain(&mut self, mut keep: impl FnMut(&[u8], &[u8]) -> bool) -> StoreResult<()> {
        debug_assert!(self.digest.is_none(), "retain on a digesting table");
        self.flush()?;
        self.table
            .retain(|k, v| keep(K::as_bytes(&k).as_ref(), V::as_bytes(&v).as_ref()))?;
        Ok(())
    }

    /// Deletes every row.
    pub fn clear(&mut self) -> StoreResult<()> {
        if !self.behind.is_empty() {
            return Err(super::StoreError::corrupt(
                "a cached table is cleared only once its cache is written back",
            ));
        }
        self.table.retain(|_, _| false)?;
        if let Some(pending) = &mut self.pending {
            pending.clear();
            self.log.clear();
            self.base_empty = true;
        }
        // The caller restarts its sum from zero with the table.
        self.digest_delta = U256::zero();
        Ok(())
    }

    /// Writes every staged change to redb, in key order (sequential B-tree appends are
    /// far cheaper than random ones). Staging stays on.
    pub fn flush(&mut self) -> StoreResult<()> {
        let Some(pending) = self.pending.as_mut() else {
            return Ok(());
        };
        if self.cached {
            // Its rows go to a layer ([`Staged::freeze`]); written here they would land
            // in redb under older layers that hide them.
            return Err(super::StoreError::corrupt(
                "a cached table is frozen, not written back",
            ));
        }
        let rows = if self.log.is_empty() {
            Runs::<K, V>::drained_from(pending).sorted()
        } else {
            std::mem::take(&mut self.log).settled()
        };
        self.base_empty &= rows.iter().all(Vec::is_empty);
        let last = self.last_key()?;
        // No row is copied to split them: a rebuild writes all its rows into emptied
        // tables, and a copy of a million rows was a third of a table's write-back (fresh
        // pages for the kernel to zero).
        let (replacing, appended) = runs::split_after::<K, V>(rows, last.as_deref());
        for (key, value) in replacing.into_iter().flatten() {
            let old = match &value {
                Some(value) => self
                    .table
                    .insert(K::from_bytes(key.as_ref()), V::from_bytes(value.as_ref()))?,
                None => self.table.remove(K::from_bytes(key.as_ref()))?,
            };
            if let Some(digest) = self.digest {
                if let Some(old) = old {
                    let old = digest(key.as_ref(), V::as_bytes(&old.value()).as_ref());
                    self.digest_delta = self.digest_delta.overflowing_sub(old).0;
                }
                if let Some(value) = &value {
                    self.digest_delta = self
                        .digest_delta
                        .overflowing_add(digest(key.as_ref(), value.as_ref()))
                        .0;
                }
            }
        }
        self.digest_appended(&appended);
        self.append(appended)
    }

    /// Adds the digests of rows that replace nothing, computed on every core.
    fn digest_appended(&mut self, rows: &SortedRuns<K, V>) {
        let Some(digest) = self.digest else {
            return;
        };
        let sum = rows
            .par_iter()
            .flat_map_iter(|run| run.iter())
            .filter_map(|(key, value)| value.as_ref().map(|v| digest(key.as_ref(), v.as_ref())))
            .reduce(U256::zero, |a, b| a.overflowing_add(b).0);
        self.digest_delta = self.digest_delta.overflowing_add(sum).0;
    }

    /// The greatest key redb holds, copied out.
    fn last_key(&self) -> StoreResult<Option<Vec<u8>>> {
        Ok(self
            .table
            .last()?
            .map(|(key, _)| K::as_bytes(&key.value()).as_ref().to_vec()))
    }

    /// Writes rows whose keys all sort after every key redb holds (all of them, when a
    /// rebuild writes back into emptied tables) through one cursor at the table's end:
    /// redb buffers such a run and builds full leaves from it, instead of descending the
    /// tree for each row and leaving the half-full leaves of 50/50 splits behind (a
    /// faster write-back and smaller rebuilt tables: BENCHMARKS.md, session 10). A
    /// tombstone here names a key redb lacks: nothing to delete.
    fn append(&mut self, rows: SortedRuns<K, V>) -> StoreResult<()> {
        if rows.iter().all(Vec::is_empty) {
            return Ok(());
        }
        let mut cursor = self
            .table
            .upper_bound_mut(Bound::<K::SelfType<'_>>::Unbounded)?;
        for (key, value) in rows.into_iter().flatten() {
            if let Some(value) = value {
                cursor
                    .insert_before(K::from_bytes(key.as_ref()), V::from_bytes(value.as_ref()))
                    .map_err(redb::Error::from)?;
            }
        }
        cursor.close().map_err(redb::Error::from)?;
        Ok(())
    }

    /// What a staged write works on: the redb table, the cached layers behind the pending
    /// rows, the pending rows, and whether redb (and the layers) are known empty. Only
    /// called with staging on.
    #[allow(clippy::type_complexity)]
    fn staged_parts(
        &mut self,
    ) -> (
        &Table<'t, K, V>,
        &[Arc<Layer<K, V>>],
        &mut Pending<K, V>,
        bool,
    ) {
        let pending = self.pending.as_mut().expect("staging is on");
        (&self.table, &self.behind, pending, self.base_empty)
    }

    /// Rows staged: in the map, or changes in the blind list.
    fn staged_rows(&self) -> usize {
        self.pending.as_ref().map_or(0, |p| p.len()) + self.log.len()
    }

    fn spill_if_full(&mut self) -> StoreResult<()> {
        // A blind list holds every change, not one row per key: it may be longer (a
        // million-transaction replay makes two million changes to `addr_utxo`, and a
        // write-back midway would leave the rest to random inserts into a full table).
        let limit = if self.blind {
            self.limit.saturating_mul(BLIND_LIMIT_FACTOR)
        } else {
            self.limit
        };
        if self.staged_rows() > limit {
            self.flush()?;
        }
        Ok(())
    }
}

/// A staged table's write-back, as [`write_back_all`] runs it.
pub trait WriteBack: Send {
    /// Rows staged and not yet written back.
    fn pending_rows(&self) -> usize;
    /// Whether the table is cached ([`Staged::cache_over`]): frozen, never written back.
    fn is_cached(&self) -> bool;
    fn write_back(&mut self) -> StoreResult<()>;
}

impl<K: Key + Staging + 'static, V: Value + Staging + 'static> WriteBack for Staged<'_, K, V>
where
    Self: Send,
{
    fn pending_rows(&self) -> usize {
        self.staged_rows()
    }

    fn is_cached(&self) -> bool {
        self.cached
    }

    fn write_back(&mut self) -> StoreResult<()> {
        self.flush()
    }
}

/// Pending rows over which [`write_back_all`] writes tables back side by side: below
/// it (every commit of the live writer, short replays) threads would cost more than
/// they give.
const PARALLEL_WRITE_BACK_ROWS: usize = 1 << 14;

/// Writes every table's staged rows back, each table on its own thread when there are
/// many rows: a rebuild's write-back was serial, 1.5 s of the 1M-transaction rebuild's
/// 5 s, while the tables' rows are independent (each table is its own B-tree, and redb
/// takes a write transaction's tables from several threads). Returns the first table's
/// error, in the order given.
pub fn write_back_all(tables: &mut [&mut dyn WriteBack]) -> StoreResult<()> {
    let rows: usize = tables.iter().map(|t| t.pending_rows()).sum();
    if rows < PARALLEL_WRITE_BACK_ROWS {
        return tables.iter_mut().try_for_each(|t| t.write_back());
    }
    std::thread::scope(|scope| {
        let running: Vec<_> = tables
            .iter_mut()
            .filter(|t| t.pending_rows() > 0)
            .map(|t| scope.spawn(move || t.write_back()))
            .collect();
        running.into_iter().try_for_each(|done| {
            done.join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;
    use proptest::prelude::*;
    use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

    const T: TableDefinition<&[u8], u64> = TableDefinition::new("t");

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u8, u64),
        Put(u8, u64),
        Remove(u8),
        Delete(u8),
        Get(u8),
        Clear,
        /// Keeps the rows whose value is below this.
        RetainBelow(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..24, any::<u64>()).prop_map(|(k, v)| Op::Insert(k, v)),
            3 => (0u8..24, any::<u64>()).prop_map(|(k, v)| Op::Put(k, v)),
            3 => (0u8..24).prop_map(Op::Remove),
            2 => (0u8..24).prop_map(Op::Delete),
            3 => (0u8..24).prop_map(Op::Get),
            1 => Just(Op::Clear),
            1 => any::<u64>().prop_map(Op::RetainBelow),
        ]
    }

    /// Every answer, then the final rows.
    type Outcome = (Vec<Option<u64>>, Vec<(Vec<u8>, u64)>);

    /// How [`run`] stages its table.
    #[derive(Clone, Copy)]
    enum Mode {
        WriteThrough,
        /// Staged, written back past `limit` rows.
        Staged {
            limit: usize,
        },
        /// Staged blind, written back past `limit` rows (times the blind factor).
        Blind {
            limit: usize,
        },
    }

    impl Mode {
        /// Puts `t` in this mode.
        fn stage<K: Key + Staging, V: Value + Staging>(self, t: &mut Staged<'_, K, V>) {
            match self {
                Mode::WriteThrough => {}
                Mode::Staged { limit } => {
                    t.limit = limit;
                    t.stage().unwrap();
                }
                Mode::Blind { limit } => {
                    t.limit = limit;
                    t.stage_blind().unwrap();
                }
            }
        }
    }

    /// Table `T` of `txn`, holding `initial`.
    fn table_of<'t>(
        txn: &'t redb::WriteTransaction,
        initial: impl IntoIterator<Item = (u8, u64)>,
    ) -> Table<'t, &'static [u8], u64> {
        let mut table = txn.open_table(T).unwrap();
        for (k, v) in initial {
            table.insert([k].as_slice(), v).unwrap();
        }
        table
    }

    fn in_memory() -> Database {
        Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .unwrap()
    }

    /// Applies `ops` to a table holding `initial` in `mode`; returns what it answered
    /// and held.
    fn run(initial: &[(u8, u64)], ops: &[Op], mode: Mode) -> Outcome {
        let db = in_memory();
        let txn = db.begin_write().unwrap();
        let mut answers = Vec::new();
        let visited;
        {
            let mut t = Staged::new(table_of(&txn, initial.iter().copied()));
            mode.stage(&mut t);
            for op in ops {
                let answer = match op {
                    Op::Insert(k, v) => t.insert([*k].as_slice(), *v).unwrap().map(|r| r.value()),
                    Op::Put(k, v) => t.put([*k].as_slice(), *v).map(|_| None).unwrap(),
                    Op::Remove(k) => t.remove([*k].as_slice()).unwrap().map(|r| r.value()),
                    Op::Delete(k) => t.delete([*k].as_slice()).map(|_| None).unwrap(),
                    Op::Get(k) => t.get([*k].as_slice()).unwrap().map(|r| r.value()),
                    Op::Clear => t.clear().map(|_| None).unwrap(),
                    Op::RetainBelow(x) => {
                        let below = |v: &[u8]| u64::from_le_bytes(v.try_into().unwrap()) < *x;
                        t.retain(|_, v| below(v)).map(|_| None).unwrap()
                    }
                };
                answers.push(answer);
            }
            visited = visit_rows(&mut t);
            t.flush().unwrap();
        }
        let rows = rows_of(&txn.open_table(T).unwrap());
        assert_eq!(visited, rows, "for_each_row visits the table's rows");
        (answers, rows)
    }

    /// Every row of table `T`, in key order.
    fn rows_of(table: &impl ReadableTable<&'static [u8], u64>) -> Vec<(Vec<u8>, u64)> {
        table
            .iter()
            .unwrap()
            .map(|r| {
                let (k, v) = r.unwrap();
                (k.value().to_vec(), v.value())
            })
            .collect()
    }

    /// Every row [`Staged::for_each_row`] visits, in key order.
    fn visit_rows(t: &mut Staged<'_, &'static [u8], u64>) -> Vec<(Vec<u8>, u64)> {
        let mut rows = Vec::new();
        t.for_each_row(|k, v| {
            rows.push((k.to_vec(), u64::from_le_bytes(v.try_into().unwrap())));
            Ok(())
        })
        .unwrap();
        rows.sort();
        rows
    }

    #[test]
    fn rows_staged_over_an_empty_table_are_visited_without_a_write_back() {
        let db = in_memory();
        let txn = db.begin_write().unwrap();
        let mut t = Staged::new(table_of(&txn, []));
        t.stage().unwrap();
        t.insert([2u8].as_slice(), 20).unwrap();
        t.insert([1u8].as_slice(), 10).unwrap();
        t.insert([3u8].as_slice(), 30).unwrap();
        t.remove([3u8].as_slice()).unwrap();
        assert!(!t.is_staged_and_empty());
        assert_eq!(visit_rows(&mut t), [(vec![1], 10), (vec![2], 20)]);
        assert!(t.table.is_empty().unwrap(), "nothing was written back");
        assert_eq!(t.staged_rows(), 2, "the rows stay staged");
        // Once rows went to redb, the table is walked (after the rest follow them).
        t.flush().unwrap();
        t.insert([4u8].as_slice(), 40).unwrap();
        assert_eq!(visit_rows(&mut t).len(), 3);
        assert_eq!(t.table.len().unwrap(), 3);
    }

    /// Applies `ops` as a writer with a coin cache would: each chunk of `per_txn` ops in
    /// its own write transaction, cached over the layers of the chunks before it and
    /// frozen into a layer at its end; every `write_back_every` transactions the layers
    /// are written into redb (newest change per key) and dropped. Returns what it
    /// answered and, after a last write-back, what the table holds.
    fn run_cached(
        initial: &[(u8, u64)],
        ops: &[Op],
        per_txn: usize,
        write_back_every: usize,
    ) -> Outcome {
        let db = in_memory();
        {
            let txn = db.begin_write().unwrap();
            drop(table_of(&txn, initial.iter().copied()));
            txn.commit().unwrap();
        }
        let mut layers: Vec<Arc<Layer<&'static [u8], u64>>> = Vec::new();
        let mut answers = Vec::new();
        for (i, chunk) in ops.chunks(per_txn.max(1)).enumerate() {
            let txn = db.begin_write().unwrap();
            {
                let mut t = Staged::new(txn.open_table(T).unwrap());
                t.cache_over(layers.clone()).unwrap();
                for op in chunk {
                    answers.push(match op {
                        Op::Insert(k, v) => {
                            t.insert([*k].as_slice(), *v).unwrap().map(|r| r.value())
                        }
                        Op::Put(k, v) => t.put([*k].as_slice(), *v).map(|_| None).unwrap(),
                        Op::Remove(k) => t.remove([*k].as_slice()).unwrap().map(|r| r.value()),
                        Op::Delete(k) => t.delete([*k].as_slice()).map(|_| None).unwrap(),
                        Op::Get(k) => t.get([*k].as_slice()).unwrap().map(|r| r.value()),
                        Op::Clear | Op::RetainBelow(_) => unreachable!("not on a cached table"),
                    });
                }
                assert!(t.flush().is_err(), "a cached table is not written back");
                layers.extend(t.freeze().map(Arc::new));
            }
            txn.commit().unwrap();
            if (i + 1) % write_back_every.max(1) == 0 {
                write_back_layers(&db, std::mem::take(&mut layers));
            }
        }
        write_back_layers(&db, layers);
        let rows = rows_of(&db.begin_read().unwrap().open_table(T).unwrap());
        (answers, rows)
    }

    /// Writes `layers` (oldest first) into table `T`, each key's newest change.
    fn write_back_layers(db: &Database, layers: Vec<Arc<Layer<&'static [u8], u64>>>) {
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(T).unwrap();
            let mut merged = std::collections::BTreeMap::new();
            for layer in &layers {
                merged.extend(layer.rows().iter().cloned());
            }
            for (k, v) in merged {
                match v {
                    Some(v) => table.insert(k.as_slice(), u64::from_le_bytes(v)).unwrap(),
                    None => table.remove(k.as_slice()).unwrap(),
                };
            }
        }
        txn.commit().unwrap();
    }

    proptest! {
        /// A cached table is invisible too: folded over the layers of earlier
        /// transactions, it answers as writing through does, and its layers written
        /// back leave the table writing through leaves, however often that happens.
        #[test]
        fn cached_matches_write_through(
            initial in proptest::collection::vec((0u8..24, any::<u64>()), 0..12),
            ops in proptest::collection::vec(op().prop_filter("a cached table is not cleared",
                |op| !matches!(op, Op::Clear | Op::RetainBelow(_))), 0..80),
            per_txn in 1usize..12,
            write_back_every in 1usize..8,
        ) {
            let direct = run(&initial, &ops, Mode::WriteThrough);
            prop_assert_eq!(&run_cached(&initial, &ops, per_txn, write_back_every), &direct);
            prop_assert_eq!(&run_cached(&initial, &ops, per_txn, usize::MAX), &direct);
        }
    }

    proptest! {
        /// Staging is invisible: the same answers and the same final table as writing
        /// through, over an empty or a filled table, with or without mid-way write-backs.
        #[test]
        fn staged_matches_write_through(
            initial in proptest::collection::vec((0u8..24, any::<u64>()), 0..12),
            ops in proptest::collection::vec(op(), 0..80),
            limit in 1usize..16,
        ) {
            let direct = run(&initial, &ops, Mode::WriteThrough);
            for mode in [
                Mode::Staged { limit },
                Mode::Staged { limit: usize::MAX },
                Mode::Blind { limit },
                Mode::Blind { limit: usize::MAX },
            ] {
                prop_assert_eq!(&run(&initial, &ops, mode), &direct);
            }
        }

        /// A blind table that is only written: the same final table as writing
        /// through (the case a replay's index tables are in, where the list is never
        /// settled before its write-back).
        #[test]
        fn blind_writes_match_write_through(
            initial in proptest::collection::vec((0u8..24, any::<u64>()), 0..12),
            ops in proptest::collection::vec(prop_oneof![
                (0u8..24, any::<u64>()).prop_map(|(k, v)| Op::Put(k, v)),
                (0u8..24).prop_map(Op::Delete),
            ], 0..80),
            limit in 1usize..16,
        ) {
            let direct = run(&initial, &ops, Mode::WriteThrough);
            prop_assert_eq!(&run(&initial, &ops, Mode::Blind { limit }), &direct);
            prop_assert_eq!(&run(&initial, &ops, Mode::Blind { limit: usize::MAX }), &direct);
        }
    }

    /// A table of `T` staged blind, with a base of `initial`.
    fn blind_table<'t>(
        txn: &'t redb::WriteTransaction,
        initial: &[(u8, u64)],
    ) -> Staged<'t, &'static [u8], u64> {
        let mut t = Staged::new(table_of(txn, initial.iter().copied()));
        t.stage_blind().unwrap();
        t
    }

    #[test]
    fn a_blind_list_keeps_each_keys_last_change() {
        let db = in_memory();
        let txn = db.begin_write().unwrap();
        let mut t = blind_table(&txn, &[(1, 10), (2, 20)]);
        t.put([3u8].as_slice(), 30).unwrap();
        t.put([3u8].as_slice(), 31).unwrap();
        t.delete([1u8].as_slice()).unwrap();
        t.put([1u8].as_slice(), 11).unwrap();
        t.put([2u8].as_slice(), 21).unwrap();
        t.delete([2u8].as_slice()).unwrap();
        t.put([4u8].as_slice(), 40).unwrap();
        t.delete([4u8].as_slice()).unwrap();
        assert_eq!(t.log.len(), 8, "changes are listed, not mapped");
        assert_eq!(
            t.get([3u8].as_slice()).unwrap().map(|r| r.value()),
            Some(31)
        );
        assert_eq!(t.get([2u8].as_slice()).unwrap().map(|r| r.value()), None);
        let rows: Vec<_> = t
            .flushed()
            .unwrap()
            .iter()
            .unwrap()
            .map(|r| r.map(|(k, v)| (k.value()[0], v.value())).unwrap())
            .collect();
        assert_eq!(rows, [(1, 11), (3, 31)]);
    }

    #[test]
    fn an_insert_into_a_blind_table_answers_the_listed_value() {
        let db = in_memory();
        let txn = db.begin_write().unwrap();
        let mut t = blind_table(&txn, &[(1, 10)]);
        t.put([1u8].as_slice(), 12).unwrap();
        t.delete([1u8].as_slice()).unwrap();
        t.put([1u8].as_slice(), 13).unwrap();
        let old = t.insert([1u8].as_slice(), 14).unwrap().map(|r| r.value());
        assert_eq!(old, Some(13));
        assert!(t.log.is_empty(), "the list was settled into the map");
        t.delete([1u8].as_slice()).unwrap();
        assert_eq!(t.remove([1u8].as_slice()).unwrap().map(|r| r.value()), None);
    }

    /// A [`WriteBack`] that counts its write-backs and fails when told.
    struct Fake {
        rows: usize,
        fails: bool,
        written: usize,
    }

    impl WriteBack for Fake {
        fn pending_rows(&self) -> usize {
            self.rows
        }

        fn is_cached(&self) -> bool {
            false
        }

        fn write_back(&mut self) -> StoreResult<()> {
            self.written += 1;
            if self.fails {
                return Err(StoreError::corrupt(format!("fake {}", self.rows)));
            }
            Ok(())
        }
    }

    #[test]
    fn write_back_all_writes_every_table_and_answers_the_first_error() {
        for rows in [1, PARALLEL_WRITE_BACK_ROWS] {
            let mut fakes: Vec<Fake> = (0..4)
                .map(|i| Fake {
                    rows: rows + i,
                    fails: i >= 2,
                    written: 0,
                })
                .collect();
            let mut tables: Vec<&mut dyn WriteBack> =
                fakes.iter_mut().map(|f| f as &mut dyn WriteBack).collect();
            let err = write_back_all(&mut tables).unwrap_err();
            assert_eq!(
                err.to_string(),
                StoreError::corrupt(format!("fake {}", rows + 2)).to_string()
            );
            let parallel = rows >= PARALLEL_WRITE_BACK_ROWS;
            // Serial stops at the first error; side by side, every table was running.
            let written: Vec<_> = fakes.iter().map(|f| f.written).collect();
            assert_eq!(written, if parallel { [1, 1, 1, 1] } else { [1, 1, 1, 0] });
        }
    }

    #[test]
    fn tables_written_back_side_by_side_hold_their_rows() {
        let db = in_memory();
        let txn = db.begin_write().unwrap();
        const U: TableDefinition<u64, u64> = TableDefinition::new("u");
        let mut a = blind_table(&txn, &[]);
        let mut b = Staged::new(txn.open_table(U).unwrap());
        b.stage().unwrap();
        let n = PARALLEL_WRITE_BACK_ROWS as u64;
        for i in 0..n {
            a.put([(i % 200) as u8].as_slice(), i).unwrap();
            b.put(i, i * 2).unwrap();
        }
        write_back_all(&mut [&mut a, &mut b]).unwrap();
        assert_eq!(a.staged_rows() + b.staged_rows(), 0);
        let a = a.flushed().unwrap();
        assert_eq!(a.len().unwrap(), 200);
        let last_put_of_7 = (0..n).rev().find(|i| i % 200 == 7);
        assert_eq!(
            a.get([7u8].as_slice()).unwrap().map(|r| r.value()),
            last_put_of_7
        );
        let b = b.flushed().unwrap();
        assert_eq!(b.len().unwrap(), n);
        assert_eq!(b.get(n - 1).unwrap().unwrap().value(), (n - 1) * 2);
    }

    fn toy_digest(key: &[u8], value: &[u8]) -> U256 {
        U256::from(key[0]) * U256::from(1_000_003u64) + U256::from(value[0]) + 7
    }

    fn digest_sum(rows: impl IntoIterator<Item = (u8, u64)>) -> U256 {
        rows.into_iter().fold(U256::zero(), |sum, (k, v)| {
            sum.overflowing_add(toy_digest(&[k], &v.to_le_bytes())).0
        })
    }

    proptest! {
        /// The digest kept at write-back is the change of Σ digest over the table's rows,
        /// however the rows came and went (mid-way write-backs, a clear restarting it).
        #[test]
        fn staged_digest_is_the_change_of_the_rows_digest_sum(
            initial in proptest::collection::btree_map(0u8..24, any::<u64>(), 0..12),
            ops in proptest::collection::vec(op(), 0..80),
            limit in 1usize..16,
            blind in any::<bool>(),
        ) {
            let db = in_memory();
            let txn = db.begin_write().unwrap();
            let table = table_of(&txn, initial.iter().map(|(k, v)| (*k, *v)));
            let mut t = Staged::new(table).digesting(toy_digest);
            let mode = if blind { Mode::Blind { limit } } else { Mode::Staged { limit } };
            mode.stage(&mut t);
            prop_assert!(t.defers_digest());
            let mut before = digest_sum(initial.iter().map(|(k, v)| (*k, *v)));
            for op in &ops {
                match op {
                    Op::Insert(k, v) => drop(t.insert([*k].as_slice(), *v).unwrap()),
                    Op::Put(k, v) => t.put([*k].as_slice(), *v).unwrap(),
                    Op::Remove(k) => drop(t.remove([*k].as_slice()).unwrap()),
                    Op::Delete(k) => t.delete([*k].as_slice()).unwrap(),
                    // Retain is not for a digesting table (see `Staged::retain`).
                    Op::Get(_) | Op::RetainBelow(_) => {}
                    Op::Clear => {
                        t.clear().unwrap();
                        before = U256::zero();
                    }
                }
            }
            let table = t.flushed().unwrap();
            let after = digest_sum(table.iter().unwrap().map(|r| {
                let (k, v) = r.unwrap();
                (k.value()[0], v.value())
            }));
            prop_assert_eq!(before.overflowing_add(t.take_digest_delta()).0, after);
        }
    }

    #[test]
    fn flushed_table_shows_staged_rows() {
        let db = in_memory();
        let txn = db.begin_write().unwrap();
        let mut t = Staged::new(txn.open_table(T).unwrap());
        t.stage().unwrap();
        t.insert([1u8].as_slice(), 7).unwrap();
        let table = t.flushed().unwrap();
        assert_eq!(table.get([1u8].as_slice()).unwrap().unwrap().value(), 7);
    }
}
