//! Read-only aliases (always on): Pocket's `get_blocks`, `get_pool`, `get_chainstate`, and
//! Bitplace's `/chain`, `/transactions/new` (a signed transaction in our format) and
//! `/wallet/balance`, each a view over the engine's projections in the seed's shape.

use super::*;
use engine::query::BlockInfo;

pub(super) fn pocket_tx(tx: &Transaction, created: &str, included: Option<&str>) -> String {
    let inputs: Vec<String> = tx
        .spends()
        .iter()
        .map(|i| {
            json!({
                "id": i.prevout.txid,
                "output": i.prevout.vout,
                "sig": hex::encode(i.signature),
                "publicKey": hex::encode(i.public_key),
                "publicKeyBytes": hex::encode(i.public_key),
            })
            .to_string()
        })
        .collect();
    let outputs: Vec<String> = tx
        .outputs
        .iter()
        .map(|o| json!({"val": o.amount, "publicKeyHash": o.address}).to_string())
        .collect();
    let mut v = json!({"id": tx.txid(), "inputs": inputs, "outputs": outputs, "created": created});
    if let Some(t) = included {
        v["included_in_block"] = json!(t);
    }
    v.to_string()
}

/// Which blocks a legacy chain view lists. Without `offset`: the seeds' own selection
/// (genesis plus the newest, at most [`MAX_LEGACY_BLOCKS`]); with it: best-chain heights
/// from `offset` upward. Either way the page ends once its blocks reach
/// [`LEGACY_PAGE_BYTES`] (a block is never cut), and `X-Next-Offset` names the height
/// the next page starts at, so one request never builds the whole chain in memory.
#[derive(Deserialize, utoipa::IntoParams, Clone, Copy, Default)]
#[into_params(parameter_in = Query)]
pub(super) struct ChainPage {
    /// Height of the first block listed [default: genesis plus the newest blocks].
    offset: Option<u64>,
    /// At most this many blocks (default and max 1000; 0 counts as 1); the page also
    /// ends at 4 MB of blocks (at least one block).
    limit: Option<u64>,
}

/// The blocks of one legacy page, and the height the next page starts at.
pub(super) struct LegacyPage {
    blocks: Vec<(u64, Block)>,
    next_offset: Option<u64>,
}

impl LegacyPage {
    /// The page's blocks as JSON, with `X-Next-Offset` when more follow.
    fn respond(next_offset: Option<u64>, body: Value) -> Response {
        let mut resp = axum::Json(body).into_response();
        if let Some(next) = next_offset {
            resp.headers_mut()
                .insert("x-next-offset", axum::http::HeaderValue::from(next));
        }
        resp
    }
}

/// The index rows (hash, height, size) a page may list, oldest first.
fn page_candidates(e: &Engine, page: ChainPage) -> Result<Vec<BlockInfo>, EngineError> {
    let limit = page
        .limit
        .unwrap_or(MAX_LEGACY_BLOCKS)
        .clamp(1, MAX_LEGACY_BLOCKS) as usize;
    if let Some(offset) = page.offset {
        return e.blocks(offset, limit);
    }
    let tip = e.status()?.height;
    if tip < MAX_LEGACY_BLOCKS {
        return e.blocks(0, limit);
    }
    let mut rows = e.blocks(0, 1)?;
    rows.extend(e.blocks(tip + 2 - MAX_LEGACY_BLOCKS, limit.saturating_sub(1))?);
    Ok(rows)
}

/// Loads the blocks of `page`, one at a time, until the next would pass
/// [`LEGACY_PAGE_BYTES`] (sizes come from the index, before a block is read).
pub(super) fn main_blocks(e: &Engine, page: ChainPage) -> Result<LegacyPage, EngineError> {
    let rows = page_candidates(e, page)?;
    let mut blocks = Vec::new();
    let mut bytes = 0usize;
    for row in &rows {
        let size = row.size as usize;
        if !blocks.is_empty() && bytes + size > LEGACY_PAGE_BYTES {
            return Ok(LegacyPage {
                blocks,
                next_offset: Some(row.height),
            });
        }
        if let Some((_, b)) = e.block(&row.hash)? {
            bytes += size;
            blocks.push((row.height, b));
        }
    }
    // A paged call that filled its limit may have more after it.
    let next_offset = match (page.offset, rows.last()) {
        (Some(_), Some(last)) if e.block_hash_at(last.height + 1)?.is_some() => {
            Some(last.height + 1)
        }
        _ => None,
    };
    Ok(LegacyPage {
        blocks,
        next_offset,
    })
}

