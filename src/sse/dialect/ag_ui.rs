//! AG-UI, the Agent User Interaction Protocol (CopilotKit's; what AgentCore
//! Runtime's `AGUI` protocol streams): JSON events whose `type` is a name in
//! SCREAMING_SNAKE_CASE. This module owns what transformed mode takes from
//! them:
//! - text: the `delta` of `TEXT_MESSAGE_CONTENT` and `TEXT_MESSAGE_CHUNK`;
//! - `RUN_ERROR`: the agent's error, its `code` as the label of its `message`;
//! - `RUN_FINISHED` and `RUN_ERROR`, the run's last event: they end the
//!   answer (as OpenAI's `[DONE]` does), with the run's token `usage` when
//!   they carry one (AG-UI's `TokenUsage[]`, one entry per provider and
//!   model; its counts are summed).
//!
//! Nothing else is read from an AG-UI event: tool calls, state, snapshots,
//! steps, reasoning, `CUSTOM`, nor `RAW`, whose `event` can wrap another
//! dialect's event that the run also streams as AG-UI text.
//!
//! Event names and fields: `@ag-ui/core`'s `events.ts`
//! (<https://github.com/ag-ui-protocol/ag-ui>).

use serde_json::{Map, Value};

use super::{Extractor, ObjOrStr, Payload};

/// The counts of AG-UI's `TokenUsage`. Its `provider` and `model` labels are
/// left out: the entries of several models sum into one usage.
const TOKEN_COUNTS: [&str; 5] = [
    "inputTokens",
    "outputTokens",
    "totalTokens",
    "reasoningTokens",
    "cachedInputTokens",
];

/// An AG-UI event name: upper-case ASCII letters and underscores, as every
/// AG-UI event type is and no other dialect's `type` is (Anthropic's are
/// lower case).
pub(super) fn is_ag_ui_type(kind: &str) -> bool {
    kind.as_bytes().first().is_some_and(u8::is_ascii_uppercase)
        && kind.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
}

impl Extractor {
    /// Takes what an AG-UI event carries (see the module doc).
    pub(super) fn on_ag_ui(&mut self, payload: &Payload<'_>, is_error_event: bool) {
        match payload.kind.as_deref() {
            Some("TEXT_MESSAGE_CONTENT" | "TEXT_MESSAGE_CHUNK") => {
                if let Some(ObjOrStr::Str(text)) = &payload.delta {
                    self.text(text.as_bytes());
                }
            }
            Some("RUN_ERROR") => {
                let label = match &payload.code {
                    Some(ObjOrStr::Str(code)) => Some(code.as_ref()),
                    _ => None,
                };
                let message = match &payload.message {
                    Some(ObjOrStr::Str(message)) => message.as_ref(),
                    _ => "the agent reported an error",
                };
                self.agent_error(label, message);
                self.add_run_usage(payload.usage.as_deref());
                self.done = true;
            }
            Some("RUN_FINISHED") => {
                self.add_run_usage(payload.usage.as_deref());
                self.done = true;
            }
            _ => {}
        }
        // `event: error` is an error whatever its data (after RUN_ERROR's
        // own message, which wins as the first).
        if is_error_event {
            self.agent_error(None, "the agent reported an error");
        }
    }

    /// Adds the counts of a `TokenUsage[]`; anything else is not usage.
    fn add_run_usage(&mut self, usage: Option<&Value>) {
        let Some(Value::Array(entries)) = usage else {
            return;
        };
        for entry in entries {
            let counts: Map<String, Value> = TOKEN_COUNTS
                .iter()
                .filter_map(|&key| {
                    let count = entry.get(key).filter(|count| count.is_number())?;
                    Some((key.to_owned(), count.clone()))
                })
                .collect();
            if !counts.is_empty() {
                self.add_usage(Value::Object(counts));
            }
        }
    }
}
