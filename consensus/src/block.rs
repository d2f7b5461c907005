//! Blocks: a header and transactions, the coinbase first.
//!
//! Encoding: the 80-byte header, CompactSize count, then each transaction's full encoding.

use crate::encoding::{compact_size_len, put_compact_size, Decode, DecodeError, Encode, Reader};
use crate::hash::Hash256;
use crate::header::{BlockHeader, HEADER_SIZE};
use crate::merkle::merkle_root;
use crate::tx::Transaction;
use serde::{Deserialize, Serialize};

/// Most transactions a decoder will read in one block, above any configurable limit.
pub const MAX_DECODE_TXS: u64 = 1 << 20;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub header: BlockHeader,
    pub txs: Vec<Transaction>,
}

impl Block {
    pub fn hash(&self) -> Hash256 {
        self.header.hash()
    }

    pub fn txids(&self) -> Vec<Hash256> {
        self.txs.iter().map(Transaction::txid).collect()
    }

    /// The merkle root of the transactions and whether the list is mutated.
    pub fn compute_merkle_root(&self) -> (Hash256, bool) {
        merkle_root(&self.txids())
    }

    /// Size of the encoding in bytes, counted without encoding (see [`Transaction::size`]).
    pub fn size(&self) -> usize {
        let txs: usize = self.txs.iter().map(Transaction::size).sum();
        HEADER_SIZE + compact_size_len(self.txs.len() as u64) + txs
    }
}

impl Encode for Block {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.header.encode_to(out);
        put_compact_size(out, self.txs.len() as u64);
        for tx in &self.txs {
            tx.encode_to(out);
        }
    }
}

impl Decode for Block {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let header = BlockHeader::decode_from(r)?;
        let n = r.length(MAX_DECODE_TXS)?;
        // Each transaction takes at least 10 bytes, so a count past that is a lie.
        if n > r.remaining() / 10 + 1 {
            return Err(DecodeError::LengthTooLarge(n as u64));
        }
        let mut txs = Vec::with_capacity(n);
        for _ in 0..n {
            txs.push(Transaction::decode_from(r)?);
        }
        Ok(Block { header, txs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::Address;
    use crate::params::ChainParams;
    use crate::tx::TxOut;

    /// The counted size is the encoded one, past the one-byte transaction count too.
    #[test]
    fn size_is_the_encoded_length() {
        for count in [1usize, 252, 253, 300] {
            let txs = (0..count)
                .map(|i| {
                    let out = TxOut {
                        amount: i as u64,
                        address: Address([i as u8; 20]),
                    };
                    Transaction::coinbase(i as u64, vec![1; i % 7], vec![out])
                })
                .collect();
            let header = ChainParams::dev().genesis().header;
            let block = Block { header, txs };
            assert_eq!(block.size(), block.encode().len(), "{count} transactions");
        }
    }
}
