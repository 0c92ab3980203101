//! Provider-shaped usage (OpenAI, Anthropic, Gemini response `usage` objects) converted into the
//! canonical disjoint buckets of [`Usage`], so nothing is counted twice.

use serde_json::Value;

use super::Usage;
use crate::Error;

fn count(v: &Value, path: &[&str], field: &str) -> Result<u64, Error> {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(next) if !next.is_null() => cur = next,
            _ => return Ok(0),
        }
    }
    cur.as_u64()
        .ok_or_else(|| Error::invalid(field, format!("must be a non-negative integer, got {cur}")))
}

/// The first of several spellings that is present (camelCase / snake_case).
fn count_any(v: &Value, paths: &[&[&str]], field: &str) -> Result<u64, Error> {
    for p in paths {
        let mut cur = Some(v);
        for seg in *p {
            cur = cur.and_then(|c| c.get(seg)).filter(|c| !c.is_null());
        }
        if cur.is_some() {
            return count(v, p, field);
        }
    }
    Ok(0)
}

fn part_of(part: u64, part_name: &str, whole: u64, whole_name: &str) -> Result<u64, Error> {
    whole.checked_sub(part).ok_or_else(|| {
        Error::invalid(
            part_name,
            format!("must be <= {whole_name} ({whole}) because it is included in it, got {part}"),
        )
    })
}

/// A provider's usage object (the `usage` of an OpenAI, Anthropic or Gemini SDK response, as the
/// SDK returns it) converted by the adapter its shape calls for: chosen by `provider` when it
/// names one (`openai`/`azure`, `anthropic`, `gemini`/`google`/`vertex_ai`), else by the keys
/// present. The language bindings accept provider usage through this one function.
pub fn provider_shaped(provider: Option<&str>, usage: &Value) -> Result<Usage, Error> {
    #[derive(Clone, Copy)]
    enum Shape {
        OpenAi,
        Anthropic,
        Gemini,
    }
    let by_provider = provider.and_then(|p| match p.to_ascii_lowercase().as_str() {
        "openai" | "azure" | "azure_openai" => Some(Shape::OpenAi),
        "anthropic" => Some(Shape::Anthropic),
        "gemini" | "google" | "vertex_ai" | "vertex" => Some(Shape::Gemini),
        _ => None,
    });
    let has = |k: &str| usage.get(k).is_some_and(|v| !v.is_null());
    let shape = by_provider.or_else(|| {
        if has("prompt_tokens")
            || has("completion_tokens")
            || has("input_tokens_details")
            || has("output_tokens_details")
        {
            Some(Shape::OpenAi)
        } else if has("cache_read_input_tokens")
            || has("cache_creation_input_tokens")
            || has("cache_creation")
        {
            Some(Shape::Anthropic)
        } else if [
            "promptTokenCount",
            "prompt_token_count",
            "candidatesTokenCount",
            "candidates_token_count",
        ]
        .iter()
        .any(|k| has(k))
        {
            Some(Shape::Gemini)
        } else if has("input_tokens") || has("output_tokens") {
            // Anthropic's input_tokens exclude cache reads and writes, like the canonical buckets.
            Some(Shape::Anthropic)
        } else {
            None
        }
    });
    match shape {
        Some(Shape::OpenAi) => openai(usage),
        Some(Shape::Anthropic) => anthropic(usage),
        Some(Shape::Gemini) => gemini(usage),
        None => Err(Error::invalid(
            "usage",
            format!(
                "unknown shape: expected the canonical buckets ({}) or an OpenAI, Anthropic or \
                 Gemini usage object",
                crate::event::USAGE_BUCKETS.join(", ")
            ),
        )),
    }
}

/// OpenAI usage, Chat Completions (`prompt_tokens`, `completion_tokens`, `*_details`) or
/// Responses (`input_tokens`, `output_tokens`, `*_details`) shape. The prompt count includes
/// cached tokens and the completion count includes reasoning. One request.
pub fn openai(usage: &Value) -> Result<Usage, Error> {
    let responses = usage.get("input_tokens").is_some() || usage.get("output_tokens").is_some();
    let (p, c, pd, cd) = if responses {
        (
            "input_tokens",
            "output_tokens",
            "input_tokens_details",
            "output_tokens_details",
        )
    } else {
        (
            "prompt_tokens",
            "completion_tokens",
            "prompt_tokens_details",
            "completion_tokens_details",
        )
    };
    let prompt = count(usage, &[p], &format!("usage.{p}"))?;
    let cached = count(
        usage,
        &[pd, "cached_tokens"],
        &format!("usage.{pd}.cached_tokens"),
    )?;
    let output = count(usage, &[c], &format!("usage.{c}"))?;
    let reasoning = count(
        usage,
        &[cd, "reasoning_tokens"],
        &format!("usage.{cd}.reasoning_tokens"),
    )?;
    let input = part_of(
        cached,
        &format!("usage.{pd}.cached_tokens"),
        prompt,
        &format!("usage.{p}"),
    )?;
    part_of(
        reasoning,
        &format!("usage.{cd}.reasoning_tokens"),
        output,
        &format!("usage.{c}"),
    )?;
    Ok(Usage {
        input_tokens: input,
        cached_input_tokens: cached,
        output_tokens: output,
        reasoning_tokens: reasoning,
        requests: 1,
        ..Usage::default()
    })
}

