// Help: the pages of GET /api/help (the repository's docs, built into the panel), each rendered
// from its markdown with markdown.js (text nodes only).
import { get, seg } from "./api.js";
import { h, replace } from "./dom.js";
import { renderMarkdown } from "./markdown.js";

export function renderHelp(page, ctx) {
  const list = h("ul", { id: "help-list", "data-testid": "help-list" });
  const article = h("article", { id: "help-page", "data-testid": "help-page", class: "markdown" });
  // The step-by-step guide first: it is what a user opening Help looks for (the README is a page of the list).
  const name = ctx.rest[0] ?? "guide";
  replace(page, h("h1", {}, "Help"), h("div", { class: "help" }, h("nav", { class: "help-nav", "aria-label": "Help pages" }, list), article));
  get("/api/help").then(({ pages }) => {
    replace(list, pages.map((item) => h("li", {}, h("a", { href: `#/help/${seg(item.name)}`, "data-help": item.name, class: item.name === name ? "active" : "" }, item.title))));
  }, (failure) => replace(list, h("li", { class: "form-error" }, failure.message)));
  article.dataset.help = name;
  get(`/api/help/${seg(name)}`).then((answer) => {
    replace(article, renderMarkdown(answer.markdown));
    article.dataset.loaded = "true";
    document.title = `${answer.title} — DR-Panel`;
  }, (failure) => replace(article, h("p", { class: "form-error", id: "help-error" }, failure.message)));
  return () => {
    document.title = "DR-Panel — druvaa";
  };
}
