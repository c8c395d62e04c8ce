//! The agents the gateway fronts, by name: `AGENTS` (a JSON object of named
//! agents), the implicit agent of `AGENT_RUNTIME_ARN`/`ORIGIN_URL` (named
//! [`IMPLICIT_DEFAULT`]) and `DEFAULT_AGENT`, which `POST /invocations`
//! reaches. Each agent has its origin, an optional description and the
//! claims a caller needs (`requireClaims`).
//!
//! Parsed once at startup. Errors name `AGENTS` (or `DEFAULT_AGENT`) and the
//! agent, and never quote a value that may hold an ARN: a name is quoted
//! only once it is known to be a valid agent name.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{AgentRuntime, ConfigError, OriginConfig, RuntimePart, AGENTS};

/// The name of the agent of `AGENT_RUNTIME_ARN` (or `ORIGIN_URL` alone).
pub const IMPLICIT_DEFAULT: &str = "default";
/// Longest agent name.
pub const MAX_NAME_LEN: usize = 64;
/// Longest `description`, in characters (it is answered by `GET /agents`).
pub const MAX_DESCRIPTION_CHARS: usize = 256;

/// One agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// `[a-z0-9_-]{1,64}`: safe in a path, a log line and a hash input.
    pub name: String,
    pub origin: OriginConfig,
    pub description: Option<String>,
    /// Every rule must hold for a caller to use the agent.
    pub require_claims: Vec<ClaimRule>,
}

/// `"<claim>": ["<value>", ...]` of `requireClaims`: the claim must have one
/// of the values (a list claim: one of its members).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRule {
    pub claim: String,
    pub allowed: Vec<String>,
}

/// A verified token's claims that some agent gates on: each claim's values
/// as text (a string, a number or a boolean; each member of a list).
pub type CallerClaims = [(String, Vec<String>)];

impl Agent {
    /// Whether a caller with `claims` may use this agent.
    pub fn admits(&self, claims: &CallerClaims) -> bool {
        self.require_claims.iter().all(|rule| {
            claims
                .iter()
                .filter(|(name, _)| *name == rule.claim)
                .flat_map(|(_, values)| values)
                .any(|value| rule.allowed.contains(value))
        })
    }
}

/// Every agent, and which one is the default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agents {
    /// The implicit default first (if any), then `AGENTS` in its order.
    agents: Vec<Agent>,
    default: Option<usize>,
}

impl Agents {
    /// One agent, named [`IMPLICIT_DEFAULT`], the default.
    pub fn single(origin: OriginConfig) -> Agents {
        Agents {
            agents: vec![Agent {
                name: IMPLICIT_DEFAULT.to_owned(),
                origin,
                description: None,
                require_claims: Vec::new(),
            }],
            default: Some(0),
        }
    }

    /// None yet, and no default.
    pub(super) fn empty() -> Agents {
        Agents {
            agents: Vec::new(),
            default: None,
        }
    }

    pub(super) fn push(&mut self, agent: Agent) {
        self.agents.push(agent);
    }

    /// Makes `name` the default; whether there is such an agent.
    pub(super) fn set_default(&mut self, name: &str) -> bool {
        self.default = self.agents.iter().position(|a| a.name == name);
        self.default.is_some()
    }

    /// The agent named `name`.
    pub fn get(&self, name: &str) -> Option<&Agent> {
        self.agents.iter().find(|a| a.name == name)
    }

