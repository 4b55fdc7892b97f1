// pawstream labelling page: polls /ui/state, posts uploads and labels to the API's own endpoints.
// No framework, no build step. Everything shown is set with textContent (never parsed as HTML).
"use strict";
(() => {
  const cfg = JSON.parse(document.getElementById("ui-config").textContent);
  const KEY = "pawstream-api-key";
  const $ = (id) => document.getElementById(id);
  let pausedUntil = 0; // rate limited: no request before this (ms since epoch)
  let timer = null;

  const apiKey = () => sessionStorage.getItem(KEY) || "";
  const needKey = () => cfg.keys_on && !apiKey();

  function showKeyBox(show) {
    $("key-box").hidden = !show;
  }

  function status(text) {
    $("status").textContent = text;
  }

  // One request: the key when there is one; 401 asks for it again, 429 pauses for Retry-After.
  async function call(method, url, body) {
    if (Date.now() < pausedUntil) {
      return null;
    }
    const headers = {};
    if (apiKey()) headers["X-API-Key"] = apiKey();
    if (body && !(body instanceof FormData)) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(url, { method, headers, body });
    } catch (err) {
      status("API unreachable; retrying");
      return null;
    }
    if (resp.status === 401) {
      sessionStorage.removeItem(KEY);
      showKeyBox(true);
      status("a valid API key is needed");
    } else if (resp.status === 429) {
      const wait = Number(resp.headers.get("Retry-After") || "5");
      pausedUntil = Date.now() + wait * 1000;
      status(`rate limited; waiting ${wait}s`);
    }
    return resp;
  }

  const pct = (x) => (x === null || x === undefined ? "–" : `${(100 * x).toFixed(1)}%`);
  const ms = (s) => (s === null || s === undefined ? "–" : `${Math.round(1000 * s)} ms`);

  function duration(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    if (s < 120) return `${s}s`;
    if (s < 7200) return `${Math.floor(s / 60)}m`;
    return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  }

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    Object.assign(node, props || {});
    for (const child of children) {
      node.append(child);
    }
    return node;
  }

  // Label clicks that could not be sent yet (rate limited, API unreachable, key missing): kept and
  // sent again before each poll, shown as queued, never silently dropped.
  const pendingLabels = new Map(); // image id -> label

  function queued(value) {
    return el("span", { className: "queued-label", textContent: `queued ${value}: sent when the API allows` });
  }

  // One label: true when it is settled (sent, or refused for good), false to keep it queued.
  async function sendLabel(id, value) {
    const resp = await call("POST", "/v1/feedback", { id, label: value });
    if (!resp || resp.status === 429 || resp.status === 401) return { settled: false };
    if (resp.status === 202) return { settled: true, sent: true };
    const body = await resp.json().catch(() => ({}));
    status(`label not sent: ${(body.error && body.error.message) || resp.status}`);
    return { settled: true, sent: false };
  }

  async function flushLabels() {
    for (const [id, value] of [...pendingLabels]) {
      if (Date.now() < pausedUntil || needKey()) return;
      const { settled } = await sendLabel(id, value);
      if (!settled) return; // still limited: the next poll tries again, in click order
      pendingLabels.delete(id);
    }
  }

  async function label(item, value, box) {
    for (const b of box.querySelectorAll("button")) b.disabled = true;
    const { settled, sent } = pendingLabels.size ? { settled: false } : await sendLabel(item.id, value);
    if (sent) {
      item.feedback = value;
      box.replaceChildren(el("span", { className: "done-label", textContent: `labelled ${value}` }));
      refresh();
    } else if (!settled) {
      pendingLabels.set(item.id, value); // behind any earlier queued click, so order is kept
      box.replaceChildren(queued(value));
      status(`label queued (${pendingLabels.size} waiting)`);
    } else {
      for (const b of box.querySelectorAll("button")) b.disabled = false;
    }
  }

  // Confirm (the model's label) or correct (any other label the model has).
  function actions(item) {
    const box = el("div", { className: "actions" });
    if (item.feedback) {
      box.append(el("span", { className: "done-label", textContent: `labelled ${item.feedback}` }));
      return box;
    }
    if (pendingLabels.has(item.id)) {
      box.append(queued(pendingLabels.get(item.id)));
      return box;
    }
    if (item.status !== "done") return box;
    for (const value of cfg.labels) {
      const right = value === item.label;
      const button = el("button", {
        type: "button",
        className: right ? "confirm" : "correct",
        textContent: right ? `✓ ${value}` : `✗ it's ${value}`,
      });
      button.dataset.label = value;
      button.addEventListener("click", () => label(item, value, box));
      box.append(button);
    }
    return box;
  }

  // Thumbnails are fetched with the key (an <img src> cannot send it) and kept as object URLs.
  // At most THUMBS_PER_POLL new fetches per refresh, so a full list under load (or a key-less
  // burst) is not 100 requests every poll; the rest come on the next polls.
  const thumbs = new Map();
  const THUMBS_MAX = 200;
  const THUMBS_PER_POLL = 12;
  let thumbBudget = THUMBS_PER_POLL;

  async function loadThumb(id, img) {
    if (!thumbs.has(id)) {
      thumbs.set(id, null); // fetched once, even while the request runs
      const resp = await call("GET", `/ui/thumbs/${encodeURIComponent(id)}`);
      if (!resp || !resp.ok) {
        thumbs.delete(id);
        return;
      }
      thumbs.set(id, URL.createObjectURL(await resp.blob()));
      while (thumbs.size > THUMBS_MAX) {
        const [oldest, url] = thumbs.entries().next().value;
        if (url) URL.revokeObjectURL(url);
        thumbs.delete(oldest);
      }
    }
    if (thumbs.get(id)) img.src = thumbs.get(id);
  }

  function row(item) {
    let thumb;
    if (item.thumb) {
      thumb = el("img", { alt: "" });
      if (thumbs.get(item.id)) thumb.src = thumbs.get(item.id);
      else if (thumbs.has(item.id) || thumbBudget > 0) {
        if (!thumbs.has(item.id)) thumbBudget -= 1;
        loadThumb(item.id, thumb);
      }
    } else {
      thumb = el("div", { className: "nothumb" });
    }
    const what = el("div", { className: "what" });
    if (item.status === "done") {
      what.append(
        el("span", { className: "label", textContent: item.label }),
        ` ${pct(item.confidence)} · model ${item.model_version} · ${ms(item.latency_s)}`,
      );
    } else {
      what.append(el("span", { className: "alert", textContent: `failed: ${item.reason || "?"}` }));
    }
    what.append(el("div", { className: "muted", textContent: item.id }), actions(item));
    const li = el("li", { className: "row" }, thumb, what);
    li.dataset.id = item.id;
    return li;
  }

  function renderList(id, items) {
    $(id).replaceChildren(...items.map(row));
    if (!items.length) $(id).append(el("li", { className: "muted", textContent: "nothing yet" }));
  }

  function renderPanel(state) {
    const here = state.labelled_here;
    $("acc-here").textContent = here.labelled
      ? `${here.correct} of ${here.labelled} right (${pct(here.accuracy)})`
      : "no labels yet";
    const mon = state.monitoring || {};
    const versions = Object.entries(mon.versions || {});
    $("acc-window").textContent = versions.length
      ? versions
          .map(([v, f]) => `v${v}: ${pct(f.window_accuracy)} of ${f.window_labels ?? 0} labels`)
          .join("; ")
      : `${mon.status || "–"}${mon.message ? ` (${mon.message})` : ""}`;
    // The monitor's cumulative figure moves with every joined label; the windowed one only when
    // a window closes, so this is the row that shows a click landing.
    const models = mon.models || [];
    $("acc-cumulative").textContent = models.length
      ? models
          .map((m) => `${m.role} v${m.version}: ${pct(m.cumulative_accuracy)} of ${m.labelled ?? 0} labelled`)
          .join("; ")
      : mon.status === "unavailable" ? "unavailable" : "no monitor figures yet";
    const drift = [];
    for (const [v, f] of versions) {
      for (const [metric, d] of Object.entries(f.drift || {})) {
        drift.push(`v${v} ${metric}: ${d.drift ? "DRIFT" : "ok"}`);
      }
    }
    $("drift").textContent = drift.length ? drift.join("; ") : "no detector figures yet";
    $("drift").className = drift.some((d) => d.includes("DRIFT")) ? "alert" : "";
    $("throughput").textContent = `${state.rates.throughput_per_s.toFixed(2)} /s (last minute)`;
    $("p95").textContent = ms(state.rates.p95_latency_s);
    const serving = state.serving || [];
    $("serving").textContent = serving.length
      ? [...new Set(serving.map((m) => `${m.name} v${m.version} (${m.arch}, ${m.runtime})`))].join("; ") +
        ` · ${serving.length} worker(s)`
      : "no worker heard from";
    const loaded = serving.length ? Math.min(...serving.map((m) => m.loaded_at)) : null;
    $("uptime").textContent =
      `API ${duration(state.now - state.api_started_at)}` +
      (loaded ? ` · model loaded ${duration(state.now - loaded)} ago` : "");
  }

  function renderRetrain(job) {
    if (!$("retrain-box")) return;
    const running = job.state === "running";
    $("retrain-button").disabled = running;
    const where = [job.step, job.stage ? `stage ${job.stage}` : null].filter(Boolean).join(" · ");
    $("retrain-state").textContent = `${job.state}${where ? `: ${where}` : ""}` +
      (job.exit_code !== null && !running ? ` (exit ${job.exit_code})` : "");
    $("retrain-log").textContent = (job.log || []).join("\n");
  }

  async function refresh() {
    const resp = await call("GET", "/ui/state");
    if (resp && resp.ok) {
      const state = await resp.json();
      if (state.labels && state.labels.length) cfg.labels = state.labels;
      thumbBudget = THUMBS_PER_POLL;
      renderList("queue", state.queue);
      renderList("recent", state.recent);
      renderPanel(state);
      renderRetrain(state.retrain);
      if (!needKey()) status(`updated ${new Date().toLocaleTimeString()}`);
    }
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      await flushLabels();
      await refresh();
      schedule();
    }, Math.max(cfg.poll_ms, pausedUntil - Date.now()));
  }

  async function upload(event) {
    event.preventDefault();
    if (needKey()) {
      showKeyBox(true);
      return;
    }
    const file = $("upload-file").files[0];
    if (!file) return;
    const form = new FormData();
    form.append("file", file);
    const out = $("upload-result");
    out.replaceChildren(el("p", { className: "muted", textContent: "classifying…" }));
    $("upload-button").disabled = true;
    try {
      const resp = await call("POST", `/v1/images?wait=${cfg.wait_s}`, form);
      if (!resp) {
        out.replaceChildren(el("p", { className: "alert", textContent: "not sent; try again" }));
        return;
      }
      const body = await resp.json().catch(() => ({}));
      if (resp.status === 200 && body.status === "done") {
        const p = body.prediction;
        const item = {
          id: body.id, status: "done", label: p.label, confidence: p.confidence,
          model_version: p.model.version, latency_s: p.latency_s, thumb: true, feedback: null,
        };
        // The photo is right here: its thumbnail is the file itself, no fetch needed.
        if (!thumbs.get(body.id)) thumbs.set(body.id, URL.createObjectURL(file));
        const result = row(item);
        result.id = "upload-row";
        out.replaceChildren(el("ol", { className: "rows" }, result));
      } else if (resp.status === 200 || resp.status === 202) {
        const what = body.status === "failed" ? `failed: ${body.error.message}` : "still pending; see the list";
        out.replaceChildren(el("p", { className: "muted", textContent: what }));
      } else {
        const message = (body.error && body.error.message) || `HTTP ${resp.status}`;
        out.replaceChildren(el("p", { className: "alert", textContent: message }));
      }
    } finally {
      $("upload-button").disabled = false;
    }
    refresh();
  }

  async function retrain() {
    if (needKey()) {
      showKeyBox(true);
      return;
    }
    const resp = await call("POST", "/ui/retrain");
    if (resp && resp.status !== 202 && resp.status !== 401 && resp.status !== 429) {
      const body = await resp.json().catch(() => ({}));
      status(`retrain refused: ${(body.error && body.error.message) || resp.status}`);
    }
    refresh();
  }

  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("key-input").value);
    $("key-input").value = "";
    showKeyBox(false);
    status("key kept for this session");
  });
  $("upload-form").addEventListener("submit", upload);
  if ($("retrain-button")) $("retrain-button").addEventListener("click", retrain);
  showKeyBox(needKey());
  refresh().then(schedule);
})();
