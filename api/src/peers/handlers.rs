//! The HTTP side of peering: `/v1/peers`, `/v1/p2p/*` and the seed's `/nodes/*` routes.

use super::*;
use crate::error::ErrorBody;
use crate::extract::ClientIp;
use crate::views::TxAcceptedView;
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::{self, Next};

/// The most of a banned client's body read (and thrown away) before it is answered, so
/// that a client that sent a small push reads the 403 rather than a reset connection;
/// the rest of a larger one is left unread and the connection closed.
const BANNED_DRAIN_BYTES: u64 = 64 * 1024;

/// The peer service's part of the OpenAPI document (merged by [`crate::openapi`]).
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    list_peers,
    add_peer,
    list_banned,
    resolve_v1,
    register_nodes,
    resolve_seed,
    p2p_locator,
    p2p_hashes,
    p2p_headers,
    p2p_get_block,
    p2p_push_block,
    p2p_push_tx
))]
pub(crate) struct PeerApi;

/// `POST /v1/peers`'s answer.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct PeerAdded {
    /// The peer's normalised base URL.
    url: String,
    /// False when it was already known.
    added: bool,
    /// How many peers are known now.
    peers: usize,
}

#[utoipa::path(get, path = "/v1/peers", tag = "peers",
    responses((status = 200, body = [PeerView], description = "every known peer and its health")))]
async fn list_peers(State(s): State<PeerService>) -> Json<Vec<PeerView>> {
    Json(s.peers())
}

#[utoipa::path(post, path = "/v1/peers", tag = "peers", request_body = AddPeerRequest,
    security((), ("admin_token" = [])),
    responses((status = 201, body = PeerAdded, description = "added and saved"),
              (status = 200, body = PeerAdded, description = "already known (saved again)"),
              (status = 400, body = ErrorBody, description = "bad_url, malformed_json"),
              (status = 401, body = ErrorBody, description = "no `Authorization: Bearer` token (non-dev nodes)"),
              (status = 403, body = ErrorBody, description = "wrong token, or no --admin-token configured")))]
async fn add_peer(
    State(s): State<PeerService>,
    headers: HeaderMap,
    crate::extract::Body(body): crate::extract::Body,
) -> ApiResult<impl IntoResponse> {
    s.authorize(&headers)?;
    let req: AddPeerRequest = parse_body(&body)?;
    let url = normalize_peer_url(&req.url).map_err(|e| AppError::bad_request("bad_url", e))?;
    let added = s
        .add_peer(&url, PeerSource::Registered)
        .map_err(|e| AppError::bad_request("bad_url", e))?;
    // Saved even when already known: an earlier registration of it may have failed to
    // save, and answering 200 now must mean it is on disk.
    s.persist().await?;
    // The run loop syncs from a new peer within a tick.
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(PeerAdded {
            url,
            added,
            peers: s.peer_urls().len(),
        }),
    ))
}

/// Lists the client addresses whose pushes are refused now: admin only (like
/// registration), since it names clients' IPs.
#[utoipa::path(get, path = "/v1/peers/banned", tag = "peers",
    security((), ("admin_token" = [])),
    responses((status = 200, body = [BannedView], description = "clients banned from pushing to /v1/p2p/*, longest ban first"),
              (status = 401, body = ErrorBody, description = "no `Authorization: Bearer` token (non-dev nodes)"),
              (status = 403, body = ErrorBody, description = "wrong token, or no --admin-token configured")))]
async fn list_banned(
    State(s): State<PeerService>,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<BannedView>>> {
    s.authorize(&headers)?;
    Ok(Json(s.inner.misbehaviour.banned(std::time::Instant::now())))
}

#[utoipa::path(post, path = "/v1/peers/resolve", tag = "peers",
    responses((status = 200, body = ResolveReport, description = "synced from every peer now")))]
async fn resolve_v1(State(s): State<PeerService>) -> Json<ResolveReport> {
    Json(s.resolve().await)
}

#[utoipa::path(post, path = "/nodes/register", tag = "seed", request_body = RegisterNodesRequest,
    security((), ("admin_token" = [])),
    responses((status = 201, body = serde_json::Value, description = "`{message, total_nodes}`: the peers as host:port"),
              (status = 400, body = ErrorBody, description = "missing_nodes, bad_url, malformed_json"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn register_nodes(
    State(s): State<PeerService>,
    headers: HeaderMap,
    crate::extract::Body(body): crate::extract::Body,
) -> ApiResult<impl IntoResponse> {
    s.authorize(&headers)?;
    let req: RegisterNodesRequest = parse_body(&body)?;
    let Some(nodes) = req.nodes.filter(|n| !n.is_empty()) else {
        return Err(AppError::bad_request(
            "missing_nodes",
            "please supply a valid list of nodes: {\"nodes\": [\"http://host:port\", ...]}",
        ));
    };
    let registered = s.register(&nodes);
    // Saved even when refused (a list refused part-way, full, added the peers before it)
    // or already known (an earlier save may have failed).
    s.persist().await?;
    registered?;
    // The seed lists host:port without the scheme.
    let total: Vec<String> = s
        .peers()
        .into_iter()
        .map(|p| p.url.trim_start_matches("http://").to_string())
        .collect();
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "message": "New nodes have been added",
            "total_nodes": total,
        })),
    ))
}

