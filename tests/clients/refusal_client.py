"""A prompt over the model's context, through the official openai and anthropic SDKs with their
default retries: each must raise its own BadRequestError at once, not retry a server error.

usage: refusal_client.py URL MODEL

Prints one JSON line: what each client saw.
"""

import json
import sys

import anthropic
import openai


def main():
    url, model = sys.argv[1], sys.argv[2]
    too_long = "Repeat after me: " + "many words " * 1500
    seen = {}
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused")
    try:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": too_long}], max_tokens=4)
        raise AssertionError("a prompt over the context was answered")
    except openai.BadRequestError as error:
        assert error.code == "context_length_exceeded", error.body
        seen["openai"] = error.status_code
    client = anthropic.Anthropic(base_url=url, api_key="unused")
    try:
        client.messages.create(model=model, max_tokens=4, messages=[{"role": "user", "content": too_long}])
        raise AssertionError("a prompt over the context was answered")
    except anthropic.BadRequestError as error:
        assert error.body["error"]["type"] == "invalid_request_error", error.body
        assert "context" in error.body["error"]["message"], error.body
        seen["anthropic"] = error.status_code
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
