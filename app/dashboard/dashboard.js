// grace-service dashboard: plain JS, no dependencies. Every value from the API is escaped before it
// reaches the page (candidate names and errors are user data).
"use strict";

const KEY = "grace.apiKey";
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const STATUSES = ["queued", "running", "cancelling", "succeeded", "failed", "cancelled"];
// Where each kind's jobs are submitted and its result read (grace_jobs.kinds).
const KINDS = {
  score: { submit: "/v1/jobs", result: "ranking" },
  validation: { submit: "/v1/validations", result: "validation" },
  influence: { submit: "/v1/influence", result: "influence" },
};
const POLL_MS = 1000;
const PAGE_SIZE = 25;
const view = document.getElementById("view");
let timer = null;
let generation = 0; // bumped on every navigation: a stale poll never draws over a new view

const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const fmt = (v, digits = 4) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));
const enc = encodeURIComponent;

function showKeyForm(show) {
  document.getElementById("key-form").hidden = !show;
  document.getElementById("forget").hidden = show || !sessionStorage.getItem(KEY);
}

class ApiError extends Error {
  // A problem+json answer: `problem` keeps its detail and errors[] ({field, message}).
  constructor(status, problem) {
    super(`${problem.title || status}: ${problem.detail || ""}`);
    this.status = status;
    this.problem = problem;
  }
}

// Every call to the API: the key (when there is one) as a Bearer header, JSON bodies, ETags.
// GET answers {body, etag} or {notModified} (a 304 to `etag`); `raw` answers the body as a Blob.
async function request(path, { method = "GET", body, etag, accept = "application/json", raw = false } = {}) {
  const headers = { Accept: accept };
  const key = sessionStorage.getItem(KEY);
  if (key) headers.Authorization = `Bearer ${key}`;
  if (etag) headers["If-None-Match"] = etag;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (r.status === 401) {
    // A refused key is dropped and asked for again; a 401 for a key replaced meanwhile (a request
    // still in flight when the user typed a new one) says nothing about the new key.
    if (sessionStorage.getItem(KEY) === key) {
      sessionStorage.removeItem(KEY);
      showKeyForm(true);
    }
    throw new ApiError(401, { title: "Unauthorized", detail: "this service needs an API key: enter yours above" });
  }
  if (r.status === 304) return { notModified: true, etag };
  if (!r.ok) {
    let problem;
    try {
      problem = await r.json();
    } catch {
      problem = { title: String(r.status), detail: r.statusText };
    }
    throw new ApiError(r.status, problem);
  }
  if (raw) return { blob: await r.blob() };
  return { body: await r.json(), etag: r.headers.get("ETag") };
}
const api = (path, etag) => request(path, { etag });
const post = (path, body) => request(path, { method: "POST", body });

function save(blob, name) {
  // A fetched body (the key went in a header, never a URL) saved as a file.
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 5000);
}

function problemHtml(err) {
  // An error, with each field a 4xx names.
  const fields = (err.problem && err.problem.errors) || [];
  return `<p>${esc(err.message)}</p>${fields.length ? `<ul class="fields">${fields.map((e) => `<li data-field="${esc(e.field)}"><code>${esc(e.field)}</code>: ${esc(e.message)}</li>`).join("")}</ul>` : ""}`;
}

// --- time: the API's UTC timestamps in the viewer's local time -----------------------------------

const when = (s) => (s ? new Date(/(Z|[+-]\d\d:?\d\d)$/i.test(s) ? s : `${s}Z`).getTime() : null);
const two = (n) => String(n).padStart(2, "0");
function localTime(s) {
  const t = when(s);
  if (t === null) return "–";
  const d = new Date(t);
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}
const timeTag = (s) => (s ? `<time datetime="${esc(s)}" title="${esc(s)}">${localTime(s)}</time>` : "–");

