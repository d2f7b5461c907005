//! Power loss, not just SIGKILL (issue 17, item 3). SIGKILL leaves the OS page cache
//! intact, so the crash tests never see a lost unsynced write; here the ledger lives on
//! [`FaultDisk`], a redb backend that keeps what was synced apart from what was only
//! written, fails the N-th write, sync, read or length change (EIO), fills up (ENOSPC),
//! and on power loss keeps the synced image plus a torn part of the rest. The anchors: Bitcoin Core's
//! `feature_dbcrash.py` (crash at every point of a workload with reorgs, then check the
//! restarted node against one that never crashed) and redb's own crash tests (a backend
//! failing writes and syncs at every point).
//!
//! The workload mines blocks, spends chains of transactions and reorganises onto a
//! heavier branch. A fault-free replay records what a client sees after each operation;
//! then, for every write and sync of it failing, the workload runs until the failure, the
//! power goes, and the ledger reopened on what survived must show exactly the state
//! after the acknowledged operations, or after those and the failed one (never part of
//! it), with projections equal to a rebuild from the log. A second loop keeps the engine
//! running after the failure: it must recover once the fault is gone without ever having
//! acknowledged what a later power loss takes away. The loops run with a small redb
//! cache, so that reads happen inside operations and fail there too. A third test fails
//! each read of opening the ledger: the open is refused as an I/O error, never taken for
//! damage. Each loop makes at most
//! `BITPLACE_FAULT_RUNS` runs (default 3000: every point; more buys more reorderings of
//! the unsynced writes per point) in at most 25 s (10 minutes with the variable set).

mod common;
use common::*;
use engine::testkit::fault::{Fault, FaultDisk, Tear};
use engine::testkit::{outpoint, TestKey};
use engine::{Address, Block, Engine, EngineError, Hash256, Transaction};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

#[derive(Clone)]
enum Op {
    Tx(Transaction),
    Block(Block),
}

impl Op {
    fn submit(&self, e: &Engine) -> Result<(), EngineError> {
        match self {
            Op::Tx(tx) => e.submit_tx(tx.clone()).map(drop),
            Op::Block(b) => e.submit_block(b.clone()).map(drop),
        }
    }

    /// Whether the ledger holds it (blocks stay in the log even when reorganised away;
    /// this workload's transactions stay in the mempool or the chain).
    fn present(&self, e: &Engine) -> bool {
        match self {
            Op::Tx(tx) => e.transaction(&tx.txid()).unwrap().is_some(),
            Op::Block(b) => e.block(&b.hash()).unwrap().is_some(),
        }
    }
}

/// What a client can tell apart: the tip, the UTXO set, the log and the mempool.
#[derive(Clone, Debug, PartialEq, Eq)]
struct View {
    best: Hash256,
    height: u64,
    utxo_set_hash: String,
    log_length: u64,
    mempool: Vec<Hash256>,
}

fn view(e: &Engine) -> View {
    let s = e.status().unwrap();
    let mut mempool: Vec<_> = e
        .mempool(1000)
        .unwrap()
        .into_iter()
        .map(|m| m.txid)
        .collect();
    mempool.sort();
    View {
        best: s.best_hash,
        height: s.height,
        utxo_set_hash: s.utxo_set_hash,
        log_length: s.log_length,
        mempool,
    }
}

struct Workload {
    /// Genesis and four blocks, synced: every run starts on it.
    base: Vec<u8>,
    ops: Vec<Op>,
    /// `views[k]`: after the first k operations, from a replay without faults.
    views: Vec<View>,
    /// The clock of every replay (after every block's time).
    now: u64,
    /// Writes, syncs, reads and length changes the operations cost in that replay.
    writes: u64,
    syncs: u64,
    reads: u64,
    resizes: u64,
}

/// redb's page cache in the crash loops: small enough that the workload reads its file
/// mid-write (hundreds of reads), so read failures land inside operations.
const SMALL_CACHE: usize = 64 << 10;

fn open(disk: &FaultDisk, now: u64) -> Result<Engine, EngineError> {
    open_with_cache(disk, now, SMALL_CACHE)
}

fn open_with_cache(disk: &FaultDisk, now: u64, cache: usize) -> Result<Engine, EngineError> {
    let clock = Arc::new(AtomicU64::new(now));
    let mut config = config(fast_params(), &clock);
    config.db_cache_bytes = cache;
    Engine::with_backend(disk.clone(), config)
}

