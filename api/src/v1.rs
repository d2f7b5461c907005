//! `/v1` handlers: reading the chain, submitting transactions, mining jobs.

use crate::error::{ApiResult, AppError, ErrorBody};
use crate::extract::{Json, Path, Query};
use crate::state::{AppState, Job};
use crate::views::*;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use engine::encoding::Decode;
use engine::{Address, BlockAccepted, Engine, Hash256, Transaction};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

/// Most items a list endpoint returns at once.
pub const MAX_LIMIT: usize = 1000;

/// Runs a read on the blocking pool: reads are snapshot reads but some (blocks with many
/// transactions, long histories) are heavy enough not to hold an async worker.
pub async fn read<T: Send + 'static>(
    engine: &Engine,
    f: impl FnOnce(&Engine) -> Result<T, engine::EngineError> + Send + 'static,
) -> ApiResult<T> {
    let engine = engine.clone();
    Ok(tokio::task::spawn_blocking(move || f(&engine)).await??)
}

pub fn parse_address(s: &str) -> ApiResult<Address> {
    s.trim()
        .parse::<Address>()
        .map_err(|e| AppError::bad_request("bad_address", format!("`{s}`: {e}")))
}

pub fn parse_hash(what: &str, s: &str) -> ApiResult<Hash256> {
    s.parse::<Hash256>().map_err(|e| {
        AppError::bad_request("bad_hash", format!("{what} must be 64 hex digits: {e}"))
    })
}

pub fn decode_hex(what: &str, s: &str) -> ApiResult<Vec<u8>> {
    hex::decode(s.trim())
        .map_err(|e| AppError::bad_request("bad_hex", format!("{what} is not valid hex: {e}")))
}

/// Decodes a transaction from its hex consensus encoding.
pub fn decode_tx(hex_str: &str) -> ApiResult<Transaction> {
    let bytes = decode_hex("hex", hex_str)?;
    Transaction::decode(&bytes).map_err(|e| {
        AppError::bad_request(
            "malformed",
            format!("not a valid transaction encoding: {e}"),
        )
    })
}

