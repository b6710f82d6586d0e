// Calls to splitter's admin API from the page. Every call sends
// `X-Requested-With: splitter`: with a session cookie, a change needs it (docs/admin-api.md#live-statistics-and-the-stream).

export class AuthRequired extends Error {}

export class ApiFailure extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

const listeners = new Set();

/** The path of a call about one route's pools: routeUrl("shop", "weights") is
 * /api/v1/routes/shop/weights (docs/admin-api.md). */
export function routeUrl(route, path) {
  return `/api/v1/routes/${encodeURIComponent(route)}/${path}`;
}

/** Called with no argument whenever a call answers 401 (the session ended). */
export function onAuthRequired(callback) {
  listeners.add(callback);
}

export async function api(method, path, body) {
  const headers = { "X-Requested-With": "splitter", Accept: "application/json" };
  const init = { method, headers, credentials: "same-origin", cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiFailure(0, "splitter did not answer (is it running?)");
  }
  let data = null;
  if ((response.headers.get("Content-Type") || "").startsWith("application/json")) {
    try {
      data = await response.json();
    } catch {
      data = null;
    }
  }
  if (response.status === 401) {
    for (const callback of listeners) callback();
    throw new AuthRequired((data && data.error) || "sign-in needed");
  }
  if (!response.ok) {
    const message = (data && data.error) || `HTTP ${response.status}`;
    throw new ApiFailure(response.status, message, data);
  }
  return data;
}

/** Trade the admin token for a session cookie. The token is not kept anywhere. */
export async function signIn(token) {
  let response;
  try {
    response = await fetch("/api/v1/session", {
      method: "POST",
      credentials: "same-origin",
      cache: "no-store",
      headers: { "Content-Type": "application/json", "X-Requested-With": "splitter" },
      body: JSON.stringify({ token }),
    });
  } catch {
    return { ok: false, message: "splitter did not answer (is it running?)" };
  }
  if (response.status === 204) return { ok: true };
  if (response.status === 401) {
    return { ok: false, message: "Wrong token. It is admin.token in splitter's config (often $SPLITTER_ADMIN_TOKEN)." };
  }
  if (response.status === 429) {
    const wait = response.headers.get("Retry-After") || "60";
    return { ok: false, message: `Too many wrong tokens: try again in ${wait} s.` };
  }
  let message = `HTTP ${response.status}`;
  try {
    message = (await response.json()).error || message;
  } catch {
    // keep the status line
  }
  return { ok: false, message };
}

export async function signOut() {
  try {
    await fetch("/api/v1/session", {
      method: "DELETE",
      credentials: "same-origin",
      headers: { "X-Requested-With": "splitter" },
    });
  } catch {
    // the cookie goes with the page either way
  }
}
