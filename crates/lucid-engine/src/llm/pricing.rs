//! A small price table for showing the live cost of a session.
//!
//! Prices are list prices in USD per million tokens (standard tier, short contexts). They are
//! estimates: Anthropic cache writes are counted at the plain input price, long-context and
//! batch prices are ignored. Unknown models have no estimate.

use super::Usage;

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelPrice {
    pub input: f64,
    pub output: f64,
    /// Input tokens served from the prompt cache.
    pub cached_input: f64,
}

const fn price(input: f64, output: f64, cached_input: f64) -> ModelPrice {
    ModelPrice {
        input,
        output,
        cached_input,
    }
}

/// Model name prefixes and their prices; the longest matching prefix wins.
const PRICES: &[(&str, ModelPrice)] = &[
    // Anthropic
    ("claude-opus-4-5", price(5.0, 25.0, 0.5)),
    ("claude-opus-4-1", price(15.0, 75.0, 1.5)),
    ("claude-opus-4", price(15.0, 75.0, 1.5)),
    ("claude-sonnet-4-5", price(3.0, 15.0, 0.3)),
    ("claude-sonnet-4", price(3.0, 15.0, 0.3)),
    ("claude-3-7-sonnet", price(3.0, 15.0, 0.3)),
    ("claude-3-5-sonnet", price(3.0, 15.0, 0.3)),
    ("claude-haiku-4-5", price(1.0, 5.0, 0.1)),
    ("claude-3-5-haiku", price(0.8, 4.0, 0.08)),
    // Google
    ("gemini-2.5-pro", price(1.25, 10.0, 0.31)),
    ("gemini-2.5-flash", price(0.3, 2.5, 0.075)),
    ("gemini-2.5-flash-lite", price(0.1, 0.4, 0.025)),
    ("gemini-2.0-flash", price(0.1, 0.4, 0.025)),
    // OpenAI
    ("gpt-4.1", price(2.0, 8.0, 0.5)),
    ("gpt-4.1-mini", price(0.4, 1.6, 0.1)),
    ("gpt-4.1-nano", price(0.1, 0.4, 0.025)),
    ("gpt-4o", price(2.5, 10.0, 1.25)),
    ("gpt-4o-mini", price(0.15, 0.6, 0.075)),
    ("gpt-5", price(1.25, 10.0, 0.125)),
    ("gpt-5-mini", price(0.25, 2.0, 0.025)),
    ("o4-mini", price(1.1, 4.4, 0.275)),
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

/// Estimated cost in USD of one request's usage; `None` for models without a known price.
pub fn estimate_cost_usd(model: &str, usage: &Usage) -> Option<f64> {
    let price = model_price(model)?;
    let cached = usage.cached_input_tokens.min(usage.input_tokens);
    let uncached = usage.input_tokens - cached;
    let total = uncached as f64 * price.input
        + cached as f64 * price.cached_input
        + usage.output_tokens as f64 * price.output;
    Some(total / 1_000_000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: u64, output: u64, cached: u64) -> Usage {
        Usage {
            input_tokens: input,
            output_tokens: output,
            cached_input_tokens: cached,
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
}