/// Spends `coin` of `from` to `to` with a fee of 1, on the builder and into `ops`.
fn pay(
    fx: &Fixture,
    ops: &mut Vec<Op>,
    from: &TestKey,
    coin: (Hash256, u64),
    to: Address,
) -> (Hash256, u64) {
    let tx = from.spend(&[outpoint(coin.0, 0)], &[(to, coin.1 - 1)]);
    fx.engine.submit_tx(tx.clone()).unwrap();
    ops.push(Op::Tx(tx.clone()));
    (tx.txid(), coin.1 - 1)
}

fn mine(fx: &Fixture, ops: &mut Vec<Op>) {
    ops.push(Op::Block(fx.mine(key(3).address())));
}

/// Blocks with transactions, transaction chains, a 2-block reorganisation onto a
/// heavier branch (its first two blocks stored as a side chain first) that returns the
/// disconnected transactions to the mempool, and work on the new tip.
fn build() -> (Vec<Block>, Vec<Op>, u64) {
    let fx = Fixture::in_memory();
    let (a, b) = (key(1), key(2));
    let base: Vec<Block> = (0..4).map(|_| fx.mine(a.address())).collect();
    let coinbase = |i: usize| (base[i].txs[0].txid(), base[i].txs[0].outputs[0].amount);
    let mut ops = Vec::new();
    let c = pay(&fx, &mut ops, &a, coinbase(0), a.address());
    let c = pay(&fx, &mut ops, &a, c, a.address());
    mine(&fx, &mut ops);
    let c = pay(&fx, &mut ops, &a, c, a.address());
    let d = pay(&fx, &mut ops, &a, coinbase(1), b.address());
    mine(&fx, &mut ops);
    let c = pay(&fx, &mut ops, &a, c, a.address());
    let fork_base = fx.engine.status().unwrap().height - 2;
    fx.fork(2, 3);
    for h in fork_base + 1..=fork_base + 3 {
        let hash = fx.engine.block_hash_at(h).unwrap().unwrap();
        ops.push(Op::Block(fx.engine.block(&hash).unwrap().unwrap().1));
    }
    let c = pay(&fx, &mut ops, &a, c, a.address());
    let d = pay(&fx, &mut ops, &b, d, b.address());
    mine(&fx, &mut ops);
    pay(&fx, &mut ops, &a, c, b.address());
    pay(&fx, &mut ops, &b, d, a.address());
    let now = fx.engine.now() + 3600;
    (base, ops, now)
}

fn workload() -> &'static Workload {
    static W: OnceLock<Workload> = OnceLock::new();
    W.get_or_init(|| {
        let (base_blocks, ops, now) = build();
        let disk = FaultDisk::new();
        let e = open(&disk, now).unwrap();
        for b in base_blocks {
            e.submit_block(b).unwrap();
        }
        drop(e);
        let base = disk.after_power_loss(Tear::Nothing);
        assert_eq!(
            base,
            disk.live_image(),
            "a clean close leaves nothing unsynced"
        );
        let disk = FaultDisk::with_image(base.clone());
        let e = open(&disk, now).unwrap();
        let mut views = vec![view(&e)];
        for op in &ops {
            op.submit(&e).unwrap();
            views.push(view(&e));
        }
        assert!(ops.iter().all(|op| op.present(&e)));
        // Counted again without the views between operations, as the loops run them:
        // a view's reads would change what the small cache holds.
        let (before, after) = {
            let disk = FaultDisk::with_image(base.clone());
            let e = open(&disk, now).unwrap();
            let before = disk.counts();
            ops.iter().for_each(|op| op.submit(&e).unwrap());
            (before, disk.counts())
        };
        let reorged = views
            .windows(2)
            .any(|v| v[1].height == v[0].height + 1 && v[1].mempool.len() > v[0].mempool.len());
        assert!(
            reorged,
            "the workload reorganises and returns transactions to the mempool"
        );
        Workload {
            base,
            ops,
            views,
            now,
            writes: after.writes - before.writes,
            syncs: after.syncs - before.syncs,
            reads: after.reads - before.reads,
            resizes: after.resizes - before.resizes,
        }
    })
}

type FaultKind = fn(u64) -> Fault;

/// Every injection point of the workload: each write failing alone (EIO) and the disk
/// filling up from it (ENOSPC), each sync failing with its writes kept pending or lost,
/// each read and each length change failing alone (EIO).
fn faults(w: &Workload) -> Vec<Fault> {
    let kinds: [(FaultKind, u64); 6] = [
        (Fault::Write, w.writes),
        (Fault::DiskFull, w.writes),
        (Fault::Sync, w.syncs),
        (Fault::SyncLosing, w.syncs),
        (Fault::Read, w.reads),
        (Fault::SetLen, w.resizes),
    ];
    kinds
        .iter()
        .flat_map(|&(kind, n)| (1..=n).map(kind))
        .collect()
}

