//! Lookups shared by the write path (inside a write transaction) and queries (inside a
//! read snapshot): generic over redb's `ReadableTable`.

use super::codec::*;
use super::{Bytes, StoreError, StoreResult, TX_POSITION_LEN};
use crate::encoding::Decode;
use crate::hash::Hash256;
use crate::tx::Transaction;
use redb::ReadableTable;

pub fn block_meta(
    t: &impl ReadableTable<Bytes, Bytes>,
    hash: &Hash256,
) -> StoreResult<Option<BlockMeta>> {
    match t.get(hash.0.as_slice())? {
        None => Ok(None),
        Some(v) => BlockMeta::decode(v.value())
            .map(Some)
            .ok_or_else(|| StoreError::corrupt(format!("block index row of {hash}"))),
    }
}

pub fn main_hash_at(
    t: &impl ReadableTable<u64, Bytes>,
    height: u64,
) -> StoreResult<Option<Hash256>> {
    match t.get(height)? {
        None => Ok(None),
        Some(v) => Ok(Some(Hash256(
            v.value()
                .try_into()
                .map_err(|_| StoreError::corrupt("main chain row"))?,
        ))),
    }
}

/// A mempool transaction and its fee.
pub fn mempool_tx(
    t: &impl ReadableTable<Bytes, Bytes>,
    txid: &Hash256,
) -> StoreResult<Option<(Transaction, u64)>> {
    match t.get(txid.0.as_slice())? {
        None => Ok(None),
        Some(v) => parse_mempool_row(v.value()).map(Some),
    }
}

/// A mempool row's transaction and fee.
pub fn parse_mempool_row(row: &[u8]) -> StoreResult<(Transaction, u64)> {
    let (_, fee, bytes) =
        decode_mempool_value(row).ok_or_else(|| StoreError::corrupt("mempool row"))?;
    let tx =
        Transaction::decode(bytes).map_err(|e| StoreError::corrupt(format!("mempool tx: {e}")))?;
    Ok((tx, fee))
}

/// Where a best-chain transaction sits, from its `tx_index` row's value: the main
/// chain's block at that height (a row whose height has no main-chain block is damaged).
pub fn tx_location_at(
    main: &impl ReadableTable<u64, Bytes>,
    txid: &Hash256,
    row: &[u8; TX_POSITION_LEN],
) -> StoreResult<TxLocation> {
    let at = TxPosition::decode(row).ok_or_else(|| StoreError::corrupt("tx index row"))?;
    let block = main_hash_at(main, at.height)?.ok_or_else(|| {
        StoreError::damaged(format!(
            "tx {txid} is indexed at height {}, which the main chain lacks",
            at.height
        ))
    })?;
    Ok(TxLocation {
        block,
        height: at.height,
        position: at.position,
    })
}
