//! Item 1: SIGKILL loop over the real `bitplace-node --dev`.
//!
//! Each round: the node serves a load of signed zero-fee transactions (several senders,
//! unconfirmed chains, payments between senders) posted to `POST /v1/tx`, while a miner
//! mines blocks through `/api/mine_block`; after a random 80–450 ms the process gets
//! SIGKILL. Then, offline, `bitplace-node verify` must exit 0 and `bitplace-node rebuild`
//! prints a UTXO-set hash; the node restarts and must serve exactly that hash, every
//! transaction whose POST returned 200 (in any round) must be in the mempool or the
//! chain, and the UTXO total must equal the sum of coinbase payouts (minus fees, which
//! are zero here) = height × reward.
//!
//! 50 kills by default (`BITPLACE_KILLS=N` for more, `BITPLACE_SEED` to vary timing).

use bitplace_reliability::*;
use engine::testkit::TestKey;
use engine::Hash256;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SENDERS: u64 = 3;
const REWARD: u64 = 10; // dev network

struct Load {
    acked: Arc<Mutex<Vec<String>>>,
    posted: Arc<AtomicU64>,
    blocks: Arc<AtomicU64>,
}

/// One sender: spends its coin to itself (sometimes splitting it with the next sender)
/// until the node dies. Every 200 is recorded as an acknowledgement.
async fn sender(
    api: Api,
    me: TestKey,
    next: TestKey,
    mut seed: Rng,
    load: Arc<Load>,
    stop: Arc<AtomicBool>,
) {
    let addr = me.address().to_string();
    let mut coin: Option<(Hash256, u32, u64)> = None;
    while !stop.load(Ordering::Relaxed) {
        let (txid, vout, amount) = match coin {
            Some(c) => c,
            None => {
                let Ok((200, v)) = api.try_get(&format!("/v1/addresses/{addr}")).await else {
                    return;
                };
                let Some(u) = v["utxos"].as_array().and_then(|l| {
                    l.iter()
                        .find(|u| u["mature"].as_bool().unwrap_or(false) || u["height"].is_null())
                        .cloned()
                }) else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                (
                    Hash256::from_display_hex(u["txid"].as_str().unwrap()).unwrap(),
                    u["vout"].as_u64().unwrap() as u32,
                    u["amount"].as_u64().unwrap(),
                )
            }
        };
        let outputs = if amount >= 2 && seed.below(4) == 0 {
            vec![(me.address(), amount - 1), (next.address(), 1)]
        } else {
            vec![(me.address(), amount)]
        };
        let tx = pay(&me, (txid, vout), &outputs);
        load.posted.fetch_add(1, Ordering::Relaxed);
        match api.submit_tx_raw(&tx).await {
            Ok((200, r)) => {
                assert_eq!(r["txid"], json!(tx.txid().to_string()), "{r}");
                load.acked.lock().unwrap().push(tx.txid().to_string());
                coin = Some((tx.txid(), 0, outputs[0].1));
            }
            // Refused (e.g. the coin was spent by a POST whose answer the kill cut off):
            // look the coin up again.
            Ok((st, r)) => {
                assert!(st < 500, "POST /v1/tx answered {st}: {r}");
                coin = None;
            }
            Err(_) => return, // the node is gone
        }
    }
}

