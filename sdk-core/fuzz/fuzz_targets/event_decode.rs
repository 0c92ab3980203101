//! Untrusted single events: decode + validate never panics.
#![no_main]

use agenttally::AnalyticsEvent;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = AnalyticsEvent::from_slice(data) {
        assert!(e.validate().is_ok());
    }
});
