//! The seeds' routes as thin aliases over the engine (design/SEED_API.md Part 3).
//!
//! Pocket (`/api/*`): every response is JSON, including errors. `get_blocks`,
//! `get_pool` and `get_chainstate` are bare read-only projections, always on; the
//! envelope routes (`{"data", "error"}`, with `"error": null` on success) that hold keys,
//! mine or wipe state answer 403 outside dev mode. No route returns a private key.
//!
//! Bitplace (root paths): `/chain`, `/transactions/new` (a signed transaction in our
//! format), `/wallet/balance`; `/mine` and `/wallet/new` are dev-only. `/nodes/*` belong
//! to the peer service.

use crate::error::{ApiResult, AppError};
use crate::extract::Query;
use crate::state::AppState;
use crate::v1::{decode_tx, parse_address, read, submit};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use engine::{
    Address, Block, BlockAccepted, Engine, EngineError, OutPoint, Transaction, TxIn, TxInputs,
    TxOut,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// Most blocks the legacy chain views list (genesis plus the newest ones).
const MAX_LEGACY_BLOCKS: u64 = 1000;
/// Most UTXOs `get_chainstate` lists.
const MAX_CHAINSTATE: usize = 10_000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/get_blocks", get(get_blocks))
        .route("/api/get_pool", get(get_pool))
        .route("/api/get_chainstate", get(get_chainstate))
        .route("/api/get_wallets", get(get_wallets))
        .route("/api/new_wallet", post(new_wallet))
        .route("/api/send", post(send))
        .route("/api/mine_block", post(mine_block))
        .route("/api/reset_system", post(reset_system))
        .route("/chain", get(chain))
        .route("/transactions/new", post(transactions_new))
        .route("/wallet/balance", get(wallet_balance))
        .route("/wallet/new", get(wallet_new))
        .route("/mine", get(mine))
}

// ---------- Pocket envelope ----------

/// Pocket's `{"data": ..., "error": null}`.
fn ok(data: Value) -> Response {
    axum::Json(json!({"data": data, "error": null})).into_response()
}

/// An envelope error: the client shows `error` verbatim; `code`/`message` follow our
/// own error shape for other clients.
fn env_err(e: AppError) -> Response {
    (
        e.status,
        axum::Json(json!({"data": null, "error": e.message, "code": e.code, "message": e.message})),
    )
        .into_response()
}

fn dev_gate(s: &AppState, what: &str) -> Result<(), AppError> {
    if s.dev() && s.custody.is_some() {
        Ok(())
    } else {
        Err(AppError::dev_only(what))
    }
}

/// Parses a Pocket body leniently about content type (the stand always sends JSON) but
/// strictly about shape: an object with the given keys and no others.
fn body_object(body: &Bytes, allowed: &[&str]) -> Result<Map<String, Value>, AppError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        AppError::bad_request("malformed_json", format!("Request: invalid JSON: {e}"))
    })?;
    let Value::Object(m) = v else {
        return Err(AppError::bad_request(
            "invalid_body",
            "Request: expected a JSON object",
        ));
    };
    if let Some(k) = m.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(AppError::bad_request(
            "invalid_body",
            format!("Request: unknown field `{k}`"),
        ));
    }
    Ok(m)
}

fn field_str<'a>(m: &'a Map<String, Value>, k: &str) -> Result<&'a str, AppError> {
    match m.get(k) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim()),
        _ => Err(AppError::bad_request(
            "invalid_parameters",
            format!("Request: `{k}` must be a non-empty string"),
        )),
    }
}

/// A non-negative integer that fits u64 (rejects floats, negatives, strings, overflow).
fn field_u64(m: &Map<String, Value>, k: &str) -> Result<Option<u64>, AppError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| {
            AppError::bad_request(
                "invalid_amount",
                format!("Request: invalid {k} value: {n} is not a whole number of units"),
            )
        }),
        Some(_) => Err(AppError::bad_request(
            "invalid_amount",
            format!("Request: invalid {k} value: not a number"),
        )),
    }
}

// ---------- time formatting (Pocket shows naive ISO-8601) ----------

