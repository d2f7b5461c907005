//! Request bodies over the limit: refused with the JSON error shape, and read to the end
//! (within a bound) first, so a client still sending sees the 413 instead of a broken
//! pipe or a reset connection.
//!
//! A body that declares its length (`Content-Length`, as curl, browsers and our own
//! clients send) is judged before any handler runs. A chunked body without a length is
//! cut by the per-route `DefaultBodyLimit` inside the extractor; it gets the same JSON
//! answer (see `crate::extract`), but the connection then closes with the rest unread.

use crate::error::AppError;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use engine::params::ChainParams;
use futures_util::StreamExt;
use std::time::Duration;

/// The most bytes of a refused body read and thrown away before answering.
pub const DRAIN_MAX_BYTES: u64 = 64 << 20;
/// The longest time spent reading a refused body before answering anyway.
pub const DRAIN_MAX_TIME: Duration = Duration::from_secs(10);

/// The limit of a pushed block (as hex, plus the JSON envelope) on the peer routes.
pub fn peer_push_limit(params: &ChainParams) -> usize {
    params
        .max_block_bytes
        .saturating_mul(2)
        .saturating_add(4096)
}

/// The body limit of the route at `path`: peer pushes carry whole blocks.
fn limit_for(path: &str, s: &AppState) -> usize {
    match path {
        "/v1/p2p/blocks" | "/v1/p2p/tx" => peer_push_limit(s.engine.params()),
        _ => s.config.body_limit,
    }
}

/// Middleware: a declared length over the route's limit is drained, then answered
/// `413 {"error":"body_too_large"}`; everything else goes on to the handler.
pub async fn refuse_oversized(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let limit = limit_for(req.uri().path(), &s);
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(len) if len > limit as u64 => {
            drain(req, len).await;
            too_large(len, limit).into_response()
        }
        _ => next.run(req).await,
    }
}

/// Reads and drops up to `len` bytes of the body, within [`DRAIN_MAX_BYTES`] and
/// [`DRAIN_MAX_TIME`].
pub(crate) async fn drain(req: Request, len: u64) {
    let want = len.min(DRAIN_MAX_BYTES);
    let mut stream = req.into_body().into_data_stream();
    let read_all = async {
        let mut seen = 0u64;
        while seen < want {
            match stream.next().await {
                Some(Ok(chunk)) => seen += chunk.len() as u64,
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_MAX_TIME, read_all).await;
}

fn too_large(len: u64, limit: usize) -> AppError {
    AppError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the request body is {len} bytes; this route takes at most {limit}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_pushes_take_a_whole_block_as_hex() {
        let p = ChainParams::dev();
        assert!(peer_push_limit(&p) > 2 * p.max_block_bytes);
    }
}
