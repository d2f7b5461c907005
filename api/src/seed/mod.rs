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
//!
//! Files: [`aliases`] (read-only views in the seeds' shapes), [`custody`] (dev wallets the
//! node holds), [`demo`] (mining in the request, demo data, reset); shared helpers here.

mod aliases;
mod custody;
mod demo;

use aliases::*;
use custody::*;
use demo::*;

use crate::error::{ApiResult, AppError, ErrorBody};
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

/// Most blocks the legacy chain views list (genesis plus the newest ones) per page.
const MAX_LEGACY_BLOCKS: u64 = 1000;

/// A legacy chain page ends once its blocks reach this many bytes (their JSON is a few
/// times that), at least one block: a page of full blocks is bounded like one of small ones.
const LEGACY_PAGE_BYTES: usize = 4 * 1000 * 1000;

/// Most UTXOs `get_chainstate` lists.
const MAX_CHAINSTATE: usize = 10_000;

/// The seeds' part of the OpenAPI document (merged by [`crate::openapi`]).
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    get_blocks,
    get_pool,
    get_chainstate,
    get_wallets,
    new_wallet,
    send,
    mine_block,
    reset_system,
    chain,
    transactions_new,
    wallet_balance,
    wallet_new,
    mine
))]
pub(crate) struct SeedApi;

/// Pocket's envelope, for the OpenAPI document: `data` on success, `error` (its message,
/// shown by the stand verbatim) on failure, with our `code`/`message` beside it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documents the JSON that `ok` and `env_err` write
struct Envelope {
    data: Option<Value>,
    error: Option<String>,
    code: Option<String>,
    message: Option<String>,
}

/// `POST /api/send`'s body, for the OpenAPI document ([`body_object`] checks it: Pocket's
/// error messages for each field).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct SendRequest {
    /// A custody wallet's address.
    from: String,
    to: String,
    /// Whole units, at least 1.
    #[schema(minimum = 1)]
    amount: u64,
}

/// `POST /api/mine_block`'s body, for the OpenAPI document (checked by [`body_object`]).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
struct MineBlockRequest {
    /// Who the block pays.
    address: String,
    /// At most this many mempool transactions (default 5, at least 1).
    #[schema(minimum = 1)]
    tx_amount: Option<u64>,
}

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
