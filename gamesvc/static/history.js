// A player's recent games and the replay of one stored game record.

import { api, errorText } from './api.js';
import { BoardView, DieView, describeRoll } from './board.js';
import { h, setChildren, dateTime, prefersReducedMotion, sleep } from './dom.js';
import { slotMap } from './room.js';
import { verdictView, verifyRecord } from './fairness.js';

function resultFor(record, username) {
  if (!Array.isArray(record.players) || !record.players.includes(username)) return null;
  const mine = (record.standings || []).find((s) => s.username === username);
  if (record.winner === username) return { text: 'Won', cls: 'won' };
  if (mine && mine.forfeited) return { text: 'Forfeited', cls: 'lost' };
  if (mine && mine.place) return { text: `Place ${mine.place} of ${record.players.length}`, cls: 'lost' };
  return { text: record.winner ? 'Lost' : 'Unfinished', cls: 'lost' };
}

/** The list of a player's recent games. */
export function gamesView(ctx, { username }) {
  let alive = true;
  const isMe = ctx.user && ctx.user.username === username;
  const body = h('div', { class: 'games-body' }, h('p', { class: 'empty' }, 'Loading…'));
  const el = h('section', { class: 'view view-games', testid: 'games', dataset: { username } },
    h('div', { class: 'view-head' }, h('h1', null, isMe ? 'My games' : `${username}'s games`)),
    h('div', { class: 'card' }, body));

  (async () => {
    try {
      const reply = await api('GET', `/api/users/${encodeURIComponent(username)}/games?limit=30`);
      if (!alive) return;
      const games = Array.isArray(reply.games) ? reply.games : [];
      if (games.length === 0) {
        setChildren(body, h('p', { class: 'empty', testid: 'games-empty' }, 'No games yet.'));
        return;
      }
      setChildren(body, h('ul', { class: 'games-list', testid: 'games-list' }, games.map((g) => {
        const result = resultFor(g, username);
        const bots = new Set([...(g.bots || []), ...(g.stand_ins || [])]);
        const players = (g.players || []).map((p, i) => [
          i ? ', ' : '',
          h('span', { class: p === g.winner ? 'winner-name' : null }, p === g.winner ? `★ ${p}` : p),
          bots.has(p) ? h('span', { class: 'badge badge-bot', testid: 'game-bot' }, 'bot') : null,
        ]);
        return h('li', { class: 'game-row', testid: 'game-row', dataset: { gameId: g.id } },
          h('div', { class: 'game-main' },
            h('time', { datetime: g.ended || g.started || '' }, dateTime(g.ended || g.started)),
            h('span', { class: 'game-players' }, players)),
          result ? h('span', { class: `badge result-${result.cls}` }, result.text) : null,
          bots.size ? h('span', { class: 'badge', title: 'Games with bots do not count on the leaderboard' },
            'Not ranked') : null,
          h('a', {
            class: 'btn btn-small', href: `#/replay/${encodeURIComponent(g.id)}`, testid: 'replay-link',
          }, 'Replay'));
      })));
    } catch (err) {
      if (!alive) return;
      setChildren(body, h('p', { class: 'form-error', role: 'alert', testid: 'games-error' }, errorText(err)));
    }
  })();

  return {
    el,
    title: isMe ? 'My games' : `${username}'s games`,
    unmount() {
      alive = false;
    },
  };
}

/** Positions after each entry of a RECORD: frames[0] is the start, frames[i] follows entries[i-1]. */
export function buildFrames(record) {
  const players = Array.isArray(record.players) ? record.players : [];
  const pos = Object.fromEntries(players.map((p) => [p, 0]));
  const out = new Set();
  const frames = [{ positions: { ...pos }, out: [], entry: null }];
  for (const entry of Array.isArray(record.entries) ? record.entries : []) {
    if (!entry || typeof entry !== 'object') continue;
    if (typeof entry.forfeit === 'string') out.add(entry.forfeit);
    else if (entry.player != null) pos[entry.player] = Number(entry.to) || 0;
    frames.push({ positions: { ...pos }, out: [...out], entry });
  }
  return frames;
}

function describeEntry(entry) {
  if (!entry) return 'Start: every token waits off the board.';
  if (typeof entry.forfeit === 'string') return `${entry.forfeit} forfeited.`;
  return describeRoll(entry, null);
}