#[utoipa::path(get, path = "/v1/status", tag = "chain", responses((status = 200, body = StatusView)))]
pub async fn status(State(s): State<AppState>) -> ApiResult<axum::Json<StatusView>> {
    let dev = s.dev();
    let st = read(&s.engine, |e| e.status()).await?;
    Ok(axum::Json(StatusView::new(st, dev)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct BlocksQuery {
    /// First height (default: so that the newest `limit` blocks are returned).
    from: Option<u64>,
    /// At most this many (default 20, max 1000).
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/blocks", tag = "chain", params(BlocksQuery),
    responses((status = 200, body = [BlockSummary]), (status = 400, body = ErrorBody)))]
pub async fn blocks(
    State(s): State<AppState>,
    Query(q): Query<BlocksQuery>,
) -> ApiResult<axum::Json<Vec<BlockSummary>>> {
    let limit = q.limit.unwrap_or(20).min(MAX_LIMIT);
    let list = read(&s.engine, move |e| {
        let from = match q.from {
            Some(f) => f,
            None => {
                let h = e.status()?.height;
                (h + 1).saturating_sub(limit as u64)
            }
        };
        e.blocks(from, limit)
    })
    .await?;
    Ok(axum::Json(list.iter().map(BlockSummary::from).collect()))
}

/// Default transactions per block page.
pub const BLOCK_PAGE_TXS: usize = 100;
/// A block page also ends once its transactions reach this many encoded bytes (the page's
/// JSON is a few times that): a block of a few huge transactions is paged as well as one
/// of many small ones, so no request builds a block's whole view in memory.
pub const BLOCK_PAGE_BYTES: usize = 256 * 1024;

/// Which of a block's transactions to list.
#[derive(Deserialize, IntoParams, Clone, Copy, Default)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct BlockPage {
    /// Index of the first transaction listed (default 0).
    offset: Option<u64>,
    /// At most this many transactions (default 100, max 1000); the page also ends at
    /// 256 KiB of transactions. `next_offset` says where the next page starts.
    limit: Option<usize>,
}

/// Looks a block up by height (all digits) or hash (64 hex); lists the transactions of
/// `page` only.
pub async fn find_block(engine: &Engine, id: &str, page: BlockPage) -> ApiResult<BlockView> {
    let id = id.to_string();
    read(engine, move |e| {
        let hash = if id.len() < 64 && !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) {
            match id
                .parse::<u64>()
                .ok()
                .map(|h| e.block_hash_at(h))
                .transpose()?
            {
                Some(Some(h)) => h,
                _ => {
                    return Ok(Err(AppError::not_found(
                        "not_found",
                        format!("no block at height {id}"),
                    )))
                }
            }
        } else {
            match id.parse::<Hash256>() {
                Ok(h) => h,
                Err(err) => {
                    return Ok(Err(AppError::bad_request(
                        "bad_block_id",
                        format!("a block is named by its height or its 64-hex hash: {err}"),
                    )))
                }
            }
        };
        let Some((info, block)) = e.block(&hash)? else {
            return Ok(Err(AppError::not_found(
                "not_found",
                format!("no block {hash}"),
            )));
        };
        let offset = usize::try_from(page.offset.unwrap_or(0)).unwrap_or(usize::MAX);
        let limit = page.limit.unwrap_or(BLOCK_PAGE_TXS).clamp(1, MAX_LIMIT);
        let mut txs = Vec::new();
        let mut bytes = 0usize;
        let mut next = offset;
        for tx in block.txs.iter().skip(offset) {
            if txs.len() >= limit || (!txs.is_empty() && bytes + tx.size() > BLOCK_PAGE_BYTES) {
                break;
            }
            bytes += tx.size();
            let view = if info.main_chain {
                e.transaction(&tx.txid())?.map(TxView::from)
            } else {
                None
            };
            txs.push(view.unwrap_or_else(|| TxView::bare(tx, Some((info.hash, info.height)))));
            next += 1;
        }
        let next_offset = (next < block.txs.len()).then_some(next as u64);
        let tx_offset = offset.min(block.txs.len()) as u64;
        Ok(Ok(BlockView::new(
            &info,
            &block,
            txs,
            tx_offset,
            next_offset,
        )))
    })
    .await?
}

#[utoipa::path(get, path = "/v1/blocks/{id}", tag = "chain", params(("id" = String, Path, description = "height or block hash"), BlockPage),
    responses((status = 200, body = BlockView), (status = 404, body = ErrorBody), (status = 400, body = ErrorBody)))]
pub async fn block(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(page): Query<BlockPage>,
) -> ApiResult<axum::Json<BlockView>> {
    Ok(axum::Json(find_block(&s.engine, &id, page).await?))
}

#[utoipa::path(get, path = "/v1/tx/{txid}", tag = "chain", params(("txid" = String, Path)),
    responses((status = 200, body = TxView), (status = 404, body = ErrorBody), (status = 400, body = ErrorBody)))]
pub async fn transaction(
    State(s): State<AppState>,
    Path(txid): Path<String>,
) -> ApiResult<axum::Json<TxView>> {
    let txid = parse_hash("txid", &txid)?;
    match read(&s.engine, move |e| e.transaction(&txid)).await? {
        Some(t) => Ok(axum::Json(TxView::from(t))),
        None => Err(AppError::not_found(
            "not_found",
            format!("no transaction {txid} in the best chain or the mempool"),
        )),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AddressQuery {
    /// History entries (default 100, max 1000).
    history: Option<usize>,
}

#[utoipa::path(get, path = "/v1/addresses/{address}", tag = "chain", params(("address" = String, Path), AddressQuery),
    responses((status = 200, body = AddressView), (status = 400, body = ErrorBody)))]
