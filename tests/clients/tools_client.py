"""Tool calls through both dialects, with the unmodified clients: the
backend answers `get_weather(city="Paris")` instead of text.

usage: tools_client.py URL MODEL

Asserts as it goes, then prints one JSON line: what it saw.
"""

import json
import sys

import ollama
import openai

TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def main():
    url, model = sys.argv[1], sys.argv[2]
    seen = {}

    ollama_client = ollama.Client(host=url)
    whole = ollama_client.chat(model=model, messages=ASK, tools=TOOLS, stream=False)
    call = whole.message.tool_calls[0].function
    assert (call.name, dict(call.arguments)) == ("get_weather", {"city": "Paris"}), whole
    streamed = [
        call.function
        for part in ollama_client.chat(model=model, messages=ASK, tools=TOOLS, stream=True)
        for call in (part.message.tool_calls or [])
    ]
    assert [(call.name, dict(call.arguments)) for call in streamed] == [("get_weather", {"city": "Paris"})], streamed
    seen["ollama"] = call.name

    openai_client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    answer = openai_client.chat.completions.create(model=model, messages=ASK, tools=TOOLS)
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    function = choice.message.tool_calls[0].function
    assert (function.name, json.loads(function.arguments)) == ("get_weather", {"city": "Paris"}), choice
    names, arguments, finish = "", "", None
    for chunk in openai_client.chat.completions.create(model=model, messages=ASK, tools=TOOLS, stream=True):
        for choice in chunk.choices:
            for fragment in choice.delta.tool_calls or []:
                names += fragment.function.name or ""
                arguments += fragment.function.arguments or ""
            finish = choice.finish_reason or finish
    assert (names, json.loads(arguments), finish) == ("get_weather", {"city": "Paris"}, "tool_calls")
    seen["openai"] = function.name

    # The assistant's call and the tool's answer go back in the next turn.
    follow_up = ASK + [
        {"role": "assistant", "content": None, "tool_calls": [choice_call.model_dump() for choice_call in answer.choices[0].message.tool_calls]},
        {"role": "tool", "tool_call_id": answer.choices[0].message.tool_calls[0].id, "content": "sunny"},
    ]
    again = openai_client.chat.completions.create(model=model, messages=follow_up, tools=TOOLS)
    assert again.choices[0].message.tool_calls, again
    seen["follow_up"] = True
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
