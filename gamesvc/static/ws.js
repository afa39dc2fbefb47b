// The WebSocket client: request/reply by id, event dispatch, auto-reconnect.
//
//   const sock = new GameSocket(url);
//   sock.on('open', () => ...);            // after every (re)connect
//   sock.on('room.state', (msg) => ...);   // server events by name; '*' gets every event
//   sock.on('status', ({state, retryAt}) => ...);
//   sock.start();
//   const reply = await sock.request('room.join', {room: 'K7QX2M'});  // rejects with ServiceError

import { ServiceError } from './api.js';

const BASE_DELAY_MS = 500;
const MAX_DELAY_MS = 10000;
const STABLE_MS = 10000; // a connection that lived this long resets the backoff
const PING_EVERY_MS = 25000;
const PING_TIMEOUT_MS = 10000;
const REQUEST_TIMEOUT_MS = 15000;

/** The default WebSocket URL: same host, /ws, ws: or wss: to match the page. */
export function defaultSocketUrl() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/ws`;
}

/** One auto-reconnecting WebSocket speaking the gamesvc envelope. */
export class GameSocket {
  constructor(url) {
    this.url = url;
    this.sock = null;
    this.wanted = false;
    this.attempt = 0;
    this.nextId = 1;
    this.pending = new Map();
    this.handlers = new Map();
    this.retryTimer = null;
    this.pingTimer = null;
    this.openedAt = 0;
    this.state = 'idle'; // idle | connecting | open | reconnecting | stopped
    this.retryAt = null;

    window.addEventListener('online', () => this.retryNow());
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible') this.retryNow();
    });
  }

  /** Subscribe to an event name ('open', 'close', 'status', '*', or a server event). */
  on(name, fn) {
    if (!this.handlers.has(name)) this.handlers.set(name, new Set());
    this.handlers.get(name).add(fn);
    return () => this.handlers.get(name).delete(fn);
  }

  emit(name, payload) {
    for (const fn of [...(this.handlers.get(name) || [])]) {
      try {
        fn(payload);
      } catch (err) {
        console.error(`handler for ${name} failed`, err);
      }
    }
  }

  /** True while the socket is open. */
  get connected() {
    return this.state === 'open';
  }

  /** Start connecting (and keep reconnecting until stop()). */
  start() {
    this.wanted = true;
    this.attempt = 0;
    if (!this.sock) this.connect();
  }

  /** Close for good (logout). */
  stop() {
    this.wanted = false;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const sock = this.sock;
    if (sock) this.drop(sock, 'stopped');
    this.setState('stopped');
  }

  /** Close and open a fresh connection (e.g. so the handshake carries a new cookie). */
  restart() {
    this.stop();
    this.start();
  }

  /** Skip the backoff wait and try now, if we are waiting to reconnect. */
  retryNow() {
    if (this.wanted && !this.sock && this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
      this.connect();
    }
  }

  setState(state, retryAt = null) {
    this.state = state;
    this.retryAt = retryAt;
    this.emit('status', { state, retryAt });
  }

  connect() {
    this.retryTimer = null;
    this.setState(this.attempt === 0 ? 'connecting' : 'reconnecting');
    let sock;
    try {
      sock = new WebSocket(this.url);
    } catch (err) {
      console.error('cannot open WebSocket', err);
      this.scheduleRetry();
      return;
    }
    this.sock = sock;
    sock.addEventListener('open', () => {
      if (sock !== this.sock) return;
      this.openedAt = Date.now();
      this.setState('open');
      this.startPing();
      this.emit('open', {});
    });
    sock.addEventListener('message', (ev) => {
      if (sock !== this.sock) return;
      this.receive(ev.data);
    });
    sock.addEventListener('close', (ev) => {
      if (sock !== this.sock) return;
      this.drop(sock, 'disconnected', ev.code, ev.reason);
      if (this.wanted) this.scheduleRetry();
    });
    // 'error' is always followed by 'close', which does the work.
  }

  /** Forget a socket: close it, fail its pending requests, tell listeners. */
  drop(sock, code, closeCode = 1000, reason = '') {
    if (sock !== this.sock) return;
    this.sock = null;
    this.stopPing();
    if (this.openedAt && Date.now() - this.openedAt >= STABLE_MS) this.attempt = 0;
    this.openedAt = 0;
    try {
      if (sock.readyState === WebSocket.OPEN || sock.readyState === WebSocket.CONNECTING) {
        sock.close(1000);
      }
    } catch {
      // already closing
    }
    for (const { reject, timer } of this.pending.values()) {
      clearTimeout(timer);
      reject(new ServiceError(code, code));
    }
    this.pending.clear();
    this.emit('close', { code: closeCode, reason });
  }

  scheduleRetry() {
    const base = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** this.attempt);
    const delay = Math.round(base / 2 + Math.random() * (base / 2));
    this.attempt += 1;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
    this.setState('reconnecting', Date.now() + delay);
  }

  startPing() {
    this.stopPing();
    this.pingTimer = setInterval(() => {
      const sock = this.sock;
      this.request('ping', {}, { timeout: PING_TIMEOUT_MS }).catch((err) => {
        // A silent, half-dead connection: drop it and reconnect.
        if (err.code === 'timeout' && sock && sock === this.sock) {
          this.drop(sock, 'disconnected', 4000, 'ping timeout');
          if (this.wanted) this.scheduleRetry();
        }
      });
    }, PING_EVERY_MS);
  }

  stopPing() {
    clearInterval(this.pingTimer);
    this.pingTimer = null;
  }

  receive(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      console.warn('ignoring a frame that is not JSON');
      return;
    }
    if (!msg || typeof msg !== 'object') return;
    if ('re' in msg) {
      const entry = this.pending.get(msg.re) ?? this.pending.get(Number(msg.re));
      if (!entry) {
        if (msg.ok === false) console.warn('server error without a request', msg.error, msg.message);
        return;
      }
      this.pending.delete(entry.id);
      clearTimeout(entry.timer);
      if (msg.ok) entry.resolve(msg);
      else entry.reject(new ServiceError(msg.error || 'internal', msg.message || ''));
      return;
    }
    if (typeof msg.event === 'string') {
      this.emit(msg.event, msg);
      this.emit('*', msg);
    }
  }

  /** Send {op, id, ...args}; resolves with the ok reply, rejects with ServiceError. */
  request(op, args = {}, { timeout = REQUEST_TIMEOUT_MS } = {}) {
    const sock = this.sock;
    if (!sock || this.state !== 'open') {
      return Promise.reject(new ServiceError('offline', 'not connected'));
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.pending.delete(id)) reject(new ServiceError('timeout', 'no reply'));
      }, timeout);
      this.pending.set(id, { id, resolve, reject, timer });
      try {
        sock.send(JSON.stringify({ ...args, op, id }));
      } catch {
        this.pending.delete(id);
        clearTimeout(timer);
        reject(new ServiceError('offline', 'send failed'));
      }
    });
  }
}