async fn miner(api: Api, to: String, load: Arc<Load>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        match api
            .try_post("/api/mine_block", &json!({"address": to, "txAmount": 30}))
            .await
        {
            Ok((200, _)) => {
                load.blocks.fetch_add(1, Ordering::Relaxed);
            }
            Ok((st, r)) => panic!("mine_block answered {st}: {r}"),
            Err(_) => return,
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_loop_keeps_every_acknowledged_transaction() {
    let kills = env_usize("BITPLACE_KILLS", 50);
    let mut rng = Rng::from_env(0x5eed_c4a5);
    eprintln!("crash loop: {kills} kills, seed {}", rng.0);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut node = Node::start(&data, fast_dev(&[])).await;
    let funder = TestKey::new(100);
    let faddr = funder.address().to_string();
    let senders: Vec<TestKey> = (0..SENDERS).map(TestKey::new).collect();

    // Fund every sender from distinct mature coinbases.
    for _ in 0..SENDERS + 2 {
        node.mine(&faddr, 1).await;
    }
    let coins = node.utxos(&faddr).await;
    for (s, c) in senders.iter().zip(coins.iter().filter(|c| c.3)) {
        let (st, r) = node
            .submit_tx(&pay(&funder, (c.0, c.1), &[(s.address(), c.2)]))
            .await;
        assert_eq!(st, 200, "{r}");
    }

    let load = Arc::new(Load {
        acked: Arc::new(Mutex::new(Vec::new())),
        posted: Arc::new(AtomicU64::new(0)),
        blocks: Arc::new(AtomicU64::new(0)),
    });
    let mut audit = ChainAudit::default();
    let started = Instant::now();
    let (mut in_chain, mut in_mempool) = (0usize, 0usize);
    let mut checked = 0usize;
    for round in 0..=kills {
        // ---- checks against the restarted node ----
        // Every acknowledgement since the last check, a random sample of the older ones,
        // and all of them after the last round.
        let all: Vec<String> = load.acked.lock().unwrap().clone();
        let acked: Vec<String> = if round == kills {
            all.clone()
        } else {
            let mut v = all[checked..].to_vec();
            for _ in 0..checked.min(64) {
                v.push(all[rng.below(checked as u64) as usize].clone());
            }
            v
        };
        checked = all.len();
        let mut found = tokio::task::JoinSet::new();
        for chunk in acked.chunks(acked.len().div_ceil(8).max(1)) {
            let (api, chunk) = (node.api.clone(), chunk.to_vec());
            found.spawn(async move {
                let mut c = (0usize, 0usize);
                for txid in chunk {
                    match api.tx_state(&txid).await {
                        Some(true) => c.0 += 1,
                        Some(false) => c.1 += 1,
                        None => panic!("acknowledged transaction {txid} was lost"),
                    }
                }
                c
            });
        }
        (in_chain, in_mempool) = (0, 0);
        while let Some(r) = found.join_next().await {
            let (a, b) = r.unwrap_or_else(|e| panic!("round {round}: {e}"));
            in_chain += a;
            in_mempool += b;
        }
        let height = node.status().await["height"].as_u64().unwrap();
        let (coinbase, fees) = audit.totals(&node.api).await;
        let utxos = node.utxo_total().await;
        assert_eq!(
            fees, 0,
            "round {round}: only zero-fee transactions were sent"
        );
        assert_eq!(
            utxos,
            coinbase - fees,
            "round {round}: UTXO total differs from the coinbase payouts"
        );
        assert_eq!(coinbase, height * REWARD, "round {round}: coinbase payouts");
        if round == kills {
            break;
        }

        // ---- load, then SIGKILL at a random moment ----
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(miner(
            node.api.clone(),
            faddr.clone(),
            load.clone(),
            stop.clone(),
        ));
        for (i, s) in senders.iter().enumerate() {
            let next = senders[(i + 1) % senders.len()].clone();
            let seed = Rng(rng.next_u64() | 1);
            tasks.spawn(sender(
                node.api.clone(),
                s.clone(),
                next,
                seed,
                load.clone(),
                stop.clone(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(80 + rng.below(370))).await;
        node.kill();
        stop.store(true, Ordering::Relaxed);
        while let Some(r) = tasks.join_next().await {
            r.unwrap_or_else(|e| panic!("round {round}: load task failed: {e}"));
        }

        // ---- offline: verify, rebuild; then restart and compare ----
        let v = node_cmd(&["verify"], &data);
        assert!(
            v.status.success(),
            "round {round}: verify failed: {}{}",
            String::from_utf8_lossy(&v.stdout),
            String::from_utf8_lossy(&v.stderr)
        );
        let r = node_cmd(&["rebuild"], &data);
        assert!(
            r.status.success(),
            "round {round}: rebuild failed: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        let rebuilt = String::from_utf8_lossy(&r.stdout).trim().to_string();
        node.restart().await;
        let served = node.status().await["utxo_set_hash"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            served, rebuilt,
            "round {round}: served hash != rebuilt hash"
        );
    }
    let acked = load.acked.lock().unwrap().len();
    eprintln!(
        "crash loop: {kills} kills survived in {:.1?}; {} POST /v1/tx, {acked} acknowledged, \
         {acked} found ({in_chain} in the chain, {in_mempool} in the mempool); {} blocks mined \
         through /api/mine_block; height {}",
        started.elapsed(),
        load.posted.load(Ordering::Relaxed),
        load.blocks.load(Ordering::Relaxed),
        node.status().await["height"]
    );
    assert!(
        acked >= kills,
        "too few acknowledgements ({acked}) to prove anything"
    );
}
