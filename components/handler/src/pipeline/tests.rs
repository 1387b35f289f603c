//! The pipeline's policy against a scripted fake host: what it asks the
//! cache and the backend, and what it lands, crashes and answers.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use serde_json::json;

use super::host::{Cached, FlightEvent, Follow, Found, Host, Lead, Lookup, Pending, TextSource};
use super::*;
use crate::backend::{Ending, Generation, StreamEvent};
use crate::key::prompt_hash;
use crate::request::tests::{config, parsed};

/// What the fake saw, in order.
#[derive(Debug, Clone, PartialEq)]
#[expect(clippy::large_enum_variant, reason = "a test's record: a few values, never moved in a hot loop")]
enum Seen {
    Started { model: String, stream: bool },
    Published(String),
    Landed { value: Stored, fresh_s: u64, stale_s: u64 },
    Crashed(ApiError),
}

/// What one lookup finds.
#[expect(clippy::large_enum_variant, reason = "a test's script: a few values, never moved in a hot loop")]
enum Scripted {
    Fresh(Stored),
    Lead,
    Follow(Vec<FlightEvent>),
}

#[derive(Default)]
struct Fake {
    lookups: RefCell<VecDeque<(Scripted, Option<Stored>)>>,
    /// One answer per backend call: its events, or the error opening it.
    answers: RefCell<VecDeque<Result<Vec<StreamEvent>, ApiError>>>,
    seen: Rc<RefCell<Vec<Seen>>>,
}

impl Fake {
    fn lookup(self, found: Scripted, stale: Option<Stored>) -> Self {
        self.lookups.borrow_mut().push_back((found, stale));
        self
    }

    fn answer(self, answer: Result<Vec<StreamEvent>, ApiError>) -> Self {
        self.answers.borrow_mut().push_back(answer);
        self
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.borrow().clone()
    }

    fn backend_calls(&self) -> Vec<String> {
        self.seen()
            .into_iter()
            .filter_map(|seen| match seen {
                Seen::Started { model, .. } => Some(model),
                _ => None,
            })
            .collect()
    }
}

struct FakeLead(Rc<RefCell<Vec<Seen>>>);

impl Lead for FakeLead {
    fn publish(&self, chunk: &[u8]) {
        self.0.borrow_mut().push(Seen::Published(String::from_utf8_lossy(chunk).into_owned()));
    }
    fn land(self, value: &[u8], fresh_s: u64, stale_s: u64) {
        let value = Stored::decode(value).expect("lands an answer");
        self.0.borrow_mut().push(Seen::Landed { value, fresh_s, stale_s });
    }
    fn crash(self, error: &ApiError) {
        self.0.borrow_mut().push(Seen::Crashed(error.clone()));
    }
    fn followers(&self) -> u32 {
        0
    }
}

struct FakeFollow(VecDeque<FlightEvent>);

impl Follow for FakeFollow {
    fn next(&mut self) -> FlightEvent {
        self.0.pop_front().unwrap_or(FlightEvent::Abandoned)
    }
}

struct Events(VecDeque<StreamEvent>);

impl TextSource for Events {
    fn next(&mut self) -> Result<StreamEvent, ApiError> {
        Ok(self.0.pop_front().unwrap_or(StreamEvent::Done(Ending::default())))
    }
}

struct Sent(Result<Vec<StreamEvent>, ApiError>);

impl Pending for Sent {
    fn open(self: Box<Self>) -> Result<Box<dyn TextSource>, ApiError> {
        Ok(Box::new(Events(self.0?.into())))
    }
}

impl Host for Fake {
    type Lead = FakeLead;
    type Follow = FakeFollow;

