// atelier studio: the region editor. Open a picture (an upload, or any image from the inspector), mark a region
// with a brush, a rectangle or classes found by a served segmenter, pick an edit (restyle with a style network,
// translate with a pix2pix run) and apply: POST /api/edit returns the edited PNG, whose pixels outside the
// region are the picture's own, with provenance that records the edit. Results are kept in the gallery.
"use strict";

const editState = { file: null, name: "", w: 0, h: 0, region: "brush", rect: null, kinds: {}, segmenters: {},
                    painting: false, start: null, painted: false };

function editScale() {
  // Small sprites are shown enlarged (whole pixels) so that they can be painted; large photos fit the panel.
  const fit = 460 / Math.max(editState.w, editState.h);
  return fit >= 1 ? Math.max(1, Math.floor(fit)) : fit;
}

async function openInEditor(blob, name) {
  const bitmap = await createImageBitmap(blob);
  Object.assign(editState, { file: blob, name, w: bitmap.width, h: bitmap.height, rect: null, painted: false });
  const img = $("edit-image"), mask = $("edit-mask");
  for (const c of [img, mask]) {
    c.width = bitmap.width;
    c.height = bitmap.height;
    c.style.width = `${bitmap.width * editScale()}px`;
    c.style.height = `${bitmap.height * editScale()}px`;
  }
  img.getContext("2d").drawImage(bitmap, 0, 0);
  mask.getContext("2d").clearRect(0, 0, mask.width, mask.height);
  $("edit-empty").hidden = true;
  $("edit-name").textContent = `${name} · ${bitmap.width}×${bitmap.height}`;
  $("edit-result").removeAttribute("src");
  $("edit-result-name").textContent = "";
  $("edit-download").hidden = true;
  updateApply();
}

function maskPoint(e) {
  const r = $("edit-mask").getBoundingClientRect();
  return [(e.clientX - r.left) * editState.w / r.width, (e.clientY - r.top) * editState.h / r.height];
}

function paintAt([x, y]) {
  const ctx = $("edit-mask").getContext("2d");
  ctx.fillStyle = "#ffffff";
  ctx.beginPath();
  ctx.arc(x, y, Math.max(0.5, Number($("edit-brush").value) / 2), 0, 2 * Math.PI);
  ctx.fill();
  editState.painted = true;
}

function drawRect(a, b) {
  const ctx = $("edit-mask").getContext("2d");
  ctx.clearRect(0, 0, editState.w, editState.h);
  const x0 = Math.max(0, Math.round(Math.min(a[0], b[0]))), y0 = Math.max(0, Math.round(Math.min(a[1], b[1])));
  const x1 = Math.min(editState.w, Math.round(Math.max(a[0], b[0]))), y1 = Math.min(editState.h, Math.round(Math.max(a[1], b[1])));
  editState.rect = x1 > x0 && y1 > y0 ? [x0, y0, x1, y1] : null;
  if (editState.rect) {
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(x0, y0, x1 - x0, y1 - y0);
  }
}

function wireCanvas() {
  const mask = $("edit-mask");
  mask.addEventListener("pointerdown", (e) => {
    if (!editState.file || editState.region === "classes") return;
    mask.setPointerCapture(e.pointerId);
    editState.painting = true;
    editState.start = maskPoint(e);
    if (editState.region === "brush") paintAt(editState.start);
    updateApply();
  });
  mask.addEventListener("pointermove", (e) => {
    if (!editState.painting) return;
    if (editState.region === "brush") paintAt(maskPoint(e));
    else drawRect(editState.start, maskPoint(e));
  });
  mask.addEventListener("pointerup", (e) => {
    if (editState.painting && editState.region === "rect") drawRect(editState.start, maskPoint(e));
    editState.painting = false;
    updateApply();
  });
}

function clearMask() {
  $("edit-mask").getContext("2d").clearRect(0, 0, editState.w, editState.h);
  editState.rect = null;
  editState.painted = false;
  updateApply();
}

function setRegion(region) {
  editState.region = region;
  document.querySelectorAll("#edit-region button").forEach((b) => b.classList.toggle("on", b.dataset.region === region));
  $("edit-classes").hidden = region !== "classes";
  $("edit-brush-field").hidden = region !== "brush";
  $("edit-mask").hidden = region === "classes";
  clearMask();
}

function chosenClasses() {
  return [...document.querySelectorAll("#edit-class-list input:checked")].map((i) => i.value);
}

function renderClasses() {
  const box = $("edit-class-list");
  box.innerHTML = "";
  const seg = editState.segmenters[$("edit-segmenter").value];
  if (!seg) {
    box.appendChild(el("p", "muted small", "No segmenter is served: train one (configs/facades-seg.yaml) to pick classes."));
    return;
  }
  seg.classes.forEach((name, i) => {
    const l = el("label");
    const box2 = el("input");
    box2.type = "checkbox";
    box2.value = name;
    box2.onchange = updateApply;
    const sw = el("span", "swatch");
    sw.style.background = seg.colors[i] || "#888";
    l.append(box2, sw, document.createTextNode(name));
    box.appendChild(l);
  });
}

