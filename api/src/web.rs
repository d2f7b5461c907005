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

/// The built-in page's Content-Security-Policy: what its `<meta>` says, plus what only a
/// header can say (`frame-ancestors`: no other site may frame the page and trick clicks).
const PAGE_CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
/// For a `--web-root` front end, whose scripts and styles the node does not know: only
/// the parts that cannot break a page (no framing, no plugins, no `<base>` rewrite).
const WEB_ROOT_CSP: &str = "frame-ancestors 'none'; object-src 'none'; base-uri 'self'";

fn file(path: &str, bytes: Vec<u8>, csp: &'static str) -> Response {
    typed(content_type(path), bytes, csp)
}

fn typed(content_type: HeaderValue, bytes: Vec<u8>, csp: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(csp),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
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
        let mut resp = AppError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{method} is not allowed on {path}"),
        )
        .into_response();
        // RFC 9110: a 405 lists the methods the resource takes.
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    if path == SHADER_PATH {
        // Always the embedded kernel, even with --web-root: one source of truth.
        return typed(
            HeaderValue::from_static(WGSL_TYPE),
            SHADER.as_bytes().to_vec(),
            PAGE_CSP,
        );
    }
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() { "index.html" } else { rel };
    match &s.config.web_root {
        Some(root) => serve_dir(root, rel).await,
        None => match WEB.get_file(rel) {
            Some(f) => file(rel, f.contents().to_vec(), PAGE_CSP),
            None => not_found(path),
        },
    }
}

/// A safe relative path under `root`: no `..`, no dotfiles or dot-directories (`.git`,
/// `.env`), no absolute parts, no backslashes.
fn resolve(root: &Path, rel: &str) -> Option<PathBuf> {
    let mut out = root.to_path_buf();
    for seg in rel.split('/') {
        if seg.is_empty() || seg == "." {
            continue;
        }
        if seg.starts_with('.') || seg.contains('\\') || seg.contains('\0') {
            return None;
        }
        out.push(seg);
    }
    Some(out)
}

/// `path` with every symlink followed, if it still lies inside `root` (a link to
/// `/etc/passwd` or `../secrets` placed in the web root is not served).
async fn inside_root(root: &Path, path: &Path) -> Option<PathBuf> {
    let root = tokio::fs::canonicalize(root).await.ok()?;
    let real = tokio::fs::canonicalize(path).await.ok()?;
    real.starts_with(&root).then_some(real)
}

async fn serve_dir(root: &Path, rel: &str) -> Response {
    // A refused path answers 404 rather than the app shell, so it is plain it was refused.
    let Some(p) = resolve(root, rel) else {
        return not_found(rel);
    };
    if tokio::fs::symlink_metadata(&p).await.is_ok() {
        let Some(real) = inside_root(root, &p).await else {
            return not_found(rel);
        };
        if let Ok(bytes) = tokio::fs::read(&real).await {
            return file(rel, bytes, WEB_ROOT_CSP);
        }
    }
    // History fallback: client-side routes load the app shell.
    match tokio::fs::read(root.join("index.html")).await {
        Ok(bytes) => file("index.html", bytes, WEB_ROOT_CSP),
        Err(_) => not_found(rel),
    }
}
