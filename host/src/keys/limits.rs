//! A key's limits: requests per minute, tokens per minute and a daily
//! token budget, and the one rule that decides them, whether the counts
//! come from the shared store's script ([`crate::fleet::keys`]) or from
//! this replica's own windows ([`LocalWindows`], used without a store and
//! while it is down).
//!
//! Guarantees:
//! - A minute is a sliding window of one-second buckets: in any 60
//!   seconds a key is admitted at most `rpm` times (with a store, summed
//!   over every replica).
//! - Tokens are what the key's generations generated (cache hits cost
//!   none); they count once the answer is in, so the request that crosses
//!   `tpm` or the daily budget is answered and the next one is refused.
//! - The daily budget runs from 00:00 UTC to the next.
//! - A refusal says which limit and when to come back (`Retry-After`).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// The length of a rate window, in seconds.
pub const WINDOW_S: u64 = 60;
/// A day, in seconds.
const DAY_S: u64 = 86_400;

/// What a key may use; each `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Requests per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    /// Tokens generated per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    /// Tokens generated per UTC day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_tokens: Option<u64>,
}

impl Limits {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.rpm.is_some() || self.tpm.is_some() || self.daily_tokens.is_some()
    }

    /// Checks that each limit set is at least 1, naming the field.
    pub fn check(&self) -> Result<(), String> {
        for (field, value) in [("rpm", self.rpm), ("tpm", self.tpm), ("daily_tokens", self.daily_tokens)] {
            if value == Some(0) {
                return Err(format!("{field} must be at least 1 (leave it out for no limit)"));
            }
        }
        Ok(())
    }
}

/// The limit a request ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Requests per minute.
    Requests,
    /// Tokens per minute.
    Tokens,
    /// The daily token budget.
    DailyTokens,
}

impl Limit {
    /// Its name in messages, logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Requests => "rpm",
            Self::Tokens => "tpm",
            Self::DailyTokens => "daily_tokens",
        }
    }
}

/// What a key used, as the store's script or the local windows count it
/// before this request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Used {
    /// Requests in the last minute.
    pub requests: u64,
    /// Seconds until the oldest of them leaves the window.
    pub requests_reset_s: u64,
    /// Tokens in the last minute.
    pub tokens: u64,
    /// Seconds until the oldest of them leaves the window.
    pub tokens_reset_s: u64,
    /// Tokens today.
    pub day_tokens: u64,
}

/// What is left after an admitted request: (limit, remaining, seconds to
/// reset) for each limit set, for the `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    /// Requests per minute.
    pub requests: Option<(u64, u64, u64)>,
    /// Tokens per minute.
    pub tokens: Option<(u64, u64, u64)>,
    /// The daily budget.
    pub daily_tokens: Option<(u64, u64, u64)>,
}

/// A refused request: the limit, and the seconds until it admits again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exceeded {
    /// Which limit.
    pub limit: Limit,
    /// Its value (what `x-ratelimit-limit-*` says).
    pub allowed: u64,
    /// Seconds until a request may be admitted (at least 1).
    pub retry_after_s: u64,
}

impl Exceeded {
    /// What is left of the limit that was hit: nothing, until it resets.
    pub fn quota(&self) -> Quota {
        let spent = Some((self.allowed, 0, self.retry_after_s));
        match self.limit {
            Limit::Requests => Quota { requests: spent, ..Quota::default() },
            Limit::Tokens => Quota { tokens: spent, ..Quota::default() },
            Limit::DailyTokens => Quota { daily_tokens: spent, ..Quota::default() },
        }
    }
}

/// Decides a request of a key with `limits` that has `used` so much at
/// unix second `now_s`. The one rule both counters follow.
pub fn decide(limits: &Limits, used: &Used, now_s: u64) -> Result<Quota, Exceeded> {
    let to_midnight = DAY_S - now_s % DAY_S;
    let over = |limit: Option<u64>, used: u64| limit.filter(|&limit| used >= limit);
    let refused = |limit, allowed, retry_after_s: u64| {
        Err(Exceeded { limit, allowed, retry_after_s: retry_after_s.max(1) })
    };
    if let Some(allowed) = over(limits.rpm, used.requests) {
        return refused(Limit::Requests, allowed, used.requests_reset_s);
    }
    if let Some(allowed) = over(limits.tpm, used.tokens) {
        return refused(Limit::Tokens, allowed, used.tokens_reset_s);
    }
    if let Some(allowed) = over(limits.daily_tokens, used.day_tokens) {
        return refused(Limit::DailyTokens, allowed, to_midnight);
    }
    let left = |limit: u64, used: u64, reset: u64| (limit, limit.saturating_sub(used), reset);
    Ok(Quota {
        requests: limits.rpm.map(|rpm| left(rpm, used.requests + 1, used.requests_reset_s)),
        tokens: limits.tpm.map(|tpm| left(tpm, used.tokens, used.tokens_reset_s)),
        daily_tokens: limits.daily_tokens.map(|daily| left(daily, used.day_tokens, to_midnight)),
    })
}

