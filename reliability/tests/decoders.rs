//! Item 6: every consensus decoder (`engine::encoding::Decode` implementors: block,
//! header, transaction, event-log record) on arbitrary bytes and on mutations of valid
//! encodings: never a panic, and whatever decodes re-encodes to exactly the same bytes.
//! `PROPTEST_CASES=N` for longer runs (default 2000 per property).

use engine::encoding::{Decode, Encode};
use engine::events::{Event, Record, RemovalReason};
use engine::testkit::{outpoint, TestKey};
use engine::{Block, BlockHeader, CompactTarget, Hash256, Transaction, TxOut};
use proptest::prelude::*;
use std::sync::Arc;

fn roundtrip<T: Decode + Encode>(bytes: &[u8]) {
    if let Ok(v) = T::decode(bytes) {
        assert_eq!(v.encode(), bytes, "decoded but re-encoded differently");
    }
}

fn all(bytes: &[u8]) {
    roundtrip::<Block>(bytes);
    roundtrip::<BlockHeader>(bytes);
    roundtrip::<Transaction>(bytes);
    roundtrip::<Record>(bytes);
}

/// Valid encodings to mutate, so the fuzzing reaches past the first length check.
fn seeds() -> Vec<Vec<u8>> {
    let k = TestKey::new(1);
    let tx = k.spend(
        &[outpoint(Hash256([3; 32]), 1), outpoint(Hash256([4; 32]), 0)],
        &[(k.address(), 5), (TestKey::new(2).address(), u64::MAX)],
    );
    let cb = Transaction::coinbase(
        7,
        vec![1, 2, 3, 4],
        vec![TxOut {
            amount: 10,
            address: k.address(),
        }],
    );
    let header = BlockHeader {
        version: 1,
        prev_hash: Hash256([9; 32]),
        merkle_root: Hash256([8; 32]),
        time: 1_800_000_000,
        bits: CompactTarget::EASIEST,
        nonce: 42,
    };
    let block = Block {
        header,
        txs: vec![cb.clone(), tx.clone()],
    };
    let rec = |event| Record {
        seq: 5,
        prev_hash: Hash256([1; 32]),
        time: 1_800_000_000,
        event,
    };
    vec![
        tx.encode(),
        cb.encode(),
        header.encode(),
        block.encode(),
        rec(Event::BlockAccepted(Arc::new(block.clone()))).encode(),
        rec(Event::TipConnected(Hash256([2; 32]))).encode(),
        rec(Event::TipDisconnected(Hash256([2; 32]))).encode(),
        rec(Event::TxAdmitted(tx)).encode(),
        rec(Event::TxRemoved {
            txid: Hash256([6; 32]),
            reason: RemovalReason::Invalidated,
        })
        .encode(),
        rec(Event::Reset).encode(),
    ]
}

#[test]
fn seeds_roundtrip() {
    let s = seeds();
    assert_eq!(Transaction::decode(&s[0]).unwrap().encode(), s[0]);
    assert_eq!(Block::decode(&s[3]).unwrap().encode(), s[3]);
    for r in &s[4..] {
        assert_eq!(Record::decode(r).unwrap().encode(), *r);
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (
            any::<usize>(),
            prop_oneof![Just(0u8), Just(0xfd), Just(0xfe), Just(0xff), any::<u8>()]
        )
            .prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..10))
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<usize>(), 1..16usize).prop_map(|(i, n)| Mutation::Remove(i, n)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(mut b: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        let len = b.len().max(1);
        match m {
            Mutation::Flip(i, x) if !b.is_empty() => b[i % len] ^= x,
            Mutation::Set(i, x) if !b.is_empty() => b[i % len] = *x,
            Mutation::Insert(i, v) => {
                let at = i % (b.len() + 1);
                b.splice(at..at, v.iter().copied());
            }
            Mutation::Remove(i, n) if !b.is_empty() => {
                let at = i % len;
                let end = (at + n).min(b.len());
                b.drain(at..end);
            }
            Mutation::Truncate(i) => b.truncate(i % (b.len() + 1)),
            _ => {}
        }
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: bitplace_reliability::env_usize("PROPTEST_CASES", 2000) as u32, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_and_roundtrip(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        all(&bytes);
    }

    #[test]
    fn mutated_valid_encodings_never_panic_and_roundtrip(
        which in 0usize..10,
        muts in prop::collection::vec(mutation(), 1..4),
    ) {
        let b = apply(seeds()[which].clone(), &muts);
        all(&b);
    }
}