function duration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "–";
  const s = Math.max(0, ms) / 1000;
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.floor(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.floor(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

function ranFor(thing, now = Date.now()) {
  // finished − started, or the time so far while it runs; null before it started.
  const a = when(thing.started_at);
  if (a === null) return null;
  const b = when(thing.finished_at);
  return (b === null ? now : b) - a;
}

// --- progress --------------------------------------------------------------------------------------

function stageOf(stages) {
  // The furthest stage a candidate has reached, with its progress.
  for (const name of ["distil", "uncertainty", "score", "gradients", "generate"]) {
    const s = stages[name];
    if (s) return { name, done: s.done, total: s.total };
  }
  return null;
}

function progressCell(job) {
  const cands = (job.progress && job.progress.candidates) || {};
  const rows = Object.entries(cands).map(([name, stages]) => {
    const s = stageOf(stages);
    if (!s) return "";
    const pct = s.total ? Math.round((100 * s.done) / s.total) : 0;
    return `<div class="progress" data-candidate="${esc(name)}"><span class="bar"><span style="width:${pct}%"></span></span> ${esc(name)} ${esc(s.name)} <span class="count">${Number(s.done)}/${Number(s.total)}</span></div>`;
  });
  return rows.join("") || `<span class="progress">${esc(job.stage || "")}</span>`;
}

function unitFraction(u) {
  // The share of a unit's work done: its stages' progress, a candidate's work being at least its
  // generation and its gradients (a stage not reported yet counts as not done).
  if (TERMINAL.has(u.status)) return 1;
  const cands = Object.values(u.progress || {});
  if (u.status !== "running" || !cands.length) return 0;
  const each = cands.map((stages) => {
    const seen = Object.values(stages).filter((s) => s && s.total > 0);
    const done = seen.reduce((sum, s) => sum + Math.min(s.done / s.total, 1), 0);
    return done / Math.max(2, seen.length);
  });
  return each.reduce((a, b) => a + b, 0) / each.length;
}

function counters(job, now = Date.now()) {
  // What a running job's header says: units done/total, queued and running, responses scored so
  // far (every candidate's gradients done, or the job's count once it has one), elapsed and ETA.
  const units = job.units || [];
  const count = (st) => units.filter((u) => u.status === st).length;
  const graded = Object.values((job.progress && job.progress.candidates) || {})
    .reduce((sum, stages) => sum + ((stages.gradients && stages.gradients.done) || 0), 0);
  const responses = Math.max(graded, job.examples_scored || 0);
  const elapsed = ranFor(job, now);
  const f = units.length ? units.reduce((sum, u) => sum + unitFraction(u), 0) / units.length : 0;
  const running = !TERMINAL.has(job.status);
  const eta = running && elapsed !== null && f > 0 ? (elapsed * (1 - f)) / f : null;
  return { done: count("succeeded"), total: units.length, queued: count("queued"), running: count("running"), responses, elapsed, eta, f };
}

function countersHtml(job) {
  const c = counters(job);
  const live = !TERMINAL.has(job.status);
  return `<span id="job-counters" data-units-done="${c.done}" data-units-total="${c.total}" data-units-queued="${c.queued}"
      data-units-running="${c.running}" data-responses="${c.responses}" data-eta="${c.eta === null ? "" : Math.round(c.eta / 1000)}">
    units <strong>${c.done}/${c.total}</strong> done${c.running ? ` · ${c.running} running` : ""}${c.queued ? ` · ${c.queued} queued` : ""}
    · <strong>${c.responses}</strong> responses scored
    · ${live ? "elapsed" : "took"} <span id="job-elapsed">${duration(c.elapsed)}</span>${live ? ` · ETA <span id="job-eta">${c.eta === null ? "–" : duration(c.eta)}</span>` : ""}</span>`;
}

// --- jobs list -------------------------------------------------------------------------------------

let pager = { filters: "", stack: [] }; // the cursors of the pages before this one, per filter set
let refocusSearch = false;

function jobsHash(filters, cursor) {
  const p = new URLSearchParams();
  for (const k of ["status", "kind", "q"]) if (filters[k]) p.set(k, filters[k]);
  if (cursor) p.set("cursor", cursor);
  const s = p.toString();
  return `#/jobs${s ? `?${s}` : ""}`;
}

function jobRow(j, now) {
  return `<tr data-job="${esc(j.id)}">
      <td><a href="#/jobs/${esc(j.id)}"><code>${esc(j.id)}</code></a></td>
      <td>${esc(j.kind)}</td>
      <td class="status ${esc(j.status)}">${esc(j.status)}</td>
      <td>${progressCell(j)}</td>
      <td>${esc(j.student)}</td>
      <td>${esc(((j.ranking || [])[0] || {}).name || "")}</td>
      <td class="created">${timeTag(j.created_at)}</td>
      <td class="duration num">${duration(ranFor(j, now))}</td>
    </tr>`;
}

async function jobsView(gen, query) {
  const filters = { status: query.get("status") || "", kind: query.get("kind") || "", q: query.get("q") || "" };
  const cursor = query.get("cursor") || "";
  const key = JSON.stringify(filters);
  if (pager.filters !== key || !cursor) pager = { filters: key, stack: [] };
  else if (pager.stack.includes(cursor)) pager.stack = pager.stack.slice(0, pager.stack.indexOf(cursor)); // the browser's back
  const options = (values, chosen, all) => `<option value="">${all}</option>${values.map((v) => `<option${v === chosen ? " selected" : ""}>${esc(v)}</option>`).join("")}`;
  view.innerHTML = `<h1>Jobs</h1>
    <form id="jobs-filter" class="card toolbar">
      <select name="status" aria-label="status">${options(STATUSES, filters.status, "any status")}</select>
      <select name="kind" aria-label="kind">${options(Object.keys(KINDS), filters.kind, "any kind")}</select>
      <input name="q" type="search" placeholder="job id prefix or student" value="${esc(filters.q)}" aria-label="search" size="28">
      <a href="#/submit" class="button">New job</a>
    </form>
    <table id="jobs"><thead><tr><th>Job</th><th>Kind</th><th>Status</th><th>Progress</th><th>Student</th><th>Top pick</th><th>Created</th><th>Duration</th></tr></thead>
    <tbody id="jobs-body"><tr><td colspan="8">Loading…</td></tr></tbody></table>
    <div class="pager"><button id="page-back" type="button">‹ Back</button> <span id="page-info">page ${pager.stack.length + 1}</span>
      <button id="page-next" type="button" disabled>Next ›</button></div>`;
  const form = document.getElementById("jobs-filter");
  const apply = () => {
    const f = new FormData(form);
    const next = jobsHash({ status: f.get("status"), kind: f.get("kind"), q: f.get("q").trim() }, "");
    if (next !== location.hash) location.hash = next;
  };
  let typing = null;
  form.addEventListener("change", (e) => { if (e.target.name !== "q") apply(); });
  form.addEventListener("submit", (e) => { e.preventDefault(); refocusSearch = true; apply(); });
  form.q.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => { refocusSearch = true; apply(); }, 400);
  });
  if (refocusSearch) {
    refocusSearch = false;
    form.q.focus();
    form.q.setSelectionRange(form.q.value.length, form.q.value.length);
  }
  document.getElementById("page-back").disabled = !cursor;
  document.getElementById("page-back").addEventListener("click", () => {
    location.hash = jobsHash(filters, pager.stack.pop() || "");
  });
  const search = new URLSearchParams({ limit: String(PAGE_SIZE) });
  for (const k of ["status", "kind", "q"]) if (filters[k]) search.set(k, filters[k]);
  if (cursor) search.set("cursor", cursor);
  await jobsPoll(gen, `/v1/jobs?${search}`, { filters, cursor });
}

async function jobsPoll(gen, url, state) {
  const got = await api(url, state.etag);
  if (gen !== generation) return;
  const changed = !got.notModified;
  if (changed) Object.assign(state, { etag: got.etag, body: got.body });
  const body = state.body;
  // Redrawn on a change, and every poll while a job on the page runs (its duration grows).
  if (changed || body.data.some((j) => !TERMINAL.has(j.status))) {
    const now = Date.now();
    const filtered = state.filters.status || state.filters.kind || state.filters.q;
    document.getElementById("jobs-body").innerHTML = body.data.map((j) => jobRow(j, now)).join("")
      || `<tr><td colspan="8">${filtered ? "No job matches these filters." : "No jobs yet."}</td></tr>`;
    const next = document.getElementById("page-next");
    next.disabled = !body.next_cursor;
    next.onclick = () => {
      pager.stack.push(state.cursor);
      location.hash = jobsHash(state.filters, body.next_cursor);
    };
  }
  timer = setTimeout(() => run((g) => jobsPoll(g, url, state), gen), POLL_MS);
}

function niceTicks(lo, hi, log) {
  // Round values to label the axis with, each drawn exactly where its label says: 1-2-5 steps on
  // a linear axis; decades on a log axis, with 2x and 5x between them when it spans few decades.
  if (log) {
    const decades = [];
    for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) decades.push(e);
    const factors = decades.length <= 5 ? [1, 2, 5] : [1];
    return decades.flatMap((e) => factors.map((f) => f * 10 ** e)).filter((t) => t >= lo && t <= hi);
  }
  const raw = (hi - lo) / 5;
  const unit = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((f) => f * unit).find((v) => v >= raw);
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi; t += step) ticks.push(Number(t.toPrecision(12)));
  return ticks;
}

