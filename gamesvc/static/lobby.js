// Lobby view: live room list (lobby.watch), create room, join by code, top players.

import { showError as setError } from './api.js';
import { h, setChildren } from './dom.js';
import { loadLeaderboard } from './leaderboard.js';

const STATUS_ORDER = { waiting: 0, playing: 1, finished: 2 };
const STATUS_TEXT = { waiting: 'Waiting', playing: 'Playing', finished: 'Finished' };

function playerCount(summary) {
  if (Array.isArray(summary.players)) return summary.players.length;
  return Number(summary.players) || 0;
}

/** The lobby view. */
export function lobbyView(ctx) {
  let alive = true;
  let watching = false;
  const rooms = new Map(); // id -> RoomSummary
  const rows = new Map(); // id -> {li, ...parts}

  // ---- room list ----
  const list = h('ul', { class: 'room-list', id: 'room-list', testid: 'room-list', 'aria-live': 'off' });
  const empty = h('p', { class: 'empty', testid: 'room-list-empty' }, 'Connecting…');
  const listError = h('p', { class: 'form-error', role: 'alert', hidden: true, testid: 'room-list-error' });

  async function joinRoom(id, spectate, button, errEl) {
    setError(errEl, null);
    button.disabled = true;
    try {
      const reply = await ctx.ws.request('room.join', { room: id, spectate });
      if (!alive) {
        ctx.ws.request('room.leave').catch(() => {});
        return;
      }
      ctx.enterRoom(reply, spectate);
    } catch (err) {
      if (alive) setError(errEl, err);
    } finally {
      button.disabled = false;
    }
  }

  function makeRow(id) {
    const name = h('span', { class: 'room-name' });
    const code = h('code', { class: 'room-code', title: 'Room code' }, id);
    const count = h('span', { class: 'room-count' });
    const status = h('span', { class: 'badge' });
    const error = h('p', { class: 'form-error row-error', role: 'alert', hidden: true, testid: 'row-error' });
    const join = h('button', { type: 'button', class: 'btn btn-primary btn-small', testid: 'join' }, 'Join');
    const spectate = h('button', { type: 'button', class: 'btn btn-small', testid: 'spectate' }, 'Watch');
    join.addEventListener('click', () => joinRoom(id, false, join, error));
    spectate.addEventListener('click', () => joinRoom(id, true, spectate, error));
    const li = h('li', { class: 'room-row', testid: 'room-row', dataset: { roomId: id } },
      h('div', { class: 'room-main' }, name, code),
      h('div', { class: 'room-meta' }, count, status),
      h('div', { class: 'room-actions' }, join, spectate),
      error);
    const row = { li, name, count, status, join, spectate, error };
    rows.set(id, row);
    return row;
  }

  function updateRow(id) {
    const summary = rooms.get(id);
    const row = rows.get(id);
    if (!summary || !row) return;
    const n = playerCount(summary);
    const seats = Number(summary.seats) || 0;
    const st = summary.status || 'waiting';
    row.li.dataset.status = st;
    row.name.textContent = summary.name || id;
    const bots = Number(summary.bots) || 0;
    row.count.textContent = bots ? `${n}/${seats} players (${bots} ${bots === 1 ? 'bot' : 'bots'})` : `${n}/${seats} players`;
    // A person may take a bot's seat in a waiting room, so only people fill it.
    const full = seats > 0 && n - (st === 'waiting' ? bots : 0) >= seats;
    row.status.textContent = STATUS_TEXT[st] || st;
    // A full waiting room gets the plain badge, not the green of an open seat.
    row.status.className = `badge status-${full && st === 'waiting' ? 'full' : st}`;
    // Join stays clickable: the server's answer (room_full, game_in_progress) is shown on the row.
    row.li.dataset.full = String(full);
    row.join.classList.toggle('btn-primary', st === 'waiting' && !full);
    if (full && st === 'waiting') row.status.textContent = 'Full';
    row.join.setAttribute('aria-label', `Join ${summary.name || id}`);
    row.spectate.setAttribute('aria-label', `Watch ${summary.name || id}`);
  }

  function renderList() {
    const sorted = [...rooms.values()].sort((a, b) => {
      const sa = STATUS_ORDER[a.status] ?? 3;
      const sb = STATUS_ORDER[b.status] ?? 3;
      if (sa !== sb) return sa - sb;
      return String(a.name || '').localeCompare(String(b.name || '')) || String(a.id).localeCompare(String(b.id));
    });
    for (const [id, row] of rows) {
      if (!rooms.has(id)) {
        row.li.remove();
        rows.delete(id);
      }
    }
    sorted.forEach((summary, i) => {
      const row = rows.get(summary.id) || makeRow(summary.id);
      updateRow(summary.id);
      // Only move nodes that are out of place, so focus is not lost needlessly.
      if (list.children[i] !== row.li) list.insertBefore(row.li, list.children[i] || null);
    });
    empty.hidden = rooms.size > 0;
    empty.textContent = watching ? 'No open rooms yet. Create one!' : 'Connecting…';
  }

  async function watch() {
    try {
      const reply = await ctx.ws.request('lobby.watch');
      if (!alive) return;
      watching = true;
      rooms.clear();
      for (const summary of reply.rooms || []) if (summary && summary.id) rooms.set(summary.id, summary);
      setError(listError, null);
      renderList();
    } catch (err) {
      if (!alive || err.code === 'offline' || err.code === 'disconnected') return;
      setError(listError, err);
    }
  }

  // ---- create room ----
  const createName = h('input', {
    id: 'create-name', name: 'name', type: 'text', maxlength: 40, autocomplete: 'off',
    placeholder: ctx.user ? `${ctx.user.username}'s room` : 'My room',
  });
  const seatsSelect = h('select', { id: 'create-seats', name: 'seats' },
    h('option', { value: '2' }, '2 players'),
    h('option', { value: '3' }, '3 players'),
    h('option', { value: '4', selected: true }, '4 players'));
  const privateBox = h('input', { id: 'create-private', name: 'private', type: 'checkbox' });
  const createError = h('p', { class: 'form-error', role: 'alert', hidden: true, testid: 'create-room-error' });
  const createButton = h('button', { type: 'submit', class: 'btn btn-primary', testid: 'create-room-submit' },
    'Create room');
  const createForm = h('form', {
    id: 'create-room', class: 'stack', testid: 'create-room', novalidate: true,
    'aria-labelledby': 'create-title',
  },
  h('div', { class: 'field' }, h('label', { for: 'create-name' }, 'Room name'), createName),
  h('div', { class: 'field' }, h('label', { for: 'create-seats' }, 'Seats'), seatsSelect),
  h('div', { class: 'field check' }, privateBox,
    h('label', { for: 'create-private' }, 'Private: only people with the code can join')),
  createError,
  h('div', { class: 'actions' }, createButton));

  createForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    setError(createError, null);
    const name = createName.value.trim() || createName.placeholder;
    createButton.disabled = true;
    try {
      const reply = await ctx.ws.request('room.create', {
        name, seats: Number(seatsSelect.value), private: privateBox.checked,
      });
      if (!alive) {
        ctx.ws.request('room.leave').catch(() => {});
        return;
      }
      ctx.enterRoom(reply, false);
    } catch (err) {
      if (alive) setError(createError, err);
    } finally {
      createButton.disabled = false;
    }
  });

  // ---- join by code ----
  const codeInput = h('input', {
    id: 'join-code-input', name: 'code', type: 'text', maxlength: 12, autocomplete: 'off',
    autocapitalize: 'characters', spellcheck: 'false', placeholder: 'K7QX2M', class: 'code-input',
  });
  const codeError = h('p', { class: 'form-error', role: 'alert', hidden: true, testid: 'join-code-error' });
  const codeJoin = h('button', {
    type: 'submit', class: 'btn btn-primary', name: 'mode', value: 'join', testid: 'join-code-submit',
  }, 'Join');
  const codeWatch = h('button', {
    type: 'submit', class: 'btn', name: 'mode', value: 'spectate', testid: 'spectate-code-submit',
  }, 'Watch');
  const codeForm = h('form', {
    id: 'join-code', class: 'stack', testid: 'join-code', novalidate: true, 'aria-labelledby': 'code-title',
  },
  h('div', { class: 'field' }, h('label', { for: 'join-code-input' }, 'Room code'), codeInput),
  codeError,
  h('div', { class: 'actions' }, codeJoin, codeWatch));

  codeForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const code = codeInput.value.replace(/[\s-]/g, '').toUpperCase();
    if (!code) {
      setError(codeError, 'Enter a room code.');
      codeInput.focus();
      return;
    }
    const spectate = ev.submitter && ev.submitter.value === 'spectate';
    joinRoom(code, spectate, spectate ? codeWatch : codeJoin, codeError);
  });

  // ---- play now (quick play) ----
  const playNowError = h('p', { class: 'form-error', role: 'alert', hidden: true, testid: 'play-now-error' });
  const playNow = h('button', { type: 'button', class: 'btn btn-primary btn-play-now', testid: 'play-now' }, 'Play now');
  playNow.addEventListener('click', async () => {
    setError(playNowError, null);
    playNow.disabled = true;
    try {
      const reply = await ctx.ws.request('room.quick_play');
      if (!alive) {
        ctx.ws.request('room.leave').catch(() => {});
        return;
      }
      ctx.enterRoom(reply, false);
    } catch (err) {
      if (alive) setError(playNowError, err);
    } finally {
      playNow.disabled = false;
    }
  });

  // ---- top players ----
  const top = h('div', { class: 'top-players' }, h('p', { class: 'empty' }, 'Loading…'));

  const el = h('section', { class: 'view view-lobby', testid: 'lobby' },
    h('div', { class: 'view-head' }, h('h1', null, 'Lobby')),
    h('div', { class: 'lobby-grid' },
      h('section', { class: 'card rooms-card', 'aria-labelledby': 'rooms-title' },
        h('h2', { id: 'rooms-title' }, 'Open rooms'),
        listError, list, empty),
      h('div', { class: 'lobby-side' },
        h('section', { class: 'card play-now-card', 'aria-labelledby': 'play-now-title' },
          h('h2', { id: 'play-now-title' }, 'Quick game'),
          h('p', { class: 'hint' }, 'Join the fullest open room, or start one that bots fill if nobody comes.'),
          playNowError, h('div', { class: 'actions' }, playNow)),
        h('section', { class: 'card' }, h('h2', { id: 'create-title' }, 'Create a room'), createForm),
        h('section', { class: 'card' }, h('h2', { id: 'code-title' }, 'Join with a code'), codeForm),
        h('section', { class: 'card', 'aria-labelledby': 'top-title' },
          h('h2', { id: 'top-title' }, 'Top players'), top,
          h('p', { class: 'more' }, h('a', { href: '#/leaderboard' }, 'Full leaderboard')))),
    ));

  loadLeaderboard(ctx, top, 10, () => alive, { playedOnly: true });
  if (ctx.sessionReady) watch();

  return {
    el,
    title: 'Lobby',
    onConnected() {
      watching = false;
      renderList();
      watch();
    },
    onStatus(state) {
      if (state !== 'open') {
        watching = false;
        renderList();
      }
    },
    onEvent(msg) {
      if (msg.event === 'lobby.room' && msg.room && msg.room.id) {
        rooms.set(msg.room.id, msg.room);
        renderList();
      } else if (msg.event === 'lobby.room_closed') {
        const id = typeof msg.room === 'string' ? msg.room : msg.room && msg.room.id;
        if (rooms.delete(id)) renderList();
      } else if (msg.event === 'game.over') {
        loadLeaderboard(ctx, top, 10, () => alive, { playedOnly: true });
      }
    },
    unmount() {
      alive = false;
      if (watching && ctx.ws.connected) ctx.ws.request('lobby.unwatch').catch(() => {});
    },
  };
}
