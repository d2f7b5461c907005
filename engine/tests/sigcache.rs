//! The signature cache (engine/src/sigcache.rs) end to end: a block of transactions the
//! mempool admitted connects without verifying them again, and no block gets another
//! verdict than it gets without the cache. Every test runs two engines on one chain and
//! one clock, one with the cache and one without (capacity 0), and compares them.

mod common;
use common::*;
use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::Scalar;
use engine::testkit::{outpoint, TestKey};
use engine::tx::{OutPoint, Transaction, TxInputs};
use engine::validation::verify_signatures_batch;
use engine::{Address, Block, BlockAccepted, Engine, EngineError};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// Two engines fed the same blocks and transactions: `on` has the cache, `off` none.
struct Pair {
    on: Fixture,
    off: Engine,
}

impl Pair {
    fn new() -> Pair {
        let mut params = fast_params();
        params.reward = 1 << 40;
        let now = Arc::new(AtomicU64::new(START_TIME));
        let on = Engine::in_memory(config(params.clone(), &now)).unwrap();
        let mut off_config = config(params, &now);
        off_config.sigcache_capacity = 0;
        let off = Engine::in_memory(off_config).unwrap();
        Pair {
            on: Fixture {
                engine: on,
                now,
                dir: None,
            },
            off,
        }
    }

    fn mine(&self, to: Address) -> Block {
        let b = self.on.mine(to);
        let r = self.off.submit_block(b.clone()).unwrap();
        assert!(matches!(r, BlockAccepted::Connected { .. }), "{r:?}");
        b
    }

    fn submit_tx(&self, tx: &Transaction) {
        assert!(!self.on.engine.submit_tx(tx.clone()).unwrap().duplicate);
        assert!(!self.off.submit_tx(tx.clone()).unwrap().duplicate);
    }

    /// Both engines' answers to `block`, which must agree.
    fn submit_block(&self, block: &Block) -> Result<BlockAccepted, EngineError> {
        let on = self.on.engine.submit_block(block.clone());
        let off = self.off.submit_block(block.clone());
        assert_eq!(
            format!("{on:?}"),
            format!("{off:?}"),
            "the cache changed a verdict"
        );
        assert_eq!(
            self.on.engine.status().unwrap().utxo_set_hash,
            self.off.status().unwrap().utxo_set_hash
        );
        on
    }

    /// A block on the tip holding exactly `txs` (fee 0 each, so the coinbase is the
    /// reward whatever the mempool holds).
    fn block_of(&self, txs: &[Transaction]) -> Block {
        self.on.tick();
        let mut t = self
            .on
            .engine
            .block_template(key(50).address(), vec![])
            .unwrap();
        t.txs.truncate(1);
        t.txs.extend_from_slice(txs);
        let ids: Vec<_> = t.txs.iter().map(|tx| tx.txid()).collect();
        t.header.merkle_root = engine::merkle::merkle_root(&ids).0;
        t.mine_cpu()
    }

    /// `owners.len()` confirmed outputs of 1,000 units, the i-th paid to `owners[i]`.
    fn fund(&self, owners: &[Address]) -> Vec<OutPoint> {
        let funder = key(100);
        let b1 = self.mine(funder.address());
        self.mine(funder.address());
        let outs: Vec<_> = owners.iter().map(|a| (*a, 1_000)).collect();
        let fan = funder.spend(&[outpoint(b1.txs[0].txid(), 0)], &outs);
        self.submit_tx(&fan);
        self.mine(funder.address());
        (0..owners.len() as u32)
            .map(|i| outpoint(fan.txid(), i))
            .collect()
    }
}

/// Fee-0 spends of `coins` (owned by `owner`) to a fixed address.
fn spends(owner: &TestKey, coins: &[OutPoint]) -> Vec<Transaction> {
    coins
        .iter()
        .map(|c| owner.spend(&[*c], &[(key(2).address(), 1_000)]))
        .collect()
}

