// Room view: seats, ready/roll, board, die, turn countdown, chat, game over.

import { errorText, serverNow, showError as setError } from './api.js';
import { BoardView, DieView, describeRoll } from './board.js';
import { h, setChildren, shortTime } from './dom.js';
import { api } from './api.js';
import { newClientSeed, validClientSeed, verdictView, verifyRecord } from './fairness.js';

const CHAT_MAX = 500;
const CHAT_KEEP = 200;
const MOVES_KEEP = 40;
const DETACH_REASONS = {
  taken_over: 'You opened this room in another tab or window, so this one stopped following it.',
  closed: 'This room has closed.',
  kicked: 'You were removed from this room.',
};

/** Map usernames to colour slots 0..3: turn order when known, else seat order. */
export function slotMap(names) {
  const slots = new Map();
  const used = new Set();
  for (const name of names) {
    if (slots.has(name)) continue;
    let slot = 0;
    while (used.has(slot) && slot < 3) slot += 1;
    slots.set(name, slot);
    used.add(slot);
  }
  return slots;
}

function isTyping() {
  const a = document.activeElement;
  return !!a && (a.tagName === 'INPUT' || a.tagName === 'TEXTAREA' || a.tagName === 'SELECT');
}

/** The room view for room `id`. */
export function roomView(ctx, { id }) {
  const me = () => (ctx.user ? ctx.user.username : null);
  let state = null; // RoomState
  let joined = false;
  let joining = false;
  let unmounted = false;
  let left = false;
  let detached = ctx.detached.has(id);
  let spectateWanted = false;
  let deadline = null; // ms since epoch (server clock)
  let turnTotal = null; // ms the current turn had when it started
  let standings = null;
  let winner = null;
  let gameId = null;
  let rollPending = false;
  let readyPending = false;
  let syncTimer = null;
  // Provably fair dice: the commit shown before the game, and the dice seen live by roll number.
  let commitBefore = null;
  let seenDice = null; // from game.started on

  const stored = ctx.storedRoom();
  if (stored && stored.id === id) spectateWanted = !!stored.spectate;

  const board = new BoardView();
  const die = new DieView();
  board.onIdle = () => {
    reconcile();
    renderGameOver();
  };

  // ---- DOM ----
  const nameEl = h('h1', { id: 'room-name', class: 'room-name' }, id);
  const codeEl = h('code', { id: 'room-code', testid: 'room-code' }, id);
  const copyBtn = h('button', { type: 'button', class: 'btn btn-small btn-ghost', testid: 'copy-code' }, 'Copy');
  const privateBadge = h('span', { class: 'badge badge-private', hidden: true }, 'Private');
  const leaveBtn = h('button', { type: 'button', class: 'btn', testid: 'leave' }, 'Leave room');
  const statusEl = h('p', { id: 'room-status', class: 'room-status', testid: 'room-status' }, 'Joining…');
  const notice = h('div', { class: 'notice', testid: 'room-notice', hidden: true });
  const roomError = h('p', { class: 'form-error', role: 'alert', testid: 'room-error', hidden: true });

  const turnEl = h('p', { class: 'turn', testid: 'turn' });
  const timerEl = h('span', { class: 'countdown', testid: 'countdown' });
  const progress = h('progress', { class: 'turn-progress', max: 1, value: 0, 'aria-hidden': 'true' });
  const rollBtn = h('button', { type: 'button', id: 'roll', class: 'btn btn-primary btn-roll', testid: 'roll', disabled: true }, 'Roll');

  const verdict = verdictView();
  const overTitle = h('h2', { tabindex: '-1' }, 'Game over');
  const overWinner = h('p', { class: 'winner', testid: 'winner' });
  const overList = h('ol', { class: 'standings' });
  const playAgain = h('button', { type: 'button', class: 'btn btn-primary', testid: 'play-again' }, 'Play again');
  const replayLink = h('a', { class: 'btn', testid: 'view-replay', hidden: true }, 'Watch replay');
  const overPanel = h('section', { class: 'card game-over', testid: 'game-over', hidden: true, 'aria-labelledby': 'over-title' },
    overTitle, overWinner, overList, verdict.el, h('div', { class: 'actions' }, playAgain, replayLink));
  overTitle.id = 'over-title';

  const moveLog = h('ul', { class: 'move-log', testid: 'move-log', 'aria-label': 'Moves, newest first' });

  const seatsEl = h('ul', { class: 'seats', id: 'seats', testid: 'seats' });
  const spectatorsEl = h('p', { class: 'spectators', testid: 'spectators', id: 'spectator-count' });
  const roleEl = h('p', { class: 'badge badge-spectating', testid: 'spectating', hidden: true }, 'You are watching');
  const readyBtn = h('button', {
    type: 'button', id: 'ready', class: 'btn btn-toggle', testid: 'ready', 'aria-pressed': 'false', hidden: true,
  }, 'Ready');
  const readyHint = h('p', { class: 'hint', hidden: true },
    'The game starts when every seated player (at least 2) is ready.');
  const seedInput = h('input', {
    id: 'client-seed', name: 'client_seed', type: 'text', maxlength: 64, autocomplete: 'off', spellcheck: 'false',
    testid: 'client-seed', value: newClientSeed(),
  });
  const seedField = h('div', { class: 'seed-field', hidden: true },
    h('label', { for: 'client-seed' }, 'Your dice seed'), seedInput,
    h('p', { class: 'hint' }, 'Mixed into every die of the next game, so the server cannot pick the dice. '
      + 'Keep this random one or type your own.'));
  const commitEl = h('p', { class: 'hint fairness-commit', testid: 'commit', hidden: true });
  // Bots: the host adds them to free seats; quick play's countdown says when bots fill the room.
  const addBotBtn = h('button', { type: 'button', class: 'btn btn-small', testid: 'add-bot', hidden: true }, 'Add a bot');
  const botsCountdown = h('p', { class: 'bots-countdown', testid: 'bots-countdown', hidden: true });
  const takeoverBox = h('input', { id: 'bot-takeover', type: 'checkbox', testid: 'bot-takeover' });
  const takeoverField = h('div', { class: 'field check takeover', hidden: true }, takeoverBox,
    h('label', { for: 'bot-takeover' }, 'When a player leaves a game, a bot plays on for them'));

  const chatLog = h('ol', { class: 'chat-log', testid: 'chat-log', 'aria-label': 'Chat messages', tabindex: '0' });
  const chatInput = h('input', {
    id: 'chat-input', name: 'text', type: 'text', maxlength: CHAT_MAX, autocomplete: 'off',
    testid: 'chat-input', placeholder: 'Say something…',
  });
  const chatSend = h('button', { type: 'submit', class: 'btn', testid: 'chat-send' }, 'Send');
  const chatError = h('p', { class: 'form-error', role: 'alert', testid: 'chat-error', hidden: true });
  const chatForm = h('form', { class: 'chat-form', testid: 'chat-form', novalidate: true },
    h('label', { for: 'chat-input', class: 'sr-only' }, 'Chat message'),
    chatInput, chatSend);

  const el = h('section', { class: 'view view-room', testid: 'room', dataset: { roomId: id } },
    h('div', { class: 'room-head' },
      h('div', { class: 'room-title' }, nameEl,
        h('span', { class: 'room-code-wrap' }, 'Code ', codeEl, copyBtn), privateBadge),
      leaveBtn),
    statusEl,
    notice,
    roomError,
    h('div', { class: 'room-grid' },
      h('div', { class: 'board-col' },
        overPanel,
        h('div', { class: 'turn-bar' },
          die.el,
          h('div', { class: 'turn-info' }, turnEl, h('div', { class: 'timer' }, progress, timerEl)),
          rollBtn),
        h('div', { class: 'board-wrap' }, board.el),
        h('section', { class: 'card moves-card', 'aria-labelledby': 'moves-title' },
          h('h2', { id: 'moves-title' }, 'Moves'), moveLog)),
      h('aside', { class: 'side-col' },
        h('section', { class: 'card', 'aria-labelledby': 'players-title' },
          h('h2', { id: 'players-title' }, 'Players'),
          seatsEl, botsCountdown, addBotBtn, spectatorsEl, roleEl, seedField, readyBtn, readyHint, commitEl,
          takeoverField),
        h('section', { class: 'card chat-card', 'aria-labelledby': 'chat-title' },
          h('h2', { id: 'chat-title' }, 'Chat'), chatLog, chatForm, chatError))));

  // ---- helpers ----

  function showNotice(text, actions = []) {
    if (!text) {
      notice.hidden = true;
      notice.replaceChildren();
      return;
    }
    setChildren(notice, h('p', null, text), actions.length ? h('div', { class: 'actions' }, actions) : null);
    notice.hidden = false;
  }

  function noticeButton(label, testid, onClick, primary = false) {
    const b = h('button', { type: 'button', class: primary ? 'btn btn-primary' : 'btn', testid }, label);
    b.addEventListener('click', onClick);
    return b;
  }

  function players() {
    return (state && Array.isArray(state.players)) ? state.players : [];
  }

  function myPlayer() {
    return players().find((p) => p.username === me()) || null;
  }

  function slots() {
    const names = players().map((p) => p.username);
    const order = state && Array.isArray(state.order) && state.order.length ? state.order : [];
    return slotMap([...order.filter((n) => names.includes(n)), ...names]);
  }

  function active() {
    return joined && !detached && ctx.ws.connected;
  }

  // ---- state ----
  function applyState(next, { force = false } = {}) {
    if (!next || next.id !== id) return;
    if (!force && state && Number.isFinite(next.version) && Number.isFinite(state.version)
        && next.version <= state.version) return;
    const prev = state;
    state = next;
    if ('deadline' in next) {
      const d = next.deadline ? Date.parse(next.deadline) : null;
      if (d !== deadline) {
        deadline = Number.isFinite(d) ? d : null;
        if (deadline) turnTotal = Math.max(1000, deadline - serverNow());
      }
    }
    if (next.status !== 'playing') deadline = null;
    if ('winner' in next) winner = next.winner || null;
    if (next.game) gameId = next.game;
    if (next.fairness && next.fairness.commit) {
      if (next.status === 'waiting') commitBefore = next.fairness.commit;
      commitEl.hidden = false;
      commitEl.title = next.fairness.commit;
      commitEl.textContent = `Dice commitment: ${next.fairness.commit.slice(0, 16)}…`;
    }
    if (next.status === 'waiting') {
      standings = null;
      winner = null;
      verdict.hide();
      if (prev && prev.status !== 'waiting') {
        die.show(null);
        moveLog.replaceChildren();
      }
    }
    if (next.board) board.setBoard(next.board);
    else if (next.status === 'waiting') board.setBoard(null);
    const sm = slots();
    board.setPlayers(players().map((p) => ({ username: p.username, slot: sm.get(p.username) })));
    board.setBots(players().filter((p) => p.bot).map((p) => p.username));
    syncPositions(force || !prev || prev.status !== next.status);
    render();
  }

  function syncPositions(immediate) {
    clearTimeout(syncTimer);
    if (board.busy) return; // onIdle reconciles with the latest state
    if (immediate || !state || state.status !== 'playing') {
      reconcile();
      return;
    }
    // room.state may overtake game.rolled: give the roll a moment to arrive and animate.
    syncTimer = setTimeout(reconcile, 250);
  }

  function reconcile() {
    if (!state || board.busy) return;
    const positions = {};
    let differs = false;
    for (const p of players()) {
      const pos = Number(p.position) || 0;
      positions[p.username] = pos;
      if (board.positionOf(p.username) !== pos) differs = true;
    }
    if (differs) board.snap(positions);
  }

  // ---- rendering ----
  function render() {
    if (unmounted) return;
    if (!state) {
      renderControls();
      return;
    }
    nameEl.textContent = state.name || id;
    codeEl.textContent = state.id;
    privateBadge.hidden = !state.private;
    el.dataset.status = state.status;
    document.title = `${state.name || id} · Dice Race`;
    renderSeats();
    renderControls();
    renderStatus();
    renderGameOver();
    board.setActive(state.status === 'playing' ? state.turn : null);
  }

  function renderSeats() {
    const sm = slots();
    const list = players();
    const seatCount = Math.max(Number(state.seats) || 0, list.length);
    const items = [];
    for (let i = 0; i < seatCount; i += 1) {
      const p = list[i];
      if (!p) {
        items.push(h('li', { class: 'seat seat-empty', testid: 'seat-empty' },
          h('span', { class: 'swatch swatch-empty', 'aria-hidden': 'true' }),
          h('span', { class: 'seat-name' }, 'Open seat')));
        continue;
      }
      const isMe = p.username === me();
      const isHost = p.username === state.host;
      const isTurn = state.status === 'playing' && p.username === state.turn;
      const connected = p.connected !== false;
      const isBot = !!p.bot;
      const badges = [];
      if (isHost) badges.push(h('span', { class: 'badge badge-host', title: 'Host' }, '★ Host'));
      if (isBot) badges.push(h('span', { class: 'badge badge-bot', testid: 'bot-badge' }, 'Bot'));
      if (state.status === 'waiting') {
        badges.push(h('span', { class: `badge ${p.ready ? 'badge-ready' : 'badge-notready'}` },
          p.ready ? 'Ready' : 'Not ready'));
      }
      if (isTurn) badges.push(h('span', { class: 'badge badge-turn' }, 'Turn'));
      if (winner && p.username === winner && state.status === 'finished') {
        badges.push(h('span', { class: 'badge badge-winner' }, 'Winner'));
      }
      if (!connected) badges.push(h('span', { class: 'badge badge-offline' }, 'Disconnected'));
      let remove = null;
      if (isBot && state.host === me() && state.status !== 'playing') {
        remove = h('button', {
          type: 'button', class: 'btn btn-small btn-ghost', testid: 'remove-bot', 'aria-label': `Remove ${p.username}`,
        }, 'Remove');
        remove.addEventListener('click', () => botRequest('room.remove_bot', { bot: p.username }, remove));
      }
      items.push(h('li', {
        class: `seat${isTurn ? ' seat-turn' : ''}${isMe ? ' seat-me' : ''}${connected ? '' : ' seat-offline'}`,
        testid: 'seat',
        dataset: {
          username: p.username,
          connected: String(connected),
          ready: String(!!p.ready),
          host: String(isHost),
          turn: String(isTurn),
          position: String(Number(p.position) || 0),
          bot: String(isBot),
        },
      },
      h('span', { class: `swatch p${sm.get(p.username)}`, 'aria-hidden': 'true' }),
      h('span', { class: `conn-dot ${connected ? 'on' : 'off'}`, title: connected ? 'Connected' : 'Disconnected' },
        h('span', { class: 'sr-only' }, connected ? 'connected' : 'disconnected')),
      h('span', { class: 'seat-name' }, p.username, isMe ? h('span', { class: 'you' }, ' (you)') : null),
      state.status !== 'waiting' ? h('span', { class: 'seat-pos' }, `Square ${Number(p.position) || 0}`) : null,
      h('span', { class: 'seat-badges' }, badges), remove));
    }
    setChildren(seatsEl, items);
    const n = Number(state.spectators) || 0;
    spectatorsEl.dataset.count = String(n);
    spectatorsEl.textContent = n === 1 ? '1 spectator watching' : `${n} spectators watching`;
  }

  function renderControls() {
    const mine = myPlayer();
    const seated = !!mine;
    const status = state ? state.status : null;
    const on = active();
    roleEl.hidden = !(state && !seated && joined);
    readyBtn.hidden = !(seated && status === 'waiting');
    readyHint.hidden = readyBtn.hidden;
    readyBtn.setAttribute('aria-pressed', String(!!(mine && mine.ready)));
    readyBtn.disabled = readyPending || !on;
    seedField.hidden = !(seated && status !== 'playing');
    seedInput.disabled = readyPending || !!(mine && mine.ready && status === 'waiting');
    // Roll shows only to players while a game runs: before it Ready is the next step, after it Play again.
    rollBtn.hidden = !(seated && status === 'playing');
    const myTurn = status === 'playing' && seated && state.turn === me();
    rollBtn.disabled = !(myTurn && on && !rollPending);
    rollBtn.classList.toggle('pulse', myTurn && on && !rollPending);
    playAgain.hidden = !seated;
    playAgain.disabled = readyPending || !on;
    const hosting = seated && state.host === me();
    addBotBtn.hidden = !(hosting && status !== 'playing' && players().length < state.seats);
    addBotBtn.disabled = !on;
    takeoverField.hidden = !hosting;
    takeoverBox.checked = !!(state && state.bot_takeover);
    takeoverBox.disabled = !on;
    chatSend.disabled = !on;
  }

  function renderStatus() {
    if (!state) return;
    const list = players();
    const n = list.length;
    let text;
    let turnText = '';
    if (state.status === 'waiting') {
      const ready = list.filter((p) => p.ready).length;
      text = `Waiting for players: ${n}/${state.seats} seated, ${ready} ready`;
      if (n < 2) text += ' (at least 2 needed)';
    } else if (state.status === 'playing') {
      const who = state.turn === me() ? 'Your turn' : state.turn ? `${state.turn}'s turn` : 'Playing';
      text = who;
      turnText = who;
    } else {
      text = winner ? (winner === me() ? 'Game over: you won!' : `Game over: ${winner} won`) : 'Game over';
    }
    let secs = null;
    if (state.status === 'playing' && deadline) {
      const left = Math.max(0, deadline - serverNow());
      secs = Math.ceil(left / 1000);
      text += ` (${secs} s left)`;
      progress.max = turnTotal || 20000;
      progress.value = Math.min(progress.max, left);
    }
    const botsAt = state.status === 'waiting' && state.bots_at ? Date.parse(state.bots_at) : NaN;
    botsCountdown.hidden = !Number.isFinite(botsAt);
    if (Number.isFinite(botsAt)) {
      const left = Math.max(0, Math.ceil((botsAt - serverNow()) / 1000));
      botsCountdown.dataset.seconds = String(left);
      botsCountdown.textContent = left > 0 ? `Bots take the free seats in ${left} s unless people join first.`
        : 'Bots are taking the free seats…';
    }
    statusEl.textContent = text;
    statusEl.dataset.status = state.status;
    turnEl.textContent = turnText || (state.status === 'waiting' ? 'Waiting to start' : 'Finished');
    timerEl.textContent = secs == null ? '' : `${secs} s`;
    timerEl.dataset.seconds = secs == null ? '' : String(secs);
    timerEl.classList.toggle('urgent', secs != null && secs <= 5);
    progress.hidden = secs == null;
  }

  function renderGameOver() {
    const finished = !!state && state.status === 'finished';
    // Let the winning move finish animating before the curtain falls.
    const visible = finished && !board.busy;
    const wasHidden = overPanel.hidden;
    overPanel.hidden = !visible;
    if (!visible) return;
    if (winner === me()) overWinner.textContent = 'You won!';
    else overWinner.textContent = winner ? `${winner} wins!` : 'No winner';
    let rowsData = Array.isArray(standings) && standings.length ? [...standings] : null;
    if (!rowsData) {
      rowsData = [...players()]
        .sort((a, b) => (b.username === winner) - (a.username === winner)
          || (Number(b.position) || 0) - (Number(a.position) || 0))
        .map((p, i) => ({ username: p.username, position: p.position, place: i + 1, forfeited: false }));
    }
    rowsData.sort((a, b) => (a.place ?? 99) - (b.place ?? 99));
    setChildren(overList, rowsData.map((r) => h('li', {
      testid: 'standing',
      dataset: { username: r.username, place: r.place ?? '' },
      class: r.username === winner ? 'first' : null,
    },
    h('span', { class: 'place' }, r.place ? `${r.place}.` : '–'),
    h('span', { class: 'name' }, r.username),
    h('span', { class: 'pos' }, `square ${Number(r.position) || 0}`),
    r.forfeited ? h('span', { class: 'badge badge-offline' }, 'forfeited') : null)));
    if (gameId) {
      replayLink.hidden = false;
      replayLink.setAttribute('href', `#/replay/${encodeURIComponent(gameId)}`);
    } else {
      replayLink.hidden = true;
    }
    if (wasHidden && !isTyping()) (playAgain.hidden ? overTitle : playAgain).focus({ preventScroll: false });
  }

  function addMove(text) {
    moveLog.prepend(h('li', { testid: 'move' }, text));
    while (moveLog.childElementCount > MOVES_KEEP) moveLog.lastElementChild.remove();
  }

  function addChat(m, live) {
    const mine = m.from === me();
    const li = h('li', { class: `chat-msg${mine ? ' mine' : ''}`, testid: 'chat-message', dataset: { from: m.from ?? '' } },
      h('span', { class: 'chat-from' }, m.from ?? 'server'),
      h('span', { class: 'chat-text' }, String(m.text ?? '')),
      m.at ? h('time', { class: 'chat-time', datetime: m.at }, shortTime(m.at)) : null);
    const nearBottom = chatLog.scrollHeight - chatLog.scrollTop - chatLog.clientHeight < 48;
    chatLog.appendChild(li);
    while (chatLog.childElementCount > CHAT_KEEP) chatLog.firstElementChild.remove();
    if (nearBottom || mine) chatLog.scrollTop = chatLog.scrollHeight;
    if (live && !mine) ctx.announce(`${m.from} says: ${m.text}`);
  }

  // ---- join / leave ----
  async function join() {
    if (joining || unmounted || detached || !ctx.sessionReady) return;
    joining = true;
    if (!state) showNotice('Joining room…');
    try {
      const reply = await ctx.ws.request('room.join', { room: id, spectate: spectateWanted });
      if (unmounted) {
        ctx.ws.request('room.leave').catch(() => {});
        return;
      }
      onJoined(reply);
    } catch (err) {
      if (unmounted) return;
      if (err.code === 'offline' || err.code === 'disconnected') {
        showNotice('Connection lost. Reconnecting…');
        return;
      }
      joined = false;
      const actions = [];
      if ((err.code === 'game_in_progress' || err.code === 'room_full') && !spectateWanted) {
        actions.push(noticeButton('Watch instead', 'spectate-instead', () => {
          spectateWanted = true;
          join();
        }, true));
      }
      actions.push(noticeButton('Back to lobby', 'back-to-lobby', () => ctx.navigate('#/lobby')));
      showNotice(`Could not join room ${id}: ${errorText(err)}`, actions);
      notice.dataset.errorCode = err.code;
      if (err.code === 'room_not_found') ctx.forgetRoom(id);
      render();
    } finally {
      joining = false;
    }
  }

  function onJoined(reply) {
    joined = true;
    detached = false;
    ctx.detached.delete(id);
    showNotice(null);
    delete notice.dataset.errorCode;
    setError(roomError, null);
    ctx.storeRoom(id, spectateWanted);
    applyState(reply.room, { force: true });
    chatLog.replaceChildren();
    for (const m of Array.isArray(reply.chat) ? reply.chat : []) addChat(m, false);
    chatLog.scrollTop = chatLog.scrollHeight;
    if (state && state.status === 'playing' && state.turn) {
      ctx.announce(state.turn === me() ? 'Your turn' : `${state.turn}'s turn`);
    }
  }

  async function leave() {
    leaveBtn.disabled = true;
    if (joined && !detached && ctx.ws.connected) {
      try {
        await ctx.ws.request('room.leave');
      } catch (err) {
        if (err.code !== 'not_in_room' && err.code !== 'offline' && err.code !== 'disconnected') {
          console.warn('room.leave:', errorText(err));
        }
      }
    }
    left = true;
    ctx.forgetRoom(id);
    ctx.navigate('#/lobby');
  }

  // ---- actions ----
  copyBtn.hidden = !(navigator.clipboard && window.isSecureContext);
  copyBtn.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(state ? state.id : id);
      copyBtn.textContent = 'Copied!';
      setTimeout(() => {
        copyBtn.textContent = 'Copy';
      }, 1500);
    } catch {
      copyBtn.textContent = 'Copy failed';
    }
  });

  leaveBtn.addEventListener('click', leave);

  rollBtn.addEventListener('click', async () => {
    if (rollBtn.disabled) return;
    rollPending = true;
    renderControls();
    setError(roomError, null);
    try {
      await ctx.ws.request('game.roll');
    } catch (err) {
      setError(roomError, err);
    } finally {
      rollPending = false;
      renderControls();
      if (!rollBtn.disabled && !isTyping()) rollBtn.focus();
    }
  });

  async function sendReady(ready) {
    const args = { ready };
    const seed = seedInput.value.trim();
    if (ready && seed) {
      if (!validClientSeed(seed)) {
        setError(roomError, 'Your dice seed must be 1 to 64 printable ASCII characters (letters, digits, punctuation, spaces).');
        return;
      }
      args.client_seed = seed;
    }
    readyPending = true;
    renderControls();
    setError(roomError, null);
    try {
      const reply = await ctx.ws.request('room.ready', args);
      // A player who left the field empty is shown the seed the server drew for them.
      if (reply && typeof reply.client_seed === 'string') seedInput.value = reply.client_seed;
    } catch (err) {
      setError(roomError, err);
    } finally {
      readyPending = false;
      renderControls();
    }
  }

  /** Check the dice of a game that just ended (docs/fairness.md): from the events when this page saw every roll,
   * else from the stored record. */
  async function checkFairness(over, commit, seen) {
    const game = over.game;
    verdict.checking();
    const order = state && Array.isArray(state.order) ? state.order : [];
    const numbers = seen ? [...seen.keys()].sort((a, b) => a - b) : [];
    if (seen && over.fairness && order.length && numbers.every((n, i) => n === i)) {
      const entries = numbers.map((n) => ({ n, dice: seen.get(n) }));
      const result = await verifyRecord({ players: order, fairness: over.fairness, entries }, { commit });
      if (!unmounted && gameId === game) verdict.show(result);
      return;
    }
    let record = null;
    // The record is written just after game.over: give it a moment, then wait for it a little more.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    for (let attempt = 0; attempt < 20 && !unmounted && !record; attempt += 1) {
      try {
        record = (await api('GET', `/api/games/${encodeURIComponent(game)}`)).game || null;
      } catch (err) {
        if (err.status !== 404) break;
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    }
    if (unmounted || gameId !== game) return;
    if (!record) {
      verdict.unavailable('The game record could not be fetched to check the dice: open its replay later to check.');
      return;
    }
    const result = await verifyRecord(record, { commit, seen });
    if (!unmounted && gameId === game) verdict.show(result);
  }

  async function botRequest(op, args, button) {
    button.disabled = true;
    setError(roomError, null);
    try {
      await ctx.ws.request(op, args);
    } catch (err) {
      setError(roomError, err);
    } finally {
      button.disabled = false;
      renderControls();
    }
  }

  addBotBtn.addEventListener('click', () => botRequest('room.add_bot', {}, addBotBtn));
  takeoverBox.addEventListener('change', () => {
    botRequest('room.configure', { bot_takeover: takeoverBox.checked }, takeoverBox);
  });

  readyBtn.addEventListener('click', () => {
    const mine = myPlayer();
    sendReady(!(mine && mine.ready));
  });
  playAgain.addEventListener('click', () => sendReady(true));

  chatForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const text = chatInput.value.trim();
    if (!text) return;
    if (text.length > CHAT_MAX) {
      setError(chatError, `Messages are at most ${CHAT_MAX} characters.`);
      return;
    }
    chatSend.disabled = true;
    try {
      await ctx.ws.request('room.chat', { text });
      chatInput.value = '';
      setError(chatError, null);
    } catch (err) {
      setError(chatError, err);
    } finally {
      renderControls();
      chatInput.focus();
    }
  });

  // ---- events ----
  function onEvent(msg) {
    switch (msg.event) {
      case 'room.state':
        applyState(msg.room);
        break;
      case 'room.chat':
        if (msg.room === id) addChat(msg, true);
        break;
      case 'game.started': {
        if (msg.room !== id || !state) break;
        const order = Array.isArray(msg.order) ? msg.order : [];
        state = {
          ...state,
          status: 'playing',
          board: msg.board || state.board,
          order,
          turn: order[0] || null,
          winner: null,
          players: players().map((p) => ({ ...p, position: 0 })),
        };
        standings = null;
        winner = null;
        if (msg.fairness && !commitBefore) commitBefore = msg.fairness.commit;
        seenDice = new Map();
        verdict.hide();
        seedInput.value = newClientSeed(); // a fresh one for the next game
        die.show(null);
        moveLog.replaceChildren();
        board.setBoard(state.board);
        const sm = slots();
        board.setPlayers(players().map((p) => ({ username: p.username, slot: sm.get(p.username) })));
        board.setBots(players().filter((p) => p.bot).map((p) => p.username));
        board.snap(Object.fromEntries(players().map((p) => [p.username, 0])));
        ctx.announce(`The game has started. Turn order: ${order.join(', ')}.`);
        render();
        break;
      }
      case 'game.rolled': {
        if (msg.room !== id) break;
        clearTimeout(syncTimer);
        if (seenDice && Number.isInteger(msg.n)) seenDice.set(msg.n, msg.dice);
        die.show(msg.dice, { roll: true });
        board.move(msg.player, Number(msg.from) || 0, Number(msg.dice), Number(msg.to) || 0);
        const text = describeRoll(msg, me());
        addMove(text);
        ctx.announce(text);
        break;
      }
      case 'game.turn': {
        if (msg.room !== id || !state) break;
        const d = msg.deadline ? Date.parse(msg.deadline) : NaN;
        deadline = Number.isFinite(d) ? d : null;
        turnTotal = deadline ? Math.max(1000, deadline - serverNow()) : null;
        state = { ...state, turn: msg.player };
        render();
        if (msg.player === me()) {
          ctx.announce('Your turn. Press Roll.');
          if (!rollBtn.disabled && !isTyping()) rollBtn.focus();
        } else {
          ctx.announce(`${msg.player}'s turn.`);
        }
        break;
      }
      case 'game.over': {
        if (msg.room !== id) break;
        winner = msg.winner || null;
        standings = Array.isArray(msg.standings) ? msg.standings : null;
        if (msg.game) gameId = msg.game;
        deadline = null;
        if (state) state = { ...state, status: 'finished', turn: null, winner };
        ctx.announce(winner === me() ? 'Game over. You won!' : `Game over. ${winner || 'Nobody'} won.`);
        render();
        if (msg.game) checkFairness(msg, commitBefore, seenDice);
        commitBefore = null;
        seenDice = null;
        break;
      }
      case 'room.closed': {
        // Sent to spectators when the last player leaves.
        if (msg.room !== id) break;
        joined = false;
        left = true;
        ctx.forgetRoom(id);
        showNotice('This room has closed: every player left.', [
          noticeButton('Back to lobby', 'back-to-lobby', () => ctx.navigate('#/lobby'), true),
        ]);
        ctx.announce('This room has closed.');
        render();
        break;
      }
      case 'room.detached': {
        if (msg.room !== id) break;
        detached = true;
        joined = false;
        ctx.detached.add(id);
        ctx.forgetRoom(id);
        const why = DETACH_REASONS[msg.reason] || 'You are no longer connected to this room.';
        showNotice(why, [
          noticeButton('Continue here', 'rejoin', () => {
            detached = false;
            ctx.detached.delete(id);
            join();
          }, true),
          noticeButton('Back to lobby', 'back-to-lobby', () => {
            left = true;
            ctx.navigate('#/lobby');
          }),
        ]);
        ctx.announce(why);
        render();
        break;
      }
      default:
        break;
    }
  }

  // ---- clock ----
  const ticker = setInterval(() => {
    if (state && (state.status === 'playing' || state.bots_at)) renderStatus();
  }, 250);

  // ---- start ----
  const pending = ctx.pendingJoin;
  ctx.pendingJoin = null;
  if (pending && pending.id === id && pending.reply && pending.reply.room) {
    spectateWanted = pending.spectate;
    onJoined(pending.reply);
  } else if (detached) {
    showNotice('This room is open in another tab or window.', [
      noticeButton('Continue here', 'rejoin', () => {
        detached = false;
        ctx.detached.delete(id);
        join();
      }, true),
      noticeButton('Back to lobby', 'back-to-lobby', () => ctx.navigate('#/lobby')),
    ]);
  } else {
    showNotice(ctx.ws.connected ? 'Joining room…' : 'Connecting…');
    join();
  }
  render();

  return {
    el,
    title: `Room ${id}`,
    onConnected() {
      if (!detached) join();
    },
    onStatus() {
      if (!ctx.ws.connected && joined) {
        // The server keeps our seat for a grace period; we rejoin on reconnect.
        joined = false;
        showNotice('Connection lost. Reconnecting…');
      }
      renderControls();
    },
    onEvent,
    confirmLeave() {
      if (left || !joined || detached || !state || state.status !== 'playing' || !myPlayer()) return true;
      return window.confirm(state.bot_takeover ? 'Leave this game? A bot will play on for you.'
        : 'Leave this game? You will forfeit it.');
    },
    leaveQuietly() {
      left = true;
      ctx.forgetRoom(id);
      if (joined && !detached && ctx.ws.connected) return ctx.ws.request('room.leave').catch(() => {});
      return Promise.resolve();
    },
    unmount() {
      unmounted = true;
      clearInterval(ticker);
      clearTimeout(syncTimer);
      board.snap(null);
      board.onIdle = null;
      if (!left && joined && !detached && ctx.ws.connected) {
        ctx.ws.request('room.leave').catch(() => {});
      }
      if (!detached) ctx.forgetRoom(id);
    },
  };
}
