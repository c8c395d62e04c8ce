//! A fleet on one Redis: two `agent-edge serve` processes and the Lambda
//! function under `cargo lambda watch` share a subject's budget exactly,
//! refuse it together once spent, and start afresh with the next window;
//! the request limit is counted across processes; 500 concurrent streams
//! are charged to the token.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use super::{
    body, client, events, invoke, json_lines, now, request_line, unique, usage, window_start, Logs,
    RedisServer, Reply, Serve, Upstream,
};
use crate::conformance::lambda;
use crate::conformance::stack::TargetKind;

/// `TOKEN_BUDGET_WINDOW_SECONDS` of the fleet: short, so that the test sees
/// the next window.
const WINDOW: u64 = 6;

/// Sleeps until at least `needed` seconds are left in the current window
/// of `seconds`, so that what follows rarely straddles a boundary.
async fn early_in_a_window(seconds: u64, needed: f64) {
    let at = now();
    let left = (window_start(at, seconds) + seconds) as f64 - at;
    if left < needed {
        tokio::time::sleep(Duration::from_secs_f64(left + 0.05)).await;
    }
}

/// `Retry-After` must be the seconds from the answer to the window's end.
fn assert_retry_after(reply: &Reply, window_end: u64, sent: f64, answered: f64) {
    let retry_after = reply.retry_after();
    let most = window_end.saturating_sub(sent as u64).max(1);
    let least = window_end.saturating_sub(answered as u64).max(1);
    assert!(
        (least..=most).contains(&retry_after),
        "Retry-After {retry_after}, expected {least}..={most} (window end {window_end})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_is_shared_exactly_by_two_serve_processes_and_a_lambda_function() {
    let test = "a_budget_is_shared_exactly_by_two_serve_processes_and_a_lambda_function";
    let logs = Logs::default();
    let answers = logs.buffer("answers");
    let redis = RedisServer::start("fleet").await;
    let upstream = Upstream::start().await;
    let with_lambda = !TargetKind::Lambda.left_out(test);
    // Each answer costs 10 tokens; the budget is one answer per member.
    let (prompt, cost) = events(7, 0);
    let members_count = if with_lambda { 3 } else { 2 };
    let budget = cost * members_count;
    let vars = upstream.vars(
        &redis.url(),
        &[
            ("TOKEN_BUDGET", &budget.to_string()),
            ("TOKEN_BUDGET_WINDOW_SECONDS", &WINDOW.to_string()),
        ],
    );
    let serve_a = Serve::start(&vars, logs.buffer("serve-a")).await;
    let serve_b = Serve::start(&vars, logs.buffer("serve-b")).await;
    let mut members = vec![
        ("serve-a", serve_a.base_url.clone(), serve_a.logs.clone()),
        ("serve-b", serve_b.base_url.clone(), serve_b.logs.clone()),
    ];
    let _function = if with_lambda {
        let (vars, function_logs) = (vars.clone(), logs.buffer("lambda"));
        let sink = function_logs.clone();
        let function = tokio::task::spawn_blocking(move || {
            lambda::start_with_concurrency("limits-redis", &vars, sink, 1)
        })
        .await
        .expect("the starting thread")
        .unwrap_or_else(|why| panic!("{why}"));
        members.push(("lambda", function.base_url.clone(), function_logs));
        Some(function)
    } else {
        None
    };
    let client = client();
    let payload = body(&prompt, None);

    // The budget spent across the members, then refused by each. Repeated
    // with new subjects if a window boundary fell inside.
    let mut spent = None;
    for attempt in 1..=3 {
        early_in_a_window(WINDOW, 3.0).await;
        let subject = unique("fleet");
        let other = unique("fleet-other");
        let (token, other_token) = (upstream.token(&subject), upstream.token(&other));
        let started = now();
        let origin_before = upstream.origin_requests();
        let mut admitted = Vec::new();
        for (i, (_, url, _)) in members.iter().enumerate() {
            let id = format!("{subject}-{i}");
            admitted.push(invoke(&client, url, &token, &id, &payload, &answers).await);
        }
        let origin_after_admitted = upstream.origin_requests();
        let mut refused = Vec::new();
        for (i, (_, url, _)) in members.iter().enumerate() {
            let sent = now();
            let id = format!("{subject}-refused-{i}");
            let reply = invoke(&client, url, &token, &id, &payload, &answers).await;
            refused.push((sent, reply, now()));
        }
        let origin_after_refused = upstream.origin_requests();
        let mut usages = Vec::new();
        for (_, url, _) in &members {
            usages.push(usage(&client, url, &token, &answers).await);
        }
        let mut others = Vec::new();
        for (i, (_, url, _)) in members.iter().enumerate() {
            let id = format!("{other}-{i}");
            others.push(invoke(&client, url, &other_token, &id, &payload, &answers).await);
        }
        let ended = now();
        let window = window_start(started, WINDOW);
        if window_start(ended, WINDOW) != window {
            eprintln!("limits_redis: attempt {attempt} straddled a window boundary; again");
            continue;
        }

        for (i, ((name, _, member_logs), reply)) in members.iter().zip(&admitted).enumerate() {
            assert_eq!(reply.status, 200, "{name}: {reply:?}");
            assert!(
                reply.body.contains(" 7"),
                "{name}: the whole answer: {reply:?}"
            );
            // What the members before it spent, whichever process they are.
            assert_eq!(
                reply.tokens_remaining(),
                Some(budget - i as u64 * cost),
                "{name}: {reply:?}"
            );
            let line = request_line(member_logs, &format!("{subject}-{i}")).await;
            assert_eq!(line["tokens_charged"], cost, "{name}: {line}");
            assert_ne!(line["usage_estimated"], true, "{name}: {line}");
        }
        assert_eq!(origin_after_admitted - origin_before, members.len());
        for ((name, _, _), (sent, reply, answered)) in members.iter().zip(&refused) {
            assert_eq!(reply.status, 429, "{name}: {reply:?}");
            assert_eq!(
                reply.error_code().as_deref(),
                Some("token_budget_exhausted"),
                "{name}"
            );
            assert_retry_after(reply, window + WINDOW, *sent, *answered);
            assert_eq!(reply.tokens_remaining(), Some(0), "{name}: {reply:?}");
        }
        assert_eq!(
            origin_after_refused, origin_after_admitted,
            "a refused request reached the origin"
        );
        for ((name, _, _), usage) in members.iter().zip(&usages) {
            assert_eq!(usage["tokens"]["used"], budget, "{name}: {usage}");
            assert_eq!(usage["tokens"]["remaining"], 0, "{name}: {usage}");
        }
        for (i, ((name, _, _), reply)) in members.iter().zip(&others).enumerate() {
            assert_eq!(reply.status, 200, "{name}, another subject: {reply:?}");
            assert_eq!(reply.tokens_remaining(), Some(budget - i as u64 * cost));
        }
        let key = |subject: &str| format!("agent-edge:tokens:{WINDOW}:{window}:{subject}");
        assert_eq!(redis.count(&key(&subject)).await, budget);
        assert_eq!(redis.count(&key(&other)).await, budget);
        spent = Some((subject, token, window));
        break;
    }
    let (subject, token, window) = spent.expect("three attempts straddled window boundaries");

    // The next window starts afresh, on every member.
    let next = window + WINDOW;
    let wait = next as f64 - now() + 0.05;
    if wait > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
    }
    for (i, (name, url, _)) in members.iter().enumerate() {
        let id = format!("{subject}-next-{i}");
        let reply = invoke(&client, url, &token, &id, &payload, &answers).await;
        assert_eq!(reply.status, 200, "{name} in the next window: {reply:?}");
        if i == 0 {
            assert_eq!(reply.tokens_remaining(), Some(budget), "{reply:?}");
        }
    }
    logs.assert_clean(&redis.secrets());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_limit_is_counted_across_two_serve_processes() {
    const LIMIT: usize = 10;
    let logs = Logs::default();
    let answers = logs.buffer("answers");
    let redis = RedisServer::start("requests").await;
    let upstream = Upstream::start().await;
    let vars = upstream.vars(
        &redis.url(),
        &[("RATE_LIMIT_PER_MINUTE", &LIMIT.to_string())],
    );
    let serve = [
        Serve::start(&vars, logs.buffer("serve-a")).await,
        Serve::start(&vars, logs.buffer("serve-b")).await,
    ];
    let client = client();

    // Requests alternate between the processes; an invalid body costs a
    // quick 400 (the limit applies before the body is read).
    for attempt in 1..=3 {
        let subject = unique("requests");
        let token = upstream.token(&subject);
        let started = now();
        let mut replies = Vec::new();
        for i in 0..=LIMIT + 1 {
            let sent = now();
            let url = &serve[i % 2].base_url;
            let id = format!("{subject}-{i}");
            let reply = invoke(&client, url, &token, &id, "not json", &answers).await;
            replies.push((sent, reply, now()));
        }
        let ended = now();
        let minute = window_start(started, 60);
        if window_start(ended, 60) != minute {
            eprintln!("limits_redis: attempt {attempt} straddled a minute boundary; again");
            continue;
        }
        for (i, (_, reply, _)) in replies.iter().enumerate() {
            let expected = if i < LIMIT {
                "invalid_json"
            } else {
                "rate_limited"
            };
            assert_eq!(
                reply.error_code().as_deref(),
                Some(expected),
                "request {i} (process {}): {reply:?}",
                i % 2
            );
            if i >= LIMIT {
                assert_eq!(reply.status, 429);
                let (sent, _, answered) = &replies[i];
                assert_retry_after(reply, minute + 60, *sent, *answered);
            }
        }
        let key = format!("agent-edge:requests:60:{minute}:{subject}");
        assert_eq!(redis.count(&key).await, LIMIT as u64);

        let other = upstream.token(&unique("requests-other"));
        let reply = invoke(
            &client,
            &serve[0].base_url,
            &other,
            "o",
            "not json",
            &answers,
        )
        .await;
        assert_eq!(reply.error_code().as_deref(), Some("invalid_json"));
        logs.assert_clean(&redis.secrets());
        return;
    }
    panic!("three attempts straddled minute boundaries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_streams_are_charged_to_the_token() {
    const STREAMS: usize = 500;
    const SUBJECTS: usize = 5;
    // Two descriptors per stream here (client and origin), more in total.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let logs = Logs::default();
    let answers = logs.buffer("answers");
    let redis = RedisServer::start("concurrent").await;
    let upstream = Upstream::start().await;
    let vars = upstream.vars(&redis.url(), &[("TOKEN_BUDGET", "1000000000")]);
    let serve = [
        Serve::start(&vars, logs.buffer("serve-a")).await,
        Serve::start(&vars, logs.buffer("serve-b")).await,
    ];
    let subjects: Vec<String> = (0..SUBJECTS).map(|_| unique("concurrent")).collect();
    let tokens: Vec<String> = subjects.iter().map(|s| upstream.token(s)).collect();
    let client = client();
    let run = unique("c");

    // Stream i: process i % 2, subject i % 5, 1 to 9 numbers 10 ms apart,
    // both response modes.
    let plan = |i: usize| {
        let (prompt, cost) = events(1 + (i % 9) as u64, 10);
        let mode = if i / 2 % 2 == 0 {
            "original"
        } else {
            "transformed"
        };
        (prompt, cost, mode)
    };
    let started = now();
    let streams = (0..STREAMS).map(|i| {
        let (prompt, _, mode) = plan(i);
        let (client, answers) = (&client, &answers);
        let (url, token, id) = (
            &serve[i % 2].base_url,
            &tokens[i % SUBJECTS],
            format!("{run}-{i}"),
        );
        async move { invoke(client, url, token, &id, &body(&prompt, Some(mode)), answers).await }
    });
    let replies = futures::future::join_all(streams).await;
    let ended = now();

    let mut expected = vec![0u64; SUBJECTS];
    for (i, reply) in replies.iter().enumerate() {
        let (_, cost, _) = plan(i);
        assert_eq!(reply.status, 200, "stream {i}: {reply:?}");
        let last = 1 + i % 9;
        assert!(
            reply.body.contains(&last.to_string()),
            "stream {i}: {reply:?}"
        );
        expected[i % SUBJECTS] += cost;
    }
    // Every client has read its whole answer: every charge has landed.
    for (subject, expected) in subjects.iter().zip(&expected) {
        assert_eq!(
            redis.tokens(subject, 86_400, started, ended).await,
            *expected,
            "{subject}"
        );
    }

    // Each stream's line says what it was charged.
    let mut charged: HashMap<String, Value> = HashMap::new();
    for process in &serve {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mine = |lines: Vec<Value>| -> Vec<Value> {
            lines
                .into_iter()
                .filter(|l| {
                    l["path"].is_string()
                        && l["client_request_id"]
                            .as_str()
                            .is_some_and(|id| id.starts_with(&format!("{run}-")))
                })
                .collect()
        };
        let lines = loop {
            let lines = mine(json_lines(&process.logs));
            if lines.len() >= STREAMS / 2 || std::time::Instant::now() > deadline {
                break lines;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(
            lines.len(),
            STREAMS / 2,
            "request lines of {}",
            process.base_url
        );
        for line in lines {
            let id = line["client_request_id"].as_str().unwrap_or("").to_owned();
            charged.insert(id, line);
        }
    }
    let mut total = 0;
    for i in 0..STREAMS {
        let (_, cost, _) = plan(i);
        let line = &charged[&format!("{run}-{i}")];
        assert_eq!(line["tokens_charged"], cost, "stream {i}: {line}");
        assert_ne!(line["usage_estimated"], true, "stream {i}: {line}");
        total += line["tokens_charged"].as_u64().unwrap_or(0);
    }
    assert_eq!(total, expected.iter().sum::<u64>());
    logs.assert_clean(&redis.secrets());
}
