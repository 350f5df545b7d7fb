// Traces: search and list with duration bars; a trace's waterfall with its critical
// path, span attributes and events, and its log lines; two traces side by side.
import {
  answered, api, banner, fmtDate, fmtMs, fmtNs, h, latest, RANGES, routeParams, searching, select, setRouteParams, table,
} from "./dom.js";

export async function traces(root) {
  const p = routeParams();
  const service = select("trace-service", [["", "any service"]], p.get("service") || "", () => run());
  const operation = h("input", { id: "trace-operation", placeholder: "operation", value: p.get("operation") || "" });
  const minMs = h("input", { id: "trace-min", type: "number", min: "0", placeholder: "min ms", value: p.get("min_duration_ms") || "" });
  const status = select("trace-status", [["", "any status"], ["error", "error"], ["ok", "ok"], ["unset", "unset"]], p.get("status") || "", () => run());
  const query = h("input", { id: "trace-query", type: "search", placeholder: "attributes, e.g. http.route:\"/buy\"", value: p.get("q") || "" });
  const range = select("trace-range", RANGES, p.get("since") || "1h", () => run());
  const compare = h("button", { id: "trace-compare", type: "button", disabled: true, text: "Compare 2", onclick: () => {
    const ids = [...list.querySelectorAll("input.pick:checked")].map((c) => c.value);
    if (ids.length === 2) location.hash = `#/compare/${ids[0]}/${ids[1]}`;
  } });
  const list = h("div", { id: "trace-list" });
  const form = h(
    "form",
    { class: "toolbar", onsubmit: (e) => { e.preventDefault(); run(); } },
    service, operation, minMs, status, query, range,
    h("button", { type: "submit", id: "trace-search", text: "Search" }),
    compare,
  );
  root.append(h("h1", { text: "Traces" }), form, list);

  api("/api/services").then((body) => {
    for (const name of body.services) {
      service.append(h("option", { value: name, text: name, selected: name === p.get("service") ? "selected" : null }));
    }
  }).catch(() => {});

  function picked() {
    compare.disabled = list.querySelectorAll("input.pick:checked").length !== 2;
  }

  const newSearch = latest();

  async function run() {
    const mine = newSearch();
    banner("");
    const params = {
      service: service.value, operation: operation.value.trim(), min_duration_ms: minMs.value,
      status: status.value, q: query.value.trim(), since: range.value,
    };
    setRouteParams("traces", params);
    searching(list);
    try {
      const body = await api("/api/traces", { ...params, limit: 100 });
      if (!mine()) return; // a newer search is showing (or will)
      answered(list, params.q);
      const longest = Math.max(1, ...body.traces.map((t) => t.duration_ns));
      const rows = body.traces.map((t) => h(
        "tr",
        { class: `trace-row${t.error_count ? " has-error" : ""}`, dataset: { traceId: t.trace_id } },
        h("td", {}, h("input", { type: "checkbox", class: "pick", value: t.trace_id, onchange: picked })),
        h("td", { class: "mono", text: fmtDate(t.start_ns) }),
        h("td", {}, h("a", { href: `#/trace/${t.trace_id}`, text: `${t.root_service}: ${t.root_name}` })),
        h("td", { class: "num", text: String(t.span_count) }),
        h("td", { class: `num${t.error_count ? " bad" : ""}`, text: String(t.error_count) }),
        h("td", { class: "durcell" }, durationBar(t.duration_ns / longest, t.error_count > 0), h("span", { text: fmtNs(t.duration_ns) })),
      ));
      list.replaceChildren(rows.length
        ? table(["", "start", "root", "spans", "errors", "duration"], rows, { class: "grid traces" })
        : h("p", { class: "muted", text: "No traces match." }));
      picked();
    } catch (err) {
      if (!mine()) return;
      list.replaceChildren(h("p", { class: "error", text: err.message }));
      answered(list, params.q);
    }
  }

  run();
}

function durationBar(fraction, error) {
  const bar = h("span", { class: `dbar${error ? " error" : ""}` });
  bar.style.width = `${Math.max(0.5, fraction * 100)}%`;
  return h("span", { class: "dtrack" }, bar);
}

