// HTTP API client (same origin, session cookie) and friendly error messages.

/** Error raised for a failed HTTP call or WebSocket request. */
export class ServiceError extends Error {
  constructor(code, message, { status = 0, retryAfter = null } = {}) {
    super(message || code);
    this.name = 'ServiceError';
    this.code = code;
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

const FRIENDLY = {
  username_taken: 'That username is already taken.',
  bad_credentials: 'Wrong username or password.',
  rate_limited: 'Too many attempts. Please wait a moment and try again.',
  room_not_found: 'No room with that code.',
  room_full: 'That room is full. You can still watch it.',
  already_in_room: 'You are already in a room. Leave it first.',
  not_in_room: 'You are not in that room any more.',
  not_your_turn: 'It is not your turn.',
  game_not_started: 'The game has not started yet.',
  game_in_progress: 'That game is already being played. You can watch it instead.',
  unavailable: 'The service is temporarily unavailable. Please try again shortly.',
  unauthenticated: 'Your session has ended. Please log in again.',
  internal: 'The server hit an error. Please try again.',
  offline: 'Not connected to the server. Reconnecting…',
  disconnected: 'The connection dropped before the server answered. Please try again.',
  timeout: 'The server did not answer in time. Please try again.',
  network: 'Cannot reach the server. Check your connection.',
};

// For these the server's own message is the more precise one.
const PREFER_SERVER_MESSAGE = new Set(['bad_request', 'invalid_username', 'invalid_password']);

/** A human sentence for an error (ServiceError or anything else). */
export function errorText(err) {
  if (!(err instanceof ServiceError)) return 'Something went wrong. Please try again.';
  let text;
  if (PREFER_SERVER_MESSAGE.has(err.code) && err.message && err.message !== err.code) text = err.message;
  else text = FRIENDLY[err.code] || (err.message && err.message !== err.code ? err.message : null);
  if (!text) {
    if (err.code === 'invalid_username') text = 'Usernames are 3–20 characters: letters, digits, _ or -.';
    else if (err.code === 'invalid_password') text = 'Passwords must be 8–72 bytes long.';
    else text = 'Something went wrong. Please try again.';
  }
  if (err.retryAfter) text += ` (try again in ${err.retryAfter} s)`;
  return text;
}

// Estimated server clock minus local clock, in ms, from HTTP Date headers.
let clockOffset = 0;

/** The current time by the server's clock (ms since epoch), as well as we know it. */
export function serverNow() {
  return Date.now() + clockOffset;
}

function noteServerDate(res, sentAt) {
  const header = res.headers.get('Date');
  if (!header) return;
  const server = Date.parse(header);
  if (Number.isNaN(server)) return;
  // The header has one-second resolution: only correct clearly wrong local clocks.
  const offset = server + 500 - (sentAt + Date.now()) / 2;
  clockOffset = Math.abs(offset) > 2000 ? offset : 0;
}

/** Call the HTTP API; resolves to the parsed JSON body or throws ServiceError. */
export async function api(method, path, body) {
  const init = {
    method,
    credentials: 'same-origin',
    cache: 'no-store',
    headers: { Accept: 'application/json' },
  };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const sentAt = Date.now();
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    throw new ServiceError('network', 'network error');
  }
  noteServerDate(res, sentAt);
  let data = null;
  try {
    data = await res.json();
  } catch {
    data = null;
  }
  if (!res.ok) {
    const retry = Number.parseInt(res.headers.get('Retry-After') || '', 10);
    throw new ServiceError(
      (data && data.error) || (res.status === 401 ? 'unauthenticated' : `http_${res.status}`),
      (data && data.message) || res.statusText,
      { status: res.status, retryAfter: Number.isFinite(retry) ? retry : null },
    );
  }
  return data || {};
}

// Show an error (a ServiceError or a plain message) in an inline error element, or hide it when err is null.
export function showError(el, err) {
  if (!err) {
    el.hidden = true;
    el.textContent = '';
    delete el.dataset.errorCode;
    return;
  }
  el.textContent = typeof err === 'string' ? err : errorText(err);
  if (err.code) el.dataset.errorCode = err.code;
  else delete el.dataset.errorCode;
  el.hidden = false;
}
