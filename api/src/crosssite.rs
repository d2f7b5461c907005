//! Cross-site request refusal for every state-changing request (any method but GET,
//! HEAD and OPTIONS, on every route: ours, the seeds', the peer protocol's).
//!
//! A web page on another site can make a developer's browser send requests to a node on
//! `127.0.0.1` (a form post, or `fetch` in `no-cors` mode with a `text/plain` body); the
//! page cannot read the answer, but a dev node would still move dev funds or wipe its
//! chain. Such a request is refused with `403 cross_site` when the browser says where it
//! comes from:
//!
//! - `Sec-Fetch-Site` (sent by every current browser) must be `same-origin` or `none`;
//! - otherwise an `Origin` header must name this node's own origin (its `Host`).
//!
//! Requests with neither header are not from a browser page (wallet, miner, peers, curl)
//! and pass. As a second line, a request body must be JSON: a non-empty body without
//! `Content-Type: application/json` (or `+json`) is refused with
//! `415 unsupported_media_type` — a cross-site page can only send `text/plain`, form or
//! multipart bodies without a CORS preflight, and the node answers no preflight. An empty
//! body without a content type passes (the seeds' `new_wallet` and `reset_system`, and
//! the web page, post nothing).
//!
//! Two seed routes change state on `GET` (their shapes are kept, design/SEED_API.md):
//! `GET /mine` mines a block and `GET /wallet/new` creates a custody wallet. A link or an
//! `<img>` on another site would trigger them with no body and no `Origin`, so for these
//! the same-origin check applies to `GET` as well ([`STATE_CHANGING_GETS`]); a browser's
//! address bar (`Sec-Fetch-Site: none`), the node's own page, and non-browser clients pass.

use crate::error::AppError;
use axum::extract::Request;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Routes whose `GET` changes state (the seeds' shapes): refused cross-site like a POST.
pub const STATE_CHANGING_GETS: &[&str] = &["/mine", "/wallet/new"];

/// The middleware (layered over the whole router).
pub async fn guard(req: Request, next: Next) -> Response {
    if let Err(e) = check(req.method(), req.uri().path(), req.headers()) {
        return e.into_response();
    }
    next.run(req).await
}

/// Why a request is refused, if it is.
pub fn check(method: &Method, path: &str, headers: &HeaderMap) -> Result<(), AppError> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        if *method != Method::OPTIONS && is_state_changing_get(path) {
            return same_origin(headers);
        }
        return Ok(());
    }
    same_origin(headers)?;
    json_body(headers)
}

/// `path` is one of [`STATE_CHANGING_GETS`] (a trailing slash included: the router may
/// not match it, but refusing costs nothing).
fn is_state_changing_get(path: &str) -> bool {
    let path = path.strip_suffix('/').unwrap_or(path);
    STATE_CHANGING_GETS.contains(&path)
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap_or("\u{0}"))
}

fn cross_site(why: String) -> AppError {
    AppError::new(
        StatusCode::FORBIDDEN,
        "cross_site",
        format!("{why}: state-changing requests are accepted only from this node's own pages or from non-browser clients"),
    )
}

fn same_origin(headers: &HeaderMap) -> Result<(), AppError> {
    if let Some(site) = header_str(headers, "sec-fetch-site") {
        return match site.trim().to_ascii_lowercase().as_str() {
            "same-origin" | "none" => Ok(()),
            other => Err(cross_site(format!("Sec-Fetch-Site is `{other}`"))),
        };
    }
    let Some(origin) = header_str(headers, header::ORIGIN.as_str()) else {
        return Ok(());
    };
    let host = header_str(headers, header::HOST.as_str()).unwrap_or("");
    if origin_matches_host(origin, host) {
        Ok(())
    } else {
        Err(cross_site(format!(
            "Origin `{origin}` is not this node (`{host}`)"
        )))
    }
}

/// `http://HOST` or `https://HOST` with exactly the request's `Host` (port included).
/// `null` (sandboxed frames, file: pages) never matches.
fn origin_matches_host(origin: &str, host: &str) -> bool {
    let origin = origin.trim();
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    match authority {
        Some(a) => !host.is_empty() && !a.contains('/') && a.eq_ignore_ascii_case(host.trim()),
        None => false,
    }
}

fn json_body(headers: &HeaderMap) -> Result<(), AppError> {
    match header_str(headers, header::CONTENT_TYPE.as_str()) {
        Some(ct) if is_json(ct) => Ok(()),
        Some(ct) => Err(unsupported(format!("Content-Type `{ct}`"))),
        None if body_is_empty(headers) => Ok(()),
        None => Err(unsupported("a body without a Content-Type".into())),
    }
}

fn unsupported(what: String) -> AppError {
    AppError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!(
            "{what} is not accepted: send the body as JSON with Content-Type: application/json"
        ),
    )
}

