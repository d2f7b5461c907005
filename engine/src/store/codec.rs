//! Fixed-layout values stored in the projection tables. All of these are derived data:
//! they can be dropped and rebuilt from the log at any time.

use crate::address::Address;
use crate::hash::Hash256;
use crate::header::BlockHeader;
use crate::pow::CompactTarget;
use primitive_types::U256;

fn word<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    b[at..at + N].try_into().expect("fixed layout")
}

/// An unspent output and where it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UtxoEntry {
    pub amount: u64,
    pub address: Address,
    pub height: u64,
    pub coinbase: bool,
}

impl UtxoEntry {
    /// A row's length: the height is stored in 4 bytes (a chain of 2^32 blocks is
    /// centuries away; the writer refuses a taller one rather than wrap).
    pub const LEN: usize = 33;

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[..8].copy_from_slice(&self.amount.to_le_bytes());
        b[8..28].copy_from_slice(&self.address.0);
        b[28..32].copy_from_slice(&row_height(self.height).to_le_bytes());
        b[32] = self.coinbase as u8;
        b
    }

    pub fn decode(b: &[u8]) -> Option<UtxoEntry> {
        if b.len() != Self::LEN {
            return None;
        }
        Some(UtxoEntry {
            amount: u64::from_le_bytes(word(b, 0)),
            address: Address(word(b, 8)),
            height: u64::from(u32::from_le_bytes(word(b, 28))),
            coinbase: b[32] != 0,
        })
    }

    /// The entry as the UTXO-set hash digests it: amount, address, height in 8 bytes,
    /// coinbase (the row layout of format 1, kept so the hash does not change with how
    /// rows are stored).
    pub fn digest_bytes(&self) -> [u8; 37] {
        let mut b = [0u8; 37];
        b[..8].copy_from_slice(&self.amount.to_le_bytes());
        b[8..28].copy_from_slice(&self.address.0);
        b[28..36].copy_from_slice(&self.height.to_le_bytes());
        b[36] = self.coinbase as u8;
        b
    }
}

/// A height as projection rows store it: 4 bytes. Heights come from the chain the node
/// itself connected, one block at a time, so one past `u32::MAX` cannot be reached in
/// practice; the assertion makes the limit explicit instead of wrapping.
fn row_height(height: u64) -> u32 {
    u32::try_from(height).expect("block heights fit in 32 bits")
}

/// What the block index knows about a stored block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockMeta {
    pub hash: Hash256,
    pub height: u64,
    pub chainwork: U256,
    pub prev: Hash256,
    /// Sequence number of the log record holding the block.
    pub seq: u64,
    pub time: u32,
    pub bits: CompactTarget,
    pub tx_count: u32,
    pub size: u32,
    /// The rest of the header (with `prev`, `time` and `bits` above), so the 80-byte
    /// header is served from this row: reading it from the log would read the whole
    /// block record, up to 8 MB, for each header a peer asks for.
    pub version: u32,
    pub merkle_root: Hash256,
    pub nonce: u32,
}

impl BlockMeta {
    pub const LEN: usize = 168;

