// kotune studio: one page, no build step. Every answer comes from the server (kotune's own code); the page keeps
// no state that a reload would lose: runs and configs live in files.
"use strict";
const $ = (id) => document.getElementById(id);
const state = {lang: "en", s: {}, schema: null, sources: [], advanced: {}, job: null, logSize: 0, timer: null};
const t = (key) => state.s[key] || key;

async function api(path, body) {
  const opts = body === undefined ? {} : {method: "POST", headers: {"Content-Type": "application/json"},
                                         body: JSON.stringify(body)};
  const res = await fetch(path, opts);
  const data = await res.json().catch(() => ({error: res.statusText}));
  if (!res.ok) throw new Error(data.error || res.statusText);
  return data;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

// ---- language ----
async function setLang(lang) {
  const data = await api("/api/i18n" + (lang ? "?lang=" + lang : ""));
  state.lang = data.lang; state.s = data.strings;
  document.documentElement.lang = data.lang;
  $("root").textContent = data.root;
  document.querySelectorAll("[data-i18n]").forEach((n) => { n.textContent = t(n.dataset.i18n); });
  document.querySelectorAll("[data-i18n-placeholder]").forEach((n) => { n.placeholder = t(n.dataset.i18nPlaceholder); });
  $("lang-switch").textContent = t("lang");
  localStorage.setItem("kotune-lang", data.lang);
}

// ---- tabs ----
function showTab() {
  const name = (location.hash || "#config").slice(1);
  document.querySelectorAll(".tab").forEach((s) => s.classList.toggle("shown", s.id === "tab-" + name));
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("on", a.dataset.tab === name));
}

