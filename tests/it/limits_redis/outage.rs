//! When Redis is not there: stopped mid-run (`LIMITS_STORE_FAILURE=allow`
//! goes on and logs it, `deny` answers 503), started again (counting
//! resumes), a listener that never answers (cut at
//! `LIMITS_STORE_TIMEOUT_MS`), one that stalls and resumes, and
//! `rediss://`, verified against the trust store.

use std::process::Command;
use std::time::{Duration, Instant};

use agent_edge::gateway::limits::{StoreCall, Window};
use agent_edge::platform::native::RedisStore;
use serde_json::Value;

use super::{
    body, client, events, invoke, json_lines, now, request_line, unique, Logs, RedisServer, Serve,
    Upstream,
};
use crate::conformance::stack::LogBuffer;

const DAY: u64 = 86_400;

/// The `limits_unavailable` lines about the request whose request line
/// carries this client request id.
async fn unavailable_lines(logs: &LogBuffer, client_request_id: &str) -> Vec<Value> {
    let line = request_line(logs, client_request_id).await;
    json_lines(logs)
        .into_iter()
        .filter(|l| l["event"] == "limits_unavailable" && l["request_id"] == line["request_id"])
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_mid_run_allow_goes_on_deny_answers_503_and_counting_resumes() {
    let logs = Logs::default();
    let answers = logs.buffer("answers");
    let mut redis = RedisServer::start("outage").await;
    let upstream = Upstream::start().await;
    let vars = |failure: &str| {
        upstream.vars(
            &redis.url(),
            &[
                ("TOKEN_BUDGET", "100000"),
                // Generous: here Redis fails fast, it does not hang.
                ("LIMITS_STORE_TIMEOUT_MS", "2000"),
                ("LIMITS_STORE_FAILURE", failure),
            ],
        )
    };
    let allow = Serve::start(&vars("allow"), logs.buffer("allow")).await;
    let deny = Serve::start(&vars("deny"), logs.buffer("deny")).await;
    let subject = unique("outage");
    let token = upstream.token(&subject);
    let (prompt, cost) = events(4, 0);
    let payload = body(&prompt, None);
    let client = client();
    let send = async |serve: &Serve, id: &str| {
        invoke(&client, &serve.base_url, &token, id, &payload, &answers).await
    };

    let started = now();
    for (serve, id) in [(&allow, "before-allow"), (&deny, "before-deny")] {
        let reply = send(serve, &format!("{subject}-{id}")).await;
        assert_eq!(reply.status, 200, "{id}: {reply:?}");
    }
    assert_eq!(redis.tokens(&subject, DAY, started, now()).await, 2 * cost);

    redis.stop();
    let id = format!("{subject}-down-allow");
    let reply = send(&allow, &id).await;
    assert_eq!(reply.status, 200, "allow goes on: {reply:?}");
    assert!(reply.body.contains(" 4"), "the whole answer: {reply:?}");
    let unavailable = unavailable_lines(&allow.logs, &id).await;
    assert!(
        unavailable.iter().any(|l| l["detail"]
            .as_str()
            .is_some_and(|d| d.contains("LIMITS_STORE_FAILURE=allow"))),
        "no limits_unavailable line for the admission: {unavailable:?}"
    );
    // The stream's charge failed too, and its line says why and how much.
    assert!(
        unavailable
            .iter()
            .any(|l| l["detail"].as_str().is_some_and(|d| {
                d.contains(&format!("{cost} tokens were not charged")) && d.contains("failed")
            })),
        "no limits_unavailable line for the lost charge: {unavailable:?}"
    );

    let origin_before = upstream.origin_requests();
    let id = format!("{subject}-down-deny");
    let reply = send(&deny, &id).await;
    assert_eq!(reply.status, 503, "deny: {reply:?}");
    assert_eq!(reply.error_code().as_deref(), Some("limits_unavailable"));
    assert!(reply.retry_after() >= 1);
    assert_eq!(
        upstream.origin_requests(),
        origin_before,
        "deny reached the origin"
    );
    let line = request_line(&deny.logs, &id).await;
    assert_eq!(line["error"], "limits_unavailable", "{line}");

    // Back, empty (nothing is saved): each process counts again from its
    // next request on.
    redis.restart().await;
    let restarted = now();
    for (serve, id) in [(&deny, "back-deny"), (&allow, "back-allow")] {
        let id = format!("{subject}-{id}");
        let reply = send(serve, &id).await;
        assert_eq!(reply.status, 200, "{id}: {reply:?}");
        let unavailable = unavailable_lines(&serve.logs, &id).await;
        assert!(unavailable.is_empty(), "{id}: {unavailable:?}");
    }
    assert_eq!(
        redis.tokens(&subject, DAY, restarted, now()).await,
        2 * cost
    );
    logs.assert_clean(&redis.secrets());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_never_answers_is_cut_at_the_store_timeout() {
    const TIMEOUT_MS: u64 = 300;
    // Accepts every connection and holds it, reading and writing nothing.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let held = tokio::spawn(async move {
        let mut connections = Vec::new();
        while let Ok((connection, _)) = listener.accept().await {
            connections.push(connection);
        }
    });
    let password = format!("Hung-p@ss-{}", unique("pw"));
    let url = format!(
        "redis://default:{}@127.0.0.1:{port}/0",
        password.replace('@', "%40")
    );
    let logs = Logs::default();
    let answers = logs.buffer("answers");
    let upstream = Upstream::start().await;
    let vars = |failure: &str| {
        upstream.vars(
            &url,
            &[
                ("TOKEN_BUDGET", "1000"),
                ("LIMITS_STORE_TIMEOUT_MS", &TIMEOUT_MS.to_string()),
                ("LIMITS_STORE_FAILURE", failure),
            ],
        )
    };
    let deny = Serve::start(&vars("deny"), logs.buffer("deny")).await;
    let allow = Serve::start(&vars("allow"), logs.buffer("allow")).await;
    let token = upstream.token(&unique("hung"));
    let (prompt, _) = events(3, 0);
    let payload = body(&prompt, None);
    let client = client();
    // Far above the timeout (a loaded machine), far below a hang.
    let bound = Duration::from_secs(5);

    // Several in a row: a call that hung does not hold up the next.
    for i in 0..3 {
        let sent = Instant::now();
        let reply = invoke(
            &client,
            &deny.base_url,
            &token,
            &format!("hung-deny-{i}"),
            &payload,
            &answers,
        )
        .await;
        let took = sent.elapsed();
        assert_eq!(reply.status, 503, "{reply:?}");
        assert_eq!(reply.error_code().as_deref(), Some("limits_unavailable"));
        assert!(reply.retry_after() >= 1);
        assert!(
            took >= Duration::from_millis(TIMEOUT_MS) && took < bound,
            "answered in {took:?}"
        );
    }
    for i in 0..2 {
        let id = format!("hung-allow-{i}");
        let sent = Instant::now();
        let reply = invoke(&client, &allow.base_url, &token, &id, &payload, &answers).await;
        let took = sent.elapsed();
        assert_eq!(reply.status, 200, "{reply:?}");
        assert!(reply.body.contains(" 3"), "the whole answer: {reply:?}");
        assert!(took < bound, "answered in {took:?}");
        let unavailable = unavailable_lines(&allow.logs, &id).await;
        assert!(
            unavailable.iter().any(|l| l["detail"]
                .as_str()
                .is_some_and(|d| d.contains("did not answer in time"))),
            "{unavailable:?}"
        );
    }
    held.abort();
    logs.assert_clean(&[password.clone(), password.replace('@', "%40"), url.clone()]);
}

