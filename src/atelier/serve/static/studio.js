// atelier studio: plain JavaScript over the JSON API (no framework, no CDN; works offline).
// Every picture is identified by a "recipe" (the API request that makes it) and an index into its result,
// so a download asks the server again at the chosen size and the file carries the server's provenance.
// Everything the page makes is kept in the studio's gallery ("save": true), which holds the favourites.
// This file: the shared helpers, the candidate grid, the inspector and interpolation; models.js, tools.js,
// gallery.js and train.js add the models, the image tools, the gallery and training.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  models: [], model: null, seed: 0, count: 16, psi: 1, label: null,
  selected: null, a: null, b: null, mode: "slerp", frames: 10, strength: 0.3, variationSeed: 0,
  favourites: [], favIds: new Set(), busy: 0, view: "create",
};

async function api(path, body, method) {
  const opts = body instanceof FormData ? { method: "POST", body }
    : body ? { method: method || "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) }
    : { method: method || "GET" };
  const started = performance.now();
  const res = await fetch(path, opts);
  if (!res.ok) {
    let detail = `${res.status} ${res.statusText}`;
    try {
      const j = await res.json();
      detail = typeof j.detail === "string" ? j.detail : j.detail.map((d) => `${d.loc.slice(-1)[0]}: ${d.msg}`).join("; ");
    } catch { /* not JSON */ }
    if (res.status === 401 && !path.startsWith("/api/login")) signIn();
    const err = new Error(detail);
    err.status = res.status;
    throw err;
  }
  const ms = performance.now() - started;
  return { res, ms };
}
const getJSON = async (path) => (await api(path)).res.json();
const postJSON = async (path, body) => (await api(path, body || {})).res.json();

function showError(err) {
  const box = $("error");
  box.textContent = err ? String(err.message || err) : "";
  box.hidden = !err;
}

function busy(on) {
  state.busy += on ? 1 : -1;
  $("grid").classList.toggle("busy", state.busy > 0);
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

// ------------------------------------------------------------------------------------ views, signing in
const viewHooks = {};  // view name -> function run when it is shown (train.js, gallery.js)
function showView(name) {
  state.view = name;
  document.querySelectorAll(".tabs button").forEach((b) => b.classList.toggle("on", b.dataset.view === name));
  document.querySelectorAll(".view").forEach((v) => { v.hidden = v.id !== `view-${name}`; });
  if (viewHooks[name]) viewHooks[name]();
}

function signIn() {
  const dlg = $("login");
  if (!dlg.open) dlg.showModal();
}

async function loadSession() {
  try {
    const s = await getJSON("/api/session");
    $("logout").hidden = !s.user || !s.required;
    if (s.required && !s.user) signIn();
    return s;
  } catch { return {}; }
}

// -------------------------------------------------------------------------------------------- grid
function common() {
  const body = { model: state.model.name, truncation: state.psi, ...samplingFields() };
  if (state.label !== null) body.label = state.label;
  return body;
}

function tile(item, { small = false, onclick } = {}) {
  const b = el("button", "tile");
  b.title = item.title;
  b.innerHTML = `<img alt=""><span class="seed"></span>`;
  b.querySelector("img").src = item.url;
  b.querySelector("img").alt = item.title;
  b.querySelector(".seed").textContent = item.tag;
  if (isFavourite(item)) b.insertAdjacentHTML("beforeend", '<span class="heart">♥</span>');
  b.onclick = onclick || (() => selectItem(item, b));
  b.item = item;
  if (small) b.classList.add("small");
  return b;
}

async function generate() {
  if (!state.model || !state.model.capabilities.includes("generate")) return;
  showError(null);
  const grid = $("grid");
  if (!grid.children.length) {
    for (let i = 0; i < state.count; i++) grid.insertAdjacentHTML("beforeend", '<div class="tile loading"></div>');
  }
  busy(true);
  const asked = state.model;
  try {
    const body = { ...common(), n: state.count, seed: state.seed, format: "json", save: true };
    const { res, ms } = await api("/api/generate", body);
    const data = await res.json();
    if (state.model !== asked) return;  // another model was picked meanwhile: its own grid is on its way
    grid.innerHTML = "";
    grid.dataset.count = data.images.length;
    for (const im of data.images) {
      const item = {
        url: im.image, tag: `#${im.seed}`, title: `seed ${im.seed}`, seed: im.seed, model: state.model.name,
        recipe: { path: "/api/generate", body: { ...common(), seeds: [im.seed] } }, index: 0, psi: state.psi,
        galleryId: im.gallery_id,
      };
      const t = tile(item);
      grid.appendChild(t);
      if (state.selected && state.selected.seed === im.seed && state.selected.recipe && state.selected.recipe.path === "/api/generate") t.classList.add("on");
    }
    const last = state.seed + data.images.length - 1;
    $("stage-title").textContent = state.model.name;
    $("stage-sub").textContent = `Seeds ${state.seed}–${last} · ψ ${state.psi.toFixed(2)}` +
      (state.label !== null ? ` · class ${state.model.classes[state.label]}` : "") + " · click a candidate to vary it";
    $("timing").textContent = `${data.images.length} images · ${Math.round(ms)} ms`;
    noteGalleryGrew();
  } catch (err) {
    showError(err);
  } finally {
    busy(false);
  }
}

// ---------------------------------------------------------------------------------------- inspector
function selectItem(item, e) {
  state.selected = item;
  document.querySelectorAll(".tile.on").forEach((t) => t.classList.remove("on"));
  if (e) e.classList.add("on");
  $("inspector-empty").hidden = !!item;
  $("inspector-body").hidden = !item;
  if (!item) return;
  $("preview").src = item.url;
  $("sel-key").textContent = item.key || "seed";
  $("sel-seed").textContent = item.value !== undefined ? item.value : item.seed;
  $("sel-extra").textContent = item.extra || (item.psi !== undefined ? `ψ ${item.psi.toFixed(2)}` : "");
  showFavourite(item);
  const seedOnly = item.recipe && item.recipe.path === "/api/generate";
  $("set-a").disabled = $("set-b").disabled = !seedOnly;
  // A gallery image re-opens its settings instead; an upload's result has no seed to interpolate from.
  $("set-a").hidden = $("set-b").hidden = !!item.record || !item.recipe;
  $("reopen").hidden = !item.record;
  const varies = item.seed !== undefined && item.recipe && !item.record;
  $("var-section").hidden = !varies;
  if (seedOnly) latentFromItem(item);
  if (varies) variations(item);
  else $("variations").innerHTML = "";
}

async function variations(item) {
  const box = $("variations");
  const body = { ...item.recipe.body, seed: item.seed, n: 8, strength: state.strength, variation_seed: state.variationSeed };
  delete body.seeds;
  if (item.recipe.path !== "/api/generate") { box.innerHTML = ""; return; }
  try {
    const { res } = await api("/api/variations", { ...body, format: "json", save: true });
    const data = await res.json();
    box.innerHTML = "";
    data.images.forEach((im, i) => {
      const v = {
        url: im.image, tag: `~${i}`, title: `variation ${i} of seed ${item.seed}`, seed: item.seed, model: item.model,
        recipe: { path: "/api/variations", body }, index: i, psi: item.psi, galleryId: im.gallery_id,
        extra: `variation ${i} · strength ${state.strength.toFixed(2)}`,
      };
      box.appendChild(tile(v, { onclick: () => { state.selected = v; showPreview(v); } }));
    });
  } catch (err) {
    showError(err);
  }
}

function showPreview(item) {
  $("preview").src = item.url;
  $("sel-extra").textContent = item.extra || "";
  showFavourite(item);
}

function showFavourite(item) {
  const on = isFavourite(item);
  $("fav").classList.toggle("on", on);
  $("fav").textContent = on ? "♥ Favourite" : "♡ Favourite";
  $("fav").disabled = !item.galleryId;
}

function saveAs(url, name) {
  const a = el("a");
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
}

async function download(item) {
  if (!item) return;
  try {
    let url = item.url;
    const scale = Number($("scale").value) || 1;
    if (item.recipe && !item.record) {
      const { res } = await api(item.recipe.path, { ...item.recipe.body, format: "json", scale });
      url = (await res.json()).images[item.index].image;
    }
    const what = item.recipe && item.recipe.path === "/api/variations" ? `-var${item.index}`
      : item.recipe && item.recipe.path === "/api/interpolate" ? `-frame${item.index}` : "";
    const id = item.seed !== undefined ? `seed${item.seed}` : (item.fileTag || "image");
    saveAs(url, `atelier-${item.model || "image"}-${id}${what}.png`);
  } catch (err) {
    showError(err);
  }
}

// ------------------------------------------------------------------------------------- interpolation
function renderPicks() {
  $("pick-a").querySelector("b").textContent = state.a === null ? "–" : `#${state.a}`;
  $("pick-b").querySelector("b").textContent = state.b === null ? "–" : `#${state.b}`;
}

async function interpolate() {
  renderPicks();
  if (state.a === null || state.b === null || !state.model) return;
  const body = { ...common(), seed_a: state.a, seed_b: state.b, frames: state.frames, mode: state.mode };
  try {
    const { res } = await api("/api/interpolate", { ...body, format: "json", save: true });
    const data = await res.json();
    const box = $("strip");
    box.style.setProperty("--frames", data.images.length);
    box.innerHTML = "";
    data.images.forEach((im, i) => {
      box.appendChild(tile({
        url: im.image, tag: `${i}`, title: `frame ${i} from seed ${state.a} to ${state.b}`, seed: `${state.a}→${state.b}`,
        model: state.model.name, recipe: { path: "/api/interpolate", body }, index: i, psi: state.psi,
        galleryId: im.gallery_id, extra: `frame ${i + 1}/${data.images.length} · ${state.mode}`,
      }));
    });
  } catch (err) {
    showError(err);
  }
}

// ------------------------------------------------------------------------------------------- wiring
function setSeed(v) {
  state.seed = Math.max(0, Math.min(2147483647 - state.count, Math.floor(Number(v) || 0)));
  $("seed").value = state.seed;
}

function wire() {
  document.querySelectorAll(".tabs button").forEach((b) => b.onclick = () => showView(b.dataset.view));
  $("generate").onclick = generate;
  $("seed").onchange = (e) => { setSeed(e.target.value); generate(); };
  $("shuffle").onclick = () => { setSeed(Math.floor(Math.random() * 100000)); generate(); };
  $("prev").onclick = () => { setSeed(state.seed - state.count); generate(); };
  $("next").onclick = () => { setSeed(state.seed + state.count); generate(); };
  document.querySelectorAll("#count button").forEach((b) => b.onclick = () => {
    document.querySelectorAll("#count button").forEach((x) => x.classList.toggle("on", x === b));
    state.count = Number(b.dataset.n);
    $("grid").innerHTML = "";
    generate();
  });
  let psiTimer;
  $("psi").oninput = (e) => {
    state.psi = Number(e.target.value);
    $("psi-out").textContent = state.psi.toFixed(2);
    clearTimeout(psiTimer);
    psiTimer = setTimeout(() => { generate(); interpolate(); drawDirections(); }, 120);
  };
  $("label").onchange = (e) => { state.label = e.target.value === "" ? null : Number(e.target.value); generate(); };
  $("strength").oninput = (e) => {
    state.strength = Number(e.target.value);
    $("strength-out").textContent = state.strength.toFixed(2);
  };
  $("strength").onchange = () => state.selected && state.selected.recipe && variations(baseOf(state.selected));
  $("more-variations").onclick = () => { state.variationSeed += 1; if (state.selected) variations(baseOf(state.selected)); };
  $("fav").onclick = () => toggleFavourite(state.selected);
  $("download").onclick = () => download(state.selected);
  $("set-a").onclick = () => { state.a = state.selected.seed; interpolate(); };
  $("set-b").onclick = () => { state.b = state.selected.seed; interpolate(); };
  document.querySelectorAll("#mode button").forEach((b) => b.onclick = () => {
    document.querySelectorAll("#mode button").forEach((x) => x.classList.toggle("on", x === b));
    state.mode = b.dataset.mode;
    interpolate();
  });
  $("frames").oninput = (e) => { state.frames = Number(e.target.value); $("frames-out").textContent = state.frames; };
  $("frames").onchange = interpolate;
  $("login-form").onsubmit = async (e) => {
    e.preventDefault();
    try {
      const user = $("login-user").value.trim();
      await postJSON("/api/login", { user: user || null, password: $("login-password").value });
      location.reload();
    } catch (err) { $("login-error").textContent = err.message; $("login-error").hidden = false; }
  };
  $("logout").onclick = async () => { await postJSON("/api/logout"); location.reload(); };
  document.addEventListener("keydown", (e) => {
    if (["INPUT", "SELECT", "TEXTAREA"].includes(e.target.tagName) || e.metaKey || e.ctrlKey || state.view !== "create") return;
    if (e.key === "g") generate();
    else if (e.key === "r") $("shuffle").click();
    else if (e.key === "ArrowRight") $("next").click();
    else if (e.key === "ArrowLeft") $("prev").click();
    else if (e.key === "f") toggleFavourite(state.selected);
    else if (e.key === "d") download(state.selected);
  });
}

// The seed's own item (variations are always of the seed, not of a variation).
function baseOf(item) {
  return { ...item, recipe: { path: "/api/generate", body: { ...common(), seeds: [item.seed] } }, index: 0 };
}

document.addEventListener("DOMContentLoaded", async () => {
  wire();
  wireTools();
  wireGallery();
  wireTrain();
  await loadSession();
  loadFavourites();
  await loadModels();
  loadJobs();
});
