//! The HTTP answers every API function gives: JSON bodies, the JSON error body, 405 with
//! `Allow`, 503 with `Retry-After`.

use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::{Body, Response};
use serde::Serialize;

use crate::error::ErrorBody;

/// A JSON answer. API answers are never cached: they hold audit data.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response<Body> {
    json_text(
        status,
        serde_json::to_string(body).expect("responses serialize"),
    )
}

/// A JSON answer from an already serialized body.
pub fn json_text(status: StatusCode, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from(body))
        .expect("static response parts are valid")
}

/// An error answer with the JSON error body.
pub fn error(status: StatusCode, body: ErrorBody) -> Response<Body> {
    json_text(status, body.to_json())
}

/// 405 naming the one method the endpoint takes, in `Allow` too.
pub fn method_not_allowed(allow: &'static str, message: &str) -> Response<Body> {
    let mut response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorBody::new("method_not_allowed", message),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// 404 with the JSON error body.
pub fn not_found(message: &str) -> Response<Body> {
    error(StatusCode::NOT_FOUND, ErrorBody::new("not_found", message))
}

/// 503 with `Retry-After: 1`: a dependency is down and trying again shortly may help.
pub fn unavailable(body: ErrorBody) -> Response<Body> {
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, body);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_405_names_the_allowed_method_and_is_json() {
        let response = method_not_allowed("POST", "use POST");
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[header::ALLOW], "POST");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let Body::Text(text) = response.body() else {
            panic!("a text body")
        };
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(value["error"]["code"], "method_not_allowed");
    }

    #[test]
    fn a_503_asks_to_retry() {
        let response = unavailable(ErrorBody::new("x", "y"));
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }
}
