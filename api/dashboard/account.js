// @ts-check
/* global location, history */
// People in the dashboard: sign-in (identity provider, password with an optional code, the links
// of invitations and password resets), the session, sign-out, and the team page (members,
// invitations, API tokens for machines, the audit trail for owners). Everything goes through the same public API as any client.

import { ApiFailure, api, messageOf } from './api.js';
import { $, field, h, replace } from './dom.js';
import { state } from './state.js';

/**
 * The browser session, if the cookie holds a live one: its member (and CSRF token) or null.
 * @returns {Promise<any>}
 */
export async function currentSession() {
  try {
    const me = await api('GET', '/api/v1/auth/session');
    state.csrf = typeof me?.csrf === 'string' ? me.csrf : '';
    state.session = true;
    return me;
  } catch (err) {
    if (err instanceof ApiFailure && err.status === 401) return null;
    throw err;
  }
}

/** Shows the ways in the server offers (the provider button only when one is configured). */
export async function showWaysIn() {
  try {
    const cfg = await api('GET', '/api/v1/auth/config');
    $('oidc-signin').hidden = cfg?.oidc !== true;
    // "Forgot password?" only when the server mails reset links (FAROL_SMTP_URL).
    $('forgot-open').hidden = cfg?.reset_mail !== true;
  } catch {
    $('oidc-signin').hidden = true;
    $('forgot-open').hidden = true;
  }
}

/** Binds the "forgot password" form: asks for a reset link by mail; the answer is the same for any email. */
function bindForgot() {
  /** @param {boolean} open */
  const show = (open) => {
    $('password-form').hidden = open;
    $('forgot-form').hidden = !open;
    $('forgot-done').hidden = true;
    loginError('');
  };
  $('forgot-open').addEventListener('click', () => {
    field('forgot-email').value = field('email-input').value.trim();
    show(true);
    $('forgot-email').focus();
  });
  $('forgot-back').addEventListener('click', () => show(false));
  $('forgot-form').addEventListener('submit', (e) => {
    e.preventDefault();
    api('POST', '/api/v1/auth/forgot', { email: field('forgot-email').value.trim() }).then(
      (r) => {
        const done = $('forgot-done');
        done.textContent = String(r?.message ?? 'If a member signs in with this email, a link is on its way.');
        done.hidden = false;
        loginError('');
      },
      (err) => loginError(messageOf(err)),
    );
  });
}

/** @param {string} message */
function loginError(message) {
  const e = $('login-error');
  e.textContent = message;
  e.hidden = message === '';
}

/**
 * The one-time link in the URL's fragment (`#invite=…`, `#reset=…`), removed from the address bar.
 * @returns {{ kind: 'invite' | 'reset', token: string } | null}
 */
function linkInUrl() {
  const m = /^#(invite|reset)=([A-Za-z0-9_-]{43})$/.exec(location.hash);
  if (m === null) return null;
  history.replaceState(history.state, '', location.pathname + location.search);
  return { kind: /** @type {'invite' | 'reset'} */ (m[1]), token: /** @type {string} */ (m[2]) };
}

/** The one-time link the page was opened with, until used or dismissed. */
/** @type {{ kind: 'invite' | 'reset', token: string } | null} */
let openLink = null;

/**
 * The account switcher in the header: the person's memberships, the current one selected; shown
 * only to a person in more than one account (a token is one member of one account).
 * @param {boolean} session
 */
export async function renderAccounts(session) {
  const control = $('account-control');
  /** @type {any[]} */
  const list = session ? ((await api('GET', '/api/v1/me/memberships').catch(() => null))?.memberships ?? []) : [];
  control.hidden = list.length < 2;
  replace(
    $('account-select'),
    list.map((/** @type {any} */ m) => h('option', { value: String(m.account_id), selected: m.current === true }, `${String(m.account_name)} (${String(m.role)})`)),
  );
  // A signed-in person opened an invitation link: offer to join as themselves.
  $('join').hidden = !(session && openLink?.kind === 'invite');
}

/**
 * Binds the account switcher and the "join as yourself" offer; `switched` reloads the dashboard
 * (after a refused switch too: the menu shows the account the session is in).
 * @param {() => void} switched
 * @param {(err: unknown) => void} failed
 */
export function bindAccounts(switched, failed) {
  const select = field('account-select');
  select.addEventListener('change', () => {
    api('POST', '/api/v1/auth/switch', { account_id: select.value }).then(switched, (err) => {
      failed(err);
      switched();
    });
  });
  $('join-dismiss').addEventListener('click', () => {
    openLink = null;
    $('join').hidden = true;
  });
  $('join-accept').addEventListener('click', () => {
    const token = openLink?.token ?? '';
    api('POST', '/api/v1/me/memberships', { token })
      .then(async (r) => {
        openLink = null;
        $('join').hidden = true;
        // Straight into the account joined.
        await api('POST', '/api/v1/auth/switch', { account_id: String(r?.membership?.account_id ?? '') });
        switched();
      })
      .catch((err) => reportTo($('join-error'), messageOf(err)));
  });
}

