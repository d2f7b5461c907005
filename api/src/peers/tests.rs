use super::*;
use axum::body::Body;
use axum::http::Request;
use engine::engine::EngineConfig;
use engine::testkit::{outpoint, TestKey};
use engine::Address;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use tower::ServiceExt;

const START: u64 = 1_800_000_000;

/// Dev parameters with the easiest target (a block takes ~2 hashes) and a clock the
/// test controls, shared by every engine of a test so block times agree.
fn fast_engine(now: &Arc<AtomicU64>) -> Engine {
    let p = engine::testkit::fast_params();
    let n = now.clone();
    let mut c = EngineConfig::new(p);
    c.clock = Arc::new(move || n.load(SeqCst));
    Engine::in_memory(c).expect("in-memory engine")
}

fn clock() -> Arc<AtomicU64> {
    Arc::new(AtomicU64::new(START))
}

async fn mine(engine: &Engine, now: &AtomicU64, to: Address) -> Block {
    now.fetch_add(60, SeqCst);
    let b = engine.block_template(to, vec![]).unwrap().mine_cpu();
    let r = engine.submit_block_async(b.clone()).await.unwrap();
    assert!(matches!(r, BlockAccepted::Connected { .. }), "{r:?}");
    b
}

fn dev_config() -> PeerConfig {
    PeerConfig {
        dev: true,
        ..PeerConfig::default()
    }
}

/// Serves a router on a loopback port; returns its base URL.
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

