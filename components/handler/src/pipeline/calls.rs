//! The pipeline's calls to the backend: a whole answer with the fallback
//! loop, a stream opened with it, and reading a whole answer's pieces.

use super::Ctx;
use super::host::{Host, Pending, TextSource};
use crate::backend::{Ending, Generation, StreamEvent};
use crate::error::ApiError;
use crate::request::{GenerateRequest, Prepared};

/// Whether another model may do better: not for overload or timeouts, where
/// trying again would only add load or overrun the deadline.
pub(super) fn worth_a_fallback(error: &ApiError) -> bool {
    matches!(
        error,
        ApiError::ModelNotFound { .. } | ApiError::Unavailable { .. } | ApiError::BadGateway { .. }
    )
}

pub(super) fn generation<'a>(
    request: &'a GenerateRequest,
    prepared: &'a Prepared,
    model: &'a str,
) -> Generation<'a> {
    Generation {
        model,
        system: prepared.system.as_deref(),
        prompt: &prepared.prompt,
        settings: &prepared.settings,
        question: request.question.as_deref(),
    }
}

/// Finishes a whole generation whose first attempt is `first`, trying the
/// fallback models after it: the text, tokens and the answering model's
/// index; if all fail, the first model's error.
pub(super) fn complete_whole<H: Host>(
    ctx: &Ctx<'_, H>,
    prepared: &Prepared,
    first: Result<Box<dyn Pending>, ApiError>,
) -> Result<(String, Ending, usize), ApiError> {
    let mut first = Some(first);
    let mut first_error = None;
    for (index, model) in ctx.request.models.iter().enumerate() {
        let attempt =
            first.take().unwrap_or_else(|| ctx.host.start(&generation(ctx.request, prepared, model), false));
        match attempt.and_then(|pending| pending.open()).and_then(read_whole) {
            Ok((text, ending)) => return Ok((text, ending, index)),
            Err(error) if worth_a_fallback(&error) => {
                first_error.get_or_insert(error);
            }
            Err(error) => return Err(first_error.unwrap_or(error)),
        }
    }
    Err(first_error.expect("at least one model was tried"))
}

/// The whole text, and how it ended (tokens counted as pieces when the
/// backend does not say).
fn read_whole(mut source: Box<dyn TextSource>) -> Result<(String, Ending), ApiError> {
    let (mut text, mut pieces, mut gathered) = (String::new(), 0u64, Ending::default());
    loop {
        match source.next()? {
            event @ (StreamEvent::Finish(_)
            | StreamEvent::ToolCalls(_)
            | StreamEvent::ToolCallFragments(_)
            | StreamEvent::Thinking(_)) => {
                gathered.note(event);
            }
            StreamEvent::Text(piece) => {
                pieces += 1;
                text.push_str(&piece);
            }
            StreamEvent::Done(ending) => {
                gathered.conclude(ending);
                let last = std::mem::take(&mut gathered.text);
                text.push_str(&last);
                let pieces = pieces + u64::from(!last.is_empty());
                gathered.tokens_generated = Some(gathered.tokens_generated.unwrap_or(pieces));
                return Ok((text, gathered));
            }
            StreamEvent::Skip => {}
        }
    }
}

/// Opens a stream from the first model that answers.
pub(super) fn open_stream<H: Host>(
    ctx: &Ctx<'_, H>,
    prepared: &Prepared,
) -> Result<(Box<dyn TextSource>, usize), ApiError> {
    let mut first_error = None;
    for (index, model) in ctx.request.models.iter().enumerate() {
        match ctx
            .host
            .start(&generation(ctx.request, prepared, model), true)
            .and_then(|pending| pending.open())
        {
            Ok(source) => return Ok((source, index)),
            Err(error) => {
                let fall_back = worth_a_fallback(&error);
                first_error.get_or_insert(error);
                if !fall_back {
                    break;
                }
            }
        }
    }
    Err(first_error.expect("at least one model was tried"))
}
