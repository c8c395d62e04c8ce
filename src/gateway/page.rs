//! The chat page at `GET /` and its script and style (`/app.js`,
//! `/app.css`): plain files embedded in the binary and the Worker bundle,
//! served alike by every target, or not at all with `UI=off`.
//!
//! The HTML is filled in once per deployment with the sign-in mode and,
//! under `agent-edge dev`, the development issuer's token URL. Its
//! Content-Security-Policy allows scripts, styles and requests to this
//! origin only (plus that issuer), so no inline script ever runs.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::Response;

use crate::config::{AuthConfig, Config};

const INDEX_HTML: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const APP_CSS: &str = include_str!("page/app.css");

/// The page, ready to serve.
#[derive(Debug)]
pub struct Page {
    html: Bytes,
    csp: HeaderValue,
}

impl Page {
    /// `None` when the configuration turns the page off.
    pub fn new(config: &Config) -> Option<Page> {
        if !config.ui {
            return None;
        }
        let auth = match config.auth {
            AuthConfig::Jwt(_) => "jwt",
            AuthConfig::None => "none",
        };
        let dev_token_url = config.dev_token_url.as_deref().unwrap_or("");
        let html = INDEX_HTML
            .replace("{{AUTH}}", auth)
            .replace("{{DEV_TOKEN_URL}}", &escape_attribute(dev_token_url));
        let connect = match config.dev_token_url.as_deref().and_then(url_origin) {
            Some(issuer) => format!("'self' {issuer}"),
            None => "'self'".to_owned(),
        };
        let csp = format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src {connect}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        );
        Some(Page {
            html: Bytes::from(html),
            csp: HeaderValue::from_str(&csp).ok()?,
        })
    }

    /// The answer for a `GET` or `HEAD` of `path`, if it is one of the page's.
    pub fn answer(&self, path: &str) -> Option<Response<Bytes>> {
        let (body, content_type) = match path {
            "/" => (self.html.clone(), "text/html; charset=utf-8"),
            "/app.js" => (
                Bytes::from_static(APP_JS.as_bytes()),
                "text/javascript; charset=utf-8",
            ),
            "/app.css" => (
                Bytes::from_static(APP_CSS.as_bytes()),
                "text/css; charset=utf-8",
            ),
            _ => return None,
        };
        let mut response = Response::new(body);
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(header::CONTENT_SECURITY_POLICY, self.csp.clone());
        // Revalidated on each load, so a new deployment's page shows at once.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        Some(response)
    }
}

/// `scheme://host[:port]` of an absolute URL.
fn url_origin(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    Some(format!("{}://{}", uri.scheme_str()?, uri.authority()?))
}

fn escape_attribute(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
