// Figure 1 of the paper, live: each model's decision over a 321 x 321 grid, its accuracy on the official
// test points, and its latency per call, measured in this page.
const N = 321;
const data = await (await fetch("../assets/checkerboard.json")).json();
await window.hanzoo.ready;

function grid() {
  const x = new Float32Array(N * N * 2);
  for (let i = 0; i < N; i++) {
    for (let j = 0; j < N; j++) {
      x[2 * (i * N + j)] = -1 + (2 * i) / (N - 1);
      x[2 * (i * N + j) + 1] = -1 + (2 * j) / (N - 1);
    }
  }
  return x;
}

function paint(canvas, decision) {
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(N, N);
  for (let i = 0; i < N; i++) {
    for (let j = 0; j < N; j++) {
      // x1 to the right, x2 up, as the paper draws it
      const p = 4 * ((N - 1 - j) * N + i);
      const v = decision[i * N + j] ? 30 : 235;
      img.data[p] = img.data[p + 1] = img.data[p + 2] = v;
      img.data[p + 3] = 255;
    }
  }
  ctx.putImageData(img, 0, 0);
}

function target() {
  const d = new Uint8Array(N * N);
  for (let i = 0; i < N; i++) {
    for (let j = 0; j < N; j++) {
      // the grid's rule (hanzoo.tasks.checkerboard_label) at the nearest of its 81 x 81 points
      const a = Math.round(i / 4), b = Math.round(j / 4);
      const inside = a >= 4 && a <= 75 && b >= 4 && b <= 75;
      d[i * N + j] = inside ? (Math.floor((a - 4) / 6) + Math.floor((b - 4) / 6)) % 2 : 0;
    }
  }
  return d;
}

async function latency(id, batch) {
  const x = new Float32Array(batch * 2).map(() => Math.random() * 2 - 1);
  await window.hanzoo.run(id, x, [batch, 2]);
  const times = [];
  for (let r = 0; r < 15; r++) {
    const t0 = performance.now();
    await window.hanzoo.run(id, x, [batch, 2]);
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[7];
}

async function show(side) {
  const id = document.getElementById(`model-${side}`).value;
  const batch = Number(document.getElementById("batch").value);
  const info = document.getElementById(`info-${side}`);
  info.textContent = "running...";
  const out = await window.hanzoo.run(id, grid(), [N * N, 2]);
  paint(document.getElementById(`canvas-${side}`), out.decision.data);
  const test = Float32Array.from(data.test.flatMap((r) => [r[0], r[1]]));
  const got = (await window.hanzoo.run(id, test, [data.test.length, 2])).decision.data;
  const right = got.filter((d, k) => d === data.test[k][2]).length;
  const ms = await latency(id, batch);
  info.textContent =
    `${id}: ${data.params[id]} parameters, ${((100 * right) / data.test.length).toFixed(2)}% on the ` +
    `${data.test.length} official test points; ${ms.toFixed(1)} ms per call at batch ${batch} ` +
    "(median of 15, this browser's timer)";
}

for (const side of ["left", "right"]) {
  const select = document.getElementById(`model-${side}`);
  for (const id of data.models) select.add(new Option(id, id));
  select.value = side === "left" ? data.models[0] : data.baseline;
  select.addEventListener("change", () => show(side));
}
document.getElementById("batch").addEventListener("change", () => Promise.all([show("left"), show("right")]));
paint(document.getElementById("canvas-target"), target());
window.demoDone = window.hanzooFinished(Promise.all([show("left"), show("right")]));
