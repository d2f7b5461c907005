//! Pinned formats: bytes that must never change without a new version. A change here is a
//! consensus change (every node, miner, wallet and the web page would disagree), so these
//! literals are written out, not computed by the code under test.

use consensus::encoding::{Decode, Encode};
use consensus::{Address, ChainParams, Hash256, OutPoint, Transaction, TxIn, TxInputs, TxOut};
use ed25519_dalek::SigningKey;
use serde_json::Value;

/// The genesis block of each network, as every node since the first release computes it.
#[test]
fn genesis_hashes_are_pinned_per_network() {
    assert_eq!(
        ChainParams::main().genesis_hash().to_string(),
        MAIN_GENESIS,
        "main genesis changed: that is a new network, not a fix"
    );
    assert_eq!(
        ChainParams::dev().genesis_hash().to_string(),
        DEV_GENESIS,
        "dev genesis changed"
    );
}

const MAIN_GENESIS: &str = "3b64bedaece190cca55c4454f421d57d65d20f9926cb0ff0215ae5bceb31704d";
const DEV_GENESIS: &str = "ec72195752fb9c93c2ee904442c262b788020064c5ca2f17a8eb80b16a5022f0";

fn vector() -> Value {
    serde_json::from_str(include_str!("vectors/golden_tx.json")).expect("golden_tx.json parses")
}

fn hex32(v: &Value) -> [u8; 32] {
    hex::decode(v.as_str().expect("hex string"))
        .expect("hex")
        .try_into()
        .expect("32 bytes")
}

/// The same vector `api/web/test/golden.test.mjs` checks the page's encoder against.
#[test]
fn golden_transaction_vector_body_txid_signature_and_encoding() {
    let v = vector();
    let key = SigningKey::from_bytes(&hex32(&v["signing_key_seed"]));
    assert_eq!(hex::encode(key.verifying_key().as_bytes()), v["public_key"]);
    let inputs = v["inputs"]
        .as_array()
        .expect("inputs")
        .iter()
        .map(|i| TxIn {
            prevout: OutPoint {
                txid: i["txid"].as_str().expect("txid").parse().expect("txid hex"),
                vout: i["vout"].as_u64().expect("vout") as u32,
            },
            public_key: *key.verifying_key().as_bytes(),
            signature: [0; 64],
        })
        .collect();
    let outputs = v["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .map(|o| {
            let address: Address = o["address"]
                .as_str()
                .expect("address")
                .parse()
                .expect("bp1");
            assert_eq!(hex::encode(address.0), o["payload"]);
            TxOut {
                amount: o["amount"].as_u64().expect("amount"),
                address,
            }
        })
        .collect();
    let mut tx = Transaction {
        version: 1,
        inputs: TxInputs::Transfer(inputs),
        outputs,
    };
    assert_eq!(hex::encode(tx.body_bytes()), v["body_hex"]);
    assert_eq!(tx.txid().to_string(), v["txid"]);
    tx.sign_inputs(&[&key]);
    assert_eq!(hex::encode(tx.spends()[0].signature), v["signature"]);
    let hex = v["hex"].as_str().expect("hex");
    assert_eq!(hex::encode(tx.encode()), hex);
    let decoded = Transaction::decode(&hex::decode(hex).expect("hex")).expect("decodes");
    assert_eq!(decoded, tx);
    assert_eq!(
        decoded.txid(),
        v["txid"].as_str().unwrap().parse::<Hash256>().unwrap()
    );
}

/// The fee policy's vectors, which the browser wallet (api/web/test/fee.test.mjs) and the
/// wallet's coin selection check too: the size of a signed transfer with n inputs and m
/// outputs, and the fee at each rate.
#[test]
fn fee_policy_vectors_match_the_shared_policy() {
    let v: Value = serde_json::from_str(include_str!("vectors/fee_policy.json")).unwrap();
    assert_eq!(
        v["min_relay_fee_rate"].as_u64(),
        Some(consensus::fee::MIN_RELAY_FEE_RATE)
    );
    assert_eq!(
        v["default_fee_rate"].as_u64(),
        Some(consensus::fee::DEFAULT_FEE_RATE)
    );
    for c in v["fees"].as_array().unwrap() {
        let (n, m) = (
            c["inputs"].as_u64().unwrap(),
            c["outputs"].as_u64().unwrap(),
        );
        let tx = Transaction {
            version: consensus::tx::TX_VERSION,
            inputs: TxInputs::Transfer(
                (0..n)
                    .map(|i| TxIn {
                        prevout: OutPoint {
                            txid: Hash256([1; 32]),
                            vout: i as u32,
                        },
                        public_key: [2; 32],
                        signature: [3; 64],
                    })
                    .collect(),
            ),
            outputs: (0..m)
                .map(|_| TxOut {
                    amount: 1,
                    address: Address([4; 20]),
                })
                .collect(),
        };
        let size = tx.encode().len();
        assert_eq!(size as u64, c["size"].as_u64().unwrap(), "{c}");
        let rate = c["rate"].as_u64().unwrap();
        let fee = consensus::fee::policy_fee(size, rate).unwrap();
        assert_eq!(fee, c["fee"].as_u64().unwrap(), "{c}");
        assert!(consensus::fee::fee_rate(fee, size) >= rate);
    }
}
