// atelier studio: the models in the sidebar. Every kind gets a thumbnail, its model card and an action: a
// generator opens the candidate grid, a translator or style network the image tool (tools.js).
"use strict";

async function loadModels(keep) {
  try {
    const { res } = await api("/api/models");
    const data = await res.json();
    state.models = data.models.concat(await foundationModels());  // t2i.js
    state.verify = data.verify;
    state.limits = data.limits;
    state.canTrain = data.training;
    $("health").className = "dot ok";
    $("health-text").textContent = `${state.models.length} model${state.models.length === 1 ? "" : "s"} · online`;
    renderModels();
    renderTools();
    if (keep && state.model && state.models.some((m) => m.name === state.model.name)) return;
    const remembered = localStorage.getItem("atelier.model");
    const usable = state.models.filter((m) => !m.error);
    const first = usable.find((m) => m.name === remembered && m.capabilities.includes("generate"))
      || usable.find((m) => m.capabilities.includes("generate")) || usable.find((m) => m.name === remembered) || usable[0];
    if (first) selectModel(first.name, false);  // in the background: the view the designer is in stays
    else $("stage-sub").textContent = "No model here yet: train one in the Train tab (or with `atelier train`).";
  } catch (err) {
    $("health").className = "dot bad";
    $("health-text").textContent = err.status === 401 ? "sign in needed" : "offline";
    showError(err);
  }
}

const KIND_LABEL = { generator: "generator", translator: "translator", stylizer: "style network", foundation: "" };

function renderModels() {
  const box = $("models");
  box.innerHTML = "";
  if (!state.models.length) {
    box.innerHTML = '<p class="muted small">No trained runs yet. Train a model from your pictures in the Train tab.</p>';
    return;
  }
  for (const m of state.models) {
    const b = el("button", "model" + (state.model && state.model.name === m.name ? " on" : ""));
    b.setAttribute("role", "option");
    b.dataset.name = m.name;
    const size = m.resolution ? ` · ${m.resolution}px` : "";
    const detail = m.error ? `cannot load: ${m.error}`
      : `${m.model} ${KIND_LABEL[m.kind] ?? m.kind}${size}` + (m.step !== null ? ` · step ${m.step.toLocaleString()}` : "");
    if (m.error) { b.disabled = true; b.title = m.error; }
    b.innerHTML = `<img alt=""><div><b></b><small></small><div class="caps"></div></div>`;
    b.querySelector("b").textContent = m.name;
    b.querySelector("small").textContent = detail;
    const caps = [...m.capabilities, ...(m.job && ["queued", "running", "stopping"].includes(m.job.state) ? ["training"] : [])];
    for (const c of caps) b.querySelector(".caps").appendChild(el("span", "cap" + (c === "training" ? " live" : ""), c));
    b.onclick = () => !m.error && selectModel(m.name);
    box.appendChild(b);
    thumbnail(m, b.querySelector("img"));
  }
}

// Generators: one sample (seed 7); translators and style networks: their latest progress grid.
async function thumbnail(m, img) {
  img.onerror = () => { img.removeAttribute("src"); img.classList.add("none"); };
  if (m.error || m.kind === "foundation") return img.classList.add("none");  // a foundation image costs seconds
  if (!m.capabilities.includes("generate")) { img.src = `/api/models/${encodeURIComponent(m.name)}/thumbnail`; return; }
  try {
    const { res } = await api("/api/generate", { model: m.name, seeds: [7], format: "json" });
    img.src = (await res.json()).images[0].image;
  } catch { img.src = `/api/models/${encodeURIComponent(m.name)}/thumbnail`; }
}

function selectModel(name, show = true) {
  state.model = state.models.find((m) => m.name === name);
  if (!state.model) return;
  localStorage.setItem("atelier.model", name);
  if (show && state.view !== "create") showView("create");
  state.a = state.b = null;
  state.label = null;
  document.querySelectorAll(".model").forEach((e) => e.classList.toggle("on", e.dataset.name === name));
  renderCard(state.model.card);
  selectItem(null);
  const t2i = state.model.capabilities.includes("t2i");
  $("t2i-controls").hidden = !t2i;
  if (t2i) {  // a foundation model (t2i.js): the grid shows its drawings, nothing is drawn until asked
    for (const id of ["strip-panel", "controls", "scale-field", "tool-panel", "latent-panel"]) $(id).hidden = true;
    $("grid").hidden = false;
    $("grid").innerHTML = "";
    return showT2I(state.model);
  }
  const generates = state.model.capabilities.includes("generate");
  for (const id of ["grid", "strip-panel", "controls", "scale-field"]) $(id).hidden = !generates;
  if (!generates) $("latent-panel").hidden = true;
  $("tool-panel").hidden = generates;
  if (!generates) return showTool(state.model);
  const classes = state.model.classes;
  $("class-field").hidden = !classes || !classes.length;
  if (classes && classes.length) {
    $("label").innerHTML = '<option value="">Any</option>' +
      classes.map((c, i) => `<option value="${i}">${String(c).replace(/</g, "&lt;")}</option>`).join("");
  }
  const res = state.model.resolution || 64;
  const scales = [1, 2, 4, 8, 16].filter((s) => res * s <= 2048);
  const pick = scales.find((s) => res * s >= 224) || scales[scales.length - 1];
  $("scale").innerHTML = scales.map((s) => `<option value="${s}" ${s === pick ? "selected" : ""}>${res * s} px</option>`).join("");
  renderPicks();
  $("grid").innerHTML = "";  // no stale candidates of another model (or an older checkpoint) to click meanwhile
  showLatentTools(state.model);
  generate();
}

// A model card is markdown written by atelier; show its headings, paragraphs and lists (text only, never HTML).
function renderCard(md) {
  $("card-panel").hidden = !md;
  const box = $("card");
  box.innerHTML = "";
  if (!md) return;
  let list = null;
  for (const line of md.split("\n")) {
    if (!line.trim() || line.startsWith("# ") || line.startsWith("![")) { list = null; continue; }
    let e;
    if (line.startsWith("## ")) { e = el("h4"); list = null; fill(e, line.slice(3)); }
    else if (line.startsWith("- ")) {
      if (!list) { list = el("ul"); box.appendChild(list); }
      e = el("li"); fill(e, line.slice(2)); list.appendChild(e); continue;
    } else { e = el("p"); list = null; fill(e, line); }
    box.appendChild(e);
  }
  // A section holding only pictures (the sample grid) would leave a bare heading.
  box.querySelectorAll("h4").forEach((h) => { if (!h.nextElementSibling || h.nextElementSibling.tagName === "H4") h.remove(); });
}

function fill(e, text) {
  text.split("`").forEach((part, i) => {
    if (i % 2) e.appendChild(el("code", "", part));
    else e.appendChild(document.createTextNode(part));
  });
}

