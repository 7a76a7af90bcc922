// atelier studio: plain JavaScript over the JSON API (no framework, no CDN; works offline).
// Every picture is identified by a "recipe" (the API request that makes it) and an index into its result,
// so a download asks the server again at the chosen size and the file carries the server's provenance.
"use strict";

const $ = (id) => document.getElementById(id);
const FAV_KEY = "atelier.favourites.v1";
const state = {
  models: [], model: null, seed: 0, count: 16, psi: 1, label: null,
  selected: null, a: null, b: null, mode: "slerp", frames: 10, strength: 0.3, variationSeed: 0,
  favourites: loadFavourites(), busy: 0,
};

function loadFavourites() {
  try { return JSON.parse(localStorage.getItem(FAV_KEY)) || []; } catch { return []; }
}
function saveFavourites() {
  localStorage.setItem(FAV_KEY, JSON.stringify(state.favourites));
  renderFavourites();
}

async function api(path, body) {
  const opts = body instanceof FormData ? { method: "POST", body }
    : body ? { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) } : {};
  const started = performance.now();
  const res = await fetch(path, opts);
  if (!res.ok) {
    let detail = `${res.status} ${res.statusText}`;
    try {
      const j = await res.json();
      detail = typeof j.detail === "string" ? j.detail : j.detail.map((d) => `${d.loc.slice(-1)[0]}: ${d.msg}`).join("; ");
    } catch { /* not JSON */ }
    throw new Error(detail);
  }
  const ms = performance.now() - started;
  return { res, ms };
}

function showError(err) {
  const box = $("error");
  box.textContent = err ? String(err.message || err) : "";
  box.hidden = !err;
}

function busy(on) {
  state.busy += on ? 1 : -1;
  $("grid").classList.toggle("busy", state.busy > 0);
}

// ------------------------------------------------------------------------------------------ models
async function loadModels() {
  try {
    const { res } = await api("/api/models");
    const data = await res.json();
    state.models = data.models;
    state.verify = data.verify;
    state.limits = data.limits;
    $("health").className = "dot ok";
    $("health-text").textContent = `${data.models.length} model${data.models.length === 1 ? "" : "s"} · online`;
    renderModels();
    renderTools();
    const generators = state.models.filter((m) => m.capabilities.includes("generate"));
    const remembered = localStorage.getItem("atelier.model");
    const first = generators.find((m) => m.name === remembered) || generators[0];
    if (first) selectModel(first.name);
    else $("stage-sub").textContent = "No generator in this runs folder yet: train one with `atelier train`.";
  } catch (err) {
    $("health").className = "dot bad";
    $("health-text").textContent = "offline";
    showError(err);
  }
}

function renderModels() {
  const box = $("models");
  box.innerHTML = "";
  if (!state.models.length) {
    box.innerHTML = '<p class="muted small">No trained runs found. Start the studio with <code>--runs</code> pointing at your run folders.</p>';
    return;
  }
  for (const m of state.models) {
    const b = document.createElement("button");
    b.className = "model" + (state.model && state.model.name === m.name ? " on" : "");
    b.setAttribute("role", "option");
    b.dataset.name = m.name;
    const detail = m.error ? `cannot load: ${m.error}`
      : m.resolution ? `${m.model} · ${m.resolution}px · step ${m.step.toLocaleString()}` : m.kind;
    if (m.error) { b.disabled = true; b.title = m.error; }
    b.innerHTML = `<img alt=""><div><b></b><small></small><div class="caps"></div></div>`;
    b.querySelector("b").textContent = m.name;
    b.querySelector("small").textContent = detail;
    for (const c of m.capabilities) {
      const s = document.createElement("span");
      s.className = "cap"; s.textContent = c;
      b.querySelector(".caps").appendChild(s);
    }
    b.onclick = () => m.capabilities.includes("generate") && selectModel(m.name);
    box.appendChild(b);
    if (m.capabilities.includes("generate")) thumbnail(m, b.querySelector("img"));
  }
}

