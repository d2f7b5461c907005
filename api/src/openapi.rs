//! The OpenAPI 3.1 document of every route the node serves (`GET /v1/openapi.json`).
//!
//! Each module documents its own routes with `#[utoipa::path]` beside the handlers: the
//! `/v1` reads, writes and mining routes and the event stream here, the peer protocol in
//! [`crate::peers`], the seeds' routes in [`crate::seed`]. [`document`] merges them, adds
//! the page's two fetchable files, then states once, for every operation, what the layers
//! around all handlers can answer ([`layer_responses`]: 400, 403, 413, 415, 429, 503) and
//! the formats of the identifiers in paths and queries ([`identifier_formats`]), so no
//! annotation repeats them and none can forget them.
//!
//! `api/tests/openapi.rs` checks the document against the router's route list.

use crate::crosssite::STATE_CHANGING_GETS;
use crate::error::ErrorBody;
use std::sync::OnceLock;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::path::{HttpMethod, Operation, OperationBuilder, PathItem};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Object, OpenApi, RefOr, Schema, Type};
use utoipa::OpenApi as _;

/// A block or transaction hash: 64 hex digits, in display order.
pub const HASH_PATTERN: &str = "^[0-9a-fA-F]{64}$";
/// A block height (decimal) or hash.
pub const BLOCK_ID_PATTERN: &str = "^([0-9]{1,20}|[0-9a-fA-F]{64})$";
/// A Bitplace address: bech32m, prefix `bp`, 20 bytes of data and a checksum. The
/// checksum cannot be written as a pattern: a matching string may still answer 400.
pub const ADDRESS_PATTERN: &str = "^bp1[02-9ac-hj-np-z]{38}$";
/// `/v1/events` topics: a comma-separated list of topic names and `address:<addr>`.
pub const TOPICS_PATTERN: &str = "^(blocks|mempool|work|workers|address:bp1[02-9ac-hj-np-z]{38})(,(blocks|mempool|work|workers|address:bp1[02-9ac-hj-np-z]{38}))*$";

/// Tags, in the order a reader meets them, with what each groups.
const TAGS: &[(&str, &str)] = &[
    ("chain", "Reading the chain: status, blocks, transactions, addresses, the mempool"),
    ("transactions", "Submitting signed transactions"),
    ("mining", "Mining jobs over HTTP and the Stratum server's workers"),
    ("events", "The push feed (server-sent events)"),
    ("peers", "This node's peer list"),
    ("p2p", "The node-to-node protocol"),
    ("seed", "The seed projects' route aliases (read-only, always on)"),
    ("dev", "Dev-mode routes (403 on a node not started with --dev): custody wallets, mining in the request, reset"),
    ("operations", "Health, Prometheus metrics and this document"),
    ("web", "The built-in web page"),
];

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Bitplace node API",
        description = "See docs/API.md. Errors are {\"error\": code, \"message\": text}; the \
                       Pocket envelope routes add them beside {\"data\", \"error\"}."
    ),
    paths(
        crate::v1::status,
        crate::v1::blocks,
        crate::v1::block,
        crate::v1::transaction,
        crate::v1::address,
        crate::v1::mempool,
        crate::v1::post_tx,
        crate::v1::template,
        crate::v1::submit_work,
        crate::v1::workers,
        crate::v1::healthz,
        crate::v1::metrics,
        crate::events::events,
        openapi_json,
    ),
    components(schemas(ErrorBody, crate::stratum::WorkerView))
)]
struct NodeApi;

/// The whole document, built once.
pub fn document() -> &'static OpenApi {
    static DOC: OnceLock<OpenApi> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = NodeApi::openapi();
        doc.merge(crate::peers::PeerApi::openapi());
        doc.merge(crate::seed::SeedApi::openapi());
        add_page_paths(&mut doc);
        add_tags_and_security(&mut doc);
        for (path, item) in doc.paths.paths.iter_mut() {
            for (method, op) in operations(item) {
                layer_responses(path, method, op);
                identifier_formats(op);
            }
        }
        doc
    })
}

#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "this document (OpenAPI 3.1)", content_type = "application/json")))]
pub async fn openapi_json() -> axum::Json<&'static OpenApi> {
    axum::Json(document())
}

/// Every operation of a path item with its method.
fn operations(item: &mut PathItem) -> Vec<(HttpMethod, &mut Operation)> {
    [
        (HttpMethod::Get, item.get.as_mut()),
        (HttpMethod::Post, item.post.as_mut()),
        (HttpMethod::Put, item.put.as_mut()),
        (HttpMethod::Delete, item.delete.as_mut()),
        (HttpMethod::Patch, item.patch.as_mut()),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.map(|op| (m, op)))
    .collect()
}

