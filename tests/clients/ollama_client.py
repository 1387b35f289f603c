"""The Ollama dialect through ollama-python, unmodified, pointed at llm-service.

usage: ollama_client.py URL MODEL [--embed] [--missing-model] [--manage]

Asserts as it goes (an AssertionError or the client's own exception fails
the run), then prints one JSON line: what it saw. --embed also checks
/api/embed (the backend must embed); --missing-model checks that a model
the backend lacks raises ollama.ResponseError with status 404; --manage
pulls, copies and deletes a model (the service must allow it).
"""

import json
import sys

import httpx
import ollama


def x_cache(url, path, body):
    """The X-Cache header of a raw POST: the client hides headers."""
    reply = httpx.post(url + path, content=body, headers={"content-type": "application/json"}, timeout=60)
    assert reply.status_code == 200, (reply.status_code, reply.text)
    return reply.headers.get("x-cache")


def main():
    url, model = sys.argv[1], sys.argv[2]
    client = ollama.Client(host=url)
    seen = {}

    # generate, whole: the second identical call is a cache hit.
    options = {"num_predict": 12, "seed": 7}
    first = client.generate(model=model, prompt="Name three colours.", options=options, stream=False)
    assert first.response.strip(), first
    assert first.done and first.done_reason in ("stop", "length"), first
    again = client.generate(model=model, prompt="Name three colours.", options=options, stream=False)
    assert again.response == first.response, (again.response, first.response)
    seen["generate"] = first.response

    # generate, streamed: pieces, then done; a repeat replays it.
    pieces = list(client.generate(model=model, prompt="Say hello to a friend.", options=options, stream=True))
    assert pieces[-1].done and not any(piece.done for piece in pieces[:-1]), pieces
    text = "".join(piece.response for piece in pieces)
    assert text.strip(), pieces
    replay = "".join(piece.response for piece in client.generate(model=model, prompt="Say hello to a friend.", options=options, stream=True))
    assert replay == text, (replay, text)
    seen["generate_stream_pieces"] = len(pieces)

    # chat, whole and streamed; the streamed repeat is a hit too.
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    chat = client.chat(model=model, messages=messages, options=options, stream=False)
    assert chat.message.role == "assistant" and chat.message.content.strip(), chat
    streamed = list(client.chat(model=model, messages=messages, options=options, stream=True))
    assert streamed[-1].done, streamed
    streamed_text = "".join(part.message.content for part in streamed)
    assert streamed_text == chat.message.content, (streamed_text, chat.message.content)
    seen["chat"] = chat.message.content

    # The key: key order and LangChain's `images: []` do not matter.
    ordered = json.dumps({"model": model, "stream": False, "options": {"seed": 3, "num_predict": 6},
                          "messages": [{"role": "user", "content": "Count to three."}]})
    reordered = json.dumps({"messages": [{"content": "Count to three.", "images": [], "role": "user"}],
                            "options": {"num_predict": 6, "seed": 3}, "stream": False, "model": model})
    assert x_cache(url, "/api/chat", ordered) == "MISS"
    assert x_cache(url, "/api/chat", reordered) == "HIT"
    seen["canonical"] = "HIT"

    # Listing, details and what is loaded.
    names = [entry.model for entry in client.list().models]
    assert model in names, names
    shown = client.show(model)
    assert shown.details is not None, shown
    loaded = client.ps()
    seen["models"] = names
    seen["loaded"] = [entry.model for entry in loaded.models]

    if "--embed" in sys.argv:
        embedded = client.embed(model=model, input=["first text", "second"])
        assert len(embedded.embeddings) == 2 and all(embedded.embeddings), embedded
        seen["embeddings"] = len(embedded.embeddings)

    if "--manage" in sys.argv:
        seen["pulled"] = [progress.status for progress in client.pull(model, stream=True)]
        assert client.copy(model, "copied:latest").status == "success"
        assert client.delete("copied:latest").status == "success"

    if "--missing-model" in sys.argv:
        try:
            client.chat(model="no-such-model:1b", messages=messages, stream=False)
        except ollama.ResponseError as error:
            assert error.status_code == 404, error
            seen["missing_model"] = error.status_code
        else:
            raise AssertionError("a missing model did not raise ollama.ResponseError")

    print(json.dumps(seen))


if __name__ == "__main__":
    main()
