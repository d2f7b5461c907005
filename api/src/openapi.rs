//! The OpenAPI 3 document, generated from the handlers' annotations.

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Bitplace node API",
        description = "See docs/API.md. Errors are {\"error\": code, \"message\": text}."
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
    ),
    components(schemas(crate::error::ErrorBody, crate::stratum::WorkerView))
)]
pub struct ApiDoc;

pub async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}