function rankingChart(ranking) {
  // GRACE per candidate, with ±1 split std (the gap to the leader and its interval are in the
  // scores table: they are differences, not positions on this axis). When GRACE
  // spans more than a decade (a noise teacher beside good ones) the axis is logarithmic, or every
  // good candidate would sit on one pixel; there the whisker is ±1 std of ln GRACE (std / GRACE,
  // to first order), so on either axis it is centred on its dot.
  const rows = ranking.filter((r) => r.grace !== null && r.grace !== undefined);
  if (!rows.length) return "<p>No GRACE values in this job.</p>";
  const graces = rows.map((r) => r.grace);
  const log = Math.min(...graces) > 0 && Math.max(...graces) / Math.min(...graces) > 10;
  const spans = rows.map((r) => {
    const s = r.grace_std || 0;
    return log ? { r, s, lo: r.grace * Math.exp(-s / r.grace), hi: r.grace * Math.exp(s / r.grace) } : { r, s, lo: r.grace - s, hi: r.grace + s };
  });
  const lo = Math.min(...spans.map((p) => p.lo)), hi = Math.max(...spans.map((p) => p.hi));
  let x0, x1, scale;
  if (log) {
    [x0, x1] = [lo / 1.25, hi * 1.25];
    scale = (v) => (Math.log(v) - Math.log(x0)) / (Math.log(x1) - Math.log(x0));
  } else {
    const pad = (hi - lo) * 0.1 || Math.abs(hi) * 0.1 || 1;
    [x0, x1] = [lo - pad, hi + pad];
    scale = (v) => (v - x0) / (x1 - x0);
  }
  const W = 960, left = 170, right = 24, rowH = 30, H = rows.length * rowH + 46;
  const X = (v) => left + Math.min(Math.max(scale(v), 0), 1) * (W - left - right);
  const grid = niceTicks(x0, x1, log).map((t) => `<line class="grid" x1="${X(t)}" x2="${X(t)}" y1="12" y2="${H - 24}"/>
    <text class="tick" x="${X(t)}" y="${H - 8}" text-anchor="middle">${Number(t.toPrecision(3))}</text>`);
  const items = spans.map(({ r, s, lo: a, hi: b }, i) => {
    const y = 20 + i * rowH + rowH / 2;
    return `<g class="candidate" data-name="${esc(r.name)}"><text x="${left - 10}" y="${y + 4}" text-anchor="end">${Number(r.rank)}. ${esc(r.name)}</text>
      <line class="whisker" x1="${X(a)}" x2="${X(b)}" y1="${y}" y2="${y}"/>
      <circle class="dot" cx="${X(r.grace)}" cy="${y}" r="5"><title>${esc(r.name)}: GRACE ${sig(r.grace)} ± ${sig(s)}</title></circle></g>`;
  });
  const caption = `GRACE (lower = better), ${log ? "log scale, whisker ± split std of ln GRACE" : "whisker ± split std"}`;
  return `<svg id="ranking-chart" role="img" aria-label="GRACE per candidate" data-scale="${log ? "log" : "linear"}" viewBox="0 0 ${W} ${H}" width="100%">
    ${grid.join("")}
    <line class="axis" x1="${left}" x2="${W - right}" y1="${H - 24}" y2="${H - 24}"/>
    ${items.join("")}</svg><p class="caption">${caption}</p>`;
}

// Significant digits, not fixed decimals: gaps and scores span many decades.
const sig = (v) => (v === null || v === undefined ? "–" : Number(Number(v).toPrecision(3)).toString());
const pct = (v) => (v === null || v === undefined ? "–" : `${Math.round(100 * v)}%`);

function verdict(job) {
  // The leader's margin over the runner-up, its interval and the test that decides "settled".
  const u = job.uncertainty;
  if (!u || !u.runner_up) return "";
  const second = job.ranking.find((r) => r.name === u.runner_up) || {};
  const level = pct(u.confidence);
  const how = u.method === "subsampling"
    ? `P(top-1) at ${u.subsample_size} prompts: ${pct((job.ranking[0] || {}).p_top1)} (settled needs ${level})`
    : `${esc(u.score)} gap <span id="verdict-gap">${second.gap > 0 ? "+" : ""}${sig(second.gap)}</span>, ${level} interval
       <span id="verdict-interval">[${(second.gap_interval || []).map(sig).join(", ")}]</span>
       (${u.method === "paired_cv" ? `${u.repeats} x ${u.folds}-fold cross-validation` : "paired"} over ${u.n_prompts} prompts);
       t-test p ${sig(second.gap_p_value)}, signed-rank p ${sig(second.gap_wilcoxon_p)}`;
  const more = u.settled ? "" : u.prompts_to_settle ? ` · about ${u.prompts_to_settle} prompts would settle it` : "";
  return `<p id="verdict" class="${u.settled ? "settled" : "unsettled"}"><strong>${u.settled ? "Settled" : "Not settled"}</strong>:
    <strong>${esc(u.leader)}</strong> leads <strong>${esc(u.runner_up)}</strong> by ${how}${more}.</p>`;
}

// GET /v1/predictors, once: every predictor table has a column per predictor its rows carry.
let predictors = null;
async function loadPredictors() {
  if (!predictors) predictors = (await api("/v1/predictors")).body.data;
}

function predictorColumns(rows, skip) {
  return predictors.filter((p) => p.name !== skip && rows.some((r) => r.values && r.values[p.name] != null));
}

function predictorCell(p, row) {
  const v = (row.values || {})[p.name];
  // Shares as percentages (as the CLI shows them), counts to one decimal, the rest to three
  // significant digits: G-Norm is ~1e-4 and fixed decimals would round it away.
  return `<td class="num">${p.fmt.endsWith("%") ? pct(v) : p.fmt === ".0f" ? fmt(v, 1) : sig(v)}</td>`;
}

function scoresTable(ranking) {
  const cols = [["grace", "GRACE"], ["grace_std", "± std"], ["gap", "gap to #1"], ["gap_interval", "gap interval"], ["gap_p_value", "gap p"],
    ["p_top1", "P(top-1) at n/2"]];
  const used = cols.filter(([k]) => ranking.some((r) => r[k] !== null && r[k] !== undefined));
  const shown = predictorColumns(ranking, "grace");
  return `<table id="scores"><thead><tr><th>#</th><th>Candidate</th>${used.map(([, t]) => `<th>${t}</th>`).join("")}${shown.map((p) => `<th>${esc(p.label)}</th>`).join("")}</tr></thead><tbody>
    ${ranking.map((r) => `<tr><td>${r.rank}</td><td>${esc(r.name)}</td>${used.map(([k]) => `<td class="num">${k === "gap_interval" ? (r[k] ? `[${r[k].map(sig).join(", ")}]` : "–") : k === "p_top1" ? pct(r[k]) : sig(r[k])}</td>`).join("")}${shown.map((p) => predictorCell(p, r)).join("")}</tr>`).join("")}
    </tbody></table>`;
}

function scatter(job, validation) {
  // −GRACE (predicted goodness) against the distilled student's outcome, with the correlation.
  const outcome = validation.outcome;
  const points = job.ranking.filter((r) => r.grace !== null && validation.candidates[r.name])
    .map((r) => ({ name: r.name, x: -r.grace, y: validation.candidates[r.name].outcome[outcome] }))
    .filter((p) => p.y !== null && p.y !== undefined);
  if (points.length < 2) return "";
  const range = (vs) => { const a = Math.min(...vs), b = Math.max(...vs), p = (b - a) * 0.15 || 1; return [a - p, b + p]; };
  const [x0, x1] = range(points.map((p) => p.x)), [y0, y1] = range(points.map((p) => p.y));
  const W = 480, H = 300, m = 48;
  const X = (v) => m + ((v - x0) / (x1 - x0)) * (W - 2 * m), Y = (v) => H - m - ((v - y0) / (y1 - y0)) * (H - 2 * m);
  const corr = (validation.correlations || {}).grace || {};
  return `<div class="card"><h2>Prediction against distillation</h2>
    <p>Spearman of −GRACE with ${esc(outcome)}: <strong id="spearman">${fmt(corr.spearman, 3)}</strong> (signed so +1 is a perfect prediction)</p>
    <svg id="validation-scatter" viewBox="0 0 ${W} ${H}" width="${W}">
      <line class="axis" x1="${m}" x2="${W - m}" y1="${H - m}" y2="${H - m}"/><line class="axis" x1="${m}" x2="${m}" y1="${m}" y2="${H - m}"/>
      <text x="${W / 2}" y="${H - 12}" text-anchor="middle">−GRACE (higher = predicted better)</text>
      <text x="14" y="${H / 2}" transform="rotate(-90 14 ${H / 2})" text-anchor="middle">distilled ${esc(outcome)}</text>
      ${points.map((p) => `<circle class="dot" cx="${X(p.x)}" cy="${Y(p.y)}" r="5"><title>${esc(p.name)}</title></circle><text x="${X(p.x) + 8}" y="${Y(p.y) + 4}">${esc(p.name)}</text>`).join("")}
    </svg></div>`;
}

