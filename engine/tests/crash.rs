//! Durability under SIGKILL: a child process submits transactions from several threads
//! (so commits are shared) and mines, printing each txid once `submit_tx` returned. The
//! parent kills it at a random moment, reopens the ledger and checks that every
//! acknowledged transaction is in the mempool or the chain and that the projections
//! equal a rebuild. Rounds: 20 by default, `BITPLACE_CRASH_ROUNDS` for more.

mod common;
use common::*;
use engine::testkit::outpoint;
use engine::Engine;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const CHILD_ENV: &str = "BITPLACE_CRASH_CHILD_DB";
const SENDERS: u64 = 3;

/// The child's work loop (run by re-invoking this test binary).
#[test]
#[ignore = "runs only as the child of crash_loop"]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let now = Arc::new(AtomicU64::new(START_TIME));
    let engine = Engine::open(&path, config(fast_params(), &now)).unwrap();
    let tip_time = engine.status().unwrap().tip_time as u64;
    now.store(tip_time.max(START_TIME) + 1, Ordering::SeqCst);
    let miner = {
        let (engine, now) = (engine.clone(), now.clone());
        std::thread::spawn(move || loop {
            now.fetch_add(1, Ordering::SeqCst);
            let t = engine.block_template(key(100).address(), vec![]).unwrap();
            let _ = engine.submit_block(t.mine_cpu());
            std::thread::sleep(Duration::from_millis(15));
        })
    };
    // Each sender first needs a coin: the miner pays key(100), which hands them out.
    let senders: Vec<_> = (0..SENDERS)
        .map(|i| {
            let engine = engine.clone();
            std::thread::spawn(move || sender_loop(&engine, key(i), &key(100)))
        })
        .collect();
    // Work until killed; the parent always kills long before this ends.
    std::thread::sleep(Duration::from_secs(60));
    drop((miner, senders));
}

fn sender_loop(engine: &Engine, me: engine::testkit::TestKey, funder: &engine::testkit::TestKey) {
    let out = std::io::stdout();
    loop {
        let mine = engine.address(&me.address(), 1).unwrap();
        let coin = match mine.utxos.first() {
            Some(c) => c.clone(),
            None => {
                let f = engine.address(&funder.address(), 1).unwrap();
                let Some(c) = f.utxos.iter().find(|u| u.amount >= 2).cloned() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let tx = funder.spend(&[outpoint(c.txid, c.vout)], &[(me.address(), c.amount)]);
                if let Ok(r) = engine.submit_tx(tx) {
                    writeln!(out.lock(), "ACK {}", r.txid).unwrap();
                }
                continue;
            }
        };
        let tx = me.spend(
            &[outpoint(coin.txid, coin.vout)],
            &[(me.address(), coin.amount)],
        );
        if let Ok(r) = engine.submit_tx(tx) {
            // Printed only after the durable commit returned: an acknowledgement.
            writeln!(out.lock(), "ACK {}", r.txid).unwrap();
        }
    }
}

#[test]
fn crash_loop() {
    let rounds: usize = std::env::var("BITPLACE_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");
    let exe = std::env::current_exe().unwrap();
    let mut acked: Vec<String> = Vec::new();
    let mut seed = 0x9e3779b97f4a7c15u64;
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| l.strip_prefix("ACK ").map(str::to_owned))
                .collect::<Vec<_>>()
        });
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(150 + seed % 400));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        acked.extend(reader.join().unwrap());

        let now = Arc::new(AtomicU64::new(START_TIME));
        let engine = Engine::open(&path, config(fast_params(), &now)).unwrap();
        for txid in &acked {
            let id = txid.parse().unwrap();
            assert!(
                engine.transaction(&id).unwrap().is_some(),
                "round {round}: acknowledged {txid} was lost"
            );
        }
        let report = engine.verify().unwrap();
        assert!(
            report.ok(),
            "round {round}: projections differ from a rebuild: {:?}",
            report.mismatched
        );
    }
    assert!(
        acked.len() > rounds,
        "the child acknowledged too little to prove anything: {}",
        acked.len()
    );
    eprintln!(
        "crash loop: {rounds} kills survived, {} acknowledged transactions all found",
        acked.len()
    );
}
