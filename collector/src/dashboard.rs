//! The built-in dashboard page: `GET /` and `GET /dashboard` (the HTML shell) and
//! `GET /assets/{file}` (its script and stylesheet), served from bytes compiled into the binary.
//!
//! The page is built from `collector/dashboard/` (TypeScript, bundled by esbuild) into
//! `collector/dashboard/dist/`, which is committed, so `cargo build` needs no Node. The build
//! also writes `dist/assets.rs`, the list below: every file with its content type, a strong
//! ETag, and its gzip form made at build time. The files are taken in with `include_bytes!`
//! rather than a crate such as `rust-embed`: the set is three files known at build time, so a
//! generated list costs no dependency, proc macro or compile time.
//!
//! The routes need no credential: the page holds no data; it reads the API with the credential
//! its user pastes. Every answer carries a strict Content-Security-Policy (only this origin, no
//! inline script or style), `nosniff`, `no-referrer` and no framing. Asset names carry their
//! content's hash, so they are cached for a year (`immutable`); the HTML is `no-cache`
//! (revalidated by ETag), so a new build is picked up at once.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::api_error::{ApiError, ErrorBody};

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// The file name (`index.html`, `app-<hash>.js`, ...).
    pub name: &'static str,
    pub content_type: &'static str,
    /// A strong ETag (quoted), a hash of `body`.
    pub etag: &'static str,
    pub body: &'static [u8],
    /// `body` gzip-compressed at build time.
    pub gzip: &'static [u8],
}

include!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/dashboard/dist/assets.rs"
));

/// Only this origin; no inline script or style, no plugins, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const CACHE_HTML: &str = "no-cache";
const CACHE_HASHED: &str = "public, max-age=31536000, immutable";

/// The page. No credential needed.
#[utoipa::path(
    get,
    path = "/",
    tag = "dashboard",
    responses(
        (status = 200, description = "The dashboard page (HTML; it reads the API with the \
            credential its user enters).", body = String, content_type = "text/html"),
        (status = 304, description = "Not modified (`If-None-Match` matched the ETag)."),
    )
)]
pub async fn root(headers: HeaderMap) -> Response {
    answer(&INDEX, &headers, CACHE_HTML)
}

/// The page, under its own name. No credential needed.
#[utoipa::path(
    get,
    path = "/dashboard",
    tag = "dashboard",
    responses(
        (status = 200, description = "The dashboard page, as at `/`.", body = String,
            content_type = "text/html"),
        (status = 304, description = "Not modified (`If-None-Match` matched the ETag)."),
    )
)]
pub async fn page(headers: HeaderMap) -> Response {
    answer(&INDEX, &headers, CACHE_HTML)
}

/// A script or stylesheet of the page; names carry a hash of the content. No credential needed.
#[utoipa::path(
    get,
    path = "/assets/{file}",
    tag = "dashboard",
    params(("file" = String, Path, description = "The asset's file name, as the page names it.")),
    responses(
        (status = 200, description = "The file (gzip when the client accepts it).", content(
            (String = "text/javascript"),
            (String = "text/css"),
        )),
        (status = 304, description = "Not modified (`If-None-Match` matched the ETag)."),
        (status = 404, description = "No such asset.", body = ErrorBody),
    )
)]
pub async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().find(|a| a.name == file) {
        Some(a) => answer(a, &headers, CACHE_HASHED),
        None => ApiError::not_found(format!("file: no asset named `{file}`")).into_response(),
    }
}

/// `asset` as an answer: 304 when the client has it, its gzip form when accepted.
fn answer(asset: &Asset, req: &HeaderMap, cache: &'static str) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::ETAG, HeaderValue::from_static(asset.etag));
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if etag_matches(req, asset.etag) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    if accepts_gzip(req) {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        (headers, asset.gzip).into_response()
    } else {
        (headers, asset.body).into_response()
    }
}

