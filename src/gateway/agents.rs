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
    /// to the subject with `SESSION_SCOPE=subject` (the subject is then
    /// always known: authentication refuses a token without `sub`), else
    /// the client's own. Notes it for the log line when it differs.
    pub fn origin_session_id(
        &self,
        agent: &Agent,
        client_id: &str,
        ctx: &mut RequestContext,
    ) -> String {
        match (self.config.session_scope, ctx.subject.as_deref()) {
            (SessionScope::Subject, Some(subject)) => {
                let scoped = scoped_session_id(subject, &agent.name, client_id);
                ctx.origin_session_id = Some(scoped.clone());
                scoped
            }
            _ => client_id.to_owned(),
        }
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
        let origin_id = self.origin_session_id(agent, &client_id, ctx);
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
