// atelier studio: the latent tools of the Create view. Direction sliders move the selected candidate (or an
// uploaded image projected into the model) along the model's strongest latent directions; a StyleGAN-type model
// also gets the style-mixing grid; a diffusion model gets its sampler, steps and guidance controls.
"use strict";

const SLIDERS = 5;
const latentState = { method: "sefa", seed: null, latent: null, label: null, amounts: new Array(SLIDERS).fill(0),
  timer: null, directions: [] };

function seedList(text) {
  // "0-3" or "1,5,9" -> seeds (at most 8, as the server allows)
  const out = [];
  for (const part of String(text).split(",")) {
    const m = part.trim().match(/^(\d+)(?:-(\d+))?$/);
    if (!m) continue;
    const a = Number(m[1]), b = m[2] === undefined ? a : Number(m[2]);
    for (let s = a; s <= b && out.length < 8; s++) out.push(s);
  }
  return out;
}

// Called by selectModel (models.js) for every generator.
function showLatentTools(m) {
  const diffusion = Array.isArray(m.samplers) && m.samplers.length > 0;
  $("diffusion-fields").hidden = !diffusion;
  $("psi-field").hidden = diffusion;  // no mapping network, no latent to truncate
  if (diffusion) {
    $("dm-sampler").innerHTML = m.samplers.map((s) => `<option ${s === m.sampler ? "selected" : ""}>${s}</option>`).join("");
    $("dm-steps").value = m.steps || 20;
    $("dm-steps-out").textContent = $("dm-steps").value;
    $("dm-guidance-field").hidden = !m.conditional;
    $("dm-guidance").value = m.guidance ?? 1;
    $("dm-guidance-out").textContent = Number($("dm-guidance").value).toFixed(1);
  }
  // Directions and mixing move a GAN's latent; a diffusion model's "latent" is the starting noise.
  $("latent-panel").hidden = diffusion;
  latentState.seed = latentState.latent = null;
  latentState.amounts.fill(0);
  $("dir-image").removeAttribute("src");
  $("dir-caption").textContent = "Click a candidate, or project an image.";
  $("dir-method").querySelector('option[value="class"]').disabled = !m.conditional;
  if ($("dir-method").value === "class" && !m.conditional) $("dir-method").value = "sefa";
  latentState.method = $("dir-method").value;
  const mixing = m.mixing;
  $("mix-box").hidden = diffusion || !mixing;
  if (mixing) {
    $("mix-crossover").innerHTML = mixing.sizes.map((s) =>
      `<option value="${s}" ${s === mixing.default ? "selected" : ""}>${s} px</option>`).join("");
    $("mix-image").removeAttribute("src");
  }
  if (!diffusion) loadDirections();
}

// The diffusion fields of a generate / variations / interpolate request (studio.js common()).
function samplingFields() {
  if (!state.model || $("diffusion-fields").hidden) return {};
  const out = { sampler: $("dm-sampler").value, steps: Number($("dm-steps").value) };
  if (state.model.conditional) out.guidance = Number($("dm-guidance").value);
  return out;
}

async function loadDirections() {
  const m = state.model;
  const box = $("dir-sliders");
  box.innerHTML = '<p class="muted small">Finding directions…</p>';
  try {
    const data = await getJSON(`/api/models/${encodeURIComponent(m.name)}/directions?method=${latentState.method}&k=${SLIDERS}`);
    if (state.model !== m) return;
    latentState.directions = data.directions;
    box.innerHTML = "";
    data.directions.forEach((d, i) => {
      const row = el("label");
      const name = latentState.method === "class" && m.classes ? `→ ${m.classes[d.value] ?? d.value}` : `#${i + 1}`;
      row.innerHTML = `<span></span><input type="range" min="-3" max="3" step="0.25" value="0"><output>0</output>`;
      row.querySelector("span").textContent = name;
      row.title = latentState.method === "class" ? "towards this class's mean" : `direction ${i + 1} (strongest first)`;
      const input = row.querySelector("input");
      input.value = latentState.amounts[i];
      row.querySelector("output").textContent = Number(input.value).toFixed(2);
      input.oninput = () => {
        latentState.amounts[i] = Number(input.value);
        row.querySelector("output").textContent = latentState.amounts[i].toFixed(2);
        clearTimeout(latentState.timer);
        latentState.timer = setTimeout(drawDirections, 120);
      };
      box.appendChild(row);
    });
    drawDirections();
  } catch (err) {
    box.innerHTML = "";
    box.appendChild(el("p", "muted small", `No directions: ${err.message}`));
  }
}