const params = (n) => (n === null || n === undefined ? "size unknown" : n >= 1e9 ? `${sig(n / 1e9)}B params` : `${sig(n / 1e6)}M params`);

function guidanceCard(g) {
  // The paper's three uses of the ranking: the best temperature per model (when it was tried at
  // several), the best per family (when there are several), and the best under the size limit.
  if (!g) return "";
  const rows = [];
  for (const c of g.best_temperature.filter((c) => c.temperatures.length > 1)) {
    rows.push(["Best temperature", esc(c.model), `<strong>${sig(c.temperature)}</strong> (${esc(c.candidate)}, rank ${c.rank}; tried ${c.temperatures.map(sig).join(", ")})`]);
  }
  if (g.best_per_family.length > 1) {
    for (const c of g.best_per_family) {
      rows.push(["Best in family", esc(c.family), `<strong>${esc(c.candidate)}</strong> (rank ${c.rank} of ${c.n_candidates}, ${params(c.params)})`]);
    }
  }
  const s = g.under_max_params;
  if (s) {
    const pick = s.candidate === null ? "none fits" : `<strong>${esc(s.candidate)}</strong> (rank ${s.rank}, ${params(s.params)})`;
    const unknown = s.unknown.length ? `; size unknown, left out: ${s.unknown.map(esc).join(", ")}` : "";
    rows.push(["Best under the size limit", `at most ${params(s.max_params)}`, pick + unknown]);
  }
  if (!rows.length) return "";
  return `<div class="card" id="guidance"><h2>Guidance</h2><table><tbody>
    ${rows.map(([what, of, answer]) => `<tr><th>${what}</th><td>${of}</td><td>${answer}</td></tr>`).join("")}</tbody></table></div>`;
}

// --- a job ----------------------------------------------------------------------------------------

const noDataset = new Map(); // job id -> why it has no mixed dataset (a 409 said so)
const failed = new Map(); // "job id:box" -> the last failed action's error, kept across redraws

function timelineSvg(job, now = Date.now()) {
  // One bar per unit from its start to its end (or now), on a common time axis, coloured by status;
  // a unit not started yet is a labelled row without a bar.
  const units = job.units || [];
  if (!units.length) return "<p>No units.</p>";
  const starts = units.map((u) => when(u.started_at)).filter((t) => t !== null);
  const t0 = starts.length ? Math.min(...starts) : null;
  const end = (u) => when(u.finished_at) ?? (u.status === "running" || u.status === "cancelling" ? now : null);
  const ends = units.map(end).filter((t) => t !== null);
  const t1 = t0 === null ? null : Math.max(t0 + 1000, ...ends, ...starts);
  const W = 960, left = 170, right = 24, rowH = 24, H = units.length * rowH + 40;
  const X = (t) => left + ((t - t0) / (t1 - t0)) * (W - left - right);
  const ticks = t0 === null ? [] : niceTicks(0, (t1 - t0) / 1000, false);
  const grid = ticks.map((s) => `<line class="grid" x1="${X(t0 + s * 1000)}" x2="${X(t0 + s * 1000)}" y1="6" y2="${H - 24}"/>
    <text class="tick" x="${X(t0 + s * 1000)}" y="${H - 8}" text-anchor="middle">${duration(s * 1000)}</text>`);
  const rows = units.map((u, i) => {
    const y = 8 + i * rowH;
    const name = u.candidate || "(whole job)";
    const a = when(u.started_at), b = end(u);
    const label = `<text x="${left - 10}" y="${y + 14}" text-anchor="end">${esc(name)}</text>`;
    if (u.status === "queued" || a === null) {
      const why = u.status === "queued" ? "queued" : `${u.status}, never started`;
      return `<g class="unit-row" data-candidate="${esc(name)}" data-status="${esc(u.status)}">${label}
        <text class="pending" x="${left + 6}" y="${y + 14}">${esc(why)}</text></g>`;
    }
    const x = X(a), w = Math.max(X(b ?? a) - x, 2);
    return `<g class="unit-row" data-candidate="${esc(name)}" data-status="${esc(u.status)}">${label}
      <rect class="unit ${esc(u.status)}" data-status="${esc(u.status)}" x="${x}" y="${y + 3}" width="${w}" height="${rowH - 8}" rx="3">
      <title>${esc(name)}: ${esc(u.status)}, ${localTime(u.started_at)} → ${u.finished_at ? localTime(u.finished_at) : "now"} (${duration(ranFor(u, now))})</title></rect></g>`;
  });
  return `<svg id="timeline" role="img" aria-label="units over time" viewBox="0 0 ${W} ${H}" width="100%">
    ${grid.join("")}<line class="axis" x1="${left}" x2="${W - right}" y1="${H - 24}" y2="${H - 24}"/>${rows.join("")}</svg>
    <p class="caption">${t0 === null ? "No unit has started yet." : `Seconds since the first unit started (${localTime(new Date(t0).toISOString())}).`}</p>`;
}

function timesCard(job) {
  const now = Date.now();
  const created = when(job.created_at), started = when(job.started_at);
  const waited = started === null ? (TERMINAL.has(job.status) ? null : now - created) : started - created;
  return `<div class="card" id="job-times"><h2>Timeline</h2>
    <table id="timestamps"><tbody>
      <tr data-key="created"><th>Created</th><td>${timeTag(job.created_at)}</td><td>queued ${duration(waited)}</td></tr>
      <tr data-key="started"><th>Started</th><td>${timeTag(job.started_at)}</td><td></td></tr>
      <tr data-key="finished"><th>Finished</th><td>${timeTag(job.finished_at)}</td><td>${job.finished_at ? "ran" : job.started_at ? "running for" : ""} <span class="duration">${duration(ranFor(job, now))}</span></td></tr>
    </tbody></table>${timelineSvg(job, now)}</div>`;
}

function configCard(job, req) {
  // What the job ran with, from its stored submission (GET /v1/jobs/{id}/request).
  const s = req.scoring || {};
  const d = job.proj_dim !== null && job.proj_dim !== undefined ? `${Number(job.proj_dim)}${s.proj_dim === "auto" ? " (auto)" : ""}` : esc(s.proj_dim);
  const rows = [["m", "responses per prompt (m)", esc(s.responses_per_prompt)], ["d", "projection dimension (d)", d], ["seed", "seed", esc(s.seed)]];
  if (s.n_splits !== undefined) rows.push(["n_splits", "GRACE splits", esc(s.n_splits)]);
  if (s.test_fraction !== undefined) rows.push(["test_fraction", "test fraction per split", esc(s.test_fraction)]);
  rows.push(["predictors", "predictors", s.predictors ? s.predictors.map(esc).join(", ") : "all"]);
  rows.push(["rank_by", "ranked by", s.rank_by ? esc(s.rank_by) : "grace (default)"]);
  if (s.gradient_space) rows.push(["gradient_space", "gradient space / path", `${esc(s.gradient_space)} / ${esc(s.path)}`]);
  if (s.budget) rows.push(["budget", "budget", esc(JSON.stringify(s.budget))]);
  rows.push(["prompts", "prompts", req.dataset_id ? `dataset <code>${esc(req.dataset_id)}</code>` : `${(req.prompts || []).length} inline`]);
  if (req.train_seeds) rows.push(["train_seeds", "distillation seeds", req.train_seeds.map(esc).join(", ")]);
  if (req.outcome) rows.push(["outcome", "validation outcome", esc(req.outcome)]);
  if (req.method) rows.push(["method", "influence method", esc(req.method)]);
  const cands = (req.candidates || []).map((c) => `<tr data-candidate="${esc(c.name)}"><td>${esc(c.name)}</td>
      <td>${c.model ? `<code>${esc(c.model)}</code>` : "supplied"}</td><td class="num">${c.model ? esc(c.temperature) : "–"}</td>
      <td class="num">${esc(c.responses_per_prompt ?? (c.model ? s.responses_per_prompt : ""))}</td></tr>`).join("");
  return `<div class="card" id="job-config"><h2>Configuration</h2>
    <table id="config"><tbody>${rows.map(([k, label, v]) => `<tr data-key="${k}"><th>${label}</th><td>${v}</td></tr>`).join("")}</tbody></table>
    <h3>Candidates</h3><table id="candidates"><thead><tr><th>Name</th><th>Model</th><th>Temperature</th><th>m</th></tr></thead><tbody>${cands}</tbody></table></div>`;
}

