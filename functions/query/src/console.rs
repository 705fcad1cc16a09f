//! The console: a small web app served under `/console/`, embedded in the binary. Its files
//! hold no data, so they are served without a token; every data call the app makes carries
//! the viewer's bearer token to the JSON API beside it.

use lambda_http::http::{header, HeaderMap, Method, StatusCode};
use lambda_http::{Body, Response};
use sentinel_lambda::http::{method_not_allowed, not_found};

/// Scripts and styles from this origin only, no inline script or style, no framing, and
/// data calls to this origin only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
    etag: &'static str,
}

/// FNV-1a, 64-bit: a content hash for ETags, computed at compile time.
const fn fnv1a(text: &str) -> u64 {
    let bytes = text.as_bytes();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

/// `"<16 hex digits>"`, as a `&'static str`, at compile time.
const fn etag_bytes(text: &str) -> [u8; 18] {
    let hash = fnv1a(text);
    let digits = b"0123456789abcdef";
    let mut out = [b'"'; 18];
    let mut i = 0;
    while i < 16 {
        out[1 + i] = digits[((hash >> (60 - 4 * i)) & 0xf) as usize];
        i += 1;
    }
    out
}

macro_rules! asset {
    ($name:literal, $type:literal) => {{
        const BODY: &str = include_str!(concat!("../console/", $name));
        const ETAG: [u8; 18] = etag_bytes(BODY);
        Asset {
            name: $name,
            content_type: $type,
            body: BODY,
            etag: match std::str::from_utf8(&ETAG) {
                Ok(etag) => etag,
                Err(_) => panic!("an ETag is ASCII"),
            },
        }
    }};
}

const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("verify.js", "text/javascript; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
];

/// Whether `path` is the console's (`/console` or below).
pub fn is_console(path: &str) -> bool {
    path == "/console" || path.starts_with("/console/")
}

/// Answers a request for the console's files: GET only, no token needed.
pub fn serve(method: &Method, path: &str, headers: &HeaderMap) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        return method_not_allowed("GET", "the console's files are read with GET");
    }
    if path == "/console" {
        // Relative, so that it works under any prefix (a stage, a function URL's path).
        return Response::builder()
            .status(StatusCode::PERMANENT_REDIRECT)
            .header(header::LOCATION, "console/")
            .header(header::CACHE_CONTROL, "no-cache")
            .body(Body::Empty)
            .expect("static response parts are valid");
    }
    let name = match &path["/console/".len()..] {
        "" => "index.html",
        name => name,
    };
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return not_found("no such file in the console; open /console/");
    };
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == asset.etag));
    let builder = Response::builder()
        .header(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::REFERRER_POLICY, "no-referrer")
        .header(header::X_FRAME_OPTIONS, "DENY")
        // Revalidated on every load (cheap: 304 by ETag), so a deployment is seen at once.
        .header(header::CACHE_CONTROL, "no-cache")
        .header(header::ETAG, asset.etag);
    let response = if fresh {
        builder.status(StatusCode::NOT_MODIFIED).body(Body::Empty)
    } else {
        builder
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, asset.content_type)
            .body(if method == Method::HEAD {
                Body::Empty
            } else {
                Body::Text(asset.body.to_string())
            })
    };
    response.expect("static response parts are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Response<Body> {
        serve(&Method::GET, path, &HeaderMap::new())
    }

    #[test]
    fn the_console_page_is_served_with_a_strict_policy_and_no_token() {
        let response = get("/console/");

        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers();
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe"));
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let Body::Text(html) = response.body() else {
            panic!("a text body")
        };
        assert!(html.contains(r#"<script type="module" src="app.js">"#));
        assert!(!html.contains("<script>"), "no inline script");
    }

    #[test]
    fn an_unchanged_asset_is_not_sent_again() {
        let first = get("/console/app.js");
        let etag = first.headers()[header::ETAG].clone();
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, etag);

        let again = serve(&Method::GET, "/console/app.js", &headers);

        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert!(matches!(again.body(), Body::Empty));
    }

    #[test]
    fn the_console_without_its_slash_redirects_and_unknown_files_are_404() {
        let redirect = get("/console");
        assert_eq!(redirect.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(redirect.headers()[header::LOCATION], "console/");
        assert_eq!(get("/console/../events").status(), StatusCode::NOT_FOUND);
        assert_eq!(get("/console/nope.js").status(), StatusCode::NOT_FOUND);
        assert_eq!(
            serve(&Method::POST, "/console/", &HeaderMap::new()).status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    #[test]
    fn every_etag_is_a_quoted_content_hash() {
        for asset in ASSETS {
            assert_eq!(asset.etag.len(), 18, "{}", asset.name);
            assert!(asset.etag.starts_with('"') && asset.etag.ends_with('"'));
        }
        assert_ne!(ASSETS[0].etag, ASSETS[1].etag);
    }
}