/**
 * @param {HTMLElement} el
 * @param {string} message
 */
function reportTo(el, message) {
  el.textContent = message;
  el.hidden = message === '';
}

/**
 * Binds the sign-in forms; `signedIn` runs once a session exists.
 * @param {() => void} signedIn
 */
export function bindSignIn(signedIn) {
  bindForgot();
  const link = linkInUrl();
  openLink = link;
  if (link !== null) {
    $('password-form').hidden = true;
    $('link-form').hidden = false;
    $('link-title').textContent = link.kind === 'invite' ? 'You are invited: choose your name and a password.' : 'Choose a new password.';
    $('link-name').hidden = link.kind !== 'invite';
    $('link-name-label').hidden = link.kind !== 'invite';
  }
  $('link-signin').hidden = link?.kind !== 'invite';
  $('link-signin').addEventListener('click', () => {
    // The invitation is kept: once signed in, the person is offered to join as themselves.
    $('link-form').hidden = true;
    $('password-form').hidden = false;
  });
  $('link-form').addEventListener('submit', (e) => {
    e.preventDefault();
    if (link === null) return;
    const password = field('link-password').value;
    const body = link.kind === 'invite' ? { token: link.token, name: field('link-name').value.trim(), password } : { token: link.token, password };
    api('POST', link.kind === 'invite' ? '/api/v1/auth/invitation' : '/api/v1/auth/reset', body).then(
      (r) => {
        state.csrf = String(r?.csrf ?? '');
        state.session = true;
        field('link-password').value = '';
        openLink = null;
        $('link-form').hidden = true;
        $('password-form').hidden = false;
        signedIn();
      },
      (err) => loginError(messageOf(err)),
    );
  });
  $('password-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const totp = field('totp-input').value.trim();
    const body = { email: field('email-input').value.trim(), password: field('password-input').value, ...(totp ? { totp } : {}) };
    api('POST', '/api/v1/auth/password', body).then(
      (r) => {
        state.csrf = String(r?.csrf ?? '');
        state.session = true;
        field('password-input').value = '';
        field('totp-input').value = '';
        loginError('');
        signedIn();
      },
      (err) => {
        if (err instanceof ApiFailure && err.code === 'API_TOTP_REQUIRED') {
          $('totp-input').hidden = false;
          $('totp-label').hidden = false;
          $('totp-input').focus();
        }
        loginError(messageOf(err));
      },
    );
  });
}