/// A Redis that stops answering (SIGSTOP) holds up no call for long, not
/// even those after the first; once it answers again (SIGCONT), so does
/// the store. The store alone, without a gateway's timeout around it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_stalls_and_resumes_is_counted_again() {
    let redis = RedisServer::start("stall").await;
    let store = RedisStore::new(&redis.url(), 200).expect("a valid URL");
    let window = Window::containing(now() as u64, DAY);
    let charge = |tokens| StoreCall::Charge {
        subject: "stall".into(),
        window,
        tokens,
    };
    let read = StoreCall::Read {
        subject: "stall".into(),
        tokens: Some(window),
        requests: None,
    };
    assert_eq!(store.call(charge(1)).await.map(|c| c.tokens), Ok(1));

    redis.signal("STOP");
    let details = LogBuffer::default();
    for call in [charge(10), charge(10), read.clone()] {
        let sent = Instant::now();
        let answer = store.call(call).await;
        let took = sent.elapsed();
        assert!(answer.is_err(), "a stopped Redis answered: {answer:?}");
        details.push(format!("{answer:?}"));
        // Its own bound (1 s), not the 5 s of a connection attempt.
        assert!(took < Duration::from_secs(3), "took {took:?}");
    }
    redis.signal("CONT");

    // Counting resumes (the charges sent before may land too: Redis had them).
    let deadline = Instant::now() + Duration::from_secs(15);
    let before = loop {
        match store.call(read.clone()).await {
            Ok(counts) => break counts.tokens,
            Err(error) => details.push(error.to_string()),
        }
        assert!(
            Instant::now() < deadline,
            "no answer after SIGCONT: {:?}",
            details.lines()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let after = store.call(charge(100)).await.expect("answered").tokens;
    assert_eq!(after, before + 100);
    for detail in details.lines() {
        for secret in redis.secrets() {
            assert!(!detail.contains(&secret), "{detail}");
        }
    }
}

/// A CA and a certificate for 127.0.0.1 signed by it, made with `openssl`
/// in `dir`: the paths of the CA certificate, the server's certificate and
/// its key.
fn test_ca(dir: &std::path::Path) -> [String; 3] {
    let path = |name: &str| dir.join(name).display().to_string();
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| panic!("running openssl: {e} (scripts/setup.sh installs it)"));
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"],
            &["-subj", "/CN=agent-edge test CA"],
            &["-addext", "basicConstraints=critical,CA:TRUE"],
            &["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("server.ext");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    [path("ca.pem"), path("server.pem"), path("server.key")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_is_verified_against_the_trust_store() {
    let dir = super::scratch_dir("tls-ca");
    let [ca, certificate, key] = test_ca(&dir);
    let tls = ["--tls-cert-file", &certificate, "--tls-key-file", &key]
        .into_iter()
        .chain(["--tls-ca-cert-file", &ca, "--tls-auth-clients", "no"])
        .map(str::to_owned)
        .collect();
    let redis = RedisServer::start_with("tls", Some(tls)).await;
    let logs = Logs::default();
    let answers = logs.buffer("answers");
    let upstream = Upstream::start().await;
    let vars = |trust: &[(&str, &str)]| {
        let mut extra = vec![("TOKEN_BUDGET", "1000"), ("LIMITS_STORE_FAILURE", "deny")];
        extra.extend_from_slice(trust);
        upstream.vars(&redis.tls_url(), &extra)
    };
    // The test CA through SSL_CERT_FILE (a private CA), and without it.
    let trusting = Serve::start(&vars(&[("SSL_CERT_FILE", &ca)]), logs.buffer("trusting")).await;
    let not_trusting = Serve::start(&vars(&[]), logs.buffer("not-trusting")).await;
    let subject = unique("tls");
    let token = upstream.token(&subject);
    let (prompt, cost) = events(2, 0);
    let payload = body(&prompt, None);
    let client = client();

    let started = now();
    let reply = invoke(
        &client,
        &trusting.base_url,
        &token,
        "tls-1",
        &payload,
        &answers,
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(redis.tokens(&subject, DAY, started, now()).await, cost);

    let reply = invoke(
        &client,
        &not_trusting.base_url,
        &token,
        "tls-2",
        &payload,
        &answers,
    )
    .await;
    assert_eq!(reply.status, 503, "an unknown CA is refused: {reply:?}");
    let line = request_line(&not_trusting.logs, "tls-2").await;
    assert_eq!(line["error"], "limits_unavailable", "{line}");
    logs.assert_clean(&redis.secrets());
}

/// A `REDIS_URL` that does not parse (a port that is not a number): `serve`
/// does not start and the Lambda function answers 500, both naming the
/// variable and quoting neither the URL nor its password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_redis_url_is_a_configuration_error_on_serve_and_lambda() {
    let test = "an_unusable_redis_url_is_a_configuration_error_on_serve_and_lambda";
    let password = format!("Bad-p@ss-{}", unique("pw"));
    let url = format!(
        "redis://default:{}@127.0.0.1:port/0",
        password.replace('@', "%40")
    );
    let secrets = [password.clone(), password.replace('@', "%40"), url.clone()];
    let upstream = Upstream::start().await;
    let vars = upstream.vars(&url, &[("TOKEN_BUDGET", "1000")]);

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_agent-edge"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_clear()
        .envs(vars.iter().map(|(n, v)| (n, v)))
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), output)
        .await
        .expect("serve exits")
        .expect("serve runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "serve started: {stderr}");
    assert!(stderr.contains("REDIS_URL"), "{stderr}");
    assert!(stderr.contains("invalid_configuration"), "{stderr}");

    let logs = Logs::default();
    let answers = logs.buffer("answers");
    let serve_output = logs.buffer("serve");
    for line in stderr.lines() {
        serve_output.push(line.to_owned());
    }
    if !crate::conformance::stack::TargetKind::Lambda.left_out(test) {
        let function_logs = logs.buffer("lambda");
        let sink = function_logs.clone();
        let function = tokio::task::spawn_blocking(move || {
            crate::conformance::lambda::start_with_concurrency("redis-url", &vars, sink, 1)
        })
        .await
        .expect("the starting thread")
        .unwrap_or_else(|why| panic!("{why}"));
        let token = upstream.token("bad-url");
        let payload = body("hello", None);
        let reply = invoke(
            &client(),
            &function.base_url,
            &token,
            "bad-url",
            &payload,
            &answers,
        )
        .await;
        assert_eq!(reply.status, 500, "{reply:?}");
        assert_eq!(reply.error_code().as_deref(), Some("invalid_configuration"));
        assert!(
            json_lines(&function_logs)
                .iter()
                .any(|l| l["event"] == "invalid_configuration"
                    && l["detail"]
                        .as_str()
                        .is_some_and(|d| d.starts_with("REDIS_URL"))),
            "no invalid_configuration line naming REDIS_URL:\n{}",
            function_logs.lines().join("\n")
        );
    }
    logs.assert_clean(&secrets);
}
