//! A small price table for the live cost of a session.
//!
//! Prices are list prices in USD per million tokens (standard tier, short contexts; long-context
//! and batch prices are ignored). Unknown models have no estimate. Prompt caching follows each
//! provider's published rules:
//! - Anthropic: cache writes (`cache_creation_input_tokens`, 5-minute cache) cost 1.25× the
//!   input price, cache reads (`cache_read_input_tokens`) 0.1× the input price;
//! - OpenAI: cached prompt tokens (`prompt_tokens_details.cached_tokens`) at the model's cached
//!   input price where the table has one, else at the input price; no write surcharge;
//! - Gemini: cached content tokens (`cachedContentTokenCount`) at the model's cached price
//!   (cache storage fees are not part of a request and are not counted).

use super::Usage;

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelPrice {
    pub input: f64,
    pub output: f64,
    /// Input tokens served from the prompt cache; `None`: charged as plain input.
    pub cached_input: Option<f64>,
    /// Input tokens written to the prompt cache; `None`: charged as plain input.
    pub cache_write: Option<f64>,
}

/// Anthropic: cache reads at 0.1×, cache writes at 1.25× the input price.
const fn anthropic(input: f64, output: f64) -> ModelPrice {
    ModelPrice {
        input,
        output,
        cached_input: Some(input * 0.1),
        cache_write: Some(input * 1.25),
    }
}

/// OpenAI and Gemini: a cached-input price, no write surcharge.
const fn cached(input: f64, output: f64, cached_input: f64) -> ModelPrice {
    ModelPrice {
        input,
        output,
        cached_input: Some(cached_input),
        cache_write: None,
    }
}

/// Model name prefixes and their prices; the longest matching prefix wins.
const PRICES: &[(&str, ModelPrice)] = &[
    // Anthropic
    ("claude-opus-4-5", anthropic(5.0, 25.0)),
    ("claude-opus-4-1", anthropic(15.0, 75.0)),
    ("claude-opus-4", anthropic(15.0, 75.0)),
    ("claude-sonnet-4-5", anthropic(3.0, 15.0)),
    ("claude-sonnet-4", anthropic(3.0, 15.0)),
    ("claude-3-7-sonnet", anthropic(3.0, 15.0)),
    ("claude-3-5-sonnet", anthropic(3.0, 15.0)),
    ("claude-haiku-4-5", anthropic(1.0, 5.0)),
    ("claude-3-5-haiku", anthropic(0.8, 4.0)),
    // Google
    ("gemini-2.5-pro", cached(1.25, 10.0, 0.31)),
    ("gemini-2.5-flash", cached(0.3, 2.5, 0.075)),
    ("gemini-2.5-flash-lite", cached(0.1, 0.4, 0.025)),
    ("gemini-2.0-flash", cached(0.1, 0.4, 0.025)),
    // OpenAI
    ("gpt-4.1", cached(2.0, 8.0, 0.5)),
    ("gpt-4.1-mini", cached(0.4, 1.6, 0.1)),
    ("gpt-4.1-nano", cached(0.1, 0.4, 0.025)),
    ("gpt-4o", cached(2.5, 10.0, 1.25)),
    ("gpt-4o-mini", cached(0.15, 0.6, 0.075)),
    ("gpt-5", cached(1.25, 10.0, 0.125)),
    ("gpt-5-mini", cached(0.25, 2.0, 0.025)),
    ("o4-mini", cached(1.1, 4.4, 0.275)),
];

/// The price of `model`, ignoring provider prefixes (`anthropic/`, `openai/`, `models/`, ...)
/// and version suffixes (`-20250929`, `-latest`).
pub fn model_price(model: &str) -> Option<ModelPrice> {
    let name = model.trim().to_ascii_lowercase();
    let name = name.rsplit('/').next().unwrap_or(&name);
    PRICES
        .iter()
        .filter(|(prefix, _)| {
            name.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['-', '@', ':']))
        })
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, price)| *price)
}

/// Context windows (tokens) by model name prefix; the longest matching prefix wins.
const WINDOWS: &[(&str, u64)] = &[
    ("claude-", 200_000),
    ("gemini-2.5", 1_048_576),
    ("gemini-2.0", 1_048_576),
    ("gemini-1.5-pro", 2_097_152),
    ("gemini-1.5", 1_048_576),
    ("gpt-4.1", 1_047_576),
    ("gpt-4o", 128_000),
    ("gpt-5", 400_000),
    ("o3", 200_000),
    ("o4-mini", 200_000),
];

/// Window assumed for models Lucid does not know (set `LUCID_CONTEXT_WINDOW` for them).
pub const DEFAULT_CONTEXT_WINDOW: u64 = 128_000;

/// The context window of `model` in tokens (prefixes like `anthropic/` ignored).
pub fn context_window(model: &str) -> u64 {
    let name = model.trim().to_ascii_lowercase();
    let name = name.rsplit('/').next().unwrap_or(&name);
    WINDOWS
        .iter()
        .filter(|(prefix, _)| name.starts_with(prefix))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, window)| *window)
        .unwrap_or(DEFAULT_CONTEXT_WINDOW)
}

