// atelier studio: the gallery (everything made here, kept by the server), favourites, collections, downloading
// a selection as a zip, and re-opening an image's settings to make variations of it.
"use strict";

const gal = { items: [], selected: new Set(), total: 0, grew: false };

// ---------------------------------------------------------------------------------------- favourites
const isFavourite = (item) => !!(item && item.galleryId && state.favIds.has(item.galleryId));

function recordItem(rec) {
  const body = rec.settings.body || {};
  const what = rec.workflow.replace("studio-", "");
  const made = { translate: "translation", stylize: "restyling", interpolate: "frame" }[what] || what;
  const tag = rec.seed !== null && rec.seed !== undefined ? `#${rec.seed}` : made;
  return {
    url: rec.url, tag, title: `${rec.model} · ${what}${rec.seed !== null ? ` · seed ${rec.seed}` : ""}`, model: rec.model,
    seed: rec.seed === null ? undefined : rec.seed, galleryId: rec.id, record: rec,
    key: rec.seed !== null ? "seed" : "image", value: rec.seed !== null ? rec.seed : `#${rec.id}`, fileTag: `g${rec.id}`,
    extra: `${what} · ${rec.model} step ${rec.step ?? "?"}` + (body.truncation !== undefined ? ` · ψ ${Number(body.truncation).toFixed(2)}` : "")
      + (body.input ? ` · input ${body.input}` : ""),
  };
}

async function loadFavourites() {
  try {
    const data = await getJSON("/api/gallery?favourite=true&limit=200");
    state.favourites = data.images.map(recordItem);
    state.favIds = new Set(data.images.map((r) => r.id));
  } catch { /* shown by the models' error */ }
  renderFavourites();
}

async function toggleFavourite(item) {
  if (!item || !item.galleryId) return;
  try {
    await postJSON(`/api/gallery/${item.galleryId}/favourite`, { favourite: !isFavourite(item) });
    await loadFavourites();
  } catch (err) { return showError(err); }
  if (state.selected === item) showFavourite(item);
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
    box.innerHTML = '<p class="muted small">Press ♡ on an image to keep it here. Favourites are kept in the studio\'s gallery.</p>';
    return;
  }
  box.innerHTML = "";
  for (const f of state.favourites) {
    const wrap = el("div", "fav-item");
    wrap.appendChild(tile(f, { onclick: () => selectItem(f) }));
    const rm = el("button", "remove", "×");
    rm.title = "Remove from favourites";
    rm.onclick = () => toggleFavourite(f);
    wrap.appendChild(rm);
    box.appendChild(wrap);
  }
}

// ------------------------------------------------------------------------------------------- gallery
function noteGalleryGrew() {
  gal.grew = true;
  if (state.view === "gallery") loadGallery();
}

function galleryQuery(before) {
  const q = new URLSearchParams({ limit: "60" });
  const model = $("gal-model").value;
  const filter = $("gal-filter").value;
  if (model) q.set("model", model);
  if (filter === "fav") q.set("favourite", "true");
  else if (filter.startsWith("c")) q.set("collection", filter.slice(1));
  if (before) q.set("before", before);
  return `/api/gallery?${q}`;
}

async function loadGallery(more) {
  try {
    const before = more && gal.items.length ? gal.items[gal.items.length - 1].id : null;
    const data = await getJSON(galleryQuery(before));
    gal.items = more ? gal.items.concat(data.images) : data.images;
    gal.total = data.total;
    gal.grew = false;
    renderGalleryFilters(data);
    renderGallery();
  } catch (err) { showError(err); }
}

function renderGalleryFilters(data) {
  const model = $("gal-model").value;
  $("gal-model").innerHTML = '<option value="">All models</option>' +
    data.models.map((m) => `<option>${m.replace(/</g, "&lt;")}</option>`).join("");
  $("gal-model").value = data.models.includes(model) ? model : "";
  const filter = $("gal-filter").value;
  $("gal-filter").innerHTML = '<option value="">Everything</option><option value="fav">Favourites</option>' +
    data.collections.map((c) => `<option value="c${c.id}">Collection: ${c.name.replace(/</g, "&lt;")} (${c.size})</option>`).join("");
  $("gal-filter").value = [...$("gal-filter").options].some((o) => o.value === filter) ? filter : "";
  $("gal-collect").innerHTML = '<option value="">Add to collection…</option>' +
    data.collections.map((c) => `<option value="${c.id}">${c.name.replace(/</g, "&lt;")}</option>`).join("") +
    '<option value="new">New collection…</option>';
}

