//! Taking up a streamed answer whose leader went away after some of it
//! went out (a replica that died mid-generation).
//!
//! The follower looks up again and follows (or leads) a new flight, whose
//! pieces start from the answer's beginning. What the client already has
//! is skipped, piece by piece; a replacement that does not start with it
//! (a sampled model answers differently) cannot continue the answer, so
//! the client is told the stream failed, and the new flight still runs to
//! its end for whoever else follows it.

/// What went out of a streamed answer, and what a replacement must repeat.
#[derive(Debug, Default)]
pub struct Resume {
    /// Every piece the client got, in order.
    sent: String,
    /// Of `sent`, what the replacement has not repeated yet.
    skip: String,
    /// Whether the answer was taken up again.
    resumed: bool,
    /// Whether the replacement differed from what went out.
    diverged: bool,
}

impl Resume {
    /// Notes that `piece` went to the client.
    pub fn sent(&mut self, piece: &str) {
        self.sent.push_str(piece);
    }

    /// Whether anything went out (so a new flight must repeat it).
    pub fn has_sent(&self) -> bool {
        !self.sent.is_empty()
    }

    /// Starts taking up the answer again: the replacement's pieces first
    /// repeat everything sent so far.
    pub fn restart(&mut self) {
        self.skip.clone_from(&self.sent);
        self.resumed = true;
    }

    /// What of the replacement's `piece` is new for the client: `None` when
    /// it only repeats (or contradicts) what went out.
    pub fn take(&mut self, piece: String) -> Option<String> {
        if self.diverged {
            return None;
        }
        if self.skip.is_empty() {
            return Some(piece);
        }
        if let Some(rest) = self.skip.strip_prefix(piece.as_str()) {
            self.skip = rest.to_string();
            return None;
        }
        match piece.strip_prefix(self.skip.as_str()) {
            Some(new) => {
                self.skip.clear();
                Some(new.to_string()).filter(|new| !new.is_empty())
            }
            None => {
                self.diverged = true;
                None
            }
        }
    }

    /// Whether the replacement contradicted what went out.
    pub fn diverged(&self) -> bool {
        self.diverged
    }

    /// Whether the client's answer cannot be completed: the replacement
    /// differed, or ended before repeating all that went out.
    pub fn broken(&self) -> bool {
        self.resumed && (self.diverged || !self.skip.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(pieces: &[&str]) -> Resume {
        let mut resume = Resume::default();
        pieces.iter().for_each(|piece| resume.sent(piece));
        resume.restart();
        resume
    }

    #[test]
    fn a_replacement_repeats_what_went_out_then_continues_it() {
        let mut resume = sent(&["one ", "two "]);
        assert_eq!(resume.take("one ".into()), None);
        assert_eq!(resume.take("tw".into()), None);
        assert_eq!(resume.take("o three ".into()), Some("three ".into()));
        assert_eq!(resume.take("four".into()), Some("four".into()));
        assert!(!resume.broken());
    }

    #[test]
    fn a_different_replacement_breaks_the_answer() {
        let mut resume = sent(&["one ", "two "]);
        assert_eq!(resume.take("uno ".into()), None);
        assert_eq!(resume.take("dos".into()), None, "nothing more goes out");
        assert!(resume.broken());
        let mut short = sent(&["one ", "two "]);
        assert_eq!(short.take("one ".into()), None);
        assert!(short.broken(), "a replacement that ended before repeating what went out");
    }

    #[test]
    fn nothing_is_skipped_without_a_restart() {
        let mut resume = Resume::default();
        resume.sent("a");
        assert_eq!(resume.take("b".into()), Some("b".into()));
        assert!(!resume.broken(), "only a resumed answer is checked");
    }
}
