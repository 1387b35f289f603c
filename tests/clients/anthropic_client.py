"""Anthropic's Messages API through the official anthropic SDK, unmodified, pointed at llm-service.

usage: anthropic_client.py URL MODEL [--tools] [--missing-model]

Asserts as it goes, then prints one JSON line: what it saw. --tools runs a
tool-use round trip (the backend must answer with a get_weather call);
--missing-model checks that a model the backend lacks raises
anthropic.NotFoundError.
"""

import json
import sys

import anthropic


def main():
    url, model = sys.argv[1], sys.argv[2]
    client = anthropic.Anthropic(base_url=url, api_key="unused", max_retries=0)
    seen = {}
    if "--tools" in sys.argv:
        seen["tools"] = tool_round_trip(client, model)
        print(json.dumps(seen))
        return
    messages = [{"role": "user", "content": "Name a fruit."}]
    system = [{"type": "text", "text": "Answer in a few words."}]

    # Whole: the second identical call is a hit (X-Cache on the raw response),
    # whatever the metadata says.
    raw = client.messages.with_raw_response.create(
        model=model, max_tokens=12, system=system, messages=messages, metadata={"user_id": "a"})
    first = raw.parse()
    assert raw.headers.get("x-cache") == "MISS", raw.headers
    assert first.type == "message" and first.role == "assistant", first
    assert first.id.startswith("msg_"), first.id
    assert first.content[0].type == "text" and first.content[0].text.strip(), first
    assert first.stop_reason in ("end_turn", "max_tokens"), first
    assert first.usage.output_tokens > 0, first.usage
    raw = client.messages.with_raw_response.create(
        model=model, max_tokens=12, system=system, messages=messages, metadata={"user_id": "b"})
    again = raw.parse()
    assert raw.headers.get("x-cache") == "HIT", raw.headers
    assert again.content[0].text == first.content[0].text
    assert again.id != first.id, "a hit gets an id of its own"
    seen["whole"] = first.content[0].text

    # Streamed with the SDK's own event parser; a streamed repeat replays the same text.
    def stream_text():
        with client.messages.stream(
                model=model, max_tokens=10, messages=[{"role": "user", "content": "Say hi."}]) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert final.content[0].type == "text" and final.content[0].text == text, final
        assert final.stop_reason in ("end_turn", "max_tokens"), final
        assert final.usage.output_tokens > 0, final.usage
        return text

    streamed = stream_text()
    assert streamed.strip()
    assert stream_text() == streamed
    seen["stream"] = streamed

    counted = client.messages.count_tokens(model=model, messages=messages, system=system)
    assert counted.input_tokens > 0, counted
    seen["count_tokens"] = counted.input_tokens

    # A missing max_tokens is the client's mistake: BadRequestError, not retried.
    try:
        # (an explicit timeout: the SDK otherwise derives one from max_tokens)
        client.messages.create(model=model, messages=messages, max_tokens=anthropic.omit, timeout=60)
        raise AssertionError("a missing max_tokens was answered")
    except anthropic.BadRequestError as error:
        assert error.status_code == 400 and "max_tokens" in str(error), error
        assert error.body["error"]["type"] == "invalid_request_error", error.body
        seen["missing_max_tokens"] = error.status_code

    if "--missing-model" in sys.argv:
        try:
            client.messages.create(model="no-such-model:1b", max_tokens=8, messages=messages)
            raise AssertionError("a missing model was answered")
        except anthropic.NotFoundError as error:
            assert error.body["error"]["type"] == "not_found_error", error.body
            seen["missing_model"] = error.status_code
    print(json.dumps(seen))


def tool_round_trip(client, model):
    """A get_weather call, whole and streamed, and the answer to its result."""
    tools = [{
        "name": "get_weather",
        "description": "The weather in a city.",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }]
    asked = [{"role": "user", "content": "What is the weather in Paris?"}]
    called = client.messages.create(model=model, max_tokens=64, tools=tools, messages=asked)
    assert called.stop_reason == "tool_use", called
    use = next(block for block in called.content if block.type == "tool_use")
    assert use.name == "get_weather" and use.input == {"city": "Paris"}, use
    assert use.id.startswith("toolu_"), use.id
    with client.messages.stream(model=model, max_tokens=64, tools=tools, messages=asked) as stream:
        final = stream.get_final_message()
    streamed_use = next(block for block in final.content if block.type == "tool_use")
    assert streamed_use.name == "get_weather" and streamed_use.input == {"city": "Paris"}, final
    assert final.stop_reason == "tool_use", final
    follow_up = asked + [
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in called.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny, 21 C"}]},
    ]
    answer = client.messages.create(model=model, max_tokens=64, tools=tools, messages=follow_up)
    assert answer.content and answer.content[0].type in ("text", "tool_use"), answer
    return use.name


if __name__ == "__main__":
    main()
