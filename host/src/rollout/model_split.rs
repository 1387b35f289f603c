//! The model A/B split: generations that name no model go to one of
//! several models by weight, chosen by the request's routing key
//! ([`crate::routing`]) so one conversation stays on one model. Set by
//! MODEL_SPLIT at start and through the admin API at runtime; while none is
//! set, such generations use the current model.

use std::sync::Arc;

use arc_swap::ArcSwapOption;

use crate::routing::{BUCKETS, RoutingKey};

/// The salt of the model split's buckets (independent of the canary's).
const SPLIT_SALT: &str = "model";
/// Models in one split at most.
pub const MAX_SPLIT_MODELS: usize = 16;
/// The longest model name accepted.
const MAX_MODEL_CHARS: usize = 256;

/// Models and their weights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSplit {
    models: Vec<(String, u32)>,
}

impl ModelSplit {
    /// Parses `a=90,b=10`: each model once, weights from 0 to 10000, at
    /// least one above 0.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut models: Vec<(String, u32)> = Vec::new();
        for part in text.split(',').map(str::trim).filter(|part| !part.is_empty()) {
            // The last '=' splits: model names may hold ':' but not '='.
            let Some((model, weight)) = part.rsplit_once('=') else {
                return Err(format!("'{part}' is not model=weight"));
            };
            let model = model.trim();
            if model.is_empty() || model.chars().count() > MAX_MODEL_CHARS {
                return Err(format!(
                    "'{part}': the model name is empty or over {MAX_MODEL_CHARS} characters"
                ));
            }
            let weight =
                weight.trim().parse::<u32>().ok().filter(|weight| *weight <= BUCKETS).ok_or_else(|| {
                    format!("'{part}': the weight is not a whole number from 0 to {BUCKETS}")
                })?;
            if models.iter().any(|(seen, _)| seen == model) {
                return Err(format!("'{model}' appears twice"));
            }
            models.push((model.to_string(), weight));
        }
        Self::new(models)
    }

    /// A split of `models` by weight.
    pub fn new(models: Vec<(String, u32)>) -> Result<Self, String> {
        if models.is_empty() {
            return Err("a split needs at least one model=weight".into());
        }
        if models.len() > MAX_SPLIT_MODELS {
            return Err(format!("a split has at most {MAX_SPLIT_MODELS} models"));
        }
        if models.iter().all(|(_, weight)| *weight == 0) {
            return Err("at least one weight must be above 0".into());
        }
        Ok(Self { models })
    }

    /// The models and their weights, in the order given.
    pub fn models(&self) -> &[(String, u32)] {
        &self.models
    }

    /// The model for a request with `key`.
    pub fn pick(&self, key: RoutingKey) -> &str {
        let total: u64 = self.models.iter().map(|(_, weight)| u64::from(*weight)).sum();
        let mut point = u64::from(key.bucket(SPLIT_SALT)) * total / u64::from(BUCKETS);
        for (model, weight) in &self.models {
            if point < u64::from(*weight) {
                return model;
            }
            point -= u64::from(*weight);
        }
        // Unreachable with a positive total; the last model is a safe answer.
        &self.models[self.models.len() - 1].0
    }
}

impl std::fmt::Display for ModelSplit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> =
            self.models.iter().map(|(model, weight)| format!("{model}={weight}")).collect();
        f.write_str(&parts.join(","))
    }
}

/// The split in force, swapped atomically.
#[derive(Debug, Default)]
pub struct SplitState(ArcSwapOption<ModelSplit>);

impl SplitState {
    /// Starts with `split`.
    pub fn new(split: Option<ModelSplit>) -> Self {
        Self(ArcSwapOption::from(split.map(Arc::new)))
    }

    /// The split in force.
    pub fn get(&self) -> Option<Arc<ModelSplit>> {
        self.0.load_full()
    }

    /// Replaces it (`None`: no split); returns the previous one.
    pub fn set(&self, split: Option<ModelSplit>) -> Option<Arc<ModelSplit>> {
        tracing::info!(split = split.as_ref().map(ToString::to_string), "model split changed");
        self.0.swap(split.map(Arc::new))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_with_colons_and_refuses_what_is_not_a_split() {
        let split = ModelSplit::parse("llama3:8b=90, llama3.1:8b=10").unwrap();
        assert_eq!(split.models(), [("llama3:8b".to_string(), 90), ("llama3.1:8b".to_string(), 10)]);
        assert_eq!(split.to_string(), "llama3:8b=90,llama3.1:8b=10");
        for bad in ["", "a", "a=x", "a=1,a=2", "a=0", "=5", "a=10001"] {
            assert!(ModelSplit::parse(bad).is_err(), "{bad:?} is refused");
        }
    }

    #[test]
    fn picks_follow_the_weights_and_a_key_always_gets_the_same_model() {
        let split = ModelSplit::parse("a=75,b=25,c=0").unwrap();
        let picks: Vec<&str> = (0..4_000u64)
            .map(|connection| split.pick(RoutingKey::of(None, b"", &connection.to_string())))
            .collect();
        let share = |model: &str| picks.iter().filter(|pick| **pick == model).count();
        assert!((2_800..3_200).contains(&share("a")), "{}", share("a"));
        assert_eq!(share("c"), 0, "weight 0 gets nothing");
        let key = RoutingKey::of(Some("conversation-1"), b"", "");
        assert!((0..10).all(|_| split.pick(key) == split.pick(key)));
    }
}
