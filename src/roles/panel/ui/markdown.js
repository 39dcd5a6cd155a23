// A small Markdown subset → DOM nodes (headings, paragraphs, lists, code blocks, tables, quotes,
// rules; inline code, bold, italic, links). Text only ever becomes text nodes, so markup in a page
// shows as written; links keep http(s), in-page and help-page targets only (no javascript:).
import { h } from "./dom.js";

const inlinePattern = /`([^`]+)`|\*\*([^*]+)\*\*|\[([^\]]+)\]\(([^)\s]+)\)|(?<![\w*])\*([^*\s][^*]*?)\*(?![\w*])/;

/** A link target that is safe and useful here: help pages become #/help/NAME. */
export function safeHref(href) {
  const doc = /^(?:\.{0,2}\/)*(?:docs\/)?([A-Za-z0-9_-]+)\.md(#.*)?$/.exec(href);
  if (doc !== null) return `#/help/${doc[1].toLowerCase() === "readme" ? "readme" : doc[1]}`;
  if (/^https?:\/\//i.test(href)) return href;
  return undefined;
}

export function inline(text) {
  const nodes = [];
  let rest = text;
  for (let guard = 0; rest !== "" && guard < 10_000; guard += 1) {
    const match = inlinePattern.exec(rest);
    if (match === null) break;
    if (match.index > 0) nodes.push(rest.slice(0, match.index));
    if (match[1] !== undefined) nodes.push(h("code", {}, match[1]));
    else if (match[2] !== undefined) nodes.push(h("strong", {}, inline(match[2])));
    else if (match[3] !== undefined) {
      const href = safeHref(match[4]);
      nodes.push(href === undefined ? h("span", { class: "link-text" }, inline(match[3])) : h("a", { href, ...(href.startsWith("#") ? {} : { rel: "noopener noreferrer", target: "_blank" }) }, inline(match[3])));
    } else nodes.push(h("em", {}, inline(match[5])));
    rest = rest.slice(match.index + match[0].length);
  }
  if (rest !== "") nodes.push(rest);
  return nodes;
}

const cellsOf = (line) => line.trim().replace(/^\|/, "").replace(/\|$/, "").split(/(?<!\\)\|/).map((cell) => cell.trim().replace(/\\\|/g, "|"));

/** The markdown `text` as an array of block nodes. */
export function renderMarkdown(text) {
  const lines = String(text).replace(/\r\n?/g, "\n").split("\n");
  const blocks = [];
  let i = 0;
  const isBlockStart = (line) => /^(#{1,6}\s|```|\s*[-*+]\s|\s*\d+[.)]\s|>|\|)/.test(line) || /^\s*(-{3,}|\*{3,})\s*$/.test(line);
  while (i < lines.length) {
    const line = lines[i];
    if (line.trim() === "") {
      i += 1;
      continue;
    }
    const heading = /^(#{1,6})\s+(.*)$/.exec(line);
    if (heading !== null) {
      blocks.push(h(`h${Math.min(6, heading[1].length + 1)}`, {}, inline(heading[2].replace(/\s+#+\s*$/, ""))));
      i += 1;
    } else if (line.startsWith("```")) {
      const code = [];
      for (i += 1; i < lines.length && !lines[i].startsWith("```"); i += 1) code.push(lines[i]);
      i += 1;
      blocks.push(h("pre", {}, h("code", {}, code.join("\n"))));
    } else if (/^\s*(-{3,}|\*{3,})\s*$/.test(line)) {
      blocks.push(h("hr", {}));
      i += 1;
    } else if (line.startsWith("|")) {
      const rows = [];
      for (; i < lines.length && lines[i].startsWith("|"); i += 1) rows.push(lines[i]);
      const header = cellsOf(rows[0]);
      const body = rows.slice(rows.length > 1 && /^\|?\s*:?-+/.test(rows[1]) ? 2 : 1);
      blocks.push(h("div", { class: "table-wrap" }, h("table", { class: "md-table" }, h("thead", {}, h("tr", {}, header.map((cell) => h("th", {}, inline(cell))))), h("tbody", {}, body.map((row) => h("tr", {}, cellsOf(row).map((cell) => h("td", {}, inline(cell)))))))));
    } else if (line.startsWith(">")) {
      const quote = [];
      for (; i < lines.length && lines[i].startsWith(">"); i += 1) quote.push(lines[i].replace(/^>\s?/, ""));
      blocks.push(h("blockquote", {}, renderMarkdown(quote.join("\n"))));
    } else if (/^\s*([-*+]|\d+[.)])\s/.test(line)) {
      const ordered = /^\s*\d/.test(line);
      const items = [];
      for (; i < lines.length && lines[i].trim() !== ""; i += 1) {
        const item = /^\s*(?:[-*+]|\d+[.)])\s+(.*)$/.exec(lines[i]);
        if (item !== null) items.push(item[1]);
        else if (items.length > 0) items[items.length - 1] += ` ${lines[i].trim()}`;
      }
      blocks.push(h(ordered ? "ol" : "ul", {}, items.map((item) => h("li", {}, inline(item)))));
    } else {
      const paragraph = [line.trim()];
      for (i += 1; i < lines.length && lines[i].trim() !== "" && !isBlockStart(lines[i]); i += 1) paragraph.push(lines[i].trim());
      blocks.push(h("p", {}, inline(paragraph.join(" "))));
    }
  }
  return blocks;
}
