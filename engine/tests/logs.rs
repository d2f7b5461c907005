//! What the engine writes to the log: one `UpdateTip` line per new tip, one line per
//! reorganisation, debug lines for every admitted and refused transaction (issue 14,
//! item 1: a node that connected blocks and reorganised logged nothing of it).
//!
//! One test in this binary: it installs the process-wide subscriber (the writer thread
//! logs, so a thread-local one would hear nothing).

mod common;

use common::{key, Fixture};
use engine::testkit::outpoint;
use engine::BlockAccepted;
use serde_json::Value;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Every line written, shared with the subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn install() -> Captured {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || writer.clone())
            .init();
        captured
    }

    /// The JSON lines so far, each with its fields flattened next to `message`.
    fn lines(&self) -> Vec<Value> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["fields"].clone())
            .collect()
    }

    fn with_message(&self, prefix: &str) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|f| f["message"].as_str().unwrap_or("").starts_with(prefix))
            .collect()
    }
}

#[test]
fn the_log_says_each_new_tip_each_reorganisation_and_each_transaction() {
    let log = Captured::install();
    let f = Fixture::new();
    let (alice, bob) = (key(1), key(2));
    let b1 = f.mine(alice.address());
    let fork_point = f.mine(alice.address());
    let pay = alice.spend(&[outpoint(b1.txs[0].txid(), 0)], &[(bob.address(), 4)]);
    f.engine.submit_tx(pay.clone()).unwrap();
    // Spends the same coin again: refused, and said so at debug.
    let again = alice.spend(&[outpoint(b1.txs[0].txid(), 0)], &[(bob.address(), 3)]);
    f.engine.submit_tx(again.clone()).unwrap_err();
    let a3 = f.mine(alice.address());

    let tips = log.with_message("UpdateTip");
    let heights: Vec<_> = tips.iter().map(|t| t["height"].as_u64().unwrap()).collect();
    assert_eq!(heights, [1, 2, 3], "{tips:?}");
    let last = &tips[2];
    assert_eq!(last["hash"], a3.hash().to_string());
    assert_eq!(last["txs"], 2);
    assert!(last["log2_work"].as_str().unwrap().parse::<f64>().unwrap() > 1.0);
    assert!(last["date"].as_str().unwrap().ends_with('Z'), "{last}");
    assert_eq!(last["mempool"], 0);

    let admitted = log.with_message("transaction admitted");
    assert_eq!(admitted.len(), 1);
    assert_eq!(admitted[0]["txid"], pay.txid().to_string());
    let refused = log.with_message("transaction refused");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["txid"], again.txid().to_string());
    assert!(
        refused[0]["reason"].as_str().unwrap().contains("spent"),
        "{refused:?}"
    );

    // A two-block branch from the fork point takes over: one block back, two forward,
    // `pay` returns to the mempool.
    let other = Fixture::new();
    other.engine.submit_block(b1).unwrap();
    other.engine.submit_block(fork_point.clone()).unwrap();
    other.clock_from(&f);
    let c3 = other.mine(bob.address());
    let c4 = other.mine(bob.address());
    f.clock_from(&other);
    let before = log.with_message("chain reorganisation").len();
    assert!(matches!(
        f.engine.submit_block(c3.clone()).unwrap(),
        BlockAccepted::SideChain { .. }
    ));
    let side = log.with_message("block stored on a side chain");
    assert!(
        side.iter().any(|s| s["hash"] == c3.hash().to_string()),
        "{side:?}"
    );
    f.engine.submit_block(c4.clone()).unwrap();

    let reorgs = log.with_message("chain reorganisation");
    assert_eq!(reorgs.len(), before + 1, "{reorgs:?}");
    let r = reorgs.last().unwrap();
    assert_eq!(r["fork_height"], 2);
    assert_eq!(r["fork_hash"], fork_point.hash().to_string());
    assert_eq!(r["depth"], 1);
    assert_eq!(r["connected"], 2);
    assert_eq!(r["returned_to_mempool"], 1);
    let tip = log.with_message("UpdateTip").pop().unwrap();
    assert_eq!(tip["height"], 4);
    assert_eq!(tip["hash"], c4.hash().to_string());
    assert_eq!(tip["mempool"], 1, "the payment is back");

    // The log and the engine agree on what happened.
    assert_eq!(f.engine.status().unwrap().best_hash, c4.hash());
}