async function thumbnail(m, img) {
  try {
    const { res } = await api("/api/generate", { model: m.name, seeds: [7], format: "json" });
    img.src = (await res.json()).images[0].image;
  } catch { /* a thumbnail is decoration */ }
}

function selectModel(name) {
  state.model = state.models.find((m) => m.name === name);
  localStorage.setItem("atelier.model", name);
  state.a = state.b = null;
  state.label = null;
  document.querySelectorAll(".model").forEach((el) => el.classList.toggle("on", el.dataset.name === name));
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
  selectItem(null);
  renderPicks();
  renderCard(state.model.card);
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
    let el;
    if (line.startsWith("## ")) { el = document.createElement("h4"); list = null; fill(el, line.slice(3)); }
    else if (line.startsWith("- ")) {
      if (!list) { list = document.createElement("ul"); box.appendChild(list); }
      el = document.createElement("li"); fill(el, line.slice(2)); list.appendChild(el); continue;
    } else { el = document.createElement("p"); list = null; fill(el, line); }
    box.appendChild(el);
  }
  // A section holding only pictures (the sample grid) would leave a bare heading.
  box.querySelectorAll("h4").forEach((h) => { if (!h.nextElementSibling || h.nextElementSibling.tagName === "H4") h.remove(); });
}

function fill(el, text) {
  text.split("`").forEach((part, i) => {
    if (i % 2) { const c = document.createElement("code"); c.textContent = part; el.appendChild(c); }
    else el.appendChild(document.createTextNode(part));
  });
}

// -------------------------------------------------------------------------------------------- grid
function common() {
  const body = { model: state.model.name, truncation: state.psi };
  if (state.label !== null) body.label = state.label;
  return body;
}

function tile(item, { small = false, onclick } = {}) {
  const b = document.createElement("button");
  b.className = "tile";
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
  if (!state.model) return;
  showError(null);
  const grid = $("grid");
  if (!grid.children.length) {
    for (let i = 0; i < state.count; i++) grid.insertAdjacentHTML("beforeend", '<div class="tile loading"></div>');
  }
  busy(true);
  try {
    const body = { ...common(), n: state.count, seed: state.seed, format: "json" };
    const { res, ms } = await api("/api/generate", body);
    const data = await res.json();
    grid.innerHTML = "";
    grid.dataset.count = data.images.length;
    for (const im of data.images) {
      const item = {
        url: im.image, tag: `#${im.seed}`, title: `seed ${im.seed}`, seed: im.seed, model: state.model.name,
        recipe: { path: "/api/generate", body: { ...common(), seeds: [im.seed] } }, index: 0, psi: state.psi,
      };
      const t = tile(item);
      grid.appendChild(t);
      if (state.selected && state.selected.seed === im.seed && state.selected.recipe.path === "/api/generate") t.classList.add("on");
    }
    const last = state.seed + data.images.length - 1;
    $("stage-title").textContent = state.model.name;
    $("stage-sub").textContent = `Seeds ${state.seed}–${last} · ψ ${state.psi.toFixed(2)}` +
      (state.label !== null ? ` · class ${state.model.classes[state.label]}` : "") + " · click a candidate to vary it";
    $("timing").textContent = `${data.images.length} images · ${Math.round(ms)} ms`;
  } catch (err) {
    showError(err);
  } finally {
    busy(false);
  }
}