/// A key as a raw scalar, so a test can sign with or without a torsion component.
struct ScalarKey {
    secret: Scalar,
    public: [u8; 32],
}

impl ScalarKey {
    fn new() -> ScalarKey {
        let secret = Scalar::from_bytes_mod_order([7; 32]);
        let public = (secret * ED25519_BASEPOINT_POINT).compress().to_bytes();
        ScalarKey { secret, public }
    }

    fn address(&self) -> Address {
        Address::from_public_key(&self.public)
    }

    /// A one-input spend of `coin` with this public key, unsigned.
    fn unsigned_spend(&self, coin: OutPoint) -> Transaction {
        let mut tx = key(1).spend(&[coin], &[(key(2).address(), 1_000)]);
        if let TxInputs::Transfer(ins) = &mut tx.inputs {
            ins[0].public_key = self.public; // part of the signed body: before signing
        }
        tx
    }

    /// An ed25519 signature of the txid with nonce `attempt` (with `torsion`: one only a
    /// batch may accept, see [`sign_first_input`]).
    fn sign(&self, tx: &mut Transaction, attempt: u64, torsion: bool) {
        sign_first_input(&self.secret, self.public, tx, attempt, torsion);
    }
}

#[test]
fn a_block_of_admitted_transactions_skips_their_signature_checks() {
    let p = Pair::new();
    let owner = key(1);
    // 300: more than one batch chunk (256), so both a full and a partial one.
    let coins = p.fund(&vec![owner.address(); 300]);
    let txs = spends(&owner, &coins);
    let admitted = p.on.engine.submit_txs(txs.clone());
    assert!(admitted.iter().all(Result::is_ok), "{admitted:?}");
    for r in p.off.submit_txs(txs.clone()) {
        r.unwrap();
    }
    let before = p.on.engine.sigcache_stats();
    let block = p.block_of(&txs);
    let r = p.submit_block(&block).unwrap();
    assert!(matches!(r, BlockAccepted::Connected { .. }), "{r:?}");
    let after = p.on.engine.sigcache_stats();
    assert_eq!(after.hits - before.hits, 300, "every signature was skipped");
    assert_eq!(after.misses, before.misses, "none verified again");
    assert!(p.on.engine.mempool(10).unwrap().is_empty());
    let off = p.off.sigcache_stats();
    assert_eq!((off.hits, off.entries, off.capacity), (0, 0, 0));
    assert!(p.on.engine.verify().unwrap().ok());
}

#[test]
fn a_block_never_seen_in_the_mempool_is_verified_as_before() {
    let p = Pair::new();
    let owner = key(1);
    let coins = p.fund(&vec![owner.address(); 40]);
    let mut txs = spends(&owner, &coins);
    let before = p.on.engine.sigcache_stats();
    txs[17] = {
        let mut bad = txs[17].clone();
        if let TxInputs::Transfer(ins) = &mut bad.inputs {
            ins[0].signature[9] ^= 4;
        }
        bad
    };
    let err = p.submit_block(&p.block_of(&txs)).unwrap_err();
    assert!(
        matches!(err, EngineError::Rejected(engine::Reject::BadSignature(0))),
        "{err}"
    );
    let mid = p.on.engine.sigcache_stats();
    assert_eq!((mid.hits, mid.misses - before.misses), (before.hits, 40));
    txs[17] = spends(&owner, &coins[17..18]).remove(0);
    let r = p.submit_block(&p.block_of(&txs)).unwrap();
    assert!(matches!(r, BlockAccepted::Connected { .. }), "{r:?}");
}

