//! The web page at `/`: the embedded `api/web/` directory, or `--web-root DIR` with a
//! history fallback to `index.html`. API paths never fall through to a page: an unknown
//! API path answers a JSON 404.

use crate::error::AppError;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use include_dir::{include_dir, Dir};
use std::path::{Path, PathBuf};

static WEB: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/web");

/// The native miner's WGSL kernel, embedded from the one file miner-gpu compiles too, so
/// the browser miner runs byte for byte the same kernel.
pub const SHADER: &str = include_str!("../../shaders/sha256d.wgsl");
/// Where the page fetches [`SHADER`] from.
pub const SHADER_PATH: &str = "/shaders/sha256d.wgsl";
/// WGSL's registered media type (W3C WGSL spec, "text/wgsl").
const WGSL_TYPE: &str = "text/wgsl; charset=utf-8";

/// Path prefixes that belong to the JSON API (never the page).
const API_PREFIXES: &[&str] = &[
    "/api",
    "/v1",
    "/chain",
    "/mine",
    "/transactions",
    "/wallet",
    "/nodes",
    "/healthz",
    "/metrics",
];

pub fn is_api_path(path: &str) -> bool {
    API_PREFIXES.iter().any(|p| {
        path == *p
            || path
                .strip_prefix(p)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

fn not_found(path: &str) -> Response {
    AppError::not_found("not_found", format!("no route for {path}")).into_response()
}

fn content_type(path: &str) -> HeaderValue {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let s = match mime.essence_str() {
        // Browsers refuse ES modules with any other type; charset for text.
        "application/javascript" | "text/javascript" => "text/javascript; charset=utf-8".into(),
        m if m.starts_with("text/") => format!("{m}; charset=utf-8"),
        m => m.to_string(),
    };
    HeaderValue::from_str(&s).unwrap_or(HeaderValue::from_static("application/octet-stream"))
}

fn file(path: &str, bytes: Vec<u8>) -> Response {
    typed(content_type(path), bytes)
}

fn typed(content_type: HeaderValue, bytes: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        bytes,
    )
        .into_response()
}

/// The router's fallback: static files for GET/HEAD outside the API, JSON 404 otherwise.
pub async fn fallback(State(s): State<AppState>, method: Method, uri: Uri) -> Response {
    let path = uri.path();
    if is_api_path(path) {
        return not_found(path);
    }
    if method != Method::GET && method != Method::HEAD {
        return AppError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{method} is not allowed on {path}"),
        )
        .into_response();
    }
    if path == SHADER_PATH {
        // Always the embedded kernel, even with --web-root: one source of truth.
        return typed(
            HeaderValue::from_static(WGSL_TYPE),
            SHADER.as_bytes().to_vec(),
        );
    }
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() { "index.html" } else { rel };
    match &s.config.web_root {
        Some(root) => serve_dir(root, rel).await,
        None => match WEB.get_file(rel) {
            Some(f) => file(rel, f.contents().to_vec()),
            None => not_found(path),
        },
    }
}

/// A safe relative path under `root`: no `..`, no absolute parts, no backslashes.
fn resolve(root: &Path, rel: &str) -> Option<PathBuf> {
    let mut out = root.to_path_buf();
    for seg in rel.split('/') {
        if seg.is_empty() || seg == "." {
            continue;
        }
        if seg == ".." || seg.contains('\\') || seg.contains('\0') {
            return None;
        }
        out.push(seg);
    }
    Some(out)
}

async fn serve_dir(root: &Path, rel: &str) -> Response {
    if let Some(p) = resolve(root, rel) {
        if let Ok(bytes) = tokio::fs::read(&p).await {
            return file(rel, bytes);
        }
    }
    // History fallback: client-side routes load the app shell.
    match tokio::fs::read(root.join("index.html")).await {
        Ok(bytes) => file("index.html", bytes),
        Err(_) => not_found(rel),
    }
}