function downloadsCard(job) {
  // The result body and the mixed dataset, fetched with the key and saved as files.
  const kind = KINDS[job.kind];
  const done = job.status === "succeeded";
  const waiting = done ? "" : "results exist once the job has succeeded";
  const why = waiting || noDataset.get(job.id) || ""; // the API says when there is no dataset (a 409)
  const id = esc(job.id);
  const button = (name, label, url, file, reason) => `<button type="button" data-action="download" data-job="${id}" data-download="${name}" data-url="${esc(url)}"
      data-file="${esc(file)}"${reason ? ` disabled title="${esc(reason)}"` : ""}>${label}</button>`;
  const result = kind ? button("result", `Result (${esc(kind.result)} JSON)`, `/v1/jobs/${enc(job.id)}/${kind.result}`, `grace-${kind.result}-${job.id}.json`, waiting) : "";
  return `<div class="card" id="job-downloads"><h2>Downloads</h2>
    <div class="actions">${result}
      ${button("chat", "Mixed dataset (chat JSONL)", `/v1/jobs/${enc(job.id)}/dataset?format=chat`, `grace-mixed-${job.id}-chat.jsonl`, why)}
      ${button("prompt_completion", "Mixed dataset (prompt/completion JSONL)", `/v1/jobs/${enc(job.id)}/dataset?format=prompt_completion`, `grace-mixed-${job.id}-prompt_completion.jsonl`, why)}</div>
    <p class="muted" id="download-note" data-job="${id}">${why ? esc(`Dataset: ${why}.`) : "Per prompt, the response of the teacher the scores favour there, as JSON lines."}</p>
    <div class="error" id="download-error">${failed.get(`${job.id}:download-error`) || ""}</div></div>`;
}

function actionsHtml(job) {
  const live = !TERMINAL.has(job.status);
  const id = esc(job.id);
  const board = job.kind === "score" && job.status === "succeeded" && job.prompt_set
    ? ` · <a id="job-leaderboard" href="#/leaderboard?${esc(new URLSearchParams({ student: job.student, dataset: job.prompt_set }))}">leaderboard of this student and prompt set</a>` : "";
  const known = Boolean(KINDS[job.kind]);
  return `<div class="actions" id="job-actions">
      ${live ? `<button type="button" data-action="cancel" data-job="${id}"${job.status === "cancelling" ? " disabled" : ""}>${job.status === "cancelling" ? "Cancelling…" : "Cancel"}</button>` : ""}
      <button type="button" data-action="rerun" data-job="${id}" data-kind="${esc(job.kind)}"${known ? "" : " disabled"}>Re-run</button>
      <a href="#/submit?from=${enc(job.id)}" id="job-edit" class="button">Edit, then re-run…</a>${board}</div>
    <div class="error" id="action-error">${failed.get(`${job.id}:action-error`) || ""}</div>`;
}

function headCard(job) {
  return `<div class="card" id="job-head"><span class="status ${esc(job.status)}" id="job-status">${esc(job.status)}</span>
      · ${esc(job.kind)} · student <code>${esc(job.student)}</code> · ${countersHtml(job)}
      ${job.settled === false ? " · <strong>not settled</strong>" : job.settled ? " · settled" : ""}
      ${job.error ? `<p class="error">${esc(job.error.code)}: ${esc(job.error.message)}</p>` : ""}
      <div id="job-progress">${progressCell(job)}</div>${actionsHtml(job)}</div>`;
}

function compareCard(job, others) {
  const options = others.filter((j) => j.id !== job.id)
    .map((j) => `<option value="${esc(j.id)}">${esc(j.kind)} ${esc(j.status)} · ${localTime(j.created_at)}</option>`).join("");
  return `<div class="card" id="job-compare"><h2>Compare</h2><form id="compare-form" class="toolbar">
      <label>Compare with <input name="b" list="compare-jobs" placeholder="another job's id" size="40" required></label>
      <datalist id="compare-jobs">${options}</datalist><button type="submit">Compare</button></form></div>`;
}

async function jobView(gen, jobId) {
  view.innerHTML = `<h1>Job <code id="job-id">${esc(jobId)}</code></h1><div id="job-live"><p>Loading…</p></div><div id="job-static"></div>`;
  await jobPoll(gen, jobId, {});
}

async function jobPoll(gen, jobId, state) {
  const got = await api(`/v1/jobs/${enc(jobId)}`, state.etag);
  if (gen !== generation) return;
  if (!got.notModified) {
    const job = got.body;
    if (!state.job) {
      // Once per view: the predictors, the stored submission, the student's other jobs.
      const [, req, others] = await Promise.all([
        loadPredictors(),
        api(`/v1/jobs/${enc(jobId)}/request`).then((r) => r.body, (err) => ({ error: err })),
        api(`/v1/jobs?${new URLSearchParams({ student: job.student, limit: String(PAGE_SIZE) })}`).then((r) => r.body.data, () => []),
      ]);
      if (gen !== generation) return;
      state.req = req;
      document.getElementById("job-static").innerHTML = `<div id="job-config-slot"></div>${compareCard(job, others)}`;
      document.getElementById("compare-form").addEventListener("submit", (e) => {
        e.preventDefault();
        location.hash = `#/compare?${new URLSearchParams({ a: jobId, b: e.target.b.value.trim() })}`;
      });
    }
    let extra = "";
    if (job.kind === "validation" && job.status === "succeeded" && job.ranking) {
      state.validation = state.validation || (await api(`/v1/jobs/${enc(jobId)}/validation`)).body;
      if (gen !== generation) return;
      extra = scatter(job, state.validation);
    }
    state.job = job;
    state.etag = got.etag;
    // Redrawn with the job: its resolved d arrives when it has run.
    document.getElementById("job-config-slot").innerHTML = state.req.error
      ? `<div class="card error" id="job-config">${esc(state.req.error.message)}</div>` : configCard(job, state.req);
    const units = job.units.map((u) => `<tr><td>${esc(u.candidate || "(whole job)")}</td><td class="status ${esc(u.status)}">${esc(u.status)}</td>
      <td>${esc(u.stage || "")}</td><td class="num">${Number(u.attempts)}</td><td>${timeTag(u.started_at)}</td><td class="num">${duration(ranFor(u))}</td>
      <td><code>${esc(u.worker_id || "")}</code></td></tr>`).join("");
    const warnings = (job.warnings || []).map((w) => `<div class="warn"><strong>${esc(w.code)}</strong>: ${esc(w.message)}</div>`).join("");
    document.getElementById("job-live").innerHTML = `${headCard(job)}
      ${job.ranking ? `<div class="card"><h2>Ranking</h2>${verdict(job)}${rankingChart(job.ranking)}${scoresTable(job.ranking)}</div>` : ""}
      ${guidanceCard(job.guidance)}
      ${warnings ? `<div class="card"><h2>Warnings</h2>${warnings}</div>` : ""}
      ${extra}
      ${timesCard(job)}
      ${downloadsCard(job)}
      <div class="card"><h2>Units</h2><table id="units"><thead><tr><th>Candidate</th><th>Status</th><th>Stage</th><th>Attempts</th><th>Started</th><th>Ran</th><th>Worker</th></tr></thead><tbody>${units}</tbody></table></div>`;
  } else if (!TERMINAL.has(state.job.status)) {
    // Unchanged, but time goes on: the elapsed time, ETA and the running bars.
    document.getElementById("job-counters").outerHTML = countersHtml(state.job);
    document.getElementById("job-times").outerHTML = timesCard(state.job);
  }
  if (!TERMINAL.has(state.job.status)) timer = setTimeout(() => run((g) => jobPoll(g, jobId, state), gen), POLL_MS);
}

