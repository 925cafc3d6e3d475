//! The web dashboard at `/ui`: a few static files compiled into the binary (plain ES
//! modules and one style sheet; no build step, nothing fetched from elsewhere). The page
//! holds no data of its own: it calls the API with the key or login token it was given,
//! so every gateway replica serves the same dashboard.
//!
//! The files need no key (they hold no secrets), like `/docs`. Each answer carries a
//! content security policy that lets the page reach its own origin only.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::AppState;

/// Every file of the dashboard: its path under `/ui/`, its media type and its bytes.
/// `index.html` is also what `/ui` and `/ui/` answer.
const FILES: &[(&str, &str, &[u8])] = &[
    ("index.html", HTML, include_bytes!("../ui/index.html")),
    ("app.css", CSS, include_bytes!("../ui/app.css")),
    ("js/main.js", JS, include_bytes!("../ui/js/main.js")),
    ("js/api.js", JS, include_bytes!("../ui/js/api.js")),
    ("js/events.js", JS, include_bytes!("../ui/js/events.js")),
    ("js/dom.js", JS, include_bytes!("../ui/js/dom.js")),
    ("js/qr.js", JS, include_bytes!("../ui/js/qr.js")),
    (
        "js/pages/devices.js",
        JS,
        include_bytes!("../ui/js/pages/devices.js"),
    ),
    (
        "js/pages/device.js",
        JS,
        include_bytes!("../ui/js/pages/device.js"),
    ),
    (
        "js/pages/jobs.js",
        JS,
        include_bytes!("../ui/js/pages/jobs.js"),
    ),
    (
        "js/pages/webhooks.js",
        JS,
        include_bytes!("../ui/js/pages/webhooks.js"),
    ),
    (
        "js/pages/admin.js",
        JS,
        include_bytes!("../ui/js/pages/admin.js"),
    ),
    (
        "js/pages/cluster.js",
        JS,
        include_bytes!("../ui/js/pages/cluster.js"),
    ),
];

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// Only this origin, for everything: scripts, styles, API calls and SSE. Images may
/// also be `blob:` URLs (a QR code fetched with the key, then shown).
const POLICY: &str = "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; \
base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `/ui`, `/ui/` and `/ui/{file}`.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(|| async { file("index.html") }))
        .route(
            "/ui/{*path}",
            get(|Path(path): Path<String>| async move { file(&path) }),
        )
}

/// The file at `path`, or 404.
fn file(path: &str) -> Response {
    let Some((_, media_type, bytes)) = FILES.iter().find(|(name, _, _)| *name == path) else {
        return (StatusCode::NOT_FOUND, "no such file in the dashboard").into_response();
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // The files change with the binary only; a revalidation costs little and a new
    // version is never mixed with an old one.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    (headers, *bytes).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_a_page_imports_is_served() {
        // A module imported by path but missing from FILES would 404 in the browser.
        for (name, _, bytes) in FILES {
            let text = std::str::from_utf8(bytes).unwrap();
            let imports = text
                .split("from '")
                .skip(1)
                .chain(text.split("import('").skip(1));
            for import in imports {
                let target = import.split('\'').next().unwrap();
                let base = std::path::Path::new(name).parent().unwrap();
                let joined = normalize(&base.join(target));
                assert!(
                    FILES.iter().any(|(n, _, _)| *n == joined),
                    "{name} imports {target} ({joined}), which is not served"
                );
            }
        }
    }

    fn normalize(path: &std::path::Path) -> String {
        let mut parts: Vec<&str> = Vec::new();
        for part in path.iter().map(|p| p.to_str().unwrap()) {
            match part {
                "." => {}
                ".." => {
                    parts.pop();
                }
                other => parts.push(other),
            }
        }
        parts.join("/")
    }

    #[test]
    fn unknown_files_are_not_found() {
        assert_eq!(file("../Cargo.toml").status(), StatusCode::NOT_FOUND);
        assert_eq!(file("index.html").status(), StatusCode::OK);
    }
}
