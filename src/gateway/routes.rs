//! The routes, as one table: routing, the 405's `Allow`, the preflight's
//! `Allow` and `Access-Control-Allow-Methods`, and the interface page's
//! route table (checked by a test) all come from [`ROUTES`]. A path is
//! matched exactly as sent: nothing is decoded or normalized. A route's
//! path may have parameters, whole segments written `<name>` (an agent's
//! name) and `<id>` (a session id): each matches one non-empty segment,
//! taken as it is (what it must be is checked after authentication).

use http::Method;

/// What answers a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// The agent's answer, streamed.
    Invoke,
    /// The agents the caller may use.
    Agents,
    /// Ends a session (`StopRuntimeSession`).
    EndSession,
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
    route("/agents", "GET", Handler::Agents),
    route("/agents", "OPTIONS", Handler::Preflight),
    route("/agents/<name>/invocations", "POST", Handler::Invoke),
    route("/agents/<name>/invocations", "OPTIONS", Handler::Preflight),
    route("/sessions/<id>", "DELETE", Handler::EndSession),
    route("/sessions/<id>", "OPTIONS", Handler::Preflight),
    route(
        "/agents/<name>/sessions/<id>",
        "DELETE",
        Handler::EndSession,
    ),
    route(
        "/agents/<name>/sessions/<id>",
        "OPTIONS",
        Handler::Preflight,
    ),
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

/// The parameters of a matched path, as sent (not decoded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Params<'a> {
    /// `<name>`: the agent's name.
    pub agent: Option<&'a str>,
    /// `<id>`: the session id.
    pub session: Option<&'a str>,
}

/// `path`'s parameters if it matches `pattern`, segment by segment.
fn matches<'a>(pattern: &str, path: &'a str) -> Option<Params<'a>> {
    let mut params = Params::default();
    let mut segments = path.split('/');
    for expected in pattern.split('/') {
        let segment = segments.next()?;
        match expected {
            "<name>" if !segment.is_empty() => params.agent = Some(segment),
            "<id>" if !segment.is_empty() => params.session = Some(segment),
            literal if literal == segment => {}
            _ => return None,
        }
    }
    segments.next().is_none().then_some(params)
}

/// The handler of `method` on `path`, and the path's parameters.
pub fn resolve<'a>(
    method: &Method,
    path: &'a str,
    ui: bool,
) -> Result<(Handler, Params<'a>), Unrouted> {
    let mut on_path = served(ui).filter_map(|r| Some((r, matches(r.path, path)?)));
    let Some(first) = on_path.next() else {
        return Err(Unrouted::NotFound);
    };
    std::iter::once(first)
        .chain(on_path)
        .find(|(r, _)| r.method == method.as_str())
        .map(|(r, params)| (r.handler, params))
        .ok_or_else(|| Unrouted::MethodNotAllowed(allow(path, ui)))
}

/// The methods of `path`, as `Allow` lists them.
pub fn allow(path: &str, ui: bool) -> String {
    served(ui)
        .filter(|r| matches(r.path, path).is_some())
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
        let resolve = |method: &Method, path: &str, ui: bool| {
            super::resolve(method, path, ui).map(|(handler, _)| handler)
        };
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

    #[test]
    fn parameters_are_whole_non_empty_segments() {
        let post = Method::POST;
        let delete = Method::DELETE;
        assert_eq!(
            resolve(&post, "/agents/sales/invocations", false),
            Ok((
                Handler::Invoke,
                Params {
                    agent: Some("sales"),
                    session: None
                }
            ))
        );
        assert_eq!(
            resolve(&delete, "/agents/sales/sessions/a%2Fb", false),
            Ok((
                Handler::EndSession,
                Params {
                    agent: Some("sales"),
                    session: Some("a%2Fb")
                }
            ))
        );
        assert_eq!(
            resolve(&delete, "/sessions/x", false),
            Ok((
                Handler::EndSession,
                Params {
                    agent: None,
                    session: Some("x")
                }
            ))
        );
        for path in [
            "/agents//invocations",
            "/agents/sales/invocations/",
            "/agents/a/b/invocations",
            "/sessions/",
            "/sessions/a/b",
            "/agents/",
        ] {
            assert_eq!(
                resolve(&post, path, true).map(|(h, _)| h),
                Err(Unrouted::NotFound),
                "{path}"
            );
        }
        assert_eq!(
            resolve(&Method::GET, "/sessions/x", false),
            Err(Unrouted::MethodNotAllowed("DELETE, OPTIONS".into()))
        );
        assert_eq!(allow("/agents", false), "GET, OPTIONS");
    }
}
