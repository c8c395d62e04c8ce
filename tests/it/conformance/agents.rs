//! Agents by name, sessions that belong to their subject, and ending a
//! session (issue 17, items 1 to 3; `docs/interface.md`, "Agents and
//! sessions"), on every target, against the demo agent's two runtimes and
//! its per-session memory (`/remember`, `/recall`).
//!
//! The shared stack's agents: `default` (the demo's first runtime),
//! [`SALES`] (its second) and [`SUPPORT`] (the first again, for the Cognito
//! group [`SUPPORT_GROUP`]). What a runtime received is read from the demo
//! itself: which sessions it has open, by runtime, and the requests it got.

use std::sync::Arc;

use agent_edge::demo::origin::{DEMO_RUNTIME_ARN, DEMO_SECOND_RUNTIME_ARN};
use agent_edge::origin::encode_path_segment;
use serde_json::{json, Value};

use super::client::{client, post, send, session_id, split_transformed, unique, SESSION_HEADER};
use super::every_target;
use super::stack::{
    spawn_native, stack, vars_with, Target, CORS_ORIGIN, SALES, SALES_DESCRIPTION, SUPPORT,
    SUPPORT_GROUP,
};
use super::tokens::{origin_session, token, token_in_groups};

/// The invocation path of `agent` (`None`: the default's).
fn invocations(agent: Option<&str>) -> String {
    agent.map_or("/invocations".to_owned(), |name| {
        format!("/agents/{name}/invocations")
    })
}

/// Sends `prompt` in `session` to `agent` (`None`: the default) in
/// transformed mode; the answer's text, after checking that the client saw
/// its own session id in the header and the trailer.
async fn say(t: &Target, token: &str, agent: Option<&str>, session: &str, prompt: &str) -> String {
    let body = json!({"prompt": prompt, "response": "transformed", "runtimeSessionId": session});
    let reply = send(post(t, &invocations(agent), Some(token), body.to_string())).await;
    assert_eq!(reply.status, 200, "{prompt} to {agent:?}: {}", reply.text());
    assert_eq!(
        reply.header(SESSION_HEADER),
        Some(session),
        "the client's id"
    );
    let parts = split_transformed(&reply.text());
    let last: Value = serde_json::from_str(parts.trailer.last().expect("a trailer")).unwrap();
    assert_eq!(last["runtimeSessionId"], session, "the trailer's id");
    parts.text
}

/// `DELETE <path>` with a bearer token.
async fn delete(t: &Target, token: &str, path: &str) -> super::client::Reply {
    send(client().delete(t.url(path)).bearer_auth(token)).await
}

async fn two_agents_reach_two_runtimes(t: Arc<Target>) {
    let token = token(&unique("agents"));
    let session = session_id("agents");
    assert_eq!(
        say(&t, &token, Some(SALES), &session, "/remember sales notes").await,
        "I will remember: sales notes."
    );
    say(&t, &token, None, &session, "/recall").await;
    let demo = &stack().demo;
    let (to_sales, to_default) = (
        origin_session(&token, SALES, &session),
        origin_session(&token, "default", &session),
    );
    assert_ne!(to_sales, to_default, "a session per agent");
    assert!(demo.session_open(DEMO_SECOND_RUNTIME_ARN, &to_sales));
    assert!(!demo.session_open(DEMO_RUNTIME_ARN, &to_sales));
    assert!(demo.session_open(DEMO_RUNTIME_ARN, &to_default));
    // `/invocations` and `/agents/default/invocations` are the same agent.
    assert_eq!(
        say(&t, &token, Some("default"), &session, "/recall").await,
        "I remember nothing."
    );
    assert_eq!(
        say(&t, &token, Some(SALES), &session, "/recall").await,
        "I remember: sales notes."
    );

    // The log names the agent, never its ARN.
    let line = t
        .log_line("agent sales", |line| {
            line["agent"] == SALES && line["session_id"] == session.as_str()
        })
        .await;
    assert_eq!(line["origin_session_id"], to_sales.as_str(), "{line}");
    assert_eq!(line["path"], "/agents/sales/invocations");
}

