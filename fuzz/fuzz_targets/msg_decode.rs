//! Any bytes as a sync message (the body of a `Sync` frame). Must never panic;
//! whatever decodes must re-encode to bytes that decode to the same encoding (compared
//! as bytes: a NaN value is not equal to itself).
#![no_main]

use blazedb_sync::Msg;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = postcard::from_bytes::<Msg>(data) {
        let bytes = postcard::to_allocvec(&m).expect("encodes");
        let again: Msg = postcard::from_bytes(&bytes).expect("an encoded message decodes");
        assert_eq!(postcard::to_allocvec(&again).expect("encodes"), bytes);
    }
});