async function onAction(e) {
  // The job page's buttons (one listener for every view: the page redraws them as the job changes).
  const el = e.target.closest("[data-action]");
  if (!el || el.disabled) return;
  const gen = generation;
  const box = el.dataset.action === "download" ? "download-error" : "action-error";
  const jobId = el.dataset.job;
  failed.delete(`${jobId}:${box}`);
  const shown = document.getElementById(box);
  if (shown) shown.innerHTML = "";
  el.disabled = true;
  try {
    if (el.dataset.action === "cancel") {
      await post(`/v1/jobs/${enc(el.dataset.job)}/cancel`);
      if (gen === generation) route();
    } else if (el.dataset.action === "rerun") {
      const { body } = await api(`/v1/jobs/${enc(el.dataset.job)}/request`);
      const accepted = (await post(KINDS[el.dataset.kind].submit, body)).body;
      if (gen === generation) location.hash = `#/jobs/${enc(accepted.id)}`;
    } else if (el.dataset.action === "download") {
      const dataset = el.dataset.download !== "result";
      const { blob } = await request(el.dataset.url, { accept: dataset ? "application/x-ndjson" : "application/json", raw: true });
      save(blob, el.dataset.file);
      el.disabled = false;
    }
  } catch (err) {
    if (gen !== generation) return;
    if (el.dataset.download && el.dataset.download !== "result" && err.status === 409) {
      // No dataset to download: say why, and keep the buttons off.
      noDataset.set(jobId, (err.problem && err.problem.detail) || err.message);
      for (const b of view.querySelectorAll('[data-action="download"]:not([data-download="result"])')) {
        b.disabled = true;
        b.title = noDataset.get(jobId);
      }
      const note = document.getElementById("download-note");
      if (note) note.textContent = `Dataset: ${noDataset.get(jobId)}.`;
      return;
    }
    el.disabled = false;
    failed.set(`${jobId}:${box}`, problemHtml(err));
    const now = document.getElementById(box); // the page may have been redrawn meanwhile
    if (now) now.innerHTML = failed.get(`${jobId}:${box}`);
  }
}
view.addEventListener("click", (e) => { onAction(e); });

// --- submit ---------------------------------------------------------------------------------------

function parseCandidates(text) {
  // One candidate a line: `name=model` or `name=model@temperature` (a bare `model` is its own name).
  const out = [];
  text.split("\n").forEach((line, i) => {
    const s = line.trim();
    if (!s) return;
    const eq = s.indexOf("=");
    const name = (eq < 0 ? s : s.slice(0, eq)).trim();
    let model = (eq < 0 ? s : s.slice(eq + 1)).trim();
    const c = { name };
    const at = model.lastIndexOf("@");
    if (at > 0 && /^\s*\d+(\.\d+)?\s*$/.test(model.slice(at + 1))) {
      c.temperature = Number(model.slice(at + 1));
      model = model.slice(0, at).trim();
    }
    if (!name || !model) throw new Error(`candidates, line ${i + 1}: write name=model or name=model@temperature`);
    c.model = model;
    out.push({ name: c.name, model: c.model, ...(c.temperature === undefined ? {} : { temperature: c.temperature }) });
  });
  if (!out.length) throw new Error("candidates: give at least one, a line each");
  return out;
}

function formBody(form) {
  // The POST /v1/jobs body of the common case the form asks for.
  const f = new FormData(form);
  const body = { student: f.get("student").trim(), candidates: parseCandidates(f.get("candidates")) };
  const dataset = f.get("dataset_id").trim();
  const prompts = f.get("prompts").split("\n").map((p) => p.trim()).filter(Boolean);
  if (dataset && prompts.length) throw new Error("give a dataset id or prompts, not both");
  if (dataset) body.dataset_id = dataset;
  else if (prompts.length) body.prompts = prompts.map((prompt) => ({ prompt }));
  else throw new Error("give a dataset id, or prompts one per line");
  const maxTokens = f.get("max_tokens").trim();
  if (maxTokens) for (const c of body.candidates) c.max_tokens = Number(maxTokens);
  const d = f.get("proj_dim").trim();
  body.scoring = { responses_per_prompt: Number(f.get("m")), proj_dim: d === "auto" || d === "" ? "auto" : /^\d+$/.test(d) ? Number(d) : d };
  return body;
}

async function submitTo(gen, path, body, errorBox) {
  errorBox.innerHTML = "";
  try {
    const accepted = (await post(path, body)).body;
    if (gen === generation) location.hash = `#/jobs/${enc(accepted.id)}`;
  } catch (err) {
    if (gen === generation) errorBox.innerHTML = problemHtml(err);
  }
}

