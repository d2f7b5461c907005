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
        group.push(
            engine.prepare_block(b.clone()).unwrap(),
            reply,
            Follows::Nothing,
        );
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
    writer(&target).commit_group(group, |_| None);
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

/// A block connected on `source`, and one on top of it whose proof of work is for harder
/// bits than the chain asks: context-free checks pass, the writer's bits rule does not.
fn good_then_bad_bits(source: &Engine, owner: &TestKey) -> (Block, Block) {
    let first = mined(source.block_template(owner.address(), vec![]).unwrap());
    source.submit_block(first.clone()).unwrap();
    let mut t = source.block_template(owner.address(), vec![]).unwrap();
    t.header.bits = CompactTarget(0x2000_ffff);
    (first, mined(t))
}

#[test]
fn a_refused_block_in_a_group_leaves_the_ones_before_it_connected() {
    let (source, target) = (engine_at(NOW), engine_at(NOW));
    let owner = TestKey::new(1);
    let (first, bad) = good_then_bad_bits(&source, &owner);
    let mut t = source.block_template(owner.address(), vec![]).unwrap();
    t.header.prev_hash = bad.hash();
    let after_bad = mined(t);
    let (group, answers) = group_of(&target, &[first.clone(), bad.clone(), after_bad]);
    writer(&target).commit_group(group, |_| None);
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
    let r = target
        .queue_prepared(honest, Follows::Nothing)
        .unwrap()
        .wait_blocking();
    assert!(matches!(r, Ok(BlockAccepted::Connected { .. })), "{r:?}");
}

/// `block`, prepared for `engine`, as the writer's queue carries it, with the caller's end.
fn queued(engine: &Engine, block: &Block, follows: Follows) -> (Command, Answer) {
    let (reply, answer) = oneshot::channel();
    let prepared = engine.prepare_block(block.clone()).unwrap();
    (Command::Prepared(prepared, reply, follows), answer)
}

fn connected(answer: Answer) {
    let r = answer.blocking_recv().unwrap();
    assert!(matches!(r, Ok(BlockAccepted::Connected { .. })), "{r:?}");
}

/// A target engine, the source chain's blocks, and a group holding the first of them as
/// its caller queued it, saying `follows`, with the caller's end.
fn first_block_grouped(follows: Follows) -> (Engine, Vec<Block>, BlockGroup, Vec<Answer>) {
    let (source, target) = (engine_at(NOW), engine_at(NOW));
    let blocks = chain(&source, &TestKey::new(1));
    let (mut group, answers) = group_of(&target, &blocks[..1]);
    group.follows = follows;
    (target, blocks, group, answers)
}

#[test]
fn a_group_held_open_folds_the_block_that_follows_into_its_one_commit() {
    let (target, blocks, group, answers) = first_block_grouped(Follows::More);
    let (queue, rx) = mpsc::channel();
    let (second, second_answer) = queued(&target, &blocks[1], Follows::Nothing);
    let late = std::thread::spawn(move || {
        // Well inside GROUP_LINGER: the writer is waiting for it.
        std::thread::sleep(Duration::from_millis(30));
        queue.send(second).map_err(drop).unwrap();
    });
    assert!(writer(&target).run_group(group, &rx).is_none());
    late.join().unwrap();
    // Before any answer is awaited: a writer that did not wait left the second queued.
    let t = target.block_timings();
    assert_eq!((t.blocks, t.commits), (2, 1), "{t:?}");
    assert!(t.linger_ms > 0.0, "{t:?}");
    answers.into_iter().for_each(connected);
    connected(second_answer);
    assert_eq!(target.status().unwrap().best_hash, blocks[1].hash());
}

#[test]
fn a_group_commits_at_once_when_nothing_is_said_to_follow() {
    let (target, _, group, answers) = first_block_grouped(Follows::Nothing);
    let (_queue, rx) = mpsc::channel();
    assert!(writer(&target).run_group(group, &rx).is_none());
    answers.into_iter().for_each(connected);
    let t = target.block_timings();
    assert_eq!((t.blocks, t.commits, t.linger_ms), (1, 1, 0.0), "{t:?}");
}

