//! Frame and message decoding (node/src/p2p/wire.rs): any payload that decodes must
//! encode back to the same bytes, and a stream of frames parses without panics, each
//! frame re-encoding to exactly the bytes it took.
#![no_main]

use cairn_node::p2p::wire::{max_payload, FrameCodec, Message};
use libfuzzer_sys::fuzz_target;

const CODEC: FrameCodec = FrameCodec { magic: [0xb4, 0xf8, 0x34, 0xaa] };

fuzz_target!(|data: &[u8]| {
    // First byte: a command; the rest: its payload.
    if let Some((&command, payload)) = data.split_first() {
        if let Ok(msg) = Message::decode_payload(command, payload) {
            assert_eq!(msg.command(), command);
            assert_eq!(msg.encode_payload(), payload, "decode then encode changed the bytes");
            let frame = CODEC.encode(&msg);
            if payload.len() <= max_payload(command).unwrap_or(0) {
                assert_eq!(CODEC.parse(&frame), Ok(Some((msg, frame.len()))));
            }
        }
    }
    // The whole input as a byte stream from a peer.
    let mut rest = data;
    while let Ok(Some((msg, used))) = CODEC.parse(rest) {
        assert!(used >= 9 && used <= rest.len());
        assert_eq!(CODEC.encode(&msg), rest[..used]);
        rest = &rest[used..];
    }
});
