//! Choosing a provider, model, key and base URL for a session and building its client.
//!
//! Provider names are case-insensitive: `anthropic`; `google` (alias `gemini`); `openai`
//! (aliases `openai_compat`, `litellm`, `openrouter`, `ollama`). Precedence:
//! - provider: the request's → `DEFAULT_MODEL_PROVIDER`;
//! - key: the request's → the provider's own variable (`ANTHROPIC_API_KEY`, `GOOGLE_API_KEY`)
//!   → `LLM_API_KEY` (openai: the request's → `LLM_API_KEY`; none needed for a loopback
//!   base URL such as a local Ollama);
//! - model: the request's → `LLM_MODEL` → the provider's default. `LLM_MODEL` applies when it
//!   names this provider with a LiteLLM-style prefix (`anthropic/...`, `gemini/...`) or, without
//!   such a prefix, when this provider is the default provider. The native APIs get the model
//!   without its LiteLLM prefix.

use std::sync::Arc;

use super::anthropic::AnthropicClient;
use super::gemini::GeminiClient;
use super::openai_compat::{self, OpenAiCompatClient};
use super::retry::RetryPolicy;
use super::{LlmClient, LlmError};
use crate::config::{is_loopback_host, Config};

/// A provider Lucid can talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderSpec {
    /// Canonical key: `anthropic`, `google` or `openai`.
    pub name: &'static str,
    /// Other names accepted for it.
    pub aliases: &'static [&'static str],
    /// The provider's own key variable (the generic fallback is `LLM_API_KEY`).
    pub key_env: &'static str,
    /// Model used when neither the request nor `LLM_MODEL` names one.
    pub default_model: &'static str,
    /// LiteLLM-style model prefixes meaning this provider (stripped for native APIs).
    pub model_prefixes: &'static [&'static str],
    /// Human-readable name.
    pub label: &'static str,
}

/// The supported providers.
pub const PROVIDERS: [ProviderSpec; 3] = [
    ProviderSpec {
        name: "anthropic",
        aliases: &["claude"],
        key_env: "ANTHROPIC_API_KEY",
        default_model: "claude-sonnet-4-5",
        model_prefixes: &["anthropic/"],
        label: "Anthropic",
    },
    ProviderSpec {
        name: "google",
        aliases: &["gemini"],
        key_env: "GOOGLE_API_KEY",
        default_model: "gemini-2.5-flash",
        model_prefixes: &["gemini/", "google/", "models/"],
        label: "Google Gemini",
    },
    ProviderSpec {
        name: "openai",
        aliases: &["openai_compat", "litellm", "openrouter", "ollama"],
        key_env: "LLM_API_KEY",
        default_model: "gpt-4.1-mini",
        model_prefixes: &[],
        label: "OpenAI-compatible",
    },
];

/// The provider named `name` (case-insensitive, aliases accepted).
pub fn provider_spec(name: &str) -> Result<&'static ProviderSpec, LlmError> {
    let wanted = name.trim().to_ascii_lowercase();
    PROVIDERS
        .iter()
        .find(|p| p.name == wanted || p.aliases.contains(&wanted.as_str()))
        .ok_or_else(|| LlmError::UnsupportedProvider(name.trim().to_string()))
}

/// A ready client with the provider and model it was built for.
#[derive(Clone)]
pub struct ResolvedModel {
    pub client: Arc<dyn LlmClient>,
    /// Canonical provider key (`anthropic`, `google`, `openai`).
    pub provider: &'static str,
    /// The model name to put in requests.
    pub model: String,
}

impl std::fmt::Debug for ResolvedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedModel")
            .field("provider", &self.provider)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

/// Resolves provider, model, key and base URL (see the module docs) and builds the client with
/// the default retry policy.
pub fn resolve_provider(
    config: &Config,
    provider: Option<&str>,
    model: Option<&str>,
    api_key: Option<&str>,
    http: reqwest::Client,
) -> Result<ResolvedModel, LlmError> {
    resolve_provider_with_policy(
        config,
        provider,
        model,
        api_key,
        http,
        RetryPolicy::default(),
    )
}