/// `application/json` or `application/<something>+json`, any parameters.
fn is_json(ct: &str) -> bool {
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn body_is_empty(headers: &HeaderMap) -> bool {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return false;
    }
    match header_str(headers, header::CONTENT_LENGTH.as_str()) {
        None => true,
        Some(n) => n.trim() == "0",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_static(v));
        }
        m
    }

    fn code(r: Result<(), AppError>) -> Option<String> {
        r.err().map(|e| e.code.to_string())
    }

    #[test]
    fn cross_site_text_plain_post_is_refused() {
        let post = Method::POST;
        let headers = h(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "https://evil.example"),
            ("content-type", "text/plain"),
            ("content-length", "40"),
        ]);
        assert_eq!(
            code(check(&post, "/api/send", &headers)).as_deref(),
            Some("cross_site")
        );
        let headers = h(&[
            ("host", "127.0.0.1:8080"),
            ("sec-fetch-site", "cross-site"),
            ("content-type", "application/json"),
        ]);
        assert_eq!(
            code(check(&post, "/api/send", &headers)).as_deref(),
            Some("cross_site")
        );
        // same-site (another port of the same host) is another origin too.
        let headers = h(&[("sec-fetch-site", "same-site")]);
        assert_eq!(
            code(check(&post, "/api/send", &headers)).as_deref(),
            Some("cross_site")
        );
        let headers = h(&[("host", "127.0.0.1:8080"), ("origin", "null")]);
        assert_eq!(
            code(check(&post, "/api/send", &headers)).as_deref(),
            Some("cross_site")
        );
        let headers = h(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:9999"),
        ]);
        assert_eq!(
            code(check(&post, "/api/send", &headers)).as_deref(),
            Some("cross_site")
        );
    }

    #[test]
    fn same_origin_and_non_browser_json_posts_pass() {
        let post = Method::POST;
        for headers in [
            h(&[
                ("content-type", "application/json"),
                ("content-length", "2"),
            ]),
            h(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:8080"),
                ("content-type", "application/json; charset=utf-8"),
            ]),
            h(&[
                ("sec-fetch-site", "same-origin"),
                ("content-type", "application/problem+json"),
            ]),
            // The page and the seeds post some routes with no body at all.
            h(&[("sec-fetch-site", "same-origin"), ("content-length", "0")]),
            h(&[]),
        ] {
            assert_eq!(
                code(check(&post, "/api/send", &headers)),
                None,
                "{headers:?}"
            );
        }
    }

    #[test]
    fn non_json_bodies_are_refused_with_415() {
        let post = Method::POST;
        for headers in [
            h(&[("content-type", "text/plain"), ("content-length", "2")]),
            h(&[("content-type", "application/x-www-form-urlencoded")]),
            h(&[("content-type", "multipart/form-data; boundary=x")]),
            h(&[("content-length", "5")]),
            h(&[("transfer-encoding", "chunked")]),
        ] {
            assert_eq!(
                code(check(&post, "/api/send", &headers)).as_deref(),
                Some("unsupported_media_type"),
                "{headers:?}"
            );
        }
    }

    #[test]
    fn reads_are_never_refused() {
        let headers = h(&[
            ("origin", "https://evil.example"),
            ("sec-fetch-site", "cross-site"),
        ]);
        for m in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert_eq!(code(check(&m, "/api/send", &headers)), None);
        }
        for m in [Method::GET, Method::HEAD] {
            assert_eq!(code(check(&m, "/wallet/balance", &headers)), None);
        }
        for m in [Method::PUT, Method::DELETE, Method::PATCH] {
            assert_eq!(
                code(check(&m, "/api/send", &headers)).as_deref(),
                Some("cross_site")
            );
        }
    }

    #[test]
    fn state_changing_gets_are_refused_cross_site_only() {
        for path in ["/mine", "/wallet/new", "/wallet/new/"] {
            for headers in [
                h(&[("sec-fetch-site", "cross-site")]),
                h(&[("sec-fetch-site", "same-site")]),
                h(&[
                    ("host", "127.0.0.1:8080"),
                    ("origin", "https://evil.example"),
                ]),
            ] {
                assert_eq!(
                    code(check(&Method::GET, path, &headers)).as_deref(),
                    Some("cross_site"),
                    "{path} {headers:?}"
                );
            }
            for headers in [
                h(&[]),
                h(&[("sec-fetch-site", "none")]),
                h(&[("sec-fetch-site", "same-origin")]),
                h(&[
                    ("host", "127.0.0.1:8080"),
                    ("origin", "http://127.0.0.1:8080"),
                ]),
            ] {
                assert_eq!(
                    code(check(&Method::GET, path, &headers)),
                    None,
                    "{path} {headers:?}"
                );
            }
        }
    }
}
