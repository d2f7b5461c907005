//! Prepared blocks and the writer's block groups. The writer is driven directly here, so
//! how many blocks share a commit is not left to thread timing.

use super::*;
use crate::merkle::merkle_root;
use crate::mining::BlockTemplate;
use crate::pow::CompactTarget;
use crate::testkit::{fast_params, outpoint, TestKey};
use crate::tx::TxInputs;

/// An in-memory engine whose clock stands still at `now`.
fn engine_at(now: u64) -> Engine {
    let mut config = EngineConfig::new(fast_params());
    config.clock = Arc::new(move || now);
    Engine::in_memory(config).unwrap()
}

const NOW: u64 = 1_800_000_000;

fn mined(mut t: BlockTemplate) -> Block {
    let ids: Vec<_> = t.txs.iter().map(Transaction::txid).collect();
    t.header.merkle_root = merkle_root(&ids).0;
    t.mine_cpu()
}

/// Five blocks connected on `source`: three to `owner`, one spending the first coinbase
/// (so a group has signatures and UTXO work), one more.
fn chain(source: &Engine, owner: &TestKey) -> Vec<Block> {
    let mut blocks: Vec<Block> = Vec::new();
    for i in 0..5 {
        if i == 3 {
            let coinbase = blocks[0].txs[0].clone();
            let amount = coinbase.outputs[0].amount;
            let spend = owner.spend(
                &[outpoint(coinbase.txid(), 0)],
                &[(TestKey::new(9).address(), amount)],
            );
            source.submit_tx(spend).unwrap();
        }
        let t = source.block_template(owner.address(), vec![]).unwrap();
        let b = mined(t);
        source.submit_block(b.clone()).unwrap();
        blocks.push(b);
    }
    assert_eq!(blocks[3].txs.len(), 2);
    blocks
}

type Answer = oneshot::Receiver<Result<BlockAccepted, EngineError>>;

/// `blocks`, prepared, as one group for `engine`'s writer, with the callers' ends.
fn group_of(engine: &Engine, blocks: &[Block]) -> (BlockGroup, Vec<Answer>) {
    let mut group = BlockGroup::default();
    let mut answers = Vec::new();
    for b in blocks {
        let (reply, answer) = oneshot::channel();
        group.push(engine.prepare_block(b.clone()).unwrap(), reply);
        answers.push(answer);
    }
    (group, answers)
}

fn writer(engine: &Engine) -> Writer {
    Writer {
        shared: engine.shared.clone(),
    }
}

#[test]
fn prepared_blocks_in_a_group_share_one_commit_and_end_where_one_by_one_ends() {
    let (source, target) = (engine_at(NOW), engine_at(NOW));
    let owner = TestKey::new(1);
    let blocks = chain(&source, &owner);
    let (group, answers) = group_of(&target, &blocks);
    writer(&target).commit_group(group);
    for answer in answers {
        let r = answer.blocking_recv().unwrap();
        assert!(matches!(r, Ok(BlockAccepted::Connected { .. })), "{r:?}");
    }
    let t = target.block_timings();
    assert_eq!((t.blocks, t.commits), (5, 1), "{t:?}");
    let (a, b) = (source.status().unwrap(), target.status().unwrap());
    assert_eq!(
        (a.best_hash, a.utxo_set_hash),
        (b.best_hash, b.utxo_set_hash)
    );
    assert!(target.verify().unwrap().ok());
}

#[test]
fn a_refused_block_in_a_group_leaves_the_ones_before_it_connected() {
    let (source, target) = (engine_at(NOW), engine_at(NOW));
    let owner = TestKey::new(1);
    let first = mined(source.block_template(owner.address(), vec![]).unwrap());
    source.submit_block(first.clone()).unwrap();
    // Proof of work for harder bits than the chain asks: context-free checks pass, the
    // writer's bits rule does not.
    let mut t = source.block_template(owner.address(), vec![]).unwrap();
    t.header.bits = CompactTarget(0x2000_ffff);
    let bad = mined(t);
    let mut t = source.block_template(owner.address(), vec![]).unwrap();
    t.header.prev_hash = bad.hash();
    let after_bad = mined(t);
    let (group, answers) = group_of(&target, &[first.clone(), bad.clone(), after_bad]);
    writer(&target).commit_group(group);
    let got: Vec<_> = answers
        .into_iter()
        .map(|a| a.blocking_recv().unwrap())
        .collect();
    assert!(
        matches!(got[0], Ok(BlockAccepted::Connected { .. })),
        "{got:?}"
    );
    assert!(
        matches!(got[1], Err(EngineError::Rejected(Reject::BadBits { .. }))),
        "{got:?}"
    );
    assert!(
        matches!(got[2], Err(EngineError::Rejected(Reject::UnknownParent(_)))),
        "{got:?}"
    );
    assert_eq!(target.status().unwrap().best_hash, first.hash());
    assert!(
        matches!(
            target.known_invalid(&bad.hash()),
            Some(Reject::BadBits { .. })
        ),
        "a final refusal in a group is remembered as one alone is"
    );
    assert!(target.verify().unwrap().ok());
}

#[test]
fn prepare_refuses_a_bad_signature_and_does_not_remember_the_hash() {
    let (source, target) = (engine_at(NOW), engine_at(NOW));
    let owner = TestKey::new(1);
    let mut blocks = chain(&source, &owner);
    let mut t = BlockTemplate {
        header: blocks[3].header,
        txs: blocks[3].txs.clone(),
        ..source.block_template(owner.address(), vec![]).unwrap()
    };
    if let TxInputs::Transfer(ins) = &mut t.txs[1].inputs {
        ins[0].signature[5] ^= 1;
    }
    let tampered = mined(t);
    for b in &blocks[..3] {
        target.submit_block(b.clone()).unwrap();
    }
    let err = target.prepare_block(tampered.clone()).err().unwrap();
    assert!(
        matches!(err, EngineError::Rejected(Reject::BadSignature(_))),
        "{err}"
    );
    assert_eq!(target.known_invalid(&tampered.hash()), None);
    let honest = target.prepare_block(blocks.remove(3)).unwrap();
    let r = target.queue_prepared(honest).unwrap().wait_blocking();
    assert!(matches!(r, Ok(BlockAccepted::Connected { .. })), "{r:?}");
}
