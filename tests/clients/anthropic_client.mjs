// Anthropic's Messages API through the official @anthropic-ai/sdk, unmodified,
// pointed at llm-service.
//
// usage: node anthropic_client.mjs URL MODEL [--missing-model]
//
// Asserts as it goes, then prints one JSON line: what it saw.
import assert from "node:assert/strict";
import Anthropic from "@anthropic-ai/sdk";

const [url, model] = process.argv.slice(2);
const client = new Anthropic({ baseURL: url, apiKey: "unused", maxRetries: 0 });
const seen = {};
const messages = [{ role: "user", content: "Name a colour." }];

const first = await client.messages.create({ model, max_tokens: 12, messages });
assert.equal(first.type, "message");
assert.ok(first.content[0].text.trim(), JSON.stringify(first));
const again = await client.messages.create({ model, max_tokens: 12, messages });
assert.equal(again.content[0].text, first.content[0].text, "the repeat is the same answer");
seen.whole = first.content[0].text;

// Streamed: the SDK's own event parser and accumulator.
const stream = client.messages.stream({ model, max_tokens: 10, messages: [{ role: "user", content: "Say hi." }] });
let text = "";
stream.on("text", (piece) => { text += piece; });
const final = await stream.finalMessage();
assert.equal(final.content[0].text, text);
assert.ok(["end_turn", "max_tokens"].includes(final.stop_reason), final.stop_reason);
seen.stream = text;

// A missing max_tokens (nothing in JavaScript stops it being sent): the SDK's BadRequestError.
try {
  await client.messages.create({ model, messages });
  assert.fail("a missing max_tokens was answered");
} catch (error) {
  assert.ok(error instanceof Anthropic.BadRequestError, String(error));
  assert.equal(error.error.error.type, "invalid_request_error");
  seen.missingMaxTokens = error.status;
}

if (process.argv.includes("--missing-model")) {
  try {
    await client.messages.create({ model: "no-such-model:1b", max_tokens: 8, messages });
    assert.fail("a missing model was answered");
  } catch (error) {
    assert.ok(error instanceof Anthropic.NotFoundError, String(error));
    seen.missingModel = error.status;
  }
}
console.log(JSON.stringify(seen));
