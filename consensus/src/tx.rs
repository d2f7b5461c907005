//! Transactions and their consensus encoding (version 1).
//!
//! Body (hashed for the txid, and what every signature signs):
//! ```text
//! u32 version (=1)
//! u8  kind: 0 = coinbase, 1 = transfer
//! coinbase: u64 height, CompactSize len + extra-nonce bytes (≤ 100)
//! transfer: CompactSize n, n × { prev txid [32], u32 vout, ed25519 public key [32] }
//! CompactSize m, m × { u64 amount, address [20] }
//! ```
//! Full encoding = body, then for a transfer one 64-byte signature per input.
//! txid = SHA-256d(body), so a txid never changes when signatures do; each signature
//! is an ed25519 signature over the 32 txid bytes, which commit to every input (its
//! outpoint and key) and every output.

use crate::address::Address;
use crate::encoding::{
    compact_size_len, put_compact_size, put_var_bytes, Decode, DecodeError, Encode, Reader,
};
use crate::hash::Hash256;
use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};

pub const TX_VERSION: u32 = 1;
/// Most bytes of extra nonce a coinbase may carry.
pub const MAX_EXTRA_NONCE: usize = 100;
/// Most inputs or outputs one transaction may have (far above any block need).
pub const MAX_TX_ITEMS: u64 = 10_000;

/// An input's bytes in the body: prev txid, vout, public key.
const INPUT_BODY_LEN: usize = 32 + 4 + 32;
/// An output's bytes: amount, address.
const OUTPUT_LEN: usize = 8 + 20;
/// A signature's bytes, after the body, one per input.
const SIGNATURE_LEN: usize = 64;

const KIND_COINBASE: u8 = 0;
const KIND_TRANSFER: u8 = 1;

/// A reference to one output of an earlier transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OutPoint {
    pub txid: Hash256,
    pub vout: u32,
}

impl OutPoint {
    /// 36 bytes: txid then vout (big-endian, so keys sort by txid then index).
    pub fn key(&self) -> [u8; 36] {
        let mut k = [0u8; 36];
        k[..32].copy_from_slice(&self.txid.0);
        k[32..].copy_from_slice(&self.vout.to_be_bytes());
        k
    }