/// Runs per loop and the time allowed: `BITPLACE_FAULT_RUNS` (default 3000, which
/// covers every point) and 25 s, or 10 minutes once the variable is set.
fn budget() -> (usize, Duration) {
    match std::env::var("BITPLACE_FAULT_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(runs) => (runs, Duration::from_secs(600)),
        None => (3000, Duration::from_secs(25)),
    }
}

/// `points` thinned evenly to at most `runs / per_point` of them.
fn thinned(points: Vec<Fault>, runs: usize, per_point: usize) -> Vec<Fault> {
    let keep = (runs / per_point).max(1);
    let step = points.len().div_ceil(keep).max(1);
    points.into_iter().step_by(step).collect()
}

/// The power cuts tried after the failure at point `i`: none of the unsynced writes,
/// the first one torn, two, all of them, and `scattered` reorderings of them.
fn tears(i: usize, scattered: usize) -> Vec<Tear> {
    let fixed = [
        Tear::Nothing,
        Tear::Prefix(1),
        Tear::Prefix(2),
        Tear::Prefix(usize::MAX),
    ];
    let seeds = (0..scattered).map(|k| Tear::Scattered((i * scattered + k) as u64));
    fixed.into_iter().chain(seeds).collect()
}

fn is_storage_failure(e: &EngineError) -> bool {
    matches!(e, EngineError::Store(_) | EngineError::Unavailable(_))
}

/// The ledger the power left: redb opens it (rolling back a torn commit) and every page
/// passes its checksum, then the engine opens on it as the node would.
fn reopen_after_power_loss(image: Vec<u8>, now: u64, what: &str) -> Engine {
    let mut db = redb::Database::builder()
        .create_with_backend(FaultDisk::with_image(image.clone()))
        .unwrap_or_else(|e| panic!("{what}: redb cannot open what survived: {e}"));
    if let Err(e) = db.check_integrity() {
        panic!("{what}: what survived fails its checksums: {e}");
    }
    drop(db);
    open(&FaultDisk::with_image(image), now)
        .unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"))
}

#[derive(Default, Debug)]
struct Stats {
    runs: usize,
    injected: u64,
    acknowledged: usize,
    /// Runs where an operation failed (a full disk may not be hit before the end).
    failed: usize,
    /// Runs where a failure was injected and no operation failed: redb writes pages out
    /// of its small cache best-effort, keeps a page whose write failed and writes it
    /// again later, so a write failure there fails nothing.
    absorbed: usize,
    failed_applied: usize,
    failed_absent: usize,
}

/// Runs the workload on the base image with `fault` armed until an operation fails,
/// then cuts the power (`tear`) and checks what survived.
fn crash_run(w: &Workload, fault: Fault, tear: Tear, st: &mut Stats) {
    let what = format!("{fault:?}, {tear:?}");
    let disk = FaultDisk::with_image(w.base.clone());
    let e = open(&disk, w.now).unwrap();
    disk.arm(fault);
    let (mut done, mut failed) = (0, false);
    for op in &w.ops {
        match op.submit(&e) {
            Ok(()) => done += 1,
            Err(err) => {
                assert!(
                    is_storage_failure(&err),
                    "{what}: not a storage failure: {err}"
                );
                failed = true;
                break;
            }
        }
    }
    drop(e);
    let e = reopen_after_power_loss(disk.after_power_loss(tear), w.now, &what);
    let got = view(&e);
    for (i, op) in w.ops[..done].iter().enumerate() {
        assert!(op.present(&e), "{what}: acknowledged operation {i} lost");
    }
    let applied = failed && got == w.views[done + 1];
    assert!(
        applied || got == w.views[done],
        "{what}: after {done} acknowledged operations the ledger shows neither their state \
         nor that plus the failed one: {got:?}"
    );
    if failed {
        assert_eq!(
            w.ops[done].present(&e),
            applied,
            "{what}: failed operation half there"
        );
    }
    assert!(
        e.verify().unwrap().ok(),
        "{what}: projections differ from a rebuild"
    );
    st.runs += 1;
    st.injected += disk.counts().injected;
    st.acknowledged += done;
    st.failed += usize::from(failed);
    st.absorbed += usize::from(!failed && disk.counts().injected > 0);
    st.failed_applied += usize::from(applied);
    st.failed_absent += usize::from(failed && !applied);
}

