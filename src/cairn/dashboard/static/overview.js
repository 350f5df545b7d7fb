// Overview: every service and instance with health, RED numbers and breaker states,
// refreshed every 2 s.
import { api, banner, every, fmtMs, fmtPct, fmtRate, h, healthBadge, table } from "./dom.js";

function breakers(list) {
  if (!list.length) return h("span", { class: "muted", text: "–" });
  return list.map((b) =>
    h("span", {
      class: `badge breaker breaker-${b.state}`,
      dataset: { policy: b.policy, state: b.state },
      title: `breaker ${b.policy}: ${b.state}`,
      text: `${b.policy}: ${b.state}`,
    }),
  );
}

function numbers(row) {
  return [
    h("td", { class: "num", text: fmtRate(row.rate) }),
    h("td", { class: `num${row.error_rate > 0.01 ? " bad" : ""}`, text: fmtPct(row.error_rate) }),
    h("td", { class: "num", text: fmtMs(row.p99_ms) }),
  ];
}

function render(body) {
  const rows = [];
  for (const svc of body.services) {
    const worst = svc.instances.some((i) => i.health === "critical")
      ? "critical"
      : svc.instances.some((i) => i.health === "warning")
        ? "warning"
        : svc.instances.length ? "passing" : "unknown";
    rows.push(
      h(
        "tr",
        { class: "service-row", dataset: { service: svc.name } },
        h("td", {}, h("a", { href: `#/traces?service=${encodeURIComponent(svc.name)}`, text: svc.name })),
        h("td", {}, healthBadge(worst), ` ${svc.instances.length} instance(s)`),
        h("td", {}),
        h("td", {}),
        numbers(svc),
        h("td", {}),
      ),
    );
    for (const inst of svc.instances) {
      rows.push(
        h(
          "tr",
          { class: "instance-row", dataset: { instance: inst.id } },
          h("td", { class: "indent", text: inst.id }),
          h("td", {}, healthBadge(inst.health)),
          h("td", { class: "mono", text: inst.address }),
          h("td", { text: inst.version || "–" }),
          numbers(inst),
          h("td", { class: "breakers" }, breakers(inst.breakers)),
        ),
      );
    }
  }
  const headers = ["service / instance", "health", "address", "version", "req/s", "errors", "p99", "breakers (per dependency)"];
  return rows.length
    ? table(headers, rows, { id: "overview-table", class: "grid" })
    : h("p", { class: "muted", text: "No services yet: nothing registered and no telemetry received." });
}

export function overview(root) {
  const holder = h("div", {}, h("p", { class: "muted", text: "Loading…" }));
  const note = h("p", { class: "muted small" });
  root.append(h("h1", { text: "Services" }), holder, note);
  return every(2000, async () => {
    try {
      const body = await api("/api/overview", { since: "1m" });
      holder.replaceChildren(render(body));
      const errs = Object.entries(body.errors || {}).map(([k, v]) => `${k}: ${v}`);
      banner(errs.join(" · "));
      note.textContent = `Rates, errors and p99 over the last ${body.window}; refreshed every 2 s.`;
    } catch (err) {
      banner(err.message);
    }
  });
}
