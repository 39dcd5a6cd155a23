// Types of the UI's files imported as text (`with { type: "text" }`) by src/roles/panel/static.ts:
// Bun gives the file's content as a string, and `bun build --compile` embeds it in the binary.
// (index.html is typed by bun-types as an HTML bundle; static.ts casts it.)
declare module "*.css" {
  const text: string;
  export default text;
}
declare module "*.md" {
  const text: string;
  export default text;
}
declare module "uplot/dist/uPlot.iife.min.js" {
  const text: string;
  export default text;
}
declare module "*/ui/actions.js" {
  const text: string;
  export default text;
}
declare module "*/ui/api.js" {
  const text: string;
  export default text;
}
declare module "*/ui/app.js" {
  const text: string;
  export default text;
}
declare module "*/ui/charts.js" {
  const text: string;
  export default text;
}
declare module "*/ui/dom.js" {
  const text: string;
  export default text;
}
declare module "*/ui/forms.js" {
  const text: string;
  export default text;
}
declare module "*/ui/help.js" {
  const text: string;
  export default text;
}
declare module "*/ui/jobs.js" {
  const text: string;
  export default text;
}
declare module "*/ui/lists.js" {
  const text: string;
  export default text;
}
declare module "*/ui/live.js" {
  const text: string;
  export default text;
}
declare module "*/ui/manage.js" {
  const text: string;
  export default text;
}
declare module "*/ui/markdown.js" {
  const text: string;
  export default text;
}
declare module "*/ui/newpage.js" {
  const text: string;
  export default text;
}
declare module "*/ui/recipients.js" {
  const text: string;
  export default text;
}
declare module "*/ui/settings.js" {
  const text: string;
  export default text;
}
declare module "*/ui/wizard-fields.js" {
  const text: string;
  export default text;
}
declare module "*/ui/wizard.js" {
  const text: string;
  export default text;
}
declare module "*/ui/confirm.js" {
  const text: string;
  export default text;
}
