// Registry: instances with checks, tags, meta and the history of health changes
// (kept by the dashboard, which polls); Lab: the consistency-lab runs on disk.
import { api, banner, every, h, healthBadge, table } from "./dom.js";

function checks(list) {
  return list.map((c) => h("div", { class: "check" }, healthBadge(c.status), ` ${c.id}`,
    c.output ? h("span", { class: "muted small", text: ` — ${c.output}` }) : null));
}

export function registry(root) {
  const head = h("p", { id: "registry-backend", class: "muted" });
  const instances = h("div", { id: "registry-instances" });
  const changes = h("div", { id: "registry-history" });
  root.append(h("h1", { text: "Registry" }), head, instances, h("h2", { text: "Health changes" }), changes);
  return every(2000, async () => {
    try {
      const body = await api("/api/registry");
      banner(body.error || "");
      head.textContent = body.backend
        ? `${body.backend.kind}${body.backend.version ? " " + body.backend.version : ""} at ${body.backend.url}` +
          (body.backend.consistency ? ` · consistency: ${body.backend.consistency}` : "")
        : "No registry configured (start the dashboard with --registry URL).";
      const rows = body.instances.map((i) => h("tr", { class: "registry-row", dataset: { instance: i.id } },
        h("td", { text: i.service }), h("td", { class: "mono", text: i.id }), h("td", { class: "mono", text: i.address }),
        h("td", {}, healthBadge(i.health)), h("td", {}, checks(i.checks)),
        h("td", {}, i.tags.map((t) => h("span", { class: "tag", text: t }))),
        h("td", { class: "mono small" }, Object.entries(i.meta).map(([k, v]) => h("div", { text: `${k}=${v}` })))));
      instances.replaceChildren(rows.length
        ? table(["service", "instance", "address", "health", "checks", "tags", "meta"], rows, { class: "grid" })
        : h("p", { class: "muted", text: "No instances registered." }));
      const hist = body.history.map((c) => h("tr", {},
        h("td", { class: "mono", text: new Date(c.time * 1000).toLocaleTimeString() }),
        h("td", { text: c.service }), h("td", { class: "mono", text: c.instance }),
        h("td", {}, c.from ? healthBadge(c.from) : h("span", { class: "muted", text: "(first seen)" }), " → ", healthBadge(c.to))));
      changes.replaceChildren(hist.length
        ? table(["time", "service", "instance", "change"], hist, { class: "grid" })
        : h("p", { class: "muted", text: "No changes seen yet." }));
    } catch (err) {
      banner(err.message);
    }
  });
}

export async function lab(root) {
  root.append(h("h1", { text: "Consistency lab runs" }));
  let body;
  try {
    body = await api("/api/lab");
  } catch (err) {
    root.append(h("p", { class: "error", text: err.message }));
    return;
  }
  const where = h("p", { class: "muted" }, "Runs under ", h("code", { text: body.lab_dir }),
    " (write one there with ", h("code", { text: `cairn lab run --out ${body.lab_dir}/<name>` }), ").");
  const fileUrl = (f) => `/lab/files/${f.split("/").map(encodeURIComponent).join("/")}`;
  const rows = body.runs.map((r) => h("tr", { class: "lab-row" },
    h("td", {}, h("a", { href: fileUrl(r.report), target: "_blank", rel: "noopener", text: r.name })),
    h("td", { text: r.title }),
    h("td", { class: "mono", text: r.modified.slice(0, 19).replace("T", " ") }),
    h("td", {}, r.files.map((f) => h("a", { class: "file", href: fileUrl(f), target: "_blank", rel: "noopener", text: f.split("/").pop() })))));
  root.append(where, rows.length
    ? table(["run", "what", "written (UTC)", "files"], rows, { id: "lab-runs", class: "grid" })
    : h("p", { class: "muted", text: "No runs found." }));
}
