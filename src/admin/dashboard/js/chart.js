// A stacked bar chart of requests (allowed, refused) per hour or per day,
// drawn as SVG elements: no library, no canvas, no inline styles (colours
// come from classes in app.css, so dark mode applies).

import * as fmt from "./format.js";
import { h, svg } from "./ui.js";

const HOUR = 3600 * 1000;
const DAY = 24 * HOUR;

/** Every bucket of the window, zeros where the API sent none (it sends
 * only buckets with traffic). */
export function fill(buckets, step, count, now = Date.now()) {
  const byStart = new Map(buckets.map((b) => [new Date(b.start).getTime(), b]));
  const last = Math.floor(now / step) * step;
  const out = [];
  for (let i = count - 1; i >= 0; i--) {
    const t = last - i * step;
    const b = byStart.get(t);
    out.push({ start: t, requests: b ? b.requests : 0, refused: b ? b.refused : 0 });
  }
  return out;
}

function niceMax(n) {
  if (n <= 5) return 5;
  const p = Math.pow(10, Math.floor(Math.log10(n)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= n) return m * p;
  return 10 * p;
}

/** The chart of `series` (from `fill`); `hourly` picks the labels. */
export function barChart(series, { hourly, title, width = 720 }) {
  const W = width;
  const H = 200;
  const left = 40;
  const bottom = 24;
  const top = 8;
  const plotW = W - left - 8;
  const plotH = H - top - bottom;
  const max = niceMax(Math.max(0, ...series.map((b) => b.requests + b.refused)));
  const bw = plotW / series.length;
  const total = series.reduce((s, b) => s + b.requests + b.refused, 0);
  const refused = series.reduce((s, b) => s + b.refused, 0);
  const label = `${title}: ${fmt.number(total)} requests, ${fmt.number(total - refused)} allowed and ${fmt.number(refused)} refused.`;

  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": label });
  for (const f of [0, 0.5, 1]) {
    const y = top + plotH - f * plotH;
    chart.append(
      svg("line", { x1: left, x2: W - 8, y1: y, y2: y, class: "grid" }),
      svg("text", { x: left - 6, y: y + 4, class: "axis", "text-anchor": "end" }, fmt.number(max * f)),
    );
  }
  series.forEach((b, i) => {
    const x = left + i * bw;
    const when = hourly ? fmt.hour(new Date(b.start).toISOString()) : fmt.date(new Date(b.start).toISOString());
    const hint = `${when}: ${fmt.number(b.requests)} allowed, ${fmt.number(b.refused)} refused`;
    const g = svg("g", { class: "bar" }, svg("title", {}, hint));
    const hOk = (b.requests / max) * plotH;
    const hNo = (b.refused / max) * plotH;
    const gap = bw > 4 ? 1 : 0;
    // A transparent full-height target keeps the hover title reachable on empty buckets.
    g.append(svg("rect", { x, y: top, width: bw, height: plotH, class: "hit" }));
    if (hOk > 0) g.append(svg("rect", { x: x + gap / 2, y: top + plotH - hOk, width: Math.max(bw - gap, 0.5), height: hOk, class: "ok" }));
    if (hNo > 0) g.append(svg("rect", { x: x + gap / 2, y: top + plotH - hOk - hNo, width: Math.max(bw - gap, 0.5), height: hNo, class: "refused" }));
    chart.append(g);
    const d = new Date(b.start);
    const every = W < 500 ? 2 : 1;
    const tick = hourly ? d.getHours() === 0 && Math.floor(i / 24) % every === 0 : i % (15 * every) === 0;
    if (tick) {
      chart.append(svg("text", { x: x + bw / 2, y: H - 6, class: "axis", "text-anchor": "middle" }, fmt.date(d.toISOString()).replace(/,? \d{4}$/, "")));
    }
  });
  return h(
    "figure",
    { class: "chart-figure" },
    chart,
    h(
      "figcaption",
      { class: "legend" },
      h("span", { class: "swatch ok", "aria-hidden": "true" }),
      " Allowed ",
      h("span", { class: "swatch refused", "aria-hidden": "true" }),
      " Refused · ",
      label,
    ),
  );
}

export const windows = {
  hourly: (usage) => fill(usage.hourly || [], HOUR, 7 * 24),
  daily: (usage) => fill(usage.daily || [], DAY, 90),
};
