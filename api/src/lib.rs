//! The Bitplace node's HTTP face: the `/v1` JSON API, server-sent push events, the seeds'
//! route aliases, the web page, metrics and the OpenAPI document, over one [`engine::Engine`].
//!
//! [`app`] builds the whole router; the `bitplace-node` binary (src/main.rs) opens the
//! engine, builds an [`AppState`] and serves it.

pub mod bodylimit;
pub mod crosssite;
pub mod custody;
pub mod error;
pub mod events;
pub mod extract;
pub mod listen;
pub mod metrics;
pub mod openapi;
pub mod ratelimit;
pub mod seed;
pub mod state;
pub mod v1;
pub mod views;
pub mod web;

pub use error::AppError;
pub use state::{AppState, NodeConfig};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::time::Instant;

/// The node's own routes (/v1, the seeds' aliases, the page) with every limit and
/// middleware; the peer routes come through [`app_with`] / [`node_app`].
pub fn app(state: AppState) -> Router {
    app_with(state, Router::new())
}

/// [`app`] plus `extra` routes (e.g. the peer service's router, which carries its own
/// state), merged before the limits, timeouts and metrics are layered on, so they apply
/// to `extra` too.
pub fn app_with(state: AppState, extra: Router) -> Router {
    let body_limit = state.config.body_limit;
    let v1 = Router::new()
        .route("/v1/status", get(v1::status))
        .route("/v1/blocks", get(v1::blocks))
        .route("/v1/blocks/{id}", get(v1::block))
        .route("/v1/tx/{txid}", get(v1::transaction))
        .route("/v1/tx", post(v1::post_tx))
        .route("/v1/addresses/{address}", get(v1::address))
        .route("/v1/mempool", get(v1::mempool))
        .route("/v1/mining/template", get(v1::template))
        .route("/v1/mining/submit", post(v1::submit_work))
        .route("/v1/mining/workers", get(v1::workers))
        .route("/v1/events", get(events::events))
        .route("/v1/openapi.json", get(openapi::openapi_json))
        .route("/healthz", get(v1::healthz))
        .route("/metrics", get(v1::metrics));
    v1.merge(seed::routes())
        .fallback(web::fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone())
        .merge(extra)
        .layer(middleware::from_fn_with_state(state.clone(), timeout))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            bodylimit::refuse_oversized,
        ))
        .layer(middleware::from_fn(crosssite::guard))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            ratelimit::limit,
        ))
        .layer(middleware::from_fn_with_state(state, observe))
}

/// The whole node's router: [`app`] plus the peer service's routes, with the
/// `bitplace_peers`, `bitplace_orphan_txs` and `bitplace_p2p_ban*` metrics reading the
/// service's live state.
pub fn node_app(state: AppState, peers: &peers::PeerService) -> Router {
    let live = peers.clone();
    state
        .metrics
        .set_peer_source(move || live.peer_count() as u64);
    let live = peers.clone();
    state
        .metrics
        .set_orphan_source(move || live.orphan_count() as u64);
    let live = peers.clone();
    state.metrics.set_ban_source(move || live.ban_counts());
    app_with(state, peers.router())
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> AppError {
    AppError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// Bounds the time to the response head (an event stream's body is not covered: it
/// is meant to stay open). A timeout answers 503 JSON; the work in flight is dropped,
/// which is safe: engine commands either commit whole or not at all.
async fn timeout(State(s): State<AppState>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(s.config.request_timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => AppError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "the request took too long",
        )
        .into_response(),
    }
}

/// Records the latency histogram per matched route.
async fn observe(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    // The path as asked (the route is the pattern); its query may hold an address, which
    // is no secret on a public ledger.
    let path = req.uri().path().to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    let elapsed = start.elapsed();
    s.metrics.observe(&route, &method, status, elapsed);
    tracing::debug!(
        %method,
        %path,
        status,
        ms = format!("{:.1}", elapsed.as_secs_f64() * 1e3),
        "request"
    );
    resp
}

// Peers/consensus and the Stratum server (self-contained; main.rs starts them).
pub mod peers;
pub mod stratum;
