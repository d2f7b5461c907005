//! What subscribers hear after a write commits: one [`Notification`] per folded event,
//! carrying the event's log sequence number (the SSE id) and the addresses whose
//! balances it touched.

use crate::address::Address;
use crate::events::RemovalReason;
use crate::hash::Hash256;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Notification {
    pub seq: u64,
    pub kind: NotificationKind,
    /// Addresses whose confirmed or unconfirmed balance this event changed.
    pub addresses: Vec<Address>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum NotificationKind {
    /// A block was stored (best chain or side branch); peers may want it relayed.
    BlockStored {
        hash: Hash256,
        height: u64,
    },
    BlockConnected {
        hash: Hash256,
        height: u64,
        txids: Vec<Hash256>,
    },
    BlockDisconnected {
        hash: Hash256,
        height: u64,
    },
    TxAdded {
        txid: Hash256,
        fee: u64,
    },
    TxRemoved {
        txid: Hash256,
        reason: RemovalReason,
    },
    /// Dev mode reset: everything went back to genesis.
    Reset,
}

/// Collects addresses once each, in first-seen order.
pub(crate) fn push_unique(list: &mut Vec<Address>, a: Address) {
    if !list.contains(&a) {
        list.push(a);
    }
}
