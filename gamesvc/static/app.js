// gamesvc browser client: boot, session, routing and the shared context for views.
//
// Routes (hash): #/login, #/lobby, #/room/<ID>, #/leaderboard, #/games[/<username>], #/replay/<gameId>
//
// Test hooks (stable ids / data-testid attributes):
//   page        body[data-view=boot|auth|lobby|room|leaderboard|games|replay]; [data-testid=loading] while
//               the session is being checked
//   header      #conn-status [data-testid=conn-status][data-state=idle|connecting|open|reconnecting|stopped],
//               [data-testid=reconnect] (retry now), [data-testid=current-user][data-username],
//               [data-testid=logout], [data-testid=my-games], [data-testid=nav-lobby],
//               [data-testid=nav-leaderboard], #announcer [data-testid=announcer] (aria-live=polite)
//   auth        #login-form / #signup-form with [name=username], [name=password];
//               buttons [data-testid=login] / [data-testid=signup]; errors [data-testid=login-error] /
//               [data-testid=signup-error] (data-error-code = server error code); [data-testid=auth-notice]
//   errors      every inline error element carries data-error-code with the server's error code
//   lobby       #create-room [data-testid=create-room] with [name=name], [name=seats], [name=private],
//               submit [data-testid=create-room-submit], error [data-testid=create-room-error];
//               #join-code [data-testid=join-code] with [name=code], [data-testid=join-code-submit],
//               [data-testid=spectate-code-submit], [data-testid=join-code-error];
//               [data-testid=room-list] > [data-testid=room-row][data-room-id][data-status][data-full] with
//               [data-testid=join] / [data-testid=spectate] / [data-testid=row-error];
//               [data-testid=leaderboard-row][data-username] (top players panel: players with games);
//               quick play [data-testid=play-now], [data-testid=play-now-error]
//   room        [data-testid=room][data-room-id][data-status], #room-name, #room-code, #room-status,
//               [data-testid=room-notice], [data-testid=room-error], [data-testid=leave],
//               [data-testid=seat][data-username][data-connected][data-ready][data-host][data-turn],
//               [data-testid=seat-empty], [data-testid=ready] (aria-pressed), [data-testid=roll],
//               [data-testid=die][data-value], [data-testid=countdown], [data-testid=turn],
//               [data-testid=spectators][data-count], [data-testid=spectating],
//               [data-testid=board] svg with [data-testid=token][data-username][data-position],
//               [data-testid=move] (move log), [data-testid=chat-message][data-from],
//               [data-testid=chat-input], [data-testid=chat-send], [data-testid=chat-error],
//               [data-testid=game-over] with [data-testid=standing][data-username][data-place],
//               [data-testid=winner], [data-testid=play-again], [data-testid=view-replay],
//               [data-testid=rejoin] / [data-testid=spectate-instead] / [data-testid=back-to-lobby]
//               (notice actions), [data-testid=copy-code], [data-testid=chat-form], [data-testid=seats];
//               bots: [data-testid=seat][data-bot] with [data-testid=bot-badge] and (host) [data-testid=remove-bot],
//               [data-testid=add-bot], [data-testid=bot-takeover] (host's checkbox),
//               [data-testid=bots-countdown][data-seconds] (quick play), [data-testid=token][data-bot]
//   leaderboard [data-testid=leaderboard] table, [data-testid=leaderboard-row][data-username]
//   games       [data-testid=games-list] > [data-testid=game-row][data-game-id], [data-testid=replay-link],
//               [data-testid=game-bot] (a player that was a bot)
//   replay      [data-testid=replay-first|replay-prev|replay-play|replay-next|replay-last],
//               [data-testid=replay-scrubber], [data-testid=replay-step][data-step][data-total],
//               [data-testid=replay-move], [data-testid=replay-winner]
//
// Behaviour worth knowing when driving it:
//   - The session is detected with `me` over the WebSocket (the handshake carries the cookie); HTTP
//     GET /api/me is only a fallback when the socket cannot connect within 5 s.
//   - Leaving the room view (Leave button, nav link, back button) sends room.leave; navigating away from
//     a game you are playing first asks window.confirm (dismissed = stay). Reloading the page does not
//     leave: after (re)connect the client calls `me` and rejoins me.room (or the room kept in
//     sessionStorage for this tab), and re-sends lobby.watch in the lobby.
//   - After room.detached (e.g. taken_over) the tab does not rejoin by itself until "Continue here".
//   - room.closed {room} (sent to spectators when the last player leaves) shows a notice in the room.
//   - session.ended {reason} (logged out in another tab or device, or expired) returns to the login page
//     with [data-testid=auth-notice] saying why.