/// The seed's consensus route: sync from every peer, say whether our chain was
/// replaced, and list the (most recent part of the) best chain.
#[utoipa::path(get, path = "/nodes/resolve", tag = "seed",
    responses((status = 200, body = serde_json::Value,
               description = "`{message, chain, length, peers}`: whether our chain was replaced, and the newest blocks")))]
async fn resolve_seed(State(s): State<PeerService>) -> ApiResult<Json<serde_json::Value>> {
    let report = s.resolve().await;
    let engine = &s.inner.engine;
    let from = (report.height + 1).saturating_sub(MAX_CHAIN_LISTED as u64);
    let chain = engine
        .blocks(from, MAX_CHAIN_LISTED)
        .map_err(AppError::from)?;
    let message = if report.adopted {
        "Our chain was replaced"
    } else {
        "Our chain is authoritative"
    };
    Ok(Json(serde_json::json!({
        "message": message,
        "chain": chain,
        "length": report.height + 1,
        "peers": report.peers,
    })))
}

#[utoipa::path(get, path = "/v1/p2p/locator", tag = "p2p",
    responses((status = 200, body = [String], description = "our block locator: hashes, newest first")))]
async fn p2p_locator(State(s): State<PeerService>) -> ApiResult<Json<Vec<Hash256>>> {
    s.inner.engine.locator().map(Json).map_err(AppError::from)
}

#[utoipa::path(post, path = "/v1/p2p/hashes", tag = "p2p", request_body = HashesRequest,
    responses((status = 200, body = [String], description = "best-chain hashes after the first locator entry we know"),
              (status = 400, body = ErrorBody, description = "locator_too_long, malformed_json")))]
async fn p2p_hashes(
    State(s): State<PeerService>,
    crate::extract::Body(body): crate::extract::Body,
) -> ApiResult<Json<Vec<Hash256>>> {
    let (locator, limit) = locator_request(&body, HASHES_PER_ROUND)?;
    s.inner
        .engine
        .hashes_after(&locator, limit)
        .map(Json)
        .map_err(AppError::from)
}

#[utoipa::path(post, path = "/v1/p2p/headers", tag = "p2p", request_body = HashesRequest,
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>,
               description = "the best chain's block headers after the first locator entry we know, in chain order: 80 bytes each (the consensus header encoding), concatenated; `limit` defaults to and is at most 2000"),
              (status = 400, body = ErrorBody, description = "locator_too_long, malformed_json")))]
async fn p2p_headers(
    State(s): State<PeerService>,
    crate::extract::Body(body): crate::extract::Body,
) -> ApiResult<Response> {
    let (locator, limit) = locator_request(&body, HEADERS_PER_ROUND)?;
    let headers = s
        .inner
        .engine
        .headers_after(&locator, limit)
        .map_err(AppError::from)?;
    let bytes: Vec<u8> = headers.iter().flat_map(|h| h.to_bytes()).collect();
    Ok(([(header::CONTENT_TYPE, OCTET_STREAM)], bytes).into_response())
}

/// A `{locator, limit}` body: the locator (at most 256 hashes) and the limit, `max` when
/// absent and never above it.
fn locator_request(body: &[u8], max: usize) -> ApiResult<(Vec<Hash256>, usize)> {
    let req: HashesRequest = parse_body(body)?;
    if req.locator.len() > 256 {
        return Err(AppError::bad_request(
            "locator_too_long",
            "a locator has at most 256 hashes",
        ));
    }
    Ok((req.locator, req.limit.unwrap_or(max).clamp(1, max)))
}

#[utoipa::path(get, path = "/v1/p2p/blocks/{hash}", tag = "p2p", params(("hash" = String, Path, description = "block hash")),
    responses((status = 200, content(
                  (Vec<u8> = "application/octet-stream"),
                  (HexBody = "application/json")),
               description = "the block's consensus encoding: raw bytes when the request sends `Accept: application/octet-stream` (what sync asks for), otherwise `{hex}`"),
              (status = 400, body = ErrorBody, description = "bad_hash"),
              (status = 404, body = ErrorBody, description = "not_found")))]