// ---------------------------------------------------------------------------------------- inspector
function selectItem(item, el) {
  state.selected = item;
  document.querySelectorAll(".tile.on").forEach((t) => t.classList.remove("on"));
  if (el) el.classList.add("on");
  $("inspector-empty").hidden = !!item;
  $("inspector-body").hidden = !item;
  if (!item) return;
  $("preview").src = item.url;
  $("sel-seed").textContent = item.seed !== undefined ? item.seed : "upload";
  $("sel-extra").textContent = item.extra || (item.psi !== undefined ? `ψ ${item.psi.toFixed(2)}` : "");
  $("fav").classList.toggle("on", isFavourite(item));
  $("fav").textContent = isFavourite(item) ? "♥ Favourite" : "♡ Favourite";
  const seedOnly = item.recipe && item.recipe.path === "/api/generate";
  $("set-a").disabled = $("set-b").disabled = !seedOnly;
  if (item.seed !== undefined && item.recipe) variations(item);
  else $("variations").innerHTML = "";
}

async function variations(item) {
  const box = $("variations");
  const body = { ...item.recipe.body, seed: item.seed, n: 8, strength: state.strength, variation_seed: state.variationSeed };
  delete body.seeds;
  if (item.recipe.path !== "/api/generate") { box.innerHTML = ""; return; }
  try {
    const { res } = await api("/api/variations", { ...body, format: "json" });
    const data = await res.json();
    box.innerHTML = "";
    data.images.forEach((im, i) => {
      const v = {
        url: im.image, tag: `~${i}`, title: `variation ${i} of seed ${item.seed}`, seed: item.seed, model: item.model,
        recipe: { path: "/api/variations", body }, index: i, psi: item.psi,
        extra: `variation ${i} · strength ${state.strength.toFixed(2)}`,
      };
      const t = tile(v, { onclick: () => { state.selected = v; showPreview(v); } });
      box.appendChild(t);
    });
  } catch (err) {
    showError(err);
  }
}

function showPreview(item) {
  $("preview").src = item.url;
  $("sel-extra").textContent = item.extra || "";
  $("fav").classList.toggle("on", isFavourite(item));
  $("fav").textContent = isFavourite(item) ? "♥ Favourite" : "♡ Favourite";
}

async function download(item) {
  if (!item) return;
  try {
    let url = item.url;
    const scale = Number($("scale").value) || 1;
    if (item.recipe) {
      const { res } = await api(item.recipe.path, { ...item.recipe.body, format: "json", scale });
      url = (await res.json()).images[item.index].image;
    }
    const a = document.createElement("a");
    a.href = url;
    const what = item.recipe && item.recipe.path === "/api/variations" ? `-var${item.index}`
      : item.recipe && item.recipe.path === "/api/interpolate" ? `-frame${item.index}` : "";
    a.download = `atelier-${item.model || "image"}-seed${item.seed !== undefined ? item.seed : "upload"}${what}.png`;
    document.body.appendChild(a);
    a.click();
    a.remove();
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
    const { res } = await api("/api/interpolate", { ...body, format: "json" });
    const data = await res.json();
    const box = $("strip");
    box.style.setProperty("--frames", data.images.length);
    box.innerHTML = "";
    data.images.forEach((im, i) => {
      const item = {
        url: im.image, tag: `${i}`, title: `frame ${i} from seed ${state.a} to ${state.b}`, seed: `${state.a}→${state.b}`,
        model: state.model.name, recipe: { path: "/api/interpolate", body }, index: i, psi: state.psi,
        extra: `frame ${i + 1}/${data.images.length} · ${state.mode}`,
      };
      box.appendChild(tile(item));
    });
  } catch (err) {
    showError(err);
  }
}

// ---------------------------------------------------------------------------------------- favourites
const favKey = (item) => JSON.stringify([item.recipe ? item.recipe.path : "upload", item.recipe ? item.recipe.body : item.url.slice(-32), item.index]);
const isFavourite = (item) => state.favourites.some((f) => f.key === favKey(item));

function toggleFavourite(item) {
  if (!item) return;
  const key = favKey(item);
  if (isFavourite(item)) state.favourites = state.favourites.filter((f) => f.key !== key);
  else state.favourites.unshift({ key, ...item });
  saveFavourites();
  showPreview(item);
  for (const t of document.querySelectorAll(".tile")) {
    if (!t.item || t.closest(".fav-item")) continue;
    const heart = t.querySelector(".heart");
    if (isFavourite(t.item) && !heart) t.insertAdjacentHTML("beforeend", '<span class="heart">♥</span>');
    else if (!isFavourite(t.item) && heart) heart.remove();
  }
}