async function submitView(gen, query) {
  // A job from JSON (any kind), or from the form for the common case; `from`: prefilled with a
  // job's stored submission (re-run after editing).
  const from = query.get("from");
  let prefill = "", kind = "score";
  const [datasets, stored] = await Promise.all([
    api("/v1/datasets?limit=100").then((r) => r.body.data, () => []),
    from ? Promise.all([api(`/v1/jobs/${enc(from)}`), api(`/v1/jobs/${enc(from)}/request`)]) : null,
  ]);
  if (gen !== generation) return;
  if (stored) {
    kind = stored[0].body.kind;
    prefill = JSON.stringify(stored[1].body, null, 2);
  }
  const kinds = Object.entries(KINDS).map(([k, v]) => `<option value="${k}"${k === kind ? " selected" : ""}>${k} (POST ${v.submit})</option>`).join("");
  view.innerHTML = `<h1>New job</h1>
    <form id="submit-form" class="card grid-form"><h2>Score teachers</h2>
      <label>Student <input name="student" required placeholder="a model under the model roots"></label>
      <label>Candidates <textarea name="candidates" rows="4" required placeholder="tutor=tutor&#10;tutor-hot=tutor@1.2&#10;noise=noise"></textarea>
        <small>one a line: name=model or name=model@temperature</small></label>
      <label>Dataset id <input name="dataset_id" list="datasets" placeholder="an uploaded dataset (POST /v1/datasets)" size="40"></label>
      <datalist id="datasets">${datasets.map((d) => `<option value="${esc(d.id)}">${esc(d.name || "")} · ${Number(d.n_prompts)} prompts</option>`).join("")}</datalist>
      <label>or prompts <textarea name="prompts" rows="5" placeholder="one prompt a line"></textarea></label>
      <div class="row"><label>m (responses per prompt) <input name="m" type="number" min="1" value="4" required></label>
        <label>d (projection dim) <input name="proj_dim" value="auto" size="8" pattern="auto|[0-9]+" title="a number, or auto"></label>
        <label>max tokens per response <input name="max_tokens" type="number" min="1" placeholder="1024"></label></div>
      <div class="row"><button type="submit">Submit</button> <button type="button" id="as-json">Edit as JSON ↓</button></div>
      <div class="error" id="form-error"></div></form>
    <form id="json-form" class="card"><h2>From JSON</h2>
      <label>Kind <select name="kind">${kinds}</select></label>
      ${from ? `<p class="muted">The stored submission of job <a href="#/jobs/${esc(from)}"><code>${esc(from)}</code></a>, every default filled in: edit it and submit.</p>` : ""}
      <textarea name="body" id="job-json" rows="18" spellcheck="false" placeholder='{"student": "…", "candidates": […], "prompts": […]}'>${esc(prefill)}</textarea>
      <div class="row"><button type="submit">Submit JSON</button></div>
      <div class="error" id="submit-error"></div></form>`;
  const form = document.getElementById("submit-form"), json = document.getElementById("json-form");
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const box = document.getElementById("form-error");
    let body;
    try {
      body = formBody(form);
    } catch (err) {
      box.innerHTML = `<p>${esc(err.message)}</p>`;
      return;
    }
    submitTo(gen, "/v1/jobs", body, box);
  });
  document.getElementById("as-json").addEventListener("click", () => {
    try {
      json.body.value = JSON.stringify(formBody(form), null, 2);
      json.kind.value = "score";
      json.body.focus();
    } catch (err) {
      document.getElementById("form-error").innerHTML = `<p>${esc(err.message)}</p>`;
    }
  });
  json.addEventListener("submit", (e) => {
    e.preventDefault();
    const box = document.getElementById("submit-error");
    let body;
    try {
      body = JSON.parse(json.body.value);
    } catch (err) {
      box.innerHTML = `<p>not JSON: ${esc(err.message)}</p>`;
      return;
    }
    submitTo(gen, KINDS[json.kind.value].submit, body, box);
  });
}

// --- compare two jobs ------------------------------------------------------------------------------

function flatten(obj, prefix = "", out = {}) {
  for (const [k, v] of Object.entries(obj || {})) {
    if (v && typeof v === "object" && !Array.isArray(v)) flatten(v, `${prefix}${k}.`, out);
    else out[`${prefix}${k}`] = v;
  }
  return out;
}
const shownValue = (v) => (v === undefined ? "–" : `<code>${esc(JSON.stringify(v))}</code>`);

async function compareView(gen, query) {
  const a = query.get("a") || "", b = query.get("b") || "";
  let body = "";
  if (a && b) {
    const [ja, jb, ra, rb] = await Promise.all([
      api(`/v1/jobs/${enc(a)}`), api(`/v1/jobs/${enc(b)}`), api(`/v1/jobs/${enc(a)}/request`), api(`/v1/jobs/${enc(b)}/request`),
    ]).then((all) => all.map((r) => r.body));
    if (gen !== generation) return;
    const byName = (job) => new Map((job.ranking || []).map((r) => [r.name, r]));
    const A = byName(ja), B = byName(jb);
    const names = [...A.keys(), ...[...B.keys()].filter((n) => !A.has(n))];
    const diff = (x, y) => (x === null || x === undefined || y === null || y === undefined ? "–" : `${y - x > 0 ? "+" : ""}${sig(y - x)}`);
    const rows = names.map((n) => {
      const x = A.get(n) || {}, y = B.get(n) || {};
      return `<tr data-candidate="${esc(n)}"><td>${esc(n)}</td>
        <td class="num rank-a">${esc(x.rank ?? "–")}</td><td class="num grace-a">${sig(x.grace)}</td>
        <td class="num rank-b">${esc(y.rank ?? "–")}</td><td class="num grace-b">${sig(y.grace)}</td>
        <td class="num delta-grace">${diff(x.grace, y.grace)}</td><td class="num delta-rank">${diff(x.rank, y.rank)}</td></tr>`;
    });
    const fa = flatten(ra.scoring), fb = flatten(rb.scoring);
    const keys = [...new Set([...Object.keys(fa), ...Object.keys(fb)])].filter((k) => JSON.stringify(fa[k]) !== JSON.stringify(fb[k]));
    const config = keys.map((k) => `<tr data-key="${esc(k)}"><td><code>scoring.${esc(k)}</code></td><td>${shownValue(fa[k])}</td><td>${shownValue(fb[k])}</td></tr>`);
    if (ja.proj_dim !== jb.proj_dim && !keys.includes("proj_dim")) {
      config.push(`<tr data-key="proj_dim (resolved)"><td>d as resolved</td><td>${shownValue(ja.proj_dim)}</td><td>${shownValue(jb.proj_dim)}</td></tr>`);
    }
    const notes = [];
    if (ja.student !== jb.student) notes.push(`different students (${esc(ja.student)}, ${esc(jb.student)})`);
    if (ja.prompt_set !== jb.prompt_set) notes.push("different prompt sets");
    const head = (j, label) => `<a href="#/jobs/${esc(j.id)}"><code>${esc(j.id.slice(0, 8))}</code></a> (${label}, ${esc(j.status)})`;
    body = `<div class="card"><h2>Rankings</h2>
      ${notes.length ? `<p class="warn" id="compare-note">Not like for like: ${notes.join("; ")}.</p>` : ""}
      <table id="compare-table"><thead><tr><th>Candidate</th><th>Rank A</th><th>GRACE A</th><th>Rank B</th><th>GRACE B</th><th>GRACE B − A</th><th>Rank B − A</th></tr></thead>
      <tbody>${rows.join("") || '<tr><td colspan="7">Neither job has a ranking yet.</td></tr>'}</tbody></table>
      <p class="caption">A: ${head(ja, "A")} · B: ${head(jb, "B")}</p></div>
      <div class="card"><h2>Configuration differences</h2>
      ${config.length ? `<table id="compare-config"><thead><tr><th>Setting</th><th>A</th><th>B</th></tr></thead><tbody>${config.join("")}</tbody></table>` : '<p id="compare-config">Same scoring settings.</p>'}</div>`;
  }
  view.innerHTML = `<h1>Compare two jobs</h1><form id="compare-pick" class="card toolbar">
      <input name="a" placeholder="job A" value="${esc(a)}" size="38" required aria-label="job A">
      <input name="b" placeholder="job B" value="${esc(b)}" size="38" required aria-label="job B">
      <button type="submit">Compare</button></form>${body}`;
  document.getElementById("compare-pick").addEventListener("submit", (e) => {
    e.preventDefault();
    location.hash = `#/compare?${new URLSearchParams({ a: e.target.a.value.trim(), b: e.target.b.value.trim() })}`;
  });
}

// --- leaderboards ------------------------------------------------------------------------------------

const shortHash = (h) => esc(String(h || "").slice(0, 8));
const settingsOf = (scoring) => `m ${esc(scoring.responses_per_prompt ?? "–")} · d ${esc(scoring.proj_dim ?? "–")} · seed ${esc(scoring.seed ?? "–")}`;