/// Whether `If-None-Match` names `etag` (or is `*`).
fn etag_matches(req: &HeaderMap, etag: &str) -> bool {
    req.get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

/// Whether `Accept-Encoding` accepts gzip: listed (or `*`) without `q=0`.
fn accepts_gzip(req: &HeaderMap) -> bool {
    let mut gzip = None;
    let mut star = None;
    for item in req
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q_zero = parts.any(|p| {
            let p = p.trim();
            p.strip_prefix("q=")
                .or_else(|| p.strip_prefix("Q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        match coding.as_str() {
            "gzip" | "x-gzip" => gzip = Some(!q_zero),
            "*" => star = Some(!q_zero),
            _ => {}
        }
    }
    gzip.or(star).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use axum::body::Body;
    use axum::http::Request;
    use axum::routing::get;
    use axum::Router;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    fn app() -> Router {
        Router::new()
            .route("/", get(root))
            .route("/dashboard", get(page))
            .route("/assets/{file}", get(asset))
    }

    async fn call(path: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, Vec<u8>) {
        let mut req = Request::get(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = app()
            .oneshot(req.body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, headers, body.to_vec())
    }

    fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
        h.get(name)
            .unwrap_or_else(|| panic!("no {name}"))
            .to_str()
            .expect("ascii")
    }

    #[tokio::test]
    async fn the_page_is_served_at_both_paths_with_its_security_headers() {
        for path in ["/", "/dashboard"] {
            let (status, h, body) = call(path, &[]).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(header(&h, "content-type"), "text/html; charset=utf-8");
            assert_eq!(header(&h, "cache-control"), "no-cache");
            assert_eq!(header(&h, "x-content-type-options"), "nosniff");
            let csp = header(&h, "content-security-policy");
            assert!(csp.starts_with("default-src 'self'"), "{csp}");
            assert!(!csp.contains("unsafe-inline"), "{csp}");
            assert!(h.get("content-encoding").is_none());
            let html = String::from_utf8(body).expect("utf-8");
            assert!(html.contains("<html"), "{html}");
            assert!(!html.contains("<script>"), "no inline script: {html}");
            // Every asset the page names is served.
            for a in ASSETS {
                assert!(html.contains(&format!("/assets/{}", a.name)), "{}", a.name);
            }
        }
    }

    #[tokio::test]
    async fn assets_are_cached_for_long_and_gzip_is_served_when_accepted() {
        assert!(ASSETS.iter().any(|a| a.name.ends_with(".js")));
        assert!(ASSETS.iter().any(|a| a.name.ends_with(".css")));
        for a in ASSETS {
            let path = format!("/assets/{}", a.name);
            let (status, h, body) = call(&path, &[]).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(header(&h, "cache-control"), CACHE_HASHED);
            assert_eq!(header(&h, "content-type"), a.content_type);
            assert_eq!(body, a.body);
            let (status, h, gz) = call(&path, &[("accept-encoding", "br, gzip;q=0.8")]).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(header(&h, "content-encoding"), "gzip");
            assert_eq!(header(&h, "vary"), "Accept-Encoding");
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_end(&mut plain)
                .expect("gzip");
            assert_eq!(plain, a.body, "{}: the gzip form is the same file", a.name);
            let (_, h, _) = call(&path, &[("accept-encoding", "gzip;q=0, identity")]).await;
            assert!(h.get("content-encoding").is_none());
        }
    }

    #[tokio::test]
    async fn a_matching_etag_is_answered_304_and_an_unknown_asset_404() {
        let (status, _, body) = call("/", &[("if-none-match", INDEX.etag)]).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        assert!(body.is_empty());
        let (status, _, _) = call("/", &[("if-none-match", "\"other\"")]).await;
        assert_eq!(status, StatusCode::OK);
        let (status, h, body) = call("/assets/nope.js", &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(header(&h, "content-type"), "application/json");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(body["error"]["code"], "not_found");
        assert!(body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("nope.js"));
    }

    #[test]
    fn accept_encoding_is_read_with_its_weights() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_str(v).expect("ascii"),
            );
            accepts_gzip(&m)
        };
        assert!(h("gzip"));
        assert!(h("deflate, GZIP"));
        assert!(h("*"));
        assert!(!h("gzip;q=0"));
        assert!(!h("gzip; q=0.0, *"));
        assert!(!h("br"));
        assert!(!h("*;q=0"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
