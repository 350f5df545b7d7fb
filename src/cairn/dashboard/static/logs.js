// Logs: the query box (same language as `cairn logs`), time range, level and service
// facets, live tail, expandable JSON fields, trace links.
import {
  answered, api, ApiError, banner, fmtDate, h, latest, RANGES, routeParams, searching, select, setRouteParams,
} from "./dom.js";

const LIMIT = 200;
const KEEP = 1000;

function key(r) {
  return `${r.time_ns}|${r.service}|${r.span_id}|${r.body}`;
}

function logLine(r) {
  const fields = { ...r.attributes };
  if (Object.keys(r.resource || {}).length) fields.resource = r.resource;
  const details = h("pre", { class: "fields", hidden: true, text: JSON.stringify(fields, null, 2) });
  const hasFields = Object.keys(fields).length > 0;
  const toggle = hasFields
    ? h("button", {
        class: "expand",
        title: "show fields",
        text: "+",
        onclick: (e) => {
          details.hidden = !details.hidden;
          e.target.textContent = details.hidden ? "+" : "−";
        },
      })
    : h("span", { class: "expand" });
  return h(
    "div",
    { class: `log-line level-${r.level}` },
    toggle,
    h("span", { class: "time mono", text: fmtDate(r.time_ns) }),
    h("span", { class: `level badge level-${r.level}`, text: r.level }),
    h("span", { class: "svc", text: r.service }),
    h("span", { class: "body", text: r.body }),
    r.trace_id
      ? h("a", { class: "trace-link mono", href: `#/trace/${encodeURIComponent(r.trace_id)}`, title: "open the trace", text: r.trace_id.slice(0, 8) })
      : null,
    details,
  );
}

function facet(title, counts, field, addTerm) {
  const entries = Object.entries(counts).sort((a, b) => b[1] - a[1]);
  return h(
    "div",
    { class: "facet" },
    h("h3", { text: title }),
    entries.length ? null : h("p", { class: "muted small", text: "none" }),
    entries.map(([value, n]) =>
      h(
        "button",
        { class: "facet-item", dataset: { field, value }, onclick: () => addTerm(field, value) },
        h("span", { text: value }),
        h("span", { class: "count", text: String(n) }),
      ),
    ),
  );
}

export function logs(root) {
  const params = routeParams();
  const state = { records: [], seen: new Set(), timer: null };
  const newSearch = latest();
  let current = () => true; // the newest search's check; the tail belongs to it
  const input = h("input", {
    id: "log-query",
    type: "search",
    placeholder: "e.g. level:error AND service:orders, event:purchase_completed, duration_ms > 100",
    value: params.get("q") || "",
    spellcheck: "false",
    autocomplete: "off",
  });
  const range = select("log-range", RANGES, params.get("since") || "1h", () => run());
  const live = h("input", { id: "log-live", type: "checkbox", checked: params.get("live") === "1", onchange: () => run() });
  const error = h("div", { id: "query-error", class: "query-error", hidden: true });
  const list = h("div", { id: "log-list", class: "log-list" });
  const side = h("aside", { class: "facets" });
  const count = h("span", { class: "muted small" });
  const form = h(
    "form",
    { class: "toolbar", onsubmit: (e) => { e.preventDefault(); run(); } },
    input,
    range,
    h("label", { class: "inline" }, live, " live tail"),
    h("button", { type: "submit", id: "log-search", text: "Search" }),
    count,
  );
  root.append(h("h1", { text: "Logs" }), form, error, h("div", { class: "split" }, side, list));

  function addTerm(field, value) {
    const term = `${field}:${/^[\w.\-]+$/.test(value) ? value : JSON.stringify(value)}`;
    input.value = input.value.trim() ? `${input.value.trim()} AND ${term}` : term;
    run();
  }

  function showError(err) {
    if (err instanceof ApiError && err.body.column) {
      const col = Number(err.body.column);
      error.replaceChildren(
        h("div", { text: `${err.body.error} (column ${col})` }),
        h("pre", { class: "caret" }, input.value + "\n" + " ".repeat(Math.max(0, col - 1)) + "^"),
      );
      error.hidden = false;
    } else {
      banner(err.message);
    }
  }

  function draw() {
    list.replaceChildren(
      ...(state.records.length ? state.records.map(logLine) : [h("p", { class: "muted", text: "No log records match." })]),
    );
    const levels = {};
    const services = {};
    for (const r of state.records) {
      levels[r.level] = (levels[r.level] || 0) + 1;
      services[r.service] = (services[r.service] || 0) + 1;
    }
    side.replaceChildren(facet("Level", levels, "level", addTerm), facet("Service", services, "service", addTerm));
    count.textContent = `${state.records.length} newest shown`;
  }

  async function tail() {
    if (!live.checked) return;
    const mine = current;
    try {
      const newest = state.records[0];
      const body = await api("/api/logs", {
        q: input.value.trim(),
        since: newest ? newest.time : range.value,
        limit: LIMIT,
      });
      if (!mine()) return; // a new search replaced this tail's
      const fresh = body.records.filter((r) => !state.seen.has(key(r)));
      if (fresh.length) {
        for (const r of fresh) state.seen.add(key(r));
        state.records = fresh.concat(state.records).slice(0, KEEP);
        for (const r of fresh.slice().reverse()) list.prepend(logLine(r));
        while (list.children.length > KEEP) list.lastChild.remove();
        count.textContent = `${state.records.length} newest shown (live)`;
      }
    } catch (err) {
      if (mine()) showError(err);
    } finally {
      if (live.checked && mine()) state.timer = setTimeout(tail, 2000);
    }
  }

  async function run() {
    const mine = (current = newSearch());
    clearTimeout(state.timer);
    error.hidden = true;
    banner("");
    const q = input.value.trim();
    setRouteParams("logs", { q, since: range.value, live: live.checked ? "1" : "" });
    searching(list);
    try {
      const body = await api("/api/logs", { q, since: range.value, limit: LIMIT });
      if (!mine()) {
        // A newer search is showing (or will); counted, for whoever wonders.
        list.dataset.dropped = String(Number(list.dataset.dropped || 0) + 1);
        return;
      }
      state.records = body.records;
      state.seen = new Set(body.records.map(key));
      draw();
      answered(list, q);
      list.dataset.loaded = "1";
    } catch (err) {
      if (!mine()) return;
      state.records = [];
      list.replaceChildren();
      answered(list, q);
      showError(err);
    }
    if (live.checked) state.timer = setTimeout(tail, 2000);
  }

  run();
  return () => {
    live.checked = false;
    clearTimeout(state.timer);
  };
}
