//! The parser never panics, and feeding a stream in small chunks gives the
//! same events (and the same limit error) as feeding it whole.
#![no_main]

use agent_edge::sse::Parser;
use libfuzzer_sys::fuzz_target;

type Events = (Vec<(String, Vec<u8>, String)>, bool);

fn events(stream: &[u8], chunk: usize, limit: usize) -> Events {
    let mut parser = Parser::new(limit);
    let mut events = Vec::new();
    for piece in stream.chunks(chunk) {
        let mut input = piece;
        loop {
            match parser.next_event(&mut input) {
                Ok(Some(ev)) => events.push((ev.event.into(), ev.data.into(), ev.id.into())),
                Ok(None) => break,
                Err(_) => return (events, true),
            }
        }
    }
    (events, false)
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunk size and the event size limit.
    let Some((&knob, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(knob % 16) + 1;
    let limit = if knob & 0x80 != 0 { 64 } else { 1 << 20 };
    assert_eq!(events(stream, stream.len().max(1), limit), events(stream, chunk, limit));
});