// ---- the config form ----
function parseScalar(text) {
  const v = text.trim();
  if (v === "") return undefined;
  if (v === "true" || v === "false") return v === "true";
  if (v === "null") return null;
  if (/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(v)) return Number(v);
  if (v.startsWith("[") && v.endsWith("]")) {
    const inner = v.slice(1, -1).trim();
    return inner ? inner.split(",").map((x) => parseScalar(x)) : [];
  }
  return v.replace(/^["'](.*)["']$/, "$1");
}

function fieldInput(name) {
  const f = state.schema.fields[name];
  const id = "f-" + name;
  let input;
  if (f.widget === "bool" || f.widget === "choice") {
    input = el("select", {id});
    input.append(el("option", {value: "", "data-i18n": "unset"}, t("unset")));
    const options = f.widget === "bool" ? ["true", "false"] : f.choices.map(String);
    options.forEach((o) => input.append(el("option", {value: o}, o)));
  } else {
    input = el("input", {id, type: f.widget === "int" || f.widget === "float" ? "text" : "text"});
  }
  input.addEventListener("input", changed);
  input.addEventListener("change", changed);
  return el("label", {title: f.help}, el("span", {}, name), input);
}

function buildForm() {
  const s = state.schema;
  $("stage").replaceChildren(...s.stages.map((x) => el("option", {value: x}, x)));
  const common = $("common");
  common.replaceChildren();
  for (const [section, keys] of Object.entries(s.common)) {
    const shown = keys.filter((k) => !["model_name_or_path", "use_peft", "load_in_4bit"].includes(k));
    const box = el("fieldset", {}, el("legend", {"data-i18n": "sec_" + section}, t("sec_" + section)));
    shown.forEach((k) => box.append(fieldInput(k)));
    common.append(box);
  }
  $("adv-keys").replaceChildren(...Object.keys(s.fields).sort().map((k) => el("option", {value: k})));
}

function commonKeys() {
  return new Set(Object.values(state.schema.common).flat());
}

function renderSources() {
  const box = $("sources");
  box.replaceChildren();
  state.sources.forEach((src, i) => {
    const fmt = el("select", {id: "src-format-" + i});
    fmt.append(el("option", {value: "", "data-i18n": "unset"}, t("unset")));
    state.schema.formats.forEach((f) => fmt.append(el("option", {value: f}, f)));
    fmt.value = src.format || "";
    const id = el("input", {id: "src-id-" + i, class: "wide", placeholder: t("source_id")});
    id.value = src.id || "";
    const extra = el("input", {id: "src-extra-" + i, placeholder: t("source_extra")});
    extra.value = src.extra && Object.keys(src.extra).length ? JSON.stringify(src.extra) : "";
    const sync = () => {
      src.id = id.value; src.format = fmt.value;
      try { src.extra = extra.value.trim() ? JSON.parse(extra.value) : {}; extra.classList.remove("bad"); }
      catch (e) { extra.classList.add("bad"); }
      changed();
    };
    [id, fmt, extra].forEach((n) => { n.addEventListener("input", sync); n.addEventListener("change", sync); });
    const rm = el("button", {type: "button", onclick: () => { state.sources.splice(i, 1); renderSources(); changed(); }},
                  t("remove"));
    box.append(el("div", {class: "row source"}, id, fmt, extra, rm));
  });
}

function renderAdvanced() {
  const box = $("advanced");
  box.replaceChildren();
  for (const [k, v] of Object.entries(state.advanced)) {
    const rm = el("button", {type: "button", onclick: () => { delete state.advanced[k]; renderAdvanced(); changed(); }},
                  t("remove"));
    box.append(el("div", {class: "row adv"}, el("code", {}, k + ": " + JSON.stringify(v)), rm));
  }
}

function formConfig() {
  const cfg = {};
  const base = $("f-model_name_or_path").value.trim();
  if (base) cfg.model_name_or_path = base;
  const method = $("method").value;
  cfg.use_peft = method !== "full";
  if (method === "qlora") cfg.load_in_4bit = true;
  for (const k of commonKeys()) {
    const node = $("f-" + k);
    if (!node || ["model_name_or_path"].includes(k)) continue;
    const value = parseScalar(node.value);
    if (value !== undefined) cfg[k] = value;
  }
  const sources = state.sources.filter((s) => (s.id || "").trim());
  if (sources.length) {
    cfg.dataset_mixture = {datasets: sources.map((s) => {
      const out = {id: s.id};
      if (s.format) out.format = s.format;
      return Object.assign(out, s.extra || {});
    })};
    if (state.mixtureExtra) Object.assign(cfg.dataset_mixture, state.mixtureExtra);
  }
  return Object.assign(cfg, state.advanced);
}

function fillForm(cfg) {
  const keys = commonKeys();
  $("f-model_name_or_path").value = cfg.model_name_or_path || "";
  $("method").value = cfg.use_peft === false ? "full" : (cfg.load_in_4bit ? "qlora" : "lora");
  for (const k of keys) {
    const node = $("f-" + k);
    if (node && k !== "model_name_or_path") node.value = cfg[k] === undefined ? "" : fmtValue(cfg[k]);
  }
  const mixture = cfg.dataset_mixture || {};
  state.sources = (mixture.datasets || []).map((d) => {
    const {id, format, ...extra} = d;
    return {id, format, extra};
  });
  const {datasets, ...mixtureExtra} = mixture;
  state.mixtureExtra = mixtureExtra;
  state.advanced = {};
  for (const [k, v] of Object.entries(cfg)) {
    if (!keys.has(k) && !["model_name_or_path", "use_peft", "load_in_4bit", "dataset_mixture"].includes(k)) {
      state.advanced[k] = v;
    }
  }
  renderSources(); renderAdvanced();
}

function fmtValue(v) {
  if (Array.isArray(v)) return "[" + v.map(String).join(", ") + "]";
  return String(v);
}

let checkTimer = null;
function changed() {
  clearTimeout(checkTimer);
  checkTimer = setTimeout(validate, 150);
}

async function validate() {
  const body = {config: formConfig(), stage: $("stage").value, path: $("config-path").value};
  try {
    showCheck(await api("/api/validate", body));
  } catch (e) { $("problems").textContent = e.message; }
}

function showCheck(r) {
  const box = $("problems");
  box.replaceChildren();
  box.className = "problems " + (r.ok ? "ok" : "bad");
  if (r.ok) box.append(el("p", {}, t("check_ok")));
  if (r.problems.length) {
    box.append(el("p", {}, t("check_bad")), el("pre", {id: "cli-message"}, r.message));
  }
  if (r.studio.length) box.append(el("p", {}, t("studio_refused")), el("ul", {}, ...r.studio.map((p) => el("li", {}, p))));
  $("yaml").textContent = r.yaml;
  $("commands").textContent = [r.commands.kotune, r.commands.python, r.commands.launch].join("\n");
}

async function loadConfig() {
  try {
    const r = await api("/api/config/load", {path: $("config-path").value});
    $("config-path").value = r.path;
    fillForm(r.config);
    await validate();
  } catch (e) { $("save-note").textContent = e.message; }
}

async function saveConfig() {
  try {
    const r = await api("/api/config/save", {config: formConfig(), stage: $("stage").value, path: $("config-path").value});
    $("save-note").textContent = t("saved") + ": " + r.path;
    showCheck(r);
  } catch (e) { $("save-note").textContent = e.message; }
}

function addAdvanced() {
  const key = $("adv-key").value.trim();
  if (!key) return;
  const value = parseScalar($("adv-value").value);
  if (commonKeys().has(key) && $("f-" + key)) { $("f-" + key).value = value === undefined ? "" : fmtValue(value); }
  else if (value === undefined) delete state.advanced[key]; else state.advanced[key] = value;
  $("adv-key").value = ""; $("adv-value").value = "";
  renderAdvanced(); changed();
}

async function loadSchema() {
  const stage = $("stage").value || "sft";
  const keep = state.schema ? formConfig() : null;
  state.schema = await api("/api/schema?stage=" + encodeURIComponent(stage));
  buildForm();
  $("stage").value = stage;
  if (keep) fillForm(keep);
}

// ---- what the model learns ----
async function learn() {
  $("learn-status").textContent = t("working");
  $("learn-examples").replaceChildren();
  try {
    const r = await api("/api/learn", {config: formConfig(), stage: $("stage").value, path: $("config-path").value,
                                      rows: Number($("learn-rows").value)});
    $("learn-status").textContent = "";
    r.examples.forEach((ex, i) => {
      const line = el("div", {class: "example"});
      ex.spans.forEach((s) => {
        const cls = "tok " + (s.loss ? "loss" : "noloss") + (s.eot ? " eot" : "");
        line.append(el("span", {class: cls, title: s.ids.join(" ")}, s.text));
      });
      $("learn-examples").append(el("h4", {}, `${t("example")} ${i + 1} · ${ex.tokens} ${t("tokens")}, ${ex.trained} ${t("trained")}`), line);
    });
    const dropped = Object.entries(r.dropped).map(([k, v]) => `${k}: ${Object.entries(v).map(([a, b]) => a + " " + b).join(", ")}`);
    const answers = Object.entries(r.answers).map(([k, v]) => `${k}: ${Object.entries(v).map(([a, b]) => a + " " + b).join(", ")}`);
    $("learn-summary").replaceChildren(
      el("p", {}, el("b", {}, t("tokens_per_syllable") + ": "), String(r.tokens_per_hangul_syllable)),
      el("p", {}, el("b", {}, t("dropped") + ": "), dropped.length ? dropped.join(" · ") : t("none")),
      el("p", {}, el("b", {}, t("answers") + ": "), answers.length ? answers.join(" · ") : t("none")),
      el("details", {}, el("summary", {}, t("template") + " (" + r.eot_tokens.join(", ") + ")"), el("pre", {}, r.template)));
    $("learn-report").textContent = r.text;
  } catch (e) { $("learn-status").textContent = t("error") + ": " + e.message; }
}

// ---- will it fit ----
async function fit() {
  $("fit-words").textContent = t("working");
  try {
    const r = await api("/api/plan", {config: formConfig(), stage: $("stage").value, gpus: Number($("fit-gpus").value),
                                     gpu_mem: $("fit-mem").value});
    $("fit-words").textContent = typeof r.words === "string" ? r.words : r.words[state.lang];
    $("fit-words").className = "verdict " + (r.fits === false ? "bad" : "ok");
    $("fit-table").textContent = r.table;
  } catch (e) { $("fit-words").textContent = e.message; }
}

// ---- train and watch ----
function chart(svg, series, opts = {}) {
  const W = 480, H = 220, L = 44, B = 24, pad = 8;
  const pts = series.flatMap((s) => s.points);
  svg.replaceChildren();
  const NS = "http://www.w3.org/2000/svg";
  const mk = (tag, attrs, text) => {
    const n = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    svg.append(n); return n;
  };
  mk("rect", {x: L, y: pad, width: W - L - pad, height: H - B - pad, class: "frame"});
  if (!pts.length) return;
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1);
  let y0 = opts.y0 !== undefined ? opts.y0 : Math.min(...ys), y1 = opts.y1 !== undefined ? opts.y1 : Math.max(...ys);
  if (y1 - y0 < 1e-9) { y0 -= 0.5; y1 += 0.5; }
  const X = (x) => L + (x - x0) / (x1 - x0) * (W - L - pad);
  const Y = (y) => H - B - (y - y0) / (y1 - y0) * (H - B - pad * 2);
  mk("text", {x: 2, y: Y(y1) + 4, class: "axis"}, y1.toFixed(2));
  mk("text", {x: 2, y: Y(y0), class: "axis"}, y0.toFixed(2));
  mk("text", {x: L, y: H - 6, class: "axis"}, `${t("step")} ${x0}`);
  mk("text", {x: W - pad - 60, y: H - 6, class: "axis"}, `${t("step")} ${x1}`);
  series.forEach((s, i) => {
    if (!s.points.length) return;
    mk("polyline", {points: s.points.map((p) => `${X(p[0])},${Y(p[1])}`).join(" "), class: "line c" + i,
                    "data-points": s.points.length});
    s.points.forEach((p) => mk("circle", {cx: X(p[0]), cy: Y(p[1]), r: 2.5, class: "dot c" + i}));
    mk("text", {x: L + 8 + i * 120, y: pad + 14, class: "key c" + i}, s.name);
  });
}

function fmtTime(s) {
  if (s === null || s === undefined) return "?";
  const m = Math.floor(s / 60), r = s % 60;
  return m ? `${m}m ${r}s` : `${r}s`;
}

function showJob(job) {
  state.job = job.id;
  $("run-status").textContent = t("status_" + job.status) + (job.kind !== "train" ? ` (${job.kind})` : "");
  $("run-stop").disabled = job.status !== "running";
  if (job.progress) {
    $("run-progress").max = job.progress.total; $("run-progress").value = job.progress.step;
    $("run-eta").textContent = `${t("step")} ${job.progress.step}/${job.progress.total} · ${t("eta")} ${fmtTime(job.progress.eta_s)}`;
  }
  $("run-error").textContent = job.error || "";
  $("run-error").className = "problems" + (job.error ? " bad" : "");
  const series = (key) => job.points.filter((p) => p[key] !== undefined).map((p) => [p.step, p[key]]);
  chart($("loss-chart"), [{name: t("train_loss"), points: series("loss")}, {name: t("eval_loss"), points: series("eval_loss")}]);
  chart($("health-chart"), [{name: t("hangul_share"), points: series("eval_hangul_share")},
                            {name: "합쇼체", points: series("eval_speech_합쇼체")},
                            {name: "해요체", points: series("eval_speech_해요체")},
                            {name: "반말", points: series("eval_speech_반말")}], {y0: 0, y1: 1});
}

async function poll() {
  clearTimeout(state.timer);
  if (!state.job) return;
  try {
    const job = await api(`/api/jobs/${state.job}?since=${state.logSize}`);
    state.log = (state.log + job.log).slice(-200000);
    const log = $("run-log");
    log.textContent = cleanLog(state.log);
    log.scrollTop = log.scrollHeight;
    state.logSize = job.log_size;
    showJob(job);
    if (job.status === "running") state.timer = setTimeout(poll, 1000);
    else { refreshLists(); }
  } catch (e) { $("run-error").textContent = e.message; }
}

// The log as a terminal would leave it: progress bars redrawn in place (\r) are dropped, the bar is shown above.
function cleanLog(text) {
  return text.replace(/\x1b\[A/g, "").split(/\r|\n/)
    .filter((line) => line.trim() && !/^\s*[\w ]*:?\s*\d+%\|/.test(line)).slice(-400).join("\n");
}

function watch(jobId) {
  state.job = jobId; state.logSize = 0; state.log = ""; $("run-log").textContent = "";
  poll();
}

async function startRun() {
  try {
    const job = await api("/api/runs", {config: formConfig(), stage: $("stage").value, path: $("config-path").value});
    location.hash = "#run";
    watch(job.id);
    refreshLists();
  } catch (e) { $("run-error").textContent = e.message; $("run-error").className = "problems bad"; }
}

async function refreshLists() {
  const [jobs, past] = await Promise.all([api("/api/jobs"), api("/api/past")]);
  $("jobs").replaceChildren(el("table", {}, ...jobs.jobs.map((j) => el("tr", {},
    el("td", {}, j.id), el("td", {}, j.kind), el("td", {}, t("status_" + j.status)),
    el("td", {}, j.config || j.out || ""),
    el("td", {}, el("button", {type: "button", onclick: () => { location.hash = "#run"; watch(j.id); }}, t("open")))))));
  $("past").replaceChildren(past.runs.length ? el("table", {},
    el("tr", {}, el("th", {}, t("output_dir")), el("th", {}, t("metrics"))),
    ...past.runs.map((r) => el("tr", {}, el("td", {}, el("code", {}, r.output_dir)),
      el("td", {}, Object.entries(r.metrics).filter(([k]) => k !== "step").map(([k, v]) => `${k} ${Number(v).toPrecision(4)}`).join(", ")))))
    : el("p", {}, t("no_runs")));
  $("run-list").replaceChildren(...past.runs.map((r) => el("option", {value: r.output_dir})));
  if (!$("chat-run").value && past.runs.length) $("chat-run").value = past.runs[0].output_dir;
  return jobs;
}

// ---- chat and export ----
async function ask(side, question) {
  const pane = $("chat-" + side);
  pane.textContent = "";
  pane.classList.add("busy");
  try {
    const res = await fetch("/api/chat", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({run: $("chat-run").value, side, question, thinking: $("chat-thinking").value})});
    if (!res.ok) { const d = await res.json(); throw new Error(d.error); }
    const reader = res.body.getReader(), dec = new TextDecoder();
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      pane.textContent += dec.decode(value, {stream: true});
    }
  } catch (e) { pane.textContent = t("error") + ": " + e.message; }
  pane.classList.remove("busy");
  pane.dataset.done = "1";
}

