//! Text helpers for post-processing a model's answer.

/// Role labels a model trained on transcripts tends to echo.
const ROLE_LABELS: &[&str] = &["Human:", "Assistant:"];

/// `text` without role-label echoes: a label the answer starts with is
/// dropped, and at a later label (the model writing the next turn of the
/// transcript itself) the answer ends.
pub fn strip_role_echoes(text: &str) -> &str {
    let mut text = text.trim_start();
    while let Some(rest) = ROLE_LABELS.iter().find_map(|label| text.strip_prefix(label)) {
        text = rest.trim_start();
    }
    let end = ROLE_LABELS.iter().filter_map(|label| text.find(label)).min().unwrap_or(text.len());
    text[..end].trim_end()
}

/// `text` up to and including its last full sentence (ended by `.`, `!`,
/// `?` or `…`, with any closing quotes or brackets). Text without a
/// sentence end is kept whole: cutting it would leave nothing.
pub fn cut_after_last_sentence(text: &str) -> &str {
    let trimmed = text.trim_end();
    let mut end = None;
    let mut chars = trimmed.char_indices().peekable();
    while let Some((index, c)) = chars.next() {
        if matches!(c, '.' | '!' | '?' | '…') {
            let mut stop = index + c.len_utf8();
            while let Some(&(next_index, next)) = chars.peek() {
                if matches!(next, '"' | '\'' | ')' | ']' | '”' | '’' | '.' | '!' | '?') {
                    stop = next_index + next.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            let at_boundary = chars.peek().is_none_or(|&(_, next)| next.is_whitespace());
            if at_boundary {
                end = Some(stop);
            }
        }
    }
    end.map_or(trimmed, |end| &trimmed[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_are_dropped_and_end_the_answer() {
        assert_eq!(strip_role_echoes("Assistant: Hi there. Human: and you?"), "Hi there.");
        assert_eq!(strip_role_echoes("Fine.\nHuman: ok"), "Fine.");
        assert_eq!(strip_role_echoes("No labels here"), "No labels here");
    }

    #[test]
    fn text_ends_after_its_last_full_sentence() {
        assert_eq!(cut_after_last_sentence("One. Two! Three"), "One. Two!");
        assert_eq!(cut_after_last_sentence("He said \"stop.\" Then he"), "He said \"stop.\"");
        assert_eq!(cut_after_last_sentence("Version 1.5 is out"), "Version 1.5 is out");
        assert_eq!(cut_after_last_sentence("no end at all"), "no end at all");
        assert_eq!(cut_after_last_sentence("Wait... what? "), "Wait... what?");
    }
}