async fn claims_gate_an_agent_before_any_origin_request(t: Arc<Target>) {
    let outsider = token(&unique("outsider"));
    let staff = token_in_groups(&unique("staff"), &["staff"]);
    let member = token_in_groups(&unique("member"), &["staff", SUPPORT_GROUP]);
    let session = session_id("gated");
    for refused in [&outsider, &staff] {
        let body = json!({"prompt": "/recall", "runtimeSessionId": session});
        let reply = send(post(
            &t,
            &invocations(Some(SUPPORT)),
            Some(refused),
            body.to_string(),
        ))
        .await;
        reply.assert_error(403, "agent_forbidden");
        assert!(
            !stack()
                .tap
                .carried(&origin_session(refused, SUPPORT, &session)),
            "the origin was called"
        );
    }
    assert_eq!(
        say(&t, &member, Some(SUPPORT), &session, "/recall").await,
        "I remember nothing."
    );
    assert!(stack()
        .tap
        .carried(&origin_session(&member, SUPPORT, &session)));
    let line = t
        .log_line("a 403 agent_forbidden", |line| {
            line["error"] == "agent_forbidden" && line["sub"] == super::tokens::subject_of(&staff)
        })
        .await;
    assert_eq!(line["agent"], SUPPORT, "{line}");
    assert_eq!(line["status"], 403);
}

async fn an_unknown_agent_is_404_after_authentication(t: Arc<Target>) {
    let token = token(&unique("unknown"));
    for name in ["nobody", "Sales", "sales%20", "a.b"] {
        let reply = send(post(&t, &invocations(Some(name)), Some(&token), "{}")).await;
        reply.assert_error(404, "unknown_agent");
        let reply = delete(
            &t,
            &token,
            &format!("/agents/{name}/sessions/{}", session_id("x")),
        )
        .await;
        reply.assert_error(404, "unknown_agent");
    }
    // Who asks is known first: no agent's existence is told to strangers.
    let reply = send(post(&t, &invocations(Some("nobody")), None, "{}")).await;
    reply.assert_error(401, "missing_token");
    let reply = send(client().get(t.url("/agents"))).await;
    reply.assert_error(401, "missing_token");
}