    pub fn from_key(k: &[u8]) -> Option<OutPoint> {
        let k: &[u8; 36] = k.try_into().ok()?;
        Some(OutPoint {
            txid: Hash256(k[..32].try_into().ok()?),
            vout: u32::from_be_bytes(k[32..].try_into().ok()?),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxIn {
    pub prevout: OutPoint,
    #[serde(with = "hex_array")]
    pub public_key: [u8; 32],
    #[serde(with = "hex_array")]
    pub signature: [u8; 64],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TxOut {
    pub amount: u64,
    pub address: Address,
}

/// Where a transaction's value comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxInputs {
    /// New coins: the block reward plus fees. `height` makes every coinbase unique;
    /// `extra_nonce` gives miners more search space than the header's 32-bit nonce.
    Coinbase {
        height: u64,
        #[serde(with = "hex_vec")]
        extra_nonce: Vec<u8>,
    },
    Transfer(Vec<TxIn>),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    pub version: u32,
    pub inputs: TxInputs,
    pub outputs: Vec<TxOut>,
}

impl Transaction {
    pub fn coinbase(height: u64, extra_nonce: Vec<u8>, outputs: Vec<TxOut>) -> Transaction {
        Transaction {
            version: TX_VERSION,
            inputs: TxInputs::Coinbase {
                height,
                extra_nonce,
            },
            outputs,
        }
    }

    pub fn is_coinbase(&self) -> bool {
        matches!(self.inputs, TxInputs::Coinbase { .. })
    }

    /// The spending inputs (empty for a coinbase).
    pub fn spends(&self) -> &[TxIn] {
        match &self.inputs {
            TxInputs::Transfer(ins) => ins,
            TxInputs::Coinbase { .. } => &[],
        }
    }

    /// The signed body: everything except signatures.
    pub fn body_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body_size());
        self.encode_body(&mut out);
        out
    }

    pub fn txid(&self) -> Hash256 {
        Hash256::sha256d(&self.body_bytes())
    }

    /// Sum of outputs, or None on overflow.
    pub fn output_total(&self) -> Option<u64> {
        self.outputs
            .iter()
            .try_fold(0u64, |acc, o| acc.checked_add(o.amount))
    }

    /// Size of the full encoding in bytes, counted rather than encoded: a block's size is
    /// asked for several times on its way in (the size limit, the block index, sync's
    /// group limit), and encoding a 10,000-transaction block each time cost more than
    /// its merkle tree.
    pub fn size(&self) -> usize {
        self.body_size() + SIGNATURE_LEN * self.spends().len()
    }

    /// Size of the body (what the txid hashes) in bytes; see the module docs.
    fn body_size(&self) -> usize {
        let inputs = match &self.inputs {
            TxInputs::Coinbase { extra_nonce, .. } => {
                8 + compact_size_len(extra_nonce.len() as u64) + extra_nonce.len()
            }
            TxInputs::Transfer(ins) => {
                compact_size_len(ins.len() as u64) + INPUT_BODY_LEN * ins.len()
            }
        };
        let outputs = compact_size_len(self.outputs.len() as u64) + OUTPUT_LEN * self.outputs.len();
        4 + 1 + inputs + outputs
    }

    fn encode_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.version.to_le_bytes());
        match &self.inputs {
            TxInputs::Coinbase {
                height,
                extra_nonce,
            } => {
                out.push(KIND_COINBASE);
                out.extend_from_slice(&height.to_le_bytes());
                put_var_bytes(out, extra_nonce);
            }
            TxInputs::Transfer(ins) => {
                out.push(KIND_TRANSFER);
                put_compact_size(out, ins.len() as u64);
                for i in ins {
                    out.extend_from_slice(&i.prevout.txid.0);
                    out.extend_from_slice(&i.prevout.vout.to_le_bytes());
                    out.extend_from_slice(&i.public_key);
                }
            }
        }
        put_compact_size(out, self.outputs.len() as u64);
        for o in &self.outputs {
            out.extend_from_slice(&o.amount.to_le_bytes());
            out.extend_from_slice(&o.address.0);
        }
    }

    /// Signs every input with the key that owns it: `keys[i]` signs input `i`.
    /// The public keys must already be in the inputs (they are part of the txid).
    pub fn sign_inputs(&mut self, keys: &[&SigningKey]) {
        let msg = self.txid();
        if let TxInputs::Transfer(ins) = &mut self.inputs {
            for (input, key) in ins.iter_mut().zip(keys) {
                input.signature = key.sign(&msg.0).to_bytes();
            }
        }
    }
}

impl Encode for Transaction {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.encode_body(out);
        for i in self.spends() {
            out.extend_from_slice(&i.signature);
        }
    }
}

impl Decode for Transaction {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u32()?;
        if version != TX_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                what: "transaction",
                version,
            });
        }
        let mut inputs = match r.u8()? {
            KIND_COINBASE => TxInputs::Coinbase {
                height: r.u64()?,
                extra_nonce: r.var_bytes(MAX_EXTRA_NONCE as u64)?.to_vec(),
            },
            KIND_TRANSFER => {
                let n = r.length(MAX_TX_ITEMS)?;
                let mut ins = Vec::with_capacity(n);
                for _ in 0..n {
                    ins.push(TxIn {
                        prevout: OutPoint {
                            txid: Hash256(r.array()?),
                            vout: r.u32()?,
                        },
                        public_key: r.array()?,
                        signature: [0; 64],
                    });
                }
                TxInputs::Transfer(ins)
            }
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "tx kind",
                    tag,
                })
            }
        };
        let m = r.length(MAX_TX_ITEMS)?;
        let mut outputs = Vec::with_capacity(m);
        for _ in 0..m {
            outputs.push(TxOut {
                amount: r.u64()?,
                address: Address(r.array()?),
            });
        }
        if let TxInputs::Transfer(ins) = &mut inputs {
            for i in ins.iter_mut() {
                i.signature = r.array()?;
            }
        }
        Ok(Transaction {
            version,
            inputs,
            outputs,
        })
    }
}

