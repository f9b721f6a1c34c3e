//! Arbitrary text into the code decoder: every stage must refuse with a reason, never panic,
//! never spend more than the token bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let keys = yunnao_codes::KeySet::new();
    let text = String::from_utf8_lossy(data);
    let verdict = yunnao_codes::verify(&text, &keys, 1_800_000_000);
    assert!(verdict.valid() || verdict.error.is_some());
    // Behind a valid prefix, to reach base45, zlib, COSE and CBOR.
    let prefixed = format!("QD1:{text}");
    let verdict = yunnao_codes::verify(&prefixed, &keys, 1_800_000_000);
    assert!(verdict.valid() || verdict.error.is_some());
});