import { api, errorText } from './api.js';
import { GameSocket, defaultSocketUrl } from './ws.js';
import { h, setChildren } from './dom.js';
import { authView } from './auth.js';
import { lobbyView } from './lobby.js';
import { roomView } from './room.js';
import { leaderboardView } from './leaderboard.js';
import { gamesView, replayView } from './history.js';

const ROOM_KEY = 'gamesvc.room';

const els = {
  view: document.getElementById('view'),
  nav: document.getElementById('main-nav'),
  conn: document.getElementById('conn-status'),
  reconnect: document.getElementById('reconnect'),
  user: document.getElementById('current-user'),
  logout: document.getElementById('logout'),
  myGames: document.getElementById('my-games-link'),
  announcer: document.getElementById('announcer'),
};

const ws = new GameSocket(defaultSocketUrl());
let current = null; // {key, view}
let booting = true; // until we know whether the session cookie is valid
let afterLogin = null;
let authMessage = null;
let connTimer = null;

/** The context every view receives. */
const ctx = {
  ws,
  user: null,
  token: null,
  sessionReady: false, // true once `me` answered on the current connection
  pendingJoin: null, // {id, reply, spectate} handed from the lobby to the room view
  detached: new Set(), // rooms this tab was detached from (no automatic rejoin)

  navigate(hash) {
    if (location.hash === hash) route();
    else location.hash = hash;
  },

  /** Announce text politely to screen readers. */
  announce(text) {
    if (!text) return;
    const p = document.createElement('p');
    p.textContent = text;
    els.announcer.appendChild(p);
    while (els.announcer.childElementCount > 8) els.announcer.firstElementChild.remove();
  },

  /** The room this tab should return to after a reload or reconnect. */
  storedRoom() {
    try {
      const raw = sessionStorage.getItem(ROOM_KEY);
      const parsed = raw ? JSON.parse(raw) : null;
      return parsed && typeof parsed.id === 'string' ? parsed : null;
    } catch {
      return null;
    }
  },
  storeRoom(id, spectate) {
    try {
      sessionStorage.setItem(ROOM_KEY, JSON.stringify({ id, spectate: !!spectate }));
    } catch {
      // storage unavailable (private mode): reconnect still works from `me`
    }
  },
  forgetRoom(id) {
    try {
      const stored = ctx.storedRoom();
      if (!id || (stored && stored.id === id)) sessionStorage.removeItem(ROOM_KEY);
    } catch {
      // ignore
    }
  },

  /** Called by the lobby after a successful room.join / room.create. */
  enterRoom(reply, spectate) {
    const id = reply.room.id;
    ctx.pendingJoin = { id, reply, spectate: !!spectate };
    ctx.detached.delete(id);
    ctx.navigate(`#/room/${encodeURIComponent(id)}`);
  },

  setUser(user) {
    ctx.user = user || null;
    renderHeader();
  },

  /** Refresh the user's stats (after a game). */
  async refreshUser() {
    try {
      const reply = await ws.request('me');
      if (reply.user) ctx.setUser(reply.user);
    } catch {
      // not important enough to report
    }
  },

  /** After a successful HTTP login or signup. */
  loggedIn(user, token) {
    ctx.token = token || null;
    ctx.setUser(user);
    ctx.detached.clear();
    // A fresh handshake carries the new session cookie.
    ctx.sessionReady = false;
    ws.restart();
    const target = afterLogin && !afterLogin.startsWith('#/login') ? afterLogin : '#/lobby';
    afterLogin = null;
    ctx.navigate(target);
  },
};

