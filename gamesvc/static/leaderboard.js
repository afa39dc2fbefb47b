// Leaderboard table (used in the lobby panel and the full leaderboard view).

import { api, errorText } from './api.js';
import { h, setChildren } from './dom.js';

/** A table of players ({username, wins, games}) with rank; me is highlighted. */
export function leaderboardTable(players, { me = null, caption = null } = {}) {
  const rows = players.map((p, i) => h('tr', {
    testid: 'leaderboard-row',
    dataset: { username: p.username },
    class: p.username === me ? 'me' : null,
  },
  h('td', { class: 'num rank' }, String(i + 1)),
  h('th', { scope: 'row', class: 'player' },
    h('a', { href: `#/games/${encodeURIComponent(p.username)}` }, p.username)),
  h('td', { class: 'num' }, String(p.wins ?? 0)),
  h('td', { class: 'num' }, String(p.games ?? 0))));
  return h('table', { class: 'leaderboard', testid: 'leaderboard' },
    caption && h('caption', { class: 'sr-only' }, caption),
    h('thead', null, h('tr', null,
      h('th', { scope: 'col', class: 'num' }, '#'),
      h('th', { scope: 'col' }, 'Player'),
      h('th', { scope: 'col', class: 'num' }, 'Wins'),
      h('th', { scope: 'col', class: 'num' }, 'Games'))),
    h('tbody', null, rows));
}

/** Fill container with the top `limit` players (or an inline error); `playedOnly` leaves out players without games. */
export async function loadLeaderboard(ctx, container, limit, isAlive = () => true, { playedOnly = false } = {}) {
  container.setAttribute('aria-busy', 'true');
  try {
    // Players without games rank above those with games and no wins: ask for the most so that filtering leaves enough.
    const reply = await api('GET', `/api/leaderboard?limit=${playedOnly ? 100 : limit}`);
    if (!isAlive()) return;
    let players = Array.isArray(reply.players) ? reply.players : [];
    if (playedOnly) players = players.filter((p) => Number(p.games) > 0).slice(0, limit);
    if (players.length === 0) {
      setChildren(container, h('p', { class: 'empty' }, 'No games played yet.'));
    } else {
      setChildren(container, leaderboardTable(players, {
        me: ctx.user && ctx.user.username, caption: 'Leaderboard',
      }));
    }
  } catch (err) {
    if (!isAlive()) return;
    setChildren(container, h('p', { class: 'form-error', role: 'alert', testid: 'leaderboard-error' },
      errorText(err)));
  } finally {
    container.removeAttribute('aria-busy');
  }
}

/** The full leaderboard view. */
export function leaderboardView(ctx) {
  let alive = true;
  const body = h('div', { class: 'leaderboard-body' }, h('p', { class: 'empty' }, 'Loading…'));
  const refresh = h('button', { type: 'button', class: 'btn', testid: 'leaderboard-refresh' }, 'Refresh');
  refresh.addEventListener('click', () => loadLeaderboard(ctx, body, 100, () => alive));
  const el = h('section', { class: 'view view-leaderboard' },
    h('div', { class: 'view-head' }, h('h1', null, 'Leaderboard'), refresh),
    h('div', { class: 'card' }, body));
  loadLeaderboard(ctx, body, 100, () => alive);
  return {
    el,
    title: 'Leaderboard',
    unmount() {
      alive = false;
    },
  };
}
