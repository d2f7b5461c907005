//! The OpenAPI document lists every route the node serves, and only those, with tags a
//! person reads and the statuses the layers around every handler can answer.
//!
//! The route list below is written out by hand on purpose (a second statement of the
//! router, compared both ways): a route added to the router must be added here and to the
//! document, a route documented but not served fails too.

use api::peers::{PeerConfig, PeerService};
use api::{AppState, NodeConfig};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use engine::params::ChainParams;
use engine::{Engine, EngineConfig};
use http_body_util::BodyExt;
use serde_json::Value;
use std::collections::BTreeSet;
use tower::ServiceExt;

/// Every (method, path) the node routes: its own, the seeds', the peer protocol's and the
/// two files of the page the document lists.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/v1/status"),
    ("get", "/v1/blocks"),
    ("get", "/v1/blocks/{id}"),
    ("get", "/v1/tx/{txid}"),
    ("post", "/v1/tx"),
    ("get", "/v1/addresses/{address}"),
    ("get", "/v1/mempool"),
    ("get", "/v1/mining/template"),
    ("post", "/v1/mining/submit"),
    ("get", "/v1/mining/workers"),
    ("get", "/v1/events"),
    ("get", "/v1/openapi.json"),
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/v1/peers"),
    ("post", "/v1/peers"),
    ("get", "/v1/peers/banned"),
    ("post", "/v1/peers/resolve"),
    ("post", "/nodes/register"),
    ("get", "/nodes/resolve"),
    ("get", "/v1/p2p/locator"),
    ("post", "/v1/p2p/hashes"),
    ("post", "/v1/p2p/headers"),
    ("get", "/v1/p2p/blocks/{hash}"),
    ("post", "/v1/p2p/blocks"),
    ("post", "/v1/p2p/tx"),
    ("get", "/api/get_blocks"),
    ("get", "/api/get_pool"),
    ("get", "/api/get_chainstate"),
    ("get", "/api/get_wallets"),
    ("post", "/api/new_wallet"),
    ("post", "/api/send"),
    ("post", "/api/mine_block"),
    ("post", "/api/reset_system"),
    ("get", "/chain"),
    ("post", "/transactions/new"),
    ("get", "/wallet/balance"),
    ("get", "/wallet/new"),
    ("get", "/mine"),
    ("get", "/"),
    ("get", "/shaders/sha256d.wgsl"),
];

const READABLE_TAGS: &[&str] = &[
    "chain",
    "transactions",
    "mining",
    "events",
    "peers",
    "p2p",
    "seed",
    "dev",
    "operations",
    "web",
];

fn document() -> Value {
    serde_json::to_value(api::openapi::document()).unwrap()
}

fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            out.insert((method.clone(), path.clone()));
        }
    }
    out
}

fn listed() -> BTreeSet<(String, String)> {
    ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect()
}

/// `(method, path)` of every `.route("path", get(..).post(..))` in the router's sources.
fn routed_in_source() -> BTreeSet<(String, String)> {
    let sources = [
        include_str!("../src/lib.rs"),
        include_str!("../src/peers/handlers.rs"),
        include_str!("../src/seed/mod.rs"),
    ];
    let path = regex::Regex::new(r#"^\s*"([^"]+)""#).unwrap();
    let method = regex::Regex::new(r"\b(get|post|put|delete|patch)\(").unwrap();
    let chain_end = regex::Regex::new(r";|\n\s*\}").unwrap();
    let mut out = BTreeSet::new();
    for src in sources {
        // Each `.route(` call up to the next one, cut at the end of the builder chain.
        for call in src.split(".route(").skip(1) {
            let call = chain_end.split(call).next().unwrap_or_default();
            let Some(p) = path.captures(call) else {
                continue;
            };
            for m in method.captures_iter(call) {
                out.insert((m[1].to_string(), p[1].to_string()));
            }
        }
    }
    out
}

#[test]
fn the_document_lists_every_route_and_only_those() {
    let doc = document();
    let listed = listed();
    let documented = documented(&doc);
    let missing: Vec<_> = listed.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "routes missing from the document: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "documented but not in the route list: {extra:?}"
    );
}