/// [`resolve_provider`] with an explicit retry policy.
pub fn resolve_provider_with_policy(
    config: &Config,
    provider: Option<&str>,
    model: Option<&str>,
    api_key: Option<&str>,
    http: reqwest::Client,
    retry: RetryPolicy,
) -> Result<ResolvedModel, LlmError> {
    let requested = non_empty(provider).unwrap_or(&config.default_provider);
    let spec = provider_spec(requested)?;
    let model = resolve_model(config, spec, non_empty(model));
    let key = non_empty(api_key)
        .map(str::to_string)
        .or_else(|| match spec.name {
            "anthropic" | "google" => config.provider_key(spec.key_env),
            _ => None,
        })
        .or_else(|| config.provider_key("LLM_API_KEY"));
    let key = key.as_deref();
    let missing = || LlmError::MissingKey {
        provider: spec.name,
        env: spec.key_env,
    };

    let client: Arc<dyn LlmClient> = match spec.name {
        "anthropic" => Arc::new(
            AnthropicClient::new(http, &config.anthropic_base_url, key.ok_or_else(missing)?)?
                .with_retry_policy(retry),
        ),
        "google" => Arc::new(
            GeminiClient::new(http, &config.google_base_url, key.ok_or_else(missing)?)?
                .with_retry_policy(retry),
        ),
        _ => {
            let base_url = config
                .llm_base_url
                .as_deref()
                .unwrap_or(openai_compat::DEFAULT_BASE_URL);
            let local = url::Url::parse(base_url).is_ok_and(|u| is_loopback_host(&u));
            if key.is_none() && !local {
                return Err(missing());
            }
            Arc::new(OpenAiCompatClient::new(http, base_url, key)?.with_retry_policy(retry))
        }
    };
    Ok(ResolvedModel {
        client,
        provider: spec.name,
        model,
    })
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

/// The provider a LiteLLM-style prefix names, if any (`anthropic/x` → anthropic).
fn prefixed_provider(model: &str) -> Option<&'static ProviderSpec> {
    PROVIDERS.iter().find(|p| {
        p.model_prefixes
            .iter()
            .any(|prefix| model.starts_with(prefix))
    })
}

/// Whether `provider` is usable from the configuration (its keys and key store) alone, with
/// no per-request key: the model it would use, or why not (`lucid doctor`, the engine's
/// status). Same rules as [`resolve_provider`].
pub fn configured_model(config: &Config, provider: &str) -> Result<String, LlmError> {
    resolve_provider(config, Some(provider), None, None, reqwest::Client::new()).map(|m| m.model)
}

/// The model a request naming no provider and no model would use (`GET /` reports it);
/// `"unknown"` when the default provider is not a known one.
pub fn default_model_name(config: &Config) -> String {
    match provider_spec(&config.default_provider) {
        Ok(spec) => resolve_model(config, spec, None),
        Err(_) => "unknown".to_string(),
    }
}