    fn lookup(&self, _key: &str, _stale_s: u64) -> Lookup<FakeLead, FakeFollow> {
        let (found, stale) = self.lookups.borrow_mut().pop_front().expect("a scripted lookup");
        let cached = |stored: Stored| Cached { value: stored.encode(), age_s: 7 };
        Lookup {
            found: match found {
                Scripted::Fresh(stored) => Found::Fresh(cached(stored)),
                Scripted::Lead => Found::Lead(FakeLead(self.seen.clone())),
                Scripted::Follow(events) => Found::Follow(FakeFollow(events.into())),
            },
            stale: stale.map(cached),
        }
    }

    fn start(&self, generation: &Generation<'_>, stream: bool) -> Result<Box<dyn Pending>, ApiError> {
        self.seen.borrow_mut().push(Seen::Started { model: generation.model.to_string(), stream });
        let answer = self.answers.borrow_mut().pop_front().expect("a scripted answer");
        Ok(Box::new(Sent(answer)))
    }
}

const POLICY: Policy = Policy { backend: Kind::Ollama, cache_ttl_s: 60, stale_if_error_s: 30 };

fn stored(response: &str, model: &str) -> Stored {
    Stored {
        response: response.into(),
        model: model.into(),
        tokens_generated: 2,
        temperature: 0.8,
        prompt_hash: prompt_hash("hi"),
        prompt_tokens: None,
        done_reason: None,
        tool_calls: None,
        thinking: None,
        durations: Default::default(),
    }
}

fn text(pieces: &[&str]) -> Result<Vec<StreamEvent>, ApiError> {
    let mut events: Vec<StreamEvent> =
        pieces.iter().map(|piece| StreamEvent::Text(piece.to_string())).collect();
    events.push(StreamEvent::Done(Ending { tokens_generated: Some(2), ..Ending::default() }));
    Ok(events)
}

fn unavailable() -> ApiError {
    ApiError::Unavailable { message: "refused".into() }
}

/// Runs `body` to its outcome, collecting a stream's pieces.
fn run(fake: &Fake, body: serde_json::Value, fallbacks: &[&str]) -> (Outcome, Vec<String>) {
    let request = parsed(body, &config(fallbacks));
    let ctx = Ctx { host: fake, request: &request, policy: &POLICY };
    match begin(&ctx) {
        Begun::Done(outcome) => (outcome, Vec::new()),
        Begun::Flowing(mut flow) => {
            let mut pieces = Vec::new();
            while let Some(piece) = flow.next_chunk(&ctx) {
                pieces.push(piece);
            }
            (flow.finish(&ctx), pieces)
        }
    }
}

#[test]
fn a_fresh_value_is_a_hit_and_calls_no_backend() {
    let fake = Fake::default().lookup(Scripted::Fresh(stored("cached", "current")), None);
    let (outcome, _) = run(&fake, json!({"prompt": "hi"}), &[]);
    let answer = outcome.unwrap();
    assert_eq!(
        (answer.cache_use, answer.age_s, answer.stored.response.as_str()),
        (CacheUse::Hit, 7, "cached")
    );
    assert!(fake.seen().is_empty());
}

#[test]
fn a_leader_generates_and_lands_for_the_ttl_and_stale_window() {
    let fake = Fake::default().lookup(Scripted::Lead, None).answer(text(&["Hello", " there"]));
    let (outcome, _) = run(&fake, json!({"prompt": "hi", "cache_ttl": 5}), &[]);
    let answer = outcome.unwrap();
    assert_eq!(answer.cache_use, CacheUse::Miss);
    assert_eq!(
        fake.seen(),
        [
            Seen::Started { model: "current".into(), stream: false },
            Seen::Landed { value: stored("Hello there", "current"), fresh_s: 5, stale_s: 30 },
        ]
    );
}

#[test]
fn a_streaming_leader_publishes_each_piece_before_landing() {
    let fake = Fake::default().lookup(Scripted::Lead, None).answer(text(&["a", "b"]));
    let (outcome, pieces) = run(&fake, json!({"prompt": "hi", "stream": true}), &[]);
    assert_eq!(pieces, ["a", "b"]);
    assert_eq!(outcome.unwrap().stored.response, "ab");
    let seen = fake.seen();
    assert_eq!(
        seen[..3],
        [
            Seen::Started { model: "current".into(), stream: true },
            Seen::Published("a".into()),
            Seen::Published("b".into()),
        ]
    );
    assert!(matches!(seen[3], Seen::Landed { .. }));
}

