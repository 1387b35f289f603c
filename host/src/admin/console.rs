//! The operator console: a page served by the admin listener from files
//! embedded in the binary (`host/console/`), so it needs no build step, no
//! network and nothing on disk. The page and its assets need no token; every
//! piece of data it shows comes from the authenticated admin API, called
//! with the token the operator types in.
//!
//! Every asset goes out under a Content-Security-Policy that allows scripts,
//! styles and connections from this origin only (no inline script, no
//! `eval`, no third party), and may not be framed.

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Full};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// Where the console lives on the admin listener.
pub const CONSOLE_PATH: &str = "/console/";

/// The policy every console asset is served under.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The embedded files: name under [`CONSOLE_PATH`], media type, contents.
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("", "text/html; charset=utf-8", include_bytes!("../../console/index.html")),
    ("console.js", "text/javascript; charset=utf-8", include_bytes!("../../console/console.js")),
    ("charts.js", "text/javascript; charset=utf-8", include_bytes!("../../console/charts.js")),
    ("keys.js", "text/javascript; charset=utf-8", include_bytes!("../../console/keys.js")),
    ("console.css", "text/css; charset=utf-8", include_bytes!("../../console/console.css")),
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/vendor/uPlot.iife.min.js"),
    ),
    ("uPlot.min.css", "text/css; charset=utf-8", include_bytes!("../../console/vendor/uPlot.min.css")),
    ("uPlot.LICENSE.txt", "text/plain; charset=utf-8", include_bytes!("../../console/vendor/uPlot.LICENSE")),
];

/// The console's answer for `path` (a GET), or `None` when `path` is not
/// the console's: `/` and `/console` lead to the page, `/console/{name}`
/// is an asset (404 when there is none by that name).
pub fn asset(path: &str) -> Option<hyper::Response<HyperOutgoingBody>> {
    if path == "/" || path == "/console" {
        let mut response = plain(StatusCode::PERMANENT_REDIRECT, "text/plain; charset=utf-8", b"");
        response.headers_mut().insert(header::LOCATION, HeaderValue::from_static(CONSOLE_PATH));
        return Some(response);
    }
    let name = path.strip_prefix(CONSOLE_PATH)?;
    Some(match ASSETS.iter().find(|(asset, ..)| *asset == name) {
        Some((_, media_type, contents)) => plain(StatusCode::OK, media_type, contents),
        None => plain(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", b"no such console asset"),
    })
}

fn plain(
    status: StatusCode,
    media_type: &'static str,
    contents: &'static [u8],
) -> hyper::Response<HyperOutgoingBody> {
    let body = Full::new(Bytes::from_static(contents)).map_err(|never| match never {}).boxed_unsync();
    let mut response = hyper::Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // The assets change with the binary; revalidating costs one loopback call.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_assets_are_served_under_the_policy() {
        for (name, ..) in ASSETS {
            let response = asset(&format!("{CONSOLE_PATH}{name}")).expect("a console path");
            assert_eq!(response.status(), StatusCode::OK, "{name}");
            let policy = response.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
            assert!(policy.contains("script-src 'self';"), "{policy}");
        }
        assert_eq!(asset("/console/../Cargo.toml").unwrap().status(), StatusCode::NOT_FOUND);
        assert_eq!(asset("/").unwrap().headers()[header::LOCATION], CONSOLE_PATH);
        assert!(asset("/components").is_none(), "the API is not the console's");
    }

    #[test]
    fn the_page_loads_no_script_or_style_from_elsewhere_and_has_no_inline_script() {
        let page = std::str::from_utf8(ASSETS[0].2).unwrap();
        for source in page.split("src=\"").skip(1).chain(page.split("href=\"").skip(1)) {
            // `data:,` is the empty icon that spares a request for /favicon.ico.
            let own = source.starts_with(CONSOLE_PATH) || source.starts_with("data:,\"");
            assert!(own, "every asset is the console's own: {source:.60}");
        }
        for tag in page.split('<').skip(1) {
            let tag = tag.split('>').next().unwrap_or_default();
            assert!(tag != "script" && !tag.contains(" on"), "no inline script or handler: <{tag}>");
        }
        for (name, media_type, contents) in ASSETS {
            if media_type.starts_with("text/javascript") && !name.starts_with("uPlot") {
                let script = std::str::from_utf8(contents).unwrap();
                assert!(
                    !script.contains("innerHTML"),
                    "{name}: what the API says is set as text, never parsed"
                );
            }
        }
    }
}