    /// The block's header, as the row describes it.
    pub fn header(&self) -> BlockHeader {
        BlockHeader {
            version: self.version,
            prev_hash: self.prev,
            merkle_root: self.merkle_root,
            time: self.time,
            bits: self.bits,
            nonce: self.nonce,
        }
    }

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[..32].copy_from_slice(&self.hash.0);
        b[32..40].copy_from_slice(&self.height.to_le_bytes());
        b[40..72].copy_from_slice(&self.chainwork.to_big_endian());
        b[72..104].copy_from_slice(&self.prev.0);
        b[104..112].copy_from_slice(&self.seq.to_le_bytes());
        b[112..116].copy_from_slice(&self.time.to_le_bytes());
        b[116..120].copy_from_slice(&self.bits.0.to_le_bytes());
        b[120..124].copy_from_slice(&self.tx_count.to_le_bytes());
        b[124..128].copy_from_slice(&self.size.to_le_bytes());
        b[128..132].copy_from_slice(&self.version.to_le_bytes());
        b[132..164].copy_from_slice(&self.merkle_root.0);
        b[164..168].copy_from_slice(&self.nonce.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<BlockMeta> {
        if b.len() != Self::LEN {
            return None;
        }
        Some(BlockMeta {
            hash: Hash256(word(b, 0)),
            height: u64::from_le_bytes(word(b, 32)),
            chainwork: U256::from_big_endian(&b[40..72]),
            prev: Hash256(word(b, 72)),
            seq: u64::from_le_bytes(word(b, 104)),
            time: u32::from_le_bytes(word(b, 112)),
            bits: CompactTarget(u32::from_le_bytes(word(b, 116))),
            tx_count: u32::from_le_bytes(word(b, 120)),
            size: u32::from_le_bytes(word(b, 124)),
            version: u32::from_le_bytes(word(b, 128)),
            merkle_root: Hash256(word(b, 132)),
            nonce: u32::from_le_bytes(word(b, 164)),
        })
    }
}

/// Where a confirmed transaction sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxLocation {
    pub block: Hash256,
    pub height: u64,
    pub position: u32,
}

/// A `tx_index` row's value: height and position only. The block is the main chain's at
/// that height (the index holds best-chain transactions only: a disconnect deletes its
/// rows), so storing its hash again in every row would be 32 bytes of copy per
/// transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxPosition {
    pub height: u64,
    pub position: u32,
}

impl TxPosition {
    pub const LEN: usize = 8;

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[..4].copy_from_slice(&row_height(self.height).to_le_bytes());
        b[4..].copy_from_slice(&self.position.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<TxPosition> {
        if b.len() != Self::LEN {
            return None;
        }
        Some(TxPosition {
            height: u64::from(u32::from_le_bytes(word(b, 0))),
            position: u32::from_le_bytes(word(b, 4)),
        })
    }
}

/// Spent outputs per `undo` row: a block's undo data is cut into rows of this many
/// entries (3,993 bytes, so a row fills a 4 KiB page), keyed by [`undo_key`]. One value
/// per block would be up to 1.5 MB, and redb gives such a value a power-of-two run of
/// pages (a quarter wasted on average) that compaction cannot move; whole entries per
/// row let a reader fetch only the rows of the inputs it wants.
pub const UNDO_ROW_ENTRIES: usize = 121;

/// Key of an `undo` row: block hash ‖ row index (big-endian, so a block's rows are
/// contiguous and in order).
pub fn undo_key(block: &Hash256, row: u32) -> [u8; 36] {
    let mut k = [0u8; 36];
    k[..32].copy_from_slice(&block.0);
    k[32..].copy_from_slice(&row.to_be_bytes());
    k
}

/// Key of an address-history row: address, height, position (big-endian, so rows sort
/// by address then chain order).
pub fn history_key(address: &Address, height: u64, position: u32) -> [u8; HISTORY_KEY_LEN] {
    let mut k = [0u8; HISTORY_KEY_LEN];
    k[..20].copy_from_slice(&address.0);
    k[20..24].copy_from_slice(&row_height(height).to_be_bytes());
    k[24..].copy_from_slice(&position.to_be_bytes());
    k
}

/// The height an address-history key names.
pub fn history_key_height(k: &[u8; HISTORY_KEY_LEN]) -> u64 {
    u64::from(u32::from_be_bytes(word(k, 20)))
}

/// Lengths of an address-history row's key and value, and of an address → outpoint key.
pub const HISTORY_KEY_LEN: usize = 28;
pub const HISTORY_VALUE_LEN: usize = 40;
pub const ADDR_OUTPOINT_LEN: usize = 56;

/// Value of an address-history row: txid and the signed change of the address's balance.
pub fn history_value(txid: &Hash256, delta: i64) -> [u8; HISTORY_VALUE_LEN] {
    let mut v = [0u8; HISTORY_VALUE_LEN];
    v[..32].copy_from_slice(&txid.0);
    v[32..].copy_from_slice(&delta.to_le_bytes());
    v
}

pub fn decode_history_value(v: &[u8]) -> Option<(Hash256, i64)> {
    if v.len() != 40 {
        return None;
    }
    Some((Hash256(word(v, 0)), i64::from_le_bytes(word(v, 32))))
}

/// Key of an address → outpoint index row.
pub fn address_outpoint_key(address: &Address, outpoint_key: &[u8; 36]) -> [u8; ADDR_OUTPOINT_LEN] {
    let mut k = [0u8; ADDR_OUTPOINT_LEN];
    k[..20].copy_from_slice(&address.0);
    k[20..].copy_from_slice(outpoint_key);
    k
}

/// Key of an address → mempool txid index row.
pub fn address_txid_key(address: &Address, txid: &Hash256) -> [u8; 52] {
    let mut k = [0u8; 52];
    k[..20].copy_from_slice(&address.0);
    k[20..].copy_from_slice(&txid.0);
    k
}

/// Fee rate in millionths of a unit per byte: fine enough to order any two fees.
pub fn fee_rate_micro(fee: u64, size: usize) -> u64 {
    ((fee as u128 * 1_000_000) / size.max(1) as u128).min(u64::MAX as u128) as u64
}

/// Key of the mempool's fee-rate index: rate (big-endian, lowest first), then txid.
pub fn rate_key(rate_micro: u64, txid: &Hash256) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..8].copy_from_slice(&rate_micro.to_be_bytes());
    k[8..].copy_from_slice(&txid.0);
    k
}

