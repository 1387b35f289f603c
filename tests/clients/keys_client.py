"""Client keys as the official clients see them (the openai SDK, the anthropic SDK, ollama-python),
pointed at llm-service with CLIENT_KEYS=required.

usage: keys_client.py URL MODEL KEY OTHER_MODEL SPENT_KEY

KEY is a valid key for MODEL only; SPENT_KEY is one whose per-minute limit is used up. Asserts as
it goes, then prints one JSON line: what each client raised (and the retry-after OpenAI's saw), and
what the valid key was answered.
"""

import json
import sys

import anthropic
import ollama
import openai

from mistakes_client import refused as raised


def main():
    url, model, key, other, spent = sys.argv[1:6]
    chat = [{"role": "user", "content": "one two"}]
    seen = {}
    wrong = openai.OpenAI(base_url=url + "/v1", api_key="lls-not-a-key", max_retries=0)
    seen["openai_wrong"] = raised(lambda: wrong.chat.completions.create(model=model, messages=chat),
                                  openai.AuthenticationError)
    right = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
    seen["openai_other_model"] = raised(lambda: right.chat.completions.create(model=other, messages=chat),
                                        openai.PermissionDeniedError)
    seen["openai_answer"] = right.chat.completions.create(model=model, messages=chat).choices[0].message.content

    claude = anthropic.Anthropic(base_url=url, api_key="lls-not-a-key", max_retries=0)
    seen["anthropic_wrong"] = raised(
        lambda: claude.messages.create(model=model, max_tokens=16, messages=chat), anthropic.AuthenticationError)
    keyed = anthropic.Anthropic(base_url=url, api_key=key, max_retries=0)
    seen["anthropic_answer"] = keyed.messages.create(model=model, max_tokens=16, messages=chat).content[0].text

    bare = ollama.Client(host=url)
    seen["ollama_missing"] = raised(lambda: bare.chat(model=model, messages=chat), ollama.ResponseError)
    with_key = ollama.Client(host=url, headers={"Authorization": f"Bearer {key}"})
    seen["ollama_answer"] = with_key.chat(model=model, messages=chat)["message"]["content"]

    # max_retries=0: left to itself each SDK would wait out Retry-After and ask again.
    limited = openai.OpenAI(base_url=url + "/v1", api_key=spent, max_retries=0)
    try:
        limited.chat.completions.create(model=model, messages=chat)
        raise AssertionError("a spent key was answered")
    except openai.RateLimitError as error:
        seen["openai_limited"] = error.status_code
        seen["openai_limited_code"] = error.code
        seen["openai_retry_after"] = error.response.headers.get("retry-after")
    spent_claude = anthropic.Anthropic(base_url=url, api_key=spent, max_retries=0)
    seen["anthropic_limited"] = raised(
        lambda: spent_claude.messages.create(model=model, max_tokens=16, messages=chat), anthropic.RateLimitError)
    spent_ollama = ollama.Client(host=url, headers={"Authorization": f"Bearer {spent}"})
    seen["ollama_limited"] = raised(lambda: spent_ollama.chat(model=model, messages=chat), ollama.ResponseError)
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
