// @ts-check
/* global document, window, localStorage, console */
// Farol's dashboard: plain ES modules over the public API (POST /api/v2/query, GET /api/v1/sites,
// the experiment routes). Every number on the page is a number the API answered, only formatted.
// This module wires the page: sign-in, the controls, and rendering every part on a change.

import { bindAccounts, bindSignIn, bindTeam, currentSession, endSession, renderAccounts, renderTeam, showWaysIn } from './account.js';
import { ApiFailure, api, idle, track } from './api.js';
import { destroyChart, renderChart, resizeChart } from './chart.js';
import { PANELS, TOKEN_KEY } from './config.js';
import { $, field, h, replace } from './dom.js';
import { renderExperiments } from './experiments.js';
import { buildPanels, renderFilters, renderPanel, renderTopStats } from './panels.js';
import { isDate, readUrl, state, writeUrl } from './state.js';

/** @type {import('./panels.js').Hooks} */
const hooks = { refresh, reportError };

/** @param {unknown} err */
function reportError(err) {
  if (err instanceof ApiFailure && err.status === 401) {
    signOut(state.session ? 'Signed out, or the session expired: sign in again.' : 'The token was refused. Paste a valid API token.');
    return;
  }
  if (!(err instanceof ApiFailure)) console.error(err);
}

/** @param {string} message */
function showBanner(message) {
  const b = $('banner');
  b.textContent = message;
  b.hidden = message === '';
}

function syncControls() {
  field('period-select').value = state.period;
  const compare = field('compare-select');
  compare.value = state.compare;
  compare.disabled = state.period === 'realtime';
  const custom = $('custom-range');
  custom.hidden = state.period !== 'custom';
  field('custom-from').value = state.from;
  field('custom-to').value = state.to;
  const select = field('site-select');
  if (state.sites !== undefined) select.value = state.site;
  else field('site-input').value = state.site;
}

function refresh() {
  syncControls();
  if (!state.site) {
    showBanner('Choose a site.');
    if (idle()) document.body.dataset.state = 'ready';
    return;
  }
  showBanner('');
  renderFilters(hooks);
  const jobs = [renderTopStats(hooks), renderChart(), ...PANELS.map((p) => renderPanel(p, hooks)), renderExperiments()];
  for (const j of jobs) void track(j).catch(reportError);
}

async function loadSites() {
  try {
    const json = await api('GET', '/api/v1/sites');
    /** @type {unknown[]} */
    const sites = Array.isArray(json?.sites) ? json.sites : [];
    state.sites = sites
      .map((s) => (typeof s === 'string' ? s : /** @type {{ domain?: unknown }} */ (s).domain))
      .filter(/** @returns {d is string} */ (d) => typeof d === 'string');
  } catch (err) {
    if (err instanceof ApiFailure && err.status === 401) throw err;
    // No site list (an older server, or a token that may not list): type the domain instead.
    state.sites = undefined;
  }
  const select = field('site-select');
  const input = field('site-input');
  if (state.sites !== undefined && state.sites.length > 0) {
    replace(
      select,
      state.sites.map((d) => h('option', { value: d }, d)),
    );
    select.hidden = false;
    input.hidden = true;
    if (!state.sites.includes(state.site)) state.site = state.sites[0];
  } else {
    state.sites = undefined;
    select.hidden = true;
    input.hidden = false;
  }
}

/** @param {string} [message] */
function showLogin(message) {
  $('dashboard').hidden = true;
  $('controls').hidden = true;
  $('team').hidden = true;
  $('join').hidden = true;
  $('login').hidden = false;
  void showWaysIn();
  const e = $('login-error');
  e.textContent = message ?? '';
  e.hidden = !message;
  document.body.dataset.state = 'login';
}

/** @param {string} [message] */
function signOut(message) {
  localStorage.removeItem(TOKEN_KEY);
  state.token = '';
  destroyChart();
  showLogin(message);
}

async function start() {
  let me = null;
  if (!state.token) {
    me = await currentSession();
    if (me === null) {
      showLogin();
      return;
    }
  }
  $('whoami').textContent = me === null ? 'API token' : `${me.email ?? me.member?.name ?? ''} (${me.member?.role ?? ''})`;
  $('team-button').hidden = me !== null && me.member?.role === 'viewer';
  await renderAccounts(me !== null);
  document.body.dataset.state = 'loading';
  try {
    await loadSites();
  } catch (err) {
    if (err instanceof ApiFailure && err.status === 401) {
      signOut('The token was refused. Paste a valid API token.');
      return;
    }
    throw err;
  }
  $('login').hidden = true;
  $('controls').hidden = false;
  $('dashboard').hidden = false;
  writeUrl(false);
  refresh();
}

function bind() {
  $('login-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const tokenInput = field('token-input');
    const token = tokenInput.value.trim();
    if (!token) return;
    state.token = token;
    localStorage.setItem(TOKEN_KEY, token);
    tokenInput.value = '';
    void start().catch(reportError);
  });
  $('sign-out').addEventListener('click', () => {
    void endSession().then(() => signOut());
  });
  $('team-button').addEventListener('click', () => {
    const team = $('team');
    team.hidden = !team.hidden;
    if (!team.hidden) void renderTeam();
  });
  bindSignIn(() => void start().catch(reportError));
  bindTeam();
  // Another account chosen (or joined): everything is reloaded as that membership.
  bindAccounts(() => {
    $('team').hidden = true;
    state.filters = [];
    void start().catch(reportError);
  }, reportError);
  field('site-select').addEventListener('change', () => {
    state.site = field('site-select').value;
    state.filters = [];
    writeUrl(true);
    refresh();
  });
  field('site-input').addEventListener('change', () => {
    state.site = field('site-input').value.trim().toLowerCase();
    state.filters = [];
    writeUrl(true);
    refresh();
  });
  field('period-select').addEventListener('change', () => {
    const period = field('period-select').value;
    if (period === 'custom') {
      $('custom-range').hidden = false;
      if (!isDate(state.from) || !isDate(state.to)) return;
    }
    state.period = period;
    writeUrl(true);
    refresh();
  });
  $('custom-range').addEventListener('submit', (e) => {
    e.preventDefault();
    const from = field('custom-from').value;
    const to = field('custom-to').value;
    if (!isDate(from) || !isDate(to)) return;
    state.period = 'custom';
    [state.from, state.to] = from <= to ? [from, to] : [to, from];
    writeUrl(true);
    refresh();
  });
  field('compare-select').addEventListener('change', () => {
    state.compare = field('compare-select').value;
    writeUrl(true);
    refresh();
  });
  window.addEventListener('popstate', () => {
    readUrl();
    if (state.token && !$('dashboard').hidden) refresh();
  });
  window.addEventListener('resize', resizeChart);
  // Realtime refreshes itself.
  window.setInterval(() => {
    if (state.period === 'realtime' && state.token && !$('dashboard').hidden && document.visibilityState === 'visible') refresh();
  }, 30_000);
}

readUrl();
buildPanels();
bind();
void start().catch(reportError);
