// Small helpers shared by every view. Data from telemetry only ever reaches the page
// as text nodes (textContent) or attribute values: never as HTML.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVGNS = "http://www.w3.org/2000/svg";

export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVGNS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "text") el.textContent = String(value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "value") el.value = value;
    else if (key === "checked") el.checked = Boolean(value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

// For a view whose searches can overlap (a query typed while the first page load is
// still on its way): each call starts a search and returns a check that stays true
// only until the next one starts, so a slow answer to an older search is dropped
// instead of replacing the newer one's.
export function latest() {
  let generation = 0;
  return () => {
    const mine = ++generation;
    return () => mine === generation;
  };
}

// A result list says whether it waits on a search (aria-busy, drawn dimmed) and,
// once answered, which search it shows (data-query): a list still showing an
// older search's results is never mistaken for the answer to the newer one.
export function searching(list) {
  list.setAttribute("aria-busy", "true");
}

export function answered(list, query) {
  list.removeAttribute("aria-busy");
  list.dataset.query = query;
}

// GET a dashboard JSON endpoint; empty parameters are left out.
export async function api(path, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") query.set(key, String(value));
  }
  const url = query.toString() ? `${path}?${query}` : path;
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = { error: `HTTP ${response.status}` };
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

export function banner(message) {
  const el = document.getElementById("banner");
  el.textContent = message || "";
  el.hidden = !message;
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "–";
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms >= 10) return `${ms.toFixed(0)} ms`;
  return `${ms.toFixed(2)} ms`;
}

export const fmtNs = (ns) => fmtMs(ns / 1e6);

export function fmtRate(r) {
  if (r === null || r === undefined) return "–";
  return r >= 100 ? `${r.toFixed(0)}/s` : `${r.toFixed(2)}/s`;
}

export function fmtPct(f) {
  if (f === null || f === undefined) return "–";
  return `${(f * 100).toFixed(f > 0 && f < 0.01 ? 2 : 1)}%`;
}

export function fmtTime(ns) {
  const d = new Date(ns / 1e6);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

export function fmtDate(ns) {
  const d = new Date(ns / 1e6);
  return `${d.toISOString().slice(0, 10)} ${fmtTime(ns)}`;
}

export const RANGES = ["5m", "15m", "1h", "6h", "24h", "7d"];

export function select(id, options, chosen, onchange) {
  return h(
    "select",
    { id, onchange },
    options.map((o) => {
      const [value, label] = Array.isArray(o) ? o : [o, o];
      return h("option", { value, selected: value === chosen ? "selected" : null, text: label });
    }),
  );
}

// Parameters of the current hash route ("#/logs?q=..." -> {q: ...}).
export function routeParams() {
  const hash = location.hash.slice(1);
  const at = hash.indexOf("?");
  return new URLSearchParams(at >= 0 ? hash.slice(at + 1) : "");
}

export function setRouteParams(view, params) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v) query.set(k, v);
  const next = `#/${view}${query.toString() ? "?" + query : ""}`;
  if (location.hash !== next) history.replaceState(null, "", next);
}

// Runs `fn` now and every `ms` while the view lives; returns a stop function.
export function every(ms, fn) {
  let stopped = false;
  let timer = null;
  const tick = async () => {
    try {
      await fn();
    } finally {
      if (!stopped) timer = setTimeout(tick, ms);
    }
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

export function healthBadge(health) {
  return h("span", { class: `badge health-${health}`, text: health });
}

export function table(headers, rows, attrs) {
  return h(
    "table",
    attrs || {},
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", { text: x })))),
    h("tbody", {}, rows),
  );
}
