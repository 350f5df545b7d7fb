// Line charts drawn as inline SVG: a time axis, a value axis, one polyline per
// series, a legend, and optional dots that link somewhere (exemplar traces).
import { h, s } from "./dom.js";

const COLORS = ["#1e88e5", "#e53935", "#43a047", "#fb8c00", "#8e24aa", "#00897b", "#6d4c41", "#3949ab", "#c0ca33", "#d81b60"];
const W = 560, H = 220, L = 56, R = 12, T = 12, B = 28;

function niceMax(v) {
  if (v <= 0) return 1;
  const mag = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * mag) return m * mag;
  return 10 * mag;
}

function clock(ms) {
  const d = new Date(ms);
  return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}

// series: [{label, points: [[time_ns, value]]}]; dots: [{t_ns, value, href, title}]
export function lineChart(title, series, { format = (v) => v.toFixed(2), dots = [], startNs, endNs } = {}) {
  const all = series.flatMap((x) => x.points);
  const t0 = startNs ?? Math.min(...all.map((p) => p[0]), ...dots.map((d) => d.t_ns));
  const t1 = endNs ?? Math.max(...all.map((p) => p[0]), ...dots.map((d) => d.t_ns));
  const vmax = niceMax(Math.max(0, ...all.map((p) => p[1]).filter(Number.isFinite), ...dots.map((d) => d.value)));
  const span = Math.max(1, t1 - t0);
  const x = (t) => L + ((t - t0) / span) * (W - L - R);
  const y = (v) => T + (1 - v / vmax) * (H - T - B);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": title });
  for (let i = 0; i <= 4; i++) {
    const v = (vmax * i) / 4;
    svg.append(
      s("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid-line" }),
      s("text", { x: L - 4, y: y(v) + 4, class: "axis-label", "text-anchor": "end" }, format(v)),
    );
  }
  if (Number.isFinite(t0) && Number.isFinite(t1)) {
    for (let i = 0; i <= 4; i++) {
      const t = t0 + (span * i) / 4;
      svg.append(s("text", { x: x(t), y: H - 8, class: "axis-label", "text-anchor": "middle" }, clock(t / 1e6)));
    }
  }
  series.forEach((ser, i) => {
    const pts = ser.points.filter((p) => Number.isFinite(p[1]));
    if (!pts.length) return;
    const color = COLORS[i % COLORS.length];
    svg.append(s("polyline", {
      points: pts.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" "),
      fill: "none", stroke: color, "stroke-width": 1.6,
    }, s("title", {}, ser.label)));
  });
  for (const d of dots) {
    const dot = s("circle", { cx: x(d.t_ns), cy: y(Math.min(d.value, vmax)), r: 4, class: "exemplar" }, s("title", {}, d.title));
    svg.append(s("a", { href: d.href, class: "exemplar-link" }, dot));
  }
  const legend = h("div", { class: "legend" }, series.map((ser, i) => {
    const sw = h("span", { class: "swatch" });
    sw.style.background = COLORS[i % COLORS.length];
    return h("span", { class: "legend-item" }, sw, ser.label);
  }));
  if (!all.length && !dots.length) svg.append(s("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "axis-label" }, "no data in this range"));
  return h("figure", { class: "chart-box" }, h("figcaption", { text: title }), svg, legend);
}
