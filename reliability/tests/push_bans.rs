//! Issue 17 item 6: a client whose pushes make the node work for nothing is banned from
//! pushing, over the real binary. Clients are told apart by their loopback source address
//! (127.0.0.2, 127.0.0.3 and 127.0.0.1 reach the same listener), so the node runs with
//! `--ban-loopback`; without it loopback clients are exempt (a reverse proxy on the host).

use bitplace_reliability::metrics::metric;
use bitplace_reliability::*;
use engine::encoding::Encode;
use engine::testkit::TestKey;
use engine::{Block, Hash256, TxOut};
use serde_json::{json, Value};
use std::net::IpAddr;
use std::time::Duration;

/// A client of `node` whose connections come from `source`.
fn client_from(node: &Node, source: &str) -> Api {
    let source: IpAddr = source.parse().unwrap();
    Api {
        base: node.api.base.clone(),
        http: reqwest::Client::builder()
            .local_address(source)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
    }
}

fn push(b: &Block) -> Value {
    json!({ "hex": hex::encode(b.encode()) })
}

/// The tip's hash, height and time.
async fn tip(node: &Api) -> (Hash256, u64, u32) {
    let st = node.status().await;
    let hash = Hash256::from_display_hex(st["best_hash"].as_str().unwrap()).unwrap();
    let height = st["height"].as_u64().unwrap();
    (hash, height, st["tip_time"].as_u64().unwrap() as u32)
}

fn paying(k: &TestKey, amount: u64) -> Vec<TxOut> {
    vec![TxOut {
        amount,
        address: k.address(),
    }]
}

/// A block on the tip with valid proof of work whose coinbase pays far more than allowed.
async fn inflated_on_tip(node: &Api, k: &TestKey) -> Block {
    let (prev, height, time) = tip(node).await;
    blocks::block(prev, height + 1, time + 1, b"x", paying(k, 1 << 40), vec![])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_invalid_pusher_and_an_orphan_flooder_are_banned_while_others_are_served() {
    let tmp = tempfile::tempdir().unwrap();
    let args = fast_dev(&["--ban-loopback", "--ban-secs", "60"]);
    let node = Node::start(tmp.path(), &args).await;
    let k = TestKey::new(71);
    node.mine(&k.address().to_string(), 1).await;
    let (attacker, flooder, honest) = (
        client_from(&node, "127.0.0.2"),
        client_from(&node, "127.0.0.3"),
        client_from(&node, "127.0.0.1"),
    );
    let (prev, height, time) = tip(&node).await;

    // An inflated coinbase with valid proof of work: refused, and its pusher banned.
    let inflated = inflated_on_tip(&node, &k).await;
    let (st, r) = attacker.post("/v1/p2p/blocks", &push(&inflated)).await;
    assert_eq!(
        (st, &r["error"]),
        (422, &json!("coinbase_too_large")),
        "{r}"
    );
    // Its next pushes, valid or not, block or transaction, are refused unread.
    let good = blocks::block(prev, height + 1, time + 1, b"ok", paying(&k, 10), vec![]);
    let resp = attacker
        .http
        .post(attacker.url("/v1/p2p/blocks"))
        .json(&push(&good))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], json!("banned"), "{body}");
    let (st, r) = attacker.post("/v1/p2p/tx", &json!({"hex": "00"})).await;
    assert_eq!((st, &r["error"]), (403, &json!("banned")), "{r}");
    assert_eq!(
        tip(&node).await.0,
        prev,
        "nothing pushed by the banned client applied"
    );
    // Its reads are served (an address may be shared), and other clients' pushes taken.
    assert_eq!(attacker.get("/v1/status").await.0, 200);
    let (st, r) = honest.post("/v1/p2p/blocks", &push(&good)).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(tip(&node).await.0, good.hash());

    // Orphans (unknown parents) are forgiven a few at a time, a flood is banned.
    let mut accepted = 0u32;
    let mut first_refusal = None;
    for i in 0..80u64 {
        let parent = Hash256([(i % 251) as u8 + 1; 32]);
        let orphan = blocks::block(
            parent,
            height + 5,
            time + 5,
            &i.to_le_bytes(),
            paying(&k, 10),
            vec![],
        );
        let (st, r) = flooder.post("/v1/p2p/blocks", &push(&orphan)).await;
        match st {
            202 => accepted += 1,
            403 => {
                assert_eq!(r["error"], json!("banned"), "{r}");
                first_refusal.get_or_insert(i);
            }
            _ => panic!("orphan {i}: {st} {r}"),
        }
    }
    let first = first_refusal.expect("an orphan flood was never banned");
    // 2 points per orphan against a ban at 100 that drains 1 point per second.
    assert!((50..=60).contains(&first), "banned after {first} orphans");
    assert_eq!(
        accepted as u64, first,
        "every orphan before the ban was taken, none after"
    );
    assert_eq!(tip(&node).await.0, good.hash(), "orphans changed nothing");
    // The honest client is still served.
    let next = blocks::block(
        good.hash(),
        height + 2,
        time + 2,
        b"ok2",
        paying(&k, 10),
        vec![],
    );
    assert_eq!(honest.post("/v1/p2p/blocks", &push(&next)).await.0, 200);

    let (st, banned) = node.get("/v1/peers/banned").await;
    assert_eq!(st, 200, "{banned}");
    let listed: Vec<(String, String)> = banned
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["ip"].as_str().unwrap().into(),
                b["reason"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(listed.len(), 2, "{banned}");
    assert!(
        listed.contains(&("127.0.0.2".into(), "coinbase_too_large".into())),
        "{banned}"
    );
    assert!(
        listed.contains(&("127.0.0.3".into(), "orphan_blocks".into())),
        "{banned}"
    );
    let (_, text) = node.get("/metrics").await;
    let text = text.as_str().unwrap_or_default();
    assert_eq!(metric(text, "bitplace_p2p_bans_total"), 2);
    assert_eq!(metric(text, "bitplace_p2p_banned_clients"), 2);
    let refused = metric(text, "bitplace_p2p_banned_pushes_total");
    assert_eq!(refused, 2 + (80 - first), "{text}");
    assert!(
        std::fs::read_to_string(&node.log)
            .unwrap()
            .contains("client banned from pushing"),
        "{}",
        node.log_tail()
    );
    eprintln!(
        "push bans: invalid pusher banned at its first push; orphan flooder after {first} orphans \
         ({accepted} taken as 202); {refused} pushes refused unread; the honest client's 2 blocks connected"
    );
}

/// Without `--ban-loopback` a loopback client is never banned: a reverse proxy on the host
/// makes every client loopback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_pushers_are_exempt_by_default() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(tmp.path(), fast_dev(&[])).await;
    let k = TestKey::new(72);
    let (prev, height, time) = tip(&node).await;
    let inflated = inflated_on_tip(&node, &k).await;
    let proxy = client_from(&node, "127.0.0.2");
    for _ in 0..3 {
        let (st, r) = proxy.post("/v1/p2p/blocks", &push(&inflated)).await;
        assert_eq!(
            (st, &r["error"]),
            (422, &json!("coinbase_too_large")),
            "{r}"
        );
    }
    let good = blocks::block(prev, height + 1, time + 1, b"ok", paying(&k, 10), vec![]);
    assert_eq!(proxy.post("/v1/p2p/blocks", &push(&good)).await.0, 200);
}
