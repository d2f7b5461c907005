//! Router-level tests (no sockets): every error has the `{"error", "message"}` shape and a
//! 4xx status (503 where the node's storage fails), never a 500.

use api::{app, AppState, NodeConfig};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use engine::params::ChainParams;
use engine::{Engine, EngineConfig};
use http_body_util::BodyExt;
use tower::ServiceExt;

fn state(dev: bool) -> AppState {
    let engine = Engine::in_memory(EngineConfig::new(ChainParams::dev())).unwrap();
    let config = NodeConfig {
        dev,
        body_limit: 4096,
        ..NodeConfig::default()
    };
    AppState::new(engine, config, None)
}

async fn call(s: &AppState, req: Request<Body>) -> (StatusCode, serde_json::Value) {
    let resp = app(s.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("non-JSON body for {status}: {bytes:?}"));
    (status, v)
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

fn post_json(uri: &str, body: &str) -> Request<Body> {
    Request::post(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn assert_error(v: &serde_json::Value, code: &str) {
    assert_eq!(v["error"], code, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
}

#[tokio::test]
async fn error_shapes() {
    let s = state(false);
    let cases: Vec<(Request<Body>, StatusCode, &str)> = vec![
        (get("/v1/nope"), StatusCode::NOT_FOUND, "not_found"),
        (get("/api/nope"), StatusCode::NOT_FOUND, "not_found"),
        (
            Request::delete("/v1/status").body(Body::empty()).unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            post_json("/v1/tx", "{\"hex\":"),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            post_json("/v1/tx", "{\"hex\": 5}"),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            post_json("/v1/tx", "{\"hex\": \"00\", \"x\": 1}"),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            post_json("/v1/tx", "{\"hex\": \"zz\"}"),
            StatusCode::BAD_REQUEST,
            "bad_hex",
        ),
        (
            post_json("/v1/tx", "{\"hex\": \"0100\"}"),
            StatusCode::BAD_REQUEST,
            "malformed",
        ),
        (
            Request::post("/v1/tx").body(Body::from("{}")).unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            post_json("/v1/tx", &format!("{{\"hex\": \"{}\"}}", "00".repeat(5000))),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
        (
            get("/v1/addresses/bp1qqqq"),
            StatusCode::BAD_REQUEST,
            "bad_address",
        ),
        (get("/v1/tx/abc"), StatusCode::BAD_REQUEST, "bad_hash"),
        (
            get(&format!("/v1/tx/{}", "00".repeat(32))),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (get("/v1/blocks/99"), StatusCode::NOT_FOUND, "not_found"),
        (
            get("/v1/blocks/xyz"),
            StatusCode::BAD_REQUEST,
            "bad_block_id",
        ),
        (
            get("/v1/blocks?limit=-1"),
            StatusCode::BAD_REQUEST,
            "bad_query",
        ),
        (
            get("/v1/mining/template"),
            StatusCode::BAD_REQUEST,
            "bad_query",
        ),
        (
            get("/v1/mining/template?address=nope"),
            StatusCode::BAD_REQUEST,
            "bad_address",
        ),
        (
            post_json(
                "/v1/mining/submit",
                "{\"job_id\":\"x\",\"extra_nonce\":\"00000000\",\"time\":1,\"nonce\":1}",
            ),
            StatusCode::CONFLICT,
            "stale_job",
        ),
        (
            post_json(
                "/v1/mining/submit",
                "{\"job_id\":\"x\",\"extra_nonce\":\"00\",\"time\":-1,\"nonce\":1}",
            ),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            get("/v1/events?topics=bogus"),
            StatusCode::BAD_REQUEST,
            "bad_topic",
        ),
        (
            get("/v1/events?topics=address:bp1zz"),
            StatusCode::BAD_REQUEST,
            "bad_address",
        ),
        (
            get("/wallet/balance"),
            StatusCode::BAD_REQUEST,
            "missing_address",
        ),
        (
            post_json("/transactions/new", "{\"sender\":\"a\"}"),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (get("/mine"), StatusCode::FORBIDDEN, "dev_mode_only"),
        (get("/wallet/new"), StatusCode::FORBIDDEN, "dev_mode_only"),
    ];
    for (req, status, code) in cases {
        let uri = req.uri().clone();
        let (got, v) = call(&s, req).await;
        assert_eq!(got, status, "{uri}: {v}");
        assert_error(&v, code);
    }
}

#[tokio::test]
async fn pocket_routes_are_json_and_gated() {
    let s = state(false);
    for path in [
        "/api/new_wallet",
        "/api/reset_system",
        "/api/send",
        "/api/mine_block",
    ] {
        let (status, v) = call(&s, post_json(path, "")).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert!(v["data"].is_null());
        assert!(
            v["error"].as_str().unwrap().starts_with("dev mode only"),
            "{v}"
        );
    }
    let (status, v) = call(&s, get("/api/get_wallets")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(v["error"].is_string());
    let (_, blocks) = call(&s, get("/api/get_blocks")).await;
    let b = &blocks[0];
    let inner: serde_json::Value =
        serde_json::from_str(b["serializedBlock"].as_str().unwrap()).unwrap();
    assert_eq!(inner["prevHash"], "", "genesis prevHash is an empty string");
    assert!(inner["nonce"].is_number());
    let tx: serde_json::Value =
        serde_json::from_str(inner["transactions"][0].as_str().unwrap()).unwrap();
    assert!(tx["inputs"].is_array() && tx["outputs"].is_array());
    let (_, pool) = call(&s, get("/api/get_pool")).await;
    assert!(pool.as_array().unwrap().is_empty());
    let (_, cs) = call(&s, get("/api/get_chainstate")).await;
    assert!(cs.is_object());
}

#[tokio::test]
async fn status_and_openapi() {
    let s = state(true);
    let (status, v) = call(&s, get("/v1/status")).await;
    assert_eq!(status, StatusCode::OK);
    for k in [
        "network",
        "height",
        "best_hash",
        "chainwork",
        "difficulty",
        "mempool_size",
        "utxo_count",
        "utxo_set_hash",
        "genesis_hash",
        "bits",
        "dev",
    ] {
        assert!(v.get(k).is_some(), "status lacks {k}: {v}");
    }
    assert_eq!(v["dev"], true);
    let (_, doc) = call(&s, get("/v1/openapi.json")).await;
    assert!(doc["paths"]["/v1/mining/template"].is_object());
    assert!(doc["paths"]["/v1/events"].is_object());
}

fn from(ip: &str, uri: &str) -> Request<Body> {
    let mut req = get(uri);
    let addr: std::net::SocketAddr = format!("{ip}:40000").parse().unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(addr));
    req
}

#[tokio::test]
async fn rate_limit_answers_429_json_per_client() {
    let engine = Engine::in_memory(EngineConfig::new(ChainParams::dev())).unwrap();
    let config = NodeConfig {
        rate_limit: 3,
        ..NodeConfig::default()
    };
    let s = AppState::new(engine, config, None);
    let router = app(s.clone());
    let send = |req: Request<Body>| {
        let r = router.clone();
        async move {
            let resp = r.oneshot(req).await.unwrap();
            let status = resp.status();
            let retry = resp.headers().get("retry-after").cloned();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            (
                status,
                retry,
                serde_json::from_slice::<serde_json::Value>(&bytes).unwrap(),
            )
        }
    };
    // A burst of `rate` passes, the next is refused with the API's error shape.
    for _ in 0..3 {
        let (st, _, v) = send(from("203.0.113.9", "/v1/status")).await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    let (st, retry, v) = send(from("203.0.113.9", "/v1/status")).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    assert_error(&v, "rate_limited");
    assert_eq!(retry.unwrap(), "1");
    // Unknown paths count too (and are refused the same way).
    let (st, _, v) = send(from("203.0.113.9", "/v1/nope")).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    assert_error(&v, "rate_limited");
    // Another client is unaffected; loopback is exempt by default.
    let (st, _, _) = send(from("203.0.113.10", "/v1/status")).await;
    assert_eq!(st, StatusCode::OK);
    for _ in 0..20 {
        let (st, _, _) = send(from("127.0.0.1", "/healthz")).await;
        assert_eq!(st, StatusCode::OK);
    }
    // The bucket refills at `rate` per second.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let (st, _, v) = send(from("203.0.113.9", "/v1/status")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // The refusals show up in the latency metrics as 4xx on the matched route.
    let (_, _, _) = send(from("127.0.0.1", "/healthz")).await;
    let text = metrics_text(&router).await;
    assert!(
        text.contains("route=\"/v1/status\",method=\"GET\",status=\"4xx\""),
        "{text}"
    );
}

#[tokio::test]
async fn rate_limit_zero_is_off_and_loopback_can_be_limited() {
    let mk = |rate, loopback| {
        let engine = Engine::in_memory(EngineConfig::new(ChainParams::dev())).unwrap();
        app(AppState::new(
            engine,
            NodeConfig {
                rate_limit: rate,
                rate_limit_loopback: loopback,
                ..NodeConfig::default()
            },
            None,
        ))
    };
    let off = mk(0, true);
    for _ in 0..50 {
        let r = off
            .clone()
            .oneshot(from("198.51.100.4", "/healthz"))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let lo = mk(2, true);
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let r = lo
            .clone()
            .oneshot(from("127.0.0.1", "/healthz"))
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, vec![200, 200, 429]);
}

/// The node's `/metrics` page.
async fn metrics_text(router: &axum::Router) -> String {
    let resp = router.clone().oneshot(get("/metrics")).await.unwrap();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

async fn scrape(router: &axum::Router, name: &str) -> u64 {
    let text = metrics_text(router).await;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn peers_metric_follows_registrations_after_start() {
    use api::peers::{PeerConfig, PeerService};
    let s = state(true);
    let peers = PeerService::new(
        s.engine.clone(),
        PeerConfig {
            initial_peers: vec!["http://127.0.0.1:9".into()],
            dev: true,
            ..PeerConfig::default()
        },
    );
    let router = api::node_app(s, &peers);
    assert_eq!(scrape(&router, "bitplace_peers").await, 1);
    for (i, port) in [10, 11].into_iter().enumerate() {
        let resp = router
            .clone()
            .oneshot(post_json(
                "/v1/peers",
                &format!("{{\"url\":\"http://127.0.0.1:{port}\"}}"),
            ))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(scrape(&router, "bitplace_peers").await, 2 + i as u64);
    }
    // Registering a known peer again does not count twice.
    let resp = router
        .clone()
        .oneshot(post_json("/v1/peers", "{\"url\":\"http://127.0.0.1:10\"}"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(scrape(&router, "bitplace_peers").await, 3);
    assert_eq!(peers.peer_count(), 3);
}

/// A transaction pushed by a peer before its parent is held (202) and counted by the
/// `bitplace_orphan_txs` gauge; a client's `POST /v1/tx` of the same gets a plain refusal.
#[tokio::test]
async fn orphan_metric_counts_transactions_held_for_their_parent() {
    use api::peers::{PeerConfig, PeerService};
    use engine::encoding::Encode;
    use engine::testkit::{outpoint, TestKey};
    let s = state(true);
    let peers = PeerService::new(
        s.engine.clone(),
        PeerConfig {
            dev: true,
            ..PeerConfig::default()
        },
    );
    let router = api::node_app(s, &peers);
    assert_eq!(scrape(&router, "bitplace_orphan_txs").await, 0);
    let key = TestKey::new(7);
    let unknown_parent = engine::Hash256([0x42; 32]);
    let child = key.spend(&[outpoint(unknown_parent, 0)], &[(key.address(), 5)]);
    let hex = hex::encode(child.encode());
    let resp = router
        .clone()
        .oneshot(post_json("/v1/tx", &format!("{{\"hex\":\"{hex}\"}}")))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CONFLICT, "clients are not held");
    assert_eq!(scrape(&router, "bitplace_orphan_txs").await, 0);
    let resp = router
        .clone()
        .oneshot(post_json("/v1/p2p/tx", &format!("{{\"hex\":\"{hex}\"}}")))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(scrape(&router, "bitplace_orphan_txs").await, 1);
    assert_eq!(peers.orphan_count(), 1);
}

#[tokio::test]
async fn shader_is_served_byte_identical_to_the_miners_kernel() {
    // Read from disk here (not through the include_str! under test): a stale or edited
    // embedded copy would differ.
    let on_disk = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shaders/sha256d.wgsl"
    ))
    .unwrap();
    let s = state(false);
    for method in ["GET", "HEAD"] {
        let req = Request::builder()
            .method(method)
            .uri("/shaders/sha256d.wgsl")
            .body(Body::empty())
            .unwrap();
        let resp = app(s.clone()).oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{method}");
        assert_eq!(
            resp.headers()["content-type"],
            "text/wgsl; charset=utf-8",
            "{method}"
        );
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        if method == "GET" {
            assert_eq!(body.as_ref(), on_disk.as_slice(), "served bytes = the file");
        }
    }
    assert_eq!(api::web::SHADER.as_bytes(), on_disk.as_slice());
}

/// Pocket refuses `mine_block` asking for no transactions (0 or negative): so does the
/// alias, with its error envelope, and nothing is mined.
#[tokio::test]
async fn regression_pocket_mine_block_refuses_zero_and_negative_tx_amount() {
    let dir = tempfile::tempdir().unwrap();
    let custody = api::custody::Custody::open(dir.path()).unwrap();
    let engine = Engine::in_memory(EngineConfig::new(ChainParams::dev())).unwrap();
    let config = NodeConfig {
        dev: true,
        ..NodeConfig::default()
    };
    let s = AppState::new(engine, config, Some(custody));
    let to = engine::testkit::TestKey::new(1).address().to_string();
    for amount in ["0", "-1", "-5"] {
        let body = format!(r#"{{"address": "{to}", "txAmount": {amount}}}"#);
        let (status, v) = call(&s, post_json("/api/mine_block", &body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "txAmount {amount}: {v}");
        assert!(v["data"].is_null(), "{v}");
        assert!(v["error"].as_str().unwrap().contains("txAmount"), "{v}");
    }
    assert_eq!(s.engine.status().unwrap().height, 0, "nothing mined");
    let body = format!(r#"{{"address": "{to}", "txAmount": 1}}"#);
    let (status, v) = call(&s, post_json("/api/mine_block", &body)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["data"], "Block is mined");
}

/// `get_pool`'s `created` is when the transaction entered the pool, not the time of the
/// request (it was "now" on every call).
#[tokio::test]
async fn regression_pocket_get_pool_created_is_the_admission_time() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let now = Arc::new(AtomicU64::new(1_800_000_000));
    let mut config = EngineConfig::new(ChainParams::dev());
    let clock = now.clone();
    config.clock = Arc::new(move || clock.load(Ordering::SeqCst));
    let engine = Engine::in_memory(config).unwrap();
    let alice = engine::testkit::TestKey::new(1);
    let admitted_at = 1_800_000_030;
    // The engine's blocking calls, off the async runtime.
    let (engine, pay) = tokio::task::spawn_blocking({
        let now = now.clone();
        move || {
            let mut coinbase = None;
            for _ in 0..3 {
                now.fetch_add(10, Ordering::SeqCst);
                let hash = engine.mine_block(alice.address(), None).unwrap().hash();
                coinbase.get_or_insert(engine.block(&hash).unwrap().unwrap().1.txs[0].txid());
            }
            assert_eq!(now.load(Ordering::SeqCst), admitted_at);
            let pay = alice.spend(
                &[engine::testkit::outpoint(coinbase.unwrap(), 0)],
                &[(engine::testkit::TestKey::new(2).address(), 4)],
            );
            engine.submit_tx(pay.clone()).unwrap();
            (engine, pay)
        }
    })
    .await
    .unwrap();
    let s = AppState::new(engine, NodeConfig::default(), None);
    now.fetch_add(3600, Ordering::SeqCst);
    let (status, pool) = call(&s, get("/api/get_pool")).await;
    assert_eq!(status, StatusCode::OK);
    let row = &pool[0];
    assert_eq!(row["txID"], pay.txid().to_string());
    let tx: serde_json::Value =
        serde_json::from_str(row["serializedTransaction"].as_str().unwrap()).unwrap();
    assert_eq!(tx["created"], api::seed::iso_time(admitted_at), "{tx}");
    let (_, mempool) = call(&s, get("/v1/mempool")).await;
    assert_eq!(mempool[0]["time"], admitted_at, "{mempool}");
}

/// Regression (schemathesis ST204): a 405 from the page's fallback (`TRACE /`) carried no
/// `Allow` header, which RFC 9110 requires.
#[tokio::test]
async fn regression_method_not_allowed_on_the_page_lists_allowed_methods() {
    let s = state(true);
    for path in ["/", "/shaders/sha256d.wgsl", "/v1/status"] {
        let req = Request::builder()
            .method("TRACE")
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let resp = app(s.clone()).oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
        let allow = resp
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap().to_string());
        assert!(
            allow.as_deref().is_some_and(|a| a.contains("GET")),
            "{path}: Allow {allow:?}"
        );
    }
}

/// Regression (schemathesis ST103): a body of the wrong shape on a route using the JSON
/// extractor answered 422, undocumented and unlike every other route's 400 `invalid_body`.
#[tokio::test]
async fn regression_wrong_shaped_json_body_is_a_400_on_every_route() {
    let s = state(true);
    for (uri, body) in [
        (
            "/v1/mining/submit",
            r#"{"job_id":"","extra_nonce":"","time":0,"nonce":0,"x":42}"#,
        ),
        ("/v1/tx", r#"{"hex":"00","x":1}"#),
        ("/transactions/new", r#"{"hex":"00","x":1}"#),
        // Regression (schemathesis ST201): serde reads a struct from an array of its
        // fields, so these were accepted as `{"hex": "00"}` and the submit fields.
        ("/v1/tx", r#"["00"]"#),
        ("/transactions/new", r#"["00"]"#),
        ("/v1/mining/submit", r#" ["", "", 0, 0]"#),
    ] {
        let (status, v) = call(&s, post_json(uri, body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {v}");
        assert_error(&v, "invalid_body");
    }
}

/// A full disk through the HTTP router, on every run (it replaces the root-only tmpfs
/// test of `reliability/tests/storage.rs`): `POST /v1/tx` answers 503 `storage_error`
/// naming the cause and changes nothing, reads keep answering, the same submission is
/// refused again while the disk stays full and accepted once space returns, without a
/// restart; every acknowledged transaction survives a power loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_storage_error_and_accepts_again_once_space_returns() {
    use engine::encoding::Encode;
    use engine::testkit::fault::{Fault, FaultDisk, Tear};
    use engine::testkit::{outpoint, TestKey};
    let mut params = ChainParams::dev();
    params.initial_bits = engine::CompactTarget::EASIEST;
    params.retarget_interval = 0;
    let disk = FaultDisk::new();
    let engine = Engine::with_backend(disk.clone(), EngineConfig::new(params.clone())).unwrap();
    let key = TestKey::new(7);
    let miner = engine.clone();
    let addr = key.address();
    let mut coin = tokio::task::spawn_blocking(move || {
        let mut first = None;
        for _ in 0..3 {
            let b = miner.block_template(addr, vec![]).unwrap().mine_cpu();
            first.get_or_insert((b.txs[0].txid(), b.txs[0].outputs[0].amount));
            miner.submit_block(b).unwrap();
        }
        first.unwrap()
    })
    .await
    .unwrap();
    let s = AppState::new(engine, NodeConfig::default(), None);
    let submit = |coin: (engine::Hash256, u64)| {
        let tx = key.spend(&[outpoint(coin.0, 0)], &[(key.address(), coin.1)]);
        let body = format!("{{\"hex\":\"{}\"}}", hex::encode(tx.encode()));
        (tx.txid(), post_json("/v1/tx", &body))
    };
    let mut acked = Vec::new();
    for _ in 0..3 {
        let (txid, req) = submit(coin);
        assert_eq!(call(&s, req).await.0, StatusCode::OK);
        acked.push(txid);
        coin = (txid, coin.1);
    }
    // Overwrites of blocks the ledger holds still succeed: chain-spend until it grows.
    disk.arm(Fault::DiskFull(1));
    let (refused, body) = loop {
        assert!(acked.len() < 500, "never refused on a full disk");
        let (txid, req) = submit(coin);
        let (status, v) = call(&s, req).await;
        if status != StatusCode::OK {
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
            break (txid, v);
        }
        acked.push(txid);
        coin = (txid, coin.1);
    };
    assert_error(&body, "storage_error");
    let msg = body["message"].as_str().unwrap();
    assert!(msg.contains("No space left on device"), "{msg}");
    // Reads still answer, and the refused transaction is nowhere.
    let (status, after) = call(&s, get("/v1/status")).await;
    assert_eq!(status, StatusCode::OK, "{after}");
    assert_eq!(after["mempool_size"], acked.len(), "{after}");
    let (status, _) = call(&s, get(&format!("/v1/tx/{refused}"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, v) = call(&s, submit(coin).1).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "still full: {v}");
    let (_, again) = call(&s, get("/v1/status")).await;
    assert_eq!(
        again["log_length"], after["log_length"],
        "a refused write changed the log"
    );
    disk.free_space();
    let (status, v) = call(&s, submit(coin).1).await;
    assert_eq!(status, StatusCode::OK, "space is back: {v}");
    acked.push(refused);
    let (status, v) = call(&s, get(&format!("/v1/tx/{refused}"))).await;
    assert_eq!(
        (status, &v["in_mempool"]),
        (StatusCode::OK, &serde_json::json!(true))
    );
    // The power goes: what was acknowledged was on the disk.
    let image = disk.after_power_loss(Tear::Nothing);
    let reopened = Engine::with_backend(FaultDisk::with_image(image), EngineConfig::new(params));
    let reopened = reopened.unwrap();
    for t in &acked {
        assert!(
            reopened.transaction(t).unwrap().is_some(),
            "acknowledged {t} lost"
        );
    }
    assert!(reopened.verify().unwrap().ok());
    eprintln!(
        "full disk over HTTP: {} acknowledged (3 before it filled), then 503 storage_error ({msg}), again while \
         full, 200 once space returned; all {} acknowledged kept after a power loss",
        acked.len() - 1,
        acked.len()
    );
}

/// Issue 17 item 1: the seeds' chain views are paged (`offset`, `limit`, `X-Next-Offset`)
/// so no request builds the whole chain; the default call keeps the seeds' shape.
#[tokio::test]
async fn seed_chain_views_are_paged_and_the_default_call_keeps_its_shape() {
    let engine = Engine::in_memory(EngineConfig::new(engine::testkit::fast_params())).unwrap();
    let to = engine::testkit::TestKey::new(1).address();
    for _ in 0..6 {
        let b = engine.block_template(to, vec![]).unwrap().mine_cpu();
        engine.submit_block_async(b).await.unwrap();
    }
    let s = AppState::new(engine, NodeConfig::default(), None);
    let page = |uri: &str| {
        let (s, req) = (s.clone(), get(uri));
        async move {
            let resp = app(s).oneshot(req).await.unwrap();
            let status = resp.status();
            let next = resp
                .headers()
                .get("x-next-offset")
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            (status, v, next)
        }
    };
    let hash_at = |h: u64| s.engine.block_hash_at(h).unwrap().unwrap().to_string();
    let (status, all, next) = page("/api/get_blocks").await;
    assert_eq!(status, StatusCode::OK);
    let all = all.as_array().unwrap().clone();
    assert_eq!(all.len(), 7, "genesis and six blocks");
    assert_eq!(next, None, "nothing more");
    assert!(all[0]["serializedBlock"].is_string());
    let mut walked = Vec::new();
    let mut uri = "/api/get_blocks?offset=0&limit=3".to_string();
    loop {
        let (status, items, next) = page(&uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        let items = items.as_array().unwrap().clone();
        assert!(items.len() <= 3, "{uri}");
        walked.extend(items);
        match next {
            Some(n) => uri = format!("/api/get_blocks?offset={n}&limit=3"),
            None => break,
        }
    }
    assert_eq!(walked, all, "the pages add up to the default list");
    let (_, chain, next) = page("/chain?offset=2&limit=2").await;
    assert_eq!(chain["length"], 7);
    let rows = chain["chain"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["height"], 2);
    assert_eq!(rows[1]["hash"], hash_at(3));
    assert_eq!(next, Some(4));
    let (_, chain, next) = page("/chain").await;
    assert_eq!(chain["chain"].as_array().unwrap().len(), 7);
    assert_eq!(next, None);
    let (_, one, _) = page("/chain?offset=0&limit=0").await;
    assert_eq!(
        one["chain"].as_array().unwrap().len(),
        1,
        "limit 0 lists one"
    );
    let (status, v, _) = page("/api/get_blocks?offset=abc").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"], "bad_query");
}
