// The Dice Race board as SVG (squares, ladders, snakes, tokens) and the die face.
// Shared by the live room view and the replay view.

import { s, prefersReducedMotion } from './dom.js';

const CELL = 40;
const SIZE = 10 * CELL; // 400: squares occupy y 0..400
const START_Y = SIZE + 24; // centre of the start strip below the board
const VIEW_HEIGHT = SIZE + 44;
const STEP_MS = 80;
const SLIDE_MS = 360;
const TOKEN_R = 9;
// Each player keeps a corner of the square, so tokens never hide each other.
const SLOTS = [[-9, -9], [9, -9], [-9, 9], [9, 9]];

/** Centre of square n (0 = the start strip, 1..100 on the board). */
export function squareCenter(n) {
  if (!(n > 0)) return [CELL * 2.5, START_Y];
  const k = Math.min(100, Math.round(n)) - 1;
  const row = Math.floor(k / 10); // 0 = bottom row
  let col = k % 10;
  if (row % 2 === 1) col = 9 - col; // boustrophedon
  return [col * CELL + CELL / 2, (9 - row) * CELL + CELL / 2];
}

/** The squares a token walks through for a roll, and where it slides after. */
export function movePath(from, dice, to) {
  const steps = [];
  const start = Math.max(0, from | 0);
  const n = Number.isInteger(dice) && dice > 0 && dice <= 6 ? dice : 0;
  for (let i = 1; i <= n; i += 1) {
    let sq = start + i;
    if (sq > 100) sq = 200 - sq; // bounce back by the excess
    steps.push(sq);
  }
  const landing = steps.length ? steps[steps.length - 1] : start;
  return { steps, landing, slideTo: landing !== to ? to : null };
}

function initials(name) {
  const clean = String(name || '?').replace(/[^A-Za-z0-9]/g, '');
  return (clean || '?').slice(0, 2).toUpperCase();
}

/** Interactive SVG board with animated tokens. */
export class BoardView {
  constructor() {
    this.gen = 0;
    this.queued = 0;
    this.chain = Promise.resolve();
    this.onIdle = null;
    this.tokens = new Map(); // username -> {g, slot, pos}
    this.snakePaths = new Map(); // "head:tail" -> path element
    this.boardKey = undefined;

    this.title = s('title', { text: 'Game board' });
    this.squares = s('g', { class: 'squares' });
    this.ladders = s('g', { class: 'ladders' });
    this.snakes = s('g', { class: 'snakes' });
    this.tokenLayer = s('g', { class: 'tokens' });
    this.el = s('svg', {
      class: 'board',
      viewBox: `-4 -4 ${SIZE + 8} ${VIEW_HEIGHT + 8}`,
      role: 'img',
      'aria-label': 'Game board',
      testid: 'board',
    }, this.title, this.squares, this.ladders, this.snakes, this.tokenLayer);
    this.drawSquares();
  }

  drawSquares() {
    const g = this.squares;
    for (let n = 1; n <= 100; n += 1) {
      const [cx, cy] = squareCenter(n);
      const x = cx - CELL / 2;
      const y = cy - CELL / 2;
      const shade = (Math.round(x / CELL) + Math.round(y / CELL)) % 2 === 0 ? 'sq-a' : 'sq-b';
      g.appendChild(s('rect', {
        class: `sq ${shade}${n === 100 ? ' sq-goal' : ''}`, x, y, width: CELL, height: CELL,
      }));
      g.appendChild(s('text', { class: 'sq-num', x: x + 3, y: y + 10 }, String(n)));
    }
    g.appendChild(s('rect', {
      class: 'start-strip', x: 1, y: SIZE + 4, width: SIZE - 2, height: 38, rx: 6,
    }));
    g.appendChild(s('text', { class: 'start-label', x: 8, y: START_Y + 4 }, 'Start'));
  }

