// The site's one runtime: each shipped model's own .onnx in onnxruntime-web (WASM backend, 1 thread, so
// no cross-origin isolation is needed). window.hanzoo.run(modelId, data, shape) -> Promise of outputs.
import * as ort from "../ort/ort.wasm.min.mjs";

ort.env.wasm.numThreads = 1;
ort.env.wasm.wasmPaths = new URL("../ort/", import.meta.url).href;

const sessions = new Map();
let models = {};

function fail(message) {
  const box = document.getElementById("error");
  if (box) {
    box.textContent = message;
    box.hidden = false;
  }
  return new Error(message);
}

async function session(id) {
  if (!sessions.has(id)) {
    const url = new URL(`../files/${id}/model.onnx`, import.meta.url).href;
    sessions.set(
      id,
      ort.InferenceSession.create(url, { executionProviders: ["wasm"] }).catch((e) => {
        sessions.delete(id);
        throw fail(`could not load ${id}'s model file (${e.message}); is the site still being served?`);
      }),
    );
  }
  return sessions.get(id);
}

function check(id, data, shape) {
  const m = models[id];
  if (!m) throw fail(`unknown model ${JSON.stringify(id)}; known: ${Object.keys(models).join(", ")}`);
  const want = m.input_shape;
  if (!Array.isArray(shape) || shape.length !== want.length + 1 || shape.slice(1).some((d, i) => d !== want[i])) {
    throw fail(`${id} takes input [rows, ${want.join(", ")}], got shape ${JSON.stringify(shape)}`);
  }
  const rows = shape[0];
  if (!Number.isInteger(rows) || rows < 1) throw fail(`${id}: the number of rows must be a positive integer, got ${rows}`);
  const size = want.reduce((a, b) => a * b, rows);
  if (!data || data.length !== size) {
    throw fail(`${id}: shape ${JSON.stringify(shape)} needs ${size} values, got ${data ? data.length : 0}`);
  }
  if (m.input_dtype === "uint8") {
    if (!(data instanceof Uint8Array)) throw fail(`${id} takes uint8 pixels (a Uint8Array)`);
    return new ort.Tensor("uint8", data, shape);
  }
  const x = data instanceof Float32Array ? data : Float32Array.from(data);
  for (let i = 0; i < x.length; i++) {
    if (!Number.isFinite(x[i])) {
      const row = Math.floor(i / (size / rows));
      throw fail(`${id}: input row ${row}, column ${i % (size / rows)} is ${data[i]}; every value must be finite`);
    }
  }
  return new ort.Tensor("float32", x, shape);
}

async function run(id, data, shape) {
  const input = check(id, data, shape);
  const s = await session(id);
  const out = await s.run({ input });
  const result = {};
  for (const name of s.outputNames) {
    result[name] = { data: Array.from(out[name].data, Number), dims: Array.from(out[name].dims) };
  }
  return result;
}

const ready = fetch(new URL("models.json", import.meta.url))
  .then((r) => {
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    return r.json();
  })
  .then((m) => {
    models = m;
    document.documentElement.dataset.hanzoo = "ready";  // for automation, which polls it
    return m;
  })
  .catch((e) => {
    document.documentElement.dataset.hanzoo = "failed";
    throw fail(`could not load the model list (${e.message})`);
  });

// A demo reports its end the same way: data-demo="done", or "failed: <why>".
export function finished(promise) {
  promise.then(
    () => (document.documentElement.dataset.demo = "done"),
    (e) => (document.documentElement.dataset.demo = `failed: ${e.message}`),
  );
  return promise;
}
window.hanzooFinished = finished;

// For `hanzoo bench`: per-call seconds of each model over `rounds` interleaved blocks of about blockMs
// each, timed here with performance.now() (its resolution, 0.1 ms without cross-origin isolation, is why
// a block holds many calls).
async function timePair(ids, data, shape, rounds, blockMs) {
  const feeds = {}, sess = {}, calls = {}, out = {};
  for (const id of ids) {
    feeds[id] = { input: check(id, data, shape) };
    sess[id] = await session(id);
    await sess[id].run(feeds[id]); // warm-up
    const t0 = performance.now();
    for (let k = 0; k < 3; k++) await sess[id].run(feeds[id]);
    calls[id] = Math.max(1, Math.round(blockMs / Math.max((performance.now() - t0) / 3, 1e-3)));
    out[id] = [];
  }
  for (let r = 0; r < rounds; r++) {
    for (const id of ids) {
      const t0 = performance.now();
      for (let k = 0; k < calls[id]; k++) await sess[id].run(feeds[id]);
      out[id].push((performance.now() - t0) / 1000 / calls[id]);
    }
  }
  return out;
}

window.hanzoo = {
  ready,
  run: (id, data, shape) => ready.then(() => run(id, data, shape)),
  timePair: (...args) => ready.then(() => timePair(...args)),
  models: () => models,
  ort,
};