    /// The agent `POST /invocations` reaches, if there is one.
    pub fn default_agent(&self) -> Option<&Agent> {
        self.default.and_then(|i| self.agents.get(i))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Agent> {
        self.agents.iter()
    }

    /// The claims any agent gates on: the authenticator keeps these of a
    /// verified token.
    pub fn gate_claims(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .agents
            .iter()
            .flat_map(|a| a.require_claims.iter().map(|r| r.claim.clone()))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Every AgentCore runtime, for the scrubber.
    pub fn runtimes(&self) -> impl Iterator<Item = &AgentRuntime> {
        self.agents.iter().filter_map(|a| a.origin.runtime.as_ref())
    }
}

/// Whether `name` is a valid agent name, `[a-z0-9_-]{1,64}`.
pub fn is_agent_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// An agent of `AGENTS` before its origin is made: where it is.
pub(super) enum Place {
    /// `arn` (and `qualifier`): an AgentCore runtime.
    Runtime(AgentRuntime),
    /// `url`: any HTTP origin.
    Url(String),
}

/// An agent of `AGENTS` as written, its origin not yet made.
pub(super) struct Entry {
    pub name: String,
    pub place: Place,
    pub description: Option<String>,
    pub require_claims: Vec<ClaimRule>,
}

/// `AGENTS`, read: its entries in order. Names are valid and distinct.
pub(super) fn parse(json: &str) -> Result<Vec<Entry>, ConfigError> {
    let top: Entries = serde_json::from_str(json).map_err(|e| json_error("", &e))?;
    let mut entries: Vec<Entry> = Vec::new();
    for (name, value) in top.0 {
        if !is_agent_name(&name) {
            // Not quoted: a key that is no name may be anything, an ARN too.
            return Err(AGENTS.error(format!(
                "an agent name must be 1 to {MAX_NAME_LEN} characters of a-z, 0-9, _ and -"
            )));
        }
        if entries.iter().any(|e| e.name == name) {
            return Err(AGENTS.error(format!("agent \"{name}\" is named twice")));
        }
        let entry = parse_agent(&name, value.get())?;
        entries.push(entry);
    }
    if entries.is_empty() {
        return Err(AGENTS.error("names no agent (unset it instead)"));
    }
    Ok(entries)
}

fn parse_agent(name: &str, json: &str) -> Result<Entry, ConfigError> {
    let at = format!("agent \"{name}\"");
    let err = |message: String| AGENTS.error(format!("{at}: {message}"));
    let fields: Entries = serde_json::from_str(json).map_err(|e| json_error(&at, &e))?;
    let (mut arn, mut url, mut qualifier, mut description, mut claims) =
        (None, None, None, None, None);
    for (field, value) in fields.0 {
        let slot = match field.as_str() {
            "arn" => &mut arn,
            "url" => &mut url,
            "qualifier" => &mut qualifier,
            "description" => &mut description,
            "requireClaims" => &mut claims,
            other => {
                return Err(err(format!(
                    "unknown field {} (arn, url, qualifier, requireClaims, description)",
                    shown(other)
                )))
            }
        };
        if slot.replace(value).is_some() {
            return Err(err(format!("{field} is given twice")));
        }
    }
    let text = |field: &str, value: Option<Box<RawValue>>| -> Result<Option<String>, ConfigError> {
        value
            .map(|v| {
                serde_json::from_str::<String>(v.get())
                    .map_err(|_| err(format!("{field} must be a string")))
            })
            .transpose()
    };
    let place = match (text("arn", arn)?, text("url", url)?) {
        (Some(arn), None) => {
            let qualifier = text("qualifier", qualifier)?.unwrap_or_else(|| "DEFAULT".to_owned());
            let runtime = AgentRuntime::from_parts(&arn, qualifier).map_err(|part| {
                err(match part {
                    RuntimePart::Arn(why) => format!("arn: {why}"),
                    RuntimePart::Qualifier => "qualifier must be a non-empty word".to_owned(),
                })
            })?;
            Place::Runtime(runtime)
        }
        (None, Some(url)) => {
            if qualifier.is_some() {
                return Err(err("qualifier goes with arn, not url".to_owned()));
            }
            Place::Url(url)
        }
        _ => {
            return Err(err(
                "give either arn (AgentCore) or url (any origin)".to_owned()
            ))
        }
    };
    let description = text("description", description)?;
    if let Some(d) = &description {
        if d.chars().count() > MAX_DESCRIPTION_CHARS || d.chars().any(char::is_control) {
            return Err(err(format!(
                "description must be at most {MAX_DESCRIPTION_CHARS} characters, none a control character"
            )));
        }
    }
    let require_claims = match claims {
        None => Vec::new(),
        Some(raw) => parse_claims(raw.get()).map_err(err)?,
    };
    Ok(Entry {
        name: name.to_owned(),
        place,
        description,
        require_claims,
    })
}

/// `requireClaims`: `{"<claim>": ["<value>", ...], ...}`, each list non-empty.
fn parse_claims(json: &str) -> Result<Vec<ClaimRule>, String> {
    let shape = "requireClaims must map claim names to non-empty lists of strings";
    let rules: Entries = serde_json::from_str(json).map_err(|_| shape.to_owned())?;
    let mut out: Vec<ClaimRule> = Vec::new();
    for (claim, values) in rules.0 {
        let allowed: Vec<String> =
            serde_json::from_str(values.get()).map_err(|_| shape.to_owned())?;
        if claim.is_empty() || allowed.is_empty() {
            return Err(shape.to_owned());
        }
        if out.iter().any(|r| r.claim == claim) {
            return Err(format!("requireClaims names {} twice", shown(&claim)));
        }
        out.push(ClaimRule { claim, allowed });
    }
    Ok(out)
}

/// A key written back in an error: only a short plain word, which cannot be
/// an ARN or a key.
fn shown(key: &str) -> String {
    let plain = key.len() <= 32
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain {
        format!("\"{key}\"")
    } else {
        "(not shown)".to_owned()
    }
}

/// Where the JSON is wrong, never what it holds.
fn json_error(at: &str, e: &serde_json::Error) -> ConfigError {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => "is not valid JSON",
        Category::Data => "must be a JSON object",
    };
    let place = if at.is_empty() {
        String::new()
    } else {
        format!("{at}: ")
    };
    AGENTS.error(format!(
        "{place}{what} (line {}, column {})",
        e.line(),
        e.column()
    ))
}

/// A JSON object's members in order, duplicates kept (a map would keep
/// only the last of two, silently).
struct Entries(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, Box<RawValue>>()? {
                    members.push(member);
                }
                Ok(Entries(members))
            }
        }
        deserializer.deserialize_map(Members)
    }
}
