// Provably fair dice (docs/fairness.md): client seeds, and the check of a finished game with WebCrypto.

import { h } from './dom.js';

export const SCHEME = 'gamesvc-dice-hmac';
export const VERSION = 1;
const SEED_MAX = 64;
const ACCEPT_BELOW = 252;
const PREFIX = new TextEncoder().encode('gamesvc-dice-hmac/1\u0000');

const toHex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');

function fromHex(text) {
  if (typeof text !== 'string' || !/^([0-9a-fA-F]{2})*$/.test(text)) return null;
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i += 1) out[i] = Number.parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** A fresh client seed: 8 random bytes from crypto.getRandomValues, as 16 hex digits. */
export function newClientSeed() {
  return toHex(crypto.getRandomValues(new Uint8Array(8)));
}

/** Whether TEXT is a client seed the server accepts: 1-64 printable ASCII characters (space to ~). */
export function validClientSeed(text) {
  return typeof text === 'string' && text.length >= 1 && text.length <= SEED_MAX && /^[\x20-\x7e]+$/.test(text);
}

/** The canonical HMAC message of roll n, round r for the seat-ordered client seeds. */
export function message(seeds, n, round) {
  const parts = [PREFIX, Uint8Array.of(seeds.length)];
  for (const seed of seeds) parts.push(Uint8Array.of(seed.length), new TextEncoder().encode(seed));
  const tail = new Uint8Array(12);
  const view = new DataView(tail.buffer);
  view.setBigUint64(0, BigInt(n));
  view.setUint32(8, round);
  parts.push(tail);
  const out = new Uint8Array(parts.reduce((sum, p) => sum + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** SHA-256 of BYTES as lower-case hex. */
export async function sha256Hex(bytes) {
  return toHex(new Uint8Array(await crypto.subtle.digest('SHA-256', bytes)));
}

/** The die (1-6) of roll n, with KEY an HMAC-SHA256 CryptoKey of the server seed. */
export async function dieOf(key, seeds, n) {
  for (let round = 0; round < 2 ** 32; round += 1) {
    const digest = new Uint8Array(await crypto.subtle.sign('HMAC', key, message(seeds, n, round)));
    for (const b of digest) if (b < ACCEPT_BELOW) return (b % 6) + 1;
  }
  throw new Error('no round gave an accepted byte');
}

/**
 * Check a stored game record. Options: `commit`, the commit this client was shown before the game; `seen`, a Map
 * of roll number -> die this client saw live. Resolves to {ok, problems, dice}, or {ok: false, unverifiable: text}
 * when there is nothing this page can check.
 */
export async function verifyRecord(record, options = {}) {
  try {
    return await check(record, options);
  } catch (err) {
    return { ok: false, problems: [`The check could not run: ${err && err.message}`], dice: 0 };
  }
}

async function check(record, { commit = null, seen = null }) {
  const problems = [];
  const done = (dice = 0) => ({ ok: problems.length === 0, problems, dice });
  const fair = record && record.fairness;
  // Nothing to check is not a failed check: say so plainly instead of warning.
  if (!fair || typeof fair !== 'object') {
    return { ok: false, unverifiable: 'This game was played before provably fair dice: it has nothing to check.' };
  }
  if (!(globalThis.crypto && crypto.subtle)) {
    return { ok: false, unverifiable: 'This page cannot check the dice (WebCrypto needs HTTPS or localhost); '
      + 'use python -m gamesvc.fairness verify.' };
  }
  if (fair.scheme !== SCHEME || fair.version !== VERSION) {
    problems.push(`Unknown scheme ${fair.scheme} version ${fair.version}.`);
    return done();
  }
  const seed = fromHex(fair.server_seed);
  if (!seed || seed.length !== 32) {
    problems.push('The revealed server seed is not 32 bytes.');
    return done();
  }
  const hash = await sha256Hex(seed);
  if (hash !== fair.commit) problems.push('SHA-256 of the revealed server seed is not the commit of the record.');
  if (commit && hash !== commit) problems.push('SHA-256 of the revealed server seed is not the commit shown before the game.');
  const players = Array.isArray(record.players) ? record.players : [];
  const bySeat = fair.client_seeds && typeof fair.client_seeds === 'object' ? fair.client_seeds : {};
  const seeds = players.map((p) => bySeat[p]);
  if (!players.length || !seeds.every(validClientSeed) || Object.keys(bySeat).length !== players.length) {
    problems.push('The client seeds do not match the players.');
    return done();
  }
  const key = await crypto.subtle.importKey('raw', seed, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  let n = 0;
  for (const entry of Array.isArray(record.entries) ? record.entries : []) {
    if (!entry || typeof entry !== 'object' || typeof entry.forfeit === 'string') continue;
    if (entry.n !== n) problems.push(`Roll ${n} is numbered ${entry.n}.`);
    const expected = await dieOf(key, seeds, n);
    if (entry.dice !== expected) problems.push(`Roll ${n} shows ${entry.dice}, but the seeds give ${expected}.`);
    if (seen && seen.has(n) && seen.get(n) !== entry.dice) problems.push(`Roll ${n} was ${seen.get(n)} live.`);
    n += 1;
  }
  return done(n);
}

/** A status line (testid "fairness") for a check's verdict: checking, verified or failed. */
export function verdictView() {
  const el = h('div', { class: 'fairness', testid: 'fairness', 'aria-live': 'polite', hidden: true });
  return {
    el,
    checking() {
      el.hidden = false;
      el.dataset.verdict = 'checking';
      el.className = 'fairness';
      el.removeAttribute('role');
      el.replaceChildren(h('p', null, 'Checking the dice…'));
    },
    show(result) {
      if (result.unverifiable) {
        this.unavailable(result.unverifiable);
        return;
      }
      el.hidden = false;
      el.dataset.verdict = result.ok ? 'verified' : 'failed';
      el.className = result.ok ? 'fairness fairness-ok' : 'fairness fairness-failed';
      if (result.ok) {
        el.removeAttribute('role');
        el.replaceChildren(
          h('p', { class: 'fairness-title' }, '✓ Verified fair'),
          h('p', { class: 'hint' }, `Your browser checked it: SHA-256 of the server seed revealed at the end equals the `
            + `commitment published before the game, and all ${result.dice} dice recompute from that seed and `
            + 'every player\'s own seed. Nobody could choose or change them.'),
        );
      } else {
        el.setAttribute('role', 'alert');
        el.replaceChildren(
          h('p', { class: 'fairness-title' }, '⚠ Warning: these dice could NOT be verified'),
          h('ul', null, result.problems.slice(0, 5).map((p) => h('li', null, p))),
        );
      }
    },
    unavailable(text) {
      el.hidden = false;
      el.dataset.verdict = 'unavailable';
      el.className = 'fairness';
      el.removeAttribute('role');
      el.replaceChildren(h('p', null, text));
    },
    hide() {
      el.hidden = true;
      el.replaceChildren();
    },
  };
}