function renderFavourites() {
  const box = $("favourites");
  $("fav-count").textContent = state.favourites.length;
  if (!state.favourites.length) {
    box.innerHTML = '<p class="muted small">Press ♡ on an image to keep it here. Favourites stay in this browser.</p>';
    return;
  }
  box.innerHTML = "";
  for (const f of state.favourites) {
    const wrap = document.createElement("div");
    wrap.className = "fav-item";
    wrap.appendChild(tile(f, { onclick: () => selectItem(f) }));
    const rm = document.createElement("button");
    rm.className = "remove"; rm.textContent = "×"; rm.title = "Remove from favourites";
    rm.onclick = () => { state.favourites = state.favourites.filter((x) => x.key !== f.key); saveFavourites(); };
    wrap.appendChild(rm);
    box.appendChild(wrap);
  }
}

// ----------------------------------------------------------------------------------- image tools
function renderTools() {
  const box = $("tools-body");
  box.innerHTML = "";
  const tools = [["stylize", "Stylize a photo"], ["translate", "Translate an image"]];
  let any = false;
  for (const [cap, label] of tools) {
    for (const m of state.models.filter((x) => x.capabilities.includes(cap))) {
      any = true;
      box.appendChild(uploader(`${label} · ${m.name}`, (file) => {
        const form = new FormData();
        form.append("model", m.name);
        form.append("file", file);
        return api(`/api/${cap}`, form).then(async ({ res }) => {
          const url = URL.createObjectURL(await res.blob());
          selectItem({ url, title: file.name, tag: cap, model: m.name, extra: `${cap} of ${file.name}` });
        });
      }));
    }
  }
  if (!any) {
    box.insertAdjacentHTML("beforeend", '<p class="tools-empty">No style or translation models in this runs folder. ' +
      "Train one and restart the studio to restyle your own images here.</p>");
  }
  if (state.verify) {
    box.appendChild(uploader("Check an image's provenance", (file) => {
      const form = new FormData();
      form.append("file", file);
      return api("/api/verify", form).then(async ({ res }) => {
        const r = await res.json();
        const wm = r.watermark || {};
        const parts = [
          r.recognised ? "✓ made by atelier" : "✗ not recognised as atelier's",
          wm.detected ? `watermark ${wm.payload || ""}${wm.run ? ` (run ${wm.run})` : ""}` : "no watermark",
          `${Object.keys(r.metadata || {}).length} metadata fields`,
          `C2PA ${(r.c2pa && r.c2pa.status) || "absent"}`,
        ];
        selectItem({ url: URL.createObjectURL(file), title: file.name, tag: "verify", model: "verified",
                     extra: parts.join(" · ") });
      });
    }));
  }
}

function uploader(label, handle) {
  const l = document.createElement("label");
  l.className = "upload";
  l.innerHTML = '<input type="file" accept="image/*"><span></span>';
  l.querySelector("span").textContent = `⤒ ${label}`;
  l.querySelector("input").onchange = (e) => {
    const f = e.target.files[0];
    if (f) handle(f).catch(showError);
    e.target.value = "";
  };
  return l;
}

// ------------------------------------------------------------------------------------------- wiring
function setSeed(v) {
  state.seed = Math.max(0, Math.min(2147483647 - state.count, Math.floor(Number(v) || 0)));
  $("seed").value = state.seed;
}

function wire() {
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
    psiTimer = setTimeout(() => { generate(); interpolate(); }, 120);
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
  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "INPUT" || e.target.tagName === "SELECT" || e.metaKey || e.ctrlKey) return;
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

wire();
renderFavourites();
loadModels();
