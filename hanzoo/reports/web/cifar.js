// The CIFAR-10 classifiers on one image: a vendored test image, or one of your own, resized to 32 x 32.
const data = await (await fetch("../assets/cifar.json")).json();
await window.hanzoo.ready;
const canvas = document.getElementById("image");
const ctx = canvas.getContext("2d", { willReadFrequently: true });

function pixels() {
  const rgba = ctx.getImageData(0, 0, 32, 32).data;
  const hwc = new Uint8Array(32 * 32 * 3);
  for (let p = 0; p < 32 * 32; p++) hwc.set(rgba.subarray(4 * p, 4 * p + 3), 3 * p);
  return hwc;
}

async function classify(truth) {
  const x = pixels();
  const lines = [];
  for (const id of data.models) {
    const logits = (await window.hanzoo.run(id, x, [1, 32, 32, 3])).output.data;
    const top = Math.max(...logits);
    const e = logits.map((v) => Math.exp(v - top));
    const sum = e.reduce((a, b) => a + b, 0);
    const best = e.map((v, k) => [v / sum, k]).sort((a, b) => b[0] - a[0]).slice(0, 3);
    lines.push(`${id}: ` + best.map(([p, k]) => `${data.classes[k]} ${(100 * p).toFixed(1)}%`).join(", "));
  }
  document.getElementById("result").textContent = (truth ? `true class: ${truth}\n` : "") + lines.join("\n");
}

async function pick(k) {
  const img = new Image();
  img.src = `../assets/cifar/${k}.png`;
  await img.decode();
  ctx.drawImage(img, 0, 0, 32, 32);
  await classify(data.classes[data.labels[k]]);
}

const strip = document.getElementById("images");
data.labels.forEach((_, k) => {
  const img = document.createElement("img");
  img.src = `../assets/cifar/${k}.png`;
  img.alt = data.classes[data.labels[k]];
  img.addEventListener("click", () => pick(k));
  strip.append(img);
});

document.getElementById("file").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  const box = document.getElementById("error");
  box.hidden = true;
  try {
    const bitmap = await createImageBitmap(file);
    ctx.drawImage(bitmap, 0, 0, 32, 32); // resized to the 32 x 32 pixels the models take
    await classify(null);
  } catch (e) {
    box.textContent = `${file.name} is not an image this browser can read (${e.message})`;
    box.hidden = false;
  }
});
window.demoDone = window.hanzooFinished(pick(0));
