"""The OpenAI dialect through the official openai SDK, unmodified, pointed at llm-service.

usage: openai_client.py URL MODEL [--embed] [--missing-model]

Asserts as it goes, then prints one JSON line: what it saw. --embed also
checks /v1/embeddings; --missing-model checks that a model the backend
lacks raises openai.NotFoundError.
"""

import json
import sys

import openai


def main():
    url, model = sys.argv[1], sys.argv[2]
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    seen = {}
    messages = [{"role": "user", "content": "Name a fruit."}]

    # Whole: the second identical call is a hit (X-Cache on the raw response).
    raw = client.chat.completions.with_raw_response.create(model=model, messages=messages, max_tokens=12, seed=5)
    first = raw.parse()
    assert raw.headers.get("x-cache") == "MISS", raw.headers
    assert first.object == "chat.completion" and first.choices[0].message.content.strip(), first
    assert first.choices[0].finish_reason in ("stop", "length"), first
    assert first.usage.completion_tokens > 0, first.usage
    raw = client.chat.completions.with_raw_response.create(model=model, messages=messages, max_tokens=12, seed=5)
    assert raw.headers.get("x-cache") == "HIT", raw.headers
    assert raw.parse().choices[0].message.content == first.choices[0].message.content
    seen["chat"] = first.choices[0].message.content

    # Streamed, with the usage chunk; a streamed repeat replays the same text.
    def stream_text():
        stream = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Say hi."}], max_tokens=10, seed=5,
            stream=True, stream_options={"include_usage": True})
        text, usage, finish = "", None, None
        for chunk in stream:
            assert chunk.object == "chat.completion.chunk", chunk
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                text += choice.delta.content or ""
                finish = choice.finish_reason or finish
        assert usage is not None and usage.completion_tokens > 0, usage
        assert finish in ("stop", "length"), finish
        return text

    streamed = stream_text()
    assert streamed.strip()
    assert stream_text() == streamed
    seen["stream"] = streamed

    # The legacy completions API: whole, a hit again, and streamed.
    raw = client.completions.with_raw_response.create(model=model, prompt="Once upon a time", max_tokens=8, seed=5)
    completion = raw.parse()
    assert completion.object == "text_completion" and completion.choices[0].text.strip(), completion
    again = client.completions.with_raw_response.create(model=model, prompt="Once upon a time", max_tokens=8, seed=5)
    assert again.headers.get("x-cache") == "HIT" and again.parse().choices[0].text == completion.choices[0].text
    pieces = [chunk.choices[0].text for chunk in client.completions.create(
        model=model, prompt="Once upon a time", max_tokens=8, seed=5, stream=True) if chunk.choices]
    assert "".join(pieces) == completion.choices[0].text, (pieces, completion.choices[0].text)
    seen["completion"] = completion.choices[0].text

    ids = [entry.id for entry in client.models.list()]
    assert model in ids, ids
    assert client.models.retrieve(model).id == model
    seen["models"] = ids

    if "--embed" in sys.argv:
        embedded = client.embeddings.create(model=model, input=["one", "two words"])
        assert len(embedded.data) == 2 and embedded.data[1].embedding, embedded
        seen["embeddings"] = len(embedded.data)

    if "--missing-model" in sys.argv:
        try:
            client.chat.completions.create(model="no-such-model:1b", messages=messages)
        except openai.NotFoundError as error:
            seen["missing_model"] = error.status_code
        else:
            raise AssertionError("a missing model did not raise openai.NotFoundError")

    print(json.dumps(seen))


if __name__ == "__main__":
    main()
