//! Agents and their sessions, per request: which agent a request reaches
//! and whether its caller may use it, the agents a caller may use
//! (`GET /agents`), the session id sent to an agent (`SESSION_SCOPE`), and
//! ending a session (`DELETE /sessions/<id>`, a signed `StopRuntimeSession`).
//! Sans-IO, like the rest of the gateway: the driver fetches.

use std::time::SystemTime;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use percent_encoding::percent_decode_str;
use sha2::{Digest, Sha256};

use super::{is_valid_session_id, map_origin_status, Gateway, RequestContext, SESSION_HEADER};
use crate::auth::Reason;
use crate::config::{is_agent_name, Agent, CallerClaims, SessionScope};
use crate::error::{Code, GatewayError};
use crate::origin;

/// What the hash of a scoped session id starts with; names the derivation,
/// so that a new one would give other ids.
pub const SCOPE_DOMAIN: &[u8] = b"agent-edge session v1";

/// The session id sent to the agent for `client_id` of `subject` with the
/// agent named `agent`: the lowercase hex SHA-256 of [`SCOPE_DOMAIN`], then
/// each of the three as its length in bytes (4 bytes, big-endian) and its
/// UTF-8 bytes. The lengths make the encoding unambiguous: no two triples
/// give the same input, whatever characters they hold.
pub fn scoped_session_id(subject: &str, agent: &str, client_id: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(SCOPE_DOMAIN);
    for part in [subject, agent, client_id] {
        // Parts are bounded far below 4 GiB (a token is at most 16 KiB).
        hash.update(u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
        hash.update(part.as_bytes());
    }
    hex::encode(hash.finalize())
}

impl Gateway {
    /// The agent a request asks for (`None`: the default) if its caller,
    /// with `claims`, may use it: else 404 `unknown_agent` or 403
    /// `agent_forbidden`. Notes the agent's name for the log line.
    pub fn agent(
        &self,
        requested: Option<&str>,
        claims: &CallerClaims,
        ctx: &mut RequestContext,
    ) -> Result<&Agent, GatewayError> {
        let agents = &self.config.agents;
        let agent = match requested {
            // A segment that is no agent name is not echoed anywhere.
            Some(name) if is_agent_name(name) => agents.get(name),
            Some(_) => None,
            None => agents.default_agent(),
        };
        let Some(agent) = agent else {
            return Err(match requested {
                Some(_) => GatewayError::new(Code::UnknownAgent),
                None => GatewayError::new(Code::UnknownAgent).with_message(
                    "there is no default agent: use POST /agents/<name>/invocations (GET /agents lists them)",
                ),
            });
        };
        ctx.agent = Some(agent.name.clone());
        if !agent.admits(claims) {
            return Err(GatewayError::new(Code::AgentForbidden));
        }
        Ok(agent)
    }

    /// `GET /agents`: the agents a caller with `claims` may use, in
    /// configuration order, `{"agents":[{"name":..,"description":..,"default":true},..]}`.
    pub fn agents_answer(&self, claims: &CallerClaims) -> Response<Bytes> {
        let agents = &self.config.agents;
        let default = agents.default_agent().map(|a| a.name.as_str());
        let listed: Vec<serde_json::Value> = agents
            .iter()
            .filter(|agent| agent.admits(claims))
            .map(|agent| {
                let mut entry = serde_json::json!({ "name": agent.name });
                if let Some(description) = &agent.description {
                    entry["description"] = description.as_str().into();
                }
                if Some(agent.name.as_str()) == default {
                    entry["default"] = true.into();
                }
                entry
            })
            .collect();
        let body = serde_json::json!({ "agents": listed }).to_string();
        let mut response = Response::new(Bytes::from(body));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        // Per caller: no shared cache may keep it.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }

    /// The session id sent to `agent` for the client's `client_id`: scoped
    /// to the subject with `SESSION_SCOPE=subject`, else the client's own.
    /// Notes it for the log line when it differs.
    pub fn origin_session_id(
        &self,
        agent: &Agent,
        client_id: &str,
        ctx: &mut RequestContext,
    ) -> Result<String, GatewayError> {
        if self.config.session_scope == SessionScope::None {
            return Ok(client_id.to_owned());
        }
        // Authentication refuses a token without `sub` then; were one to
        // pass, its sessions must not fall back to unscoped ids.
        let subject = ctx
            .subject
            .as_deref()
            .ok_or_else(|| Reason::MissingSubject.to_error())?;
        let scoped = scoped_session_id(subject, &agent.name, client_id);
        ctx.origin_session_id = Some(scoped.clone());
        Ok(scoped)
    }

    /// `DELETE .../sessions/<id>`: the client's session id (the path
    /// segment, percent-decoded) and the signed `StopRuntimeSession` for
    /// the caller's session of `agent`. An agent that is no AgentCore
    /// runtime has no sessions to end: 404 `session_not_found`.
    pub fn stop_session_request(
        &self,
        agent: &Agent,
        segment: &str,
        bearer_token: Option<&str>,
        ctx: &mut RequestContext,
        now: SystemTime,
    ) -> Result<http::Request<Bytes>, GatewayError> {
        let client_id = percent_decode_str(segment)
            .decode_utf8()
            .ok()
            .filter(|id| is_valid_session_id(id))
            .ok_or_else(|| GatewayError::new(Code::InvalidSessionId))?
            .into_owned();
        let origin_id = self.origin_session_id(agent, &client_id, ctx)?;
        ctx.session_id = Some(client_id);
        origin::build_stop_request(&agent.origin, &origin_id, bearer_token, now)?.ok_or_else(|| {
            GatewayError::new(Code::SessionNotFound)
                .with_message("this agent keeps no sessions the gateway can end")
        })
    }

    /// The answer to a `StopRuntimeSession` the origin answered with
    /// `origin`: 204 for a success, 404 `session_not_found` for a 404 (the
    /// runtime does not know the session), else the mapped origin error.
    pub fn stop_session_answer(
        &self,
        origin: &http::response::Parts,
        ctx: &RequestContext,
    ) -> Result<Response<Bytes>, GatewayError> {
        if origin.status == StatusCode::NOT_FOUND {
            // The mapped error's detail names the origin's error type.
            let mut error = GatewayError::new(Code::SessionNotFound);
            error.detail = map_origin_status(origin).detail;
            return Err(error);
        }
        if !origin.status.is_success() {
            return Err(map_origin_status(origin));
        }
        let mut response = Response::new(Bytes::new());
        *response.status_mut() = StatusCode::NO_CONTENT;
        if let Some(id) = ctx
            .session_id
            .as_deref()
            .and_then(|id| HeaderValue::from_str(id).ok())
        {
            response
                .headers_mut()
                .insert(HeaderName::from_static(SESSION_HEADER), id);
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::time::Duration;

    const ARN: &str = "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/demo-AbC123";
    const SECOND_ARN: &str = "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/two-Xy99";
    const SESSION: &str = "session-0123456789abcdef0123456789abcdef";

    /// The default agent, `sales` (for the `sales` group) and `search` (a
    /// URL); sessions scoped to the subject.
    fn gateway() -> Gateway {
        let agents = format!(
            r#"{{"sales": {{"arn": "{SECOND_ARN}", "description": "Quotes",
                  "requireClaims": {{"cognito:groups": ["sales"], "tier": ["gold", "1"]}}}},
                "search": {{"url": "http://127.0.0.1:9/search"}}}}"#
        );
        let vars = [
            ("AGENT_RUNTIME_ARN", ARN),
            ("ORIGIN_URL", "http://127.0.0.1:9"),
            ("ORIGIN_AUTH", "sigv4"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("SIGV4_SERVICE", "bedrock-agentcore"),
            ("AWS_REGION", "us-east-1"),
            ("JWT_ISSUER", "https://issuer.example"),
            ("JWT_AUDIENCE", "app"),
            ("AGENTS", &agents),
        ];
        let config = Config::from_lookup(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
        .unwrap();
        Gateway::new(config)
    }

    fn ctx(subject: &str) -> RequestContext {
        let head = http::Request::new(()).into_parts().0;
        let mut ctx = RequestContext::new(&head, [3; 32], 0, 0);
        ctx.subject = Some(subject.to_owned());
        ctx
    }

    fn claims(pairs: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        pairs
            .iter()
            .map(|(name, values)| {
                (
                    (*name).to_owned(),
                    values.iter().map(|v| (*v).to_owned()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn agents_are_found_by_name_and_gated_by_claims() {
        let g = gateway();
        let mut c = ctx("alice");
        assert_eq!(g.agent(None, &[], &mut c).unwrap().name, "default");
        assert_eq!(c.agent.as_deref(), Some("default"));
        assert_eq!(g.agent(Some("search"), &[], &mut c).unwrap().name, "search");

        for unknown in ["nobody", "Sales", "sales%20", "../sales"] {
            let mut c = ctx("alice");
            let err = g.agent(Some(unknown), &[], &mut c).unwrap_err();
            assert_eq!((err.status.as_u16(), err.code), (404, Code::UnknownAgent));
            assert_eq!(c.agent, None, "an unknown name is not logged");
        }

        // Every claim of requireClaims, each with one of its values; a list
        // claim matches on any member.
        let member = claims(&[("cognito:groups", &["staff", "sales"]), ("tier", &["1"])]);
        assert_eq!(
            g.agent(Some("sales"), &member, &mut c).unwrap().name,
            "sales"
        );
        for refused in [
            claims(&[]),
            claims(&[("cognito:groups", &["sales"])]),
            claims(&[("cognito:groups", &["staff"]), ("tier", &["gold"])]),
            claims(&[("groups", &["sales"]), ("tier", &["gold"])]),
        ] {
            let mut c = ctx("alice");
            let err = g.agent(Some("sales"), &refused, &mut c).unwrap_err();
            assert_eq!((err.status.as_u16(), err.code), (403, Code::AgentForbidden));
            assert_eq!(c.agent.as_deref(), Some("sales"), "a known agent is logged");
            assert!(!err.message.contains("arn"), "{}", err.message);
        }
    }

    #[test]
    fn the_list_is_the_callers() {
        let g = gateway();
        let listed = |claims: &CallerClaims| -> serde_json::Value {
            let answer = g.agents_answer(claims);
            assert_eq!(answer.headers()[header::CACHE_CONTROL], "no-store");
            serde_json::from_slice(answer.body()).unwrap()
        };
        assert_eq!(
            listed(&[]),
            serde_json::json!({"agents": [{"name": "default", "default": true}, {"name": "search"}]})
        );
        let member = claims(&[("cognito:groups", &["sales"]), ("tier", &["gold"])]);
        assert_eq!(
            listed(&member)["agents"][1],
            serde_json::json!({"name": "sales", "description": "Quotes"})
        );
        assert!(!listed(&member).to_string().contains("arn:"));
    }

    #[test]
    fn the_agent_gets_the_scoped_session_and_the_client_keeps_its_own() {
        let g = gateway();
        let agent = g.config().agents.get("search").unwrap();
        let mut c = ctx("alice");
        let id = g.origin_session_id(agent, SESSION, &mut c).unwrap();
        assert_eq!(id, scoped_session_id("alice", "search", SESSION));
        assert_eq!(c.origin_session_id.as_deref(), Some(id.as_str()));
        let bobs = g
            .origin_session_id(agent, SESSION, &mut ctx("bob"))
            .unwrap();
        assert_ne!(id, bobs);
        // No subject, no session of anybody's: refused, never unscoped.
        let mut nobody = ctx("x");
        nobody.subject = None;
        let err = g
            .origin_session_id(agent, SESSION, &mut nobody)
            .unwrap_err();
        assert_eq!(err.code, Code::InvalidToken);
    }

    #[test]
    fn ending_a_session_stops_the_scoped_one() {
        let g = gateway();
        let agent = g.config().agents.default_agent().unwrap();
        let mut c = ctx("alice");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_760_000_000);
        let request = g
            .stop_session_request(agent, SESSION, None, &mut c, now)
            .unwrap();
        assert_eq!(request.method(), http::Method::POST);
        assert_eq!(
            request.uri().to_string(),
            "http://127.0.0.1:9/runtimes/arn%3Aaws%3Abedrock-agentcore%3Aus-east-1%3A123456789012%3Aruntime%2Fdemo-AbC123/stopruntimesession?qualifier=DEFAULT"
        );
        let scoped = scoped_session_id("alice", "default", SESSION);
        assert_eq!(request.headers()[SESSION_HEADER], scoped.as_str());
        assert_eq!(request.body().as_ref(), b"{}");
        assert!(request.headers()[header::AUTHORIZATION]
            .to_str()
            .unwrap()
            .contains("/us-east-1/bedrock-agentcore/aws4_request"));
        assert_eq!(c.session_id.as_deref(), Some(SESSION));

        // The path segment is percent-decoded, then checked.
        let encoded = "session%2F0123456789abcdef0123456789abcdef";
        g.stop_session_request(agent, encoded, None, &mut c, now)
            .unwrap();
        assert_eq!(
            c.session_id.as_deref(),
            Some("session/0123456789abcdef0123456789abcdef")
        );
        for bad in [
            "short",
            "%FF%FE0123456789abcdef0123456789abcdef",
            "a%20b0123456789abcdef0123456789abcdef",
        ] {
            let err = g
                .stop_session_request(agent, bad, None, &mut ctx("alice"), now)
                .unwrap_err();
            assert_eq!(err.code, Code::InvalidSessionId, "{bad}");
        }
        // A URL origin has no sessions to end.
        let search = g.config().agents.get("search").unwrap();
        let err = g
            .stop_session_request(search, SESSION, None, &mut ctx("alice"), now)
            .unwrap_err();
        assert_eq!(
            (err.status.as_u16(), err.code),
            (404, Code::SessionNotFound)
        );
    }

    #[test]
    fn the_origin_s_answer_to_a_stop() {
        let g = gateway();
        let mut c = ctx("alice");
        c.session_id = Some(SESSION.to_owned());
        let origin = |status: u16, error_type: Option<&str>| {
            let mut builder = http::Response::builder().status(status);
            if let Some(t) = error_type {
                builder = builder.header("x-amzn-errortype", t);
            }
            builder.body(()).unwrap().into_parts().0
        };
        let ok = g.stop_session_answer(&origin(200, None), &c).unwrap();
        assert_eq!(ok.status(), StatusCode::NO_CONTENT);
        assert_eq!(ok.headers()[SESSION_HEADER], SESSION);
        assert!(ok.body().is_empty());
        let gone = g
            .stop_session_answer(&origin(404, Some("ResourceNotFoundException:x")), &c)
            .unwrap_err();
        assert_eq!(
            (gone.status.as_u16(), gone.code),
            (404, Code::SessionNotFound)
        );
        assert_eq!(
            gone.detail.as_deref(),
            Some("origin status 404 (ResourceNotFoundException)")
        );
        let denied = g
            .stop_session_answer(&origin(403, Some("AccessDeniedException")), &c)
            .unwrap_err();
        assert_eq!(denied.code, Code::OriginAuthFailed);
        let busy = g.stop_session_answer(&origin(429, None), &c).unwrap_err();
        assert_eq!(busy.code, Code::OriginThrottled);
    }

    #[test]
    fn the_scoped_id_is_the_documented_hash() {
        // By hand: the domain, then each part's length (4 bytes,
        // big-endian) and bytes.
        let mut input = SCOPE_DOMAIN.to_vec();
        for part in [
            "alice",
            "support",
            "session-0123456789abcdef0123456789abcdef",
        ] {
            input.extend_from_slice(&(part.len() as u32).to_be_bytes());
            input.extend_from_slice(part.as_bytes());
        }
        let expected = hex::encode(Sha256::digest(&input));
        let id = scoped_session_id(
            "alice",
            "support",
            "session-0123456789abcdef0123456789abcdef",
        );
        assert_eq!(id, expected);
        assert_eq!(id.len(), 64);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }

    #[test]
    fn every_part_counts_and_none_can_stand_for_another() {
        let id = "session-0123456789abcdef0123456789abcdef";
        let base = scoped_session_id("alice", "support", id);
        assert_eq!(base, scoped_session_id("alice", "support", id), "stable");
        assert_ne!(base, scoped_session_id("bob", "support", id));
        assert_ne!(base, scoped_session_id("alice", "sales", id));
        assert_ne!(
            base,
            scoped_session_id("alice", "support", &format!("{id}x"))
        );
        // Moving bytes from one part to the next gives another id.
        assert_ne!(
            scoped_session_id("ab", "c", id),
            scoped_session_id("a", "bc", id)
        );
        assert_ne!(
            scoped_session_id("a\u{0}", "b", id),
            scoped_session_id("a", "\u{0}b", id)
        );
    }
}
