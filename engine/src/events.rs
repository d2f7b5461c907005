//! The event log's records: the only source of truth.
//!
//! Every state change of the ledger is one [`Event`], appended to the log inside the
//! same redb write transaction that folds it into the projections. Each record carries
//! the hash of its predecessor, so a truncated, reordered or altered log is detected
//! when the chain of hashes is checked at startup.
//!
//! Record encoding (version 2; version 1 is the same without the time, and still read):
//! ```text
//! u8  record version (=2)
//! u64 sequence number (0, 1, 2, ... without gaps)
//! [32] hash of the previous record (zero for the first)
//! u64 Unix seconds when the record was written (the writer's clock; a fact about this
//!     node, like Bitcoin Core's mempool entry time — never used by consensus)
//! u8  event tag, then the event's fields:
//!   1 BlockAccepted   block encoding (header + transactions)
//!   2 TipConnected    block hash [32]
//!   3 TipDisconnected block hash [32]
//!   4 TxAdmitted      transaction encoding
//!   5 TxRemoved       txid [32], u8 reason
//!   6 Reset           (dev mode: back to genesis)
//! ```
//! The record hash is SHA-256d of the whole encoded record.

use crate::block::Block;
use crate::encoding::{Decode, DecodeError, Encode, Reader};
use crate::hash::Hash256;
use crate::header::{BlockHeader, HEADER_SIZE};
use crate::tx::Transaction;
use serde::Serialize;
use std::sync::Arc;

pub const RECORD_VERSION: u8 = 2;
/// The first version, without a time: logs written before version 2 still open.
pub const RECORD_VERSION_UNTIMED: u8 = 1;
/// Where the time sits in a version-2 record: after version, sequence and previous hash.
const TIME_OFFSET: usize = 1 + 8 + 32;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A block passed validation and is stored (on the best chain or a side branch).
    BlockAccepted(Arc<Block>),
    /// The block became the new tip of the best chain.
    TipConnected(Hash256),
    /// The tip block was taken off the best chain (a reorganisation).
    TipDisconnected(Hash256),
    /// A transaction entered the mempool.
    TxAdmitted(Transaction),
    /// A transaction left the mempool without being confirmed.
    TxRemoved {
        txid: Hash256,
        reason: RemovalReason,
    },
    /// Dev mode: every projection goes back to the genesis state.
    Reset,
}

/// Why a transaction left the mempool without being confirmed by a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RemovalReason {
    /// A confirmed transaction spends one of its inputs.
    Conflict,
    /// The mempool was full and it paid the lowest fee rate.
    Evicted,
    /// A reorganisation made it invalid (e.g. an input no longer exists).
    Invalidated,
}

impl RemovalReason {
    fn tag(self) -> u8 {
        match self {
            RemovalReason::Conflict => 1,
            RemovalReason::Evicted => 2,
            RemovalReason::Invalidated => 3,
        }
    }

    fn from_tag(tag: u8) -> Result<Self, DecodeError> {
        Ok(match tag {
            1 => RemovalReason::Conflict,
            2 => RemovalReason::Evicted,
            3 => RemovalReason::Invalidated,
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "removal reason",
                    tag,
                })
            }
        })
    }
}

/// One entry of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub prev_hash: Hash256,
    /// Unix seconds when it was written; 0 for a version-1 record (no time kept then).
    pub time: u64,
    pub event: Event,
}

impl Record {
    /// SHA-256d of the encoded record: what the next record's `prev_hash` must be.
    pub fn hash_of_bytes(bytes: &[u8]) -> Hash256 {
        Hash256::sha256d(bytes)
    }

    /// The block header of an encoded `BlockAccepted` record, read without decoding the
    /// block's transactions (sync serves headers by the thousand); None for any other
    /// record.
    pub fn block_header_of_bytes(bytes: &[u8]) -> Option<BlockHeader> {
        let header = Self::block_bytes_of(bytes)?.get(..HEADER_SIZE)?;
        Some(BlockHeader::from_bytes(header.try_into().ok()?))
    }

    /// The block's consensus encoding inside an encoded `BlockAccepted` record (the
    /// record's tail), found without decoding it; None for any other record. Why: a
    /// peer fetching a block wants exactly these bytes, and decoding 10,000 transactions
    /// only to encode them again was most of what serving a block cost.
    pub fn block_bytes_of(bytes: &[u8]) -> Option<&[u8]> {
        let tag_at = match *bytes.first()? {
            RECORD_VERSION => TIME_OFFSET + 8,
            RECORD_VERSION_UNTIMED => TIME_OFFSET,
            _ => return None,
        };
        if *bytes.get(tag_at)? != 1 {
            return None;
        }
        bytes.get(tag_at + 1..)
    }

    /// The time of an encoded record without decoding its event (0 when it has none).
    pub fn time_of_bytes(bytes: &[u8]) -> u64 {
        match bytes.first() {
            Some(&RECORD_VERSION) => bytes
                .get(TIME_OFFSET..TIME_OFFSET + 8)
                .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes"))),
            _ => 0,
        }
    }
}