/// The page and the GPU kernel it fetches: served by the router's fallback
/// ([`crate::web::fallback`]), not by a handler of their own.
fn add_page_paths(doc: &mut OpenApi) {
    let page = [
        ("/", "text/html", "the web page (the app shell)"),
        (
            crate::web::SHADER_PATH,
            "text/wgsl",
            "the SHA-256d WGSL kernel the browser miner runs (the native miner's, byte for byte)",
        ),
    ];
    for (path, media, what) in page {
        let content = ContentBuilder::new()
            .schema(Some(Object::with_type(Type::String)))
            .build();
        let ok = ResponseBuilder::new()
            .description(what)
            .content(media, content);
        let op = OperationBuilder::new()
            .tag("web")
            .response("200", ok)
            .build();
        doc.paths
            .paths
            .insert(path.to_string(), PathItem::new(HttpMethod::Get, op));
    }
}

fn add_tags_and_security(doc: &mut OpenApi) {
    doc.tags = Some(
        TAGS.iter()
            .map(|(name, what)| {
                utoipa::openapi::tag::TagBuilder::new()
                    .name(*name)
                    .description(Some(*what))
                    .build()
            })
            .collect(),
    );
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "admin_token",
        SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
    );
}

fn error_response(what: &str) -> RefOr<Response> {
    let content = ContentBuilder::new()
        .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
            "ErrorBody",
        ))))
        .build();
    RefOr::T(
        ResponseBuilder::new()
            .description(what)
            .content("application/json", content)
            .build(),
    )
}

/// What the middleware layered over every route can answer (`crate::app_with`): the rate
/// limit and the request timeout everywhere; on requests that change state, the
/// cross-site guard, the body limit and the JSON-only rule; on requests with parameters
/// or a body, a 400 for one that does not parse. A route's own description of a status
/// is kept.
fn layer_responses(path: &str, method: HttpMethod, op: &mut Operation) {
    let parses_input = method != HttpMethod::Get || has_params(op);
    let mut add = |status: &str, what: &str| {
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| error_response(what));
    };
    add(
        "429",
        "rate_limited: too many requests from this address; see Retry-After",
    );
    add(
        "503",
        "timeout, storage_error, shutting_down or unavailable: retry later",
    );
    let changes_state = method != HttpMethod::Get || STATE_CHANGING_GETS.contains(&path);
    if changes_state {
        add(
            "403",
            "cross_site: a browser page of another site sent it (Sec-Fetch-Site / Origin)",
        );
    }
    if method != HttpMethod::Get {
        add("413", "body_too_large: the body is over this route's limit");
        add(
            "415",
            "unsupported_media_type: a body that is not Content-Type: application/json",
        );
    }
    if parses_input {
        add(
            "400",
            "the request does not parse (malformed_json, invalid_body, bad_query, ...)",
        );
    }
}

fn has_params(op: &Operation) -> bool {
    op.parameters.as_ref().is_some_and(|p| !p.is_empty())
}

/// The pattern an identifier parameter must match, by its name (the same name means the
/// same kind of value on every route).
fn pattern_for(name: &str) -> Option<&'static str> {
    match name {
        "hash" | "txid" => Some(HASH_PATTERN),
        "id" => Some(BLOCK_ID_PATTERN),
        "address" => Some(ADDRESS_PATTERN),
        "topics" => Some(TOPICS_PATTERN),
        _ => None,
    }
}

fn identifier_formats(op: &mut Operation) {
    for param in op.parameters.iter_mut().flatten() {
        let Some(pattern) = pattern_for(&param.name) else {
            continue;
        };
        if let Some(RefOr::T(Schema::Object(schema))) = param.schema.as_mut() {
            schema.pattern = Some(pattern.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifier_patterns_accept_what_the_node_prints() {
        let re = |p: &str| regex::Regex::new(p).expect("pattern compiles");
        let addr = "bp1pqyqszqgpqyqszqgpqyqszqgpqyqszqggnmngf";
        assert!(re(ADDRESS_PATTERN).is_match(addr));
        assert!(!re(ADDRESS_PATTERN).is_match("bc1pqyqszqgpqyqszqgpqyqszqgpqyqszqggnmngf"));
        let hash = "00".repeat(32);
        assert!(re(HASH_PATTERN).is_match(&hash));
        assert!(re(BLOCK_ID_PATTERN).is_match(&hash));
        assert!(re(BLOCK_ID_PATTERN).is_match("0"));
        assert!(!re(BLOCK_ID_PATTERN).is_match("-1"));
        assert!(re(TOPICS_PATTERN).is_match(&format!("blocks,address:{addr},work")));
        assert!(!re(TOPICS_PATTERN).is_match("blocks,nonsense"));
    }
}
