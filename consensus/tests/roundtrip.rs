//! encode → decode → encode round trips for every consensus type, on random values: what
//! one node writes, every other node reads back as the same value and the same bytes.

use consensus::encoding::{Decode, Encode};
use consensus::{
    Address, Block, BlockHeader, CompactTarget, Hash256, OutPoint, Transaction, TxIn, TxInputs,
    TxOut,
};
use proptest::prelude::*;

fn hash() -> impl Strategy<Value = Hash256> {
    any::<[u8; 32]>().prop_map(Hash256)
}

fn address() -> impl Strategy<Value = Address> {
    any::<[u8; 20]>().prop_map(Address)
}

fn output() -> impl Strategy<Value = TxOut> {
    (1..=u64::MAX, address()).prop_map(|(amount, address)| TxOut { amount, address })
}

fn input() -> impl Strategy<Value = TxIn> {
    (
        hash(),
        any::<u32>(),
        any::<[u8; 32]>(),
        prop::collection::vec(any::<u8>(), 64),
    )
        .prop_map(|(txid, vout, public_key, sig)| TxIn {
            prevout: OutPoint { txid, vout },
            public_key,
            signature: sig.try_into().expect("64 bytes"),
        })
}

fn transaction() -> impl Strategy<Value = Transaction> {
    let inputs = prop_oneof![
        (any::<u64>(), prop::collection::vec(any::<u8>(), 0..=100)).prop_map(
            |(height, extra_nonce)| TxInputs::Coinbase {
                height,
                extra_nonce
            }
        ),
        prop::collection::vec(input(), 1..4).prop_map(TxInputs::Transfer),
    ];
    (inputs, prop::collection::vec(output(), 0..4)).prop_map(|(inputs, outputs)| Transaction {
        version: 1,
        inputs,
        outputs,
    })
}

fn header() -> impl Strategy<Value = BlockHeader> {
    (
        any::<u32>(),
        hash(),
        hash(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(version, prev_hash, merkle_root, time, bits, nonce)| BlockHeader {
                version,
                prev_hash,
                merkle_root,
                time,
                bits: CompactTarget(bits),
                nonce,
            },
        )
}

fn round_trip<T: Encode + Decode + PartialEq + std::fmt::Debug>(v: &T) {
    let bytes = v.encode();
    let back = T::decode(&bytes).expect("what we encode decodes");
    assert_eq!(&back, v);
    assert_eq!(back.encode(), bytes);
}

proptest! {
    #[test]
    fn transaction_round_trips(tx in transaction()) {
        round_trip(&tx);
        prop_assert_eq!(Transaction::decode(&tx.encode()).unwrap().txid(), tx.txid());
    }

    #[test]
    fn header_round_trips(h in header()) {
        round_trip(&h);
        prop_assert_eq!(BlockHeader::from_bytes(&h.to_bytes()), h);
    }

    #[test]
    fn block_round_trips(h in header(), txs in prop::collection::vec(transaction(), 0..4)) {
        round_trip(&Block { header: h, txs });
    }

    #[test]
    fn address_text_round_trips(a in address()) {
        prop_assert_eq!(a.to_string().parse::<Address>().unwrap(), a);
    }

    #[test]
    fn hash_display_round_trips(h in hash()) {
        prop_assert_eq!(h.to_string().parse::<Hash256>().unwrap(), h);
    }
}
