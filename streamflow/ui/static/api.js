// Talking to the server: JSON GETs, CSRF-protected POSTs, Server-Sent Event feeds.
// Authentication is the HttpOnly cookie set when the page was opened with ?token=...

let session = null;

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function parse(response) {
  let body = null;
  try { body = await response.json(); } catch { body = null; }
  if (!response.ok) {
    const message = (body && (body.error || body.message)) || `${response.status} ${response.statusText}`;
    if (response.status === 401) document.dispatchEvent(new CustomEvent("sf-unauthorized"));
    throw new ApiError(response.status, message);
  }
  return body;
}

/** GET a JSON document (path like "/api/runs", params an object of query values). */
export async function getJSON(path, params) {
  const url = new URL(path, location.origin);
  for (const [key, value] of Object.entries(params || {})) {
    if (Array.isArray(value)) value.forEach((v) => url.searchParams.append(key, v));
    else if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
  }
  return parse(await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } }));
}

/** The session (CSRF value and server version), fetched once. */
export async function getSession() {
  if (!session) session = await getJSON("/api/session");
  return session;
}

/** POST JSON with the CSRF header. */
export async function post(path, body) {
  const { csrf } = await getSession();
  return parse(await fetch(path, {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-SF-CSRF": csrf, Accept: "application/json" },
    body: JSON.stringify(body || {}),
  }));
}

/**
 * Follow an SSE feed: handlers maps event names to functions of the parsed data; onState(s)
 * is told "open", "reconnecting" or "closed". EventSource reconnects by itself. Returns a
 * function that closes the feed.
 */
export function follow(path, handlers, onState) {
  const source = new EventSource(path, { withCredentials: true });
  for (const [name, handler] of Object.entries(handlers)) {
    source.addEventListener(name, (event) => {
      let data = null;
      try { data = JSON.parse(event.data); } catch { return; }
      handler(data);
    });
  }
  source.onopen = () => onState && onState("open");
  source.onerror = () => onState && onState(source.readyState === EventSource.CLOSED ? "closed" : "reconnecting");
  return () => { source.close(); onState && onState("closed"); };
}