/// A mempool row: admission sequence, fee, then the full transaction encoding.
pub fn mempool_value(seq: u64, fee: u64, tx_bytes: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(16 + tx_bytes.len());
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(&fee.to_le_bytes());
    v.extend_from_slice(tx_bytes);
    v
}

pub fn decode_mempool_value(v: &[u8]) -> Option<(u64, u64, &[u8])> {
    if v.len() < 16 {
        return None;
    }
    Some((
        u64::from_le_bytes(word(v, 0)),
        u64::from_le_bytes(word(v, 8)),
        &v[16..],
    ))
}

/// Key of a [`super::SIDE_BLOCKS`] row: chainwork (big-endian, so rows sort by work) ‖ hash.
pub fn side_block_key(chainwork: &U256, hash: &Hash256) -> [u8; 64] {
    let mut k = [0u8; 64];
    k[..32].copy_from_slice(&chainwork.to_big_endian());
    k[32..].copy_from_slice(&hash.0);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let u = UtxoEntry {
            amount: 5,
            address: Address([3; 20]),
            height: 9,
            coinbase: true,
        };
        assert_eq!(UtxoEntry::decode(&u.encode()), Some(u));
        let m = BlockMeta {
            hash: Hash256([1; 32]),
            height: 4,
            chainwork: U256::from(77u64) << 100,
            prev: Hash256([2; 32]),
            seq: 12,
            time: 99,
            bits: CompactTarget::EASIEST,
            tx_count: 3,
            size: 400,
            version: 5,
            merkle_root: Hash256([6; 32]),
            nonce: 0xdead_beef,
        };
        assert_eq!(BlockMeta::decode(&m.encode()), Some(m));
        assert_eq!(BlockMeta::decode(&m.encode()[..128]), None);
        assert_eq!(m.header().nonce, 0xdead_beef);
        let p = TxPosition {
            height: u64::from(u32::MAX),
            position: 2,
        };
        assert_eq!(TxPosition::decode(&p.encode()), Some(p));
        assert_eq!(TxPosition::decode(&[0; 7]), None);
        let k = history_key(&Address([4; 20]), 70_000, 3);
        assert_eq!(history_key_height(&k), 70_000);
        assert!(k < history_key(&Address([4; 20]), 70_001, 0), "chain order");
    }
}
