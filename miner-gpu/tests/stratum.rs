//! The Stratum V1 client: known answers from published transcripts, and whole sessions
//! against a scripted pool written here from the protocol (it checks every share the way
//! pooler's cpuminer builds it, not with the miner's own code).

use miner_gpu::job::{diff1_target, Found, Roll};
use miner_gpu::report::Report;
use miner_gpu::stratum::{self, parse_notify, submit_params, PoolConfig, Session, StratumError};
use miner_gpu::{CpuBackend, Kernel, SearchBackend, SearchControl};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

fn notify_params(v: Value) -> Vec<Value> {
    v.as_array().unwrap().clone()
}

/// The example job of the Stratum protocol's original description (slush pool, 2012;
/// reproduced on the Bitcoin wiki's "Stratum mining protocol" page): subscribe gave
/// extranonce1 "08000002" with a 4-byte extranonce2, then this `mining.notify`, and the
/// miner's `mining.submit ["slush.miner1", "bf", "00000001", "504e86ed", "b2957c02"]`
/// (a rolled ntime) was accepted. The header hash of that share is computed here; it has
/// 32 leading zero bits, i.e. it meets difficulty 1 — which a wrong byte order anywhere
/// would make a 1-in-4-billion accident.
#[test]
fn slush_pool_example_share_rebuilds_a_difficulty_one_header() {
    let mut s = Session::default();
    s.subscribed(&json!([
        [
            ["mining.set_difficulty", "b4b6693b72a50c7116db18d6497cac52"],
            ["mining.notify", "ae6812eb4cd7735a302a8a9dd95cf71f"]
        ],
        "08000002",
        4
    ]))
    .unwrap();
    let n = parse_notify(&notify_params(json!([
        "bf",
        "4d16b6f85af6e2198f44ae2a6de67f78487ae5611b77c6c0440b921e00000000",
        "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20020862062f503253482f04b8864e5008",
        "072f736c7573682f000000000100f2052a010000001976a914d23fcdf86f7e756a64a7a9688ef9903327048ed988ac00000000",
        [],
        "00000002",
        "1c2ac4af",
        "504e86b9",
        false
    ])))
    .unwrap();
    assert!(!n.clean);
    let job = s.job(&n);
    assert_eq!(job.share_target, diff1_target(), "difficulty 1 until set");
    // extranonce2 "00000001" is bytes 00 00 00 01: the little-endian counter 0x01000000.
    let roll = Roll {
        extranonce2: 0x0100_0000,
        version: 2,
        time: 0x504e_86ed,
    };
    assert_eq!(
        job.merkle_root(roll.extranonce2).to_string(),
        "ec9d69b1c30dd91529e2f5a5636354a310a79b9b83622cfd79c8da9daa4d4132"
    );
    let hash = job.verify(&roll, 0xb295_7c02).expect("meets difficulty 1");
    assert_eq!(
        hash.to_string(),
        "000000002076870fe65a2b6eeed84fa892c0db924f1482243a6247d931dcab32"
    );
    // What we would submit for it is byte for byte what the transcript shows.
    let found = Found {
        job: Arc::new(job),
        roll,
        solution: miner_gpu::Solution {
            nonce: 0xb295_7c02,
            hash,
        },
        device: 0,
    };
    assert_eq!(
        submit_params("slush.miner1", &found),
        json!(["slush.miner1", "bf", "00000001", "504e86ed", "b2957c02"])
    );
}

