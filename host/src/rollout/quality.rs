//! Sampled response validation: every QUALITY_CHECK_INTERVAL the host asks
//! the serving handler to validate the current model (or each model of a
//! split) with a small probe set, through `POST /validate-model` in-process.
//! The handler generates each probe through its backend path, bypassing the
//! cache, and judges the answer with the checks `/validate-model` always
//! applies (non-empty, ended by stop or length, no role echo, within
//! max_tokens, within the latency budget). The host keeps the verdict:
//! /health shows it (`quality: ok|degraded` with the failing check) and
//! /metrics the pass rate of each model's latest round.
//!
//! A round runs only after the previous one ended, so a slow backend
//! stretches the interval instead of piling probes up.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{Value, json};

pub use super::verdict::{QualityState, Verdict};
use crate::caps::telemetry::Telemetry;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// What the checks ask of the service: one request answered in process,
/// through the same admission and handler as a client's.
#[async_trait::async_trait]
pub trait AnswersInProcess: Send + Sync {
    /// The answer to `request`.
    async fn answer(&self, request: hyper::Request<Bytes>) -> hyper::Response<HyperOutgoingBody>;
}

/// Probes in one set at most.
const MAX_PROBES: usize = 32;
/// The longest probe prompt.
const MAX_PROBE_CHARS: usize = 2_000;

/// One probe: a prompt and the tokens its answer may take.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    /// What is asked.
    pub prompt: String,
    /// The answer's token budget.
    #[serde(default = "default_probe_tokens")]
    pub max_tokens: u32,
}

fn default_probe_tokens() -> u32 {
    32
}

/// The built-in probe set: short questions any chat model answers briefly.
pub fn builtin_probes() -> Vec<Probe> {
    ["Say hello in one short sentence.", "What is 2 + 2? Answer with the number.", "Name one colour."]
        .into_iter()
        .map(|prompt| Probe { prompt: prompt.to_string(), max_tokens: default_probe_tokens() })
        .collect()
}

/// Reads a probe set: a JSON array of `{"prompt", "max_tokens"}`.
pub fn read_probes(path: &Path) -> Result<Vec<Probe>, String> {
    let text = std::fs::read_to_string(path).map_err(|error| format!("{}: {error}", path.display()))?;
    let probes: Vec<Probe> =
        serde_json::from_str(&text).map_err(|error| format!("{}: {error}", path.display()))?;
    if probes.is_empty() || probes.len() > MAX_PROBES {
        return Err(format!("{}: a probe set has 1 to {MAX_PROBES} probes", path.display()));
    }
    if let Some(probe) = probes.iter().find(|probe| {
        probe.prompt.trim().is_empty()
            || probe.prompt.chars().count() > MAX_PROBE_CHARS
            || probe.max_tokens == 0
    }) {
        return Err(format!(
            "{}: the probe {:?} needs a prompt of 1 to {MAX_PROBE_CHARS} characters and max_tokens above 0",
            path.display(),
            probe.prompt
        ));
    }
    Ok(probes)
}

/// Runs rounds every `interval` until dropped.
pub struct QualityChecks(tokio::task::JoinHandle<()>);

impl Drop for QualityChecks {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts the checks: `probes` against the serving model(s) every `interval`.
pub fn start(
    service: Arc<dyn AnswersInProcess>,
    telemetry: Telemetry,
    probes: Vec<Probe>,
    interval: Duration,
) -> QualityChecks {
    telemetry.quality().set(Verdict::Pending);
    QualityChecks(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let verdict = round(service.as_ref(), &telemetry, &probes).await;
            if let Verdict::Degraded(failure) = &verdict {
                tracing::warn!(check = "quality", failure, "a sampled quality probe failed");
            }
            telemetry.quality().set(verdict);
        }
    }))
}

/// Every probe against every serving model; the first failure decides.
async fn round(service: &dyn AnswersInProcess, telemetry: &Telemetry, probes: &[Probe]) -> Verdict {
    let models: Vec<String> = match telemetry.model_split().get() {
        Some(split) => {
            split.models().iter().filter(|(_, weight)| *weight > 0).map(|(model, _)| model.clone()).collect()
        }
        None => vec![telemetry.current_model().to_string()],
    };
    let mut first_failure = None;
    for model in &models {
        let mut passed = 0;
        for probe in probes {
            match validate(service, model, probe).await {
                Ok(()) => passed += 1,
                Err(check) => {
                    first_failure
                        .get_or_insert_with(|| format!("model {model}, probe {:?}: {check}", probe.prompt));
                }
            }
        }
        telemetry.rollout_metrics().record_quality(model, f64::from(passed) / probes.len().max(1) as f64);
    }
    first_failure.map_or(Verdict::Ok, Verdict::Degraded)
}

/// One probe through the handler's `/validate-model`: `Err` names the failed check.
async fn validate(service: &dyn AnswersInProcess, model: &str, probe: &Probe) -> Result<(), String> {
    let body = json!({"model": model, "prompt": probe.prompt, "max_tokens": probe.max_tokens}).to_string();
    let request = hyper::Request::post("/validate-model")
        .header(http::header::HOST, "localhost")
        .header(http::header::CONTENT_TYPE, "application/json")
        .header("x-request-id", "quality-check")
        .body(Bytes::from(body))
        .map_err(|error| error.to_string())?;
    let response = service.answer(request).await;
    let status = response.status();
    let body =
        response.into_body().collect().await.map_err(|error| format!("reading the answer: {error}"))?;
    let answer: Value = serde_json::from_slice(&body.to_bytes()).unwrap_or(Value::Null);
    if !status.is_success() {
        let error = answer.get("error").and_then(Value::as_str).unwrap_or("no reason given");
        return Err(format!("/validate-model answered {status}: {error}"));
    }
    if answer.get("model_available") != Some(&Value::Bool(true)) {
        return Err("the model is not available".into());
    }
    match answer.get("failed_check").and_then(Value::as_str) {
        Some(check) => Err(check.to_string()),
        None if answer.get("quality").and_then(Value::as_str) == Some("ok") => Ok(()),
        None => Err("the handler's /validate-model gave no quality verdict".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_file_is_checked_and_the_builtin_set_is_sane() {
        let dir = std::env::temp_dir().join(format!("llm-service-probes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("probes.json");
        std::fs::write(&file, r#"[{"prompt": "Hi?", "max_tokens": 8}, {"prompt": "Bye?"}]"#).unwrap();
        assert_eq!(read_probes(&file).unwrap()[1].max_tokens, 32);
        for bad in
            ["[]", r#"[{"prompt": " "}]"#, r#"[{"prompt": "x", "max_tokens": 0}]"#, r#"[{"text": "x"}]"#]
        {
            std::fs::write(&file, bad).unwrap();
            assert!(read_probes(&file).is_err(), "{bad} is refused");
        }
        assert!(builtin_probes().iter().all(|probe| probe.max_tokens > 0 && !probe.prompt.is_empty()));
    }
}