// The spans on the critical path: from the root, repeatedly the child that finished
// last before the current cut-off, then continue before that child started.
export function criticalPath(spans) {
  const ids = new Set(spans.map((sp) => sp.span_id));
  const kids = new Map();
  for (const sp of spans) {
    const parent = ids.has(sp.parent_span_id) ? sp.parent_span_id : null;
    if (!kids.has(parent)) kids.set(parent, []);
    kids.get(parent).push(sp);
  }
  const onPath = new Set();
  const walk = (span, cutoff) => {
    onPath.add(span.span_id);
    let t = Math.min(span.end_ns, cutoff);
    const children = (kids.get(span.span_id) || []).slice().sort((a, b) => b.end_ns - a.end_ns);
    for (const child of children) {
      if (child.start_ns >= t || onPath.has(child.span_id)) continue;
      walk(child, t);
      t = child.start_ns;
    }
  };
  const roots = kids.get(null) || [];
  if (roots.length) walk(roots.reduce((a, b) => (b.end_ns - b.start_ns > a.end_ns - a.start_ns ? b : a)), Infinity);
  return { onPath, kids };
}

function spanDetails(span, t0) {
  const attrs = Object.entries(span.attributes || {}).map(([k, v]) =>
    h("tr", {}, h("td", { class: "mono", text: k }), h("td", { class: "mono", text: typeof v === "string" ? v : JSON.stringify(v) })));
  const events = (span.events || []).map((ev) => h(
    "tr",
    {},
    h("td", { class: "mono", text: `+${fmtNs(ev.time_ns - t0)}` }),
    h("td", { class: "mono", text: ev.name }),
    h("td", { class: "mono", text: JSON.stringify(ev.attributes || {}) }),
  ));
  return h(
    "div",
    { class: "span-details" },
    h("p", {}, h("b", { text: `${span.service}: ${span.name}` }),
      ` · ${span.kind} · status ${span.status}${span.status_message ? ` (${span.status_message})` : ""} · ${fmtNs(span.duration_ns)} · span ${span.span_id}`),
    attrs.length ? table(["attribute", "value"], attrs, { class: "grid attrs" }) : null,
    events.length ? table(["at", "event", "attributes"], events, { class: "grid events" }) : null,
  );
}

const METHODS = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);

// An HTTP client span is named by its method alone ("GET"): say where it went
// (host and path of url.full, else server.address:port) so calls can be told apart.
export function clientTarget(span) {
  if (!METHODS.has(span.name)) return "";
  const a = span.attributes || {};
  const url = a["url.full"] || a["http.url"];
  if (typeof url === "string") {
    try {
      const u = new URL(url);
      return `${u.host}${u.pathname}`;
    } catch (_) { /* not a URL: fall back to the address */ }
  }
  const host = a["server.address"];
  return host ? `${host}${a["server.port"] ? `:${a["server.port"]}` : ""}` : "";
}

// A waterfall of `spans`; `scale` lets two traces share a time axis.
export function waterfall(spans, scale) {
  const { onPath, kids } = criticalPath(spans);
  const t0 = Math.min(...spans.map((sp) => sp.start_ns));
  const t1 = Math.max(...spans.map((sp) => sp.end_ns));
  const total = Math.max(1, scale || t1 - t0);
  const ordered = [];
  const visit = (span, depth) => {
    ordered.push([span, depth]);
    const children = (kids.get(span.span_id) || []).slice().sort((a, b) => a.start_ns - b.start_ns);
    for (const child of children) visit(child, depth + 1);
  };
  for (const root of (kids.get(null) || []).slice().sort((a, b) => a.start_ns - b.start_ns)) visit(root, 0);
  const box = h("div", { class: "waterfall" });
  const frag = document.createDocumentFragment();
  for (const [span, depth] of ordered) {
    const where = clientTarget(span);
    const label = h("div", { class: "wf-label", title: `${span.service}: ${span.name}${where ? ` ${where}` : ""}` },
      h("span", { class: "svc", text: span.service }), " ", h("span", { class: "op", text: span.name }),
      where ? h("span", { class: "target muted", text: ` ${where}` }) : null);
    label.style.paddingLeft = `${Math.min(depth, 30) * 12 + 4}px`;
    const bar = h("div", { class: "wf-bar" });
    bar.style.left = `${((span.start_ns - t0) / total) * 100}%`;
    bar.style.width = `${Math.max(0.2, (span.duration_ns / total) * 100)}%`;
    const track = h("div", { class: "wf-track" }, bar);
    for (const ev of span.events || []) {
      const mark = h("span", { class: `wf-event ev-${ev.name.replace(/[^\w-]/g, "_")}`, title: ev.name });
      mark.style.left = `${((ev.time_ns - t0) / total) * 100}%`;
      track.append(mark);
    }
    track.append(h("span", { class: "wf-dur", text: fmtNs(span.duration_ns) }));
    const row = h("div", {
      class: `span-row${onPath.has(span.span_id) ? " critical" : ""}${span.status === "error" ? " error" : ""}`,
      dataset: { spanId: span.span_id, name: span.name },
    }, label, track);
    let details = null;
    row.addEventListener("click", () => {
      if (details) { details.remove(); details = null; return; }
      details = spanDetails(span, t0);
      row.after(details);
    });
    frag.append(row);
  }
  box.append(frag);
  return box;
}