#[test]
fn the_route_list_matches_the_routers_source() {
    let routed = routed_in_source();
    assert!(
        routed.len() > 30,
        "the source scan found too few routes: {routed:?}"
    );
    let listed = listed();
    let unlisted: Vec<_> = routed.difference(&listed).collect();
    assert!(
        unlisted.is_empty(),
        "routed but not in ROUTES: {unlisted:?}"
    );
}

#[test]
fn every_operation_has_a_readable_tag_and_the_layers_statuses() {
    let doc = document();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let tags = op["tags"].as_array().cloned().unwrap_or_default();
            assert_eq!(tags.len(), 1, "{method} {path}: tags {tags:?}");
            let tag = tags[0].as_str().unwrap();
            assert!(READABLE_TAGS.contains(&tag), "{method} {path}: tag `{tag}`");
            let statuses = op["responses"].as_object().unwrap();
            let mut needed = vec!["429", "503"];
            if method == "post" {
                needed.extend(["400", "403", "413", "415"]);
            }
            if ["/mine", "/wallet/new"].contains(&path.as_str()) {
                needed.push("403");
            }
            for s in needed {
                assert!(statuses.contains_key(s), "{method} {path} lacks {s}");
            }
            assert!(
                statuses.keys().any(|s| s.starts_with('2')),
                "{method} {path} documents no success"
            );
        }
    }
    let tags: Vec<&str> = doc["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(tags, READABLE_TAGS);
}

#[test]
fn identifiers_carry_their_patterns() {
    let doc = document();
    let param = |path: &str, name: &str| -> Value {
        let op = &doc["paths"][path]["get"];
        op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{path} has no parameter {name}"))
            .clone()
    };
    for (path, name, pattern) in [
        ("/v1/tx/{txid}", "txid", api::openapi::HASH_PATTERN),
        ("/v1/p2p/blocks/{hash}", "hash", api::openapi::HASH_PATTERN),
        ("/v1/blocks/{id}", "id", api::openapi::BLOCK_ID_PATTERN),
        (
            "/v1/addresses/{address}",
            "address",
            api::openapi::ADDRESS_PATTERN,
        ),
        (
            "/v1/mining/template",
            "address",
            api::openapi::ADDRESS_PATTERN,
        ),
        ("/wallet/balance", "address", api::openapi::ADDRESS_PATTERN),
        ("/v1/events", "topics", api::openapi::TOPICS_PATTERN),
    ] {
        assert_eq!(
            param(path, name)["schema"]["pattern"],
            pattern,
            "{path} {name}"
        );
    }
    let limit = param("/v1/blocks", "limit");
    assert_eq!(limit["schema"]["minimum"], 0, "{limit}");
}

fn sample(path: &str) -> String {
    let hash = "00".repeat(32);
    path.replace("{id}", "0")
        .replace("{txid}", &hash)
        .replace("{hash}", &hash)
        .replace("{address}", "bp1pqyqszqgpqyqszqgpqyqszqgpqyqszqggnmngf")
}

/// Every listed route is served: the router answers it with something other than its
/// "no route" 404 or a 405.
#[tokio::test]
async fn every_listed_route_is_served() {
    let engine = Engine::in_memory(EngineConfig::new(ChainParams::dev())).unwrap();
    let config = NodeConfig {
        dev: true,
        ..NodeConfig::default()
    };
    let state = AppState::new(engine.clone(), config, None);
    let peers = PeerService::new(
        engine,
        PeerConfig {
            dev: true,
            ..PeerConfig::default()
        },
    );
    let router = api::node_app(state, &peers);
    for (method, path) in ROUTES {
        if *path == "/v1/events" {
            continue; // a stream: its route is checked by the events tests
        }
        let uri = sample(path);
        let req = Request::builder()
            .method(method.to_uppercase().as_str())
            .uri(&uri)
            .header("content-type", "application/json")
            .body(Body::from(if *method == "post" { "{}" } else { "" }))
            .unwrap();
        let resp = router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&body);
        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {uri}: {text}"
        );
        assert!(
            !(status == StatusCode::NOT_FOUND && text.contains("no route for")),
            "{method} {uri} is not routed: {text}"
        );
    }
}
