// The dashboard's router: "#/<view>[/<arg>...][?params]" picks a view; each view
// renders into <main id="view"> and returns a function that stops its timers.
import { banner, h } from "./dom.js";
import { overview } from "./overview.js";
import { logs } from "./logs.js";
import { traces, traceView, compareView } from "./traces.js";
import { metrics } from "./metrics.js";
import { registry, lab } from "./registry.js";

const VIEWS = {
  overview,
  logs,
  traces,
  trace: traceView,
  compare: compareView,
  metrics,
  registry,
  lab,
};

let stop = null;
let shown = null;

async function route() {
  const hash = location.hash.slice(1) || "/overview";
  const [path] = hash.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const name = VIEWS[parts[0]] ? parts[0] : "overview";
  const key = `${name}/${parts.slice(1).join("/")}`;
  if (key === shown) return; // only the query changed (a view writing its state)
  shown = key;
  if (stop) stop();
  stop = null;
  banner("");
  for (const link of document.querySelectorAll("#nav a")) {
    const active = link.dataset.view === name || (name === "trace" || name === "compare") && link.dataset.view === "traces";
    link.classList.toggle("active", active);
  }
  const root = document.getElementById("view");
  root.replaceChildren();
  root.dataset.view = name;
  try {
    stop = (await VIEWS[name](root, ...parts.slice(1))) || null;
  } catch (err) {
    root.append(h("p", { class: "error", text: String(err.message || err) }));
  }
}

window.addEventListener("hashchange", route);
route();
