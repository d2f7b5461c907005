//! The engine's error type.

use crate::store::StoreError;
use crate::validation::Reject;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The input broke a rule; nothing was written.
    #[error("rejected: {0}")]
    Rejected(#[from] Reject),
    /// Storage failed; the write (if any) was not acknowledged and nothing was applied.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The data directory cannot be used (wrong network, corrupt log, ...): refuse to start.
    #[error("refusing to open the data directory: {0}")]
    Open(String),
    /// The ledger file is damaged (its page checksums fail, or its projections still
    /// disagree with the log after a rebuild): refuse to start.
    #[error("the ledger is damaged: {0}; run `bitplace-node rebuild` (it rebuilds every projection from the log)")]
    Damaged(String),
    /// Storage is temporarily unusable (reopening after a failure); retry later.
    #[error("temporarily unavailable: {0}")]
    Unavailable(String),
    /// The engine's writer has stopped.
    #[error("the engine has shut down")]
    Closed,
}

impl EngineError {
    /// The rule broken, if this is a rejection.
    pub fn reject(&self) -> Option<&Reject> {
        match self {
            EngineError::Rejected(r) => Some(r),
            _ => None,
        }
    }
}

macro_rules! via_store {
    ($($t:ty),*) => {$(
        impl From<$t> for EngineError {
            fn from(e: $t) -> Self { EngineError::Store(e.into()) }
        }
    )*};
}
via_store!(
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError,
    redb::DatabaseError,
    redb::SetDurabilityError
);