impl Encode for Record {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.push(RECORD_VERSION);
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.prev_hash.0);
        out.extend_from_slice(&self.time.to_le_bytes());
        match &self.event {
            Event::BlockAccepted(b) => {
                out.push(1);
                b.encode_to(out);
            }
            Event::TipConnected(h) => {
                out.push(2);
                out.extend_from_slice(&h.0);
            }
            Event::TipDisconnected(h) => {
                out.push(3);
                out.extend_from_slice(&h.0);
            }
            Event::TxAdmitted(tx) => {
                out.push(4);
                tx.encode_to(out);
            }
            Event::TxRemoved { txid, reason } => {
                out.push(5);
                out.extend_from_slice(&txid.0);
                out.push(reason.tag());
            }
            Event::Reset => out.push(6),
        }
    }
}

impl Decode for Record {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u8()?;
        if version != RECORD_VERSION && version != RECORD_VERSION_UNTIMED {
            return Err(DecodeError::UnsupportedVersion {
                what: "log record",
                version: version as u32,
            });
        }
        let seq = r.u64()?;
        let prev_hash = Hash256(r.array()?);
        let time = if version == RECORD_VERSION {
            r.u64()?
        } else {
            0
        };
        let event = match r.u8()? {
            1 => Event::BlockAccepted(Arc::new(Block::decode_from(r)?)),
            2 => Event::TipConnected(Hash256(r.array()?)),
            3 => Event::TipDisconnected(Hash256(r.array()?)),
            4 => Event::TxAdmitted(Transaction::decode_from(r)?),
            5 => Event::TxRemoved {
                txid: Hash256(r.array()?),
                reason: RemovalReason::from_tag(r.u8()?)?,
            },
            6 => Event::Reset,
            tag => return Err(DecodeError::UnknownTag { what: "event", tag }),
        };
        Ok(Record {
            seq,
            prev_hash,
            time,
            event,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ChainParams;

    #[test]
    fn every_event_round_trips() {
        let genesis = ChainParams::dev().genesis();
        let events = vec![
            Event::BlockAccepted(Arc::new(genesis.clone())),
            Event::TipConnected(genesis.hash()),
            Event::TipDisconnected(genesis.hash()),
            Event::TxAdmitted(genesis.txs[0].clone()),
            Event::TxRemoved {
                txid: Hash256([4; 32]),
                reason: RemovalReason::Evicted,
            },
            Event::Reset,
        ];
        for (seq, event) in events.into_iter().enumerate() {
            let rec = Record {
                seq: seq as u64,
                prev_hash: Hash256([seq as u8; 32]),
                time: 1_800_000_000 + seq as u64,
                event,
            };
            let bytes = rec.encode();
            assert_eq!(Record::decode(&bytes).unwrap(), rec);
            assert_eq!(Record::time_of_bytes(&bytes), rec.time);
            let header = match &rec.event {
                Event::BlockAccepted(b) => Some(b.header),
                _ => None,
            };
            assert_eq!(Record::block_header_of_bytes(&bytes), header);
            let block = match &rec.event {
                Event::BlockAccepted(b) => Some(b.encode()),
                _ => None,
            };
            assert_eq!(Record::block_bytes_of(&bytes).map(<[u8]>::to_vec), block);
        }
    }

    #[test]
    fn a_block_records_header_reads_in_either_version_and_not_from_a_stub() {
        let genesis = ChainParams::dev().genesis();
        let rec = Record {
            seq: 0,
            prev_hash: Hash256::ZERO,
            time: 5,
            event: Event::BlockAccepted(Arc::new(genesis.clone())),
        };
        let v2 = rec.encode();
        let mut v1 = v2.clone();
        v1[0] = RECORD_VERSION_UNTIMED;
        v1.drain(TIME_OFFSET..TIME_OFFSET + 8);
        for bytes in [&v2, &v1] {
            assert_eq!(Record::block_header_of_bytes(bytes), Some(genesis.header));
            let block = genesis.encode();
            assert_eq!(Record::block_bytes_of(bytes), Some(&block[..]));
        }
        assert_eq!(
            Record::block_header_of_bytes(&v2[..v2.len().min(100)]),
            None
        );
        assert_eq!(Record::block_header_of_bytes(&[9, 0, 0]), None);
    }

    /// Logs written before records carried a time still open: a version-1 record is
    /// the version-2 layout without the time.
    #[test]
    fn version_1_records_decode_with_no_time() {
        let rec = Record {
            seq: 7,
            prev_hash: Hash256([3; 32]),
            time: 0,
            event: Event::TipConnected(Hash256([9; 32])),
        };
        let mut v1 = rec.encode();
        v1[0] = RECORD_VERSION_UNTIMED;
        v1.drain(TIME_OFFSET..TIME_OFFSET + 8);
        assert_eq!(Record::decode(&v1).unwrap(), rec);
        assert_eq!(Record::time_of_bytes(&v1), 0);
    }
}
