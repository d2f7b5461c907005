//! Extractors whose rejections are [`AppError`]s, so malformed JSON, wrong types and bad
//! paths answer with the JSON error shape instead of axum's plain text.

use crate::error::AppError;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use std::net::{IpAddr, SocketAddr};

/// A JSON body that must be an object. axum's own extractor lets serde read a struct from
/// an array of its fields in order (`["00"]` for `{"hex": "00"}`), a shape no route
/// documents; this one refuses it with the same 400 `invalid_body` as any other
/// wrong-typed body.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        let (parts, body) = req.into_parts();
        let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state).await?;
        // An empty body falls through so that axum names what is missing (a Content-Type
        // or the document itself).
        if !bytes.trim_ascii_start().is_empty() && !is_json_object(&bytes) {
            return Err(AppError::bad_request("invalid_body", NOT_AN_OBJECT));
        }
        let req = Request::from_parts(parts, axum::body::Body::from(bytes));
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Json(value))
    }
}

/// What a body that is valid JSON but not an object is told.
pub const NOT_AN_OBJECT: &str = "the body must be a JSON object";

/// Whether a JSON document is an object: its first non-blank byte opens one. Cheaper than
/// parsing twice, and exact, since no other JSON value starts with `{`.
pub fn is_json_object(body: &[u8]) -> bool {
    body.trim_ascii_start().first() == Some(&b'{')
}

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(AppError))]
pub struct Query<T>(pub T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(AppError))]
pub struct Path<T>(pub T);

/// The raw body; over the route's limit it is a JSON 413, not axum's plain text.
pub struct Body(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = AppError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, AppError> {
        axum::body::Bytes::from_request(req, state)
            .await
            .map(Body)
            .map_err(AppError::from)
    }
}

/// The client's IP as the listener accepted it (`crate::listen`); None for a request
/// driven in-process, which has no connection.
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let info = parts.extensions.get::<ConnectInfo<SocketAddr>>();
        Ok(ClientIp(info.map(|c| c.0.ip())))
    }
}
