//! The Lua script against the admission rule itself: the same calls to the
//! Redis store and to the in-process store (which runs `limits::apply`)
//! get the same answers, and what the script writes expires when the
//! window says.

use agent_edge::gateway::limits::{Bounded, Counter, MemoryStore, StoreCall, Window};
use agent_edge::platform::native::RedisStore;

use super::{now, Logs, RedisServer};

/// A small deterministic generator (xorshift64), so that a failure repeats.
struct Draw(u64);

impl Draw {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

#[tokio::test]
async fn the_script_answers_as_limits_apply_does() {
    let redis = RedisServer::start("script").await;
    let store = RedisStore::new(&redis.url(), 5_000).expect("a valid URL");
    let mut memory = MemoryStore::new();
    let at = now() as u64;
    let requests_window = Window::containing(at, 60);
    let tokens_window = Window::containing(at, 3600);
    let logs = Logs::default();
    let details = logs.buffer("details");

    let mut calls = Vec::new();
    let mut draw = Draw(0x2545_f491_4f6c_dd1d);
    for _ in 0..400 {
        let subject = ["alice", "bob", "b:o:b"][draw.next(3) as usize].to_owned();
        // Small limits and charges: answers at, under and over the limits.
        let tokens = (draw.next(4) > 0).then(|| Bounded {
            window: tokens_window,
            limit: draw.next(12),
        });
        let requests = (draw.next(4) > 0).then(|| Bounded {
            window: requests_window,
            limit: draw.next(6),
        });
        calls.push(match draw.next(3) {
            0 => StoreCall::Admit {
                subject,
                tokens,
                requests,
            },
            1 => StoreCall::Charge {
                subject,
                window: tokens_window,
                tokens: draw.next(5),
            },
            _ => StoreCall::Read {
                subject,
                tokens: tokens.map(|b| b.window),
                requests: requests.map(|b| b.window),
            },
        });
    }
    // Counts past 2^53, where a double would round: compared exactly.
    let big = 100_000_000_000_000_003;
    let carol = |limit| StoreCall::Admit {
        subject: "carol".into(),
        tokens: Some(Bounded {
            window: tokens_window,
            limit,
        }),
        requests: None,
    };
    calls.extend([
        StoreCall::Charge {
            subject: "carol".into(),
            window: tokens_window,
            tokens: big,
        },
        carol(big),
        carol(big + 1),
        carol(big - 1),
    ]);

    for (step, call) in calls.iter().enumerate() {
        let expected = memory.call(call, at);
        let answer = store.call(call.clone()).await;
        if let Err(error) = &answer {
            details.push(error.to_string());
        }
        assert_eq!(answer, Ok(expected), "call {step}: {call:?}");
    }
    let admitted = |subject: &str| {
        calls
            .iter()
            .filter(|c| matches!(c, StoreCall::Admit { subject: s, .. } if s == subject))
            .count()
    };
    assert!(
        admitted("alice") > 20 && admitted("bob") > 20,
        "too few admissions drawn"
    );

    // One round trip per call: EVALSHA, the script loaded once, when the
    // store connected (Redis counts a failed call, NOSCRIPT, as a call).
    let mut connection = redis.connection().await.expect("a connection");
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut connection)
        .await
        .expect("INFO");
    let calls_of = |command: &str| -> Option<u64> {
        let line = stats
            .lines()
            .find(|l| l.starts_with(&format!("cmdstat_{command}:")))?;
        line.split([':', ','])
            .find_map(|f| f.strip_prefix("calls="))?
            .parse()
            .ok()
    };
    assert_eq!(calls_of("evalsha"), Some(calls.len() as u64), "{stats}");
    // Redis 6 counts subcommands under their command.
    let loads = calls_of("script|load").or_else(|| calls_of("script"));
    assert_eq!(loads, Some(1), "{stats}");
    assert_eq!(calls_of("eval"), None, "{stats}");

    // What the script wrote expires an hour after its window ends.
    for (key, window) in [
        (Counter::Tokens.key(tokens_window, "carol"), tokens_window),
        (
            Counter::Requests.key(requests_window, "alice"),
            requests_window,
        ),
    ] {
        let ttl: i64 = redis::cmd("TTL")
            .arg(&key)
            .query_async(&mut connection)
            .await
            .expect("TTL");
        let expected = window.expires_at() as i64 - now() as i64;
        assert!(
            (expected - 2..=expected + 1).contains(&ttl),
            "{key}: TTL {ttl}, expected about {expected}"
        );
    }
    details.push("checked".into());
    logs.assert_clean(&redis.secrets());
}

/// The ACL the README gives a gateway's Redis user is enough, also for a
/// Redis that lost its scripts (a restart, a failover): `SCRIPT LOAD`.
#[tokio::test]
async fn the_readme_acl_is_all_the_store_needs() {
    let readme = include_str!("../../../README.md")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(readme.contains(README_ACL), "the README gives another ACL");
    let redis = RedisServer::start("acl").await;
    let mut connection = redis.connection().await.expect("a connection");
    let password = "acl-pw-0123";
    let rules = README_ACL.split_whitespace();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("agent-edge")
        .arg("on")
        .arg(format!(">{password}"))
        .arg(rules.collect::<Vec<_>>())
        .query_async(&mut connection)
        .await
        .expect("ACL SETUSER");
    let url = format!("redis://agent-edge:{password}@127.0.0.1:{}/0", redis.port);
    let store = RedisStore::new(&url, 5_000).expect("a valid URL");
    let window = Window::containing(now() as u64, 60);
    let limit = Some(Bounded { window, limit: 5 });
    let calls = [
        StoreCall::Admit {
            subject: "acl".into(),
            tokens: limit,
            requests: limit,
        },
        StoreCall::Charge {
            subject: "acl".into(),
            window,
            tokens: 3,
        },
        StoreCall::Read {
            subject: "acl".into(),
            tokens: Some(window),
            requests: Some(window),
        },
    ];
    let mut memory = MemoryStore::new();
    // The store loads the script when it connects; then Redis loses it
    // under the open connection (a failover): EVALSHA, NOSCRIPT, SCRIPT
    // LOAD, EVALSHA.
    for flush in [false, true] {
        if flush {
            let _: () = redis::cmd("SCRIPT")
                .arg("FLUSH")
                .query_async(&mut connection)
                .await
                .expect("SCRIPT FLUSH");
        }
        for call in &calls {
            let expected = memory.call(call, now() as u64);
            assert_eq!(store.call(call.clone()).await, Ok(expected), "{call:?}");
        }
    }
}

/// The ACL rules of the README's Redis section.
const README_ACL: &str =
    "resetkeys ~agent-edge:* resetchannels -@all +evalsha +script|load +get +incrby +expireat";