#[utoipa::path(get, path = "/api/get_blocks", tag = "seed", params(ChainPage),
    responses((status = 200, body = [serde_json::Value], description = "Pocket's block list: genesis and the newest blocks, or `offset`/`limit` pages; header `X-Next-Offset` names where the next page starts",
                  headers(("x-next-offset" = u64, description = "height of the next page's first block, when more follow"))),
              (status = 400, body = ErrorBody, description = "bad_query")))]
pub(super) async fn get_blocks(
    State(s): State<AppState>,
    Query(page): Query<ChainPage>,
) -> ApiResult<Response> {
    let page = read(&s.engine, move |e| main_blocks(e, page)).await?;
    let items: Vec<Value> = page
        .blocks
        .iter()
        .map(|(h, b)| {
            let time = iso_time(b.header.time as u64);
            let txs: Vec<String> = b.txs.iter().map(|t| pocket_tx(t, &time, Some(&time))).collect();
            let prev = if *h == 0 { String::new() } else { b.header.prev_hash.to_string() };
            let serialized = json!({
                "timeStamp": time,
                "transactions": txs,
                "txsRootNode": b.header.merkle_root,
                "prevHash": prev,
                "hash": b.hash(),
                "nonce": b.header.nonce,
            });
            json!({"hash": b.hash(), "txsRootNode": b.header.merkle_root, "serializedBlock": serialized.to_string()})
        })
        .collect();
    Ok(LegacyPage::respond(page.next_offset, Value::Array(items)))
}

/// Sender (the first input's address), main recipient and amount sent to others.
pub(super) fn legacy_parties(tx: &Transaction) -> (Option<Address>, Option<Address>, u64) {
    let from = tx
        .spends()
        .first()
        .map(|i| Address::from_public_key(&i.public_key));
    let to_others = tx.outputs.iter().filter(|o| Some(o.address) != from);
    let amount = to_others
        .clone()
        .fold(0u64, |a, o| a.saturating_add(o.amount));
    let to = to_others
        .map(|o| o.address)
        .next()
        .or(tx.outputs.first().map(|o| o.address));
    let amount = if amount == 0 {
        tx.output_total().unwrap_or(u64::MAX)
    } else {
        amount
    };
    (from, to, amount)
}

#[utoipa::path(get, path = "/api/get_pool", tag = "seed",
    responses((status = 200, body = [serde_json::Value], description = "Pocket's mempool list; `created` is the admission time")))]
pub(super) async fn get_pool(State(s): State<AppState>) -> ApiResult<axum::Json<Vec<Value>>> {
    let txs = read(&s.engine, |e| {
        let mut out = Vec::new();
        for m in e.mempool(crate::v1::MAX_LIMIT)? {
            if let Some(t) = e.transaction(&m.txid)? {
                out.push((t.tx, m.time));
            }
        }
        Ok(out)
    })
    .await?;
    Ok(axum::Json(
        txs.iter()
            .map(|(tx, admitted)| {
                let (from, to, amount) = legacy_parties(tx);
                // Pocket's `created` is when the transaction entered the pool.
                let created = iso_time(*admitted);
                json!({
                    "txID": tx.txid(),
                    "fromAddr": from.map(|a| a.to_string()).unwrap_or_default(),
                    "toAddr": to.map(|a| a.to_string()).unwrap_or_default(),
                    "amount": amount,
                    "serializedTransaction": pocket_tx(tx, &created, None),
                    "error": false,
                    "errorText": null,
                })
            })
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/get_chainstate", tag = "seed",
    responses((status = 200, body = serde_json::Value, description = "Pocket's UTXO set grouped by txid (at most 10,000 outputs)")))]
pub(super) async fn get_chainstate(
    State(s): State<AppState>,
) -> ApiResult<axum::Json<Map<String, Value>>> {
    let utxos = read(&s.engine, |e| e.utxos(None, MAX_CHAINSTATE)).await?;
    let mut grouped: Map<String, Value> = Map::new();
    let mut lists: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    for u in utxos {
        lists
            .entry(u.txid.to_string())
            .or_default()
            .push(json!({"outputID": u.vout, "val": u.amount, "publicKeyHash": u.address}));
    }
    for (txid, outs) in lists {
        grouped.insert(
            txid,
            json!({"serializedUnspentOutputs": Value::Array(outs).to_string()}),
        );
    }
    Ok(axum::Json(grouped))
}

#[utoipa::path(get, path = "/chain", tag = "seed", params(ChainPage),
    responses((status = 200, body = serde_json::Value, description = "`{chain, length}`: the Bitplace seed's chain view (genesis and the newest blocks, or `offset`/`limit` pages; `length` is the whole chain's); header `X-Next-Offset` names where the next page starts",
                  headers(("x-next-offset" = u64, description = "height of the next page's first block, when more follow"))),
              (status = 400, body = ErrorBody, description = "bad_query")))]