/** Step through a stored game move by move. */
export function replayView(ctx, { id }) {
  let alive = true;
  let record = null;
  let frames = [];
  let step = 0;
  let playing = false;

  const board = new BoardView();
  const die = new DieView();
  const title = h('h1', null, 'Replay');
  const meta = h('p', { class: 'replay-meta' });
  const body = h('p', { class: 'empty' }, 'Loading…');
  const btn = (label, testid, aria) => h('button', {
    type: 'button', class: 'btn', testid, 'aria-label': aria, disabled: true,
  }, label);
  const first = btn('« First', 'replay-first', 'First move');
  const prev = btn('‹ Prev', 'replay-prev', 'Previous move');
  const play = btn('Play', 'replay-play', 'Play');
  const next = btn('Next ›', 'replay-next', 'Next move');
  const last = btn('Last »', 'replay-last', 'Last move');
  play.setAttribute('aria-pressed', 'false');
  const scrubber = h('input', {
    type: 'range', min: 0, max: 0, value: 0, step: 1, id: 'replay-scrubber', testid: 'replay-scrubber',
    'aria-label': 'Move number', disabled: true,
  });
  const stepEl = h('p', { class: 'replay-step', testid: 'replay-step', id: 'replay-step' });
  const moveEl = h('p', { class: 'replay-move', testid: 'replay-move', 'aria-live': 'polite' });
  const legend = h('ul', { class: 'seats legend', testid: 'replay-players' });
  const winnerEl = h('p', { class: 'winner', testid: 'replay-winner' });
  const verdict = verdictView();
  const entriesList = h('ol', { class: 'replay-entries', testid: 'replay-entries' });

  const el = h('section', { class: 'view view-replay', testid: 'replay', dataset: { gameId: id } },
    h('div', { class: 'view-head' }, h('div', null, title, meta)),
    body,
    h('div', { class: 'room-grid' },
      h('div', { class: 'board-col' },
        h('div', { class: 'board-wrap' }, board.el),
        h('div', { class: 'turn-bar replay-bar' },
          die.el,
          h('div', { class: 'turn-info' }, stepEl, moveEl)),
        h('div', { class: 'replay-controls', role: 'group', 'aria-label': 'Replay controls' },
          first, prev, play, next, last),
        scrubber),
      h('aside', { class: 'side-col' },
        h('section', { class: 'card', 'aria-labelledby': 'replay-players-title' },
          h('h2', { id: 'replay-players-title' }, 'Players'), legend, winnerEl, verdict.el),
        h('section', { class: 'card moves-card', 'aria-labelledby': 'replay-moves-title' },
          h('h2', { id: 'replay-moves-title' }, 'All moves'), entriesList))));

  function update() {
    const total = frames.length - 1;
    const frame = frames[step];
    stepEl.textContent = `Move ${step} of ${total}`;
    stepEl.dataset.step = String(step);
    stepEl.dataset.total = String(total);
    moveEl.textContent = describeEntry(frame.entry);
    let dice = null;
    for (let i = step; i > 0; i -= 1) {
      const e = frames[i].entry;
      if (e && e.dice != null) {
        dice = Number(e.dice);
        break;
      }
    }
    die.show(dice);
    board.setFaded(frame.out);
    board.setActive(frame.entry && frame.entry.player != null ? frame.entry.player : null);
    first.disabled = step === 0;
    prev.disabled = step === 0;
    next.disabled = step >= total;
    last.disabled = step >= total;
    play.disabled = total === 0;
    scrubber.disabled = total === 0;
    scrubber.max = String(total);
    scrubber.value = String(step);
    scrubber.setAttribute('aria-valuetext', `Move ${step} of ${total}`);
    play.textContent = playing ? 'Pause' : 'Play';
    play.setAttribute('aria-pressed', String(playing));
    play.setAttribute('aria-label', playing ? 'Pause' : 'Play');
    entriesList.querySelectorAll('[aria-current]').forEach((n) => n.removeAttribute('aria-current'));
    const currentItem = entriesList.children[step - 1];
    if (currentItem) {
      currentItem.setAttribute('aria-current', 'step');
      if (typeof currentItem.scrollIntoView === 'function' && entriesList.scrollHeight > entriesList.clientHeight) {
        // .replay-entries is position: relative, so offsetTop is already measured from the list.
        const top = currentItem.offsetTop;
        entriesList.scrollTop = Math.max(0, top - entriesList.clientHeight / 2);
      }
    }
  }

  /** Go to step n; animate when moving one roll forward. Resolves when drawn. */
  function goTo(n, { animate = false } = {}) {
    const total = frames.length - 1;
    const target = Math.max(0, Math.min(total, n));
    const entry = frames[target].entry;
    let done = Promise.resolve();
    if (animate && target === step + 1 && entry && entry.player != null) {
      done = board.move(entry.player, Number(entry.from) || 0, Number(entry.dice), Number(entry.to) || 0);
      die.show(Number(entry.dice), { roll: true });
    } else {
      board.snap(frames[target].positions);
    }
    step = target;
    update();
    return done;
  }

  function stop() {
    playing = false;
    if (record) update();
  }

  async function playLoop() {
    if (step >= frames.length - 1) goTo(0);
    playing = true;
    update();
    while (alive && playing && step < frames.length - 1) {
      await goTo(step + 1, { animate: true });
      if (!alive || !playing) break;
      await sleep(prefersReducedMotion() ? 700 : 350);
    }
    if (alive) stop();
  }

  first.addEventListener('click', () => { stop(); goTo(0); });
  prev.addEventListener('click', () => { stop(); goTo(step - 1); });
  next.addEventListener('click', () => { stop(); goTo(step + 1, { animate: true }); });
  last.addEventListener('click', () => { stop(); goTo(frames.length - 1); });
  play.addEventListener('click', () => {
    if (playing) stop();
    else playLoop();
  });
  scrubber.addEventListener('input', () => { stop(); goTo(Number(scrubber.value)); });

  function onKey(ev) {
    if (!record || ev.altKey || ev.ctrlKey || ev.metaKey) return;
    const t = ev.target;
    if (t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT')) return;
    if (ev.key === 'ArrowRight') {
      ev.preventDefault();
      stop();
      goTo(step + 1, { animate: true });
    } else if (ev.key === 'ArrowLeft') {
      ev.preventDefault();
      stop();
      goTo(step - 1);
    }
  }
  document.addEventListener('keydown', onKey);

  function show(rec) {
    record = rec;
    frames = buildFrames(rec);
    const players = Array.isArray(rec.players) ? rec.players : [];
    const slots = slotMap(players);
    board.setBoard(rec.board || null);
    board.setPlayers(players.map((p) => ({ username: p, slot: slots.get(p) })));
    const bots = new Set([...(rec.bots || []), ...(rec.stand_ins || [])]);
    board.setBots([...bots]);
    board.snap(frames[0].positions);
    title.textContent = `Replay: room ${rec.room || ''}`.trim();
    document.title = `Replay · Dice Race`;
    const when = dateTime(rec.started);
    meta.textContent = `${players.join(' vs ')}${when ? ` · ${when}` : ''}`;
    const standings = Array.isArray(rec.standings) ? rec.standings : [];
    setChildren(legend, players.map((p) => {
      const st = standings.find((x) => x.username === p);
      return h('li', { class: 'seat', dataset: { username: p } },
        h('span', { class: `swatch p${slots.get(p)}`, 'aria-hidden': 'true' }),
        h('span', { class: 'seat-name' }, p),
        h('span', { class: 'seat-badges' },
          bots.has(p) ? h('span', { class: 'badge badge-bot' }, 'Bot') : null,
          st && st.place ? h('span', { class: 'badge' }, `Place ${st.place}`) : null,
          p === rec.winner ? h('span', { class: 'badge badge-winner' }, 'Winner') : null,
          st && st.forfeited ? h('span', { class: 'badge badge-offline' }, 'Forfeited') : null));
    }));
    winnerEl.textContent = rec.winner ? `${rec.winner} won.` : 'No winner.';
    setChildren(entriesList, frames.slice(1).map((f, i) => {
      const b = h('button', { type: 'button', class: 'linkish' }, describeEntry(f.entry));
      b.addEventListener('click', () => { stop(); goTo(i + 1); });
      return h('li', null, b);
    }));
    body.hidden = true;
    update();
    verdict.checking();
    verifyRecord(rec).then((result) => { if (alive) verdict.show(result); });
  }

  (async () => {
    try {
      const reply = await api('GET', `/api/games/${encodeURIComponent(id)}`);
      if (!alive) return;
      if (!reply.game) throw new Error('no game');
      show(reply.game);
    } catch (err) {
      if (!alive) return;
      body.className = 'form-error';
      body.setAttribute('role', 'alert');
      body.textContent = err.code === 'http_404' || err.status === 404
        ? 'That game was not found.' : errorText(err);
    }
  })();

  return {
    el,
    title: 'Replay',
    unmount() {
      alive = false;
      playing = false;
      board.snap(null);
      document.removeEventListener('keydown', onKey);
    },
  };
}