#[test]
fn power_loss_at_every_write_and_sync_keeps_what_was_acknowledged_and_half_applies_nothing() {
    let w = workload();
    let (runs, limit) = budget();
    let all = faults(w);
    // Two reorderings per point at least; a bigger budget buys more of them.
    let scattered = (runs / all.len()).saturating_sub(4).max(2);
    let points = thinned(all, runs, 4 + scattered);
    let started = Instant::now();
    let mut st = Stats::default();
    for (i, fault) in points.iter().enumerate() {
        if started.elapsed() > limit {
            break;
        }
        for tear in tears(i, scattered) {
            crash_run(w, *fault, tear, &mut st);
        }
    }
    eprintln!(
        "power loss: {} operations ({} writes, {} syncs, {} reads, {} length changes), {} \
         injection points, {} runs, \
         {} injected failures, {} acknowledged operations all kept, {} runs with a failed \
         operation (applied whole {} / absent {}), {} absorbed by redb, {:.1} s",
        w.ops.len(),
        w.writes,
        w.syncs,
        w.reads,
        w.resizes,
        points.len(),
        st.runs,
        st.injected,
        st.acknowledged,
        st.failed,
        st.failed_applied,
        st.failed_absent,
        st.absorbed,
        started.elapsed().as_secs_f64()
    );
    assert!(st.runs >= 200, "{st:?}");
    assert!(st.failed >= st.runs / 2, "{st:?}");
    assert!(st.failed + st.absorbed >= st.runs * 3 / 4, "{st:?}");
    assert!(st.failed_applied > 0 && st.failed_absent > 0, "{st:?}");
}

/// Runs the whole workload with `fault` armed. After a failure the operation is tried
/// again with the fault still there, then the fault goes (space returns) and it is tried
/// until acknowledged. The power is cut right after that acknowledgement (the image is
/// kept aside) and at the end of the workload, before the engine closes (a clean close
/// syncs what a power loss would take). Each image must hold exactly what was
/// acknowledged before it.
fn recovery_run(w: &Workload, fault: Fault, st: &mut Stats) -> bool {
    let what = format!("{fault:?}, kept running");
    let disk = FaultDisk::with_image(w.base.clone());
    let e = open(&disk, w.now).unwrap();
    disk.arm(fault);
    let (mut i, mut refusals, mut cuts) = (0, 0, Vec::new());
    while i < w.ops.len() {
        match w.ops[i].submit(&e) {
            Ok(()) => {
                i += 1;
                if refusals > 0 && cuts.is_empty() {
                    cuts.push((disk.after_power_loss(Tear::Nothing), i));
                }
            }
            Err(err) => {
                assert!(
                    is_storage_failure(&err),
                    "{what}: not a storage failure: {err}"
                );
                refusals += 1;
                assert!(
                    refusals <= 2,
                    "{what}: still refused once the fault is gone: {err}"
                );
                if refusals == 2 {
                    disk.disarm();
                }
            }
        }
    }
    // A fault the run never reached (the fold's threads share the small cache, so the
    // number of reads varies from run to run) must not fail the checks that follow.
    disk.disarm();
    assert_eq!(view(&e), w.views[i], "{what}: the live ledger");
    cuts.push((disk.after_power_loss(Tear::Nothing), i));
    drop(e);
    for (image, acked) in cuts {
        let e = reopen_after_power_loss(image, w.now, &what);
        assert_eq!(
            view(&e),
            w.views[acked],
            "{what}: power lost after {acked} acknowledged operations: not all durable"
        );
        assert!(
            e.verify().unwrap().ok(),
            "{what}: projections differ from a rebuild"
        );
    }
    st.runs += 1;
    st.injected += disk.counts().injected;
    st.acknowledged += w.ops.len();
    refusals == 2
}

#[test]
fn after_a_failed_write_or_sync_the_engine_recovers_and_acknowledges_only_what_is_durable() {
    let w = workload();
    let (runs, limit) = budget();
    let points = thinned(faults(w), runs, 1);
    let started = Instant::now();
    let mut st = Stats::default();
    let mut refused_twice = 0;
    for fault in &points {
        if started.elapsed() > limit {
            break;
        }
        refused_twice += usize::from(recovery_run(w, *fault, &mut st));
    }
    eprintln!(
        "recovery: {} runs, {} injected failures, {} acknowledged operations all kept after \
         power loss, {} refused again while the fault stayed, {:.1} s",
        st.runs,
        st.injected,
        st.acknowledged,
        refused_twice,
        started.elapsed().as_secs_f64()
    );
    assert!(st.runs >= 100 && st.injected >= st.runs as u64, "{st:?}");
}

