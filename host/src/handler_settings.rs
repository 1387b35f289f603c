//! The handler's settings: the generation policy an operator configures
//! (the seed's DEFAULT_GENERATION_SETTINGS and the limits around them),
//! validated once at start-up and handed to the handler as one typed
//! record (`runtime.settings`), so no component re-parses strings
//! per request. Each default is written here and nowhere else; the
//! environment still carries the same values for handlers built before the
//! record existed.

use clap::Args;

/// The seed's default temperature.
pub const DEFAULT_TEMPERATURE: f64 = 0.8;
/// The seed's default max_tokens.
pub const DEFAULT_MAX_TOKENS: u32 = 500;
/// The seed's default top_p.
pub const DEFAULT_TOP_P: f64 = 0.9;
/// The seed's default top_k.
pub const DEFAULT_TOP_K: u32 = 40;
/// The seed's default repeat_penalty.
pub const DEFAULT_REPEAT_PENALTY: f64 = 1.1;
/// The seed's default stop sequences.
pub const DEFAULT_STOP: &[&str] = &["Human:", "Assistant:", "\n\n\n"];
/// A long conversation fits; a runaway paste does not.
pub const DEFAULT_MAX_PROMPT_CHARS: u32 = 32_768;
/// Items in one POST /generate/batch.
pub const DEFAULT_MAX_BATCH: u32 = 32;

/// The handler's generation policy.
#[derive(Debug, Clone, Args)]
pub struct GenerationConfig {
    /// Default max_tokens (1-8192).
    #[arg(long, env = "DEFAULT_MAX_TOKENS", value_name = "DEFAULT_MAX_TOKENS", default_value_t = DEFAULT_MAX_TOKENS,
          value_parser = clap::value_parser!(u32).range(1..=8192))]
    pub default_max_tokens: u32,
    /// Default temperature (0-2).
    #[arg(long, env = "DEFAULT_TEMPERATURE", value_name = "DEFAULT_TEMPERATURE", default_value_t = DEFAULT_TEMPERATURE,
          value_parser = parse_temperature)]
    pub default_temperature: f64,
    /// Default top_p (above 0, at most 1).
    #[arg(long, env = "DEFAULT_TOP_P", value_name = "DEFAULT_TOP_P", default_value_t = DEFAULT_TOP_P,
          value_parser = parse_top_p)]
    pub default_top_p: f64,
    /// Default top_k (1 or more).
    #[arg(long, env = "DEFAULT_TOP_K", value_name = "DEFAULT_TOP_K", default_value_t = DEFAULT_TOP_K,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub default_top_k: u32,
    /// Default repeat_penalty (above 0).
    #[arg(long, env = "DEFAULT_REPEAT_PENALTY", value_name = "DEFAULT_REPEAT_PENALTY",
          default_value_t = DEFAULT_REPEAT_PENALTY, value_parser = parse_positive)]
    pub default_repeat_penalty: f64,
    /// Default stop sequences, a JSON array of strings (the seed's is ["Human:", "Assistant:", "\n\n\n"]).
    #[arg(long, env = "DEFAULT_STOP", value_name = "DEFAULT_STOP", value_parser = parse_stop)]
    pub default_stop: Option<StopSequences>,
    /// Longest prompt accepted, in characters.
    #[arg(long, env = "MAX_PROMPT_CHARS", value_name = "MAX_PROMPT_CHARS", default_value_t = DEFAULT_MAX_PROMPT_CHARS,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_prompt_chars: u32,
    /// Models tried in order when the requested one is missing or fails, comma-separated.
    #[arg(long, env = "FALLBACK_MODELS", value_name = "FALLBACK_MODELS")]
    pub fallback_models: Option<String>,
    /// Most items in one POST /generate/batch.
    #[arg(long, env = "MAX_BATCH", value_name = "MAX_BATCH", default_value_t = DEFAULT_MAX_BATCH,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_batch: u32,
}

/// Stop sequences as validated from DEFAULT_STOP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopSequences(pub Vec<String>);

impl GenerationConfig {
    /// The stop sequences in force.
    pub fn stop(&self) -> Vec<String> {
        match &self.default_stop {
            Some(StopSequences(stop)) => stop.clone(),
            None => DEFAULT_STOP.iter().map(|stop| stop.to_string()).collect(),
        }
    }

    /// FALLBACK_MODELS as a list, blanks dropped.
    pub fn fallback_models(&self) -> Vec<String> {
        let listed = self.fallback_models.as_deref().unwrap_or_default();
        listed.split(',').map(str::trim).filter(|model| !model.is_empty()).map(str::to_string).collect()
    }

    /// The same values as environment variables, for handlers built before
    /// the typed record.
    pub fn guest_environment(&self) -> Vec<(String, String)> {
        let mut environment = vec![
            ("DEFAULT_MAX_TOKENS".to_string(), self.default_max_tokens.to_string()),
            ("DEFAULT_TEMPERATURE".to_string(), self.default_temperature.to_string()),
            ("DEFAULT_TOP_P".to_string(), self.default_top_p.to_string()),
            ("DEFAULT_TOP_K".to_string(), self.default_top_k.to_string()),
            ("DEFAULT_REPEAT_PENALTY".to_string(), self.default_repeat_penalty.to_string()),
            ("DEFAULT_STOP".to_string(), serde_json::to_string(&self.stop()).unwrap_or_default()),
            ("MAX_PROMPT_CHARS".to_string(), self.max_prompt_chars.to_string()),
            ("MAX_BATCH".to_string(), self.max_batch.to_string()),
        ];
        if let Some(fallbacks) = &self.fallback_models {
            environment.push(("FALLBACK_MODELS".to_string(), fallbacks.clone()));
        }
        environment
    }
}

fn parse_f64(value: &str) -> Result<f64, String> {
    let number: f64 = value.trim().parse().map_err(|_| "not a number".to_string())?;
    if !number.is_finite() {
        return Err("not a finite number".into());
    }
    Ok(number)
}

fn parse_temperature(value: &str) -> Result<f64, String> {
    let number = parse_f64(value)?;
    if !(0.0..=2.0).contains(&number) {
        return Err("must be between 0 and 2".into());
    }
    Ok(number)
}

fn parse_top_p(value: &str) -> Result<f64, String> {
    let number = parse_f64(value)?;
    if !(number > 0.0 && number <= 1.0) {
        return Err("must be above 0 and at most 1".into());
    }
    Ok(number)
}

fn parse_positive(value: &str) -> Result<f64, String> {
    let number = parse_f64(value)?;
    if number <= 0.0 {
        return Err("must be above 0".into());
    }
    Ok(number)
}

fn parse_stop(value: &str) -> Result<StopSequences, String> {
    let stop: Vec<String> = serde_json::from_str(value)
        .map_err(|_| "must be a JSON array of strings, like [\"Human:\"]".to_string())?;
    if stop.len() > 4 {
        return Err("at most 4 stop sequences".into());
    }
    Ok(StopSequences(stop))
}
