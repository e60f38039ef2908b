// A regression model on raw features (defaults from a test row), its prediction in the target's units
// beside the row's true value.
const data = await (await fetch("../assets/regression.json")).json();
const models = await window.hanzoo.ready;
const select = document.getElementById("model");
const form = document.getElementById("features");
for (const id of Object.keys(data)) select.add(new Option(id, id));

function fill() {
  const d = data[select.value], m = models[select.value];
  form.replaceChildren();
  m.features.forEach((name, k) => {
    const label = document.createElement("label");
    const unit = m.units[name] ? ` (${m.units[name]})` : "";
    label.textContent = `${name}${unit} `;
    const input = document.createElement("input");
    input.name = name;
    input.value = d.row[k];
    label.append(input);
    form.append(label, document.createElement("br"));
  });
  document.getElementById("result").textContent = "";
}

async function predict() {
  const id = select.value, d = data[id];
  const x = Float32Array.from([...form.querySelectorAll("input")].map((i) => Number(i.value.trim() === "" ? NaN : i.value)));
  const out = await window.hanzoo.run(id, x, [1, x.length]);
  document.getElementById("result").textContent =
    `${d.target}: predicted ${out.output.data[0].toPrecision(5)} ${d.unit}; this test row's true value ` +
    `${d.truth.toPrecision(5)} ${d.unit}`;
}

select.addEventListener("change", fill);
document.getElementById("predict").addEventListener("click", () => predict().catch(() => {}));
fill();
window.demoDone = window.hanzooFinished(predict());
