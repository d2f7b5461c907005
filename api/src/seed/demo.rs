//! Dev-mode demo routes: mining a block in the request (Pocket's `mine_block`, Bitplace's
//! `/mine`), demo data and Pocket's `reset_system`; 403 outside dev mode.

use super::*;

/// Mines one block on this CPU (dev), one at a time.
pub async fn mine_now(
    s: &AppState,
    address: Address,
    max_txs: Option<usize>,
) -> ApiResult<BlockAccepted> {
    let _turn = s.mine_lock.lock().await;
    read(&s.engine, move |e| e.mine_block(address, max_txs)).await
}

#[utoipa::path(post, path = "/api/mine_block", tag = "dev", request_body = MineBlockRequest,
    responses((status = 200, body = Envelope, description = "`{data: \"Block is mined\", error: null}`"),
              (status = 400, body = Envelope, description = "invalid_amount, invalid_parameters, bad_address"),
              (status = 403, body = Envelope, description = "dev_mode_only")))]
pub(super) async fn mine_block(
    State(s): State<AppState>,
    crate::extract::Body(body): crate::extract::Body,
) -> Response {
    let r: ApiResult<BlockAccepted> = async {
        dev_gate(&s, "mine_block")?;
        let m = body_object(&body, &["address", "txAmount"])?;
        let address = parse_address(field_str(&m, "address")?)?;
        let n = field_u64(&m, "txAmount")?.unwrap_or(5);
        // Pocket refuses a block of no transactions asked for (0 or negative).
        if n < 1 {
            return Err(AppError::bad_request(
                "invalid_amount",
                "Request: invalid txAmount value: at least 1 transaction per block",
            ));
        }
        mine_now(&s, address, Some(usize::try_from(n).unwrap_or(usize::MAX))).await
    }
    .await;
    match r {
        Ok(_) => ok(json!("Block is mined")),
        Err(e) => env_err(e),
    }
}

/// Reset plus the seed's demo: 8 wallets, #0 mines, pays 3,2,1,1,1,1,1 (a block after
/// each), the seven pay 1 back, then #1 mines blocks of 2 and 3 (2 stay in the pool).
pub(super) async fn demo(s: &AppState) -> ApiResult<()> {
    let custody = s
        .custody
        .clone()
        .ok_or_else(|| AppError::dev_only("reset_system"))?;
    let engine = s.engine.clone();
    tokio::task::spawn_blocking(move || engine.reset()).await??;
    let c = custody.clone();
    let w = tokio::task::spawn_blocking(move || c.replace_all(8))
        .await?
        .map_err(|e| AppError::unavailable(e.to_string()))?;
    let a: Vec<Address> = w.iter().map(|w| w.address).collect();
    // Enough blocks for #0's first reward to mature whatever --coinbase-maturity says.
    let maturity = s.engine.params().coinbase_maturity.max(1);
    for _ in 0..maturity {
        mine_now(s, a[0], Some(0)).await?;
    }
    for (i, amount) in [3u64, 2, 1, 1, 1, 1, 1].into_iter().enumerate() {
        let tx = custody_pay(s, a[0], a[i + 1], amount).await?;
        submit(&s.engine, tx).await?;
        mine_now(s, a[0], None).await?;
    }
    for w in &a[1..] {
        let tx = custody_pay(s, *w, a[0], 1).await?;
        submit(&s.engine, tx).await?;
    }
    mine_now(s, a[1], Some(2)).await?;
    mine_now(s, a[1], Some(3)).await?;
    Ok(())
}

#[utoipa::path(post, path = "/api/reset_system", tag = "dev",
    responses((status = 200, body = Envelope, description = "the chain is wiped and the demo data mined"),
              (status = 403, body = Envelope, description = "dev_mode_only")))]
pub(super) async fn reset_system(State(s): State<AppState>) -> Response {
    if let Err(e) = dev_gate(&s, "reset_system") {
        return env_err(e);
    }
    match demo(&s).await {
        Ok(()) => ok(json!("System is reset")),
        Err(e) => env_err(e),
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct MineQuery {
    /// Who the block pays (default: the first custody wallet).
    address: Option<String>,
}

#[utoipa::path(get, path = "/mine", tag = "dev", params(MineQuery),
    responses((status = 200, body = serde_json::Value, description = "`{message, index, height, hash, transactions, proof, previous_hash, address}`"),
              (status = 400, body = ErrorBody), (status = 403, body = ErrorBody, description = "dev_mode_only, cross_site")))]
pub(super) async fn mine(
    State(s): State<AppState>,
    Query(q): Query<MineQuery>,
) -> ApiResult<axum::Json<Value>> {
    dev_gate(&s, "/mine")?;
    let address = match q.address {
        Some(a) => parse_address(&a)?,
        None => {
            let custody = s.custody.clone().expect("dev gate checked");
            match custody.list().first() {
                Some(w) => w.address,
                None => {
                    tokio::task::spawn_blocking(move || custody.create())
                        .await?
                        .map_err(|e| AppError::unavailable(e.to_string()))?
                        .0
                        .address
                }
            }
        }
    };
    let accepted = mine_now(&s, address, None).await?;
    let hash = accepted.hash();
    let (info, block) = read(&s.engine, move |e| e.block(&hash))
        .await?
        .ok_or_else(|| AppError::unavailable("the mined block vanished"))?;
    Ok(axum::Json(json!({
        "message": "New Block Forged",
        "index": info.height + 1,
        "height": info.height,
        "hash": hash,
        "transactions": block.txs.iter().map(|t| t.txid()).collect::<Vec<_>>(),
        "proof": block.header.nonce,
        "previous_hash": block.header.prev_hash,
        "address": address,
    })))
}