/// Anthropic Messages usage: `input_tokens` excludes cache reads and writes;
/// `cache_creation.ephemeral_1h_input_tokens` / `ephemeral_5m_input_tokens` split the writes
/// when present, else `cache_creation_input_tokens` are 5-minute writes. One request.
pub fn anthropic(usage: &Value) -> Result<Usage, Error> {
    let input = count(usage, &["input_tokens"], "usage.input_tokens")?;
    let read = count(
        usage,
        &["cache_read_input_tokens"],
        "usage.cache_read_input_tokens",
    )?;
    let writes = count(
        usage,
        &["cache_creation_input_tokens"],
        "usage.cache_creation_input_tokens",
    )?;
    let output = count(usage, &["output_tokens"], "usage.output_tokens")?;
    let (w5m, w1h) = match usage.get("cache_creation").filter(|v| v.is_object()) {
        Some(_) => (
            count(
                usage,
                &["cache_creation", "ephemeral_5m_input_tokens"],
                "usage.cache_creation.ephemeral_5m_input_tokens",
            )?,
            count(
                usage,
                &["cache_creation", "ephemeral_1h_input_tokens"],
                "usage.cache_creation.ephemeral_1h_input_tokens",
            )?,
        ),
        None => (writes, 0),
    };
    Ok(Usage {
        input_tokens: input,
        cached_input_tokens: read,
        cache_write_tokens: w5m,
        cache_write_1h_tokens: w1h,
        output_tokens: output,
        requests: 1,
        ..Usage::default()
    })
}

/// Gemini `usageMetadata` (camelCase or snake_case): `promptTokenCount` includes
/// `cachedContentTokenCount`; `toolUsePromptTokenCount` is extra prompt input; thoughts are
/// reported apart from candidates, so output = candidates + thoughts and reasoning = thoughts.
pub fn gemini(usage: &Value) -> Result<Usage, Error> {
    let prompt = count_any(
        usage,
        &[&["promptTokenCount"], &["prompt_token_count"]],
        "usage.promptTokenCount",
    )?;
    let cached = count_any(
        usage,
        &[
            &["cachedContentTokenCount"],
            &["cached_content_token_count"],
        ],
        "usage.cachedContentTokenCount",
    )?;
    let tool = count_any(
        usage,
        &[
            &["toolUsePromptTokenCount"],
            &["tool_use_prompt_token_count"],
        ],
        "usage.toolUsePromptTokenCount",
    )?;
    let candidates = count_any(
        usage,
        &[&["candidatesTokenCount"], &["candidates_token_count"]],
        "usage.candidatesTokenCount",
    )?;
    let thoughts = count_any(
        usage,
        &[&["thoughtsTokenCount"], &["thoughts_token_count"]],
        "usage.thoughtsTokenCount",
    )?;
    let input = part_of(
        cached,
        "usage.cachedContentTokenCount",
        prompt,
        "usage.promptTokenCount",
    )?;
    Ok(Usage {
        input_tokens: input.saturating_add(tool),
        cached_input_tokens: cached,
        output_tokens: candidates.saturating_add(thoughts),
        reasoning_tokens: thoughts,
        requests: 1,
        ..Usage::default()
    })
}

impl Usage {
    /// See [`openai`].
    pub fn from_openai(usage: &Value) -> Result<Usage, Error> {
        openai(usage)
    }

    /// See [`anthropic`].
    pub fn from_anthropic(usage: &Value) -> Result<Usage, Error> {
        anthropic(usage)
    }

    /// See [`gemini`].
    pub fn from_gemini(usage: &Value) -> Result<Usage, Error> {
        gemini(usage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn provider_shaped_picks_the_adapter_by_name_then_by_keys() {
        let oa = json!({"prompt_tokens": 100, "completion_tokens": 20,
                        "prompt_tokens_details": {"cached_tokens": 40}});
        let u = provider_shaped(None, &oa).expect("openai by keys");
        assert_eq!(
            (u.input_tokens, u.cached_input_tokens, u.output_tokens),
            (60, 40, 20)
        );
        // Anthropic's input_tokens exclude cache reads: taken as they are, by name or by keys.
        let an = json!({"input_tokens": 100, "output_tokens": 20, "cache_read_input_tokens": 40});
        for p in [Some("anthropic"), None] {
            let u = provider_shaped(p, &an).expect("anthropic");
            assert_eq!((u.input_tokens, u.cached_input_tokens), (100, 40));
        }
        let ge = json!({"promptTokenCount": 10, "candidatesTokenCount": 5});
        assert_eq!(provider_shaped(None, &ge).expect("gemini").output_tokens, 5);
        let err = provider_shaped(None, &json!({"tokens": 3})).expect_err("unknown");
        assert!(
            err.to_string().starts_with("event.usage: unknown shape"),
            "{err}"
        );
    }
}
