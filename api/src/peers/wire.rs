//! The node-to-node wire types and the bounded JSON client used to talk to peers.
//!
//! Wire protocol (JSON over plain HTTP; hashes in display order, blocks and transactions
//! as hex of their consensus encoding, see `engine::encoding`):
//! - `POST /v1/p2p/headers {locator:[hash...], limit}` → `application/octet-stream`: the
//!   best chain's headers after the first locator entry on it (after genesis if none),
//!   80 bytes each, concatenated, at most 2000: what sync judges a peer's chain by.
//! - `POST /v1/p2p/hashes {locator:[hash...], limit}` → `[hash...]`: the same blocks'
//!   hashes, at most 500 (what sync asked for before headers first).
//! - `GET /v1/p2p/locator` → `[hash...]`: our own locator (diagnostics).
//! - `GET /v1/p2p/blocks/{hash}` → the block's consensus bytes with `Accept:
//!   application/octet-stream` (what sync sends), `{hex}` otherwise (older callers).
//! - `POST /v1/p2p/blocks {hex, from?}`: a peer pushes a block; `from` is its own base
//!   URL. A block with an unknown parent answers 202 and starts a sync from `from` when
//!   it is a known peer, otherwise from every known peer; never from one that is banned
//!   or backing off, and at most once per `ORPHAN_SYNC_GAP` (2 s) per peer.
//! - `POST /v1/p2p/tx {hex, from?}`: a peer pushes a transaction. One refused only
//!   because a transaction it spends is unknown (pushes run concurrently, so a child can
//!   overtake its parent) answers 202 and is held as an orphan ([`super::orphans`]) until that
//!   transaction arrives, then submitted again.

use super::*;

/// Parses a JSON body ourselves so that malformed JSON, unknown fields and wrong types get
/// our `{error, message}` shape rather than axum's plain-text rejection. The body must be
/// an object: serde would otherwise read a struct from an array of its fields.
pub(super) fn parse_body<T: DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    if !body.trim_ascii_start().is_empty() && !crate::extract::is_json_object(body) {
        return Err(AppError::bad_request(
            "malformed_json",
            crate::extract::NOT_AN_OBJECT,
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| AppError::bad_request("malformed_json", format!("invalid body: {e}")))
}

pub(super) fn decode_hex<T: Decode>(hex_str: &str, what: &str) -> ApiResult<T> {
    let bytes = hex::decode(hex_str)
        .map_err(|e| AppError::bad_request("bad_hex", format!("{what} hex: {e}")))?;
    T::decode(&bytes)
        .map_err(|e| AppError::bad_request("malformed", format!("{what} does not decode: {e}")))
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct HashesRequest {
    /// Block hashes, newest first (at most 256).
    #[schema(value_type = Vec<String>, max_items = 256)]
    pub(super) locator: Vec<Hash256>,
    /// At most this many hashes (default and max 500).
    #[serde(default)]
    pub(super) limit: Option<usize>,
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct HexPush {
    /// The consensus encoding, as hex.
    #[schema(pattern = "^([0-9a-fA-F]{2})*$")]
    pub(super) hex: String,
    /// The sender's own base URL (where a sync after an orphan fetches from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) from: Option<String>,
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
pub(super) struct HexBody {
    pub(super) hex: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AddPeerRequest {
    /// The peer's base URL, `http://host:port`.
    pub(super) url: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct RegisterNodesRequest {
    /// Base URLs (`http://host:port`; the scheme may be left out).
    pub(super) nodes: Option<Vec<String>>,
}

/// The media type of raw consensus bytes.
pub(super) const OCTET_STREAM: &str = "application/octet-stream";

/// Reads at most `max` bytes of a peer's JSON answer.
pub(super) async fn read_json<R: DeserializeOwned>(
    resp: reqwest::Response,
    max: usize,
) -> Result<R, SyncError> {
    let (_, buf) = read_bounded(resp, max).await?;
    serde_json::from_slice(&buf).map_err(|e| SyncError::Misbehaved(format!("bad JSON: {e}")))
}

/// Reads at most `max` bytes of a peer's answer, with its content type: a hostile peer
/// must not make us buffer an unbounded body.
pub(super) async fn read_bounded(
    mut resp: reqwest::Response,
    max: usize,
) -> Result<(String, Vec<u8>), SyncError> {
    let status = resp.status();
    if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
        return Err(SyncError::Throttled {
            status,
            retry_after: backoff::retry_after(resp.headers(), std::time::SystemTime::now()),
        });
    }
    if !status.is_success() {
        return Err(SyncError::Unreachable(format!("HTTP {status}")));
    }
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(SyncError::Misbehaved(format!(
            "answer larger than {max} bytes"
        )));
    }
    let kind = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut buf = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| SyncError::Unreachable(e.to_string()))?
    {
        if buf.len() + chunk.len() > max {
            return Err(SyncError::Misbehaved(format!(
                "answer larger than {max} bytes"
            )));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok((kind, buf))
}

impl PeerService {
    /// A block's consensus bytes, asked for raw; a peer that still answers `{hex}` (one
    /// from before the raw form) is understood too.
    pub(super) async fn get_block_bytes(
        &self,
        base: &str,
        path: &str,
        max: usize,
    ) -> Result<Vec<u8>, SyncError> {
        let resp = self
            .inner
            .http
            .get(format!("{base}{path}"))
            .header(header::ACCEPT, OCTET_STREAM)
            .send()
            .await
            .map_err(|e| SyncError::Unreachable(e.to_string()))?;
        let (kind, buf) = read_bounded(resp, max).await?;
        if kind.starts_with(OCTET_STREAM) {
            return Ok(buf);
        }
        let body: HexBody = serde_json::from_slice(&buf)
            .map_err(|e| SyncError::Misbehaved(format!("bad JSON: {e}")))?;
        hex::decode(&body.hex).map_err(|e| SyncError::Misbehaved(format!("bad hex: {e}")))
    }

    pub(super) async fn get_json<R: DeserializeOwned>(
        &self,
        base: &str,
        path: &str,
        max: usize,
    ) -> Result<R, SyncError> {
        let resp = self
            .inner
            .http
            .get(format!("{base}{path}"))
            .send()
            .await
            .map_err(|e| SyncError::Unreachable(e.to_string()))?;
        read_json(resp, max).await
    }

    /// A peer's headers for `locator` (`POST /v1/p2p/headers`), decoded: at most `limit`,
    /// and a body that is not whole 80-byte headers is the peer's fault.
    pub(super) async fn post_headers(
        &self,
        base: &str,
        locator: Vec<Hash256>,
        limit: usize,
    ) -> Result<Vec<engine::header::BlockHeader>, SyncError> {
        use engine::header::{BlockHeader, HEADER_SIZE};
        let request = HashesRequest {
            locator,
            limit: Some(limit),
        };
        let resp = self
            .inner
            .http
            .post(format!("{base}/v1/p2p/headers"))
            .json(&request)
            .send()
            .await
            .map_err(|e| SyncError::Unreachable(e.to_string()))?;
        let (_, buf) = read_bounded(resp, limit * HEADER_SIZE).await?;
        if buf.len() % HEADER_SIZE != 0 {
            return Err(SyncError::Misbehaved(format!(
                "{} bytes of headers is not a whole number of {HEADER_SIZE}-byte headers",
                buf.len()
            )));
        }
        Ok(buf
            .chunks_exact(HEADER_SIZE)
            .map(|c| BlockHeader::from_bytes(c.try_into().expect("a whole header")))
            .collect())
    }
}
