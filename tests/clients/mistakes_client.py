"""What goes wrong, as the official ollama and openai clients see it (ollama-python, the openai SDK,
both with their default retries), pointed at llm-service over the fake Ollama.

usage: mistakes_client.py URL MODEL

Asserts as it goes, then prints one JSON line: what each client saw.
"""

import json
import sys

import ollama
import openai


def refused(call, error_type):
    """The status of the error_type `call` raises (it must raise one)."""
    try:
        call()
    except error_type as error:
        return getattr(error, "status_code", None)
    raise AssertionError(f"{call} was answered")


def main():
    url, model = sys.argv[1], sys.argv[2]
    seen = {}
    olla = ollama.Client(host=url)
    chat = [{"role": "user", "content": "one two"}]
    # Options of the wrong type: the client's mistake, named.
    seen["hot"] = refused(lambda: olla.chat(model=model, messages=chat, options={"temperature": "hot"}),
                          ollama.ResponseError)
    seen["many"] = refused(lambda: olla.generate(model=model, prompt="x", options={"num_predict": "many"}),
                           ollama.ResponseError)
    # Statistics that describe the generation, on a miss and on a hit alike.
    first = olla.chat(model=model, messages=chat, stream=False)
    again = olla.chat(model=model, messages=chat, stream=False)
    for answer in (first, again):
        assert answer.prompt_eval_duration and answer.eval_duration, answer
        assert answer.eval_count / (answer.eval_duration / 1e9) < 10_000, "tokens per second of the model"
    assert again.eval_duration == first.eval_duration
    seen["eval_duration"] = again.eval_duration

    client = openai.OpenAI(base_url=url + "/v1", api_key="unused")
    seen["wizard"] = refused(lambda: client.chat.completions.create(
        model=model, messages=[{"role": "wizard", "content": "hi"}]), openai.BadRequestError)
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    time = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
    named = client.chat.completions.create(
        model=model, messages=chat, tools=[weather, time],
        tool_choice={"type": "function", "function": {"name": "get_time"}})
    none = client.chat.completions.create(model=model, messages=chat, tools=[weather, time], tool_choice="none")
    assert named.choices[0].message.content == none.choices[0].message.content == "one two"
    seen["required"] = refused(lambda: client.chat.completions.create(
        model=model, messages=chat, tools=[weather], tool_choice="required"), openai.BadRequestError)
    stream = client.chat.completions.create(
        model=model, messages=chat, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[-1].usage is not None and all(chunk.usage is None for chunk in chunks[:-1]), chunks
    effort = client.chat.completions.create(model=model, messages=chat, reasoning_effort="high")
    assert effort.choices[0].message.content == "one two"
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
