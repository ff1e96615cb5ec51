// grace-service dashboard: plain JS, no dependencies. Every value from the API is escaped before it
// reaches the page (candidate names and errors are user data).
"use strict";

const KEY = "grace.apiKey";
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const POLL_MS = 1000;
const view = document.getElementById("view");
let timer = null;
let generation = 0; // bumped on every navigation: a stale poll never draws over a new view

const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const fmt = (v, digits = 4) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));

function showKeyForm(show) {
  document.getElementById("key-form").hidden = !show;
  document.getElementById("forget").hidden = show || !sessionStorage.getItem(KEY);
}

async function api(path, etag) {
  const headers = { Accept: "application/json" };
  const key = sessionStorage.getItem(KEY);
  if (key) headers.Authorization = `Bearer ${key}`;
  if (etag) headers["If-None-Match"] = etag;
  const r = await fetch(path, { headers });
  if (r.status === 401) {
    // A refused key is dropped and asked for again; a 401 for a key replaced meanwhile (a request
    // still in flight when the user typed a new one) says nothing about the new key.
    if (sessionStorage.getItem(KEY) === key) {
      sessionStorage.removeItem(KEY);
      showKeyForm(true);
    }
    throw new Error("this service needs an API key: enter yours above");
  }
  if (r.status === 304) return { notModified: true, etag };
  const body = await r.json();
  if (!r.ok) throw new Error(`${body.title || r.status}: ${body.detail || ""}`);
  return { body, etag: r.headers.get("ETag") };
}

function stageOf(stages) {
  // The furthest stage a candidate has reached, with its progress.
  for (const name of ["distil", "gradients", "generate"]) {
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
    return `<div class="progress" data-candidate="${esc(name)}"><span class="bar"><span style="width:${pct}%"></span></span> ${esc(name)} ${esc(s.name)} <span class="count">${s.done}/${s.total}</span></div>`;
  });
  return rows.join("") || `<span class="progress">${esc(job.stage || "")}</span>`;
}