async function drawDirections() {
  const m = state.model;
  if (!m || (latentState.seed === null && latentState.latent === null)) return;
  const amounts = latentState.amounts.slice(0, latentState.directions.length);
  const body = { model: m.name, method: latentState.method, amounts };
  if (latentState.latent !== null) body.latent = latentState.latent;
  else { body.seed = latentState.seed; body.truncation = state.psi; }
  const label = latentState.latent !== null ? latentState.label : state.label;
  if (label !== null && label !== undefined) body.label = label;
  try {
    const { res, ms } = await api("/api/directions", body);
    if (state.model !== m) return;
    $("dir-image").src = URL.createObjectURL(await res.blob());
    const moved = amounts.map((a, i) => a ? `#${i + 1} ${a > 0 ? "+" : ""}${a}` : "").filter(Boolean).join(", ");
    const start = latentState.latent !== null ? "the projected image" : `seed ${latentState.seed}`;
    $("dir-caption").textContent = `${start}${moved ? " · " + moved : ""} · ${Math.round(ms)} ms`;
  } catch (err) {
    showError(err);
  }
}

// The inspector's candidate becomes the image the sliders move (studio.js selectItem).
function latentFromItem(item) {
  if ($("latent-panel").hidden || !item || typeof item.seed !== "number") return;
  latentState.seed = item.seed;
  latentState.latent = null;
  drawDirections();
}

async function projectFile(file) {
  const m = state.model;
  if (!file || !m) return;
  const form = new FormData();
  form.append("model", m.name);
  form.append("file", file);
  form.append("steps", "100");
  $("dir-caption").textContent = `Projecting ${file.name} into ${m.name}…`;
  busy(true);
  try {
    const data = await (await api("/api/project", form)).res.json();
    if (state.model !== m) return;
    latentState.latent = data.latent;
    latentState.label = data.label;
    latentState.seed = null;
    $("dir-image").src = data.reconstruction;
    $("dir-caption").textContent = `${file.name} projected (${data.space}, ${data.steps} steps, PSNR ${data.psnr.toFixed(1)} dB, ${data.seconds} s)`;
    drawDirections();
  } catch (err) {
    showError(err);
    $("dir-caption").textContent = "Projection failed.";
  } finally {
    busy(false);
  }
}

async function mixGrid() {
  const m = state.model;
  const rows = seedList($("mix-rows").value), cols = seedList($("mix-cols").value);
  if (!rows.length || !cols.length) return showError(new Error("give row and column seeds, e.g. 0-3 and 10-13"));
  const body = { model: m.name, rows, cols, crossover: Number($("mix-crossover").value), truncation: state.psi };
  if (state.label !== null) body.label = state.label;
  try {
    const { res } = await api("/api/mix", body);
    $("mix-image").src = URL.createObjectURL(await res.blob());
  } catch (err) {
    showError(err);
  }
}

function wireLatent() {
  $("dir-method").onchange = (e) => { latentState.method = e.target.value; latentState.amounts.fill(0); loadDirections(); };
  $("dir-reset").onclick = () => {
    latentState.amounts.fill(0);
    document.querySelectorAll("#dir-sliders input").forEach((i) => { i.value = 0; i.dispatchEvent(new Event("input")); });
  };
  $("dir-file").onchange = (e) => { projectFile(e.target.files[0]); e.target.value = ""; };
  $("mix-go").onclick = mixGrid;
  $("dm-steps").oninput = (e) => { $("dm-steps-out").textContent = e.target.value; };
  $("dm-guidance").oninput = (e) => { $("dm-guidance-out").textContent = Number(e.target.value).toFixed(1); };
  for (const id of ["dm-sampler", "dm-steps", "dm-guidance"]) $(id).addEventListener("change", () => generate());
}

document.addEventListener("DOMContentLoaded", wireLatent);
