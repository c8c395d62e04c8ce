//! Parsing the variables: defaults, derived values, errors naming the variable.
use super::*;
use std::collections::HashMap;

const ARN: &str = "arn:aws:bedrock-agentcore:us-west-2:123456789012:runtime/demo_agent-AbC123";

fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(|name| map.get(name).cloned())
}

fn default_origin(c: &Config) -> &OriginConfig {
    &c.agents.default_agent().expect("a default agent").origin
}

fn base() -> Vec<(&'static str, &'static str)> {
    vec![
        ("AGENT_RUNTIME_ARN", ARN),
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
        ("AUTH", "none"),
    ]
}

#[test]
fn arn_gives_region_endpoint_and_service() {
    let c = config(&base()).unwrap();
    let rt = default_origin(&c).runtime.as_ref().unwrap();
    assert_eq!(rt.region, "us-west-2");
    assert_eq!(rt.account_id, "123456789012");
    assert_eq!(rt.qualifier, "DEFAULT");
    assert_eq!(
        default_origin(&c).base_url.to_string(),
        "https://bedrock-agentcore.us-west-2.amazonaws.com/"
    );
    match &default_origin(&c).auth {
        OriginAuth::SigV4 {
            service, region, ..
        } => {
            assert_eq!(service, "bedrock-agentcore");
            assert_eq!(region, "us-west-2");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.default_mode, ResponseMode::Original);
    assert_eq!(c.max_body_bytes, 1_048_576);
    assert_eq!(c.keepalive_seconds, 15);
    assert_eq!(
        c.client_limits,
        ClientLimits {
            header_timeout_seconds: 30,
            idle_timeout_seconds: 15,
            body_timeout_seconds: 60,
            max_header_bytes: 32 * 1024,
            max_connections: 10_000,
            shutdown_grace_seconds: 30,
        }
    );
}

#[test]
fn client_limits_are_validated_naming_the_variable() {
    for (name, value) in [
        ("CLIENT_HEADER_TIMEOUT_SECONDS", "0"),
        ("CLIENT_IDLE_TIMEOUT_SECONDS", "31"),
        ("CLIENT_BODY_TIMEOUT_SECONDS", "soon"),
        ("MAX_HEADER_BYTES", "4096"),
        ("MAX_CONNECTIONS", "0"),
        ("SHUTDOWN_GRACE_SECONDS", "-1"),
    ] {
        let mut vars = base();
        vars.push((name, value));
        assert_eq!(config(&vars).unwrap_err().variable, name, "{name}={value}");
    }
    let mut vars = base();
    vars.extend([
        ("CLIENT_HEADER_TIMEOUT_SECONDS", "120"),
        ("CLIENT_IDLE_TIMEOUT_SECONDS", "90"),
    ]);
    assert_eq!(
        config(&vars).unwrap().client_limits.idle_timeout_seconds,
        90
    );
}

#[test]
fn lambda_url_defaults_to_lambda_service_and_its_region() {
    let c = config(&[
        ("ORIGIN_URL", "https://abc123.lambda-url.eu-west-1.on.aws/"),
        ("AWS_ACCESS_KEY_ID", "AKID"),
        ("AWS_SECRET_ACCESS_KEY", "s"),
        ("AUTH", "none"),
    ])
    .unwrap();
    match &default_origin(&c).auth {
        OriginAuth::SigV4 {
            service, region, ..
        } => {
            assert_eq!((service.as_str(), region.as_str()), ("lambda", "eu-west-1"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_origin_region_wins_over_aws_region() {
    let signing_region =
        |vars: &[(&str, &str)]| match default_origin(&config(vars).unwrap()).auth.clone() {
            OriginAuth::SigV4 { region, .. } => region,
            other => panic!("{other:?}"),
        };
    // A function in eu-west-1 (Lambda sets AWS_REGION) calling a runtime
    // in us-west-2.
    let mut vars = base();
    vars.push(("AWS_REGION", "eu-west-1"));
    assert_eq!(signing_region(&vars), "us-west-2");
    vars.push(("ORIGIN_URL", "https://abc123.lambda-url.ap-south-1.on.aws/"));
    assert_eq!(
        signing_region(&vars),
        "us-west-2",
        "the ARN's, then the URL's"
    );
    let custom_origin = [
        ("ORIGIN_URL", "https://agent.example.com"),
        ("SIGV4_SERVICE", "execute-api"),
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "AKID"),
        ("AWS_SECRET_ACCESS_KEY", "s"),
        ("AUTH", "none"),
    ];
    assert_eq!(signing_region(&custom_origin), "eu-west-1");
}

#[test]
fn errors_name_the_variable() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("AUTH", "none")], "AGENT_RUNTIME_ARN"),
        (
            &[
                ("AGENT_RUNTIME_ARN", "arn:aws:s3:::bucket"),
                ("AUTH", "none"),
            ],
            "AGENT_RUNTIME_ARN",
        ),
        (
            &[("AGENT_RUNTIME_ARN", ARN), ("AUTH", "none")],
            "AWS_ACCESS_KEY_ID",
        ),
        (
            &[("AGENT_RUNTIME_ARN", ARN), ("ORIGIN_AUTH", "none")],
            "JWT_ISSUER",
        ),
        (
            &[
                ("AGENT_RUNTIME_ARN", ARN),
                ("ORIGIN_AUTH", "none"),
                ("AUTH", "maybe"),
            ],
            "AUTH",
        ),
        (&[("ORIGIN_URL", "ftp://x"), ("AUTH", "none")], "ORIGIN_URL"),
        (
            &[("ORIGIN_URL", "http://127.0.0.1:1/x"), ("AUTH", "none")],
            "SIGV4_SERVICE",
        ),
        (
            &[
                ("ORIGIN_URL", "http://127.0.0.1:1/x"),
                ("AUTH", "none"),
                ("ORIGIN_AUTH", "none"),
                ("MAX_BODY_BYTES", "-1"),
            ],
            "MAX_BODY_BYTES",
        ),
        (
            &[
                ("ORIGIN_URL", "http://127.0.0.1:1/x"),
                ("ORIGIN_AUTH", "none"),
                ("JWT_ISSUER", "https://issuer"),
            ],
            "JWT_AUDIENCE",
        ),
        (
            &[
                ("ORIGIN_URL", "http://127.0.0.1:1/x"),
                ("AUTH", "none"),
                ("ORIGIN_AUTH", "none"),
                ("UI", "yes"),
            ],
            "UI",
        ),
    ];
    for (vars, variable) in cases {
        let err = config(vars).unwrap_err();
        assert_eq!(err.variable, *variable, "{vars:?}: {err}");
    }
}

#[test]
fn debug_redacts_credentials_and_arn() {
    let c = config(&base()).unwrap();
    let debug = format!("{c:?}");
    assert!(!debug.contains("secret"), "{debug}");
    assert!(!debug.contains("AKIDEXAMPLE"), "{debug}");
    assert!(!debug.contains("123456789012"), "{debug}");
}

#[test]
fn dev_token_url_is_only_the_trusted_issuer_on_this_machine() {
    let with = |issuer: &str, url: &str| {
        let mut vars = base();
        vars.retain(|(name, _)| *name != "AUTH");
        vars.extend([
            ("JWT_ISSUER", issuer),
            ("JWT_AUDIENCE", "client"),
            ("DEV_TOKEN_URL", url),
        ]);
        config(&vars).map(|c| c.dev_token_url)
    };
    assert_eq!(config(&base()).unwrap().dev_token_url, None);
    for (issuer, url) in [
        ("http://127.0.0.1:4321", "http://127.0.0.1:4321/token"),
        ("http://localhost:4321/", "http://LOCALHOST:4321/token"),
        ("http://[::1]:4321", "http://[::1]:4321/token"),
    ] {
        assert_eq!(with(issuer, url).unwrap(), Some(url.to_owned()), "{url}");
    }
    for (issuer, url) in [
        // Another machine, even the issuer's own.
        ("https://issuer.example", "https://issuer.example/token"),
        ("http://127.0.0.1:4321", "https://evil.example/token"),
        (
            "http://127.0.0.1:4321",
            "http://localhost.evil.example:4321/token",
        ),
        // This machine, but not the issuer the gateway trusts.
        ("http://127.0.0.1:4321", "http://127.0.0.1:4322/token"),
        ("http://127.0.0.1:4321", "http://localhost:4321/token"),
        ("https://issuer.example", "http://127.0.0.1:4321/token"),
        ("http://127.0.0.1:4321", "javascript:alert(1)"),
        (
            "http://127.0.0.1:4321",
            "http://127.0.0.1:4321/token?next=x",
        ),
    ] {
        let err = with(issuer, url).unwrap_err();
        assert_eq!(err.variable, "DEV_TOKEN_URL", "{url}: {err}");
    }
    // Without caller authentication there is no token to get.
    let mut vars = base();
    vars.push(("DEV_TOKEN_URL", "http://127.0.0.1:4321/token"));
    assert_eq!(config(&vars).unwrap_err().variable, "DEV_TOKEN_URL");
}

#[test]
fn limits_default_to_memory_and_name_the_variable_when_wrong() {
    let c = config(&base()).unwrap();
    assert_eq!(c.limits, LimitsConfig::default());
    assert!(!c.limits.any());

    let mut vars = base();
    vars.extend([("TOKEN_BUDGET", "5000"), ("LIMITS_STORE_FAILURE", "deny")]);
    let c = config(&vars).unwrap();
    assert_eq!(c.limits.token_budget, Some(5000));
    assert_eq!(c.limits.token_window_seconds, 86_400);
    assert!(c.limits.deny_when_unavailable && c.limits.any());

    let error = |extra: &[(&'static str, &'static str)]| {
        let mut vars = base();
        vars.extend_from_slice(extra);
        config(&vars).unwrap_err().to_string()
    };
    assert!(error(&[("LIMITS_STORE", "redis")]).contains("REDIS_URL"));
    assert!(error(&[("LIMITS_STORE", "redis"), ("REDIS_URL", "http://h:1")]).contains("REDIS_URL"));
    assert!(error(&[("LIMITS_STORE", "etcd")]).contains("LIMITS_STORE"));
    assert!(error(&[("TOKEN_BUDGET", "0")]).contains("TOKEN_BUDGET"));
    assert!(error(&[("LIMITS_STORE_TIMEOUT_MS", "0")]).contains("LIMITS_STORE_TIMEOUT_MS"));
}

#[test]
fn the_redis_password_is_a_secret_of_its_own() {
    let mut vars = base();
    vars.extend([
        ("LIMITS_STORE", "redis"),
        (
            "REDIS_URL",
            "rediss://edge:s3cret-pw@cache.example.com:6380/2",
        ),
    ]);
    let c = config(&vars).unwrap();
    let secrets: Vec<&str> = c.sensitive_values.iter().map(Secret::expose).collect();
    assert!(secrets.contains(&"s3cret-pw"), "{secrets:?}");
    assert!(!format!("{c:?}").contains("s3cret-pw"));
    assert_eq!(
        redis_password("redis://:only-pw@h:1"),
        Some("only-pw".into())
    );
    assert_eq!(redis_password("redis://h:1"), None);
}

const SECOND_ARN: &str = "arn:aws:bedrock-agentcore:eu-west-1:210987654321:runtime/sales-Zz99";

/// `base()` with `AGENTS` set to `agents`.
fn with_agents(agents: &str) -> Result<Config, ConfigError> {
    let mut vars = base();
    vars.push(("AGENTS", agents));
    config(&vars)
}

#[test]
fn agents_by_name_beside_the_implicit_default() {
    let agents = format!(
        r#"{{"sales": {{"arn": "{SECOND_ARN}", "qualifier": "prod",
              "requireClaims": {{"cognito:groups": ["sales", "admin"]}},
              "description": "Quotes and orders"}},
            "search": {{"url": "https://abc123.lambda-url.ap-south-1.on.aws/run"}}}}"#
    );
    let c = with_agents(&agents).unwrap();
    let names: Vec<&str> = c.agents.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["default", "sales", "search"]);
    assert_eq!(c.agents.default_agent().unwrap().name, "default");

    let sales = c.agents.get("sales").unwrap();
    let rt = sales.origin.runtime.as_ref().unwrap();
    assert_eq!(
        (rt.region.as_str(), rt.qualifier.as_str()),
        ("eu-west-1", "prod")
    );
    assert_eq!(
        sales.origin.base_url.to_string(),
        "https://bedrock-agentcore.eu-west-1.amazonaws.com/"
    );
    // Each runtime is signed for its own region.
    match &sales.origin.auth {
        OriginAuth::SigV4 {
            region, service, ..
        } => {
            assert_eq!(
                (region.as_str(), service.as_str()),
                ("eu-west-1", "bedrock-agentcore")
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sales.description.as_deref(), Some("Quotes and orders"));
    assert_eq!(
        sales.require_claims,
        [ClaimRule {
            claim: "cognito:groups".into(),
            allowed: vec!["sales".into(), "admin".into()],
        }]
    );
    let search = c.agents.get("search").unwrap();
    assert!(search.origin.runtime.is_none());
    assert_eq!(search.origin.base_url.path(), "/run");
    match &search.origin.auth {
        OriginAuth::SigV4 {
            region, service, ..
        } => {
            assert_eq!(
                (region.as_str(), service.as_str()),
                ("ap-south-1", "lambda")
            )
        }
        other => panic!("{other:?}"),
    }
    // An origin that names no signing service needs SIGV4_SERVICE, and
    // the error says which agent.
    let err = with_agents(r#"{"web": {"url": "https://agent.example.com"}}"#).unwrap_err();
    assert_eq!(err.variable, "SIGV4_SERVICE");
    assert!(err.message.contains(r#"agent "web""#), "{err}");

    // The authenticator keeps the claims agents gate on; sessions are the
    // subject's by default with AUTH=jwt.
    assert_eq!(c.agents.gate_claims(), ["cognito:groups"]);
    assert_eq!(c.session_scope, SessionScope::None, "AUTH=none: no subject");

    // The second runtime's ARN and account are secrets of their own.
    let secrets: Vec<&str> = c.sensitive_values.iter().map(Secret::expose).collect();
    assert!(secrets.contains(&SECOND_ARN), "{secrets:?}");
    assert!(!format!("{c:?}").contains("210987654321"));
}

#[test]
fn origin_url_is_the_endpoint_of_every_arn() {
    let mut vars = base();
    let agents = format!(r#"{{"sales": {{"arn": "{SECOND_ARN}"}}}}"#);
    vars.extend([("ORIGIN_URL", "http://127.0.0.1:9000"), ("AGENTS", &agents)]);
    let c = config(&vars).unwrap();
    for agent in c.agents.iter() {
        assert_eq!(agent.origin.base_url.to_string(), "http://127.0.0.1:9000/");
        assert!(agent.origin.runtime.is_some());
    }
}

#[test]
fn default_agent_names_an_agent_of_agents() {
    let agents =
        format!(r#"{{"support": {{"arn": "{ARN}"}}, "sales": {{"arn": "{SECOND_ARN}"}}}}"#);
    let mut vars: Vec<(&str, &str)> = base()
        .into_iter()
        .filter(|(name, _)| *name != "AGENT_RUNTIME_ARN")
        .collect();
    vars.push(("AGENTS", &agents));
    let c = config(&vars).unwrap();
    assert!(
        c.agents.default_agent().is_none(),
        "no default: only named agents"
    );
    assert_eq!(c.agents.iter().count(), 2);

    vars.push(("DEFAULT_AGENT", "sales"));
    let c = config(&vars).unwrap();
    assert_eq!(c.agents.default_agent().unwrap().name, "sales");

    vars.pop();
    vars.push(("DEFAULT_AGENT", "nobody"));
    assert_eq!(config(&vars).unwrap_err().variable, "DEFAULT_AGENT");
    // The ARN's agent is the default already.
    let mut both = base();
    both.extend([("AGENTS", agents.as_str()), ("DEFAULT_AGENT", "sales")]);
    assert_eq!(config(&both).unwrap_err().variable, "DEFAULT_AGENT");
}

#[test]
fn agents_errors_name_the_variable_and_never_quote_an_arn() {
    let bad_account = "arn:aws:bedrock-agentcore:us-west-2:1234:runtime/secret-Runtime-Id";
    let cases = [
        "not json".to_owned(),
        "[]".to_owned(),
        "{}".to_owned(),
        format!(r#"{{"Sales": {{"arn": "{ARN}"}}}}"#),
        format!(r#"{{"{ARN}": {{"arn": "{ARN}"}}}}"#),
        format!(r#"{{"a": {{"arn": "{ARN}"}}, "a": {{"arn": "{ARN}"}}}}"#),
        format!(r#"{{"default": {{"arn": "{ARN}"}}}}"#),
        format!(r#"{{"a": "{ARN}"}}"#),
        format!(r#"{{"a": {{"arn": "{bad_account}"}}}}"#),
        format!(r#"{{"a": {{"arn": "{ARN}", "url": "https://x.example"}}}}"#),
        r#"{"a": {}}"#.to_owned(),
        r#"{"a": {"url": "ftp://x"}}"#.to_owned(),
        r#"{"a": {"url": "https://x.example", "qualifier": "prod"}}"#.to_owned(),
        format!(r#"{{"a": {{"arn": "{ARN}", "qualifier": ""}}}}"#),
        format!(r#"{{"a": {{"arn": "{ARN}", "arn": "{ARN}"}}}}"#),
        format!(r#"{{"a": {{"arn": "{ARN}", "{bad_account}": 1}}}}"#),
        format!(r#"{{"a": {{"arn": "{ARN}", "requireClaims": {{"groups": []}}}}}}"#),
        format!(r#"{{"a": {{"arn": "{ARN}", "requireClaims": {{"groups": "x"}}}}}}"#),
        format!(r#"{{"a": {{"arn": "{ARN}", "requireClaims": ["groups"]}}}}"#),
        format!(r#"{{"a": {{"arn": "{ARN}", "description": 7}}}}"#),
        format!(
            r#"{{"a": {{"arn": "{ARN}", "description": "{}"}}}}"#,
            "d".repeat(257)
        ),
        format!(r#"{{"{}": {{"arn": "{ARN}"}}}}"#, "a".repeat(65)),
    ];
    for agents in &cases {
        let err = with_agents(agents).unwrap_err();
        assert_eq!(err.variable, "AGENTS", "{agents}: {err}");
        let text = err.to_string();
        for secret in ["123456789012", "1234:", "secret-Runtime-Id", "AbC123"] {
            assert!(!text.contains(secret), "{text}");
        }
    }
    assert!(
        with_agents(&format!(r#"{{"a": {{"arn": "{bad_account}"}}}}"#))
            .unwrap_err()
            .to_string()
            .contains(r#"agent "a": arn: the account part must be 12 digits"#)
    );
}

#[test]
fn session_scope_defaults_to_subject_with_jwt() {
    let mut vars = base();
    vars.retain(|(name, _)| *name != "AUTH");
    vars.extend([
        ("JWT_ISSUER", "https://issuer.example"),
        ("JWT_AUDIENCE", "app"),
    ]);
    let c = config(&vars).unwrap();
    assert_eq!(c.session_scope, SessionScope::Subject);
    let AuthConfig::Jwt(jwt) = &c.auth else {
        panic!("jwt")
    };
    assert!(jwt.require_subject, "a session needs its subject");
    vars.push(("SESSION_SCOPE", "none"));
    let c = config(&vars).unwrap();
    assert_eq!(c.session_scope, SessionScope::None);
    let AuthConfig::Jwt(jwt) = &c.auth else {
        panic!("jwt")
    };
    assert!(!jwt.require_subject);

    let mut open = base();
    open.push(("SESSION_SCOPE", "subject"));
    assert_eq!(config(&open).unwrap_err().variable, "SESSION_SCOPE");
    open.pop();
    open.push(("SESSION_SCOPE", "tenant"));
    assert_eq!(config(&open).unwrap_err().variable, "SESSION_SCOPE");
}

#[test]
fn agent_names_are_a_safe_charset() {
    for good in ["a", "support", "sales-eu_2", &"x".repeat(64)] {
        assert!(is_agent_name(good), "{good}");
    }
    for bad in ["", "Sales", "a b", "a/b", "a.b", "é", &"x".repeat(65)] {
        assert!(!is_agent_name(bad), "{bad}");
    }
}
