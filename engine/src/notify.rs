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

/// Addresses collected once each, in first-seen order, for sets that grow large (every
/// address a block touches): membership is a hash lookup, not a scan of the list.
#[derive(Default)]
pub(crate) struct AddressSet {
    seen: foldhash::HashSet<Address>,
    order: Vec<Address>,
}

impl AddressSet {
    pub(crate) fn insert(&mut self, a: Address) {
        if self.seen.insert(a) {
            self.order.push(a);
        }
    }

    pub(crate) fn into_vec(self) -> Vec<Address> {
        self.order
    }
}

/// Collects addresses once each, in first-seen order (for short lists).
pub(crate) fn push_unique(list: &mut Vec<Address>, a: Address) {
    if !list.contains(&a) {
        list.push(a);
    }
}
