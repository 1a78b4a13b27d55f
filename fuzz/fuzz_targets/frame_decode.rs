//! Any bytes through the frame decoder: a length-prefixed stream and a single body.
//! Must never panic; whatever decodes must re-encode to bytes that decode to the same
//! encoding (compared as bytes: a NaN value is not equal to itself).
#![no_main]

use blazedb_net::frame::{FRAME_MAX, Frame, HANDSHAKE_FRAME_MAX, decode_stream};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_stream(data, HANDSHAKE_FRAME_MAX);
    let _ = decode_stream(data, FRAME_MAX);
    if let Ok(f) = Frame::decode(data) {
        let bytes = f.encode();
        let again = Frame::decode(&bytes).expect("an encoded frame decodes");
        assert_eq!(again.encode(), bytes);
    }
});