#[test]
fn a_fallback_answer_reaches_followers_but_is_not_stored() {
    let fake = Fake::default().lookup(Scripted::Lead, None).answer(Err(unavailable())).answer(text(&["x"]));
    let (outcome, _) = run(&fake, json!({"prompt": "hi"}), &["backup"]);
    assert_eq!(outcome.unwrap().stored.model, "backup");
    assert_eq!(fake.backend_calls(), ["current", "backup"]);
    assert!(fake.seen().contains(&Seen::Landed { value: stored("x", "backup"), fresh_s: 0, stale_s: 30 }));
}

#[test]
fn an_overloaded_backend_gets_no_fallback() {
    let fake = Fake::default().lookup(Scripted::Lead, None).answer(Err(ApiError::Busy));
    let (outcome, _) = run(&fake, json!({"prompt": "hi"}), &["backup"]);
    assert_eq!(outcome.unwrap_err(), ApiError::Busy);
    assert_eq!(fake.backend_calls(), ["current"]);
    assert_eq!(fake.seen().last(), Some(&Seen::Crashed(ApiError::Busy)));
}

#[test]
fn a_failing_leader_crashes_the_flight_and_serves_the_stale_value() {
    let fake =
        Fake::default().lookup(Scripted::Lead, Some(stored("old", "current"))).answer(Err(unavailable()));
    let (outcome, _) = run(&fake, json!({"prompt": "hi"}), &[]);
    let answer = outcome.unwrap();
    assert_eq!((answer.cache_use, answer.stored.response.as_str()), (CacheUse::Stale, "old"));
    assert_eq!(fake.seen().last(), Some(&Seen::Crashed(unavailable())));
}

#[test]
fn a_follower_judges_its_leaders_failure_by_the_leaders_rule() {
    let plugin_failed = ApiError::PluginFailed { plugin: "p".into(), message: "trap".into() };
    let refused = ApiError::PluginRefused { plugin: "p".into(), message: "no".into() };
    for (failure, stands_in) in [(plugin_failed, true), (unavailable(), true), (refused, false)] {
        let fake = Fake::default().lookup(
            Scripted::Follow(vec![FlightEvent::Crashed(failure.clone())]),
            Some(stored("old", "current")),
        );
        let (outcome, _) = run(&fake, json!({"prompt": "hi"}), &[]);
        assert_eq!(outcome.is_ok(), stands_in, "{failure:?}");
        assert_eq!(outcome.is_ok(), failure.allows_stale(), "the leader's rule decides");
        assert!(fake.backend_calls().is_empty());
    }
}

#[test]
fn a_follower_answers_what_its_leader_landed() {
    let landed = FlightEvent::Landed(stored("shared", "current").encode());
    let fake =
        Fake::default().lookup(Scripted::Follow(vec![FlightEvent::Chunk(b"sh".to_vec()), landed]), None);
    let (outcome, pieces) = run(&fake, json!({"prompt": "hi", "stream": true}), &[]);
    assert_eq!(pieces, ["sh"]);
    assert_eq!(outcome.unwrap().stored.response, "shared");
    assert!(fake.backend_calls().is_empty());
}

#[test]
fn a_follower_whose_leader_left_tries_again_and_leads() {
    let fake = Fake::default()
        .lookup(Scripted::Follow(vec![FlightEvent::Abandoned]), None)
        .lookup(Scripted::Lead, None)
        .answer(text(&["mine"]));
    let (outcome, _) = run(&fake, json!({"prompt": "hi"}), &[]);
    assert_eq!(outcome.unwrap().stored.response, "mine");
    assert_eq!(fake.backend_calls(), ["current"]);
}