#[test]
fn a_tampered_signature_on_a_cached_txid_is_refused_as_without_the_cache() {
    let p = Pair::new();
    let owner = key(1);
    let coins = p.fund(&vec![owner.address(); 12]);
    let txs = spends(&owner, &coins);
    for tx in &txs {
        p.submit_tx(tx);
    }
    let mut block_txs = txs.clone();
    if let TxInputs::Transfer(ins) = &mut block_txs[5].inputs {
        ins[0].signature[40] ^= 1;
    }
    assert_eq!(block_txs[5].txid(), txs[5].txid(), "same txid");
    let before = p.on.engine.sigcache_stats();
    let err = p.submit_block(&p.block_of(&block_txs)).unwrap_err();
    assert!(
        matches!(err, EngineError::Rejected(engine::Reject::BadSignature(0))),
        "{err}"
    );
    let after = p.on.engine.sigcache_stats();
    assert_eq!(after.misses - before.misses, 1, "the tampered one missed");
    assert_eq!(after.hits - before.hits, 11);
    assert_eq!(
        p.on.engine.mempool(100).unwrap().len(),
        12,
        "nothing changed"
    );
    // Alone in its chunk (no cached neighbours) too.
    let err = p.submit_block(&p.block_of(&block_txs[5..6])).unwrap_err();
    assert!(matches!(
        err,
        EngineError::Rejected(engine::Reject::BadSignature(0))
    ));
    let r = p.submit_block(&p.block_of(&txs)).unwrap();
    assert!(matches!(r, BlockAccepted::Connected { .. }), "{r:?}");
}

/// The torsion case: `verify_strict` refuses the twin, while the block's batch check
/// accepts it or not depending on every signature in its chunk. With the cache a chunk
/// is skipped only when all of it verifies strictly; here it does not, so it must get
/// exactly today's verdict: refused when the chunk's batch fails, accepted when it passes
/// (consensus is unchanged either way), whatever the twin alone would get.
#[test]
fn a_torsion_twin_of_a_cached_transaction_gets_the_verdict_it_gets_without_the_cache() {
    let p = Pair::new();
    let owner = key(1);
    let odd = ScalarKey::new();
    let mut owners = vec![owner.address(); 8];
    owners.push(odd.address());
    let coins = p.fund(&owners);
    let mut txs = spends(&owner, &coins[..8]);
    let mut honest = odd.unsigned_spend(coins[8]);
    odd.sign(&mut honest, 0, false);
    txs.push(honest.clone());
    for tx in &txs {
        p.submit_tx(tx);
    }
    let with_twin = |attempt: u64| {
        let mut twin = honest.clone();
        odd.sign(&mut twin, attempt, true);
        assert_eq!(twin.txid(), honest.txid());
        let mut block_txs = txs.clone();
        *block_txs.last_mut().unwrap() = twin;
        block_txs
    };
    // The chunk's verdict and the twin's alone (what batching only the cache's misses
    // would see); the attempts picked are those where they differ, so a cache that left
    // the hits out of the batch would get both blocks wrong.
    let verdicts = |a: u64| {
        let block_txs = with_twin(a);
        (
            verify_signatures_batch(&block_txs).is_ok(),
            verify_signatures_batch(&block_txs[8..]).is_ok(),
        )
    };
    let refused = (1..2000).find(|a| verdicts(*a) == (false, true)).unwrap();
    let passing = (1..2000).find(|a| verdicts(*a) == (true, false)).unwrap();

    let before = p.on.engine.sigcache_stats();
    let err = p
        .submit_block(&p.block_of(&with_twin(refused)))
        .unwrap_err();
    assert!(
        matches!(err, EngineError::Rejected(engine::Reject::BadSignature(0))),
        "{err}"
    );
    let after = p.on.engine.sigcache_stats();
    assert_eq!(after.hits - before.hits, 8);
    assert_eq!(after.misses - before.misses, 1, "the twin missed");
    // Alone in a chunk, a refused twin is refused too.
    let lone = (1..1000)
        .find(|a| verify_signatures_batch(&with_twin(*a)[8..]).is_err())
        .unwrap();
    assert!(p.submit_block(&p.block_of(&with_twin(lone)[8..])).is_err());

    let r = p.submit_block(&p.block_of(&with_twin(passing))).unwrap();
    assert!(
        matches!(r, BlockAccepted::Connected { .. }),
        "as without the cache: {r:?}"
    );
    assert!(p.on.engine.verify().unwrap().ok());
}
