// atelier studio: training from the page. Upload a zip (or pick a server folder), read what atelier sees in the
// pictures and the recipe it recommends, edit it, start; then watch the job learn (server-sent events: step,
// images/s, time left, losses, the latest sample grid, FID), stop, resume, continue for longer.
"use strict";

const train = { dataset: null, families: [], jobs: [], job: null, source: null, rows: [], folder: { root: 0, path: "" } };
const ACTIVE = ["queued", "running", "stopping"];
const COLOURS = ["#ff7a59", "#7ad7ff", "#4ad39a", "#b48cff", "#ffcf70", "#ff5d6c"];

const fmtTime = (s) => s === null || s === undefined ? "–" : s < 60 ? `${Math.round(s)} s`
  : s < 3600 ? `${Math.floor(s / 60)} min ${Math.round(s % 60)} s` : `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;

// ------------------------------------------------------------------------------------------ new model
async function uploadZip(file) {
  showError(null);
  $("data-status").textContent = `uploading ${file.name} (${(file.size / 1e6).toFixed(1)} MB) and reading the pictures…`;
  const form = new FormData();
  form.append("file", file);
  try {
    const { res } = await api("/api/datasets", form);
    showDataset(await res.json());
  } catch (err) { $("data-status").textContent = ""; showError(err); }
}

async function browse(root, path) {
  try {
    const f = await getJSON(`/api/folders?root=${root}&path=${encodeURIComponent(path)}`);
    if (!f.roots.length) return;
    $("folder-pick").hidden = false;
    train.folder = { root: f.root, path: f.path };
    $("root-select").innerHTML = f.roots.map((r, i) => `<option value="${i}">${r.replace(/</g, "&lt;")}</option>`).join("");
    $("root-select").value = String(f.root);
    $("folder-path").textContent = `/${f.path} · ${f.images} picture${f.images === 1 ? "" : "s"} here`;
    const box = $("folder-list");
    box.innerHTML = "";
    if (f.path) box.appendChild(folderButton("..", f.path.split("/").slice(0, -1).join("/")));
    for (const sub of f.folders) box.appendChild(folderButton(`${sub}/`, f.path ? `${f.path}/${sub}` : sub));
  } catch (err) { showError(err); }
}

function folderButton(label, path) {
  const b = el("button", "ghost folder", label);
  b.onclick = () => browse(train.folder.root, path);
  return b;
}

async function useFolder() {
  $("data-status").textContent = "reading the pictures…";
  try { showDataset(await postJSON("/api/datasets/folder", train.folder)); }
  catch (err) { $("data-status").textContent = ""; showError(err); }
}

function fact(dl, term, value) {
  dl.appendChild(el("dt", "", term));
  dl.appendChild(el("dd", "", value));
}

function showDataset(d) {
  train.dataset = d;
  const s = d.summary;
  $("data-status").textContent = `${d.name}: ${s.n_images.toLocaleString()} pictures` + (s.n_left_out ? ` (${s.n_left_out} other files left out)` : "");
  $("step-summary").hidden = $("step-recipe").hidden = false;
  $("sheet").src = d.sheet;
  const dl = $("facts");
  dl.innerHTML = "";
  fact(dl, "pictures", `${s.n_images.toLocaleString()}` + (s.skipped.length ? ` (${s.skipped.length} unreadable skipped)` : ""));
  fact(dl, "sizes", Object.entries(s.sizes).slice(0, 3).map(([k, n]) => `${k} ×${n}`).join(", ") + (Object.keys(s.sizes).length > 3 ? ", …" : ""));
  fact(dl, "short side", `${s.short_side[0]}–${s.short_side[2]} px (median ${s.median_side})`);
  fact(dl, "colour", `${Math.round(s.colour_share * 100)}% in colour`);
  fact(dl, "alpha", s.with_alpha_channel ? `${s.with_transparency} use transparency, ${s.fully_opaque} opaque` : "none");
  fact(dl, "duplicates", `${s.n_exact_duplicates} exact, ${s.n_near_duplicates} near` + (s.near_checked ? "" : " (near not checked)"));
  fact(dl, "classes", Object.keys(s.classes).length ? Object.entries(s.classes).map(([k, n]) => `${k} ${n}`).join(", ") : "none (one set)");
  const rec = d.recipe.overrides;
  const fams = train.families.length ? train.families : [rec["model.name"]];
  $("job-family").innerHTML = fams.map((f) => `<option value="${f}">${f}${f === rec["model.name"] ? " (recommended)" : ""}</option>`).join("");
  $("job-family").value = fams.includes(rec["model.name"]) ? rec["model.name"] : (fams.includes("dcgan") ? "dcgan" : fams[0]);
  // "recommended": the server picks the size for the family and budget (a short CPU budget trains at 32 px).
  const res = rec["data.resolution"];
  $("job-res").innerHTML = `<option value="">recommended</option>` + [...new Set([res, 28, 32, 64, 128])]
    .sort((a, b) => a - b).map((r) => `<option value="${r}">${r} px</option>`).join("");
  $("job-res").value = "";
  const taken = new Set(state.models.map((m) => m.name).concat(train.jobs.map((j) => j.name)));
  let name = (d.name.replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^[^A-Za-z0-9]+/, "") || "model").slice(0, 56);
  for (let i = 2; taken.has(name); i++) name = `${name.replace(/-\d+$/, "")}-${i}`;
  $("job-name").value = name;
  refreshPlan();
}

function recipeBody() {
  return { family: $("job-family").value, resolution: $("job-res").value ? Number($("job-res").value) : null,
           budget: { [$("job-unit").value]: Number($("job-budget").value) }, extra: $("job-extra").value };
}

// What the recipe, as edited, would train: the server checks it (a 400 names what is wrong) and gives the reasons.
// Answers can come back out of order (the server checks plans in parallel): only the newest request's is shown.
let planTimer = null;
let planSeq = 0;
function refreshPlan() {
  clearTimeout(planTimer);
  planTimer = setTimeout(async () => {
    if (!train.dataset) return;
    const seq = ++planSeq;
    try {
      const p = await postJSON(`/api/datasets/${train.dataset.id}/plan`, recipeBody());
      if (seq !== planSeq) return;
      const reasons = $("reasons");
      reasons.innerHTML = "";
      p.reasons.forEach((r) => reasons.appendChild(el("li", "", r)));
      const c = p.config;
      const budget = Object.entries(c.budget).map(([k, v]) => `${v.toLocaleString()} ${k}`)[0];
      $("plan").textContent = `will train: ${c.family} at ${c.resolution} px, ${c.channels} channels, batch ${c.batch_size}, ${budget}`;
      $("plan").className = "plan small";
      $("start-job").disabled = false;
    } catch (err) {
      if (seq !== planSeq) return;
      $("plan").textContent = err.message;
      $("plan").className = "plan small bad";
      $("start-job").disabled = true;
    }
  }, 250);
}

async function startJob() {
  if (!train.dataset) return;
  showError(null);
  const body = {
    ...recipeBody(), dataset: train.dataset.id, name: $("job-name").value.trim(),
    client_key: `${train.dataset.id}-${Date.now()}-${Math.random().toString(36).slice(2)}`,
  };
  $("start-job").disabled = true;
  try {
    const job = await postJSON("/api/jobs", body);
    // The form's work is done: fold it away, so the job's progress is what the page shows.
    $("step-summary").hidden = $("step-recipe").hidden = true;
    $("data-status").textContent = `Training “${job.name}” is queued. Upload more pictures to train another model.`;
    train.dataset = null;
    await loadJobs();
    openJob(job.id);
  } catch (err) { showError(err); }
  finally { $("start-job").disabled = false; }
}

// ----------------------------------------------------------------------------------------------- jobs
let jobsTimer = null;
async function loadJobs() {
  clearTimeout(jobsTimer);
  try {
    const data = await getJSON("/api/jobs");
    train.jobs = data.jobs;
    renderJobs(data);
    const live = data.jobs.filter((j) => ACTIVE.includes(j.state)).length;
    $("train-badge").hidden = !live;
    $("train-badge").textContent = `${live} live`;
    if (live || state.view === "train") jobsTimer = setTimeout(loadJobs, live ? 2000 : 5000);
  } catch { /* signed out, or the server restarts: try again later */ jobsTimer = setTimeout(loadJobs, 5000); }
}

function renderJobs(data) {
  const box = $("jobs");
  const alive = data.workers.filter((w) => w.state === "running");
  $("workers").textContent = alive.length ? `· ${alive.length} worker${alive.length === 1 ? "" : "s"} ready`
    : "· no worker running: jobs wait in the queue (start `atelier worker`)";
  if (!data.jobs.length) { box.innerHTML = '<p class="muted small">No training jobs yet.</p>'; return; }
  box.innerHTML = "";
  for (const j of data.jobs) {
    const b = el("button", `job ${j.state}` + (train.job && train.job.id === j.id ? " on" : ""));
    b.dataset.id = j.id;
    b.innerHTML = '<b></b><span class="state"></span><small></small>';
    b.querySelector("b").textContent = j.name;
    b.querySelector(".state").textContent = j.state;
    b.querySelector(".state").className = `state ${j.state}`;
    const budget = Object.entries(j.budget).map(([k, v]) => `${v.toLocaleString()} ${k}`)[0];
    b.querySelector("small").textContent = `${j.summary.family} · ${j.summary.resolution}px · step ${j.step.toLocaleString()}` +
      (j.checkpoint_step !== null && !ACTIVE.includes(j.state) ? ` · checkpoint ${j.checkpoint_step.toLocaleString()}` : "") + ` · ${budget}`;
    b.onclick = () => openJob(j.id);
    box.appendChild(b);
  }
}

function openJob(id) {
  if (train.source) train.source.close();
  train.rows = [];
  train.job = { id };
  $("job-detail").hidden = false;
  $("jd-grid").removeAttribute("src");
  $("jd-grid-cap").textContent = "No sample grid yet.";
  document.querySelectorAll(".job").forEach((b) => b.classList.toggle("on", Number(b.dataset.id) === id));
  const src = new EventSource(`/api/jobs/${id}/events`);
  train.source = src;
  src.addEventListener("update", (e) => renderJob(JSON.parse(e.data)));
  src.addEventListener("end", () => { src.close(); loadJobs(); loadModels(true); });
  src.onerror = () => { if (src.readyState === EventSource.CLOSED) loadJobs(); };
  $("job-detail").scrollIntoView({ behavior: "smooth", block: "nearest" });
}

function renderJob({ job, progress, rows, reset }) {
  train.job = job;
  train.progress = progress;
  if (reset) train.rows = [];
  train.rows = train.rows.concat(rows).slice(-4000);
  $("jd-title").textContent = job.name;
  $("jd-state").textContent = job.state;
  $("jd-state").className = `state ${job.state}`;
  $("jd-message").textContent = job.message || "";
  $("jd-stop").hidden = !["queued", "running"].includes(job.state);
  $("jd-resume").hidden = !["stopped", "interrupted", "failed"].includes(job.state);
  $("jd-more-box").hidden = ACTIVE.includes(job.state);
  const listed = state.models.some((m) => m.name === job.name);
  $("jd-open").hidden = !listed;
  // Its first checkpoint makes the run a model the studio serves: list it (at most every 5 s while it is not).
  if (!listed && progress.step > 0 && Date.now() - (train.modelsAt || 0) > 5000) {
    train.modelsAt = Date.now();
    loadModels(true);
  }
  const f = progress.fraction;
  $("jd-bar").style.width = `${Math.round((f || 0) * 100)}%`;
  const stats = $("jd-stats");
  stats.innerHTML = "";
  const rate = progress.img_per_s;
  const items = [["step", progress.step.toLocaleString()], ["images/s", rate ? Math.round(rate).toLocaleString() : "–"],
    ["seen", `${Number(progress.kimg).toFixed(1)}k images`], ["budget", progress.budget || "–"],
    ["done", f === null ? "–" : `${Math.round(f * 100)}%`], ["time left", ACTIVE.includes(job.state) ? fmtTime(progress.eta_seconds) : "–"]];
  for (const [k, v] of Object.entries(progress.losses)) items.push([k, Number(v).toFixed(3)]);
  for (const [k, v] of items) { const d = el("div"); d.appendChild(el("span", "muted", k)); d.appendChild(el("b", "", v)); stats.appendChild(d); }
  if (progress.grid && progress.grid !== train.gridName) {
    train.gridName = progress.grid;
    $("jd-grid").src = `/api/jobs/${job.id}/grid.png?g=${encodeURIComponent(progress.grid)}`;
  }
  if (progress.grid) $("jd-grid-cap").textContent = `latest sample grid: step ${Number(progress.grid.match(/\d+/)[0]).toLocaleString()}`;
  chart($("jd-loss"), train.rows, Object.keys(progress.losses).filter((k) => k.startsWith("loss")).slice(0, 4), $("jd-loss-key"));
  chart($("jd-fid"), progress.evals.filter((e) => e.metric === "fid").map((e) => ({ step: e.step, fid: e.value })), ["fid"]);
  if (["failed", "interrupted"].includes(job.state)) showLog(job.id);
}

async function showLog(id) {
  try { $("jd-log").textContent = (await getJSON(`/api/jobs/${id}/log?lines=40`)).lines.join("\n"); } catch { /* optional */ }
}

// A small line chart: one polyline per key over steps, each scaled to its own range.
function chart(svg, rows, keys, legend) {
  svg.innerHTML = "";
  if (legend) legend.innerHTML = "";
  if (rows.length < 2) {
    svg.innerHTML = '<text x="8" y="20" fill="#8a90a0" font-size="11">not enough points yet</text>';
    return;
  }
  const [w, h] = [400, Number(svg.getAttribute("viewBox").split(" ")[3])];
  const s0 = rows[0].step, s1 = rows[rows.length - 1].step || 1;
  keys.forEach((key, i) => {
    const pts = rows.filter((r) => Number.isFinite(r[key]));
    if (pts.length < 2) return;
    const lo = Math.min(...pts.map((r) => r[key])), hi = Math.max(...pts.map((r) => r[key]));
    const y = (v) => h - 6 - ((v - lo) / (hi - lo || 1)) * (h - 12);
    const x = (st) => 4 + ((st - s0) / (s1 - s0 || 1)) * (w - 8);
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("points", pts.map((r) => `${x(r.step).toFixed(1)},${y(r[key]).toFixed(1)}`).join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", COLOURS[i % COLOURS.length]);
    line.setAttribute("stroke-width", "1.5");
    line.setAttribute("vector-effect", "non-scaling-stroke");
    svg.appendChild(line);
    if (legend) {
      const k = el("span", "", `${key} ${pts[pts.length - 1][key].toFixed(3)}`);
      k.style.color = COLOURS[i % COLOURS.length];
      legend.appendChild(k);
    }
  });
}

async function jobAction(path, body) {
  if (!train.job) return;
  showError(null);
  try {
    await postJSON(`/api/jobs/${train.job.id}/${path}`, body);
    await loadJobs();
    openJob(train.job.id);
  } catch (err) { showError(err); }
}

function wireTrain() {
  viewHooks.train = async () => {
    if (!train.families.length) {
      try { train.families = (await getJSON("/api/families")).trainable; } catch { /* signed out */ }
    }
    browse(train.folder.root, train.folder.path);
    loadJobs();
  };
  $("zip-input").onchange = (e) => { const f = e.target.files[0]; if (f) uploadZip(f); e.target.value = ""; };
  $("root-select").onchange = (e) => browse(Number(e.target.value), "");
  $("use-folder").onclick = useFolder;
  $("start-job").onclick = startJob;
  for (const id of ["job-family", "job-res", "job-budget", "job-unit", "job-extra"]) $(id).addEventListener("input", refreshPlan);
  $("jd-stop").onclick = () => jobAction("stop");
  $("jd-resume").onclick = () => jobAction("resume");
  // "Continue for N more": the new budget is what the run has used so far plus N, in the unit chosen.
  $("jd-continue").onclick = () => {
    const p = train.progress || { train_seconds: 0, kimg: 0, step: 0 };
    const unit = $("jd-more-unit").value, more = Number($("jd-more").value);
    const used = unit === "minutes" ? p.train_seconds / 60 : unit === "images" ? Math.round(p.kimg * 1000) : p.step;
    jobAction("resume", { budget: { [unit]: unit === "minutes" ? used + more : Math.round(used + more) } });
  };
  $("jd-open").onclick = async () => { await loadModels(true); selectModel(train.job.name); };
}