async fn call(
    router: &Router,
    method: &str,
    uri: &str,
    body: Option<String>,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let body = body.map(Body::from).unwrap_or_else(Body::empty);
    let resp = router
        .clone()
        .oneshot(req.body(body).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn state(e: &Engine) -> (Hash256, String, u64) {
    let s = e.status().unwrap();
    (s.best_hash, s.utxo_set_hash, s.log_length)
}

/// Whether `txid` is in a block of `e`'s best chain.
fn confirmed(e: &Engine, txid: &Hash256) -> bool {
    e.transaction(txid)
        .unwrap()
        .is_some_and(|t| t.height.is_some())
}

async fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..100 {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engines_mined_apart_converge_on_most_work_chain() {
    let now = clock();
    let (a, b) = (fast_engine(&now), fast_engine(&now));
    let (ka, kb) = (TestKey::new(1), TestKey::new(2));
    for _ in 0..3 {
        mine(&a, &now, ka.address()).await;
    }
    let b1 = mine(&b, &now, kb.address()).await;
    for _ in 0..2 {
        mine(&b, &now, kb.address()).await;
    }
    // A payment on B's branch, so the UTXO sets differ in more than coinbases.
    let pay = kb.spend(
        &[outpoint(b1.txs[0].txid(), 0)],
        &[(ka.address(), 4), (kb.address(), 5)],
    );
    b.submit_tx_async(pay.clone()).await.unwrap();
    for _ in 0..2 {
        mine(&b, &now, kb.address()).await;
    }
    assert_ne!(state(&a).1, state(&b).1);

    let sa = PeerService::new(a.clone(), dev_config());
    let sb = PeerService::new(b.clone(), dev_config());
    let (url_a, url_b) = (serve(sa.router()).await, serve(sb.router()).await);
    sa.add_peer(&url_b, PeerSource::Registered).unwrap();
    sb.add_peer(&url_a, PeerSource::Registered).unwrap();

    // B has more work: syncing from A fetches A's branch but keeps B's chain.
    let b_before = state(&b).0;
    let rb = sb.resolve().await;
    assert!(!rb.adopted, "{rb:?}");
    // Headers first: A's chain has less work, so B read its three headers and fetched
    // no body at all.
    let synced = &rb.peers[0];
    assert_eq!(
        (synced.headers, synced.fetched, synced.side),
        (3, 0, 0),
        "{rb:?}"
    );
    assert_eq!(state(&b).0, b_before);

    // A adopts B's chain, reorganising away its own three blocks.
    let (status, body) = call(&sa.router(), "POST", "/v1/peers/resolve", None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["adopted"], json!(true), "{body}");
    assert_eq!(body["height"], json!(5));
    assert_eq!(state(&a).0, state(&b).0);
    assert_eq!(state(&a).1, state(&b).1, "identical UTXO set hash");
    assert!(confirmed(&a, &pay.txid()));
    assert!(a.verify().unwrap().ok());

    // Both peers now show as seen.
    let (_, peers) = call(&sa.router(), "GET", "/v1/peers", None, None).await;
    assert_eq!(peers[0]["status"], json!("ok"), "{peers}");
    assert_eq!(peers[0]["url"], json!(url_b));

    // The seed's route: nothing new now, so our chain is authoritative.
    let (status, body) = call(&sa.router(), "GET", "/nodes/resolve", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["message"], json!("Our chain is authoritative"));
    assert_eq!(body["chain"].as_array().unwrap().len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_pushes_blocks_and_txs_and_orphans_trigger_sync() {
    let now = clock();
    let (a, b) = (fast_engine(&now), fast_engine(&now));
    let ka = TestKey::new(1);
    // Bind A's listener first so B can be configured with A's URL at start.
    let listener_a = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url_a = format!("http://{}", listener_a.local_addr().unwrap());
    let listener_b = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url_b = format!("http://{}", listener_b.local_addr().unwrap());
    let sa = PeerService::new(
        a.clone(),
        PeerConfig {
            initial_peers: vec![url_b.clone()],
            self_url: Some(url_a.clone()),
            ..dev_config()
        },
    );
    let sb = PeerService::new(
        b.clone(),
        PeerConfig {
            initial_peers: vec![url_a.clone()],
            self_url: Some(url_b.clone()),
            ..dev_config()
        },
    );
    let ra = sa.router();
    tokio::spawn(async move { axum::serve(listener_a, ra).await });
    let rb = sb.router();
    tokio::spawn(async move { axum::serve(listener_b, rb).await });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run_a = tokio::spawn(sa.clone().run(async move {
        let _ = stop_rx.await;
    }));
    tokio::spawn(sb.clone().run(std::future::pending()));
    // Both run loops are going (each has reached the other once) before A mines.
    assert!(
        wait_for(|| {
            sa.peers().iter().all(|p| p.last_seen.is_some())
                && sb.peers().iter().all(|p| p.last_seen.is_some())
        })
        .await
    );

    let b1 = mine(&a, &now, ka.address()).await;
    for _ in 0..2 {
        mine(&a, &now, ka.address()).await;
    }
    assert!(
        wait_for(|| b.status().unwrap().best_hash == a.status().unwrap().best_hash).await,
        "B hears A's blocks"
    );
    let pay = ka.spend(&[outpoint(b1.txs[0].txid(), 0)], &[(ka.address(), 9)]);
    a.submit_tx_async(pay.clone()).await.unwrap();
    assert!(
        wait_for(|| b.mempool(10).unwrap().iter().any(|e| e.txid == pay.txid())).await,
        "B hears A's transaction"
    );

    // Stop A's relay, mine two blocks on A, then push only the tip to B: B lacks its
    // parent, answers 202 and syncs from A.
    stop_tx.send(()).unwrap();
    run_a.await.unwrap();
    mine(&a, &now, ka.address()).await;
    let tip = mine(&a, &now, ka.address()).await;
    let push = json!({"hex": hex::encode(tip.encode()), "from": url_a}).to_string();
    let (status, body) = call(&sb.router(), "POST", "/v1/p2p/blocks", Some(push), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["outcome"], json!("unknown_parent"));
    assert!(
        wait_for(|| b.status().unwrap().best_hash == tip.hash()).await,
        "B synced the missing parent from A"
    );
    assert_eq!(state(&a).1, state(&b).1);
}

async fn push_tx(s: &PeerService, tx: &Transaction) -> (StatusCode, Value) {
    let push = json!({"hex": hex::encode(tx.encode()), "from": "http://127.0.0.1:9"});
    call(
        &s.router(),
        "POST",
        "/v1/p2p/tx",
        Some(push.to_string()),
        None,
    )
    .await
}

fn in_mempool(e: &Engine, txid: Hash256) -> bool {
    e.mempool(100).unwrap().iter().any(|m| m.txid == txid)
}

/// Node B for the orphan tests: `funded` blocks paying `k`, two more so their
/// coinbases mature, and B's peer service running.
async fn orphan_node(
    k: &TestKey,
    funded: usize,
) -> (Arc<AtomicU64>, Engine, PeerService, Vec<Block>) {
    let node = orphan_node_not_running(k, funded).await;
    tokio::spawn(node.2.clone().run(std::future::pending()));
    node
}

/// [`orphan_node`] with B's peer service not running yet.
async fn orphan_node_not_running(
    k: &TestKey,
    funded: usize,
) -> (Arc<AtomicU64>, Engine, PeerService, Vec<Block>) {
    let now = clock();
    let b = fast_engine(&now);
    let mut blocks = Vec::new();
    for _ in 0..funded {
        blocks.push(mine(&b, &now, k.address()).await);
    }
    for _ in 0..2 {
        mine(&b, &now, k.address()).await;
    }
    let sb = PeerService::new(b.clone(), dev_config());
    (now, b, sb, blocks)
}

/// An orphan's parent may never be relayed at all: it can arrive inside a block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_is_admitted_when_its_parent_arrives_in_a_block() {
    let k = TestKey::new(5);
    let (now, b, sb, funded) = orphan_node(&k, 1).await;
    let (parent, child) = orphan_pushed(&k, &sb, &funded[0]).await;
    mine_with(&b, &now, &k, parent).await;
    assert_orphan_admitted(&b, &sb, &child).await;
}

/// The bug (a flaky CI failure of the test above): `run` subscribed to the engine only
/// when its spawned future was first polled, so a block committed before a worker
/// picked it up was never heard and its orphans never retried. The subscription is now
/// taken when `run` is called; here the future is polled only after the block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_a_block_committed_before_run_is_polled_still_frees_its_orphans() {
    let k = TestKey::new(6);
    let (now, b, sb, funded) = orphan_node_not_running(&k, 1).await;
    let run = sb.clone().run(std::future::pending());
    let (parent, child) = orphan_pushed(&k, &sb, &funded[0]).await;
    mine_with(&b, &now, &k, parent).await;
    tokio::spawn(run);
    assert_orphan_admitted(&b, &sb, &child).await;
}

/// Pushes to `sb` a child of a not yet known spend of `funded`'s coinbase (held as an
/// orphan); returns the parent and the child.
async fn orphan_pushed(
    k: &TestKey,
    sb: &PeerService,
    funded: &Block,
) -> (Transaction, Transaction) {
    let parent = k.spend(&[outpoint(funded.txs[0].txid(), 0)], &[(k.address(), 9)]);
    let child = k.spend(&[outpoint(parent.txid(), 0)], &[(k.address(), 8)]);
    assert_eq!(push_tx(sb, &child).await.0, StatusCode::ACCEPTED);
    assert_eq!(sb.orphan_count(), 1);
    (parent, child)
}

/// Mines on `b` a block holding `tx`, which never passes through its mempool.
async fn mine_with(b: &Engine, now: &AtomicU64, k: &TestKey, tx: Transaction) {
    now.fetch_add(60, SeqCst);
    let mut template = b.block_template(k.address(), vec![]).unwrap();
    let txid = tx.txid();
    template.txs.push(tx);
    let ids: Vec<_> = template.txs.iter().map(|t| t.txid()).collect();
    template.header.merkle_root = engine::merkle::merkle_root(&ids).0;
    let r = b.submit_block_async(template.mine_cpu()).await.unwrap();
    assert!(matches!(r, BlockAccepted::Connected { .. }), "{r:?}");
    assert!(!in_mempool(b, txid), "confirmed, not pending");
}

/// Waits for the orphan `child` to leave `sb`'s pool for `b`'s mempool.
async fn assert_orphan_admitted(b: &Engine, sb: &PeerService, child: &Transaction) {
    assert!(
        wait_for(|| in_mempool(b, child.txid())).await,
        "B's mempool: {:?}",
        b.mempool(100).unwrap()
    );
    assert_eq!(sb.orphan_count(), 0);
}

/// The bug: relay pushes run concurrently, so a child could reach a peer before its
/// parent; the peer refused it (`missing_input`) and, with no transaction sync, never
/// got it until it was mined. Now it is held as an orphan and admitted once the
/// parent arrives, as is an orphan of that orphan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_relayed_before_its_parent_is_admitted_once_the_parent_arrives() {
    let k = TestKey::new(4);
    let (_now, b, sb, funded) = orphan_node(&k, 1).await;
    let parent = k.spend(&[outpoint(funded[0].txs[0].txid(), 0)], &[(k.address(), 9)]);
    let child = k.spend(&[outpoint(parent.txid(), 0)], &[(k.address(), 8)]);
    let grandchild = k.spend(&[outpoint(child.txid(), 0)], &[(k.address(), 7)]);

    for (tx, held) in [(&grandchild, 1), (&child, 2)] {
        let (status, body) = push_tx(&sb, tx).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["outcome"], json!("orphan"), "{body}");
        assert_eq!(body["txid"], json!(tx.txid()), "{body}");
        assert_eq!(sb.orphan_count(), held);
    }
    // A duplicate push is held once.
    assert_eq!(push_tx(&sb, &child).await.0, StatusCode::ACCEPTED);
    assert_eq!(sb.orphan_count(), 2);
    assert!(!in_mempool(&b, child.txid()));

    let (status, body) = push_tx(&sb, &parent).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        wait_for(|| [&parent, &child, &grandchild]
            .iter()
            .all(|t| in_mempool(&b, t.txid())))
        .await,
        "B's mempool: {:?}",
        b.mempool(100).unwrap()
    );
    assert_eq!(sb.orphan_count(), 0);
}

