"""OpenAI's Responses API through the official openai SDK, unmodified, pointed at llm-service.

usage: responses_client.py URL MODEL [--tools] [--missing-model]

Asserts as it goes, then prints one JSON line: what it saw. --tools runs a
function-call round trip (the backend must answer with a get_weather
call); --missing-model checks that a model the backend lacks raises
openai.NotFoundError.
"""

import json
import sys

import openai


def main():
    url, model = sys.argv[1], sys.argv[2]
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    seen = {}
    if "--tools" in sys.argv:
        seen["tools"] = function_round_trip(client, model)
        print(json.dumps(seen))
        return

    # Whole: the second identical call is a hit, with ids of its own.
    ask = dict(model=model, input="Name a fruit.", instructions="Answer in a few words.", max_output_tokens=16)
    raw = client.responses.with_raw_response.create(**ask)
    first = raw.parse()
    assert raw.headers.get("x-cache") == "MISS", raw.headers
    assert first.object == "response" and first.id.startswith("resp_"), first
    assert first.status in ("completed", "incomplete"), first
    assert first.output_text.strip(), first
    assert first.usage.output_tokens > 0, first.usage
    assert first.instructions == "Answer in a few words.", first.instructions
    raw = client.responses.with_raw_response.create(**ask)
    again = raw.parse()
    assert raw.headers.get("x-cache") == "HIT", raw.headers
    assert again.output_text == first.output_text and again.id != first.id
    seen["whole"] = first.output_text

    # Streamed, read by the SDK's own typed events.
    def stream_text():
        events = client.responses.create(model=model, input="Say hi.", max_output_tokens=12, stream=True)
        text, kinds, numbers, last = "", [], [], None
        for event in events:
            kinds.append(event.type)
            numbers.append(event.sequence_number)
            if event.type == "response.output_text.delta":
                text += event.delta
            last = event
        assert kinds[0] == "response.created", kinds
        assert numbers == list(range(len(kinds))), numbers
        assert last.type in ("response.completed", "response.incomplete"), kinds
        assert last.response.output_text == text, (last.response, text)
        return text

    streamed = stream_text()
    assert streamed.strip()
    assert stream_text() == streamed
    seen["stream"] = streamed

    # The SDK's stream helper accumulates the same events into its snapshot.
    with client.responses.stream(model=model, input="Say hi.", max_output_tokens=12) as stream:
        kinds = [event.type for event in stream]
        if kinds[-1] == "response.completed":
            assert stream.get_final_response().output_text == streamed
    seen["helper"] = kinds[-1]

    # State is not kept: the client's mistake, told so.
    try:
        client.responses.create(model=model, input="again", previous_response_id=first.id)
        raise AssertionError("previous_response_id was answered")
    except openai.BadRequestError as error:
        assert "stateless" in str(error), error
        seen["previous_response_id"] = error.status_code

    if "--missing-model" in sys.argv:
        try:
            client.responses.create(model="no-such-model:1b", input="hello")
            raise AssertionError("a missing model was answered")
        except openai.NotFoundError as error:
            seen["missing_model"] = error.status_code
    print(json.dumps(seen))


def function_round_trip(client, model):
    """A get_weather call, whole and streamed, and the answer to its output."""
    tools = [{
        "type": "function", "name": "get_weather", "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }]
    asked = [{"role": "user", "content": "What is the weather in Paris?"}]
    called = client.responses.create(model=model, tools=tools, input=asked)
    call = next(item for item in called.output if item.type == "function_call")
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}, call
    with client.responses.stream(model=model, tools=tools, input=asked) as stream:
        final = stream.get_final_response()
    streamed = next(item for item in final.output if item.type == "function_call")
    assert streamed.name == "get_weather" and json.loads(streamed.arguments) == {"city": "Paris"}, final
    follow_up = asked + [item.model_dump(exclude_none=True) for item in called.output] + [
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 C"}]
    answer = client.responses.create(model=model, tools=tools, input=follow_up)
    assert answer.output, answer
    return call.name


if __name__ == "__main__":
    main()