function parseRoute() {
  const raw = location.hash.replace(/^#\/?/, '');
  let parts;
  try {
    parts = raw.split('/').map((p) => decodeURIComponent(p));
  } catch {
    parts = [''];
  }
  const [name, arg] = parts;
  switch (name) {
    case 'login':
    case 'signup':
      return { name: 'auth' };
    case 'room':
      return arg ? { name: 'room', id: arg.toUpperCase() } : { name: 'lobby' };
    case 'leaderboard':
      return { name: 'leaderboard' };
    case 'games':
      return { name: 'games', username: arg || null };
    case 'replay':
      return arg ? { name: 'replay', id: arg } : { name: 'lobby' };
    default:
      return { name: 'lobby' };
  }
}

function routeKey(r) {
  return `${r.name}:${r.id || r.username || ''}`;
}

function unmountCurrent() {
  if (!current) return;
  try {
    current.view.unmount?.();
  } catch (err) {
    console.error('unmount failed', err);
  }
  current = null;
}

function route() {
  const r = parseRoute();
  if (booting) {
    mount({ name: 'boot' });
    return;
  }
  if (!ctx.user) {
    if (r.name !== 'auth') afterLogin = location.hash || null;
    mount({ name: 'auth' });
    return;
  }
  if (r.name === 'auth') {
    history.replaceState(null, '', '#/lobby');
    mount({ name: 'lobby' });
    return;
  }
  if (r.name === 'games' && !r.username) r.username = ctx.user.username;
  mount(r);
}

function mount(r) {
  const key = routeKey(r);
  if (current && current.key === key) return;
  // Leaving a game in progress forfeits it: ask first (only for navigation, not the Leave button).
  if (current && r.name !== 'auth' && current.view.confirmLeave && !current.view.confirmLeave()) {
    history.replaceState(null, '', current.hash);
    return;
  }
  unmountCurrent();
  let view;
  switch (r.name) {
    case 'boot':
      view = { el: h('p', { class: 'empty', testid: 'loading' }, 'Loading…'), title: '' };
      break;
    case 'auth':
      view = authView(ctx, { message: authMessage });
      authMessage = null;
      break;
    case 'room':
      view = roomView(ctx, { id: r.id });
      break;
    case 'leaderboard':
      view = leaderboardView(ctx);
      break;
    case 'games':
      view = gamesView(ctx, { username: r.username });
      break;
    case 'replay':
      view = replayView(ctx, { id: r.id });
      break;
    default:
      view = lobbyView(ctx);
  }
  current = { key, view, route: r, hash: location.hash || '#/lobby' };
  setChildren(els.view, view.el);
  document.title = view.title ? `${view.title} · Dice Race` : 'Dice Race';
  document.body.dataset.view = r.name;
  renderHeader();
  const heading = view.el.querySelector('h1');
  if (heading) {
    heading.setAttribute('tabindex', '-1');
    heading.focus({ preventScroll: true });
  }
  window.scrollTo(0, 0);
}

function renderHeader() {
  const loggedIn = !!ctx.user;
  els.nav.hidden = !loggedIn;
  els.logout.hidden = !loggedIn;
  els.user.hidden = !loggedIn;
  // Logged out there is no socket on purpose: no "Offline" alarm on the login page.
  els.conn.hidden = !loggedIn && !booting;
  if (loggedIn) {
    const { username, wins = 0, games = 0 } = ctx.user;
    setChildren(els.user,
      h('span', { class: 'who' }, username),
      h('span', { class: 'stats' }, ` ${wins} ${wins === 1 ? 'win' : 'wins'} · ${games} ${games === 1 ? 'game' : 'games'}`));
    els.user.dataset.username = username;
    els.myGames.setAttribute('href', `#/games/${encodeURIComponent(username)}`);
  }
  const name = current ? current.route.name : '';
  for (const link of els.nav.querySelectorAll('a')) {
    const active = (link.dataset.route === name)
      || (name === 'games' && link.dataset.route === 'games' && current.route.username === ctx.user?.username);
    if (active) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

let lastConnState = 'idle';

function renderConnection({ state, retryAt }) {
  if (lastConnState === 'open' && state === 'reconnecting') ctx.announce('Connection lost. Reconnecting.');
  if (lastConnState === 'reconnecting' && state === 'open') ctx.announce('Reconnected.');
  lastConnState = state;
  els.conn.dataset.state = state;
  clearInterval(connTimer);
  connTimer = null;
  const text = {
    idle: 'Offline',
    connecting: 'Connecting…',
    open: 'Online',
    reconnecting: 'Reconnecting…',
    stopped: 'Offline',
  }[state] || state;
  const label = els.conn.querySelector('.conn-text');
  label.textContent = text;
  els.reconnect.hidden = !(state === 'reconnecting' && retryAt && ctx.user);
  if (state === 'reconnecting' && retryAt) {
    const tick = () => {
      const secs = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
      label.textContent = secs > 0 ? `Reconnecting in ${secs} s…` : 'Reconnecting…';
    };
    tick();
    connTimer = setInterval(tick, 500);
  }
}

/** The session ended behind our back (revoked or expired). */
function sessionEnded(message) {
  ws.stop();
  ctx.sessionReady = false;
  ctx.token = null;
  ctx.forgetRoom();
  unmountCurrent();
  ctx.setUser(null);
  authMessage = message || 'Your session has ended. Please log in again.';
  route();
}

/** First answer to "who am I": show the app, or the login page. */
function finishBoot(user, message = null) {
  if (!booting) return;
  booting = false;
  clearTimeout(bootFallback);
  if (user) ctx.setUser(user);
  else {
    ws.stop();
    ctx.setUser(null);
    authMessage = message;
  }
  route();
}

// If the WebSocket cannot tell us soon, ask over HTTP instead.
let bootFallback = null;

async function onSocketOpen() {
  ctx.sessionReady = false;
  let me;
  try {
    me = await ws.request('me');
  } catch (err) {
    if (err.code !== 'unauthenticated') return; // dropped again; the next open retries
    me = null;
    if (booting) {
      // No valid session cookie: a normal first visit.
      finishBoot(null);
      return;
    }
    if (ctx.token) {
      try {
        await ws.request('resume', { token: ctx.token });
        me = await ws.request('me');
      } catch (err2) {
        if (err2.code !== 'unauthenticated' && err2.code !== 'bad_credentials') return;
        me = null;
      }
    }
    if (!me) {
      sessionEnded();
      return;
    }
  }
  if (!ws.connected) return;
  if (booting) finishBoot(me.user);
  ctx.setUser(me.user);
  ctx.sessionReady = true;

  // Go back to the room where we hold a seat (or that this tab was in), unless detached from it.
  const seat = typeof me.room === 'string' ? me.room : (me.room && me.room.id) || null;
  const stored = ctx.storedRoom();
  const r = current ? current.route : parseRoute();
  let target = null;
  if (seat && !ctx.detached.has(seat) && (r.name === 'lobby' || (r.name === 'room' && r.id !== seat))) {
    target = seat;
  } else if (!seat && stored && r.name === 'lobby' && !ctx.detached.has(stored.id)) {
    target = stored.id;
  }
  if (target) {
    ctx.navigate(`#/room/${encodeURIComponent(target)}`);
    return;
  }
  current?.view.onConnected?.(me);
}

async function logout() {
  els.logout.disabled = true;
  try {
    if (current?.view.leaveQuietly) {
      await Promise.race([current.view.leaveQuietly(), new Promise((r) => setTimeout(r, 2000))]);
    }
    ws.stop();
    try {
      await api('POST', '/api/logout', {}); // a JSON body: the server refuses state-changing POSTs without one or a same-origin Origin
    } catch (err) {
      console.warn('logout:', errorText(err));
    }
  } finally {
    els.logout.disabled = false;
    ctx.sessionReady = false;
    ctx.token = null;
    ctx.forgetRoom();
    ctx.detached.clear();
    unmountCurrent();
    ctx.setUser(null);
    afterLogin = null;
    history.replaceState(null, '', '#/login');
    route();
  }
}

async function boot() {
  ws.on('status', (st) => {
    renderConnection(st);
    if (st.state !== 'open') ctx.sessionReady = false;
    current?.view.onStatus?.(st.state);
  });
  ws.on('open', () => {
    onSocketOpen().catch((err) => console.error('session restore failed', err));
  });
  ws.on('*', (msg) => {
    if (msg.event === 'session.ended') {
      // Logged out in another tab or device, or expired: this socket is signed out already.
      sessionEnded(msg.reason === 'expired'
        ? 'Your session expired. Please log in again.'
        : 'You were logged out (in another tab or on another device). Please log in again.');
      return;
    }
    if (msg.event === 'game.over') {
      // The server stores the result asynchronously: ask again shortly after.
      ctx.refreshUser();
      setTimeout(() => ctx.refreshUser(), 1500);
      setTimeout(() => ctx.refreshUser(), 5000);
    }
    current?.view.onEvent?.(msg);
  });
  els.logout.addEventListener('click', logout);
  els.reconnect.addEventListener('click', () => ws.retryNow());
  window.addEventListener('hashchange', route);
  renderConnection({ state: 'idle' });
  route(); // "Loading…" until the session is known

  // The WebSocket handshake carries the session cookie, so `me` over it tells whether
  // we are logged in without a 401 in the console on a first visit.
  ws.start();
  bootFallback = setTimeout(async () => {
    if (!booting) return;
    try {
      const reply = await api('GET', '/api/me');
      finishBoot(reply.user);
      ws.start();
    } catch (err) {
      finishBoot(null, err.code === 'unauthenticated' ? null : errorText(err));
    }
  }, 5000);
}

boot();