/// Cost in USD of one request's usage at `price`. `usage.input_tokens` is the whole prompt:
/// cache reads and writes are the part of it priced at their own rates.
pub fn cost_usd(price: &ModelPrice, usage: &Usage) -> f64 {
    let cached = usage.cached_input_tokens.min(usage.input_tokens);
    let written = usage.cache_write_tokens.min(usage.input_tokens - cached);
    let plain = usage.input_tokens - cached - written;
    let total = plain as f64 * price.input
        + cached as f64 * price.cached_input.unwrap_or(price.input)
        + written as f64 * price.cache_write.unwrap_or(price.input)
        + usage.output_tokens as f64 * price.output;
    total / 1_000_000.0
}

/// Estimated cost in USD of one request's usage; `None` for models without a known price.
pub fn estimate_cost_usd(model: &str, usage: &Usage) -> Option<f64> {
    Some(cost_usd(&model_price(model)?, usage))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: u64, output: u64, cached: u64) -> Usage {
        Usage {
            input_tokens: input,
            output_tokens: output,
            cached_input_tokens: cached,
            cache_write_tokens: 0,
        }
    }

    #[test]
    fn longest_prefix_wins_and_prefixes_and_dates_are_ignored() {
        assert_eq!(model_price("gpt-4.1-mini").unwrap().input, 0.4);
        assert_eq!(model_price("gpt-4.1").unwrap().input, 2.0);
        assert_eq!(
            model_price("openai/gpt-4o-mini-2024-07-18").unwrap().input,
            0.15
        );
        assert_eq!(
            model_price("anthropic/claude-sonnet-4-5-20250929")
                .unwrap()
                .output,
            15.0
        );
        assert_eq!(model_price("claude-opus-4-5").unwrap().input, 5.0);
        assert_eq!(
            model_price("models/gemini-2.5-flash-lite").unwrap().input,
            0.1
        );
        assert_eq!(model_price("gemini-2.5-flash").unwrap().input, 0.3);
        assert_eq!(model_price("gpt-4.10"), None);
        assert_eq!(model_price("llama3.1:8b"), None);
    }

    #[test]
    fn cost_counts_cached_input_at_the_cache_price() {
        let cost =
            estimate_cost_usd("claude-sonnet-4-5", &usage(1_000_000, 100_000, 800_000)).unwrap();
        // 200k uncached * 3 + 800k cached * 0.3 + 100k output * 15 = 0.6 + 0.24 + 1.5
        assert!((cost - 2.34).abs() < 1e-9, "{cost}");
        assert_eq!(estimate_cost_usd("mystery-model", &usage(10, 10, 0)), None);
        let odd = estimate_cost_usd("gpt-4.1-mini", &usage(10, 0, 50)).unwrap();
        assert!((odd - 10.0 * 0.1 / 1e6).abs() < 1e-15, "{odd}");
    }

    #[test]
    fn anthropic_cache_writes_cost_more_and_reads_less() {
        // claude-sonnet-4-5: $3 input, $15 output; writes $3.75, reads $0.30 per million.
        let usage = Usage {
            input_tokens: 1_000 + 200_000 + 50_000,
            output_tokens: 2_000,
            cached_input_tokens: 200_000,
            cache_write_tokens: 50_000,
        };
        let cost = estimate_cost_usd("claude-sonnet-4-5", &usage).unwrap();
        let expected = (1_000.0 * 3.0 + 200_000.0 * 0.3 + 50_000.0 * 3.75 + 2_000.0 * 15.0) / 1e6;
        assert!((cost - expected).abs() < 1e-12, "{cost} vs {expected}");
        // The same usage on a provider without a write surcharge.
        let openai = estimate_cost_usd("gpt-4.1", &usage).unwrap();
        let expected = (51_000.0 * 2.0 + 200_000.0 * 0.5 + 2_000.0 * 8.0) / 1e6;
        assert!((openai - expected).abs() < 1e-12, "{openai} vs {expected}");
    }

    #[test]
    fn cached_tokens_without_a_cached_price_cost_the_input_price() {
        let price = ModelPrice {
            input: 1.0,
            output: 2.0,
            cached_input: None,
            cache_write: None,
        };
        let cost = cost_usd(&price, &usage(1_000_000, 0, 600_000));
        assert!((cost - 1.0).abs() < 1e-12, "{cost}");
    }

    #[test]
    fn context_windows_by_model() {
        assert_eq!(context_window("claude-sonnet-4-5-20250929"), 200_000);
        assert_eq!(context_window("models/gemini-2.5-flash"), 1_048_576);
        assert_eq!(context_window("gpt-4o-mini"), 128_000);
        assert_eq!(context_window("openai/gpt-4.1-mini"), 1_047_576);
        assert_eq!(context_window("llama3.1:8b"), DEFAULT_CONTEXT_WINDOW);
    }
}
