// The console's client keys panel: the keys with their limits and use
// today (never a secret: the API lists none), a form that makes one and
// shows its secret this once, and a revoke button per key. It is given the
// console's helpers rather than importing them, so console.js stays the
// one module that owns the page.

const when = (seconds) => (seconds ? new Date(seconds * 1000).toLocaleString() : "");

function limitsText(limits) {
  const parts = [["rpm", "rpm"], ["tpm", "tpm"], ["daily_tokens", "tokens a day"]]
    .filter(([field]) => limits?.[field])
    .map(([field, label]) => `${limits[field]} ${label}`);
  return parts.length ? parts.join(", ") : "none";
}

function stateText(key) {
  if (key.revoked_at) return `revoked ${when(key.revoked_at)}`;
  if (key.expires_at && key.expires_at * 1000 < Date.now()) return `expired ${when(key.expires_at)}`;
  return key.expires_at ? `until ${when(key.expires_at)}` : "active";
}

/** The keys panel over the page's `$`, `api`, `row`, `button`, `confirmed`, `report` and `refresh`. */
export function keysPanel({ $, api, row, button, confirmed, report, refresh }) {
  function show({ mode, keys }) {
    $("keys-mode").textContent = mode;
    const rows = keys.map((key) => {
      const use = key.use ?? {};
      const revoke = key.revoked_at ? null : button("Revoke", () => confirmed(
        `Revoke the key ${key.name} (${key.id}) of tenant ${key.tenant}? Every replica refuses it within a second.`,
        `revoke key ${key.id}`,
        () => api("DELETE", `/keys/${encodeURIComponent(key.id)}`),
      ));
      const tr = row([key.name, key.tenant, key.id, (key.models ?? []).join(", ") || "any",
        limitsText(key.limits), String(use.requests_today ?? 0), String(use.tokens_today ?? 0),
        when(use.last_used_at) || "never", stateText(key)], revoke);
      tr.dataset.keyId = key.id;
      return tr;
    });
    if (rows.length === 0) rows.push(row(["no client key", "", "", "", "", "", "", "", ""]));
    $("key-rows").replaceChildren(...rows);
  }

  async function create() {
    const tenant = $("key-tenant").value.trim();
    if (!tenant) { report("create key", { ok: false, status: 0, body: "a key needs a tenant" }); return; }
    const limits = {};
    [["key-rpm", "rpm"], ["key-tpm", "tpm"], ["key-daily-tokens", "daily_tokens"]].forEach(([id, field]) => {
      const value = $(id).value.trim();
      if (value) limits[field] = Number(value);
    });
    const spec = { tenant, limits, models: $("key-models").value.split(",").map((m) => m.trim()).filter(Boolean) };
    const name = $("key-name").value.trim();
    if (name) spec.name = name;
    const answer = await api("POST", "/keys", JSON.stringify(spec), "application/json");
    // The secret is shown here, once, and never goes into the answers list.
    $("key-secret").textContent = answer.ok ? answer.body.secret : "";
    $("key-secret-note").hidden = !answer.ok;
    const { secret: _shownOnce, ...record } = answer.ok ? answer.body : {};
    report(`create key for ${tenant}`, answer.ok ? { ...answer, body: record } : answer);
    if (answer.ok) ["key-tenant", "key-name", "key-rpm", "key-tpm", "key-daily-tokens", "key-models"]
      .forEach((id) => { $(id).value = ""; });
    await refresh();
  }

  function clear() {
    $("key-rows").replaceChildren();
    $("key-secret").textContent = "";
    $("key-secret-note").hidden = true;
    $("keys-mode").textContent = "";
  }

  $("create-key").addEventListener("click", create);
  return { show, clear };
}
