//! What each key used today on this replica (requests, tokens, its last
//! request), for the key list: the whole count without a store, and with
//! one the part not yet added to the fleet's totals, which the fleet's
//! report adds every few seconds ([`Usage::drain`]).

use std::collections::HashMap;
use std::sync::Mutex;

use super::shared::KeyUse;

const DAY_S: u64 = 86_400;

#[derive(Debug, Default)]
struct Counted {
    day: u64,
    /// Today, on this replica.
    today: KeyUse,
    /// Since the last drain.
    pending: KeyUse,
}

/// This replica's counts by key id (one entry per key that was used).
#[derive(Debug, Default)]
pub struct Usage(Mutex<HashMap<String, Counted>>);

impl Usage {
    fn count(&self, id: &str, now_s: u64, add: impl Fn(&mut KeyUse)) {
        let mut keys = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        let counted = match keys.get_mut(id) {
            Some(counted) => counted,
            None => keys.entry(id.to_string()).or_default(),
        };
        if counted.day != now_s / DAY_S {
            counted.day = now_s / DAY_S;
            counted.today = KeyUse { last_used_at: counted.today.last_used_at, ..KeyUse::default() };
        }
        add(&mut counted.today);
        add(&mut counted.pending);
    }

    /// Counts a request of key `id`.
    pub fn request(&self, id: &str, now_s: u64) {
        self.count(id, now_s, |uses| {
            uses.requests_today += 1;
            uses.last_used_at = Some(now_s);
        });
    }

    /// Counts `tokens` generated for key `id`.
    pub fn tokens(&self, id: &str, tokens: u64, now_s: u64) {
        self.count(id, now_s, |uses| uses.tokens_today += tokens);
    }

    /// Key `id`'s use today on this replica.
    pub fn today(&self, id: &str, now_s: u64) -> KeyUse {
        let keys = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        keys.get(id).map_or_else(KeyUse::default, |counted| {
            let mut today = counted.today;
            if counted.day != now_s / DAY_S {
                today.requests_today = 0;
                today.tokens_today = 0;
            }
            today
        })
    }

    /// What keys `ids` counted since the last drain, in their order.
    pub fn pending(&self, ids: &[&str]) -> Vec<KeyUse> {
        let keys = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        ids.iter().map(|id| keys.get(*id).map_or_else(KeyUse::default, |counted| counted.pending)).collect()
    }

    /// What was counted since the last drain, and forgets it.
    pub fn drain(&self) -> Vec<(String, KeyUse)> {
        let mut keys = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        keys.iter_mut()
            .filter(|(_, counted)| counted.pending != KeyUse::default())
            .map(|(id, counted)| (id.clone(), std::mem::take(&mut counted.pending)))
            .collect()
    }

    /// Puts back what a failed drain took, to be added next time.
    pub fn restore(&self, drained: Vec<(String, KeyUse)>) {
        let mut keys = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        for (id, uses) in drained {
            let pending = &mut keys.entry(id).or_default().pending;
            pending.requests_today += uses.requests_today;
            pending.tokens_today += uses.tokens_today;
            pending.last_used_at = pending.last_used_at.max(uses.last_used_at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drain_takes_what_was_counted_since_the_last_and_a_failed_one_is_put_back() {
        let usage = Usage::default();
        let noon = 20_000 * DAY_S + DAY_S / 2;
        usage.request("a", noon);
        usage.tokens("a", 7, noon);
        let drained = usage.drain();
        assert_eq!(
            drained,
            vec![("a".into(), KeyUse { requests_today: 1, tokens_today: 7, last_used_at: Some(noon) })]
        );
        assert!(usage.drain().is_empty(), "nothing new");
        usage.restore(drained);
        assert_eq!(usage.drain().len(), 1, "put back");
        assert_eq!(usage.today("a", noon).requests_today, 1);
        let tomorrow = usage.today("a", noon + DAY_S);
        assert_eq!((tomorrow.requests_today, tomorrow.last_used_at), (0, Some(noon)));
    }
}