/// An orphan waits for every transaction it spends; one refused for another reason
/// when retried (here a double spend of a now-spent output) is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_waits_for_all_its_parents_and_is_dropped_when_invalid() {
    let k = TestKey::new(5);
    let (_now, b, sb, funded) = orphan_node(&k, 2).await;
    let p1 = k.spend(&[outpoint(funded[0].txs[0].txid(), 0)], &[(k.address(), 9)]);
    let p2 = k.spend(&[outpoint(funded[1].txs[0].txid(), 0)], &[(k.address(), 9)]);
    let both = k.spend(
        &[outpoint(p1.txid(), 0), outpoint(p2.txid(), 0)],
        &[(k.address(), 17)],
    );
    // Spends more than p1's output holds: only found out once p1 is known.
    let greedy = k.spend(&[outpoint(p1.txid(), 0)], &[(k.address(), 100)]);

    for tx in [&both, &greedy] {
        assert_eq!(push_tx(&sb, tx).await.0, StatusCode::ACCEPTED);
    }
    assert_eq!(sb.orphan_count(), 2);
    assert_eq!(push_tx(&sb, &p1).await.0, StatusCode::OK);
    // Both retried on p1: `greedy` is dropped, `both` still lacks p2 and is held.
    assert!(wait_for(|| sb.orphan_count() == 1).await);
    assert!(!in_mempool(&b, both.txid()));

    assert_eq!(push_tx(&sb, &p2).await.0, StatusCode::OK);
    assert!(wait_for(|| in_mempool(&b, both.txid())).await);
    assert_eq!(sb.orphan_count(), 0);
    assert!(!in_mempool(&b, greedy.txid()));

    // Only a missing input makes an orphan: a double spend gets the plain refusal.
    let double = k.spend(&[outpoint(p1.txid(), 0)], &[(k.address(), 8)]);
    let (status, body) = push_tx(&sb, &double).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], json!("double_spend"), "{body}");
    assert_eq!(sb.orphan_count(), 0);
}

/// A fake peer that offers exactly one block, whatever it is.
/// The headers of `blocks` as `POST /v1/p2p/headers` answers them.
fn headers_answer(blocks: &[Block]) -> Response {
    let bytes: Vec<u8> = blocks.iter().flat_map(|b| b.header.to_bytes()).collect();
    ([(header::CONTENT_TYPE, OCTET_STREAM)], bytes).into_response()
}