/// Bitcoin's genesis block as a Stratum job: its coinbase (the well-known "The Times
/// 03/Jan/2009 ..." transaction) cut around an 8-byte extranonce, an empty branch, and
/// the header fields as pools send them. The merkle root must be the genesis txid and
/// the search must find nonce 2083236893 with the genesis hash.
#[test]
fn bitcoin_genesis_as_a_stratum_job_gives_the_genesis_hash() {
    let coinbase = "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff4d04ffff001d0104455468652054696d65732030332f4a616e2f32303039204368616e63656c6c6f72206f6e206272696e6b206f66207365636f6e64206261696c6f757420666f722062616e6b73ffffffff0100f2052a01000000434104678afdb0fe5548271967f1a67130b7105cd6a828e03909a67962e0ea1f61deb649f6bc3f4cef38c4f35504e51ec112de5c384df7ba0b8d578a4c702b6bf11d5fac00000000";
    let cut = coinbase.find("4d04ffff001d").unwrap() + 4;
    let (coinb1, rest) = coinbase.split_at(cut);
    let (en1, rest) = rest.split_at(8);
    let (en2, coinb2) = rest.split_at(8);
    assert_eq!((en1, en2), ("ffff001d", "01044554"));
    let mut s = Session::default();
    s.subscribed(&json!([[], en1, 4])).unwrap();
    let n = parse_notify(&notify_params(json!([
        "genesis",
        "00".repeat(32),
        coinb1,
        coinb2,
        [],
        "00000001",
        "1d00ffff",
        "495fab29",
        true
    ])))
    .unwrap();
    let job = s.job(&n);
    let roll = job.roll(0x5445_0401, None).unwrap();
    assert_eq!(hex::encode(job.extranonce2_bytes(roll.extranonce2)), en2);
    assert_eq!(
        job.merkle_root(roll.extranonce2).to_string(),
        "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"
    );
    let work = job.work(&roll);
    let found = CpuBackend::with_kernel(Kernel::detect(), 1).search(
        &work,
        2_083_236_893 - 50_000,
        100_000,
        &SearchControl::new(),
    );
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].nonce, 2_083_236_893);
    assert_eq!(
        found[0].hash.to_string(),
        "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"
    );
    let f = Found {
        job: Arc::new(job),
        roll,
        solution: found[0],
        device: 0,
    };
    assert!(f.is_block(), "the genesis hash meets its own bits");
    assert_eq!(
        submit_params("w", &f),
        json!(["w", "genesis", en2, "495fab29", "7c2bac1d"])
    );
}

// ---- A scripted pool -------------------------------------------------------------

/// Bitcoin's diff1 target as a 256-bit big-endian number, divided by `d` (the pool's own
/// arithmetic, in u128 halves: d is 2^-k here).
fn share_ok(hash_display: &[u8; 32], difficulty_log2: i32) -> bool {
    // Target = 0xffff << (208 - difficulty_log2) as a big-endian 32-byte number.
    let shift = 208 - difficulty_log2;
    let mut target = [0u8; 32];
    let (byte, bit) = ((shift / 8) as usize, shift % 8);
    let v = 0xffffu32 << bit;
    for (i, b) in v.to_le_bytes().iter().enumerate() {
        if byte + i < 32 {
            target[31 - (byte + i)] = *b;
        }
    }
    hash_display <= &target
}

/// Rebuilds a share's header as cpuminer does: twenty 32-bit words, version/prevhash/
/// ntime/nbits via `le32dec` of the hex, the merkle root via `be32dec`, nonce and ntime
/// from the submitted hex; returns the hash in display order.
fn pool_hash(notify: &Value, en1: &[u8], submit: &[Value], version_mask: u32) -> [u8; 32] {
    let unhex = |v: &Value| hex::decode(v.as_str().unwrap()).unwrap();
    let le = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap());
    let be = |b: &[u8]| u32::from_be_bytes(b.try_into().unwrap());
    let sha256d = consensus::hash::sha256d;
    let coinbase = [
        unhex(&notify[2]),
        en1.to_vec(),
        unhex(&submit[2]),
        unhex(&notify[3]),
    ]
    .concat();
    let mut root = sha256d(&coinbase);
    for b in notify[4].as_array().unwrap() {
        root = sha256d(&[root.to_vec(), unhex(b)].concat());
    }
    let prev = unhex(&notify[1]);
    let mut data = [0u32; 20];
    let mut version = le(&unhex(&notify[5]));
    if let Some(bits) = submit.get(5) {
        // BIP 310: version = (job version & ~mask) | (bits & mask), in the value domain.
        let v = u32::from_str_radix(bits.as_str().unwrap(), 16).unwrap();
        let job_v = u32::from_str_radix(notify[5].as_str().unwrap(), 16).unwrap();
        assert_eq!(v & !version_mask, 0, "version bits outside the mask");
        version = ((job_v & !version_mask) | v).swap_bytes();
    }
    data[0] = version;
    for i in 0..8 {
        data[1 + i] = le(&prev[4 * i..4 * i + 4]);
        data[9 + i] = be(&root[4 * i..4 * i + 4]);
    }
    data[17] = le(&unhex(&submit[3]));
    data[18] = le(&unhex(&notify[6]));
    data[19] = le(&unhex(&submit[4]));
    let header: Vec<u8> = data.iter().flat_map(|w| w.to_be_bytes()).collect();
    let mut h = sha256d(&header);
    h.reverse();
    h
}

