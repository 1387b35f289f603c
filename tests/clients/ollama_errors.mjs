// ollama-js (npm `ollama`), unmodified: an embedding the backend cannot make
// must reach it as Ollama's error, a string, not "[object Object]".
//
// usage: node ollama_errors.mjs URL MODEL
import assert from "node:assert/strict";
import { Ollama } from "ollama";

const [url, model] = process.argv.slice(2);
const client = new Ollama({ host: url });
try {
  await client.embed({ model, input: "hello" });
  assert.fail("the embedding was answered");
} catch (error) {
  assert.equal(error.name, "ResponseError", String(error));
  assert.ok(!error.message.includes("[object Object]"), error.message);
  console.log(JSON.stringify({ embed: error.status_code, message: error.message }));
}