async fn the_agents_list_is_the_callers(t: Arc<Target>) {
    let list = |token: String| {
        let t = t.clone();
        async move {
            let reply = send(client().get(t.url("/agents")).bearer_auth(token)).await;
            assert_eq!(reply.status, 200, "{}", reply.text());
            assert_eq!(reply.header("content-type"), Some("application/json"));
            assert_eq!(reply.header("cache-control"), Some("no-store"));
            assert!(!reply.text().contains("arn:"), "{}", reply.text());
            reply.json()
        }
    };
    let everyone = json!({"agents": [
        {"name": "default", "default": true},
        {"name": SALES, "description": SALES_DESCRIPTION},
    ]});
    assert_eq!(list(token(&unique("list"))).await, everyone);
    let mut members = everyone.clone();
    members["agents"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": SUPPORT}));
    assert_eq!(
        list(token_in_groups(&unique("list"), &[SUPPORT_GROUP])).await,
        members
    );
}

async fn sessions_belong_to_their_subject(t: Arc<Target>) {
    let alice = token(&unique("alice"));
    let bob = token(&unique("bob"));
    // The same client id, on purpose: bob learned alice's.
    let session = session_id("shared");
    say(&t, &alice, None, &session, "/remember alice's secret").await;
    assert_eq!(
        say(&t, &bob, None, &session, "/recall").await,
        "I remember nothing.",
        "another subject reaches another session"
    );
    assert_eq!(
        say(&t, &alice, None, &session, "/recall").await,
        "I remember: alice's secret.",
        "the same subject reaches the same session again"
    );
    let (to_alice, to_bob) = (
        origin_session(&alice, "default", &session),
        origin_session(&bob, "default", &session),
    );
    assert_eq!(to_alice.len(), 64);
    let tap = &stack().tap;
    assert!(tap.carried(&to_alice) && tap.carried(&to_bob));
    assert!(
        !tap.carried(&session),
        "the client's id never reaches the agent"
    );
}

async fn delete_ends_the_callers_session_only(t: Arc<Target>) {
    let alice = token(&unique("alice"));
    let bob = token(&unique("bob"));
    let session = session_id("ending");
    let demo = &stack().demo;
    for agent in [None, Some(SALES)] {
        let (runtime, name) = match agent {
            None => (DEMO_RUNTIME_ARN, "default"),
            Some(name) => (DEMO_SECOND_RUNTIME_ARN, name),
        };
        let path = match agent {
            None => format!("/sessions/{session}"),
            Some(name) => format!("/agents/{name}/sessions/{session}"),
        };
        say(&t, &alice, agent, &session, "/remember to end this").await;
        let scoped = origin_session(&alice, name, &session);
        assert!(demo.session_open(runtime, &scoped));

        // Bob's DELETE is for bob's session of that id: unknown.
        delete(&t, &bob, &path)
            .await
            .assert_error(404, "session_not_found");
        assert!(
            demo.session_open(runtime, &scoped),
            "bob ended alice's session"
        );

        let ended = delete(&t, &alice, &path).await;
        assert_eq!(ended.status, 204, "{}", ended.text());
        assert!(ended.body.is_empty());
        assert_eq!(ended.header(SESSION_HEADER), Some(session.as_str()));
        assert!(
            !demo.session_open(runtime, &scoped),
            "the session was ended"
        );
        // The demo saw a StopRuntimeSession (it checks every signature) for
        // alice's scoped id, at the runtime's own path; bob's was for his.
        let stops = |id: &str| -> Vec<agent_edge::demo::origin::RecordedRequest> {
            demo.requests()
                .into_iter()
                .filter(|r| r.headers[SESSION_HEADER] == id)
                .filter(|r| r.uri.path().ends_with("/stopruntimesession"))
                .collect()
        };
        assert_eq!(stops(&origin_session(&bob, name, &session)).len(), 1);
        let alices = stops(&scoped);
        assert_eq!(alices.len(), 1);
        let stop = &alices[0];
        assert_eq!(
            stop.uri.to_string(),
            format!(
                "/runtimes/{}/stopruntimesession?qualifier=DEFAULT",
                encode_path_segment(runtime)
            )
        );
        assert!(stop.headers["authorization"]
            .to_str()
            .unwrap()
            .starts_with("AWS4-HMAC-SHA256 "));

        delete(&t, &alice, &path)
            .await
            .assert_error(404, "session_not_found");
        assert_eq!(
            say(&t, &alice, agent, &session, "/recall").await,
            "I remember nothing.",
            "a new session after the end"
        );
        let line = t
            .log_line("a 204 DELETE", |line| {
                line["method"] == "DELETE"
                    && line["status"] == 204
                    && line["session_id"] == session.as_str()
                    && line["agent"] == name
            })
            .await;
        assert_eq!(line["origin_session_id"], scoped.as_str(), "{line}");
    }
}

async fn delete_checks_the_session_id(t: Arc<Target>) {
    let token = token(&unique("bad-id"));
    for bad in ["short", "%FF%FE-0123456789abcdef0123456789abcdef"] {
        delete(&t, &token, &format!("/sessions/{bad}"))
            .await
            .assert_error(400, "invalid_session_id");
    }
    // A percent-encoded id is the id decoded, as the client sent it.
    let session = "conformance/slash-0123456789abcdef0123456789abcdef";
    say(&t, &token, None, session, "/recall").await;
    let reply = delete(
        &t,
        &token,
        &format!("/sessions/{}", encode_path_segment(session)),
    )
    .await;
    assert_eq!(reply.status, 204, "{}", reply.text());
    delete(&t, &token, "/sessions/x").await;
    let reply = send(client().get(t.url(&format!("/sessions/{}", session_id("get"))))).await;
    reply.assert_error(405, "method_not_allowed");
    assert_eq!(reply.header("allow"), Some("DELETE, OPTIONS"));
}

async fn the_preflight_allows_delete(t: Arc<Target>) {
    for (path, methods) in [
        (
            "/sessions/some-session-0123456789abcdef0123456789",
            "DELETE, OPTIONS",
        ),
        (
            "/agents/sales/sessions/some-session-0123456789abcdef01234",
            "DELETE, OPTIONS",
        ),
        ("/agents/sales/invocations", "POST, OPTIONS"),
        ("/agents", "GET, OPTIONS"),
    ] {
        let reply = send(
            client()
                .request(reqwest::Method::OPTIONS, t.url(path))
                .header("origin", CORS_ORIGIN)
                .header("access-control-request-method", "DELETE"),
        )
        .await;
        assert_eq!(reply.status, 204, "{path}");
        assert_eq!(
            reply.header("access-control-allow-methods"),
            Some(methods),
            "{path}"
        );
        assert_eq!(
            reply.header("access-control-allow-origin"),
            Some(CORS_ORIGIN)
        );
    }
}

every_target!(
    two_agents_reach_two_runtimes,
    claims_gate_an_agent_before_any_origin_request,
    an_unknown_agent_is_404_after_authentication,
    the_agents_list_is_the_callers,
    sessions_belong_to_their_subject,
    delete_ends_the_callers_session_only,
    delete_checks_the_session_id,
    the_preflight_allows_delete,
);

/// The derivation keeps no state: a gateway started again (its own, so
/// that the shared one keeps running) reaches the same sessions.
#[tokio::test]
async fn native_the_same_subject_reaches_its_session_after_a_restart() {
    let vars = vars_with(&[]);
    let alice = token(&unique("restart"));
    let session = session_id("restart");
    let (server, first) = spawn_native(&vars).await;
    say(
        &first,
        &alice,
        Some(SALES),
        &session,
        "/remember before the restart",
    )
    .await;
    drop(server);
    let (_server, second) = spawn_native(&vars).await;
    assert_ne!(first.base_url, second.base_url);
    assert_eq!(
        say(&second, &alice, Some(SALES), &session, "/recall").await,
        "I remember: before the restart."
    );
}

/// `SESSION_SCOPE=none`: the client's id goes to the agent as it is, and
/// whoever knows it shares the session.
#[tokio::test]
async fn native_session_scope_none_shares_sessions() {
    let (_server, t) = spawn_native(&vars_with(&[("SESSION_SCOPE", "none")])).await;
    let (alice, bob) = (token(&unique("alice")), token(&unique("bob")));
    let session = session_id("unscoped");
    say(&t, &alice, None, &session, "/remember shared").await;
    assert_eq!(
        say(&t, &bob, None, &session, "/recall").await,
        "I remember: shared."
    );
    assert!(stack().tap.carried(&session));
    let ended = delete(&t, &bob, &format!("/sessions/{session}")).await;
    assert_eq!(ended.status, 204, "{}", ended.text());
}

/// Named agents only, `DEFAULT_AGENT` naming one of them.
#[tokio::test]
async fn native_default_agent_names_an_agent_of_agents() {
    let vars = vars_with(&[("AGENT_RUNTIME_ARN", ""), ("DEFAULT_AGENT", SALES)]);
    let (_server, t) = spawn_native(&vars).await;
    let token = token(&unique("default-agent"));
    let session = session_id("default-agent");
    say(&t, &token, None, &session, "/remember via the default").await;
    assert_eq!(
        say(&t, &token, Some(SALES), &session, "/recall").await,
        "I remember: via the default.",
        "POST /invocations reached sales"
    );
    let reply = send(client().get(t.url("/agents")).bearer_auth(&token)).await;
    assert_eq!(
        reply.json(),
        json!({"agents": [{"name": SALES, "description": SALES_DESCRIPTION, "default": true}]})
    );

    // Without any default, /invocations names none (ORIGIN_URL without an
    // ARN is then only the endpoint of the agents' ARNs).
    let vars = vars_with(&[("AGENT_RUNTIME_ARN", "")]);
    let (_server, t) = spawn_native(&vars).await;
    let reply = send(post(&t, "/invocations", Some(&token), "{}")).await;
    reply.assert_error(404, "unknown_agent");
}
