// Line charts as inline SVG built with DOM calls (no markup strings, no library): a card
// with a title, the latest value, the line, and the y range and x range as labels.

import { h, testid } from "../dom.js";
import { lineGeometry } from "../charts.js";

const NS = "http://www.w3.org/2000/svg";
const W = 300;
const H = 110;

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v != null) el.setAttribute(k, String(v));
  el.append(...children);
  return el;
}

/**
 * A chart card. opts: {id (data-testid), title, points [{x, y}], format (y → text),
 * xLabel (x → text), note (text under the chart), bars (draw bars, not a line)}.
 */
export function chartCard({ id, title, points, format = String, xLabel = String, note = null, bars = false, zero = true }) {
  const g = lineGeometry(points, { width: W, height: H, pad: 6, zero });
  const latest = points.length ? format(points.at(-1).y) : "—";
  const label = points.length
    ? `${title}: ${points.length} points from ${xLabel(g.xMin)} to ${xLabel(g.xMax)}, between ${format(g.yMin)} and ${format(g.yMax)}, latest ${latest}`
    : `${title}: no data yet`;
  const plot = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart-svg", role: "img", "aria-label": label, preserveAspectRatio: "none" });
  plot.append(svg("line", { x1: 0, y1: H - 6, x2: W, y2: H - 6, class: "chart-axis" }));
  if (bars) {
    const base = H - 6;
    const bw = Math.max(1, (W - 12) / Math.max(1, points.length) - 1);
    for (const d of g.dots) plot.append(svg("rect", { x: (d.cx - bw / 2).toFixed(2), y: d.cy, width: bw.toFixed(2), height: Math.max(0, base - d.cy).toFixed(2), class: "chart-bar" }));
  } else if (g.path) {
    plot.append(svg("path", { d: g.path, class: "chart-line", "vector-effect": "non-scaling-stroke" }));
  }
  const card = h("figure", { class: "card chart" },
    h("figcaption", {}, h("span", { class: "chart-title" }, title), h("span", { class: "chart-latest" }, latest)),
    h("div", { class: "chart-body" },
      h("div", { class: "chart-y" }, h("span", {}, points.length ? format(g.yMax) : ""), h("span", {}, points.length ? format(g.yMin) : "")),
      plot),
    h("div", { class: "chart-x muted small" }, h("span", {}, points.length ? xLabel(g.xMin) : ""), h("span", {}, points.length ? xLabel(g.xMax) : "")),
    note ? h("p", { class: "muted small chart-note" }, note) : null);
  card.dataset.points = String(points.length);
  return testid(card, id);
}
