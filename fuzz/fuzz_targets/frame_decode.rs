//! Any bytes through the frame decoder: a length-prefixed stream and a single body.
//! Must never panic; whatever decodes must encode back to the same frame.
#![no_main]

use blazedb_net::frame::{FRAME_MAX, Frame, HANDSHAKE_FRAME_MAX, decode_stream};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_stream(data, HANDSHAKE_FRAME_MAX);
    let _ = decode_stream(data, FRAME_MAX);
    if let Ok(f) = Frame::decode(data) {
        let again = Frame::decode(&f.encode()).expect("an encoded frame decodes");
        assert_eq!(again, f);
    }
});