async function jobsView(gen, etag) {
  const got = await api("/v1/jobs?limit=50", etag);
  if (gen !== generation) return;
  if (got.notModified) {
    timer = setTimeout(() => run((g) => jobsView(g, etag), gen), POLL_MS);
    return;
  }
  const body = got.body;
  const rows = body.data.map((j) => `
    <tr data-job="${esc(j.id)}">
      <td><a href="#/jobs/${esc(j.id)}"><code>${esc(j.id)}</code></a></td>
      <td>${esc(j.kind)}</td>
      <td class="status ${esc(j.status)}">${esc(j.status)}</td>
      <td>${progressCell(j)}</td>
      <td>${esc(j.student)}</td>
      <td>${esc(((j.ranking || [])[0] || {}).name || "")}</td>
      <td>${esc(j.created_at.slice(0, 19).replace("T", " "))}</td>
    </tr>`);
  view.innerHTML = `<h1>Jobs</h1>
    <table id="jobs"><thead><tr><th>Job</th><th>Kind</th><th>Status</th><th>Progress</th><th>Student</th><th>Top pick</th><th>Created</th></tr></thead>
    <tbody>${rows.join("") || '<tr><td colspan="7">No jobs yet.</td></tr>'}</tbody></table>`;
  timer = setTimeout(() => run((g) => jobsView(g, got.etag), gen), POLL_MS);
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
  // good candidate would sit on one pixel.
  const rows = ranking.filter((r) => r.grace !== null && r.grace !== undefined);
  if (!rows.length) return "<p>No GRACE values in this job.</p>";
  const spans = rows.map((r) => {
    const s = r.grace_std || 0;
    return { r, s, lo: r.grace - s, hi: r.grace + s };
  });
  const graces = rows.map((r) => r.grace);
  const log = Math.min(...graces) > 0 && Math.max(...graces) / Math.min(...graces) > 10;
  const hi = Math.max(...spans.map((p) => p.hi));
  let x0, x1, scale;
  if (log) {
    // The log axis has no zero: a whisker reaching below a third of its dot is cut there.
    x0 = Math.min(...spans.map((p) => Math.max(p.lo, p.r.grace / 3))) / 1.25;
    x1 = hi * 1.25;
    scale = (v) => (Math.log(Math.max(v, x0)) - Math.log(x0)) / (Math.log(x1) - Math.log(x0));
  } else {
    const lo = Math.min(...spans.map((p) => p.lo));
    const pad = (hi - lo) * 0.1 || Math.abs(hi) * 0.1 || 1;
    [x0, x1] = [lo - pad, hi + pad];
    scale = (v) => (v - x0) / (x1 - x0);
  }
  const W = 960, left = 170, right = 24, rowH = 30, H = rows.length * rowH + 46;
  const X = (v) => left + Math.min(Math.max(scale(v), 0), 1) * (W - left - right);
  const grid = niceTicks(x0, x1, log).map((t) => `<line class="grid" x1="${X(t)}" x2="${X(t)}" y1="12" y2="${H - 24}"/>
    <text class="tick" x="${X(t)}" y="${H - 8}" text-anchor="middle">${Number(t.toPrecision(3))}</text>`);
  const items = spans.map(({ r, s }, i) => {
    const y = 20 + i * rowH + rowH / 2;
    return `<g class="candidate" data-name="${esc(r.name)}"><text x="${left - 10}" y="${y + 4}" text-anchor="end">${r.rank}. ${esc(r.name)}</text>
      <line class="whisker" x1="${X(r.grace - s)}" x2="${X(r.grace + s)}" y1="${y}" y2="${y}"/>
      <circle class="dot" cx="${X(r.grace)}" cy="${y}" r="5"><title>${esc(r.name)}: GRACE ${fmt(r.grace)} ± ${fmt(s)}</title></circle></g>`;
  });
  const caption = `GRACE (lower = better), ${log ? "log scale, " : ""}whisker ± split std`;
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

async function jobView(gen, jobId, state = {}) {
  const got = await api(`/v1/jobs/${encodeURIComponent(jobId)}`, state.etag);
  if (gen !== generation) return;
  if (!got.notModified) {
    const job = got.body;
    await loadPredictors();
    let extra = "";
    if (job.kind === "validation" && job.status === "succeeded" && job.ranking) {
      extra = scatter(job, (await api(`/v1/jobs/${encodeURIComponent(jobId)}/validation`)).body);
    }
    const units = job.units.map((u) => `<tr><td>${esc(u.candidate || "(whole job)")}</td><td class="status ${esc(u.status)}">${esc(u.status)}</td>
      <td>${esc(u.stage || "")}</td><td class="num">${u.attempts}</td><td><code>${esc(u.worker_id || "")}</code></td></tr>`).join("");
    const warnings = (job.warnings || []).map((w) => `<div class="warn"><strong>${esc(w.code)}</strong>: ${esc(w.message)}</div>`).join("");
    view.innerHTML = `<h1>Job <code id="job-id">${esc(job.id)}</code></h1>
      <div class="card"><span class="status ${esc(job.status)}" id="job-status">${esc(job.status)}</span>
        · ${esc(job.kind)} · student <code>${esc(job.student)}</code> · ${job.examples_scored} responses scored
        ${job.settled === false ? " · <strong>not settled</strong>" : job.settled ? " · settled" : ""}
        ${job.error ? `<p class="error">${esc(job.error.code)}: ${esc(job.error.message)}</p>` : ""}
        <div id="job-progress">${progressCell(job)}</div></div>
      ${job.ranking ? `<div class="card"><h2>Ranking</h2>${verdict(job)}${rankingChart(job.ranking)}${scoresTable(job.ranking)}</div>` : ""}
      ${guidanceCard(job.guidance)}
      ${warnings ? `<div class="card"><h2>Warnings</h2>${warnings}</div>` : ""}
      ${extra}
      <div class="card"><h2>Units</h2><table><thead><tr><th>Candidate</th><th>Status</th><th>Stage</th><th>Attempts</th><th>Worker</th></tr></thead><tbody>${units}</tbody></table></div>`;
    state = { etag: got.etag, done: TERMINAL.has(job.status) };
  }
  if (!state.done) timer = setTimeout(() => run((g) => jobView(g, jobId, state), gen), POLL_MS);
}

async function leaderboardView(gen, query) {
  const student = query.get("student") || "", dataset = query.get("dataset") || "", maxParams = query.get("max_params") || "";
  let table = "";
  if (student && dataset) {
    const search = new URLSearchParams({ student, dataset, limit: "100" });
    if (maxParams) search.set("max_params", maxParams);
    const { body } = await api(`/v1/leaderboards?${search}`);
    if (gen !== generation) return;
    await loadPredictors();
    const shown = predictorColumns(body.data, "grace");
    table = body.data.length ? `<table id="leaderboard"><thead><tr><th>#</th><th>Candidate</th><th>GRACE</th><th>± std</th>${shown.map((p) => `<th>${esc(p.label)}</th>`).join("")}<th>Job</th><th>Scored</th></tr></thead><tbody>
      ${body.data.map((e) => `<tr><td>${e.rank}</td><td>${esc(e.candidate)}</td><td class="num">${fmt(e.grace)}</td><td class="num">${fmt(e.grace_std)}</td>${shown.map((p) => predictorCell(p, e)).join("")}
        <td><a href="#/jobs/${esc(e.job_id)}"><code>${esc(e.job_id.slice(0, 8))}</code></a></td><td>${esc(e.scored_at.slice(0, 19).replace("T", " "))}</td></tr>`).join("")}
      </tbody></table>${guidanceCard(body.guidance)}` : "<p>Nothing scored yet for this student and prompt set.</p>";
  }
  view.innerHTML = `<h1>Leaderboard</h1><form id="board-form" class="card">
      <input name="student" placeholder="student" value="${esc(student)}" required>
      <input name="dataset" placeholder="dataset id or prompt_set" value="${esc(dataset)}" required size="40">
      <input name="max_params" type="number" min="1" placeholder="max params (optional)" value="${esc(maxParams)}">
      <button type="submit">Show</button></form>${table}`;
  document.getElementById("board-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    const next = new URLSearchParams({ student: f.get("student"), dataset: f.get("dataset") });
    if (f.get("max_params")) next.set("max_params", f.get("max_params"));
    location.hash = `#/leaderboard?${next}`;
  });
}

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
  const job = path.match(/^\/jobs\/(.+)$/);
  if (job) run((g) => jobView(g, decodeURIComponent(job[1])), gen);
  else if (path === "/leaderboard") run((g) => leaderboardView(g, new URLSearchParams(query || "")), gen);
  else run(jobsView, gen);
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
