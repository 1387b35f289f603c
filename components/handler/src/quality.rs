//! What a good answer is, for `/validate-model` and the host's sampled
//! quality checks (which run through it): each check by name, in order.
//!
//! - `non_empty`: some text that is not whitespace;
//! - `ended_by_stop_or_length`: the stream ended, and its reason (when the
//!   backend gives one) is `stop` or `length`;
//! - `no_role_echo`: the model did not write the next turn itself
//!   ("Human:", "Assistant:", "User:");
//! - `within_max_tokens`: no more tokens than asked for;
//! - `within_latency_budget`: the whole answer within
//!   QUALITY_LATENCY_BUDGET_MS (the host passes it; no budget, no check).

use std::time::Duration;

/// Turn markers that mean the model is playing both sides.
const ROLE_ECHOES: [&str; 3] = ["Human:", "Assistant:", "User:"];

/// What a probe's answer was.
#[derive(Debug, Clone, Default)]
pub struct ProbeAnswer {
    /// The whole text.
    pub text: String,
    /// Whether the stream reached its final line.
    pub ended: bool,
    /// Why it stopped, if the backend said.
    pub done_reason: Option<String>,
    /// Tokens generated (the backend's count, else the chunks received).
    pub tokens: u64,
    /// From the request to the final line.
    pub elapsed: Duration,
}

/// What it was allowed.
#[derive(Debug, Clone, Copy)]
pub struct ProbeLimits {
    /// Tokens asked for.
    pub max_tokens: u32,
    /// The latency budget, if the host set one.
    pub latency_budget: Option<Duration>,
}

impl ProbeLimits {
    /// `max_tokens` with the host's budget (QUALITY_LATENCY_BUDGET_MS).
    pub fn from_environment(max_tokens: u32) -> Self {
        let latency_budget = std::env::var("QUALITY_LATENCY_BUDGET_MS")
            .ok()
            .and_then(|value| value.parse::<u64>().ok())
            .map(Duration::from_millis);
        Self { max_tokens, latency_budget }
    }
}

/// Every check, by name, with whether it passed.
pub fn checks(answer: &ProbeAnswer, limits: &ProbeLimits) -> Vec<(&'static str, bool)> {
    let ended_well = answer.ended
        && answer.done_reason.as_deref().is_none_or(|reason| matches!(reason, "stop" | "length"));
    vec![
        ("non_empty", !answer.text.trim().is_empty()),
        ("ended_by_stop_or_length", ended_well),
        ("no_role_echo", !ROLE_ECHOES.iter().any(|echo| answer.text.contains(echo))),
        ("within_max_tokens", answer.tokens <= u64::from(limits.max_tokens)),
        ("within_latency_budget", limits.latency_budget.is_none_or(|budget| answer.elapsed <= budget)),
    ]
}

/// The first failed check, described, or `None` when all passed.
pub fn first_failure(answer: &ProbeAnswer, limits: &ProbeLimits) -> Option<String> {
    let (name, _) = checks(answer, limits).into_iter().find(|(_, passed)| !passed)?;
    Some(match name {
        "ended_by_stop_or_length" => match &answer.done_reason {
            Some(reason) if answer.ended => format!("{name} (it ended with '{reason}')"),
            _ => format!("{name} (the stream did not end)"),
        },
        "within_max_tokens" => format!("{name} ({} tokens for {})", answer.tokens, limits.max_tokens),
        "within_latency_budget" => format!("{name} ({} ms)", answer.elapsed.as_millis()),
        name => name.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> ProbeAnswer {
        ProbeAnswer {
            text: "Hello there.".into(),
            ended: true,
            done_reason: Some("stop".into()),
            tokens: 4,
            elapsed: Duration::from_millis(100),
        }
    }

    const LIMITS: ProbeLimits = ProbeLimits { max_tokens: 8, latency_budget: Some(Duration::from_secs(1)) };

    #[test]
    fn a_good_answer_passes_every_check() {
        assert!(checks(&good(), &LIMITS).iter().all(|(_, passed)| *passed));
        assert_eq!(first_failure(&good(), &LIMITS), None);
    }

    /// Spoils a good answer in one way.
    type Spoil = fn(&mut ProbeAnswer);

    #[test]
    fn each_fault_fails_its_own_check() {
        let cases: [(Spoil, &str); 6] = [
            (|answer| answer.text = " \n".into(), "non_empty"),
            (
                |answer| answer.done_reason = Some("error".into()),
                "ended_by_stop_or_length (it ended with 'error')",
            ),
            (|answer| answer.ended = false, "ended_by_stop_or_length (the stream did not end)"),
            (|answer| answer.text = "Sure.\nHuman: and you?".into(), "no_role_echo"),
            (|answer| answer.tokens = 9, "within_max_tokens (9 tokens for 8)"),
            (|answer| answer.elapsed = Duration::from_secs(2), "within_latency_budget (2000 ms)"),
        ];
        for (spoil, expected) in cases {
            let mut answer = good();
            spoil(&mut answer);
            assert_eq!(first_failure(&answer, &LIMITS).as_deref(), Some(expected));
        }
    }

    #[test]
    fn without_a_reason_or_a_budget_those_checks_pass() {
        let answer = ProbeAnswer { done_reason: None, elapsed: Duration::from_secs(60), ..good() };
        assert_eq!(first_failure(&answer, &ProbeLimits { max_tokens: 8, latency_budget: None }), None);
    }
}