/// What the scripted pool saw.
#[derive(Default, Debug)]
struct PoolLog {
    connections: usize,
    submits: Vec<Value>,
    /// Versions seen in shares (with rolling).
    versions: Vec<u32>,
    extranonce1_used: Vec<String>,
}

struct PoolScript {
    version_rolling: bool,
    /// Accept only this user.
    user: &'static str,
    /// Close the first connection after this many good shares (reconnect test).
    drop_after: usize,
}

async fn send(wr: &mut tokio::net::tcp::OwnedWriteHalf, v: Value) {
    let mut s = v.to_string();
    s.push('\n');
    let _ = wr.write_all(s.as_bytes()).await;
}

fn notify(job: &str, coinb1: &str, nbits: &str, clean: bool) -> Value {
    json!([
        job,
        "4d16b6f85af6e2198f44ae2a6de67f78487ae5611b77c6c0440b921e00000000",
        coinb1,
        "072f736c7573682f000000000100f2052a010000001976a914d23fcdf86f7e756a64a7a9688ef9903327048ed988ac00000000",
        ["f0dbfe210e0e2e7ef4a6c8e58b3e4e6e3f3e2e1d1c1b1a191817161514131211",
         "0102030405060708091011121314151617181920212223242526272829303132"],
        "20000000",
        nbits,
        "504e86b9",
        clean
    ])
}

/// One pool connection, scripted: difficulty 2^-14; job "a"; after 2 good shares a
/// new extranonce1 and a clean job "b"; after 2 more a non-clean job "c" whose nbits
/// make every share a block. A share for a replaced job is answered with error 21.
async fn pool_connection(stream: TcpStream, script: Arc<PoolScript>, log: Arc<Mutex<PoolLog>>) {
    let (rd, mut wr) = stream.into_split();
    let mut lines = BufReader::new(rd).lines();
    let first = {
        let mut l = log.lock().unwrap();
        l.connections += 1;
        l.connections == 1
    };
    let mut en1 = hex::decode("cafe0001").unwrap();
    let mask = 0x1fffe000u32;
    let mut rolling = false;
    let mut jobs: Vec<(Value, Vec<u8>)> = Vec::new(); // (notify, en1 it was sent under)
    let mut good = 0usize;
    while let Ok(Some(line)) = lines.next_line().await {
        let msg: Value = serde_json::from_str(&line).unwrap();
        let id = msg["id"].clone();
        let params = msg["params"].as_array().cloned().unwrap_or_default();
        match msg["method"].as_str().unwrap_or("") {
            "mining.configure" => {
                if script.version_rolling {
                    assert_eq!(params[0], json!(["version-rolling"]));
                    rolling = true;
                    send(&mut wr, json!({"id": id, "result": {"version-rolling": true, "version-rolling.mask": format!("{mask:08x}")}, "error": null})).await;
                } else {
                    // An older pool: unknown method.
                    send(
                        &mut wr,
                        json!({"id": id, "result": null, "error": [20, "unknown method", null]}),
                    )
                    .await;
                }
            }
            "mining.subscribe" => {
                send(&mut wr, json!({"id": id, "result": [[["mining.notify", "1"]], hex::encode(&en1), 4], "error": null})).await;
            }
            "mining.extranonce.subscribe" => {
                send(&mut wr, json!({"id": id, "result": true, "error": null})).await;
            }
            "mining.authorize" => {
                if params[0] != json!(script.user) {
                    send(&mut wr, json!({"id": id, "result": false, "error": [24, "unauthorized worker", null]})).await;
                    continue;
                }
                send(&mut wr, json!({"id": id, "result": true, "error": null})).await;
                send(&mut wr, json!({"id": null, "method": "mining.set_difficulty", "params": [2f64.powi(-14)]})).await;
                let n = notify("a", "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20020862062f503253482f04b8864e5008", "1d00ffff", true);
                jobs.push((n.clone(), en1.clone()));
                send(
                    &mut wr,
                    json!({"id": null, "method": "mining.notify", "params": n}),
                )
                .await;
            }
            "mining.submit" => {
                let job_id = params[1].as_str().unwrap().to_string();
                let live_from = jobs
                    .iter()
                    .rposition(|(n, _)| n[8] == json!(true))
                    .unwrap_or(0);
                let Some(pos) = jobs.iter().position(|(n, _)| n[0] == json!(job_id)) else {
                    send(
                        &mut wr,
                        json!({"id": id, "result": null, "error": [21, "job not found", null]}),
                    )
                    .await;
                    continue;
                };
                if pos < live_from {
                    send(
                        &mut wr,
                        json!({"id": id, "result": null, "error": [21, "stale job", null]}),
                    )
                    .await;
                    continue;
                }
                let (n, job_en1) = jobs[pos].clone();
                assert_eq!(params[0], json!(script.user));
                assert_eq!(params.len(), if rolling { 6 } else { 5 }, "{params:?}");
                let hash = pool_hash(&n, &job_en1, &params, mask);
                let ok = share_ok(&hash, -14);
                {
                    let mut l = log.lock().unwrap();
                    l.submits.push(json!(params));
                    l.extranonce1_used
                        .push(format!("{job_id}:{}", hex::encode(&job_en1)));
                    if rolling {
                        l.versions
                            .push(u32::from_str_radix(params[5].as_str().unwrap(), 16).unwrap());
                    }
                }
                if !ok {
                    send(&mut wr, json!({"id": id, "result": null, "error": [23, "low difficulty share", null]})).await;
                    continue;
                }
                send(&mut wr, json!({"id": id, "result": true, "error": null})).await;
                good += 1;
                if first && good == script.drop_after {
                    return; // the pool goes away; the miner must come back
                }
                if good == 2 {
                    en1 = hex::decode("cafe0002").unwrap();
                    send(&mut wr, json!({"id": null, "method": "mining.set_extranonce", "params": [hex::encode(&en1), 4]})).await;
                    let n = notify("b", "0100000001000000000000000000000000000000000000000000000000000000000000000000ffffffff2002", "1d00ffff", true);
                    jobs.push((n.clone(), en1.clone()));
                    send(
                        &mut wr,
                        json!({"id": null, "method": "mining.notify", "params": n}),
                    )
                    .await;
                }
                if good == 4 {
                    // Block target easier than the share target: every share is a block.
                    let n = notify("c", "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff2003", "207fffff", false);
                    jobs.push((n.clone(), en1.clone()));
                    send(
                        &mut wr,
                        json!({"id": null, "method": "mining.notify", "params": n}),
                    )
                    .await;
                }
            }
            other => panic!("unexpected method {other}"),
        }
    }
}

