// The panel's JSON API from the browser: the session cookie goes by itself (same origin); every
// change carries the session's CSRF token in x-csrf-token. A refusal becomes an ApiFailure with
// the server's code, message, hint and the form field it names (error.field, or the "field: …"
// prefix of the message).

let csrfToken = null;

export function setCsrfToken(token) {
  csrfToken = token ?? null;
}

export class ApiFailure extends Error {
  constructor(status, error, body) {
    super(typeof error?.message === "string" ? error.message : `the panel answered ${status}`);
    this.status = status;
    this.code = error?.code ?? "HTTP_" + status;
    this.hint = error?.hint;
    this.field = fieldOf(error);
    this.body = body;
  }
}

const fieldPrefix = /^([A-Za-z_][A-Za-z0-9_]*(?:(?:\.[A-Za-z_][A-Za-z0-9_]*)|\[\d+\])*): /;

/** The form field an error names: error.field, or the "field: …" prefix of its message. */
export function fieldOf(error) {
  if (error === null || typeof error !== "object") return undefined;
  if (typeof error.field === "string" && error.field !== "") return error.field;
  const match = typeof error.message === "string" ? fieldPrefix.exec(error.message) : null;
  return match === null ? undefined : match[1];
}

/** Handlers the app sets: what to do when the session is gone or a password change is due. */
export const sessionEvents = { onLoggedOut: () => {}, onPasswordChangeRequired: () => {} };

export async function api(method, path, body) {
  const headers = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET" && csrfToken !== null) headers["x-csrf-token"] = csrfToken;
  let response;
  try {
    response = await fetch(path, { method, headers, credentials: "same-origin", ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  } catch (error) {
    throw new ApiFailure(0, { code: "NETWORK", message: `the panel did not answer: ${error?.message ?? error}`, hint: "Is the panel running? Retry in a moment" });
  }
  let parsed;
  try {
    parsed = await response.json();
  } catch {
    throw new ApiFailure(response.status, { code: "BAD_ANSWER", message: `the panel answered ${response.status} without JSON` });
  }
  if (!response.ok || parsed?.ok === false) {
    const failure = new ApiFailure(response.status, parsed?.error, parsed);
    if (failure.code === "NOT_LOGGED_IN" && path !== "/api/login") sessionEvents.onLoggedOut();
    if (failure.code === "PASSWORD_CHANGE_REQUIRED") sessionEvents.onPasswordChangeRequired();
    throw failure;
  }
  return parsed;
}

export const get = (path) => api("GET", path);
export const post = (path, body = {}) => api("POST", path, body);
export const put = (path, body = {}) => api("PUT", path, body);
export const del = (path) => api("DELETE", path);

/** Path segment for a name (pair, user, recipient address). */
export const seg = (name) => encodeURIComponent(name);