function regionReady() {
  if (editState.region === "brush") return editState.painted;
  if (editState.region === "rect") return !!editState.rect;
  return chosenClasses().length > 0 && !!$("edit-segmenter").value;
}

function updateApply() {
  $("edit-apply").disabled = !(editState.file && $("edit-model").value && regionReady());
}

function renderKindModels() {
  const kind = editState.kinds[$("edit-kind").value];
  const sel = $("edit-model");
  sel.innerHTML = "";
  for (const name of (kind && kind.models) || []) sel.appendChild(new Option(name, name));
  updateApply();
}

async function loadEditKinds() {
  try {
    const r = await getJSON("/api/edit/kinds");
    editState.kinds = r.kinds;
    editState.segmenters = r.segmenters;
    const kind = $("edit-kind"), keep = kind.value;
    kind.innerHTML = "";
    for (const [name, k] of Object.entries(r.kinds)) {
      const o = new Option(k.models.length ? name : `${name} (no ${k.model_kind} served)`, name);
      o.disabled = !k.models.length;
      kind.appendChild(o);
    }
    const usable = Object.keys(r.kinds).filter((k) => r.kinds[k].models.length);
    kind.value = usable.includes(keep) ? keep : (usable[0] || "");
    const seg = $("edit-segmenter");
    seg.innerHTML = "";
    for (const name of Object.keys(r.segmenters)) seg.appendChild(new Option(name, name));
    renderKindModels();
    renderClasses();
    $("edit-sub").textContent = usable.length
      ? "Mark the part to change, pick the edit. Everything outside the mark stays exactly as it was."
      : "No style network or pix2pix run is served: train one to edit regions with it.";
  } catch (err) { showError(err); }
}

async function applyEdit() {
  showError(null);
  const form = new FormData();
  form.append("file", editState.file, editState.name);
  form.append("kind", $("edit-kind").value);
  form.append("model", $("edit-model").value);
  form.append("feather", $("edit-feather").value);
  form.append("invert", $("edit-invert").checked ? "true" : "false");
  form.append("save", "true");
  if (editState.region === "brush") {
    const blob = await new Promise((ok) => $("edit-mask").toBlob(ok, "image/png"));
    form.append("mask", blob, "mask.png");
  } else if (editState.region === "rect") {
    form.append("rect", editState.rect.join(","));
  } else {
    form.append("segmenter", $("edit-segmenter").value);
    form.append("classes", chosenClasses().join(","));
  }
  $("edit-apply").disabled = true;
  try {
    const { res, ms } = await api("/api/edit", form);
    const url = URL.createObjectURL(await res.blob());
    const share = Number(res.headers.get("X-Atelier-Mask-Fraction") || 0);
    const result = $("edit-result");
    result.src = url;
    result.style.width = `${editState.w * editScale()}px`;
    $("edit-result-name").textContent = `${$("edit-kind").value} by ${$("edit-model").value} · ${(share * 100).toFixed(1)}% of the pixels`;
    $("edit-timing").textContent = `${Math.round(ms)} ms`;
    const dl = $("edit-download");
    dl.href = url;
    dl.download = `${editState.name.replace(/\.[^.]+$/, "")}-edited.png`;
    dl.hidden = false;
    const id = Number((res.headers.get("X-Atelier-Gallery-Ids") || "").split(",")[0]) || undefined;
    selectItem({ url, title: `edit of ${editState.name}`, tag: "edit", model: $("edit-model").value, galleryId: id,
                 key: "edit", value: $("edit-kind").value, fileTag: "edited",
                 extra: `${$("edit-kind").value} of ${(share * 100).toFixed(1)}% of ${editState.name} by ${$("edit-model").value}` });
    noteGalleryGrew();
  } catch (err) {
    showError(err);
  } finally {
    updateApply();
  }
}

function wireEdit() {
  viewHooks.edit = loadEditKinds;
  wireCanvas();
  $("edit-file").onchange = (e) => {
    const f = e.target.files[0];
    if (f) openInEditor(f, f.name).catch(showError);
    e.target.value = "";
  };
  document.querySelectorAll("#edit-region button").forEach((b) => { b.onclick = () => setRegion(b.dataset.region); });
  $("edit-brush").oninput = () => { $("edit-brush-out").textContent = $("edit-brush").value; };
  $("edit-feather").oninput = () => { $("edit-feather-out").textContent = $("edit-feather").value; };
  $("edit-clear").onclick = clearMask;
  $("edit-kind").onchange = renderKindModels;
  $("edit-model").onchange = updateApply;
  $("edit-segmenter").onchange = () => { renderClasses(); updateApply(); };
  $("edit-apply").onclick = applyEdit;
  $("edit-this").onclick = async () => {
    const item = state.selected;
    if (!item) return;
    try {
      const blob = await (await fetch(item.url)).blob();
      showView("edit");
      await openInEditor(blob, `${(item.fileTag || item.tag || "image").replace(/\s+/g, "-")}-${item.value ?? item.seed ?? ""}.png`);
    } catch (err) { showError(err); }
  };
}

document.addEventListener("DOMContentLoaded", wireEdit);
