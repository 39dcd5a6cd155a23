// DOM helpers for the DR-Panel. Everything that shows data goes through text nodes / textContent:
// no function here ever parses a string as HTML, so a name like "<img onerror=…>" stays text.

/**
 * h("button", {id: "x", class: "a b", "data-action": "stop", onclick: fn, disabled: true}, "Stop")
 * Attributes starting with "on" become listeners; `value`, `checked`, `disabled`, `selected` are set
 * as properties; everything else with setAttribute. Children: nodes, strings, numbers, arrays, null.
 */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") element.addEventListener(key.slice(2), value);
    else if (key === "value" || key === "checked" || key === "disabled" || key === "selected") element[key] = value;
    else if (key === "class") element.className = value;
    else element.setAttribute(key, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

export function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** Replaces all children of `parent` (no HTML parsing). */
export function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

/** Sets a cell's text only when it changed: live updates touch only what moved. */
export function setText(element, text) {
  const value = String(text);
  if (element.textContent !== value) element.textContent = value;
}

const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined || !Number.isFinite(Number(bytes))) return "–";
  let value = Number(bytes);
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
}

export function formatRate(bytesPerSecond) {
  return bytesPerSecond === null || bytesPerSecond === undefined ? "–" : `${formatBytes(bytesPerSecond)}/s`;
}

export function formatMs(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(Number(ms))) return "–";
  const value = Number(ms);
  if (value < 1000) return `${Math.round(value)} ms`;
  if (value < 120_000) return `${(value / 1000).toFixed(1)} s`;
  if (value < 7_200_000) return `${Math.round(value / 60_000)} min`;
  return `${(value / 3_600_000).toFixed(1)} h`;
}

export function formatRatio(ratio) {
  return ratio === null || ratio === undefined || !Number.isFinite(Number(ratio)) ? "–" : `${Math.round(Number(ratio) * 100)} %`;
}

export function formatTime(time) {
  if (time === null || time === undefined) return "–";
  const date = new Date(typeof time === "number" ? time : String(time));
  return Number.isNaN(date.getTime()) ? String(time) : date.toLocaleString();
}

/** Any value as one line of text (an error object, a reason, a result). */
export function describe(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  if (typeof value === "object" && typeof value.message === "string") return value.code ? `${value.code}: ${value.message}` : value.message;
  if (typeof value === "object" && value.error) return describe(value.error);
  return JSON.stringify(value);
}

/**
 * "10GiB", "512 MiB", "1.5G", "1073741824" → bytes (binary units; a bare number is bytes).
 * Returns undefined for anything else.
 */
export function parseSize(text) {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(i?B?)\s*$/i.exec(String(text));
  if (match === null) return undefined;
  const power = "BKMGTP".indexOf((match[2] || "B").toUpperCase());
  const bytes = Number(match[1]) * 1024 ** power;
  return Number.isSafeInteger(Math.round(bytes)) ? Math.round(bytes) : undefined;
}

/** A small "?" bubble: its title is the tooltip; clicking it shows the note below the field. */
export function helpBubble(text, forName) {
  const note = h("div", { class: "help-note", hidden: true, "data-help-for": forName }, text);
  const button = h("button", { type: "button", class: "help-bubble", title: text, "aria-label": `Help: ${text}`, "data-help-toggle": forName, onclick: () => { note.hidden = !note.hidden; } }, "?");
  return { button, note };
}