fn resolve_model(config: &Config, spec: &'static ProviderSpec, requested: Option<&str>) -> String {
    let is_default_provider = provider_spec(&config.default_provider)
        .map(|default| default.name == spec.name)
        .unwrap_or(false);
    let configured = non_empty(config.llm_model.as_deref()).filter(|m| {
        match prefixed_provider(m) {
            // OpenRouter-style names (`anthropic/claude-...`) are models of the openai endpoint
            // when that is the configured provider.
            Some(named) => {
                named.name == spec.name || (spec.name == "openai" && is_default_provider)
            }
            None => is_default_provider,
        }
    });
    let model = requested.or(configured).unwrap_or(spec.default_model);
    if spec.name == "openai" {
        return model.to_string();
    }
    spec.model_prefixes
        .iter()
        .find_map(|prefix| model.strip_prefix(prefix))
        .unwrap_or(model)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Config {
        let mut vars: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        vars.insert("LUCID_DATA_DIR".into(), "/tmp/lucid-provider-test".into());
        Config::from_map(&vars).unwrap()
    }

    fn resolve(
        config: &Config,
        provider: Option<&str>,
        model: Option<&str>,
        key: Option<&str>,
    ) -> Result<ResolvedModel, LlmError> {
        resolve_provider(config, provider, model, key, reqwest::Client::new())
    }

    #[test]
    fn names_are_case_insensitive_with_aliases() {
        assert_eq!(provider_spec("Anthropic").unwrap().name, "anthropic");
        assert_eq!(provider_spec("GEMINI").unwrap().name, "google");
        for alias in ["openai_compat", "LiteLLM", "openrouter", "ollama", "openai"] {
            assert_eq!(provider_spec(alias).unwrap().name, "openai", "{alias}");
        }
        let err = provider_spec(" mistral ").unwrap_err();
        assert!(matches!(&err, LlmError::UnsupportedProvider(name) if name == "mistral"));
        assert!(err.to_string().contains("anthropic, google, openai"));
    }

    #[test]
    fn default_provider_and_default_models() {
        let c = config(&[("ANTHROPIC_API_KEY", "a"), ("GOOGLE_API_KEY", "g")]);
        let r = resolve(&c, None, None, None).unwrap();
        assert_eq!(
            (r.provider, r.model.as_str()),
            ("anthropic", "claude-sonnet-4-5")
        );
        assert_eq!(r.client.provider(), "anthropic");
        let c = config(&[
            ("DEFAULT_MODEL_PROVIDER", "Google"),
            ("GOOGLE_API_KEY", "g"),
        ]);
        let r = resolve(&c, None, None, None).unwrap();
        assert_eq!(
            (r.provider, r.model.as_str()),
            ("google", "gemini-2.5-flash")
        );
        let r = resolve(&c, Some(""), None, None).unwrap();
        assert_eq!(r.provider, "google");
    }

    #[test]
    fn the_key_store_is_read_at_each_use_and_wins_over_the_environment() {
        use std::sync::{Arc, Mutex};
        let stored: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let mut c = config(&[("GOOGLE_API_KEY", "from-env")]);
        let store = stored.clone();
        c.key_store = Some(crate::config::KeyStore::new(move |var| {
            store.lock().unwrap().get(var).cloned()
        }));
        // Nothing stored: the environment's key, and none for Anthropic.
        assert_eq!(
            c.provider_key("GOOGLE_API_KEY").as_deref(),
            Some("from-env")
        );
        assert!(matches!(
            resolve(&c, Some("anthropic"), None, None),
            Err(LlmError::MissingKey {
                env: "ANTHROPIC_API_KEY",
                ..
            })
        ));
        // Stored later: used at once, before the environment's.
        stored
            .lock()
            .unwrap()
            .insert("ANTHROPIC_API_KEY".into(), " sk-stored ".into());
        stored
            .lock()
            .unwrap()
            .insert("GOOGLE_API_KEY".into(), "from-store".into());
        assert!(resolve(&c, Some("anthropic"), None, None).is_ok());
        assert_eq!(
            c.provider_key("ANTHROPIC_API_KEY").as_deref(),
            Some("sk-stored")
        );
        assert_eq!(
            c.provider_key("GOOGLE_API_KEY").as_deref(),
            Some("from-store")
        );
        assert_eq!(
            configured_model(&c, "anthropic").unwrap(),
            "claude-sonnet-4-5"
        );
        // Removed (or blank): no longer used; the environment's key is again.
        stored.lock().unwrap().remove("ANTHROPIC_API_KEY");
        stored
            .lock()
            .unwrap()
            .insert("GOOGLE_API_KEY".into(), "  ".into());
        assert!(configured_model(&c, "anthropic").is_err());
        assert_eq!(
            c.provider_key("GOOGLE_API_KEY").as_deref(),
            Some("from-env")
        );
        // A stored generic key is the fallback, as LLM_API_KEY is.
        stored
            .lock()
            .unwrap()
            .insert("LLM_API_KEY".into(), "generic".into());
        assert!(resolve(&c, Some("anthropic"), None, None).is_ok());
    }

    #[test]
    fn unknown_provider_is_rejected() {
        let c = config(&[("LLM_API_KEY", "k")]);
        assert!(matches!(
            resolve(&c, Some("cohere"), None, None),
            Err(LlmError::UnsupportedProvider(_))
        ));
        let c = config(&[("DEFAULT_MODEL_PROVIDER", "bedrock"), ("LLM_API_KEY", "k")]);
        assert!(matches!(
            resolve(&c, None, None, None),
            Err(LlmError::UnsupportedProvider(_))
        ));
    }

    #[test]
    fn missing_keys_name_the_variable() {
        let c = config(&[]);
        for (provider, env) in [
            ("anthropic", "ANTHROPIC_API_KEY"),
            ("google", "GOOGLE_API_KEY"),
            ("openai", "LLM_API_KEY"),
        ] {
            let err = resolve(&c, Some(provider), None, Some("  ")).unwrap_err();
            assert!(
                matches!(err, LlmError::MissingKey { env: e, .. } if e == env),
                "{provider}: {err}"
            );
        }
        // A provider's own key is not used for another provider.
        let c = config(&[("ANTHROPIC_API_KEY", "a")]);
        assert!(matches!(
            resolve(&c, Some("google"), None, None),
            Err(LlmError::MissingKey {
                provider: "google",
                ..
            })
        ));
    }

    #[test]
    fn local_openai_compatible_endpoints_need_no_key() {
        let c = config(&[
            ("DEFAULT_MODEL_PROVIDER", "ollama"),
            ("LLM_BASE_URL", "http://localhost:11434/v1"),
            ("LLM_MODEL", "llama3.1:8b"),
        ]);
        let r = resolve(&c, None, None, None).unwrap();
        assert_eq!((r.provider, r.model.as_str()), ("openai", "llama3.1:8b"));
        let remote = config(&[("LLM_BASE_URL", "https://openrouter.ai/api/v1")]);
        assert!(matches!(
            resolve(&remote, Some("openrouter"), None, None),
            Err(LlmError::MissingKey { .. })
        ));
    }

    #[test]
    fn model_precedence_and_prefix_stripping() {
        let c = config(&[
            ("ANTHROPIC_API_KEY", "a"),
            ("GOOGLE_API_KEY", "g"),
            ("LLM_API_KEY", "l"),
            ("LLM_MODEL", "anthropic/claude-opus-4-1"),
        ]);
        let r = resolve(&c, None, None, None).unwrap();
        assert_eq!(r.model, "claude-opus-4-1");
        let r = resolve(&c, None, Some("anthropic/claude-haiku-4-5"), None).unwrap();
        assert_eq!(r.model, "claude-haiku-4-5");
        // LLM_MODEL names anthropic: google keeps its default.
        let r = resolve(&c, Some("google"), None, None).unwrap();
        assert_eq!(r.model, "gemini-2.5-flash");
        let r = resolve(&c, Some("gemini"), Some("gemini/gemini-2.5-pro"), None).unwrap();
        assert_eq!(r.model, "gemini-2.5-pro");
        // OpenRouter-style names are kept whole for the openai endpoint.
        let r = resolve(
            &c,
            Some("openai"),
            Some("anthropic/claude-sonnet-4.5"),
            None,
        )
        .unwrap();
        assert_eq!(r.model, "anthropic/claude-sonnet-4.5");

        let plain = config(&[
            ("DEFAULT_MODEL_PROVIDER", "openai"),
            ("LLM_API_KEY", "l"),
            ("LLM_MODEL", "gpt-4o"),
        ]);
        assert_eq!(resolve(&plain, None, None, None).unwrap().model, "gpt-4o");
        // An unprefixed LLM_MODEL belongs to the default provider only.
        assert_eq!(
            resolve(&plain, Some("anthropic"), None, None)
                .unwrap()
                .model,
            "claude-sonnet-4-5"
        );
    }

    #[test]
    fn keys_that_cannot_be_sent_are_rejected() {
        let c = config(&[]);
        let err = resolve(&c, Some("anthropic"), None, Some("sk-a\u{7f}b")).unwrap_err();
        assert!(matches!(err, LlmError::Auth { status: 0, .. }));
    }
}