/// One minute of one-second buckets: (second, count), oldest first.
#[derive(Debug, Default)]
struct Window(VecDeque<(u64, u64)>);

impl Window {
    /// The count in the minute up to `now_s`, and the seconds until its
    /// oldest bucket leaves (a full minute when it is empty).
    fn used(&mut self, now_s: u64) -> (u64, u64) {
        while self.0.front().is_some_and(|&(second, _)| second + WINDOW_S <= now_s) {
            self.0.pop_front();
        }
        let oldest = self.0.front().map_or(now_s, |&(second, _)| second);
        (self.0.iter().map(|&(_, count)| count).sum(), oldest + WINDOW_S - now_s)
    }

    fn add(&mut self, now_s: u64, count: u64) {
        match self.0.back_mut() {
            Some((second, total)) if *second == now_s => *total += count,
            _ => self.0.push_back((now_s, count)),
        }
    }
}

/// One key's counts on this replica.
#[derive(Debug, Default)]
struct KeyWindows {
    requests: Window,
    tokens: Window,
    day: u64,
    day_tokens: u64,
}

impl KeyWindows {
    fn day_tokens(&mut self, now_s: u64) -> u64 {
        if self.day != now_s / DAY_S {
            (self.day, self.day_tokens) = (now_s / DAY_S, 0);
        }
        self.day_tokens
    }
}

/// This replica's own counts, by key id: the limits without a store, and
/// while the store is down (each replica then admits up to the limit).
#[derive(Debug, Default)]
pub struct LocalWindows(Mutex<HashMap<String, KeyWindows>>);

impl LocalWindows {
    /// Decides a request of key `id` at `now_s` and counts it if admitted.
    pub fn take(&self, id: &str, limits: &Limits, now_s: u64) -> Result<Quota, Exceeded> {
        let mut keys = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        let key = keys.entry(id.to_string()).or_default();
        let (requests, requests_reset_s) = key.requests.used(now_s);
        let (tokens, tokens_reset_s) = key.tokens.used(now_s);
        let used =
            Used { requests, requests_reset_s, tokens, tokens_reset_s, day_tokens: key.day_tokens(now_s) };
        let quota = decide(limits, &used, now_s)?;
        key.requests.add(now_s, 1);
        Ok(quota)
    }

    /// Counts `tokens` generated for key `id` at `now_s`.
    pub fn spend(&self, id: &str, tokens: u64, now_s: u64) {
        let mut keys = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        let key = keys.entry(id.to_string()).or_default();
        key.tokens.add(now_s, tokens);
        key.day_tokens(now_s);
        key.day_tokens += tokens;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOON: u64 = 20_000 * DAY_S + DAY_S / 2;

    #[test]
    fn a_minute_admits_rpm_requests_and_says_when_the_oldest_leaves() {
        let (windows, limits) = (LocalWindows::default(), Limits { rpm: Some(3), ..Limits::default() });
        for (second, left) in [(0, 2), (10, 1), (20, 0)] {
            let quota = windows.take("k", &limits, NOON + second).unwrap();
            assert_eq!(quota.requests.map(|(_, left, _)| left), Some(left));
        }
        let refused = windows.take("k", &limits, NOON + 30).unwrap_err();
        assert_eq!(refused, Exceeded { limit: Limit::Requests, allowed: 3, retry_after_s: 30 });
        assert_eq!(refused.quota().requests, Some((3, 0, 30)), "nothing left until the oldest leaves");
        assert!(windows.take("k", &limits, NOON + 59).is_err(), "the first is still in the minute");
        assert!(windows.take("k", &limits, NOON + 60).is_ok(), "the first has left the minute");
        assert!(windows.take("other", &limits, NOON + 60).is_ok(), "keys count apart");
    }

    #[test]
    fn tokens_count_once_spent_and_the_day_budget_resets_at_midnight() {
        let windows = LocalWindows::default();
        let limits = Limits { tpm: Some(100), daily_tokens: Some(150), ..Limits::default() };
        assert!(windows.take("k", &limits, NOON).is_ok());
        windows.spend("k", 120, NOON);
        let refused = windows.take("k", &limits, NOON + 1).unwrap_err();
        assert_eq!((refused.limit, refused.retry_after_s), (Limit::Tokens, 59));
        let quota = windows.take("k", &limits, NOON + 61).unwrap();
        assert_eq!(quota.daily_tokens, Some((150, 30, DAY_S / 2 - 61)));
        windows.spend("k", 40, NOON + 61);
        let refused = windows.take("k", &limits, NOON + 200).unwrap_err();
        assert_eq!((refused.limit, refused.retry_after_s), (Limit::DailyTokens, DAY_S / 2 - 200));
        assert!(windows.take("k", &limits, NOON + DAY_S / 2).is_ok(), "a new day, a new budget");
    }

    #[test]
    fn no_limit_is_no_quota_and_zero_is_refused_as_a_setting() {
        assert_eq!(decide(&Limits::default(), &Used::default(), NOON), Ok(Quota::default()));
        let zero = Limits { tpm: Some(0), ..Limits::default() };
        assert!(zero.check().unwrap_err().contains("tpm"));
    }
}