/// `YYYY-MM-DDTHH:MM:SS` in UTC for Unix seconds (Howard Hinnant's civil-from-days).
pub fn iso_time(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

// ---------- Pocket read-only ----------

fn pocket_tx(tx: &Transaction, created: &str, included: Option<&str>) -> String {
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

/// Heights the legacy views list: all while short, else genesis plus the newest.
fn legacy_heights(tip: u64) -> Vec<u64> {
    if tip < MAX_LEGACY_BLOCKS {
        (0..=tip).collect()
    } else {
        std::iter::once(0)
            .chain(tip + 2 - MAX_LEGACY_BLOCKS..=tip)
            .collect()
    }
}

fn main_blocks(e: &Engine) -> Result<Vec<(u64, Block)>, EngineError> {
    let tip = e.status()?.height;
    let mut out = Vec::new();
    for h in legacy_heights(tip) {
        if let Some(hash) = e.block_hash_at(h)? {
            if let Some((_, b)) = e.block(&hash)? {
                out.push((h, b));
            }
        }
    }
    Ok(out)
}

async fn get_blocks(State(s): State<AppState>) -> ApiResult<axum::Json<Vec<Value>>> {
    let blocks = read(&s.engine, main_blocks).await?;
    Ok(axum::Json(
        blocks
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
            .collect(),
    ))
}

/// Sender (the first input's address), main recipient and amount sent to others.
fn legacy_parties(tx: &Transaction) -> (Option<Address>, Option<Address>, u64) {
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

async fn get_pool(State(s): State<AppState>) -> ApiResult<axum::Json<Vec<Value>>> {
    let txs = read(&s.engine, |e| {
        let mut out = Vec::new();
        for m in e.mempool(crate::v1::MAX_LIMIT)? {
            if let Some(t) = e.transaction(&m.txid)? {
                out.push(t.tx);
            }
        }
        Ok(out)
    })
    .await?;
    // The mempool keeps no admission time; "now" is what the stand displays as created.
    let now = iso_time(s.engine.now());
    Ok(axum::Json(
        txs.iter()
            .map(|tx| {
                let (from, to, amount) = legacy_parties(tx);
                json!({
                    "txID": tx.txid(),
                    "fromAddr": from.map(|a| a.to_string()).unwrap_or_default(),
                    "toAddr": to.map(|a| a.to_string()).unwrap_or_default(),
                    "amount": amount,
                    "serializedTransaction": pocket_tx(tx, &now, None),
                    "error": false,
                    "errorText": null,
                })
            })
            .collect(),
    ))
}

async fn get_chainstate(State(s): State<AppState>) -> ApiResult<axum::Json<Map<String, Value>>> {
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

// ---------- Pocket dev-only ----------

async fn spendable_balance(engine: &Engine, a: Address) -> ApiResult<u64> {
    let info = read(engine, move |e| e.address(&a, 0)).await?;
    Ok((info.confirmed as i128 + info.unconfirmed as i128).max(0) as u64)
}

async fn get_wallets(State(s): State<AppState>) -> Response {
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

async fn new_wallet(State(s): State<AppState>) -> Response {
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

/// Builds and signs a payment from a custody wallet: largest spendable outputs first
/// (unconfirmed ones included), change back to the sender, zero fee.
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
    let mut utxos = info.utxos;
    utxos.sort_by_key(|u| std::cmp::Reverse(u.amount));
    let (mut picked, mut total) = (Vec::new(), 0u64);
    for u in utxos {
        if total >= amount {
            break;
        }
        total = total.saturating_add(u.amount);
        picked.push(OutPoint {
            txid: u.txid,
            vout: u.vout,
        });
    }
    if total < amount {
        return Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "insufficient_funds",
            format!("Units: not enough spendable units: have {total}, need {amount}"),
        ));
    }
    let mut outputs = vec![TxOut {
        amount,
        address: to,
    }];
    if total > amount {
        outputs.push(TxOut {
            amount: total - amount,
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

async fn send(State(s): State<AppState>, body: Bytes) -> Response {
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

/// Mines one block on this CPU (dev), one at a time.
pub async fn mine_now(
    s: &AppState,
    address: Address,
    max_txs: Option<usize>,
) -> ApiResult<BlockAccepted> {
    let _turn = s.mine_lock.lock().await;
    read(&s.engine, move |e| e.mine_block(address, max_txs)).await
}

async fn mine_block(State(s): State<AppState>, body: Bytes) -> Response {
    let r: ApiResult<BlockAccepted> = async {
        dev_gate(&s, "mine_block")?;
        let m = body_object(&body, &["address", "txAmount"])?;
        let address = parse_address(field_str(&m, "address")?)?;
        let n = field_u64(&m, "txAmount")?.unwrap_or(5);
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
async fn demo(s: &AppState) -> ApiResult<()> {
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

async fn reset_system(State(s): State<AppState>) -> Response {
    if let Err(e) = dev_gate(&s, "reset_system") {
        return env_err(e);
    }
    match demo(&s).await {
        Ok(()) => ok(json!("System is reset")),
        Err(e) => env_err(e),
    }
}

// ---------- Bitplace ----------

async fn chain(State(s): State<AppState>) -> ApiResult<axum::Json<Value>> {
    let (length, blocks) =
        read(&s.engine, |e| Ok((e.status()?.height + 1, main_blocks(e)?))).await?;
    let chain: Vec<Value> = blocks
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
    Ok(axum::Json(json!({"chain": chain, "length": length})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HexBody {
    hex: String,
}

async fn transactions_new(State(s): State<AppState>, body: Bytes) -> ApiResult<Response> {
    let b: HexBody = serde_json::from_slice(&body).map_err(|e| {
        AppError::bad_request(
            "invalid_body",
            format!("expected {{\"hex\": <signed transaction in Bitplace encoding>}}: {e}"),
        )
    })?;
    let tx = decode_tx(&b.hex)?;
    let r = submit(&s.engine, tx).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({"message": "Transaction will be added to the next block", "txid": r.txid, "duplicate": r.duplicate})),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BalanceQuery {
    address: Option<String>,
}

async fn wallet_balance(
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

async fn wallet_new(State(s): State<AppState>) -> ApiResult<Response> {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MineQuery {
    address: Option<String>,
}

async fn mine(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_time_matches_known_dates() {
        assert_eq!(iso_time(0), "1970-01-01T00:00:00");
        assert_eq!(iso_time(1_714_557_600), "2024-05-01T10:00:00");
        assert_eq!(iso_time(951_782_400), "2000-02-29T00:00:00");
    }
}
