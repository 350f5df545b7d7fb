// Metrics: RED charts per service and endpoint over a chosen range, histogram
// quantiles, exemplar dots (the collector's exemplars of the latency histogram, each a
// request's duration linking to its trace; the slowest traces stand in when it has
// none), and any stored metric by name.
import { api, banner, fmtMs, fmtRate, h, latest, routeParams, select, setRouteParams, table } from "./dom.js";
import { lineChart } from "./chart.js";

const RANGE_S = { "5m": 300, "15m": 900, "1h": 3600, "6h": 21600, "24h": 86400 };

function findName(known, wanted) {
  for (const n of [wanted, wanted.replace(/_total$/, ""), `${wanted}_total`]) if (known.has(n)) return n;
  return null;
}

// Axis numbers: whole above 10, else up to two decimals (0.25 %, not "0%" and "1%").
const num = (v) => (Math.abs(v) >= 10 ? v.toFixed(0) : String(+v.toFixed(2)));

const labelOf = (labels, keys) => keys.map((k) => labels[k] || "").join(" ") || "all";

async function range(name, by, since, step, stat) {
  if (!name) return [];
  const body = await api(`/api/metrics/${encodeURIComponent(name)}/range`, { by: by.join(","), since, step, stat });
  return body.series;
}

function errorRatio(series) {
  // per endpoint: sum of 5xx rates / sum of all rates at each time
  const by = new Map();
  for (const ser of series) {
    const ep = ser.labels.endpoint || "all";
    if (!by.has(ep)) by.set(ep, new Map());
    const m = by.get(ep);
    const bad = String(ser.labels.status || "").startsWith("5");
    for (const [t, v] of ser.points) {
      const cur = m.get(t) || [0, 0];
      cur[0] += v;
      if (bad) cur[1] += v;
      m.set(t, cur);
    }
  }
  return [...by.entries()].map(([ep, m]) => ({
    label: ep,
    points: [...m.entries()].sort((a, b) => a[0] - b[0]).map(([t, [all, bad]]) => [t, all ? (bad / all) * 100 : 0]),
  }));
}

export async function metrics(root) {
  const p = routeParams();
  let known;
  try {
    known = new Map((await api("/api/metrics")).metrics.map((m) => [m.name, m]));
  } catch (err) {
    root.append(h("h1", { text: "Metrics" }), h("p", { class: "error", text: err.message }));
    return;
  }
  const names = new Set(known.keys());
  const reqName = findName(names, "http_requests_total");
  const durName = findName(names, "http_request_duration_seconds");
  let services = [];
  try { services = (await api("/api/services")).services; } catch (_) { /* shown empty */ }
  const chosen = p.get("service") || services[0] || "";
  const service = select("metric-service", services.length ? services : [""], chosen, () => draw());
  const since = select("metric-range", Object.keys(RANGE_S), p.get("since") || "15m", () => draw());
  const other = select("metric-name", [["", "— any metric —"], ...[...known.keys()].sort()], p.get("metric") || "", () => draw());
  const stat = select("metric-stat", ["rate", "latest", "p50", "p90", "p99"], p.get("stat") || "rate", () => draw());
  const charts = h("div", { id: "charts", class: "charts" });
  const endpoints = h("div", { id: "endpoint-table" });
  const extra = h("div", { id: "metric-extra" });
  root.append(
    h("h1", { text: "Metrics" }),
    h("div", { class: "toolbar" }, h("label", {}, "service "), service, h("label", {}, " range "), since),
    charts,
    h("h2", { text: "Endpoints" }),
    endpoints,
    h("h2", { text: "Any metric" }),
    h("div", { class: "toolbar" }, other, stat),
    extra,
  );

  const newDraw = latest();

  async function draw() {
    const current = newDraw();
    banner("");
    setRouteParams("metrics", { service: service.value, since: since.value, metric: other.value, stat: stat.value });
    const win = RANGE_S[since.value];
    const step = Math.max(5, Math.round(win / 60));
    const endNs = Date.now() * 1e6;
    const startNs = endNs - win * 1e9;
    const mine = (ser) => !service.value || ser.labels.service === service.value;
    try {
      const [rates, byStatus, p99, exemplars] = await Promise.all([
        range(reqName, ["service", "endpoint"], since.value, step, "rate"),
        range(reqName, ["service", "endpoint", "status"], since.value, step, "rate"),
        range(durName, ["service", "endpoint"], since.value, step, "p99"),
        service.value ? api("/api/exemplars", { service: service.value, since: since.value }) : Promise.resolve({ exemplars: [], source: "exemplars" }),
      ]);
      if (!current()) return; // a newer choice is drawing (or will)
      const toMs = (ser) => ({ ...ser, points: ser.points.map(([t, v]) => [t, v * 1000]) });
      // value is in seconds, the chart in ms; the chart's text nodes escape the title.
      const dots = (exemplars.exemplars || []).filter((e) => /^[0-9a-f]{32}$/.test(e.trace_id || "")).map((e) => ({
        t_ns: e.time_ns, value: e.value * 1000, href: `#/trace/${e.trace_id}`,
        title: `${e.name || "request"}: ${fmtMs(e.value * 1000)} — open trace ${e.trace_id.slice(0, 8)}…`,
      }));
      const dotsAre = exemplars.source === "exemplars" ? "exemplars" : "slowest traces";
      charts.replaceChildren(
        lineChart("Requests per second", rates.filter(mine).map((x) => ({ label: labelOf(x.labels, ["endpoint"]), points: x.points })), { format: num, startNs, endNs }),
        lineChart("Errors (5xx, % of requests)", errorRatio(byStatus.filter(mine)), { format: (v) => `${num(v)}%`, startNs, endNs }),
        lineChart(`p99 latency (ms) · dots: ${dotsAre}`, p99.filter(mine).map((x) => ({ label: labelOf(x.labels, ["endpoint"]), ...toMs(x) })), { format: num, dots, startNs, endNs }),
      );
      if (durName) {
        const sum = await api(`/api/metrics/${encodeURIComponent(durName)}`, { by: "service,endpoint", since: since.value });
        if (!current()) return;
        const rows = sum.series.filter(mine).map((x) => {
          const q = x.quantiles || {};
          const ms = (v) => (v === undefined || v === null ? "–" : fmtMs(v * 1000));
          return h("tr", {}, h("td", { text: x.labels.endpoint || "" }), h("td", { class: "num", text: fmtRate(x.rate) }),
            h("td", { class: "num", text: ms(q.p50) }), h("td", { class: "num", text: ms(q.p90) }), h("td", { class: "num", text: ms(q.p99) }));
        });
        endpoints.replaceChildren(rows.length ? table(["endpoint", "req/s", "p50", "p90", "p99"], rows, { class: "grid" }) : h("p", { class: "muted", text: "No request metrics for this service in the range." }));
      } else {
        endpoints.replaceChildren(h("p", { class: "muted", text: "No http_request_duration_seconds stored yet." }));
      }
      if (other.value) {
        const series = await range(other.value, ["service", "instance"], since.value, step, stat.value);
        if (!current()) return;
        extra.replaceChildren(lineChart(`${other.value} (${stat.value})`, series.map((x) => ({ label: labelOf(x.labels, ["service", "instance"]), points: x.points })), { startNs, endNs }));
      } else {
        extra.replaceChildren(h("p", { class: "muted", text: `${known.size} metrics stored; pick one to chart it.` }));
      }
    } catch (err) {
      if (current()) banner(err.message);
    }
  }
  draw();
}
