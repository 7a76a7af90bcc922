// atelier studio: image tools. A translator or a style network opens in the stage with an example input from
// its own data and its result; any upload is translated or restyled there and kept in the gallery. The sidebar
// keeps the provenance check.
"use strict";

const TOOL = {
  translate: { verb: "Translate", noun: "translation", label: "⤒ Upload an image to translate" },
  stylize: { verb: "Restyle", noun: "restyling", label: "⤒ Upload a photo to restyle" },
};
const toolState = { model: null, example: null };

function capabilityOf(model) {
  return model.capabilities.find((c) => TOOL[c]);
}

async function showTool(model) {
  const cap = capabilityOf(model);
  toolState.model = model;
  toolState.example = null;
  $("stage-title").textContent = model.name;
  const detail = model.kind === "translator" ? `trained at ${model.resolution} px` : (model.style ? `style: ${model.style}` : "");
  $("stage-sub").textContent = `${model.model} ${KIND_LABEL[model.kind] || model.kind} · step ${model.step.toLocaleString()}` +
    (detail ? ` · ${detail}` : "") + ` · ${cap ? TOOL[cap].verb.toLowerCase() + " any image" : "no image tools"}`;
  $("timing").textContent = "";
  $("tool-upload-label").textContent = cap ? TOOL[cap].label : "This model takes no image";
  $("tool-input").removeAttribute("src");
  $("tool-output").removeAttribute("src");
  $("tool-input-name").textContent = $("tool-output-name").textContent = "";
  $("tool-input-empty").hidden = true;
  $("tool-example").hidden = true;
  if (!cap) return;
  try {
    const res = await fetch(`/api/models/${encodeURIComponent(model.name)}/example`);
    if (!res.ok) throw new Error("no example");
    toolState.example = new File([await res.blob()], "example.png", { type: "image/png" });
    $("tool-example").hidden = false;
    if (toolState.model === model) await runTool(toolState.example, "the example from its data");
  } catch {
    $("tool-input-empty").hidden = false;
  }
}

async function runTool(file, shownName) {
  const model = toolState.model;
  const cap = model && capabilityOf(model);
  if (!cap) return;
  showError(null);
  $("tool-input").src = URL.createObjectURL(file);
  $("tool-input-name").textContent = shownName || file.name;
  $("tool-input-empty").hidden = true;
  const form = new FormData();
  form.append("model", model.name);
  form.append("file", file);
  form.append("save", "true");
  try {
    const { res, ms } = await api(`/api/${cap}`, form);
    const url = URL.createObjectURL(await res.blob());
    const id = Number((res.headers.get("X-Atelier-Gallery-Ids") || "").split(",")[0]) || undefined;
    $("tool-output").src = url;
    $("tool-output-name").textContent = `${TOOL[cap].noun} by ${model.name}`;
    $("timing").textContent = `${Math.round(ms)} ms`;
    const item = {
      url, title: `${TOOL[cap].noun} of ${file.name}`, tag: TOOL[cap].noun, model: model.name, galleryId: id,
      key: "input", value: shownName || file.name, fileTag: TOOL[cap].noun,
      extra: `${TOOL[cap].noun} by ${model.name} (${model.model}, step ${model.step.toLocaleString()})`,
    };
    selectItem(item);
    noteGalleryGrew();
  } catch (err) {
    showError(err);
  }
}

function renderTools() {
  const box = $("tools-body");
  box.innerHTML = "";
  const tools = state.models.filter((m) => !m.error && capabilityOf(m));
  for (const m of tools) {
    const b = el("button", "ghost wide tool-link", `${TOOL[capabilityOf(m)].verb} with ${m.name}`);
    b.onclick = () => selectModel(m.name);
    box.appendChild(b);
  }
  if (!tools.length) {
    box.appendChild(el("p", "tools-empty", "No style or translation models here yet. Train one with the CLI " +
      "(atelier train-style, a pix2pix config) to restyle or translate your own images here."));
  }
  if (state.verify) {
    box.appendChild(uploader("Check an image's provenance", async (file) => {
      const form = new FormData();
      form.append("file", file);
      const { res } = await api("/api/verify", form);
      const r = await res.json();
      const wm = r.watermark || {};
      const parts = [
        r.recognised ? "✓ made by atelier" : "✗ not recognised as atelier's",
        wm.detected ? `watermark ${wm.payload || ""}${wm.run ? ` (run ${wm.run})` : ""}` : "no watermark",
        `${Object.keys(r.metadata || {}).length} metadata fields`,
        `C2PA ${(r.c2pa && r.c2pa.status) || "absent"}`,
      ];
      selectItem({ url: URL.createObjectURL(file), title: file.name, tag: "verify", model: "verified",
                   key: "checked", value: file.name, fileTag: "checked", extra: parts.join(" · ") });
    }));
  }
}

function uploader(label, handle) {
  const l = el("label", "upload");
  l.innerHTML = '<input type="file" accept="image/*"><span></span>';
  l.querySelector("span").textContent = `⤒ ${label}`;
  l.querySelector("input").onchange = (e) => {
    const f = e.target.files[0];
    if (f) handle(f).catch(showError);
    e.target.value = "";
  };
  return l;
}

function wireTools() {
  $("tool-file").onchange = (e) => {
    const f = e.target.files[0];
    if (f) runTool(f);
    e.target.value = "";
  };
  $("tool-example").onclick = () => toolState.example && runTool(toolState.example, "the example from its data");
}