async fn fake_peer(block: Block) -> String {
    let hex_block = hex::encode(block.encode());
    let router = Router::new()
        .route(
            "/v1/p2p/headers",
            post(move || async move { headers_answer(std::slice::from_ref(&block)) }),
        )
        .route(
            "/v1/p2p/blocks/{hash}",
            get(move || {
                let hex = hex_block.clone();
                async move { Json(json!({ "hex": hex })) }
            }),
        );
    serve(router).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_serving_invalid_blocks_is_refused_and_changes_nothing() {
    let now = clock();
    let a = fast_engine(&now);
    let k = TestKey::new(3);
    mine(&a, &now, k.address()).await;
    let before = state(&a);

    // An inflated coinbase with valid proof of work and more work than our chain.
    now.fetch_add(60, SeqCst);
    let mut t = a.block_template(k.address(), vec![]).unwrap();
    t.txs[0].outputs[0].amount = 1_000_000;
    t.header.merkle_root = engine::merkle::merkle_root(&[t.txs[0].txid()]).0;
    let inflated = t.mine_cpu();
    assert!(inflated.header.meets_target());

    // A block whose hash misses its target.
    let mut bad_pow = a.block_template(k.address(), vec![]).unwrap().mine_cpu();
    while bad_pow.header.meets_target() {
        bad_pow.header.nonce = bad_pow.header.nonce.wrapping_add(1);
    }

    // Statuses as on every route (`crate::error::reject_status`): 422 for a ledger rule
    // broken given the chain, 400 for data that can never be valid.
    let cases = [
        (
            inflated,
            "coinbase_too_large",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (bad_pow, "high_hash", StatusCode::BAD_REQUEST),
    ];
    for (block, code, expected_status) in cases {
        let s = PeerService::new(a.clone(), dev_config());
        let url = fake_peer(block.clone()).await;
        s.add_peer(&url, PeerSource::Registered).unwrap();
        let report = s.sync_from(&url).await;
        assert!(report.error.is_some(), "{report:?}");
        assert!(!report.adopted);
        assert_eq!(state(&a), before, "nothing changed");
        let view = &s.peers()[0];
        assert_eq!(view.status, "misbehaving", "{view:?}");
        // Banned: a resolve does not even ask it again.
        assert!(s.resolve().await.peers.is_empty());

        // Pushed directly, the same block gets a JSON error and changes nothing.
        let push = json!({ "hex": hex::encode(block.encode()) }).to_string();
        let (status, body) = call(&s.router(), "POST", "/v1/p2p/blocks", Some(push), None).await;
        assert_eq!(status, expected_status, "{body}");
        assert_eq!(body["error"], json!(code), "{body}");
        assert_eq!(state(&a), before);
    }
}

/// A peer that offers `blocks` (in order) and serves each of them.
async fn fake_chain_peer(blocks: Vec<Block>) -> String {
    let bodies: Arc<HashMap<Hash256, Vec<u8>>> =
        Arc::new(blocks.iter().map(|b| (b.hash(), b.encode())).collect());
    let router = Router::new()
        .route(
            "/v1/p2p/headers",
            post(move || async move { headers_answer(&blocks) }),
        )
        .route(
            "/v1/p2p/blocks/{hash}",
            get(move |Path(h): Path<String>| async move {
                let body = h
                    .parse()
                    .ok()
                    .and_then(|h: Hash256| bodies.get(&h).cloned());
                body.map(|b| ([(header::CONTENT_TYPE, OCTET_STREAM)], b).into_response())
                    .unwrap_or_else(|| StatusCode::NOT_FOUND.into_response())
            }),
        );
    serve(router).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_sync_connects_every_block_in_order_and_says_where_its_time_went() {
    let now = clock();
    let (a, b) = (fast_engine(&now), fast_engine(&now));
    let k = TestKey::new(4);
    let first = mine(&a, &now, k.address()).await;
    for _ in 0..2 {
        mine(&a, &now, k.address()).await;
    }
    let pay = k.spend(&[outpoint(first.txs[0].txid(), 0)], &[(k.address(), 7)]);
    a.submit_tx_async(pay.clone()).await.unwrap();
    for _ in 0..20 {
        mine(&a, &now, k.address()).await;
    }
    let sb = PeerService::new(b.clone(), dev_config());
    let url = serve(PeerService::new(a.clone(), dev_config()).router()).await;
    sb.add_peer(&url, PeerSource::Registered).unwrap();
    let report = sb.sync_from(&url).await;
    assert_eq!(report.error, None, "{report:?}");
    assert_eq!((report.fetched, report.connected), (23, 23), "{report:?}");
    // A's log also holds the payment's admission to its mempool.
    assert_eq!(state(&b).0, state(&a).0);
    assert_eq!(state(&b).1, state(&a).1, "the same UTXO set");
    assert!(confirmed(&b, &pay.txid()));
    let t = report
        .timings
        .expect("a sync that fetched reports its timings");
    assert_eq!(t.engine.blocks, 23, "{t:?}");
    assert!((1..=23).contains(&t.engine.commits), "{t:?}");
    assert!(
        t.wall_ms > 0.0 && t.fetch_ms > 0.0 && t.engine.fold_ms > 0.0,
        "{t:?}"
    );
    assert!(
        t.engine.commit_ms > 0.0 && t.engine.verify_ms > 0.0,
        "{t:?}"
    );
    assert!(b.verify().unwrap().ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_block_mid_sync_stops_it_with_the_blocks_before_it_connected() {
    let now = clock();
    let (a, b) = (fast_engine(&now), fast_engine(&now));
    let k = TestKey::new(5);
    let mut blocks = Vec::new();
    for _ in 0..6 {
        blocks.push(mine(&a, &now, k.address()).await);
    }
    // An inflated coinbase on top, and a child of it: the peer offers all eight.
    now.fetch_add(60, SeqCst);
    let mut t = a.block_template(k.address(), vec![]).unwrap();
    t.txs[0].outputs[0].amount += 1;
    t.header.merkle_root = engine::merkle::merkle_root(&[t.txs[0].txid()]).0;
    let inflated = t.mine_cpu();
    let mut t = a.block_template(k.address(), vec![]).unwrap();
    t.header.prev_hash = inflated.hash();
    blocks.extend([inflated, t.mine_cpu()]);
    let sb = PeerService::new(b.clone(), dev_config());
    let url = fake_chain_peer(blocks.clone()).await;
    sb.add_peer(&url, PeerSource::Registered).unwrap();
    let report = sb.sync_from(&url).await;
    let error = report.error.clone().unwrap_or_default();
    assert!(error.contains("coinbase"), "{report:?}");
    assert_eq!(report.connected, 6, "{report:?}");
    assert_eq!(
        state(&b),
        state(&a),
        "the six good blocks, nothing of the bad ones"
    );
    assert_eq!(sb.peers()[0].status, "misbehaving");
    assert!(b.verify().unwrap().ok());
}

#[tokio::test]
async fn registering_peers_needs_the_admin_token_outside_dev() {
    let now = clock();
    let e = fast_engine(&now);
    let guarded = PeerService::new(
        e.clone(),
        PeerConfig {
            admin_token: Some("s3cret".into()),
            ..PeerConfig::default()
        },
    )
    .router();
    let add = || Some(json!({"url": "http://127.0.0.1:9"}).to_string());
    let (status, body) = call(&guarded, "POST", "/v1/peers", add(), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], json!("unauthorized"));
    assert!(body["message"].is_string());
    let (status, body) = call(&guarded, "POST", "/v1/peers", add(), Some("nope")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let nodes = || Some(json!({"nodes": ["127.0.0.1:5001"]}).to_string());
    let (status, _) = call(&guarded, "POST", "/nodes/register", nodes(), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, peers) = call(&guarded, "GET", "/v1/peers", None, None).await;
    assert_eq!(peers, json!([]), "nothing was registered");

    let (status, body) = call(&guarded, "POST", "/v1/peers", add(), Some("s3cret")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["url"], json!("http://127.0.0.1:9"));
    let (status, body) = call(&guarded, "POST", "/nodes/register", nodes(), Some("s3cret")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["message"], json!("New nodes have been added"));
    assert_eq!(
        body["total_nodes"],
        json!(["127.0.0.1:5001", "127.0.0.1:9"])
    );

    // The scheme in any case (RFC 7235); a wrong token of another length is just wrong.
    for auth in ["bearer s3cret", "BEARER s3cret", "Bearer   s3cret "] {
        let req = Request::builder()
            .method("POST")
            .uri("/v1/peers")
            .header("content-type", "application/json")
            .header("authorization", auth)
            .body(Body::from(
                json!({"url": "http://127.0.0.1:10"}).to_string(),
            ))
            .unwrap();
        let resp = guarded.clone().oneshot(req).await.unwrap();
        assert!(resp.status().is_success(), "{auth}: {}", resp.status());
    }
    let (status, _) = call(
        &guarded,
        "POST",
        "/v1/peers",
        add(),
        Some("s3cret-and-more"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // No token configured and not dev: registration is simply off.
    let closed = PeerService::new(e.clone(), PeerConfig::default()).router();
    let (status, body) = call(&closed, "POST", "/v1/peers", add(), Some("x")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // Dev mode: no token needed.
    let dev = PeerService::new(e, dev_config()).router();
    let (status, _) = call(&dev, "POST", "/v1/peers", add(), None).await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn malformed_requests_get_json_errors() {
    let now = clock();
    let e = fast_engine(&now);
    let r = PeerService::new(e.clone(), dev_config()).router();
    let before = state(&e);
    let cases = [
        ("POST", "/v1/p2p/blocks", Some("not json"), "malformed_json"),
        ("POST", "/v1/p2p/blocks", Some(r#"{"hex":"zz"}"#), "bad_hex"),
        (
            "POST",
            "/v1/p2p/blocks",
            Some(r#"{"hex":"00"}"#),
            "malformed",
        ),
        (
            "POST",
            "/v1/p2p/blocks",
            Some(r#"{"hex":"00","x":1}"#),
            "malformed_json",
        ),
        ("POST", "/v1/p2p/tx", Some(r#"{"hex":"0102"}"#), "malformed"),
        (
            "POST",
            "/v1/p2p/hashes",
            Some(r#"{"locator":["xx"]}"#),
            "malformed_json",
        ),
        (
            "POST",
            "/v1/p2p/headers",
            Some(r#"{"locator":["xx"]}"#),
            "malformed_json",
        ),
        // Regression (schemathesis ST201): serde read `{locator, limit}` from an array
        // of its fields, so `[[]]` answered 200 with headers.
        ("POST", "/v1/p2p/headers", Some("[[]]"), "malformed_json"),
        ("POST", "/v1/p2p/hashes", Some(" [[], 5]"), "malformed_json"),
        ("POST", "/v1/p2p/tx", Some(r#"["00"]"#), "malformed_json"),
        (
            "POST",
            "/v1/peers",
            Some(r#"["http://h:1"]"#),
            "malformed_json",
        ),
        ("GET", "/v1/p2p/blocks/xyz", None, "bad_hash"),
        (
            "POST",
            "/v1/peers",
            Some(r#"{"url":"https://example.org"}"#),
            "bad_url",
        ),
        (
            "POST",
            "/v1/peers",
            Some(r#"{"url":"http://h:1/path"}"#),
            "bad_url",
        ),
        ("POST", "/v1/peers", Some(r#"{"url":5}"#), "malformed_json"),
        ("POST", "/nodes/register", Some(r#"{}"#), "missing_nodes"),
        (
            "POST",
            "/nodes/register",
            Some(r#"{"nodes":["ok:1","ftp://x"]}"#),
            "bad_url",
        ),
    ];
    for (method, uri, body, code) in cases {
        let (status, v) = call(&r, method, uri, body.map(String::from), None).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{method} {uri} {body:?}: {v}"
        );
        assert_eq!(v["error"], json!(code), "{method} {uri} {body:?}: {v}");
        assert!(v["message"].is_string());
    }
    let (_, peers) = call(&r, "GET", "/v1/peers", None, None).await;
    assert_eq!(peers, json!([]), "a list with one bad URL adds nothing");
    let unknown = format!("/v1/p2p/blocks/{}", "ab".repeat(32));
    let (status, v) = call(&r, "GET", &unknown, None, None).await;
    assert_eq!(
        (status, v["error"].clone()),
        (StatusCode::NOT_FOUND, json!("not_found"))
    );
    assert_eq!(state(&e), before);

    // The wire protocol itself: hashes after genesis, and the genesis block by hash.
    let genesis = e.status().unwrap().genesis_hash;
    let (status, v) = call(&r, "GET", "/v1/p2p/locator", None, None).await;
    assert_eq!((status, v), (StatusCode::OK, json!([genesis])));
    let (_, hex_body) = call(&r, "GET", &format!("/v1/p2p/blocks/{genesis}"), None, None).await;
    let bytes = hex::decode(hex_body["hex"].as_str().unwrap()).unwrap();
    assert_eq!(Block::decode(&bytes).unwrap().hash(), genesis);
    // What sync asks for: the consensus bytes themselves, no JSON around them.
    let req = Request::get(format!("/v1/p2p/blocks/{genesis}"))
        .header("accept", "application/octet-stream")
        .body(Body::empty())
        .unwrap();
    let resp = r.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-type"],
        "application/octet-stream",
        "raw bytes"
    );
    let raw = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap();
    assert_eq!(
        raw.as_ref(),
        bytes.as_slice(),
        "the same bytes as the hex form"
    );
}

/// `POST /v1/p2p/headers` and its body, raw.
async fn post_headers_raw(r: &Router, body: Value) -> (StatusCode, Vec<u8>) {
    let req = Request::post("/v1/p2p/headers")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = r.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap();
    (status, bytes.to_vec())
}

#[tokio::test]
async fn headers_route_serves_the_best_chain_after_the_locator_as_raw_headers() {
    let now = clock();
    let e = fast_engine(&now);
    let k = TestKey::new(6);
    let mut blocks = Vec::new();
    for _ in 0..3 {
        blocks.push(mine(&e, &now, k.address()).await);
    }
    let raw = |bs: &[Block]| -> Vec<u8> { bs.iter().flat_map(|b| b.header.to_bytes()).collect() };
    let r = PeerService::new(e.clone(), dev_config()).router();
    let genesis = e.status().unwrap().genesis_hash;
    let cases = [
        (json!({"locator": [genesis]}), raw(&blocks)),
        (json!({"locator": [genesis], "limit": 2}), raw(&blocks[..2])),
        (
            json!({"locator": [blocks[1].hash(), genesis]}),
            raw(&blocks[2..]),
        ),
        // An unknown hash is skipped, as in any locator.
        (
            json!({"locator": [Hash256([9; 32]), blocks[0].hash()]}),
            raw(&blocks[1..]),
        ),
        (json!({"locator": [blocks[2].hash()]}), Vec::new()),
    ];
    for (body, want) in cases {
        let (status, got) = post_headers_raw(&r, body.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(got, want, "{body}");
    }
    let long: Vec<Hash256> = vec![genesis; 257];
    let (status, body) = post_headers_raw(&r, json!({ "locator": long })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"], json!("locator_too_long"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_whose_headers_break_the_chain_is_refused_before_any_body_is_fetched() {
    let now = clock();
    let (a, b) = (fast_engine(&now), fast_engine(&now));
    let k = TestKey::new(7);
    let mut blocks = Vec::new();
    for _ in 0..4 {
        blocks.push(mine(&a, &now, k.address()).await);
    }
    blocks.swap(1, 2); // headers out of order: the third names a parent not before it
    let sb = PeerService::new(b.clone(), dev_config());
    let url = fake_chain_peer(blocks).await;
    sb.add_peer(&url, PeerSource::Registered).unwrap();
    let report = sb.sync_from(&url).await;
    let error = report.error.clone().unwrap_or_default();
    assert!(error.contains("bad headers"), "{report:?}");
    assert_eq!(
        (report.headers, report.fetched),
        (4, 0),
        "read, refused, nothing fetched"
    );
    assert_eq!(b.status().unwrap().height, 0);
    assert_eq!(sb.peers()[0].status, "misbehaving");
}

#[test]
fn peer_urls_are_normalised() {
    assert_eq!(
        normalize_peer_url("127.0.0.1:5000").unwrap(),
        "http://127.0.0.1:5000"
    );
    assert_eq!(
        normalize_peer_url("http://Node.Example:80/").unwrap(),
        "http://node.example"
    );
    assert_eq!(
        normalize_peer_url(" http://[::1]:8080 ").unwrap(),
        "http://[::1]:8080"
    );
    for bad in [
        "",
        "https://a:1",
        "http://u:p@a:1",
        "http://a:1/x",
        "http://a:1?q",
        "::",
    ] {
        assert!(normalize_peer_url(bad).is_err(), "{bad}");
    }
}

/// Refusals still to give: (status, Retry-After), the last one first.
type Refusals = Arc<Mutex<Vec<(StatusCode, &'static str)>>>;

/// Answers requests with `refusals` while there are any, then lets them through: a
/// peer behind a rate limiter.
async fn refuse_first(
    State(refusals): State<Refusals>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let refusal = refusals.lock().unwrap().pop();
    match refusal {
        Some((status, retry_after)) => {
            (status, [(header::RETRY_AFTER, retry_after)], "slow down").into_response()
        }
        None => next.run(req).await,
    }
}

/// The bug: a peer answering 429 (its rate limit) or 503 was marked `unreachable` and
/// backed off exponentially as if it were down, ignoring its `Retry-After`. It must be
/// retried once its wait is over, and its blocks fetched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_answering_429_is_retried_not_dropped() {
    let now = clock();
    let (a, b) = (fast_engine(&now), fast_engine(&now));
    for _ in 0..3 {
        mine(&b, &now, TestKey::new(2).address()).await;
    }
    // Popped from the end: a 429 first, then a 503, then B serves normally.
    let refusals: Refusals = Arc::new(Mutex::new(vec![
        (StatusCode::SERVICE_UNAVAILABLE, "1"),
        (StatusCode::TOO_MANY_REQUESTS, "1"),
    ]));
    let sb = PeerService::new(b.clone(), dev_config());
    let router = sb.router().layer(axum::middleware::from_fn_with_state(
        refusals.clone(),
        refuse_first,
    ));
    let url_b = serve(router).await;
    let sa = PeerService::new(a.clone(), dev_config());
    sa.add_peer(&url_b, PeerSource::Registered).unwrap();

    let report = sa.sync_from(&url_b).await;
    assert!(
        report.error.as_deref().unwrap().contains("429"),
        "{report:?}"
    );
    let view = &sa.peers()[0];
    assert_eq!(
        (view.status, view.failures),
        ("rate_limited", 0),
        "{view:?}"
    );
    let wait = sa.waiting(&url_b).expect("waits as asked");
    assert!(
        wait <= Duration::from_secs(1),
        "Retry-After: 1 honoured, {wait:?}"
    );

    // Inside the wait nothing is sent (the 503 is still queued for B's next answer).
    let early = sa.sync_from(&url_b).await;
    assert!(early.error.unwrap().contains("back off"));
    assert_eq!(refusals.lock().unwrap().len(), 1);

    // The run loop comes back after each wait and gets the blocks.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runner = tokio::spawn(sa.clone().run(async move {
        let _ = stopped.await;
    }));
    // The blocks are connected while the sync runs; its outcome is recorded on the peer
    // only when it returns, so wait for both (reading the view in between once showed the
    // 503 it recovered from).
    let deadline = Instant::now() + Duration::from_secs(10);
    while state(&a).0 != state(&b).0 || sa.peers()[0].status != "ok" {
        assert!(
            Instant::now() < deadline,
            "never synced: {:?}",
            sa.peers()[0]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refusals.lock().unwrap().is_empty());
    let view = &sa.peers()[0];
    assert_eq!((view.status, view.failures), ("ok", 0), "{view:?}");
    assert_eq!(view.last_sync.as_ref().unwrap().error, None, "{view:?}");
    let _ = stop.send(());
    runner.await.unwrap();
}

fn with_file(initial: &[&str], dir: &std::path::Path) -> PeerConfig {
    PeerConfig {
        initial_peers: initial.iter().map(|u| u.to_string()).collect(),
        peers_file: Some(PeerFile::in_dir(dir)),
        ..dev_config()
    }
}

fn listed(s: &PeerService) -> Vec<(String, PeerSource)> {
    s.peers().into_iter().map(|p| (p.url, p.source)).collect()
}

#[tokio::test]
async fn known_peers_survive_a_restart_merged_with_the_flags() {
    let dir = tempfile::tempdir().unwrap();
    let (u9, u10, u11) = (
        "http://127.0.0.1:9",
        "http://127.0.0.1:10",
        "http://127.0.0.1:11",
    );
    let first = PeerService::new(fast_engine(&clock()), with_file(&[u9], dir.path()));
    let body = Some(format!("{{\"url\":\"{u10}\"}}"));
    let (status, _) = call(&first.router(), "POST", "/v1/peers", body, None).await;
    assert_eq!(status, StatusCode::CREATED);
    let registered_at = first.peers()[0].added_at;
    drop(first);

    // Same data directory, other flags: the saved peers come back, with their source.
    let second = PeerService::new(fast_engine(&clock()), with_file(&[u11], dir.path()));
    let want = |u: &str, s| (u.to_string(), s);
    assert_eq!(
        listed(&second),
        vec![
            want(u10, PeerSource::Registered),
            want(u11, PeerSource::Config),
            want(u9, PeerSource::Config),
        ]
    );
    assert_eq!(second.peers()[0].added_at, registered_at);
    // The merged list is saved at once, so a third start sees all three.
    let saved = PeerFile::in_dir(dir.path()).load().unwrap();
    assert_eq!(saved.len(), 3, "{saved:?}");
}

#[tokio::test]
async fn a_corrupt_peer_file_is_set_aside_and_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let file = PeerFile::in_dir(dir.path());
    std::fs::write(file.path(), "{\"version\": 1, \"peers\": [tru").unwrap();
    let s = PeerService::new(
        fast_engine(&clock()),
        with_file(&["127.0.0.1:9"], dir.path()),
    );
    assert_eq!(
        listed(&s),
        vec![("http://127.0.0.1:9".to_string(), PeerSource::Config)]
    );
    let bad = std::fs::read_to_string(dir.path().join("peers.json.bad")).unwrap();
    assert!(bad.ends_with("[tru"), "the unreadable list is kept: {bad}");
    assert_eq!(file.load().unwrap().len(), 1, "a fresh list replaced it");
}

#[test]
fn bearer_scheme_is_case_insensitive_and_tokens_compare_by_digest() {
    assert_eq!(bearer_token("Bearer abc"), Some("abc"));
    assert_eq!(bearer_token("bearer abc"), Some("abc"));
    assert_eq!(bearer_token("BeArEr   abc  "), Some("abc"));
    for bad in ["Basic abc", "Bearerabc", "abc", "Bearer ", "Bearer"] {
        assert_eq!(bearer_token(bad), None, "{bad}");
    }
    assert!(token_matches("s3cret", "s3cret"));
    for wrong in ["", "s3cre", "s3cret!", "S3CRET", "x"] {
        assert!(!token_matches(wrong, "s3cret"), "{wrong}");
    }
}

/// Issue 17 item 7: a registration whose peer list could not be written is not
/// acknowledged as lasting; once the disk takes writes again, registering again saves it.
#[tokio::test]
async fn a_registration_that_could_not_be_saved_is_an_error_not_201() {
    let dir = tempfile::tempdir().unwrap();
    let file = PeerFile::in_dir(dir.path());
    let s = PeerService::new(fast_engine(&clock()), with_file(&[], dir.path()));
    // A non-empty directory where the list goes: the rename over it fails.
    std::fs::create_dir(file.path()).unwrap();
    std::fs::write(file.path().join("x"), "").unwrap();
    let body = || Some(json!({"url": "http://127.0.0.1:9"}).to_string());
    let (status, v) = call(&s.router(), "POST", "/v1/peers", body(), None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["error"], json!("storage_error"), "{v}");
    let nodes = Some(json!({"nodes": ["127.0.0.1:5001"]}).to_string());
    let (status, v) = call(&s.router(), "POST", "/nodes/register", nodes, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");

    std::fs::remove_dir_all(file.path()).unwrap();
    let (status, v) = call(&s.router(), "POST", "/v1/peers", body(), None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["added"], json!(false), "{v}");
    let saved: Vec<String> = file.load().unwrap().into_iter().map(|p| p.url).collect();
    assert_eq!(saved, ["http://127.0.0.1:5001", "http://127.0.0.1:9"]);
}

/// Issue 17 item 6: orphan pushes are cheap to send; the syncs they start respect each
/// peer's backoff and come at most once per ORPHAN_SYNC_GAP per peer, however many arrive.
#[tokio::test]
async fn orphan_pushes_start_syncs_within_backoff_and_at_most_once_per_gap() {
    let (a, b, c) = (
        "http://127.0.0.1:9",
        "http://127.0.0.1:10",
        "http://127.0.0.1:11",
    );
    let s = PeerService::new(
        fast_engine(&clock()),
        PeerConfig {
            initial_peers: vec![a.into(), b.into(), c.into()],
            ..dev_config()
        },
    );
    {
        let mut peers = s.lock_peers();
        let later = Instant::now() + Duration::from_secs(60);
        let p = peers.get_mut(b).unwrap();
        p.failures = 3;
        p.next_sync = later;
        peers.get_mut(c).unwrap().banned_until = Some(later);
    }
    let urls = |t: Vec<(String, Duration)>| t.into_iter().map(|(u, _)| u).collect::<Vec<_>>();
    // An anonymous push: every peer not backing off or banned, at once.
    assert_eq!(
        s.orphan_sync_targets(None),
        vec![(a.to_string(), Duration::ZERO)]
    );
    // The next push within the gap waits for the gap's end; the rest join that one.
    let deferred = s.orphan_sync_targets(Some(a));
    assert_eq!(urls(deferred.clone()), [a]);
    assert!(deferred[0].1 > Duration::ZERO && deferred[0].1 <= ORPHAN_SYNC_GAP);
    for _ in 0..100 {
        assert!(s.orphan_sync_targets(None).is_empty());
        assert!(s.orphan_sync_targets(Some(a)).is_empty());
    }
    // A push naming a known peer syncs from it alone; one in backoff is left alone.
    assert!(s.orphan_sync_targets(Some(b)).is_empty());
    s.lock_peers().get_mut(a).unwrap().orphan_sync_at = Some(Instant::now() - ORPHAN_SYNC_GAP);
    assert_eq!(urls(s.orphan_sync_targets(Some("127.0.0.1:9"))), [a]);
}

/// A push as the listener hands it on: with the client's address.
async fn push_from(
    router: &Router,
    ip: &str,
    path: &str,
    body: Value,
) -> (StatusCode, Value, axum::http::HeaderMap) {
    let client = std::net::SocketAddr::new(ip.parse().unwrap(), 40_000);
    let mut req = Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(client));
    let resp = router.clone().oneshot(req).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, json, headers)
}

fn block_push(b: &Block, from: Option<&str>) -> Value {
    json!({ "hex": hex::encode(b.encode()), "from": from })
}

/// Issue 17 item 6: a client pushing a consensus-invalid block is banned from pushing (403
/// `banned`, `Retry-After`, connection closed) while other clients' pushes are taken; the
/// known peer a push names is banned too only when the push came from that peer's own
/// address, so a forged `from` cannot get an honest peer banned.
#[tokio::test]
async fn an_invalid_push_bans_its_client_and_only_the_peer_it_really_came_from() {
    let now = clock();
    let a = fast_engine(&now);
    let k = TestKey::new(31);
    mine(&a, &now, k.address()).await;
    let inflated = |e: &Engine| {
        now.fetch_add(60, SeqCst);
        let mut t = e.block_template(k.address(), vec![]).unwrap();
        t.txs[0].outputs[0].amount = 1_000_000;
        t.header.merkle_root = engine::merkle::merkle_root(&[t.txs[0].txid()]).0;
        t.mine_cpu()
    };
    let honest_peer = "http://203.0.113.5:8333";
    let s = PeerService::new(
        a.clone(),
        PeerConfig {
            initial_peers: vec![honest_peer.into()],
            ..dev_config()
        },
    );
    let router = s.router();
    let status_of = |s: &PeerService| s.peers()[0].status;

    // A stranger names the honest peer in `from`: the stranger is banned, the peer is not.
    let bad = inflated(&a);
    let (st, r, _) = push_from(
        &router,
        "198.51.100.7",
        "/v1/p2p/blocks",
        block_push(&bad, Some(honest_peer)),
    )
    .await;
    assert_eq!(
        (st, r["error"].clone()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!("coinbase_too_large")
        ),
        "{r}"
    );
    assert_ne!(status_of(&s), "misbehaving");
    now.fetch_add(60, SeqCst);
    let good = a.block_template(k.address(), vec![]).unwrap().mine_cpu();
    for path in ["/v1/p2p/blocks", "/v1/p2p/tx"] {
        let (st, r, h) = push_from(&router, "198.51.100.7", path, block_push(&good, None)).await;
        assert_eq!(
            (st, r["error"].clone()),
            (StatusCode::FORBIDDEN, json!("banned")),
            "{path}: {r}"
        );
        let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
        assert!(retry > 0 && retry <= super::BAN_SECS, "{retry}");
        assert_eq!(h["connection"], "close");
    }
    assert_eq!(
        state(&a).0,
        bad.header.prev_hash,
        "the banned push changed nothing"
    );
    // Another client's push is taken.
    let (st, r, _) = push_from(
        &router,
        "198.51.100.8",
        "/v1/p2p/blocks",
        block_push(&good, None),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(state(&a).0, good.hash());

    // The peer itself pushes an invalid block from its own address: banned, and ignored
    // as a sync source as long.
    let bad = inflated(&a);
    let (st, _, _) = push_from(
        &router,
        "203.0.113.5",
        "/v1/p2p/blocks",
        block_push(&bad, Some(honest_peer)),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(status_of(&s), "misbehaving");
    let counts = s.ban_counts();
    assert_eq!((counts.bans, counts.banned, counts.refused), (2, 2, 2));
    let (st, listed) = call(&router, "GET", "/v1/peers/banned", None, None).await;
    assert_eq!(st, StatusCode::OK);
    let ips: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["ip"].as_str().unwrap())
        .collect();
    assert_eq!(ips.len(), 2, "{listed}");
    assert!(
        ips.contains(&"198.51.100.7") && ips.contains(&"203.0.113.5"),
        "{listed}"
    );
}

/// Issue 17 item 1: while our chain is below the minimum chain work, a peer whose chain
/// does not reach it is not fetched from (retried later, not banned); once its chain has
/// the work, sync fetches it as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_chain_below_the_minimum_chain_work_is_not_fetched() {
    let now = clock();
    let a = fast_engine(&now);
    let mut p = engine::testkit::fast_params();
    let per_block = p.initial_bits.work().unwrap();
    p.min_chain_work = per_block * 8u64;
    let n = now.clone();
    let mut c = EngineConfig::new(p);
    c.clock = Arc::new(move || n.load(SeqCst));
    let b = Engine::in_memory(c).unwrap();
    let key = TestKey::new(1);
    for _ in 0..3 {
        mine(&a, &now, key.address()).await;
    }
    let sa = PeerService::new(a.clone(), dev_config());
    let sb = PeerService::new(b.clone(), dev_config());
    // The whole node's routes: sync reads the peer's chain work from its /v1/status.
    let state = crate::AppState::new(a.clone(), crate::NodeConfig::default(), None);
    let url_a = serve(crate::node_app(state, &sa)).await;
    sb.add_peer(&url_a, PeerSource::Registered).unwrap();
    let report = sb.sync_from(&url_a).await;
    assert_eq!(report.fetched, 0, "{report:?}");
    let error = report.error.clone().unwrap_or_default();
    assert!(error.contains("minimum chain work"), "{report:?}");
    assert_eq!(b.status().unwrap().height, 0);
    let peer = sb.peers().into_iter().next().unwrap();
    assert_ne!(peer.status, "banned", "{:?}", peer.status);
    // Genesis and seven blocks reach the minimum: fetched and adopted.
    for _ in 0..4 {
        mine(&a, &now, key.address()).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let report = sb.sync_from(&url_a).await;
    assert!(report.error.is_none() && report.adopted, "{report:?}");
    assert_eq!(b.status().unwrap().best_hash, a.status().unwrap().best_hash);
}