  /** Draw ladders and snakes for a BOARD ({size, ladders, snakes}) or clear them (null). */
  setBoard(board) {
    const key = board ? JSON.stringify([board.ladders, board.snakes]) : null;
    if (key === this.boardKey) return;
    this.boardKey = key;
    this.ladders.replaceChildren();
    this.snakes.replaceChildren();
    this.snakePaths.clear();
    if (!board) return;
    for (const pair of board.ladders || []) {
      if (Array.isArray(pair) && pair.length === 2) this.drawLadder(pair[0], pair[1]);
    }
    for (const pair of board.snakes || []) {
      if (Array.isArray(pair) && pair.length === 2) this.drawSnake(pair[0], pair[1]);
    }
    const nl = (board.ladders || []).length;
    const ns = (board.snakes || []).length;
    this.el.setAttribute('aria-label', `Game board with ${nl} ladders and ${ns} snakes`);
  }

  drawLadder(foot, top) {
    const [x1, y1] = squareCenter(foot);
    const [x2, y2] = squareCenter(top);
    const len = Math.hypot(x2 - x1, y2 - y1) || 1;
    const ux = (x2 - x1) / len;
    const uy = (y2 - y1) / len;
    const nx = -uy * 6;
    const ny = ux * 6;
    const g = s('g', { class: 'ladder' },
      s('title', { text: `Ladder from ${foot} to ${top}` }));
    g.appendChild(s('line', { class: 'rail', x1: x1 + nx, y1: y1 + ny, x2: x2 + nx, y2: y2 + ny }));
    g.appendChild(s('line', { class: 'rail', x1: x1 - nx, y1: y1 - ny, x2: x2 - nx, y2: y2 - ny }));
    const rungs = Math.max(1, Math.floor(len / 12));
    for (let i = 1; i < rungs; i += 1) {
      const t = i / rungs;
      const cx = x1 + (x2 - x1) * t;
      const cy = y1 + (y2 - y1) * t;
      g.appendChild(s('line', { class: 'rung', x1: cx + nx, y1: cy + ny, x2: cx - nx, y2: cy - ny }));
    }
    this.ladders.appendChild(g);
  }

  drawSnake(head, tail) {
    const [x1, y1] = squareCenter(head);
    const [x2, y2] = squareCenter(tail);
    const dx = x2 - x1;
    const dy = y2 - y1;
    const len = Math.hypot(dx, dy) || 1;
    const amp = Math.min(34, len / 4);
    const nx = (-dy / len) * amp;
    const ny = (dx / len) * amp;
    const c1 = [x1 + dx / 3 + nx, y1 + dy / 3 + ny];
    const c2 = [x1 + (2 * dx) / 3 - nx, y1 + (2 * dy) / 3 - ny];
    const d = `M ${x1} ${y1} C ${c1[0]} ${c1[1]} ${c2[0]} ${c2[1]} ${x2} ${y2}`;
    const body = s('path', { class: 'snake-body', d });
    const ex = (dx / len) * -3;
    const ey = (dy / len) * -3;
    const px = (-dy / len) * 3;
    const py = (dx / len) * 3;
    const g = s('g', { class: 'snake' },
      s('title', { text: `Snake from ${head} down to ${tail}` }),
      s('path', { class: 'snake-outline', d }),
      body,
      s('circle', { class: 'snake-head', cx: x1, cy: y1, r: 6.5 }),
      s('circle', { class: 'snake-eye', cx: x1 + ex + px, cy: y1 + ey + py, r: 1.3 }),
      s('circle', { class: 'snake-eye', cx: x1 + ex - px, cy: y1 + ey - py, r: 1.3 }));
    this.snakes.appendChild(g);
    this.snakePaths.set(`${head}:${tail}`, body);
  }

  /** Set the players shown: [{username, slot}] (slot 0..3 picks colour and corner). */
  setPlayers(players) {
    const wanted = new Set(players.map((p) => p.username));
    for (const [name, tok] of this.tokens) {
      if (!wanted.has(name)) {
        tok.g.remove();
        this.tokens.delete(name);
      }
    }
    for (const { username, slot } of players) {
      let tok = this.tokens.get(username);
      if (tok && tok.slot !== slot) {
        tok.g.remove();
        this.tokens.delete(username);
        tok = null;
      }
      if (!tok) {
        const g = s('g', {
          class: `token p${slot}`, testid: 'token', dataset: { username, position: 0 },
        },
        s('title', { text: username }),
        s('circle', { class: 'token-ring', r: TOKEN_R + 3 }),
        s('circle', { class: 'token-body', r: TOKEN_R }),
        s('text', { class: 'token-label', y: 3 }, initials(username)));
        tok = { g, slot, pos: 0 };
        this.tokens.set(username, tok);
        this.tokenLayer.appendChild(g);
        this.place(tok, 0);
      }
    }
  }

