//! Untrusted batch bodies: decoding and validation must never panic, and every accepted event
//! must re-encode to JSON that decodes to the same event.
#![no_main]

use agenttally::{AnalyticsEvent, Batch, BatchLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(decoded) = Batch::decode(data, &BatchLimits::V1) {
        for e in decoded.events.into_iter().flatten() {
            let json = e.to_json();
            assert_eq!(json.len(), e.encoded_len());
            let back = AnalyticsEvent::from_json(&json).expect("an accepted event re-decodes");
            assert_eq!(back, e);
        }
    }
});