#[test]
fn after_every_leader_left_it_generates_without_a_flight() {
    let abandoned = || Scripted::Follow(vec![FlightEvent::Abandoned]);
    let fake = Fake::default()
        .lookup(abandoned(), None)
        .lookup(abandoned(), None)
        .lookup(abandoned(), None)
        .answer(text(&["alone"]));
    let (outcome, _) = run(&fake, json!({"prompt": "hi", "stream": true}), &[]);
    assert_eq!(outcome.unwrap().stored.response, "alone");
    assert!(!fake.seen().iter().any(|seen| matches!(seen, Seen::Landed { .. } | Seen::Published(_))));
}

#[test]
fn without_the_cache_nothing_is_looked_up_or_landed() {
    let fake = Fake::default().answer(text(&["fresh"]));
    let (outcome, _) = run(&fake, json!({"prompt": "hi", "use_cache": false}), &[]);
    assert_eq!(outcome.unwrap().cache_use, CacheUse::Bypass);
    assert_eq!(fake.seen(), [Seen::Started { model: "current".into(), stream: false }]);
}

#[test]
fn text_on_the_final_line_is_the_answers_last_piece() {
    let last =
        StreamEvent::Done(Ending { text: " end".into(), tokens_generated: Some(2), ..Ending::default() });
    let fake =
        Fake::default().lookup(Scripted::Lead, None).answer(Ok(vec![StreamEvent::Text("the".into()), last]));
    let (outcome, pieces) = run(&fake, json!({"prompt": "hi", "stream": true}), &[]);
    assert_eq!(pieces, ["the", " end"]);
    assert_eq!(outcome.unwrap().stored.response, "the end");
    assert!(fake.seen().contains(&Seen::Published(" end".into())), "followers get it too");
}

#[test]
fn an_empty_answer_reaches_followers_but_is_not_stored() {
    let fake = Fake::default().lookup(Scripted::Lead, None).answer(text(&[]));
    let (outcome, _) = run(&fake, json!({"prompt": "hi"}), &[]);
    assert_eq!(outcome.unwrap().stored.response, "");
    assert!(fake.seen().contains(&Seen::Landed { value: stored("", "current"), fresh_s: 0, stale_s: 30 }));
}

#[test]
fn a_stream_whose_leader_left_part_way_continues_after_what_went_out() {
    let chunk = |text: &str| FlightEvent::Chunk(text.as_bytes().to_vec());
    let fake = Fake::default()
        .lookup(Scripted::Follow(vec![chunk("one "), chunk("two "), FlightEvent::Abandoned]), None)
        .lookup(Scripted::Lead, None)
        .answer(text(&["one ", "two ", "three"]));
    let (outcome, pieces) = run(&fake, json!({"prompt": "hi", "stream": true}), &[]);
    assert_eq!(pieces, ["one ", "two ", "three"], "nothing twice, nothing lost");
    assert_eq!(outcome.unwrap().stored.response, "one two three");
    let published = fake.seen().into_iter().filter(|seen| matches!(seen, Seen::Published(_))).count();
    assert_eq!(published, 3, "the new leader's own followers get the whole answer");
}

#[test]
fn a_replacement_that_differs_from_what_went_out_fails_the_stream() {
    let fake = Fake::default()
        .lookup(Scripted::Follow(vec![FlightEvent::Chunk(b"one ".to_vec()), FlightEvent::Abandoned]), None)
        .lookup(Scripted::Lead, None)
        .answer(text(&["uno ", "dos"]));
    let (outcome, pieces) = run(&fake, json!({"prompt": "hi", "stream": true}), &[]);
    assert_eq!(pieces, ["one "], "nothing of a different answer goes out");
    assert!(matches!(outcome, Err(ApiError::BadGateway { .. })), "{outcome:?}");
    assert!(
        fake.seen()
            .iter()
            .any(|seen| matches!(seen, Seen::Landed { value, .. } if value.response == "uno dos")),
        "the replacement still lands for its followers"
    );
}