  /** Mark one player's token as the one to move (or none). */
  setActive(username) {
    for (const [name, tok] of this.tokens) tok.g.classList.toggle('active', name === username);
  }

  /** Mark the tokens of bots (a dashed ring, and "(bot)" in the token's title). */
  setBots(usernames) {
    const set = new Set(usernames || []);
    for (const [name, tok] of this.tokens) {
      tok.g.classList.toggle('bot', set.has(name));
      tok.g.dataset.bot = String(set.has(name));
      const title = tok.g.querySelector('title');
      if (title) title.textContent = set.has(name) ? `${name} (bot)` : name;
    }
  }

  /** Fade tokens of players who forfeited. */
  setFaded(usernames) {
    const set = new Set(usernames || []);
    for (const [name, tok] of this.tokens) tok.g.classList.toggle('faded', set.has(name));
  }

  xy(tok, sq) {
    const [cx, cy] = squareCenter(sq);
    const [ox, oy] = SLOTS[tok.slot % SLOTS.length];
    return [cx + ox, cy + oy];
  }

  setXY(tok, x, y) {
    tok.g.setAttribute('transform', `translate(${x.toFixed(2)} ${y.toFixed(2)})`);
  }

  place(tok, sq) {
    tok.pos = sq;
    tok.g.dataset.position = String(sq);
    const [x, y] = this.xy(tok, sq);
    this.setXY(tok, x, y);
  }

  /** Where a token is drawn now (or null). */
  positionOf(username) {
    const tok = this.tokens.get(username);
    return tok ? tok.pos : null;
  }

  /** True while moves are queued or playing. */
  get busy() {
    return this.queued > 0;
  }

  /** Cancel animations and put tokens where positions ({username: square}) says. */
  snap(positions) {
    this.gen += 1;
    for (const [name, tok] of this.tokens) {
      if (positions && name in positions) this.place(tok, positions[name] || 0);
    }
  }

  /** Queue the animation of one roll; resolves when it has played (or was cancelled). */
  move(username, from, dice, to) {
    const gen = this.gen;
    this.queued += 1;
    const task = async () => {
      if (gen !== this.gen) return;
      const tok = this.tokens.get(username);
      if (!tok) return;
      await this.animateMove(tok, from, dice, to, gen);
    };
    this.chain = this.chain.then(task).catch((err) => console.error('animation failed', err))
      .finally(() => {
        this.queued -= 1;
        if (this.queued === 0 && this.onIdle) this.onIdle();
      });
    return this.chain;
  }

  async animateMove(tok, from, dice, to, gen) {
    if (prefersReducedMotion() || document.hidden) {
      this.place(tok, to);
      return;
    }
    const { steps, landing, slideTo } = movePath(from, dice, to);
    this.place(tok, from);
    for (const sq of steps) {
      const [ax, ay] = this.xy(tok, tok.pos);
      const [bx, by] = this.xy(tok, sq);
      const ok = await this.tween(STEP_MS, gen, (t) => {
        const hop = Math.sin(Math.PI * t) * 5;
        this.setXY(tok, ax + (bx - ax) * t, ay + (by - ay) * t - hop);
      });
      if (!ok) return;
      this.place(tok, sq);
    }
    if (slideTo == null) return;
    const path = this.snakePaths.get(`${landing}:${slideTo}`);
    const [ox, oy] = SLOTS[tok.slot % SLOTS.length];
    if (path && typeof path.getTotalLength === 'function') {
      const total = path.getTotalLength();
      const ok = await this.tween(SLIDE_MS * 1.4, gen, (t) => {
        const p = path.getPointAtLength(total * t);
        this.setXY(tok, p.x + ox, p.y + oy);
      });
      if (!ok) return;
    } else {
      const [ax, ay] = this.xy(tok, landing);
      const [bx, by] = this.xy(tok, slideTo);
      const ok = await this.tween(SLIDE_MS, gen, (t) => {
        const e = t < 0.5 ? 2 * t * t : 1 - ((-2 * t + 2) ** 2) / 2;
        this.setXY(tok, ax + (bx - ax) * e, ay + (by - ay) * e);
      });
      if (!ok) return;
    }
    this.place(tok, slideTo);
  }

