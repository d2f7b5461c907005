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

    /// The set of `order`, addresses already once each.
    fn of_unique(order: Vec<Address>) -> Self {
        AddressSet {
            seen: order.iter().copied().collect(),
            order,
        }
    }

    pub(crate) fn into_vec(self) -> Vec<Address> {
        self.order
    }
}

/// Addresses up to which [`unique_addresses`] scans its list rather than hash.
const SCAN_MAX: usize = 16;

/// `all`, once each, in first-seen order: a scan of the list for a transaction's few
/// addresses, a hash set past [`SCAN_MAX`] (a payout to 10,000 addresses cost 10,000
/// scans of a growing list; in a rebuild of fan-out blocks that was 3 % of the time).
pub(crate) fn unique_addresses(all: impl IntoIterator<Item = Address>) -> Vec<Address> {
    let mut all = all.into_iter();
    let mut list = Vec::new();
    while list.len() <= SCAN_MAX {
        let Some(a) = all.next() else {
            return list;
        };
        if !list.contains(&a) {
            list.push(a);
        }
    }
    let mut set = AddressSet::of_unique(list);
    all.for_each(|a| set.insert(a));
    set.into_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_addresses_keeps_first_seen_order_past_the_scan() {
        let a = |i: u8| Address([i; 20]);
        let many: Vec<Address> = (0..100).chain((0..100).rev()).map(|i| a(i % 40)).collect();
        let expected: Vec<Address> = (0..40).map(a).collect();
        assert_eq!(unique_addresses(many), expected);
        assert_eq!(unique_addresses([a(2), a(1), a(2)]), vec![a(2), a(1)]);
    }
}