pub(super) async fn chain(
    State(s): State<AppState>,
    Query(page): Query<ChainPage>,
) -> ApiResult<Response> {
    let (length, page) = read(&s.engine, move |e| {
        Ok((e.status()?.height + 1, main_blocks(e, page)?))
    })
    .await?;
    let chain: Vec<Value> = page
        .blocks
        .iter()
        .map(|(h, b)| {
            let txs: Vec<Value> = b
                .txs
                .iter()
                .map(|tx| {
                    let (from, to, amount) = legacy_parties(tx);
                    json!({
                        "txid": tx.txid(),
                        // "0" is the seed's sender for newly minted units.
                        "sender": from.map(|a| a.to_string()).unwrap_or_else(|| "0".into()),
                        "recipient": to.map(|a| a.to_string()).unwrap_or_default(),
                        "amount": amount,
                    })
                })
                .collect();
            json!({
                "index": h + 1,
                "height": h,
                "timestamp": b.header.time as f64,
                "transactions": txs,
                "previous_hash": if *h == 0 { "0".to_string() } else { b.header.prev_hash.to_string() },
                "nonce": b.header.nonce,
                "hash": b.hash(),
            })
        })
        .collect();
    Ok(LegacyPage::respond(
        page.next_offset,
        json!({"chain": chain, "length": length}),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct HexBody {
    /// A signed transaction's consensus encoding, as hex.
    #[schema(pattern = "^([0-9a-fA-F]{2})*$")]
    hex: String,
}

#[utoipa::path(post, path = "/transactions/new", tag = "seed", request_body = HexBody,
    responses((status = 201, body = serde_json::Value, description = "`{message, txid, duplicate}`: admitted, durable"),
              (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn transactions_new(
    State(s): State<AppState>,
    crate::extract::Body(body): crate::extract::Body,
) -> ApiResult<Response> {
    let expected = "expected {\"hex\": <signed transaction in Bitplace encoding>}";
    if !crate::extract::is_json_object(&body) {
        return Err(AppError::bad_request(
            "invalid_body",
            format!("{expected}: {}", crate::extract::NOT_AN_OBJECT),
        ));
    }
    let b: HexBody = serde_json::from_slice(&body)
        .map_err(|e| AppError::bad_request("invalid_body", format!("{expected}: {e}")))?;
    let tx = decode_tx(&b.hex)?;
    let r = submit(&s.engine, tx).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({"message": "Transaction will be added to the next block", "txid": r.txid, "duplicate": r.duplicate})),
    )
        .into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct BalanceQuery {
    /// The address (required).
    #[param(required = true)]
    address: Option<String>,
}

#[utoipa::path(get, path = "/wallet/balance", tag = "seed", params(BalanceQuery),
    responses((status = 200, body = serde_json::Value, description = "`{balance}`: confirmed plus pending units"),
              (status = 400, body = ErrorBody, description = "missing_address, bad_address")))]
pub(super) async fn wallet_balance(
    State(s): State<AppState>,
    Query(q): Query<BalanceQuery>,
) -> ApiResult<axum::Json<Value>> {
    let a = q
        .address
        .ok_or_else(|| AppError::bad_request("missing_address", "?address= is required"))?;
    let a = parse_address(&a)?;
    // Confirmed plus pending (so an accepted send shows at once, as the seed's client expects).
    Ok(axum::Json(
        json!({"balance": spendable_balance(&s.engine, a).await?}),
    ))
}
