//! Dev-mode custody through the seeds' routes: Pocket's `get_wallets`, `new_wallet` and
//! `send`, Bitplace's `/wallet/new`. The node holds these keys (see [`crate::custody`]); outside
//! dev mode every one answers 403. No route returns a private key.

use super::*;

pub(super) async fn spendable_balance(engine: &Engine, a: Address) -> ApiResult<u64> {
    let info = read(engine, move |e| e.address(&a, 0)).await?;
    Ok((info.confirmed as i128 + info.unconfirmed as i128).max(0) as u64)
}

#[utoipa::path(get, path = "/api/get_wallets", tag = "dev",
    responses((status = 200, body = Envelope, description = "the custody wallets: address, public key, balance (never a private key)"),
              (status = 403, body = Envelope, description = "dev_mode_only")))]
pub(super) async fn get_wallets(State(s): State<AppState>) -> Response {
    if let Err(e) = dev_gate(&s, "get_wallets") {
        return env_err(e);
    }
    let wallets = s.custody.as_ref().map(|c| c.list()).unwrap_or_default();
    let mut data = Vec::new();
    for w in wallets {
        let balance = match spendable_balance(&s.engine, w.address).await {
            Ok(b) => b,
            Err(e) => return env_err(e),
        };
        data.push(json!({
            "address": w.address,
            // No privateKey, ever: the stand renders without it.
            "wallet": {"publicKey": hex::encode(w.public_key), "publicKeyBytes": hex::encode(w.public_key)},
            "balance": balance,
        }));
    }
    ok(Value::Array(data))
}

#[utoipa::path(post, path = "/api/new_wallet", tag = "dev",
    responses((status = 200, body = Envelope, description = "`data` is the new wallet's address"),
              (status = 403, body = Envelope, description = "dev_mode_only")))]
pub(super) async fn new_wallet(State(s): State<AppState>) -> Response {
    if let Err(e) = dev_gate(&s, "new_wallet") {
        return env_err(e);
    }
    let custody = s.custody.clone().expect("dev gate checked");
    match tokio::task::spawn_blocking(move || custody.create()).await {
        Ok(Ok((w, _phrase))) => {
            tracing::info!(address = %w.address, "dev custody wallet created (dev keys)");
            ok(json!(w.address))
        }
        Ok(Err(e)) => env_err(AppError::unavailable(e.to_string())),
        Err(e) => env_err(e.into()),
    }
}

/// The fee rate dev custody pays: the shared policy's floor, the node's minimum relay rate
/// (0), so the seeds' zero-fee flows — the demo's wallets paying back their single unit —
/// keep working on a node with the default policy.
pub const CUSTODY_FEE_RATE: u64 = engine::fee::MIN_RELAY_FEE_RATE;

/// Builds and signs a payment from a custody wallet with the wallet's coin selection and
/// the shared fee policy (`wallet::coinselect::select`: largest spendable outputs first,
/// unconfirmed ones included, immature coinbases not; fee for the exact size at
/// [`CUSTODY_FEE_RATE`]), change back to the sender.
pub async fn custody_pay(
    s: &AppState,
    from: Address,
    to: Address,
    amount: u64,
) -> ApiResult<Transaction> {
    let custody = s
        .custody
        .as_ref()
        .ok_or_else(|| AppError::dev_only("custody wallets"))?;
    let key = custody.key(&from).ok_or_else(|| {
        AppError::not_found(
            "unknown_wallet",
            format!("Address: the node holds no wallet {from}"),
        )
    })?;
    let info = read(&s.engine, move |e| e.address(&from, 0)).await?;
    let available: Vec<wallet::Spendable> = info
        .utxos
        .iter()
        .filter(|u| !u.coinbase || u.mature)
        .map(|u| wallet::Spendable {
            outpoint: OutPoint {
                txid: u.txid,
                vout: u.vout,
            },
            amount: u.amount,
            key_index: 0,
        })
        .collect();
    let selection = match wallet::select(&available, amount, CUSTODY_FEE_RATE) {
        Ok(sel) => sel,
        Err(wallet::SendError::InsufficientFunds {
            needed, available, ..
        }) => {
            return Err(AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "insufficient_funds",
                format!("Units: not enough spendable units: have {available}, need {needed}"),
            ))
        }
        Err(e) => return Err(AppError::bad_request("invalid_amount", e.to_string())),
    };
    let picked: Vec<OutPoint> = selection.inputs.iter().map(|i| i.outpoint).collect();
    let mut outputs = vec![TxOut {
        amount,
        address: to,
    }];
    if selection.change > 0 {
        outputs.push(TxOut {
            amount: selection.change,
            address: from,
        });
    }
    let public_key = key.verifying_key().to_bytes();
    let mut tx = Transaction {
        version: engine::tx::TX_VERSION,
        inputs: TxInputs::Transfer(
            picked
                .iter()
                .map(|op| TxIn {
                    prevout: *op,
                    public_key,
                    signature: [0; 64],
                })
                .collect(),
        ),
        outputs,
    };
    let keys = vec![&key; picked.len()];
    tx.sign_inputs(&keys);
    Ok(tx)
}

#[utoipa::path(post, path = "/api/send", tag = "dev", request_body = SendRequest,
    responses((status = 200, body = Envelope, description = "`{data: \"Transaction is added to pool\", error: null}`"),
              (status = 400, body = Envelope), (status = 403, body = Envelope, description = "dev_mode_only"),
              (status = 404, body = Envelope, description = "unknown_wallet: `from` is not a custody wallet"),
              (status = 409, body = Envelope), (status = 422, body = Envelope, description = "insufficient_funds")))]
pub(super) async fn send(
    State(s): State<AppState>,
    crate::extract::Body(body): crate::extract::Body,
) -> Response {
    let r: ApiResult<()> = async {
        dev_gate(&s, "send")?;
        let m = body_object(&body, &["from", "to", "amount"])?;
        let from = parse_address(field_str(&m, "from")?)?;
        let to = parse_address(field_str(&m, "to")?)?;
        let amount = field_u64(&m, "amount")?
            .filter(|a| *a >= 1)
            .ok_or_else(|| {
                AppError::bad_request(
                    "invalid_amount",
                    "Request: invalid amount value (a whole number ≥ 1)",
                )
            })?;
        if from == to {
            return Err(AppError::bad_request(
                "invalid_parameters",
                "Request: from and to must differ",
            ));
        }
        let tx = custody_pay(&s, from, to, amount).await?;
        submit(&s.engine, tx).await?;
        Ok(())
    }
    .await;
    match r {
        Ok(()) => ok(json!("Transaction is added to pool")),
        Err(e) => env_err(e),
    }
}

#[utoipa::path(get, path = "/wallet/new", tag = "dev",
    responses((status = 201, body = serde_json::Value, description = "`{address, public_key, seed_phrase, warning}`: shown this once"),
              (status = 403, body = ErrorBody, description = "dev_mode_only, cross_site")))]
pub(super) async fn wallet_new(State(s): State<AppState>) -> ApiResult<Response> {
    dev_gate(&s, "/wallet/new")?;
    let custody = s.custody.clone().expect("dev gate checked");
    let (w, phrase) = tokio::task::spawn_blocking(move || custody.create())
        .await?
        .map_err(|e| AppError::unavailable(e.to_string()))?;
    // The mnemonic is returned this once; it is never logged.
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "address": w.address,
            "public_key": hex::encode(w.public_key),
            "seed_phrase": phrase.as_str(),
            "warning": "dev mode: the node generated and holds this key; never use it for real value",
        })),
    )
        .into_response())
}
