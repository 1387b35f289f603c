//! The checks Ollama itself makes of a generation's `options`
//! (`api/types.go`, `Options` and `Runner`): each known option has a type,
//! and a value of another type is the client's mistake, a 400 naming it,
//! where passing it on would make the backend fail (a 502) or fall over.
//! Options Ollama does not know are passed on, as Ollama ignores them.
//! A leaf.

use serde_json::{Map, Value};

use crate::error::ApiError;

/// The JSON type an option takes.
#[derive(Clone, Copy)]
enum Kind {
    /// A number (Ollama truncates a fraction where it wants an integer).
    Integer,
    Number,
    Bool,
    /// A list of strings.
    Strings,
}

/// Ollama's options by name.
const OPTIONS: &[(&str, Kind)] = &[
    ("num_keep", Kind::Integer),
    ("seed", Kind::Integer),
    ("num_predict", Kind::Integer),
    ("top_k", Kind::Integer),
    ("top_p", Kind::Number),
    ("min_p", Kind::Number),
    ("typical_p", Kind::Number),
    ("repeat_last_n", Kind::Integer),
    ("temperature", Kind::Number),
    ("repeat_penalty", Kind::Number),
    ("presence_penalty", Kind::Number),
    ("frequency_penalty", Kind::Number),
    ("mirostat", Kind::Integer),
    ("mirostat_tau", Kind::Number),
    ("mirostat_eta", Kind::Number),
    ("tfs_z", Kind::Number),
    ("penalize_newline", Kind::Bool),
    ("stop", Kind::Strings),
    ("num_ctx", Kind::Integer),
    ("num_batch", Kind::Integer),
    ("num_gpu", Kind::Integer),
    ("main_gpu", Kind::Integer),
    ("num_thread", Kind::Integer),
    ("use_mmap", Kind::Bool),
    ("use_mlock", Kind::Bool),
    ("low_vram", Kind::Bool),
    ("numa", Kind::Bool),
];

/// Refuses an option whose value is not of its type (`null` is absent).
pub fn check(options: &Map<String, Value>) -> Result<(), ApiError> {
    for (name, value) in options {
        let Some((_, kind)) = OPTIONS.iter().find(|(known, _)| known == name) else { continue };
        let fits = match kind {
            Kind::Integer | Kind::Number => value.is_number(),
            Kind::Bool => value.is_boolean(),
            Kind::Strings => value.as_array().is_some_and(|items| items.iter().all(Value::is_string)),
        };
        if !fits && !value.is_null() {
            let wanted = match kind {
                Kind::Integer => "a whole number",
                Kind::Number => "a number",
                Kind::Bool => "true or false",
                Kind::Strings => "a list of strings",
            };
            return Err(ApiError::invalid(
                &format!("options.{name}"),
                format!("options.{name} must be {wanted}"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn checked(options: Value) -> Result<(), ApiError> {
        check(options.as_object().unwrap())
    }

    #[test]
    fn a_wrong_type_is_refused_by_name_and_the_rest_pass() {
        let error = checked(json!({"temperature": "hot"})).unwrap_err();
        assert!(
            matches!(&error, ApiError::Invalid { field, .. } if field == "options.temperature"),
            "{error:?}"
        );
        assert!(checked(json!({"num_predict": "many"})).is_err());
        assert!(checked(json!({"stop": "END"})).is_err(), "Ollama's stop is a list");
        assert!(checked(json!({"use_mmap": 1})).is_err());
        assert!(checked(json!({"temperature": 0.2, "num_predict": 8, "stop": ["x"], "seed": null, "unknown_knob": "x"})).is_ok());
    }
}