async fn p2p_get_block(
    State(s): State<PeerService>,
    Path(hash): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let hash: Hash256 = hash
        .parse()
        .map_err(|e| AppError::bad_request("bad_hash", format!("{e}")))?;
    let Some(bytes) = s.inner.engine.block_bytes(&hash).map_err(AppError::from)? else {
        return Err(AppError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no block {hash}"),
        ));
    };
    // The bytes as the log holds them, not a hex copy twice their size inside a JSON
    // document.
    if wants_octets(&headers) {
        let kind = [(header::CONTENT_TYPE, OCTET_STREAM)];
        return Ok((kind, bytes).into_response());
    }
    Ok(Json(HexBody {
        hex: hex::encode(bytes),
    })
    .into_response())
}

/// Whether the client asked for raw bytes (`Accept: application/octet-stream`).
fn wants_octets(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().starts_with(OCTET_STREAM)))
}

#[utoipa::path(post, path = "/v1/p2p/blocks", tag = "p2p", request_body = HexPush,
    responses((status = 200, body = serde_json::Value, description = "the engine's outcome: connected, side_chain, duplicate"),
              (status = 202, body = serde_json::Value, description = "unknown_parent: syncing from the sender"),
              (status = 400, body = ErrorBody, description = "bad_hex, malformed, or a block that is never valid"),
              (status = 403, body = ErrorBody, description = "banned: this client address (IPv6: its /64) pushed a consensus-invalid block or transaction, or a flood of orphan blocks; its pushes are refused unparsed, the connection closed, until Retry-After (seconds). Or cross_site"),
              (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody, description = "a rule broken given the chain, or a policy refusal that does not penalise the sender: fork_too_far_behind, below_min_chain_work"),
              (status = 503, body = ErrorBody, description = "side_chain_full: stored side-chain blocks within reach of the tip would pass --max-side-chain-mb (nothing written, the sender not penalised); or timeout, storage_error, shutting_down")))]
async fn p2p_push_block(
    State(s): State<PeerService>,
    ClientIp(ip): ClientIp,
    crate::extract::Body(body): crate::extract::Body,
) -> ApiResult<Response> {
    let req: HexPush = parse_body(&body)?;
    let block: Block = decode_hex(&req.hex, "block")?;
    let hash = block.hash();
    if let Some(from) = req.from.as_deref().and_then(|f| normalize_peer_url(f).ok()) {
        s.remember_origin(hash, &from);
    }
    match s.submit_block(block).await {
        Ok(accepted) => Ok(Json(accepted).into_response()),
        Err(e) if matches!(e.reject(), Some(Reject::UnknownParent(_))) => {
            s.penalise(ip, req.from.as_deref(), Offence::Orphan);
            s.sync_after_orphan(req.from);
            Ok((
                StatusCode::ACCEPTED,
                Json(serde_json::json!({
                    "outcome": "unknown_parent",
                    "hash": hash,
                    "message": "parent unknown; syncing from the sender",
                })),
            )
                .into_response())
        }
        Err(e) => {
            if let Some(offence) = e.reject().and_then(misbehaviour::block_offence) {
                s.penalise(ip, req.from.as_deref(), offence);
            }
            Err(AppError::from(e))
        }
    }
}

