//! Original mode gives back exactly the bytes it was fed; transformed mode
//! never panics and always ends with the trailer, in valid UTF-8.
#![no_main]

use agent_edge::config::ResponseMode;
use agent_edge::sse::{OriginBodyKind, Transformer, TransformerOptions};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fn run(mode: ResponseMode, limit: usize, stream: &[u8], chunk: usize) -> Vec<u8> {
    let options = TransformerOptions {
        mode,
        body_kind: OriginBodyKind::EventStream,
        max_event_bytes: limit,
        keepalive_ms: Some(1000),
        session_id: "fuzz-session".to_owned(),
        // The meter parses what original mode relays: fuzz it too.
        meter: true,
    };
    let mut transformer = Transformer::new(options, 0);
    let mut out = Vec::new();
    for piece in stream.chunks(chunk) {
        out.extend_from_slice(&transformer.push(Bytes::copy_from_slice(piece), 1));
    }
    out.extend_from_slice(&transformer.finish(None));
    out
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunk size and the event size limit.
    let Some((&knob, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(knob % 32) + 1;
    assert_eq!(run(ResponseMode::Original, 1 << 20, stream, chunk), stream);
    let limit = if knob & 0x80 != 0 { 64 } else { 1 << 20 };
    let transformed = run(ResponseMode::Transformed, limit, stream, chunk);
    let text = std::str::from_utf8(&transformed).expect("transformed output is UTF-8");
    assert!(text.ends_with(r#"{"runtimeSessionId":"fuzz-session"}"#));
});