pub async fn address(
    State(s): State<AppState>,
    Path(addr): Path<String>,
    Query(q): Query<AddressQuery>,
) -> ApiResult<axum::Json<AddressView>> {
    let a = parse_address(&addr)?;
    let n = q.history.unwrap_or(100).min(MAX_LIMIT);
    let info = read(&s.engine, move |e| e.address(&a, n)).await?;
    Ok(axum::Json(info.into()))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LimitQuery {
    /// At most this many (default and max 1000).
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/mempool", tag = "chain", params(LimitQuery), responses((status = 200, body = [MempoolView])))]
pub async fn mempool(
    State(s): State<AppState>,
    Query(q): Query<LimitQuery>,
) -> ApiResult<axum::Json<Vec<MempoolView>>> {
    let limit = q.limit.unwrap_or(MAX_LIMIT).min(MAX_LIMIT);
    let list = read(&s.engine, move |e| e.mempool(limit)).await?;
    Ok(axum::Json(
        list.into_iter()
            .map(|m| MempoolView {
                txid: m.txid.to_string(),
                fee: m.fee,
                size: m.size,
                fee_rate: m.fee_rate,
                time: m.time,
            })
            .collect(),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TxSubmit {
    /// Full consensus encoding of a signed transaction, hex.
    #[schema(pattern = "^([0-9a-fA-F]{2})*$")]
    pub hex: String,
}

/// Submits a decoded transaction and waits for the durable commit.
pub async fn submit(engine: &Engine, tx: Transaction) -> ApiResult<TxAcceptedView> {
    let r = engine.submit_tx_async(tx).await?;
    Ok(TxAcceptedView {
        txid: r.txid.to_string(),
        duplicate: r.duplicate,
    })
}

#[utoipa::path(post, path = "/v1/tx", tag = "transactions", request_body = TxSubmit,
    responses((status = 200, body = TxAcceptedView, description = "durable in the event log"),
              (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn post_tx(
    State(s): State<AppState>,
    Json(body): Json<TxSubmit>,
) -> ApiResult<axum::Json<TxAcceptedView>> {
    let tx = decode_tx(&body.hex)?;
    Ok(axum::Json(submit(&s.engine, tx).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TemplateQuery {
    /// The address the coinbase pays.
    address: String,
}

/// Extra nonce bytes the miner rolls (extranonce2).
pub const EXTRA_NONCE2: usize = 4;

#[utoipa::path(get, path = "/v1/mining/template", tag = "mining", params(TemplateQuery),
    responses((status = 200, body = TemplateView), (status = 400, body = ErrorBody)))]
pub async fn template(
    State(s): State<AppState>,
    Query(q): Query<TemplateQuery>,
) -> ApiResult<axum::Json<TemplateView>> {
    let address = parse_address(&q.address)?;
    let prefix = s.jobs.next_prefix();
    let mut extra = prefix.to_vec();
    extra.extend_from_slice(&[0; EXTRA_NONCE2]);
    let t = read(&s.engine, move |e| e.block_template(address, extra)).await?;
    let (mut coinb1, coinb2) = t.coinbase_parts();
    coinb1.extend_from_slice(&prefix);
    let target =
        t.header.bits.to_target().map_err(|e| {
            AppError::unavailable(format!("the next block's bits are invalid: {e}"))
        })?;
    let mut view = TemplateView {
        job_id: String::new(),
        height: t.height,
        version: t.header.version,
        prev_hash: t.header.prev_hash.to_string(),
        bits: format!("{:08x}", t.header.bits.0),
        time: t.header.time,
        min_time: t.min_time,
        target: hex::encode(target.to_be_bytes()),
        header: hex::encode(t.header.to_bytes()),
        coinb1: hex::encode(coinb1),
        coinb2: hex::encode(coinb2),
        extra_nonce1: hex::encode(prefix),
        extra_nonce_size: EXTRA_NONCE2,
        merkle_branch: t.merkle_branch().iter().map(|h| hex::encode(h.0)).collect(),
        tx_count: t.txs.len(),
        reward: t.reward,
        fees: t.fees,
    };
    let tip = t.header.prev_hash;
    view.job_id = s.jobs.insert(
        Job {
            template: t,
            prefix,
        },
        tip,
    );
    Ok(axum::Json(view))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MiningSubmit {
    pub job_id: String,
    /// extra_nonce2, `extra_nonce_size` bytes as hex.
    #[schema(pattern = "^([0-9a-fA-F]{2})*$")]
    pub extra_nonce: String,
    pub time: u32,
    pub nonce: u32,
}

fn outcome(a: &BlockAccepted) -> &'static str {
    match a {
        BlockAccepted::Connected { .. } => "connected",
        BlockAccepted::Reorganized { .. } => "reorganized",
        BlockAccepted::SideChain { .. } => "side_chain",
        BlockAccepted::Duplicate { .. } => "duplicate",
    }
}

#[utoipa::path(post, path = "/v1/mining/submit", tag = "mining", request_body = MiningSubmit,
    responses((status = 200, body = SubmitView), (status = 409, body = ErrorBody, description = "stale_job"),
              (status = 400, body = ErrorBody, description = "high_hash, bad_extra_nonce, ..."),
              (status = 422, body = ErrorBody, description = "a block that would sit off the best chain while it is below the minimum chain work (below_min_chain_work), or other rule breaks given the chain"),
              (status = 503, body = ErrorBody, description = "side_chain_full: a block that would sit off the best chain finds the side-chain budget full; or timeout, storage_error, shutting_down")))]
pub async fn submit_work(
    State(s): State<AppState>,
    Json(b): Json<MiningSubmit>,
) -> ApiResult<axum::Json<SubmitView>> {
    let stale = || {
        AppError::new(
            StatusCode::CONFLICT,
            "stale_job",
            "the job is unknown or its parent is no longer the best tip; fetch a new template",
        )
    };
    let job = s.jobs.get(&b.job_id).ok_or_else(stale)?;
    let en2 = decode_hex("extra_nonce", &b.extra_nonce)?;
    if en2.len() != EXTRA_NONCE2 {
        return Err(AppError::bad_request(
            "bad_extra_nonce",
            format!(
                "extra_nonce must be {EXTRA_NONCE2} bytes, got {}",
                en2.len()
            ),
        ));
    }
    let tip = read(&s.engine, |e| e.status()).await?.best_hash;
    if job.template.header.prev_hash != tip {
        return Err(stale());
    }
    let mut full = job.prefix.to_vec();
    full.extend_from_slice(&en2);
    let block = job
        .template
        .solve_with(&full, b.time, b.nonce)
        .ok_or_else(|| AppError::bad_request("bad_extra_nonce", "extra nonce length mismatch"))?;
    let accepted = s.engine.submit_block_async(block).await?;
    Ok(axum::Json(SubmitView {
        accepted: !matches!(accepted, BlockAccepted::SideChain { .. }),
        hash: accepted.hash().to_string(),
        height: accepted.height(),
        outcome: outcome(&accepted).to_string(),
    }))
}

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "the node can read its ledger")))]
pub async fn healthz(State(s): State<AppState>) -> ApiResult<impl IntoResponse> {
    let st = read(&s.engine, |e| e.status()).await?;
    Ok(axum::Json(
        serde_json::json!({"ok": true, "height": st.height}),
    ))
}

/// The Stratum server's workers (empty when `--stratum` is off); the same list is pushed
/// as the `workers` event of topic `workers`.
#[utoipa::path(get, path = "/v1/mining/workers", tag = "mining",
    responses((status = 200, body = [crate::stratum::WorkerView])))]
pub async fn workers(State(s): State<AppState>) -> axum::Json<Vec<crate::stratum::WorkerView>> {
    axum::Json(s.stratum.snapshot())
}

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(s): State<AppState>) -> ApiResult<impl IntoResponse> {
    let st = read(&s.engine, |e| e.status()).await?;
    let mut body = s.metrics.render(st.height, st.mempool_size);
    crate::metrics::render_stratum(&mut body, &s.stratum.totals());
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    ))
}
