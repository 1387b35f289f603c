//! Generation settings: the operator's defaults (the host's handler
//! settings: the seed's DEFAULT_GENERATION_SETTINGS unless DEFAULT_* say
//! otherwise), overridden by the request. Every value is range-checked;
//! unknown names are refused.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Setting names a request may use.
pub const KNOWN: &[&str] = &["temperature", "max_tokens", "top_p", "top_k", "repeat_penalty", "stop", "seed"];
/// Most stop sequences accepted (OpenAI-compatible servers take four).
const MAX_STOP_SEQUENCES: usize = 4;

/// Settings after merging.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    pub temperature: f64,
    pub max_tokens: u32,
    pub top_p: f64,
    pub top_k: u32,
    pub repeat_penalty: f64,
    pub stop: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
}

impl Settings {
    /// The settings as a JSON object under their request names (`seed` only
    /// when set): what both backend protocols start from.
    pub fn to_json(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }

    /// Applies a request's `settings` object; `prefix` names it in errors.
    pub fn merge(&mut self, overrides: &Map<String, Value>, prefix: &str) -> Result<(), ApiError> {
        for (name, value) in overrides {
            let field = format!("{prefix}.{name}");
            match name.as_str() {
                "temperature" => self.temperature = number_in(value, &field, 0.0, 2.0, false)?,
                "top_p" => self.top_p = number_in(value, &field, 0.0, 1.0, true)?,
                "repeat_penalty" => self.repeat_penalty = number_in(value, &field, 0.0, 100.0, true)?,
                "max_tokens" => self.max_tokens = integer_in(value, &field, 1, 8192)? as u32,
                "top_k" => self.top_k = integer_in(value, &field, 1, 1_000_000)? as u32,
                "seed" => self.seed = Some(integer_in(value, &field, i64::MIN, i64::MAX)?),
                "stop" => self.stop = stop_list(value, &field)?,
                _ => {
                    let known = KNOWN.join(", ");
                    return Err(ApiError::invalid(
                        &field,
                        format!("unknown setting '{name}'; known: {known}"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A number in [low, high], or (low, high] when `low_open`.
fn number_in(value: &Value, field: &str, low: f64, high: f64, low_open: bool) -> Result<f64, ApiError> {
    let number =
        value.as_f64().ok_or_else(|| ApiError::invalid(field, format!("{field} must be a number")))?;
    let above_low = if low_open { number > low } else { number >= low };
    if !(above_low && number <= high) {
        let range = if low_open {
            format!("above {low} and at most {high}")
        } else {
            format!("between {low} and {high}")
        };
        return Err(ApiError::invalid(field, format!("{field} must be {range}, got {number}")));
    }
    Ok(number)
}

fn integer_in(value: &Value, field: &str, low: i64, high: i64) -> Result<i64, ApiError> {
    let out_of_range =
        || ApiError::invalid(field, format!("{field} must be between {low} and {high}, got {value}"));
    match value.as_i64() {
        Some(integer) if (low..=high).contains(&integer) => Ok(integer),
        Some(_) => Err(out_of_range()),
        // A whole number too large for an i64 is out of range, not "not an integer".
        None if value.as_u64().is_some() || value.as_f64().is_some_and(|number| number.fract() == 0.0) => {
            Err(out_of_range())
        }
        None => Err(ApiError::invalid(field, format!("{field} must be an integer between {low} and {high}"))),
    }
}

fn stop_list(value: &Value, field: &str) -> Result<Vec<String>, ApiError> {
    let not_strings = || ApiError::invalid(field, format!("{field} must be a list of strings"));
    let items = value.as_array().ok_or_else(not_strings)?;
    if items.len() > MAX_STOP_SEQUENCES {
        return Err(ApiError::invalid(
            field,
            format!("{field} takes at most {MAX_STOP_SEQUENCES} sequences"),
        ));
    }
    items.iter().map(|item| item.as_str().map(str::to_string).ok_or_else(not_strings)).collect()
}

#[cfg(test)]
pub mod tests {
    use serde_json::json;

    use super::*;

    /// Settings as a test starts from (any valid values).
    pub fn example() -> Settings {
        Settings {
            temperature: 0.8,
            max_tokens: 500,
            top_p: 0.9,
            top_k: 40,
            repeat_penalty: 1.1,
            stop: vec!["Human:".into()],
            seed: None,
        }
    }

    fn merged(overrides: Value) -> Result<Settings, ApiError> {
        let mut settings = example();
        settings.merge(overrides.as_object().unwrap(), "settings").map(|()| settings)
    }

    #[test]
    fn request_values_override_defaults() {
        let settings = merged(json!({"temperature": 0.2, "max_tokens": 7, "stop": ["x"]})).unwrap();
        assert_eq!(
            (settings.temperature, settings.max_tokens, settings.stop),
            (0.2, 7, vec!["x".to_string()])
        );
        assert_eq!(settings.top_k, 40);
    }

    #[test]
    fn out_of_range_values_name_the_field() {
        for (overrides, field) in [
            (json!({"temperature": 2.5}), "settings.temperature"),
            (json!({"top_p": 0}), "settings.top_p"),
            (json!({"max_tokens": 0}), "settings.max_tokens"),
            (json!({"max_tokens": 9000}), "settings.max_tokens"),
            (json!({"max_tokens": "5"}), "settings.max_tokens"),
            (json!({"temp": 1}), "settings.temp"),
            (json!({"seed": 18446744073709551615u64}), "settings.seed"),
            (json!({"top_k": 1e20}), "settings.top_k"),
        ] {
            match merged(overrides.clone()) {
                Err(ApiError::Invalid { field: got, .. }) => assert_eq!(got, field, "{overrides}"),
                other => panic!("{overrides}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_out_of_range_whole_number_is_called_out_of_range() {
        for (overrides, expected) in [
            (
                json!({"seed": 18446744073709551615u64}),
                "settings.seed must be between -9223372036854775808 and 9223372036854775807, got 18446744073709551615",
            ),
            (json!({"top_k": 1e20}), "settings.top_k must be between 1 and 1000000, got 1e+20"),
            (json!({"top_k": 2.5}), "settings.top_k must be an integer between 1 and 1000000"),
        ] {
            let Err(error) = merged(overrides.clone()) else { panic!("{overrides} was accepted") };
            assert_eq!(error.message(), expected, "{overrides}");
        }
    }
}