  /** Run frame(t) for t in 0..1 over ms; resolves true when done, false if cancelled. */
  tween(ms, gen, frame) {
    return new Promise((resolve) => {
      const start = performance.now();
      let done = false;
      const end = (ok) => {
        if (done) return;
        done = true;
        clearTimeout(safety);
        resolve(ok);
      };
      const tick = (now) => {
        if (done) return;
        if (gen !== this.gen) {
          end(false);
          return;
        }
        const t = Math.min(1, Math.max(0, (now - start) / ms));
        frame(t);
        if (t >= 1) end(true);
        else requestAnimationFrame(tick);
      };
      // Background tabs get no animation frames: never let the queue stall.
      const safety = setTimeout(() => end(gen === this.gen), ms + 300);
      requestAnimationFrame(tick);
    });
  }
}

const PIPS = {
  tl: [17, 17], tr: [43, 17], ml: [17, 30], mr: [43, 30], bl: [17, 43], br: [43, 43], c: [30, 30],
};
const FACES = {
  1: ['c'],
  2: ['tl', 'br'],
  3: ['tl', 'c', 'br'],
  4: ['tl', 'tr', 'bl', 'br'],
  5: ['tl', 'tr', 'c', 'bl', 'br'],
  6: ['tl', 'tr', 'ml', 'mr', 'bl', 'br'],
};

/** A die face that shows the last roll. */
export class DieView {
  constructor() {
    this.pips = s('g', { class: 'pips' });
    this.el = s('svg', {
      class: 'die', viewBox: '0 0 60 60', role: 'img', 'aria-label': 'Die: no roll yet', testid: 'die',
    }, s('rect', { class: 'die-face', x: 3, y: 3, width: 54, height: 54, rx: 10 }), this.pips);
    this.el.dataset.value = '';
    this.timer = null;
  }

  /** Show a value 1..6 (or null for blank); roll=true plays a short shake. */
  show(value, { roll = false } = {}) {
    this.pips.replaceChildren();
    const face = FACES[value];
    if (face) {
      for (const name of face) {
        const [cx, cy] = PIPS[name];
        this.pips.appendChild(s('circle', { class: 'pip', cx, cy, r: 5 }));
      }
    }
    this.el.dataset.value = face ? String(value) : '';
    this.el.setAttribute('aria-label', face ? `Die showing ${value}` : 'Die: no roll yet');
    if (roll && !prefersReducedMotion()) {
      this.el.classList.remove('rolling');
      // Force a reflow so the animation restarts on consecutive rolls.
      void this.el.getBoundingClientRect();
      this.el.classList.add('rolling');
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.el.classList.remove('rolling'), 450);
    }
  }
}

/** One sentence for a roll ({player, dice, from, to, via, again}); me is the viewer's name. */
export function describeRoll(m, me) {
  const you = m.player === me;
  const who = you ? 'You' : String(m.player);
  const from = Number(m.from) || 0;
  const to = Number(m.to) || 0;
  const dice = Number(m.dice);
  const { landing } = movePath(from, dice, to);
  let text = m.auto ? `${who} ran out of time and rolled ${dice}` : `${who} rolled ${dice}`;
  if (m.via === 'ladder') text += `: ${from} → ${landing}, up a ladder to ${to}`;
  else if (m.via === 'snake') text += `: ${from} → ${landing}, down a snake to ${to}`;
  else if (m.via === 'bounce') text += `: ${from} → bounced off 100 to ${landing}${landing !== to ? `, then to ${to}` : ''}`;
  else if (landing !== to) text += `: third 6 in a row, back to ${to}`;
  else text += `: ${from} → ${to}`;
  if (to === 100) text += '. Reached 100!';
  else if (m.again) text += you ? '. Roll again!' : '. Rolls again!';
  return text;
}