/// A peer's transaction. One spending an unknown transaction is held as an orphan and
/// answered 202 (like a block with an unknown parent); one too large to hold gets the
/// engine's refusal, as does every other refusal.
#[utoipa::path(post, path = "/v1/p2p/tx", tag = "p2p", request_body = HexPush,
    responses((status = 200, body = TxAcceptedView, description = "admitted to the mempool"),
              (status = 202, body = serde_json::Value, description = "orphan: held until the transaction it spends arrives"),
              (status = 400, body = ErrorBody), (status = 403, body = ErrorBody, description = "banned: this client address (IPv6: its /64) pushed a consensus-invalid block or transaction, or a flood of orphan blocks; its pushes are refused unparsed, the connection closed, until Retry-After (seconds). Or cross_site"),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn p2p_push_tx(
    State(s): State<PeerService>,
    ClientIp(ip): ClientIp,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let req: HexPush = parse_body(&body)?;
    let tx: Transaction = decode_hex(&req.hex, "transaction")?;
    let txid = tx.txid();
    if let Some(from) = req.from.as_deref().and_then(|f| normalize_peer_url(f).ok()) {
        s.remember_origin(txid, &from);
    }
    match s.inner.engine.submit_tx_async(tx.clone()).await {
        Ok(accepted) => Ok(Json(accepted).into_response()),
        Err(e) if is_orphan_refusal(&e) => match s.hold_orphan(tx) {
            Ok(_) => Ok((
                StatusCode::ACCEPTED,
                Json(serde_json::json!({
                    "outcome": "orphan",
                    "txid": txid,
                    "message": format!("held as an orphan until its input's transaction arrives: {e}"),
                })),
            )
                .into_response()),
            Err(refused) => {
                tracing::debug!(%txid, "orphan not held: {refused}");
                Err(AppError::from(e))
            }
        },
        Err(e) => {
            if let Some(offence) = e.reject().and_then(misbehaviour::tx_offence) {
                s.penalise(ip, req.from.as_deref(), offence);
            }
            Err(AppError::from(e))
        }
    }
}

/// Refuses a push from a banned client before its body is parsed: `403 banned` with
/// `Retry-After`, and the connection closed (Core disconnects a discouraged peer).
async fn refuse_banned(
    State(s): State<PeerService>,
    ClientIp(ip): ClientIp,
    req: Request,
    next: Next,
) -> Response {
    let Some(ip) = ip else {
        return next.run(req).await;
    };
    let Err((left, reason)) = s.inner.misbehaviour.check(ip, std::time::Instant::now()) else {
        return next.run(req).await;
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    crate::bodylimit::drain(req, declared.min(BANNED_DRAIN_BYTES)).await;
    let secs = left.as_secs_f64().ceil().max(1.0) as u64;
    let mut resp = AppError::new(
        StatusCode::FORBIDDEN,
        "banned",
        format!(
            "pushes from {} are refused for {secs} s more: it pushed {reason}",
            RateLimiter::key(ip)
        ),
    )
    .into_response();
    let headers = resp.headers_mut();
    headers.insert("retry-after", HeaderValue::from(secs));
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

impl PeerService {
    /// Scores what a push from `ip` did wrong ([`misbehaviour`]); a client that reaches the
    /// ban is said in a warning, and so is the known peer it is, if its URL names that
    /// address ([`PeerService::peer_at`]). Requests without a client address (in-process
    /// routers) are not scored.
    fn penalise(&self, ip: Option<IpAddr>, from: Option<&str>, offence: Offence) {
        let Some(ip) = ip else { return };
        let peer = self.peer_at(from, ip);
        // A peer we chose, pushing from its own address, relays ahead of us whenever we
        // lag behind it (a burst as long as our lag); the syncs its orphans start are
        // bounded by ORPHAN_SYNC_GAP already.
        if offence == Offence::Orphan && peer.is_some() {
            return;
        }
        let bans = &self.inner.misbehaviour;
        match bans.record(ip, offence, std::time::Instant::now()) {
            Scored::Banned => {
                let ban_for = bans.config().ban_for;
                tracing::warn!(
                    client = %RateLimiter::key(ip),
                    reason = offence.reason(),
                    ban_secs = ban_for.as_secs(),
                    peer = peer.as_deref().unwrap_or("-"),
                    "client banned from pushing: misbehaved"
                );
                if let Some(url) = peer {
                    let why = format!("pushed {} from {ip}", offence.reason());
                    self.ban_peer(&url, &why, ban_for);
                }
            }
            Scored::Counted(score) => {
                tracing::debug!(client = %RateLimiter::key(ip), score, reason = offence.reason(), "push scored");
            }
            Scored::AlreadyBanned | Scored::Exempt => {}
        }
    }

    /// Counts of the push bans, for `/metrics`.
    pub fn ban_counts(&self) -> BanCounts {
        self.inner.misbehaviour.counts(std::time::Instant::now())
    }
}

impl PeerService {
    /// The routes listed in the module docs, state applied (ready to `.merge`).
    pub fn router(&self) -> Router {
        // A pushed block may be as large as the chain allows, as hex, plus the envelope.
        let block_limit = crate::bodylimit::peer_push_limit(self.inner.engine.params());
        Router::new()
            .route("/v1/peers", get(list_peers).post(add_peer))
            .route("/v1/peers/banned", get(list_banned))
            .route("/v1/peers/resolve", post(resolve_v1))
            .route("/nodes/register", post(register_nodes))
            .route("/nodes/resolve", get(resolve_seed))
            .route("/v1/p2p/locator", get(p2p_locator))
            .route("/v1/p2p/hashes", post(p2p_hashes))
            .route("/v1/p2p/headers", post(p2p_headers))
            .route("/v1/p2p/blocks/{hash}", get(p2p_get_block))
            .route(
                "/v1/p2p/blocks",
                post(p2p_push_block)
                    .layer(DefaultBodyLimit::max(block_limit))
                    .layer(middleware::from_fn_with_state(self.clone(), refuse_banned)),
            )
            .route(
                "/v1/p2p/tx",
                post(p2p_push_tx)
                    .layer(DefaultBodyLimit::max(block_limit))
                    .layer(middleware::from_fn_with_state(self.clone(), refuse_banned)),
            )
            .with_state(self.clone())
    }
}