async fn start_pool(script: PoolScript) -> (String, Arc<Mutex<PoolLog>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("stratum+tcp://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(PoolLog::default()));
    let (script, l2) = (Arc::new(script), log.clone());
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(pool_connection(s, script.clone(), l2.clone()));
        }
    });
    (url, log)
}

fn pool_config(url: &str, user: &str) -> PoolConfig {
    PoolConfig {
        url: url.to_string(),
        user: user.to_string(),
        password: "x".into(),
        blocks: Some(2),
        status_every: Duration::from_millis(100),
        version_rolling: true,
    }
}

fn cpu() -> Vec<Box<dyn SearchBackend>> {
    vec![Box::new(CpuBackend::with_kernel(Kernel::detect(), 1))]
}

async fn run_session(
    script: PoolScript,
) -> (miner_gpu::report::Stats, Vec<Value>, Arc<Mutex<PoolLog>>) {
    let user = script.user;
    let (url, log) = start_pool(script).await;
    let reports = Arc::new(Mutex::new(Vec::new()));
    let r2 = reports.clone();
    let stats = tokio::time::timeout(
        Duration::from_secs(120),
        stratum::mine(pool_config(&url, user), cpu(), move |r: Report| {
            r2.lock().unwrap().push(serde_json::to_value(&r).unwrap())
        }),
    )
    .await
    .expect("finished in time")
    .expect("mined");
    let reports = reports.lock().unwrap().clone();
    (stats, reports, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_session_with_version_rolling_new_extranonce_and_clean_jobs() {
    let (stats, reports, log) = run_session(PoolScript {
        version_rolling: true,
        user: "worker.1",
        drop_after: usize::MAX,
    })
    .await;
    let log = log.lock().unwrap();
    let ctx = format!("{stats:?}\n{log:?}");
    assert_eq!(
        stats.rejected, 0,
        "every share the pool checked was good: {ctx}"
    );
    assert_eq!(stats.blocks, 2, "{ctx}");
    assert!(stats.accepted >= 6, "4 shares + 2 blocks: {ctx}");
    // Shares of job "a" used extranonce1 cafe0001; after set_extranonce + notify "b",
    // cafe0002 (the new extranonce applies from the next job on).
    assert!(
        log.extranonce1_used.iter().any(|e| e == "a:cafe0001"),
        "{ctx}"
    );
    assert!(
        log.extranonce1_used.iter().any(|e| e == "b:cafe0002"),
        "{ctx}"
    );
    assert!(log
        .extranonce1_used
        .iter()
        .all(|e| !e.starts_with("c:") || e == "c:cafe0002"));
    // Version bits stay in the mask; a job's space starts at the unrolled version.
    assert!(log.versions.iter().all(|v| v & !0x1fffe000 == 0), "{ctx}");
    // The reports carry the agreement and the fractional difficulty.
    let subscribed = reports.iter().find(|r| r["type"] == "subscribed").unwrap();
    assert_eq!(subscribed["version_mask"], "1fffe000");
    assert_eq!(subscribed["extranonce1"], "cafe0001");
    assert!(reports
        .iter()
        .any(|r| r["type"] == "difficulty" && r["difficulty"] == json!(2f64.powi(-14))));
    let blocks: Vec<&Value> = reports
        .iter()
        .filter(|r| r["type"] == "submitted" && r["block"] == true && r["outcome"] == "accepted")
        .collect();
    assert_eq!(blocks.len(), 2, "{ctx}");
    assert!(blocks.iter().all(|b| b["job_id"] == "c"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_without_extensions_gets_plain_submits() {
    let (stats, reports, log) = run_session(PoolScript {
        version_rolling: false,
        user: "w",
        drop_after: usize::MAX,
    })
    .await;
    let log = log.lock().unwrap();
    assert_eq!((stats.rejected, stats.blocks), (0, 2), "{log:?}");
    assert!(log.submits.iter().all(|s| s.as_array().unwrap().len() == 5));
    let subscribed = reports.iter().find(|r| r["type"] == "subscribed").unwrap();
    assert!(subscribed.get("version_mask").is_none(), "{subscribed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_miner_reconnects_when_the_pool_drops_it() {
    let (stats, reports, log) = run_session(PoolScript {
        version_rolling: true,
        user: "w",
        drop_after: 1,
    })
    .await;
    let log = log.lock().unwrap();
    assert_eq!(log.connections, 2, "{log:?}");
    assert_eq!(stats.blocks, 2);
    assert!(reports.iter().any(|r| r["type"] == "disconnected"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_authorization_ends_the_miner_within_seconds() {
    let (url, log) = start_pool(PoolScript {
        version_rolling: true,
        user: "someone-else",
        drop_after: usize::MAX,
    })
    .await;
    let err = tokio::time::timeout(
        Duration::from_secs(10),
        stratum::mine(pool_config(&url, "me"), cpu(), |_| {}),
    )
    .await
    .expect("gave up within seconds")
    .expect_err("refused");
    assert!(err.is_permanent(), "{err}");
    assert!(matches!(err, StratumError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains("unauthorized worker"), "{err}");
    assert_eq!(log.lock().unwrap().connections, 1, "no retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_that_is_down_is_retried_with_backoff() {
    // A port nothing listens on (bound a moment ago, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let url = format!("stratum+tcp://127.0.0.1:{port}");
    let reports = Arc::new(Mutex::new(Vec::new()));
    let r2 = reports.clone();
    let miner = tokio::spawn(stratum::mine(pool_config(&url, "w"), cpu(), move |r| {
        r2.lock().unwrap().push(serde_json::to_value(&r).unwrap())
    }));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        !miner.is_finished(),
        "a refused connection is not permanent"
    );
    let waits: Vec<u64> = reports
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r["type"] == "disconnected")
        .map(|r| r["retry_in_ms"].as_u64().unwrap())
        .collect();
    assert!(waits.len() >= 2, "{waits:?}");
    assert!(
        waits.windows(2).all(|w| w[1] == (w[0] * 2).min(10_000)),
        "{waits:?}"
    );
    miner.abort();
}
