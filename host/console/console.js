// The operator console. Every call goes through the admin API with the
// token in the Authorization header; the token lives in this tab's session
// storage only. Everything shown is set with textContent, never parsed as
// HTML, so names and sources from components and plugins are inert text.

import { TrafficCharts } from "/console/charts.js";
import { keysPanel } from "/console/keys.js";

const TOKEN_KEY = "llm-service-admin-token";
const REFRESH_MS = 2000;

const $ = (id) => document.getElementById(id);
let charts = null;
let timer = null;

/** The admin API's answer: {ok, status, body (parsed JSON or text)}. */
async function api(method, path, body, contentType) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY) ?? ""}` };
  if (contentType) headers["Content-Type"] = contentType;
  let response;
  try {
    response = await fetch(path, { method, headers, body, cache: "no-store" });
  } catch (error) {
    return { ok: false, status: 0, body: { error: `the service did not answer: ${error.message}` } };
  }
  const text = await response.text();
  let parsed = text;
  try { parsed = JSON.parse(text); } catch { /* not JSON: keep the text */ }
  if (response.status === 401) signOut("The admin API refused this token (401): check ADMIN_TOKEN.");
  return { ok: response.ok, status: response.status, body: parsed };
}

const json = (value) => JSON.stringify(value);

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function row(cells, action) {
  const tr = document.createElement("tr");
  cells.forEach((cell) => tr.append(element("td", cell)));
  const last = document.createElement("td");
  if (action) last.append(action);
  tr.append(last);
  return tr;
}

function button(label, onClick) {
  const node = element("button", label);
  node.type = "button";
  node.addEventListener("click", onClick);
  return node;
}

/** Records what the API answered to `action`, error text included. */
function report(action, answer) {
  const body = typeof answer.body === "string" ? answer.body : json(answer.body);
  const item = element("li", `${new Date().toLocaleTimeString()} ${action}: ${answer.status} ${body}`,
    answer.ok ? "ok" : "error");
  $("answers").prepend(item);
  while ($("answers").children.length > 50) $("answers").lastChild.remove();
}

/** Asks first, then runs the call, reports its answer and refreshes. */
async function confirmed(question, action, call) {
  if (!window.confirm(question)) return;
  report(action, await call());
  await refresh();
}

const short = (sha256) => (sha256 ?? "").slice(0, 12);

function showCanary(canary) {
  $("canary-summary").dataset.sha256 = canary?.sha256 ?? "";
  if (!canary) {
    $("canary-summary").textContent = "none";
    $("canary-window").textContent = "";
    return;
  }
  $("canary-summary").textContent = `v${canary.version} · sha256 ${short(canary.sha256)} · ${canary.percent}% of requests`;
  const side = (name, window) =>
    `${name}: ${window.answers} answers, ${(window.error_rate * 100).toFixed(1)}% 5xx, p99 ${window.p99_ms.toFixed(1)} ms`;
  $("canary-window").textContent =
    `Window: ${side("stable", canary.window.stable)}; ${side("canary", canary.window.canary)}`;
}

function showReplicas(replicas) {
  // Only with a shared store: what every replica serves, so a split fleet shows.
  $("replicas").hidden = !Array.isArray(replicas) || replicas.length === 0;
  $("replica-rows").replaceChildren(...(replicas ?? []).map((replica) => {
    const name = replica.this_replica ? `${replica.replica} (this one)` : replica.replica;
    const tr = row([name, `v${replica.handler_version} · ${short(replica.handler_sha256)}`, replica.model,
      `${replica.seen_s_ago} s ago`]);
    tr.lastChild.remove();
    return tr;
  }));
}

function showHandlers(components) {
  const { active, previous } = components;
  showCanary(components.canary);
  showReplicas(components.replicas);
  $("handler-active").textContent = `v${active.version} · sha256 ${active.sha256}`;
  $("handler-active").dataset.sha256 = active.sha256;
  const rows = [row([`v${active.version} (serving)`, short(active.sha256), active.loaded_at, active.source])];
  previous.forEach((version) => {
    const rollBack = button("Roll back to this", () => confirmed(
      `Roll back the handler to v${version.version} (sha256 ${short(version.sha256)})?`,
      `roll back to v${version.version}`,
      () => api("POST", "/components/handler/rollback", json({ sha256: version.sha256 }), "application/json"),
    ));
    rollBack.dataset.sha256 = version.sha256;
    rows.push(row([`v${version.version}`, short(version.sha256), version.loaded_at, version.source], rollBack));
  });
  $("handler-versions").replaceChildren(...rows);
}

function showPlugins({ plugins }) {
  const rows = plugins.map((plugin) => row(
    [plugin.name, plugin.characters.join(", "), short(plugin.sha256), plugin.source],
    button("Unload", () => confirmed(
      `Unload the plugin ${plugin.name}? Its characters get the default prompt.`,
      `unload plugin ${plugin.name}`,
      () => api("DELETE", `/plugins/${encodeURIComponent(plugin.name)}`),
    )),
  ));
  if (rows.length === 0) rows.push(row(["no plugin loaded", "", "", ""]));
  $("plugin-list").replaceChildren(...rows);
}

function showService(health, stats) {
  const status = health.body?.status ?? `unknown (${health.status})`;
  $("overall").textContent = status;
  $("overall").className = `badge ${status}`;
  $("health-status").textContent = status;
  $("backend-status").textContent = health.body?.ollama_status ?? "";
  $("cache-status").textContent = health.body?.cache_status ?? "";
  $("current-model").textContent = health.body?.model ?? "";
  const split = health.body?.model_split;
  $("model-split").textContent = split
    ? Object.entries(split).map(([model, weight]) => `${model}=${weight}`).join(", ")
    : "none";
  const quality = health.body?.quality ?? "off";
  $("quality").textContent = health.body?.quality_failure ? `${quality}: ${health.body.quality_failure}` : quality;
  const nodes = health.body?.backends ?? [];
  $("backend-nodes").hidden = nodes.length === 0;
  $("backend-node-rows").replaceChildren(...nodes.map((node) => {
    const tr = row([node.name, node.status, node.models.join(", "), node.loaded.join(", "),
      `${node.in_flight} / ${node.slots}`]);
    tr.lastChild.remove();
    return tr;
  }));
  $("requests-in-flight").textContent = stats.requests_in_flight;
  $("generations-in-flight").textContent = stats.generations_in_flight;
  $("generations-queued").textContent = stats.generations_queued;
  $("uptime").textContent = `${Math.round(stats.uptime_s)} s`;
  const endpoints = Object.entries(stats.requests_by_endpoint ?? {}).sort(([, a], [, b]) => b - a);
  $("endpoint-rows").replaceChildren(...endpoints.map(([endpoint, count]) => {
    const tr = row([endpoint, String(count)]);
    tr.lastChild.remove();
    return tr;
  }));
}

/** One refresh of everything shown; false when the token was refused. */
async function refresh() {
  const [stats, health, components, plugins, keys] = await Promise.all([
    api("GET", "/stats"),
    api("GET", "/service/health"),
    api("GET", "/components"),
    api("GET", "/plugins"),
    api("GET", "/keys"),
  ]);
  if ([stats, components, plugins, keys].some((answer) => answer.status === 401)) return false;
  if (stats.ok) {
    charts.add(stats.body);
    showService(health, stats.body);
  }
  if (components.ok) showHandlers(components.body);
  if (plugins.ok) showPlugins(plugins.body);
  if (keys.ok) clientKeys.show(keys.body);
  $("refreshed").textContent = `updated ${new Date().toLocaleTimeString()}`;
  return true;
}

async function loadModels() {
  const answer = await api("GET", "/service/models");
  if (!answer.ok) { report("list models", answer); return; }
  const options = answer.body.models.map((model) => {
    const option = element("option", model.name);
    option.value = model.name;
    option.selected = model.name === answer.body.current;
    return option;
  });
  $("model-choice").replaceChildren(...options);
}

async function push(inputId, path, what) {
  const file = $(inputId).files[0];
  if (!file) { report(`push ${what}`, { ok: false, status: 0, body: "choose a .wasm file first" }); return; }
  await confirmed(`Push ${file.name} (${file.size} bytes) as the ${what}? It serves at once.`,
    `push ${what} ${file.name}`, () => api("PUT", path, file, "application/wasm"));
  $(inputId).value = "";
}

function signOut(why) {
  sessionStorage.removeItem(TOKEN_KEY);
  clearInterval(timer);
  timer = null;
  $("dashboard").hidden = true;
  $("login").hidden = false;
  $("sign-out").hidden = true;
  $("overall").textContent = "signed out";
  $("overall").className = "badge";
  $("refreshed").textContent = "";
  // No token, no data: what was shown goes with it.
  ["handler-versions", "plugin-list", "model-choice", "answers", "backend-node-rows", "replica-rows", "endpoint-rows"]
    .forEach((id) => $(id).replaceChildren());
  document.querySelectorAll(".facts dd, #handler-active, #canary-summary, #canary-window")
    .forEach((node) => { node.textContent = ""; });
  charts?.reset();
  clientKeys.clear();
  $("login-error").textContent = why ?? "";
}

async function signIn(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
  $("login-error").textContent = "";
  charts ??= new TrafficCharts($("chart-requests"), $("chart-hits"), $("chart-latency"));
  $("dashboard").hidden = false;
  if (!(await refresh())) return;
  $("login").hidden = true;
  $("sign-out").hidden = false;
  await loadModels();
  timer = setInterval(refresh, REFRESH_MS);
}

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = $("token").value.trim();
  $("token").value = "";
  signIn(token);
});
$("sign-out").addEventListener("click", () => signOut());
$("push-handler").addEventListener("click", () => push("handler-file", "/components/handler", "handler"));
$("push-plugin").addEventListener("click", () => push("plugin-file", "/plugins", "plugin"));
$("reload-models").addEventListener("click", loadModels);
$("push-canary").addEventListener("click", () => {
  const percent = Number($("canary-percent").value);
  push("handler-file", `/components/handler/canary?percent=${percent}`, `canary at ${percent}%`);
});
$("set-canary-share").addEventListener("click", () => {
  const percent = Number($("canary-percent").value);
  confirmed(`Send ${percent}% of requests to the canary?`, `canary share ${percent}%`,
    () => api("PUT", `/components/handler/canary?percent=${percent}`));
});
$("promote-canary").addEventListener("click", () => confirmed(
  "Promote the canary? It serves every request from now on.", "promote canary",
  () => api("POST", "/components/handler/promote")));
$("drop-canary").addEventListener("click", () => confirmed(
  "Drop the canary? Every request goes to the serving version.", "drop canary",
  () => api("DELETE", "/components/handler/canary")));
$("set-split").addEventListener("click", () => {
  const split = $("split-text").value.trim();
  confirmed(`Split generations that name no model as ${split}?`, `model split ${split}`,
    () => api("PUT", "/model-split", json({ split }), "application/json"));
});
$("end-split").addEventListener("click", () => confirmed(
  "End the model split? Generations use the current model again.", "end model split",
  () => api("DELETE", "/model-split")));
$("switch-model").addEventListener("click", () => {
  const model = $("model-choice").value;
  if (!model) return;
  confirmed(`Switch the current model to ${model}? This empties the response cache.`,
    `switch model to ${model}`, () => api("POST", "/service/model", json({ model }), "application/json"));
});
$("clear-cache").addEventListener("click", () => {
  const character = $("clear-character").value.trim();
  const scope = character ? `the character ${character}` : "every character";
  confirmed(`Clear the cached answers of ${scope}?`, `clear cache (${scope})`,
    () => api("POST", "/service/cache/clear", json(character ? { character } : {}), "application/json"));
});

const clientKeys = keysPanel({ $, api, row, button, confirmed, report, refresh });

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) signIn(saved);
