//! A peer's header chain, judged before any of its block bodies is fetched (headers-first
//! sync): each header must name the one before it as its parent and carry its own proof
//! of work, and the chain is worth fetching only when its total work beats our best
//! chain's. So a peer offering a long chain of low work costs us its headers (80 bytes
//! a block), never its bodies.
//!
//! What a header alone cannot show (the difficulty the chain's rules require, the median
//! time) is checked when the bodies are connected; the work counted here comes from the
//! bits each header claims and its hash meets, so it never exceeds the work really done.

use crate::engine::Engine;
use crate::error::EngineError;
use crate::hash::Hash256;
use crate::header::BlockHeader;
use crate::params::ChainParams;
use crate::validation::{check_header_pow, Reject};
use primitive_types::U256;

/// Why a peer's headers were refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// A header does not name the previous one (or the block the chain starts from).
    #[error("header {index} ({hash}) names parent {parent}, not {expected}")]
    Unlinked {
        index: usize,
        hash: Hash256,
        parent: Hash256,
        expected: Hash256,
    },
    /// A header's own proof of work fails.
    #[error("header {index} ({hash}): {reject}")]
    ProofOfWork {
        index: usize,
        hash: Hash256,
        reject: Reject,
    },
}

/// A header chain from a block we store, as far as a peer has shown it.
#[derive(Clone, Debug)]
pub struct HeaderChain {
    last: Hash256,
    work: U256,
    len: usize,
}

impl HeaderChain {
    /// A chain starting at block `from` (not counted), which we must store; None if we
    /// do not: a peer's headers that start from a block we do not know are no chain of
    /// ours to judge.
    pub fn from_known(engine: &Engine, from: Hash256) -> Result<Option<HeaderChain>, EngineError> {
        Ok(engine.chain_work_of(&from)?.map(|work| HeaderChain {
            last: from,
            work,
            len: 0,
        }))
    }

    /// Appends `headers`, in order. On an error nothing is appended.
    pub fn extend(
        &mut self,
        headers: &[BlockHeader],
        params: &ChainParams,
    ) -> Result<(), HeaderError> {
        let (mut last, mut work) = (self.last, self.work);
        for (index, h) in headers.iter().enumerate() {
            let hash = h.hash();
            if h.prev_hash != last {
                return Err(HeaderError::Unlinked {
                    index,
                    hash,
                    parent: h.prev_hash,
                    expected: last,
                });
            }
            let pow = |reject| HeaderError::ProofOfWork {
                index,
                hash,
                reject,
            };
            check_header_pow(h, params).map_err(pow)?;
            work = work.saturating_add(h.bits.work().map_err(|e| pow(Reject::InvalidBits(e)))?);
            last = hash;
        }
        (self.last, self.work) = (last, work);
        self.len += headers.len();
        Ok(())
    }

    /// The hash of the last header (or of the starting block while there is none).
    pub fn last(&self) -> Hash256 {
        self.last
    }

    /// Total chain work at the last header.
    pub fn work(&self) -> U256 {
        self.work
    }

    /// Headers appended so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineConfig;
    use crate::pow::CompactTarget;
    use crate::testkit::{fast_params, TestKey};

    /// An engine and the headers of `n` blocks mined on it after genesis.
    fn mined(n: usize) -> (Engine, Vec<BlockHeader>) {
        let engine = Engine::in_memory(EngineConfig::new(fast_params())).unwrap();
        let to = TestKey::new(1).address();
        let headers = (0..n)
            .map(|_| {
                let b = engine.block_template(to, vec![]).unwrap().mine_cpu();
                engine.submit_block(b.clone()).unwrap();
                b.header
            })
            .collect();
        (engine, headers)
    }

    #[test]
    fn linked_headers_add_their_work_to_the_starting_blocks() {
        let (engine, headers) = mined(4);
        let genesis = engine.params().genesis().hash();
        let mut chain = HeaderChain::from_known(&engine, genesis).unwrap().unwrap();
        chain.extend(&headers[..2], engine.params()).unwrap();
        chain.extend(&headers[2..], engine.params()).unwrap();
        assert_eq!(chain.len(), 4);
        assert_eq!(chain.last(), headers[3].hash());
        assert_eq!(
            chain.work(),
            engine.tip_work().unwrap(),
            "as the engine counts it"
        );
    }

    #[test]
    fn a_gap_bad_proof_of_work_or_an_unknown_start_is_refused_and_appends_nothing() {
        let (engine, headers) = mined(3);
        let params = engine.params();
        let genesis = params.genesis().hash();
        let fresh = || HeaderChain::from_known(&engine, genesis).unwrap().unwrap();
        let mut chain = fresh();
        let gap = [headers[0], headers[2]];
        let err = chain.extend(&gap, params).unwrap_err();
        assert!(
            matches!(err, HeaderError::Unlinked { index: 1, .. }),
            "{err}"
        );
        assert!(chain.is_empty() && chain.last() == genesis && chain.work() == fresh().work());

        let mut missed = headers[0];
        while missed.meets_target() {
            missed.nonce = missed.nonce.wrapping_add(1);
        }
        let err = fresh().extend(&[missed], params).unwrap_err();
        assert!(
            matches!(
                &err,
                HeaderError::ProofOfWork {
                    reject: Reject::HighHash,
                    ..
                }
            ),
            "{err}"
        );

        let mut main = params.clone();
        main.pow_limit = CompactTarget(0x1d00ffff);
        let err = fresh().extend(&headers[..1], &main).unwrap_err();
        assert!(
            matches!(
                &err,
                HeaderError::ProofOfWork {
                    reject: Reject::BadBits { .. },
                    ..
                }
            ),
            "{err}"
        );

        assert!(HeaderChain::from_known(&engine, Hash256([7; 32]))
            .unwrap()
            .is_none());
    }
}
