//! Settings of canaries, model splits and quality checks.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::model_split::ModelSplit;
use super::quality::{Probe, builtin_probes, read_probes};
use crate::runtime::canary::CanaryPolicy;

/// Answers per side before a canary is judged.
pub const DEFAULT_CANARY_MIN_REQUESTS: usize = 50;
/// A canary may fail 5 points more often than the stable version.
pub const DEFAULT_CANARY_MAX_ERROR_DELTA: f64 = 0.05;
/// A canary's p99 may be twice the stable's.
pub const DEFAULT_CANARY_MAX_LATENCY_RATIO: f64 = 2.0;

/// A probe answer (a few dozen tokens) slower than this is a problem even
/// on a CPU backend.
pub const DEFAULT_QUALITY_LATENCY_BUDGET_MS: u64 = 10_000;

/// Canaries, model splits and quality checks.
#[derive(Debug, Clone, Args)]
pub struct RolloutConfig {
    /// Drop a canary handler on its own when it does worse than the stable one (false: only by hand).
    #[arg(long, env = "CANARY_AUTO_ROLLBACK", value_name = "CANARY_AUTO_ROLLBACK", default_value_t = true,
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub canary_auto_rollback: bool,
    /// Answers of each version in the sliding window a canary is judged on.
    #[arg(long, env = "CANARY_MIN_REQUESTS", value_name = "CANARY_MIN_REQUESTS",
          default_value_t = DEFAULT_CANARY_MIN_REQUESTS, value_parser = parse_window)]
    pub canary_min_requests: usize,
    /// Largest excess of the canary's 5xx rate over the stable's (0.05 = 5 points).
    #[arg(long, env = "CANARY_MAX_ERROR_DELTA", value_name = "CANARY_MAX_ERROR_DELTA",
          default_value_t = DEFAULT_CANARY_MAX_ERROR_DELTA, value_parser = parse_share)]
    pub canary_max_error_delta: f64,
    /// Largest ratio of the canary's p99 latency to the stable's.
    #[arg(long, env = "CANARY_MAX_LATENCY_RATIO", value_name = "CANARY_MAX_LATENCY_RATIO",
          default_value_t = DEFAULT_CANARY_MAX_LATENCY_RATIO, value_parser = parse_ratio)]
    pub canary_max_latency_ratio: f64,
    /// Split generations that name no model between models by weight (llama3:8b=90,llama3.1:8b=10).
    #[arg(long, env = "MODEL_SPLIT", value_name = "MODEL_SPLIT", value_parser = ModelSplit::parse)]
    pub model_split: Option<ModelSplit>,
    /// Seconds between sampled quality checks of the serving model(s); 0 = off.
    #[arg(long, env = "QUALITY_CHECK_INTERVAL", value_name = "QUALITY_CHECK_INTERVAL", default_value_t = 0.0,
          value_parser = parse_interval)]
    pub quality_check_interval_s: f64,
    /// Milliseconds a quality probe's whole answer may take before it fails (also /validate-model's budget).
    #[arg(long, env = "QUALITY_LATENCY_BUDGET_MS", value_name = "QUALITY_LATENCY_BUDGET_MS",
          default_value_t = DEFAULT_QUALITY_LATENCY_BUDGET_MS, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub quality_latency_budget_ms: u64,
    /// A JSON file of quality probes, [{"prompt": "...", "max_tokens": 16}, ...] (default: a built-in set).
    #[arg(long, env = "QUALITY_PROBES_FILE", value_name = "QUALITY_PROBES_FILE")]
    pub quality_probes_file: Option<PathBuf>,
}

impl RolloutConfig {
    /// When canaries are dropped.
    pub fn canary_policy(&self) -> CanaryPolicy {
        CanaryPolicy {
            auto_rollback: self.canary_auto_rollback,
            min_requests: self.canary_min_requests,
            max_error_delta: self.canary_max_error_delta,
            max_latency_ratio: self.canary_max_latency_ratio,
        }
    }

    /// The probes and the time between rounds, if quality checks are on;
    /// an unreadable or invalid probe file is an error.
    pub fn quality_checks(&self) -> Result<Option<(Vec<Probe>, Duration)>, String> {
        if self.quality_check_interval_s <= 0.0 {
            return Ok(None);
        }
        let probes = match &self.quality_probes_file {
            Some(path) => read_probes(path)?,
            None => builtin_probes(),
        };
        Ok(Some((probes, Duration::from_secs_f64(self.quality_check_interval_s))))
    }
}

impl RolloutConfig {
    /// What the handler reads from its environment: the probes' latency budget.
    pub fn guest_environment(&self) -> Vec<(String, String)> {
        vec![("QUALITY_LATENCY_BUDGET_MS".to_string(), self.quality_latency_budget_ms.to_string())]
    }
}

fn parse_window(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(count) if (1..=100_000).contains(&count) => Ok(count),
        _ => Err(format!("'{value}' is not a count from 1 to 100000")),
    }
}

fn parse_share(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(share) if (0.0..=1.0).contains(&share) => Ok(share),
        _ => Err(format!("'{value}' is not a share from 0 to 1")),
    }
}

fn parse_ratio(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(ratio) if ratio.is_finite() && ratio >= 1.0 => Ok(ratio),
        _ => Err(format!("'{value}' is not a ratio of 1 or more")),
    }
}

fn parse_interval(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(seconds) if seconds == 0.0 || (0.1..=86_400.0).contains(&seconds) => Ok(seconds),
        _ => Err(format!("'{value}' is not 0 (off) or a number of seconds from 0.1 to 86400")),
    }
}
