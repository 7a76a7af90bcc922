// atelier studio: foundation models (a user's own Stable Diffusion-family checkpoint, `atelier serve
// --foundation PATH`): listed in the sidebar with the trained runs; the Text to image panel draws with
// POST /api/t2i and keeps every image in the gallery with the request that remakes it. Clicking an image
// (here or in the gallery, "Re-open settings") puts its prompt and settings back in the form.
"use strict";

// The foundation models as sidebar entries; none when the studio serves none (the endpoint is absent).
async function foundationModels() {
  try {
    const res = await fetch("/api/foundation");
    if (!res.ok) return [];
    const data = await res.json();
    return data.models.map((m) => ({
      ...m, model: m.family, step: null, card: null,
      resolution: m.default_size ? Math.max(...m.default_size) : null,
    }));
  } catch { return []; }
}

const T2I_FIELDS = ["prompt", "negative", "steps", "guidance", "sampler", "seed", "n", "width", "height"];

function showT2I(m) {
  $("t2i-sampler").innerHTML = m.samplers.map((s) => `<option value="${s}">${s === "default"
    ? `default (${(m.default_sampler || "").replace(/Scheduler$/, "")})` : s}</option>`).join("");
  const [w, h] = m.default_size || [512, 512];
  $("t2i-width").value = w;
  $("t2i-height").value = h;
  for (const id of ["t2i-width", "t2i-height"]) $(id).step = m.size_multiple || 8;
  $("stage-title").textContent = m.name;
  $("stage-sub").textContent = `${m.family} · ${m.layout} · ${m.dtype} on ${m.device} · write a prompt and press Draw`;
  $("timing").textContent = "";
}

function t2iBody() {
  const v = (id) => $(`t2i-${id}`).value;
  return {
    model: state.model.name, prompt: v("prompt").trim(), negative: v("negative"), steps: Number(v("steps")),
    guidance: Number(v("guidance")), sampler: v("sampler"), seed: Number(v("seed")), n: Number(v("n")),
    width: Number(v("width")), height: Number(v("height")),
  };
}

// Put a request's settings back in the form (an image's own: its seed and n = 1).
function fillT2I(body) {
  for (const k of T2I_FIELDS) if (body[k] !== undefined && body[k] !== null) $(`t2i-${k}`).value = body[k];
}

async function drawT2I() {
  if (!state.model || !state.model.capabilities.includes("t2i")) return;
  const body = t2iBody();
  if (!body.prompt) return showError(new Error("write a prompt first"));
  showError(null);
  const grid = $("grid");
  grid.innerHTML = "";
  for (let i = 0; i < body.n; i++) grid.insertAdjacentHTML("beforeend", '<div class="tile loading"></div>');
  busy(true);
  $("t2i-draw").disabled = true;
  try {
    const { res, ms } = await api("/api/t2i", { ...body, format: "json", save: true });
    const data = await res.json();
    grid.innerHTML = "";
    for (const im of data.images) {
      const own = { ...body, seed: im.seed, n: 1 };
      const item = { url: im.image, tag: `#${im.seed}`, title: `${body.prompt} (seed ${im.seed})`, seed: im.seed,
                     model: body.model, recipe: { path: "/api/t2i", body: own }, index: 0, galleryId: im.gallery_id };
      const t = tile(item, { onclick: () => {
        document.querySelectorAll("#grid .tile.on").forEach((x) => x.classList.remove("on"));
        t.classList.add("on");
        fillT2I(own);
      } });
      grid.appendChild(t);
    }
    $("stage-sub").textContent = `“${body.prompt}” · seeds ${body.seed}–${body.seed + body.n - 1} · ${body.steps} steps · ` +
      `guidance ${body.guidance} · click an image to re-open its settings`;
    $("timing").textContent = `${data.images.length} image${data.images.length === 1 ? "" : "s"} · ${Math.round(ms)} ms`;
    noteGalleryGrew();
  } catch (err) {
    grid.innerHTML = "";
    showError(err);
  } finally {
    busy(false);
    $("t2i-draw").disabled = false;
  }
}

function wireT2I() {
  $("t2i-draw").onclick = drawT2I;
  $("t2i-shuffle").onclick = () => { $("t2i-seed").value = Math.floor(Math.random() * 2147483647); };
}
wireT2I();
