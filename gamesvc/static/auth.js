// Login and signup view (HTTP API; the server sets an HttpOnly session cookie).

import { api, showError } from './api.js';
import { h } from './dom.js';

function authForm(ctx, kind) {
  const isSignup = kind === 'signup';
  const prefix = isSignup ? 'signup' : 'login';
  const error = h('p', { class: 'form-error', role: 'alert', testid: `${prefix}-error`, hidden: true });
  const button = h('button', { type: 'submit', class: 'btn btn-primary', testid: prefix },
    isSignup ? 'Sign up' : 'Log in');
  const username = h('input', {
    id: `${prefix}-username`,
    name: 'username',
    type: 'text',
    required: true,
    autocomplete: 'username',
    autocapitalize: 'none',
    spellcheck: 'false',
    'aria-describedby': isSignup ? `${prefix}-username-hint` : null,
  });
  const password = h('input', {
    id: `${prefix}-password`,
    name: 'password',
    type: 'password',
    required: true,
    autocomplete: isSignup ? 'new-password' : 'current-password',
    'aria-describedby': isSignup ? `${prefix}-password-hint` : null,
  });
  const form = h('form', {
    id: `${prefix}-form`, class: 'card auth-form', testid: `${prefix}-form`, novalidate: true,
    'aria-labelledby': `${prefix}-title`,
  },
  h('h2', { id: `${prefix}-title` }, isSignup ? 'Create an account' : 'Log in'),
  h('div', { class: 'field' },
    h('label', { for: username.id }, 'Username'),
    username,
    isSignup && h('p', { class: 'hint', id: `${prefix}-username-hint` },
      '3–20 characters: letters, digits, _ or -.')),
  h('div', { class: 'field' },
    h('label', { for: password.id }, 'Password'),
    password,
    isSignup && h('p', { class: 'hint', id: `${prefix}-password-hint` }, 'At least 8 characters.')),
  error,
  h('div', { class: 'actions' }, button));

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const name = username.value.trim();
    const pass = password.value;
    if (!name || !pass) {
      showError(error, 'Enter a username and a password.');
      (name ? password : username).focus();
      return;
    }
    showError(error, null);
    button.disabled = true;
    form.setAttribute('aria-busy', 'true');
    try {
      const reply = await api('POST', `/api/${kind}`, { username: name, password: pass });
      ctx.loggedIn(reply.user, reply.token);
    } catch (err) {
      showError(error, err);
      if (err.code === 'username_taken' || err.code === 'invalid_username') username.focus();
      else if (err.code === 'invalid_password' || err.code === 'bad_credentials') password.select();
    } finally {
      button.disabled = false;
      form.removeAttribute('aria-busy');
    }
  });
  return form;
}

/** The login/signup view; message is an optional notice (e.g. session ended). */
export function authView(ctx, { message } = {}) {
  const el = h('section', { class: 'view view-auth', testid: 'auth' },
    h('div', { class: 'auth-intro' },
      h('h1', null, 'Dice Race'),
      h('p', { class: 'lead' },
        'Race up to four friends from square 1 to 100. Climb the ladders, dodge the snakes.'),
      message && h('p', { class: 'notice', role: 'status', testid: 'auth-notice' }, message)),
    h('div', { class: 'auth-forms' }, authForm(ctx, 'login'), authForm(ctx, 'signup')));
  return { el, title: 'Log in' };
}
