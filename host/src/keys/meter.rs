//! Counts what admitted keys use and holds them to their [`Limits`]:
//! through the shared store when there is one (every replica counts one
//! minute and one day per key), and through this replica's own windows
//! without one, or while the store does not answer. Then each replica
//! admits up to the limit by itself: never an outage because the store is
//! down. The change each way is logged once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::limits::{Exceeded, Limits, LocalWindows, Quota, decide};
use super::shared::{KeyUse, SharedKeys};
use super::usage::Usage;

/// The keys' counters: one per service, shared by every admitted request.
#[derive(Debug, Default)]
pub struct Meter {
    shared: Option<Arc<dyn SharedKeys>>,
    local: LocalWindows,
    usage: Usage,
    /// Whether limits are counted by this replica alone now.
    fallen_back: AtomicBool,
}

impl Meter {
    /// Counting through `shared`, if there is a store.
    pub fn new(shared: Option<Arc<dyn SharedKeys>>) -> Self {
        Self { shared, ..Self::default() }
    }

    /// Decides a request of key `id` under `limits` and counts it if
    /// admitted.
    pub async fn take(&self, id: &str, limits: &Limits) -> Result<Quota, Exceeded> {
        let now_s = super::now_s();
        let verdict = if !limits.any() {
            Ok(Quota::default())
        } else {
            // This replica counts too, so it has its share at hand when the
            // store stops answering.
            let local = self.local.take(id, limits, now_s);
            match &self.shared {
                Some(shared) => match shared.take(id, limits, now_s).await {
                    Ok(used) => {
                        self.store_answers(true, None);
                        decide(limits, &used, now_s)
                    }
                    Err(error) => {
                        self.store_answers(false, Some(&error));
                        local
                    }
                },
                None => local,
            }
        };
        if verdict.is_ok() {
            self.usage.request(id, now_s);
        }
        verdict
    }

    /// Counts `tokens` generated for key `id` under `limits`.
    pub fn spend(&self, id: &str, limits: &Limits, tokens: u64) {
        let now_s = super::now_s();
        self.usage.tokens(id, tokens, now_s);
        if tokens == 0 || (limits.tpm.is_none() && limits.daily_tokens.is_none()) {
            return;
        }
        self.local.spend(id, tokens, now_s);
        if let (Some(shared), Ok(runtime)) = (&self.shared, tokio::runtime::Handle::try_current()) {
            let (shared, id) = (shared.clone(), id.to_string());
            // The answer is out already: nobody waits on this count.
            runtime.spawn(async move {
                if let Err(error) = shared.spend(&id, tokens, now_s).await {
                    tracing::debug!(cap = "keys", key_id = id, %error, "a spend did not reach the store");
                }
            });
        }
    }

    /// Key `id`'s use today: the fleet's with a store (what was added,
    /// plus this replica's part not yet added), else this replica's.
    pub async fn use_today(&self, ids: &[&str]) -> Vec<KeyUse> {
        let now_s = super::now_s();
        let mine: Vec<KeyUse> = ids.iter().map(|id| self.usage.today(id, now_s)).collect();
        let Some(shared) = &self.shared else { return mine };
        let Ok(fleet) = shared.use_today(ids, now_s).await else { return mine };
        // This replica's own part is in the fleet's once it was added; what
        // is pending is not yet.
        let pending = self.usage.pending(ids);
        fleet
            .into_iter()
            .zip(pending)
            .zip(mine)
            .map(|((fleet, pending), mine)| KeyUse {
                requests_today: fleet.requests_today + pending.requests_today,
                tokens_today: fleet.tokens_today + pending.tokens_today,
                last_used_at: fleet.last_used_at.max(mine.last_used_at),
            })
            .collect()
    }

    /// Adds what this replica counted to the store's totals (the fleet's
    /// report calls it every few seconds).
    pub async fn add_use(&self) {
        let Some(shared) = &self.shared else { return };
        let drained = self.usage.drain();
        for (index, uses) in drained.iter().enumerate() {
            // What was not added is added next time, and nothing twice.
            if shared.add_use(std::slice::from_ref(uses), super::now_s()).await.is_err() {
                self.usage.restore(drained[index..].to_vec());
                return;
            }
        }
    }

    fn store_answers(&self, answers: bool, error: Option<&str>) {
        if self.fallen_back.swap(!answers, Ordering::AcqRel) != answers {
            return;
        }
        if answers {
            tracing::info!(cap = "keys", "the shared store answers again: key limits are the fleet's again");
        } else {
            tracing::warn!(
                cap = "keys",
                error = error.unwrap_or_default(),
                "the shared store does not answer: key limits are counted by each replica alone until it does"
            );
        }
    }
}