#[test]
fn a_held_group_gives_up_waiting_after_the_linger_and_commits_what_it_has() {
    let (target, _, group, answers) = first_block_grouped(Follows::More);
    let (_queue, rx) = mpsc::channel();
    let start = Instant::now();
    assert!(writer(&target).run_group(group, &rx).is_none());
    assert!(start.elapsed() >= GROUP_LINGER, "{:?}", start.elapsed());
    answers.into_iter().for_each(connected);
    let t = target.block_timings();
    assert_eq!((t.blocks, t.commits), (1, 1), "{t:?}");
}

#[test]
fn another_command_ends_a_held_group_and_is_handed_back_in_order() {
    let (target, blocks, group, answers) = first_block_grouped(Follows::More);
    let (queue, rx) = mpsc::channel();
    let (reply, _compacted) = oneshot::channel();
    queue.send(Command::Compact(reply)).map_err(drop).unwrap();
    let (after, after_answer) = queued(&target, &blocks[1], Follows::Nothing);
    queue.send(after).map_err(drop).unwrap();
    let start = Instant::now();
    let next = writer(&target).run_group(group, &rx);
    assert!(
        matches!(next, Some(Command::Compact(_))),
        "the compaction is next"
    );
    assert!(
        start.elapsed() < GROUP_LINGER,
        "no wait with a command queued"
    );
    answers.into_iter().for_each(connected);
    let t = target.block_timings();
    assert_eq!(
        (t.blocks, t.commits),
        (1, 1),
        "the block behind it is not folded ahead of it"
    );
    drop(after_answer);
}

#[test]
fn a_refused_block_that_joins_a_held_group_leaves_the_ones_before_it_connected() {
    let (source, target) = (engine_at(NOW), engine_at(NOW));
    let (first, bad) = good_then_bad_bits(&source, &TestKey::new(1));
    let (mut group, answers) = group_of(&target, std::slice::from_ref(&first));
    group.follows = Follows::More;
    let (queue, rx) = mpsc::channel();
    let (late, late_answer) = queued(&target, &bad, Follows::Nothing);
    queue.send(late).map_err(drop).unwrap();
    assert!(writer(&target).run_group(group, &rx).is_none());
    answers.into_iter().for_each(connected);
    let r = late_answer.blocking_recv().unwrap();
    assert!(
        matches!(r, Err(EngineError::Rejected(Reject::BadBits { .. }))),
        "{r:?}"
    );
    assert_eq!(target.status().unwrap().best_hash, first.hash());
    assert!(target.verify().unwrap().ok());
}

/// The fold folds a block's index rows from the outputs the writer's checks found it
/// spending, beside its coins; it must refuse, and change nothing, when those differ
/// from what its coins spent (a check and a fold that disagree about the chain).
#[test]
fn a_fold_refuses_spent_outputs_other_than_its_checks_found() {
    let (source, target) = (engine_at(NOW), engine_at(NOW));
    let owner = TestKey::new(1);
    let blocks = chain(&source, &owner);
    for b in &blocks[..3] {
        target.submit_block(b.clone()).unwrap();
    }
    let block = target.check_block(blocks[3].clone()).unwrap();
    let (hash, height) = (block.hash(), 4);
    let w = writer(&target);
    let state = |e: &Engine| {
        let s = e.status().unwrap();
        (s.best_hash, s.utxo_set_hash, s.log_length)
    };
    let before = state(&target);
    let fold_with = |bump: u64| {
        w.transact_gated(
            |t| {
                t.append(Event::BlockAccepted(block.shared().clone()))?;
                let mut spent =
                    t.check_block_txs(block.block(), block.txids(), height, w.params())?;
                spent[0].amount += bump;
                t.hand_txids(hash, block.txids().to_vec());
                t.hand_spent(hash, spent);
                t.append(Event::TipConnected(hash))?;
                Ok(())
            },
            || Ok(()),
            None,
        )
    };
    let err = fold_with(1).unwrap_err();
    assert!(
        err.to_string()
            .contains("spent other outputs than its checks found"),
        "{err}"
    );
    assert_eq!(state(&target), before, "the refused fold changed nothing");
    fold_with(0).unwrap();
    assert_eq!(target.status().unwrap().best_hash, hash);
    assert!(target.verify().unwrap().ok());
}
