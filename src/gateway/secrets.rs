//! What the scrubber must know of a configuration: every secret
//! variable's value ([`crate::config::Variable::secret`]) and every
//! runtime's ARN and account id, each also in the forms the origin request carries it
//! (percent-encoded in the path with upper- and lower-case hex, and encoded
//! twice as in a SigV4 canonical request).

use crate::config::Config;
use crate::origin::encode_path_segment;
use crate::scrub::Scrubber;

/// The scrubber of `config`.
pub fn scrubber(config: &Config) -> Scrubber {
    let accounts = config.agents.runtimes().map(|rt| rt.account_id.as_str());
    let values = config
        .sensitive_values
        .iter()
        .map(|s| s.expose())
        .chain(accounts);
    let mut known = Vec::new();
    for value in values {
        let encoded = encode_path_segment(value);
        let lower = lower_hex(&encoded);
        known.push(value.to_owned());
        known.push(encoded.replace('%', "%25"));
        known.push(lower.replace('%', "%25"));
        known.push(lower);
        known.push(encoded);
    }
    Scrubber::with_known(known)
}

/// A percent-encoded text with lower-case hex digits (`%3a`, not `%3A`).
fn lower_hex(encoded: &str) -> String {
    let mut out = String::with_capacity(encoded.len());
    let mut rest = encoded;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3).unwrap_or(&rest[at..]);
        out.push_str(&escape.to_ascii_lowercase());
        rest = &rest[at + escape.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:bedrock-agentcore:us-west-2:123456789012:runtime/demo_agent-AbC123";

    fn scrubber() -> Scrubber {
        let vars = [
            ("AGENT_RUNTIME_ARN", ARN),
            ("AWS_REGION", "us-west-2"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLEKEYID"),
            (
                "AWS_SECRET_ACCESS_KEY",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            ),
            ("AWS_SESSION_TOKEN", "IQoJb3JpZ2luX2VjSessionTokenValue"),
            ("AUTH", "none"),
        ];
        let config = Config::from_lookup(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
        .expect("a valid configuration");
        super::scrubber(&config)
    }

    #[test]
    fn configured_secrets_and_their_encodings_are_removed() {
        let encoded = encode_path_segment(ARN);
        let lower = lower_hex(&encoded);
        assert!(lower.contains("%3abedrock-agentcore%3a") && lower.contains("AbC123"));
        let twice = encoded.replace('%', "%25");
        let text = format!(
            "{ARN} /runtimes/{encoded}/x {lower} {twice} account:123456789012: \
             AKIDEXAMPLEKEYID wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY \
             token=IQoJb3JpZ2luX2VjSessionTokenValue x%3A123456789012%3Ay"
        );
        let clean = scrubber().scrub(&text);
        for secret in [
            ARN,
            encoded.as_str(),
            lower.as_str(),
            twice.as_str(),
            "123456789012",
            "AKIDEXAMPLEKEYID",
            "wJalrXUtnFEMI",
            "IQoJb3JpZ2luX2VjSessionTokenValue",
        ] {
            assert!(!clean.contains(secret), "{secret} in {clean}");
        }
        assert!(clean.contains("/runtimes/[redacted]/x"), "{clean}");
    }
}