async function chat() {
  const q = $("chat-q").value.trim();
  if (!q) return;
  ["base", "tuned"].forEach((s) => { $("chat-" + s).dataset.done = ""; });
  await ask("base", q);
  await ask("tuned", q);
}

async function startTool(kind) {
  const body = {run: $("chat-run").value, out: $(kind + "-out").value};
  if (kind === "export") body.quant = $("export-quant").value;
  try {
    const job = await api("/api/" + kind, body);
    $("export-log").textContent = t("working");
    const tick = async () => {
      const j = await api(`/api/jobs/${job.id}`);
      $("export-log").textContent = `${kind}: ${t("status_" + j.status)}\n` + cleanLog(j.log).split("\n").slice(-12).join("\n");
      if (j.status === "running") setTimeout(tick, 1000); else refreshLists();
    };
    tick();
  } catch (e) { $("export-log").textContent = e.message; }
}

// ---- start ----
async function init() {
  await setLang(localStorage.getItem("kotune-lang") || undefined);
  await loadSchema();
  $("stage").addEventListener("change", async () => { await loadSchema(); changed(); });
  ["f-model_name_or_path", "method", "config-path"].forEach((id) => $(id).addEventListener("input", changed));
  $("method").addEventListener("change", changed);
  $("add-source").addEventListener("click", () => { state.sources.push({id: "", format: "", extra: {}}); renderSources(); changed(); });
  $("adv-add").addEventListener("click", addAdvanced);
  $("adv-key").addEventListener("input", () => {
    const f = state.schema.fields[$("adv-key").value.trim()];
    $("adv-help").textContent = f ? f.help : "";
  });
  $("config-load").addEventListener("click", loadConfig);
  $("config-save").addEventListener("click", saveConfig);
  $("learn-btn").addEventListener("click", learn);
  $("fit-btn").addEventListener("click", fit);
  $("run-start").addEventListener("click", startRun);
  $("run-stop").addEventListener("click", async () => { await api(`/api/jobs/${state.job}/stop`, {}); poll(); });
  $("chat-send").addEventListener("click", chat);
  $("merge-btn").addEventListener("click", () => startTool("merge"));
  $("export-btn").addEventListener("click", () => startTool("export"));
  $("lang-switch").addEventListener("click", async () => { await setLang(state.lang === "ko" ? "en" : "ko"); renderSources(); renderAdvanced(); validate(); });
  window.addEventListener("hashchange", showTab);
  showTab();
  api("/api/configs").then((r) => $("config-list").replaceChildren(...r.configs.map((c) => el("option", {value: c}))));
  const jobs = await refreshLists();
  const last = jobs.jobs.find((j) => j.kind === "train");
  if (last) {  // a reload shows the same run and its config
    $("config-path").value = last.config;
    await loadConfig();
    watch(last.id);
  } else {
    state.sources = [{id: "", format: "", extra: {}}]; renderSources();
    await validate();
  }
}
init();