/// Serde helpers: fixed byte arrays as lowercase hex strings.
pub mod hex_array {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer, const N: usize>(v: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let mut out = [0u8; N];
        hex::decode_to_slice(s.as_bytes(), &mut out)
            .map_err(|_| serde::de::Error::custom(format!("expected {} hex digits", 2 * N)))?;
        Ok(out)
    }
}

/// Serde helpers: byte vectors as lowercase hex strings.
pub mod hex_vec {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        hex::decode(s.as_bytes()).map_err(|_| serde::de::Error::custom("expected hex digits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    fn sample_transfer() -> (Transaction, SigningKey) {
        let key = SigningKey::from_bytes(&[3u8; 32]);
        let mut tx = Transaction {
            version: TX_VERSION,
            inputs: TxInputs::Transfer(vec![TxIn {
                prevout: OutPoint {
                    txid: Hash256([5; 32]),
                    vout: 1,
                },
                public_key: key.verifying_key().to_bytes(),
                signature: [0; 64],
            }]),
            outputs: vec![TxOut {
                amount: 42,
                address: Address([8; 20]),
            }],
        };
        tx.sign_inputs(&[&key]);
        (tx, key)
    }

    #[test]
    fn txid_ignores_signatures() {
        let (tx, _) = sample_transfer();
        let mut other = tx.clone();
        if let TxInputs::Transfer(ins) = &mut other.inputs {
            ins[0].signature = [1; 64];
        }
        assert_eq!(tx.txid(), other.txid());
        assert_ne!(tx.encode(), other.encode());
    }

    #[test]
    fn encode_decode_round_trip() {
        let (tx, _) = sample_transfer();
        assert_eq!(Transaction::decode(&tx.encode()).unwrap(), tx);
        let cb = Transaction::coinbase(7, vec![1, 2, 3], tx.outputs.clone());
        assert_eq!(Transaction::decode(&cb.encode()).unwrap(), cb);
    }

    fn transfer(inputs: Vec<([u8; 32], u32)>, outputs: Vec<TxOut>) -> Transaction {
        let ins = inputs.into_iter().map(|(txid, vout)| TxIn {
            prevout: OutPoint {
                txid: Hash256(txid),
                vout,
            },
            public_key: txid,
            signature: [vout as u8; 64],
        });
        Transaction {
            version: TX_VERSION,
            inputs: TxInputs::Transfer(ins.collect()),
            outputs,
        }
    }

    proptest! {
        /// The counted sizes are the encoded ones, across every CompactSize width.
        #[test]
        fn size_is_the_encoded_length(
            inputs in vec(any::<([u8; 32], u32)>(), 0..300),
            outputs in vec(any::<(u64, [u8; 20])>(), 0..300),
            extra in vec(any::<u8>(), 0..=MAX_EXTRA_NONCE),
            coinbase: bool,
        ) {
            let output = |(amount, a): (u64, [u8; 20])| TxOut { amount, address: Address(a) };
            let outputs = outputs.into_iter().map(output).collect();
            let tx = if coinbase {
                Transaction::coinbase(7, extra, outputs)
            } else {
                transfer(inputs, outputs)
            };
            prop_assert_eq!(tx.size(), tx.encode().len());
            prop_assert_eq!(tx.body_size(), tx.body_bytes().len());
        }
    }

    #[test]
    fn truncated_and_trailing_bytes_are_errors() {
        let (tx, _) = sample_transfer();
        let bytes = tx.encode();
        assert!(Transaction::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            Transaction::decode(&longer),
            Err(DecodeError::TrailingBytes(1))
        );
    }

    #[test]
    fn json_round_trip() {
        let (tx, _) = sample_transfer();
        let json = serde_json::to_string(&tx).unwrap();
        assert_eq!(serde_json::from_str::<Transaction>(&json).unwrap(), tx);
    }
}
