//! Pricing at ingest: the collector's price book (sdk-core's built-in book, with an optional
//! LiteLLM-format file layered over it) and the rule for which events it prices. The prices
//! themselves are sdk-core's (`PriceBook::price_event`): one definition of a price.

use std::path::Path;

use agenttally::pricing::PriceBook;
use agenttally::AnalyticsEvent;

use crate::error::{Error, Result};

/// The book events are priced with: `PriceBook::builtin()`, with the entries of the LiteLLM file
/// at `price_file` (if any) layered over it, so a file entry wins for its model while in effect.
/// A file that cannot be read or is not a JSON object is a configuration error; single entries
/// the import skips are logged.
pub fn load_book(price_file: Option<&Path>) -> Result<PriceBook> {
    let builtin = PriceBook::builtin();
    let Some(path) = price_file else {
        return Ok(builtin);
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("price_file: cannot read `{}`: {e}", path.display())))?;
    let (file, report) = PriceBook::from_litellm_json(&text)
        .map_err(|e| Error::Config(format!("price_file `{}`: {e}", path.display())))?;
    if !report.skipped.is_empty() {
        tracing::warn!(
            "price file `{}`: {} entries skipped ({:?})",
            path.display(),
            report.skipped.len(),
            report.skipped_by_reason()
        );
    }
    tracing::info!(
        "price file `{}`: {} models layered over the built-in book",
        path.display(),
        file.len()
    );
    Ok(builtin.with_overrides(&file))
}

/// Price `event` if the sender did not: an event with neither `cost_usd` nor `cost_status` is
/// priced from its usage (an unknown model becomes `unpriced`, cost absent); a cost the sender
/// gave is kept (`reported` when it came without a status); a status without a cost (the sender
/// priced it and could not) is left as sent.
pub fn price_at_ingest(book: &PriceBook, event: &mut AnalyticsEvent) {
    if event.cost_usd.is_none() && event.cost_status.is_some() {
        return;
    }
    book.price_event(event);
}

#[cfg(test)]
mod tests {
    use super::*;
    use agenttally::{CostStatus, ProviderEvent, Usage};

    fn call(model: &str) -> AnalyticsEvent {
        ProviderEvent::api_call("t", "openai", model)
            .usage(Usage {
                input_tokens: 1_000,
                output_tokens: 100,
                requests: 1,
                ..Usage::default()
            })
            .build()
            .expect("event")
    }

    #[test]
    fn a_missing_file_is_a_config_error_naming_it() {
        let e = load_book(Some(Path::new("no/such/prices.json"))).expect_err("missing");
        assert!(
            e.to_string()
                .contains("price_file: cannot read `no/such/prices.json`"),
            "{e}"
        );
    }

    #[test]
    fn a_status_without_a_cost_is_left_as_sent() {
        let book = PriceBook::builtin();
        let mut e = call("gpt-4o");
        e.cost_status = Some(CostStatus::Unpriced);
        price_at_ingest(&book, &mut e);
        assert_eq!(
            (e.cost_usd, e.cost_status),
            (None, Some(CostStatus::Unpriced))
        );
        let mut e = call("gpt-4o");
        price_at_ingest(&book, &mut e);
        assert_eq!(e.cost_status, Some(CostStatus::Priced));
        assert!(e.cost_usd.is_some() && e.price_version.is_some());
    }
}