/** Ends the browser session (the cookie is cleared by the server). */
export async function endSession() {
  const out = state.session ? await api('POST', '/api/v1/auth/signout').catch(() => undefined) : undefined;
  state.session = false;
  state.csrf = '';
  // Signed in through the identity provider: sign out there too (it sends the browser back here).
  if (typeof out?.end_session_url === 'string' && /^https?:\/\//.test(out.end_session_url)) location.assign(out.end_session_url);
}

/** @param {string} message */
function teamError(message) {
  const e = $('team-error');
  e.textContent = message;
  e.hidden = message === '';
}

/** Renders the team page: members, open invitations and API tokens the signed-in member sees. */
export async function renderTeam() {
  teamError('');
  /** @type {[any, any, any, any, any, any]} */
  const [members, invitations, tokens, audit, mine, me] = await Promise.all([
    api('GET', '/api/v1/members').catch(() => ({ members: [] })),
    api('GET', '/api/v1/invitations').catch(() => ({ invitations: [] })),
    api('GET', '/api/v1/tokens').catch(() => ({ tokens: [] })),
    // Account-wide owners only: anyone else is answered 403 and sees no section.
    api('GET', '/api/v1/audit?limit=100').catch(() => null),
    api('GET', '/api/v1/me/sessions').catch(() => ({ sessions: [] })),
    api('GET', '/api/v1/auth/session').catch(() => null),
  ]);
  renderTotp(me?.totp === true);
  // The signed-in person's own browser sessions: each but this one can be signed out here.
  replace(
    $('me-sessions'),
    (mine.sessions ?? []).map((/** @type {any} */ s) =>
      h(
        'div',
        { class: 'team-row', dataset: { session: s.id, current: String(s.current === true) } },
        `${s.current === true ? 'this browser' : s.method} · since ${String(s.created_at).replace('T', ' ').slice(0, 16)} · last seen ${String(s.last_seen_at).replace('T', ' ').slice(0, 16)} `,
        s.current === true ? null : h('button', { type: 'button', class: 'link', onclick: () => void act(() => api('DELETE', `/api/v1/me/sessions/${encodeURIComponent(s.id)}`)) }, 'Sign out'),
      ),
    ),
  );
  $('team-audit-section').hidden = audit === null;
  if (audit !== null) {
    replace(
      $('team-audit'),
      h(
        'table',
        { class: 'team-table' },
        h('tr', null, h('th', null, 'When'), h('th', null, 'Who'), h('th', null, 'From'), h('th', null, 'What'), h('th', null, 'Target')),
        (audit.entries ?? []).map((/** @type {any} */ e) =>
          h('tr', { dataset: { action: e.action } }, h('td', null, String(e.at).replace('T', ' ').slice(0, 19)), h('td', null, e.actor), h('td', null, `${e.via} ${e.via_id}`), h('td', null, e.action), h('td', null, e.target)),
        ),
      ),
    );
  }
  /** @param {unknown} sites */
  const scope = (sites) => (Array.isArray(sites) && sites.length > 0 ? sites.join(', ') : 'every site');
  replace(
    $('team-members'),
    h(
      'table',
      { class: 'team-table' },
      h('tr', null, h('th', null, 'Member'), h('th', null, 'Role'), h('th', null, 'Sites')),
      (members.members ?? []).map((/** @type {any} */ m) => h('tr', { dataset: { member: m.id } }, h('td', null, m.name), h('td', null, m.role), h('td', null, scope(m.sites)))),
    ),
  );
  replace(
    $('team-invitations'),
    (invitations.invitations ?? []).map((/** @type {any} */ i) =>
      h(
        'div',
        { class: 'team-row', dataset: { invitation: i.id } },
        `${i.email} · ${i.role} · ${scope(i.sites)} · until ${String(i.expires_at).slice(0, 10)} `,
        h('button', { type: 'button', class: 'link', onclick: () => void act(() => api('DELETE', `/api/v1/invitations/${encodeURIComponent(i.id)}`)) }, 'Withdraw'),
      ),
    ),
  );
  replace(
    $('team-tokens'),
    (tokens.tokens ?? []).map((/** @type {any} */ t) =>
      h(
        'div',
        { class: 'team-row', dataset: { token: t.prefix } },
        `${t.prefix}… · ${t.name} · ${t.member_id} `,
        h('button', { type: 'button', class: 'link', onclick: () => void act(() => api('DELETE', `/api/v1/tokens/${encodeURIComponent(t.prefix)}`)) }, 'Revoke'),
      ),
    ),
  );
}

/** The secret being enrolled (from GET /api/v1/me/totp), until its first code is confirmed. */
let pendingTotp = '';

/**
 * The second factor's part of "You": on (a code turns it off) or off (a button starts enrolling).
 * @param {boolean} on
 */
function renderTotp(on) {
  pendingTotp = '';
  $('totp-state').textContent = on ? 'Two-factor sign-in is on.' : 'Two-factor sign-in is off.';
  $('totp-start').hidden = on;
  $('totp-enrol').hidden = true;
  $('totp-form').hidden = !on;
  $('totp-form').dataset.mode = on ? 'off' : 'on';
  $('totp-submit').textContent = on ? 'Turn off' : 'Confirm';
}

/**
 * Runs a team action, then renders the page again (unless `rerender` is false).
 * @param {() => Promise<unknown>} fn
 * @param {boolean} [rerender]
 */
async function act(fn, rerender = true) {
  try {
    await fn();
    if (rerender) await renderTeam();
  } catch (err) {
    teamError(messageOf(err));
  }
}

/** Binds the team page's forms. */
export function bindTeam() {
  $('invite-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const sites = field('invite-sites')
      .value.split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
    void act(async () => {
      const r = await api('POST', '/api/v1/invitations', { email: field('invite-email').value.trim(), role: field('invite-role').value, sites });
      const out = $('invite-link');
      out.textContent = `Send this link (shown once): ${String(r?.link ?? '')}`;
      out.hidden = false;
      field('invite-email').value = '';
    });
  });
  $('me-password-form').addEventListener('submit', (e) => {
    e.preventDefault();
    void act(async () => {
      await api('POST', '/api/v1/me/password', { current: field('me-current').value, password: field('me-new').value });
      field('me-current').value = '';
      field('me-new').value = '';
      const done = $('me-done');
      done.textContent = 'Password changed.';
      done.hidden = false;
    });
  });
  $('totp-start').addEventListener('click', () => {
    void act(async () => {
      const t = await api('GET', '/api/v1/me/totp');
      pendingTotp = String(t?.secret ?? '');
      $('totp-secret').textContent = pendingTotp;
      $('totp-enrol').hidden = false;
      $('totp-form').hidden = false;
      $('totp-start').hidden = true;
    }, false);
  });
  $('totp-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const code = field('totp-code').value.trim();
    field('totp-code').value = '';
    void act(() => ($('totp-form').dataset.mode === 'off' ? api('POST', '/api/v1/me/totp/off', { code }) : api('POST', '/api/v1/me/totp', { secret: pendingTotp, code })));
  });
  $('signout-all').addEventListener('click', () => {
    // Every session of this person ends, this one too: back to the sign-in page.
    api('POST', '/api/v1/auth/signout-all').then(
      () => location.reload(),
      (err) => teamError(messageOf(err)),
    );
  });
  $('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    void act(async () => {
      const r = await api('POST', '/api/v1/tokens', { name: field('token-name').value.trim() });
      const out = $('token-out');
      out.textContent = `New token (shown once, store it now): ${String(r?.token ?? '')}`;
      out.hidden = false;
      field('token-name').value = '';
    });
  });
}
