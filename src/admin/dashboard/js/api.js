// The admin API client. The admin token lives in this tab's session storage
// and travels only as a Bearer header to this origin: no cookie, so a
// cross-site page cannot make the browser call the API on our behalf.

const TOKEN_KEY = "keygate.admin_token";

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** A refused or failed call: `status`, the problem's stable `code`, its
 * `detail` for people, and `field` on validation errors. */
export class ApiError extends Error {
  constructor(status, code, detail, field) {
    super(detail || code || `HTTP ${status}`);
    this.status = status;
    this.code = code || "http_" + status;
    this.detail = detail || "";
    this.field = field || null;
  }
}

let onUnauthorized = () => {};

/** Called when the server refuses the token (expired session, deleted
 * token): the app signs out. */
export function whenUnauthorized(fn) {
  onUnauthorized = fn;
}

/** Calls `/v1{path}`; resolves to the parsed JSON (or null), rejects with
 * an ApiError. */
export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const t = token();
  if (t) headers.Authorization = "Bearer " + t;
  const init = { method, headers, cache: "no-store", credentials: "omit" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch("/v1" + path, init);
  } catch (e) {
    throw new ApiError(0, "network_error", "The server cannot be reached.");
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch (e) {
      data = null;
    }
  }
  if (!res.ok) {
    const p = data && typeof data === "object" ? data : {};
    const err = new ApiError(res.status, p.code, p.detail, p.field);
    if (res.status === 401 && path !== "/me") onUnauthorized(err);
    throw err;
  }
  return data;
}

/** A query string from the set values of `params`. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return s ? "?" + s : "";
}

/** Every page of a list route (bounded, for small lists like accounts). */
export async function all(path, params = {}, maxPages = 20) {
  const items = [];
  let cursor = null;
  for (let i = 0; i < maxPages; i++) {
    const page = await api("GET", path + query({ ...params, limit: 200, cursor }));
    items.push(...page.items);
    cursor = page.next_cursor;
    if (!cursor) break;
  }
  return items;
}

/** Who the token is: `{id, name, role, account_id}`. */
export function me() {
  return api("GET", "/me");
}