/// The full-disk case the root-only tmpfs test in `reliability/tests/storage.rs` used to
/// cover, now on every run: once the disk is full the engine refuses the write with an
/// error naming the cause and changes nothing, reads keep working, and once space
/// returns it accepts writes again without a restart, all of them durable.
#[test]
fn a_full_disk_refuses_the_write_changes_nothing_and_recovers_when_space_returns() {
    let w = workload();
    let disk = FaultDisk::with_image(w.base.clone());
    let e = open(&disk, w.now).unwrap();
    disk.arm(Fault::DiskFull(1));
    // Overwrites of held blocks still succeed: the ledger takes writes until it grows.
    let mut i = 0;
    let err = loop {
        assert!(i < w.ops.len(), "the workload never needed a new block");
        match w.ops[i].submit(&e) {
            Ok(()) => i += 1,
            Err(err) => break err,
        }
    };
    let msg = err.to_string();
    assert!(is_storage_failure(&err), "{msg}");
    assert!(msg.contains("No space left on device"), "{msg}");
    assert_eq!(view(&e), w.views[i], "a refused write changed the ledger");
    assert!(!w.ops[i].present(&e));
    let again = w.ops[i]
        .submit(&e)
        .expect_err("acknowledged on a full disk");
    assert!(
        again.to_string().contains("No space left on device"),
        "{again}"
    );
    assert_eq!(view(&e), w.views[i]);
    disk.free_space();
    for op in &w.ops[i..] {
        op.submit(&e).unwrap();
    }
    assert_eq!(view(&e), w.views[w.ops.len()]);
    drop(e);
    let e = reopen_after_power_loss(disk.after_power_loss(Tear::Nothing), w.now, "full disk");
    assert_eq!(
        view(&e),
        w.views[w.ops.len()],
        "acknowledged after the full disk, then lost"
    );
    assert!(e.verify().unwrap().ok());
    eprintln!("full disk: refused at operation {i} of {} with \"{msg}\", again while full, all accepted once freed", w.ops.len());
}

/// A sector that cannot be read this once, at each read of opening the ledger. The open
/// either serves the ledger as it was or fails with a storage error; it must never
/// take a read error for damage and roll back or rebuild anything acknowledged: the
/// next open, the fault gone, and a power loss right after the failed open both show
/// the whole workload.
#[test]
fn a_read_error_while_opening_loses_nothing_acknowledged() {
    let w = workload();
    let disk = FaultDisk::with_image(w.base.clone());
    let e = open(&disk, w.now).unwrap();
    for op in &w.ops {
        op.submit(&e).unwrap();
    }
    drop(e);
    let image = disk.after_power_loss(Tear::Nothing);
    let last = &w.views[w.ops.len()];
    let clean = FaultDisk::with_image(image.clone());
    // redb's default cache: every page is read once, in the same number of reads each
    // time (a small one re-reads pages in an order the engine's threads decide).
    let full_cache = 1 << 30;
    drop(open_with_cache(&clean, w.now, full_cache).unwrap());
    let reads = clean.counts().reads;
    let (mut served, mut refused) = (0, 0);
    for n in 1..=reads {
        let what = format!("read {n} of {reads} failing at open");
        let disk = FaultDisk::with_image(image.clone());
        disk.arm(Fault::Read(n));
        match open_with_cache(&disk, w.now, full_cache) {
            Ok(e) => {
                assert_eq!(&view(&e), last, "{what}: served");
                served += 1;
            }
            // Not `Damaged`: that sends the user to a rebuild or a backup.
            Err(err) => {
                let said_io = err.to_string().contains("Input/output error");
                assert!(
                    said_io && (is_storage_failure(&err) || matches!(err, EngineError::Open(_))),
                    "{what}: {err:?}"
                );
                refused += 1;
            }
        }
        for (image, when) in [
            (disk.live_image(), "reopened"),
            (disk.after_power_loss(Tear::Nothing), "after power loss"),
        ] {
            let e = reopen_after_power_loss(image, w.now, &what);
            assert_eq!(&view(&e), last, "{what}: {when}");
            assert!(e.verify().unwrap().ok(), "{what}: {when}");
        }
    }
    eprintln!("read errors at open: {reads} reads, {refused} refused the open, {served} served");
    assert!(
        reads >= 5 && refused > 0,
        "{reads} reads, {refused} refused"
    );
}