function boardsHtml(student, boards, current, maxParams) {
  // Every board of the student, to pick one: its prompt set, configuration, jobs and latest job.
  if (!boards.length) return `<p id="boards" class="muted">No succeeded score job for ${esc(student)} yet.</p>`;
  const link = (b) => {
    const p = new URLSearchParams({ student, dataset: b.prompt_set, comparison: b.comparison });
    if (maxParams) p.set("max_params", maxParams);
    return `#/leaderboard?${p}`;
  };
  return `<div id="boards"><h2>Boards of ${esc(student)}</h2><ul class="boards">${boards.map((b) => {
    const on = current && b.prompt_set === current.prompt_set && b.comparison === current.comparison;
    return `<li><a class="board${on ? " current" : ""}" href="${esc(link(b))}" data-prompt-set="${esc(b.prompt_set)}" data-comparison="${esc(b.comparison)}">
      prompt set <code>${shortHash(b.prompt_set)}</code> · ${settingsOf(b.scoring || {})} · ${Number(b.jobs)} job${b.jobs === 1 ? "" : "s"} · latest ${localTime(b.latest_at)}</a></li>`;
  }).join("")}</ul></div>`;
}

async function leaderboardView(gen, query) {
  const student = query.get("student") || "", dataset = query.get("dataset") || "", maxParams = query.get("max_params") || "";
  const comparison = query.get("comparison") || "";
  let table = "", boards = [], shown = null;
  if (student) boards = (await api(`/v1/leaderboards/boards?${new URLSearchParams({ student })}`)).body.data;
  if (student && dataset) {
    const search = new URLSearchParams({ student, dataset, limit: "100" });
    if (comparison) search.set("comparison", comparison);
    if (maxParams) search.set("max_params", maxParams);
    const { body } = await api(`/v1/leaderboards?${search}`);
    if (gen !== generation) return;
    shown = body;
    await loadPredictors();
    const cols = predictorColumns(body.data, "grace");
    const mine = boards.find((b) => b.prompt_set === body.prompt_set && b.comparison === body.comparison);
    const others = (body.comparisons || []).filter((c) => c !== body.comparison);
    const otherLink = (c) => {
      const b = boards.find((x) => x.prompt_set === body.prompt_set && x.comparison === c);
      const p = new URLSearchParams({ student, dataset, comparison: c });
      if (maxParams) p.set("max_params", maxParams);
      return `<a href="${esc(`#/leaderboard?${p}`)}" data-comparison="${esc(c)}">${b ? settingsOf(b.scoring || {}) : `configuration ${shortHash(c)}`}</a>`;
    };
    const config = body.comparison ? `<p id="board-config" data-comparison="${esc(body.comparison)}">Configuration shown: <strong>${mine ? settingsOf(mine.scoring || {}) : ""}</strong>
        (key <code>${shortHash(body.comparison)}</code>, prompt set <code>${shortHash(body.prompt_set)}</code>)${comparison ? "" : ", the latest job's"}.
        ${others.length ? `<span id="board-others">${others.length} other configuration${others.length === 1 ? "" : "s"} scored on this prompt set: ${others.map(otherLink).join(", ")}.</span>` : "The only configuration scored on this prompt set."}</p>` : "";
    table = body.data.length ? `${config}<table id="leaderboard"><thead><tr><th>#</th><th>Candidate</th><th>GRACE</th><th>± std</th>${cols.map((p) => `<th>${esc(p.label)}</th>`).join("")}<th>Job</th><th>Scored</th></tr></thead><tbody>
      ${body.data.map((e) => `<tr><td>${Number(e.rank)}</td><td>${esc(e.candidate)}</td><td class="num">${sig(e.grace)}</td><td class="num">${sig(e.grace_std)}</td>${cols.map((p) => predictorCell(p, e)).join("")}
        <td><a href="#/jobs/${esc(e.job_id)}"><code>${esc(e.job_id.slice(0, 8))}</code></a></td><td>${timeTag(e.scored_at)}</td></tr>`).join("")}
      </tbody></table>${guidanceCard(body.guidance)}` : "<p>Nothing scored yet for this student and prompt set.</p>";
  } else if (student) {
    table = "<p class=\"muted\">Pick a board above, or type a dataset id (or a job's prompt_set).</p>";
  }
  if (gen !== generation) return;
  view.innerHTML = `<h1>Leaderboard</h1><form id="board-form" class="card toolbar">
      <input name="student" placeholder="student" value="${esc(student)}" required aria-label="student">
      <input name="dataset" placeholder="dataset id or prompt_set (optional: pick a board)" value="${esc(dataset)}" size="40" aria-label="dataset">
      <input name="max_params" type="number" min="1" placeholder="max params (optional)" value="${esc(maxParams)}" aria-label="max params">
      <button type="submit">Show</button></form>
      <div class="card" id="board-picker">${student ? boardsHtml(student, boards, shown, maxParams) : '<p class="muted">Enter a student to see its boards.</p>'}</div>${table}`;
  const form = document.getElementById("board-form");
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    const next = new URLSearchParams({ student: f.get("student").trim() });
    if (f.get("dataset").trim()) next.set("dataset", f.get("dataset").trim());
    if (f.get("max_params")) next.set("max_params", f.get("max_params"));
    location.hash = `#/leaderboard?${next}`;
  });
  // Once a student is typed, its boards are listed without leaving the form.
  form.student.addEventListener("change", async () => {
    const s = form.student.value.trim();
    if (!s || s === student) return;
    try {
      const found = (await api(`/v1/leaderboards/boards?${new URLSearchParams({ student: s })}`)).body.data;
      if (gen === generation && form.student.value.trim() === s) {
        document.getElementById("board-picker").innerHTML = boardsHtml(s, found, null, form.max_params.value);
      }
    } catch (err) {
      if (gen === generation) document.getElementById("board-picker").innerHTML = `<p class="error">${esc(err.message)}</p>`;
    }
  });
}

// --- routes -----------------------------------------------------------------------------------------

async function run(render, gen) {
  try {
    await render(gen);
  } catch (err) {
    if (gen === generation) view.innerHTML = `<p class="error" id="error">${esc(err.message)}</p>`;
  }
}

function route() {
  clearTimeout(timer);
  const gen = ++generation;
  const [path, query] = (location.hash.slice(1) || "/jobs").split("?");
  const q = new URLSearchParams(query || "");
  const job = path.match(/^\/jobs\/(.+)$/);
  for (const a of document.querySelectorAll("header nav a")) a.classList.toggle("here", path.startsWith(a.getAttribute("href").slice(1)));
  if (job) run((g) => jobView(g, decodeURIComponent(job[1])), gen);
  else if (path === "/leaderboard") run((g) => leaderboardView(g, q), gen);
  else if (path === "/submit") run((g) => submitView(g, q), gen);
  else if (path === "/compare") run((g) => compareView(g, q), gen);
  else run((g) => jobsView(g, q), gen);
}

document.getElementById("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = document.getElementById("key");
  if (input.value.trim()) sessionStorage.setItem(KEY, input.value.trim());
  input.value = "";
  showKeyForm(false);
  route();
});
document.getElementById("forget").addEventListener("click", () => { sessionStorage.removeItem(KEY); route(); });
window.addEventListener("hashchange", route);
showKeyForm(false);
route();
