//! The routes, as one table: routing, the 405's `Allow`, the preflight's
//! `Allow` and `Access-Control-Allow-Methods`, and the interface page's
//! route table (checked by a test) all come from [`ROUTES`]. A path is
//! matched exactly as sent: nothing is decoded or normalized.

use http::Method;

/// What answers a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// The agent's answer, streamed.
    Invoke,
    /// `{"status":"Healthy"}`.
    Ping,
    /// The caller's budget and request counts.
    Usage,
    /// The chat page and its files.
    Page,
    /// The CORS preflight.
    Preflight,
}

/// One method on one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub path: &'static str,
    pub method: &'static str,
    pub handler: Handler,
    /// Served only with `UI=on`.
    pub needs_ui: bool,
}

const fn route(path: &'static str, method: &'static str, handler: Handler) -> Route {
    Route {
        path,
        method,
        handler,
        needs_ui: false,
    }
}

const fn page(path: &'static str, method: &'static str) -> Route {
    Route {
        path,
        method,
        handler: Handler::Page,
        needs_ui: true,
    }
}

/// Every route; within a path, methods in the order `Allow` lists them.
pub const ROUTES: &[Route] = &[
    route("/invocations", "POST", Handler::Invoke),
    route("/invocations", "OPTIONS", Handler::Preflight),
    page("/", "GET"),
    page("/", "HEAD"),
    route("/", "POST", Handler::Invoke),
    route("/", "OPTIONS", Handler::Preflight),
    route("/ping", "GET", Handler::Ping),
    route("/ping", "HEAD", Handler::Ping),
    route("/ping", "OPTIONS", Handler::Preflight),
    route("/usage", "GET", Handler::Usage),
    route("/usage", "OPTIONS", Handler::Preflight),
    page("/app.js", "GET"),
    page("/app.js", "HEAD"),
    page("/app.css", "GET"),
    page("/app.css", "HEAD"),
];

/// Why a request has no handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unrouted {
    /// No such path (or only routes that need `UI=on`).
    NotFound,
    /// The path exists with these methods (`Allow`).
    MethodNotAllowed(String),
}

/// The routes served with `ui` on or off.
pub fn served(ui: bool) -> impl Iterator<Item = &'static Route> {
    ROUTES.iter().filter(move |r| ui || !r.needs_ui)
}

/// The handler of `method` on `path`.
pub fn resolve(method: &Method, path: &str, ui: bool) -> Result<Handler, Unrouted> {
    let on_path = || served(ui).filter(move |r| r.path == path);
    match on_path().find(|r| r.method == method.as_str()) {
        Some(route) => Ok(route.handler),
        None if on_path().next().is_none() => Err(Unrouted::NotFound),
        None => Err(Unrouted::MethodNotAllowed(allow(path, ui))),
    }
}

/// The methods of `path`, as `Allow` lists them.
pub fn allow(path: &str, ui: bool) -> String {
    served(ui)
        .filter(|r| r.path == path)
        .map(|r| r.method)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_follows_the_table() {
        let get = Method::GET;
        assert_eq!(resolve(&get, "/", true), Ok(Handler::Page));
        assert_eq!(
            resolve(&get, "/", false),
            Err(Unrouted::MethodNotAllowed("POST, OPTIONS".into()))
        );
        assert_eq!(resolve(&get, "/app.js", false), Err(Unrouted::NotFound));
        assert_eq!(
            resolve(&Method::POST, "/invocations", false),
            Ok(Handler::Invoke)
        );
        assert_eq!(
            resolve(&Method::PUT, "/ping", true),
            Err(Unrouted::MethodNotAllowed("GET, HEAD, OPTIONS".into()))
        );
        assert_eq!(allow("/", true), "GET, HEAD, POST, OPTIONS");
        for path in [
            "/invocations/",
            "/x/../invocations",
            "/%69nvocations",
            "//ping",
        ] {
            assert_eq!(
                resolve(&Method::POST, path, true),
                Err(Unrouted::NotFound),
                "{path}"
            );
        }
    }
}