function traceLogs(records) {
  if (!records.length) return h("p", { class: "muted", text: "No log lines carry this trace id." });
  return table(["time", "level", "service", "message", "fields"], records.map((r) => h(
    "tr",
    { class: `level-${r.level}` },
    h("td", { class: "mono", text: fmtDate(r.time_ns) }),
    h("td", {}, h("span", { class: `badge level-${r.level}`, text: r.level })),
    h("td", { text: r.service }),
    h("td", { text: r.body }),
    h("td", { class: "mono small", text: JSON.stringify(r.attributes || {}) }),
  )), { class: "grid trace-logs" });
}

function summary(body) {
  const spans = body.spans;
  const t0 = Math.min(...spans.map((sp) => sp.start_ns));
  const t1 = Math.max(...spans.map((sp) => sp.end_ns));
  const errors = spans.filter((sp) => sp.status === "error").length;
  const services = [...new Set(spans.map((sp) => sp.service))];
  return h("p", { class: "muted" },
    `${fmtDate(t0)} · ${fmtNs(t1 - t0)} · ${spans.length} spans · ${errors} errors · ${services.join(", ")}`);
}

export async function traceView(root, traceId) {
  root.append(h("h1", {}, "Trace ", h("span", { class: "mono", text: traceId || "" })));
  let body;
  try {
    body = await api(`/api/traces/${encodeURIComponent(traceId || "")}`);
  } catch (err) {
    root.append(h("p", { class: "error", text: err.message }));
    return;
  }
  if (!body.spans.length) {
    root.append(h("p", { class: "muted", text: "This trace has no spans." }));
    return;
  }
  root.append(
    summary(body),
    h("p", { class: "legend small" }, h("span", { class: "swatch critical" }), " critical path ",
      h("span", { class: "swatch error" }), " error ", h("span", { class: "swatch event" }), " event (retry, breaker…) · click a span for its attributes and events"),
    waterfall(body.spans),
    h("h2", { text: "Log lines" }),
    traceLogs(body.logs || []),
  );
}

function opTotals(spans) {
  const out = new Map();
  for (const sp of spans) {
    const k = `${sp.service}: ${sp.name}`;
    const cur = out.get(k) || { n: 0, ns: 0 };
    cur.n += 1;
    cur.ns += sp.duration_ns;
    out.set(k, cur);
  }
  return out;
}

export async function compareView(root, a, b) {
  root.append(h("h1", { text: "Compare traces" }));
  let bodies;
  try {
    bodies = await Promise.all([a, b].map((id) => api(`/api/traces/${encodeURIComponent(id || "")}`)));
  } catch (err) {
    root.append(h("p", { class: "error", text: err.message }));
    return;
  }
  const span = (sp) => Math.max(...sp.map((x) => x.end_ns)) - Math.min(...sp.map((x) => x.start_ns));
  const scale = Math.max(...bodies.map((bd) => (bd.spans.length ? span(bd.spans) : 1)));
  const cols = bodies.map((bd) => h("div", { class: "compare-col" },
    h("h2", {}, h("a", { class: "mono", href: `#/trace/${bd.trace_id}`, text: bd.trace_id })),
    bd.spans.length ? [summary(bd), waterfall(bd.spans, scale)] : h("p", { class: "muted", text: "no spans" })));
  const [ta, tb] = bodies.map((bd) => opTotals(bd.spans));
  const ops = [...new Set([...ta.keys(), ...tb.keys()])].sort();
  const rows = ops.map((op) => {
    const x = ta.get(op) || { n: 0, ns: 0 };
    const y = tb.get(op) || { n: 0, ns: 0 };
    const diff = (y.ns - x.ns) / 1e6;
    return h("tr", {}, h("td", { text: op }),
      h("td", { class: "num", text: `${x.n} × ${fmtNs(x.ns)}` }),
      h("td", { class: "num", text: `${y.n} × ${fmtNs(y.ns)}` }),
      h("td", { class: `num${diff > 0 ? " bad" : ""}`, text: `${diff >= 0 ? "+" : "−"}${fmtMs(Math.abs(diff))}` }));
  });
  root.append(h("div", { class: "compare" }, cols),
    h("h2", { text: "Time per operation" }),
    table(["operation", "left", "right", "right − left"], rows, { class: "grid" }));
}