function renderGallery() {
  const box = $("gallery");
  box.innerHTML = "";
  for (const rec of gal.items) {
    const item = recordItem(rec);
    const t = tile(item, { onclick: () => { selectItem(item, t); } });
    const check = el("input", "pick-box");
    check.type = "checkbox";
    check.title = "Select for download or a collection";
    check.checked = gal.selected.has(rec.id);
    check.onclick = (e) => { e.stopPropagation(); if (check.checked) gal.selected.add(rec.id); else gal.selected.delete(rec.id); gallerySelection(); };
    t.appendChild(check);
    t.classList.toggle("picked", check.checked);
    box.appendChild(t);
  }
  if (!gal.items.length) box.innerHTML = '<p class="muted">Nothing here yet: images you make in Create are kept here.</p>';
  $("gal-more").hidden = gal.items.length >= gal.total;
  gallerySelection();
}

function gallerySelection() {
  const n = gal.selected.size;
  $("gallery-sub").textContent = `${gal.total.toLocaleString()} image${gal.total === 1 ? "" : "s"}` + (n ? ` · ${n} selected` : " · tick images to download them or collect them");
  $("gal-download").disabled = !n;
  $("gal-download").textContent = n ? `↓ Download ${n} (.zip)` : "↓ Download selection (.zip)";
  document.querySelectorAll("#gallery .tile").forEach((t) => t.classList.toggle("picked", gal.selected.has(t.item.galleryId)));
  $("gallery-badge").hidden = true;
}

async function downloadSelection() {
  try {
    const { res } = await api("/api/gallery/download", { ids: [...gal.selected] });
    const name = (res.headers.get("Content-Disposition") || "").match(/filename="([^"]+)"/);
    saveAs(URL.createObjectURL(await res.blob()), name ? name[1] : "atelier-gallery.zip");
  } catch (err) { showError(err); }
}

async function collect(value) {
  if (!value || !gal.selected.size) return;
  try {
    let id = value;
    if (value === "new") {
      const name = prompt("Name of the new collection");
      if (!name) return;
      id = (await postJSON("/api/collections", { name })).id;
    }
    const r = await postJSON(`/api/collections/${id}/images`, { ids: [...gal.selected] });
    showError(null);
    $("gallery-sub").textContent = `added ${r.added} to “${r.name}”`;
    loadGallery();
  } catch (err) { showError(err); }
}

// Re-open an image's settings in Create: the same model, seed, ψ and class (and the A/B pair of an
// interpolation), so a designer can make variations of it.
function reopen(item) {
  const rec = item && item.record;
  if (!rec) return;
  const model = state.models.find((m) => m.name === rec.model);
  if (!model) return showError(new Error(`model ${rec.model} is not served here any more`));
  const body = rec.settings.body || {};
  selectModel(rec.model);
  if (model.capabilities.includes("t2i")) return fillT2I(body);  // t2i.js: its prompt, settings and seed
  if (!model.capabilities.includes("generate")) return;
  state.psi = body.truncation ?? 1;
  $("psi").value = state.psi;
  $("psi-out").textContent = state.psi.toFixed(2);
  state.label = body.label ?? null;
  $("label").value = state.label === null ? "" : String(state.label);
  const seed = body.seeds ? body.seeds[0] : body.seed !== undefined ? body.seed : body.seed_a;
  setSeed(seed);
  if (body.strength !== undefined) { state.strength = body.strength; $("strength").value = body.strength; $("strength-out").textContent = body.strength.toFixed(2); }
  if (body.variation_seed !== undefined) state.variationSeed = body.variation_seed;
  if (body.seed_b !== undefined) { state.a = body.seed_a; state.b = body.seed_b; state.frames = body.frames; state.mode = body.mode; interpolate(); }
  generate().then(() => {
    const t = [...document.querySelectorAll("#grid .tile")].find((x) => x.item && x.item.seed === seed);
    if (t) selectItem(t.item, t);
  });
}

function wireGallery() {
  viewHooks.gallery = () => loadGallery();
  $("gal-model").onchange = $("gal-filter").onchange = () => { gal.selected.clear(); loadGallery(); };
  $("gal-more").onclick = () => loadGallery(true);
  $("gal-all").onclick = () => { gal.items.forEach((r) => gal.selected.add(r.id)); renderGallery(); };
  $("gal-download").onclick = downloadSelection;
  $("gal-collect").onchange = (e) => { collect(e.target.value); e.target.value = ""; };
  $("reopen").onclick = () => reopen(state.selected);
}
