// The Sentinel console: a small client app over the query API beside it. No framework and
// no build step: DOM built with createElement (data is never parsed as HTML), views chosen
// by the URL fragment (#/events?…, #/events/<id>, #/resources/<type>/<id>?at=…), so a view
// can be shared by its link. The token stays in this tab's sessionStorage.
import { exactNumbers, isRaw, verifyEvent, VerifyError } from './verify.js';

const TOKEN = 'sentinel.token';
const KEY = 'sentinel.verifierKey';
const apiBase = new URL('../', location.href);
const PAGE = 100;
const TAIL_MS = 3000;
const FILTERS = ['actor_id', 'action', 'resource_type', 'resource_id', 'changed_field', 'changed_from', 'changed_to', 'from', 'to', 'range', 'sort'];
const RANGES = { '1h': ['Last hour', 3600e3], '24h': ['Last 24 hours', 86400e3], '7d': ['Last 7 days', 7 * 86400e3] };

let me = null;
/// The answer of GET /whoami for the signed-in token (a promise).
let caller = null;
let cleanup = () => {};

/// A Performance API mark once the browser has painted what was just put on the page
/// (the measurements read them: time to the first page of events, to a state view).
function markPainted(name) {
  requestAnimationFrame(() => setTimeout(() => performance.mark(name), 0));
}

// ---------------------------------------------------------------- DOM helpers

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
    else if (name === 'class') el.className = value;
    else el.setAttribute(name, value === true ? '' : value);
  }
  el.append(...children.flat(Infinity).filter((c) => c !== undefined && c !== null && c !== false));
  return el;
}

const $ = (id) => document.getElementById(id);

function json(value) {
  return value === undefined ? '—' : JSON.stringify(value, null, 2);
}

// ---------------------------------------------------------------- time

const absolute = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit', timeZoneName: 'short',
});
const relative = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

function ago(date) {
  const seconds = (date.getTime() - Date.now()) / 1000;
  const units = [['year', 31536000], ['month', 2592000], ['week', 604800], ['day', 86400], ['hour', 3600], ['minute', 60], ['second', 1]];
  for (const [unit, size] of units) {
    if (Math.abs(seconds) >= size || unit === 'second') return relative.format(Math.round(seconds / size), unit);
  }
  return '';
}

/// A time, relative and absolute in the viewer's zone; the exact UTC text in `datetime`.
function time(iso) {
  const date = new Date(iso);
  return h('time', { datetime: iso, title: iso, class: 'when' },
    h('span', { class: 'ago' }, ago(date)), ' ', h('span', { class: 'abs' }, absolute.format(date)));
}

/// `datetime-local` text (the viewer's zone) from an ISO time, and back.
function toLocalInput(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
function fromLocalInput(text) {
  if (!text) return '';
  const d = new Date(text);
  return Number.isNaN(d.getTime()) ? '' : d.toISOString();
}

// ---------------------------------------------------------------- API

class ApiError extends Error {
  constructor(status, error) {
    const fields = error?.fields ? Object.entries(error.fields).map(([k, v]) => `${k}: ${v}`).join('; ') : '';
    super(`${error?.message || `HTTP ${status}`}${fields ? ` (${fields})` : ''}`);
    this.status = status;
    this.code = error?.code;
  }
}
class SignedOut extends Error {}

async function call(path, params) {
  const url = new URL(path, apiBase);
  if (params) url.search = params.toString();
  const token = sessionStorage.getItem(TOKEN);
  if (!token) { signOut(''); throw new SignedOut(); }
  const response = await fetch(url, { headers: { authorization: `Bearer ${token}`, accept: 'application/json' }, cache: 'no-store' });
  if (response.status === 401) {
    const body = await response.json().catch(() => ({}));
    signOut(`Signed out: the API refused the token (${body?.error?.message || 'unauthorized'}). Sign in with a valid token.`);
    throw new SignedOut();
  }
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new ApiError(response.status, body.error);
  }
  return response;
}

async function api(path, params) {
  return JSON.parse(await (await call(path, params)).text(), exactNumbers);
}

function failed(where, error) {
  if (error instanceof SignedOut) return;
  where.replaceChildren(h('p', { class: 'message error', role: 'alert' }, `Could not load: ${error.message}`));
}

// ---------------------------------------------------------------- sign in

function takeFragmentToken() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (!fragment.has('token')) return;
  sessionStorage.setItem(TOKEN, fragment.get('token'));
  if (fragment.get('key')) localStorage.setItem(KEY, fragment.get('key'));
  // Out of the address bar and the history: the token is not to be shared with the link.
  history.replaceState(null, '', `${location.pathname}${location.search}#/events`);
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN);
  cleanup();
  cleanup = () => {};
  me = null;
  caller = null;
  kept = null;
  $('view').replaceChildren();
  $('who').hidden = true;
  $('sign-out').hidden = true;
  $('signin').hidden = false;
  $('signin-message').textContent = message;
  $('verifier-key').value = localStorage.getItem(KEY) || '';
  $('token').focus();
}

/// Signs in with the stored token: asks who it is, and renders the view at the same time
/// (one round trip less before the first events show). A refused token signs out.
async function signIn() {
  $('signin').hidden = true;
  caller = api('whoami');
  caller.catch(() => {});
  render();
  try {
    me = await caller;
  } catch (error) {
    if (!(error instanceof SignedOut)) signOut(`Could not sign in: ${error.message}`);
    return;
  }
  $('who').hidden = false;
  $('who').replaceChildren('Tenant ', h('strong', { id: 'who-tenant' }, me.tenant_id), ' · ', h('span', { id: 'who-subject' }, me.subject));
  $('sign-out').hidden = false;
}

// ---------------------------------------------------------------- routing

function route() {
  const text = location.hash.startsWith('#/') ? location.hash.slice(2) : 'events';
  const [path, query = ''] = text.split('?');
  return { parts: path.split('/').filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(query) };
}

function link(parts, params) {
  const path = parts.map(encodeURIComponent).join('/');
  const query = params && params.toString();
  return `#/${path}${query ? `?${query}` : ''}`;
}

function render() {
  if (!sessionStorage.getItem(TOKEN)) return;
  cleanup();
  cleanup = () => {};
  const { parts, params } = route();
  const view = $('view');
  view.replaceChildren();
  scrollTo(0, 0);
  if (parts[0] === 'events' && parts.length === 2) eventView(view, parts[1]);
  else if (parts[0] === 'resources' && parts.length === 3) resourceView(view, parts[1], parts[2], params);
  else eventsView(view, params);
  $('main').focus({ preventScroll: true });
}

// ---------------------------------------------------------------- events

/// The API's parameters for the view's filters: a preset range becomes `from`.
function apiParams(params) {
  const out = new URLSearchParams();
  for (const name of FILTERS) {
    const value = params.get(name);
    if (!value || name === 'range') continue;
    out.set(name, value);
  }
  const range = RANGES[params.get('range')];
  if (range) { out.set('from', new Date(Date.now() - range[1]).toISOString()); out.delete('to'); }
  return out;
}

function changedFields(event) {
  return Object.keys(event.changes || {}).join(', ');
}

function eventRow(event) {
  return h('li', { class: 'event', 'data-id': event.id },
    h('a', { href: link(['events', event.id]) },
      h('span', { class: 'col-time' }, time(event.occurred_at)),
      h('span', { class: 'col-actor' }, event.actor_id),
      h('span', { class: 'col-action' }, event.action),
      h('span', { class: 'col-resource' }, `${event.resource_type}/${event.resource_id}`),
      h('span', { class: 'col-changes' }, changedFields(event))));
}

function field(label, name, value, attrs = {}) {
  const id = `f-${name}`;
  return h('div', { class: 'field' }, h('label', { for: id }, label), h('input', { id, name, value: value || '', autocomplete: 'off', ...attrs }));
}

function filterForm(params) {
  const range = params.get('range') || (params.get('from') || params.get('to') ? 'custom' : '');
  const form = h('form', { class: 'filters', id: 'filters' },
    field('Actor', 'actor_id', params.get('actor_id')),
    field('Action', 'action', params.get('action')),
    field('Resource type', 'resource_type', params.get('resource_type')),
    field('Resource id', 'resource_id', params.get('resource_id')),
    field('Changed field', 'changed_field', params.get('changed_field')),
    field('Changed from', 'changed_from', params.get('changed_from')),
    field('Changed to', 'changed_to', params.get('changed_to')),
    h('div', { class: 'field' }, h('label', { for: 'f-range' }, 'Time range'),
      h('select', { id: 'f-range', name: 'range' },
        h('option', { value: '' }, 'Any time'),
        Object.entries(RANGES).map(([v, [label]]) => h('option', { value: v }, label)),
        h('option', { value: 'custom' }, 'Between…'))),
    field('From', 'from', toLocalInput(params.get('from')), { type: 'datetime-local', step: '1' }),
    field('To', 'to', toLocalInput(params.get('to')), { type: 'datetime-local', step: '1' }),
    h('div', { class: 'field' }, h('label', { for: 'f-sort' }, 'Order'),
      h('select', { id: 'f-sort', name: 'sort' },
        h('option', { value: '' }, 'Newest first'),
        h('option', { value: 'occurred_at' }, 'Oldest first'))),
    h('div', { class: 'actions' },
      h('button', { type: 'submit' }, 'Apply'),
      h('a', { href: '#/events', class: 'button secondary' }, 'Clear')));
  form.elements.range.value = range;
  form.elements.sort.value = params.get('sort') === 'occurred_at' ? 'occurred_at' : '';
  const custom = () => { const on = form.elements.range.value === 'custom'; form.elements.from.disabled = !on; form.elements.to.disabled = !on; };
  custom();
  form.elements.range.addEventListener('change', custom);
  const active = FILTERS.filter((name) => params.get(name)).length;
  // Open on a wide screen; on a phone, folded until asked for, so that the events show.
  const box = h('details', { class: 'filters-box', open: !matchMedia('(max-width: 760px)').matches },
    h('summary', {}, `Filters${active ? ` (${active} set)` : ''}`), form);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const out = new URLSearchParams();
    for (const name of ['actor_id', 'action', 'resource_type', 'resource_id', 'changed_field', 'changed_from', 'changed_to']) {
      const value = form.elements[name].value.trim();
      if (value) out.set(name, value);
    }
    const chosen = form.elements.range.value;
    if (RANGES[chosen]) out.set('range', chosen);
    if (chosen === 'custom') {
      for (const name of ['from', 'to']) {
        const value = fromLocalInput(form.elements[name].value);
        if (value) out.set(name, value);
      }
    }
    if (form.elements.sort.value) out.set('sort', form.elements.sort.value);
    if (route().params.get('live') === '1') out.set('live', '1');
    location.hash = link(['events'], out);
  });
  return box;
}

/// The events view left last, kept whole (its rows, cursor and scroll position) so that
/// coming back to it (Back, after opening an event) finds it as it was.
let kept = null;

function eventsView(view, params) {
  const key = location.hash;
  if (kept && kept.key === key) {
    const { nodes, resume } = kept;
    kept = null;
    view.append(...nodes);
    resume();
    return;
  }
  const q = apiParams(params);
  const list = h('ol', { class: 'events', id: 'events', 'aria-label': 'Events' });
  const status = h('p', { class: 'status', id: 'events-status', role: 'status' }, 'Loading…');
  const more = h('button', { type: 'button', id: 'more', class: 'secondary', hidden: true }, 'Load more');
  const sentinel = h('div', { class: 'sentinel', 'aria-hidden': 'true' });
  const newest = params.get('sort') !== 'occurred_at';
  const live = h('input', { type: 'checkbox', id: 'live', checked: params.get('live') === '1' && newest, disabled: !newest });
  const exportStatus = h('p', { class: 'status', id: 'export-status', role: 'status' });
  const toolbar = h('div', { class: 'toolbar' },
    h('label', { class: 'switch', for: 'live' }, live, ' Live tail', newest ? '' : ' (newest first only)'),
    h('button', { type: 'button', id: 'export-csv', class: 'secondary', onclick: () => exportAll('csv', q, exportStatus) }, 'Export CSV'),
    h('button', { type: 'button', id: 'export-ndjson', class: 'secondary', onclick: () => exportAll('ndjson', q, exportStatus) }, 'Export NDJSON'),
    exportStatus);
  const header = h('div', { class: 'events-head', 'aria-hidden': 'true' },
    h('span', {}, 'When'), h('span', {}, 'Actor'), h('span', {}, 'Action'), h('span', {}, 'Resource'), h('span', {}, 'Changed'));
  view.append(h('h1', {}, 'Events'), filterForm(params), toolbar, header, list, status, more, sentinel);

  const seen = new Set();
  let cursor = null;
  let done = false;
  let loading = false;
  let stopped = false;
  let count = 0;
  const showStatus = () => {
    status.textContent = `${count} event${count === 1 ? '' : 's'}${done ? (count ? ' · end of the log' : ' match these filters') : ''}`;
    more.hidden = done;
  };
  async function next() {
    if (loading || done || stopped) return;
    loading = true;
    try {
      const p = new URLSearchParams(q);
      p.set('limit', String(PAGE));
      if (cursor) p.set('cursor', cursor);
      const page = await api('events', p);
      if (stopped) return;
      for (const event of page.data) {
        if (seen.has(event.id)) continue;
        seen.add(event.id);
        list.append(eventRow(event));
        count++;
      }
      if (!cursor) markPainted('sentinel:events-rendered');
      cursor = page.next_cursor;
      done = !cursor;
      showStatus();
    } catch (error) {
      failed(status, error);
      done = true;
    } finally {
      loading = false;
    }
    // Keep filling while the end of the list is on screen.
    if (!done && sentinel.getBoundingClientRect().top < innerHeight + 600) next();
  }
  more.addEventListener('click', next);
  const observer = new IntersectionObserver((entries) => { if (entries.some((e) => e.isIntersecting)) next(); }, { rootMargin: '600px' });
  observer.observe(sentinel);
  next();

  // Live tail: ask for what is newer than the newest shown, every few seconds.
  let timer = null;
  async function tail() {
    const first = list.querySelector('li.event time');
    const p = new URLSearchParams(q);
    if (first) p.set('from', first.getAttribute('datetime'));
    p.set('limit', String(PAGE));
    p.delete('to');
    try {
      const fresh = [];
      for (let pages = 0; pages < 10; pages++) {
        const page = await api('events', p);
        const unseen = page.data.filter((e) => !seen.has(e.id));
        fresh.push(...unseen);
        if (!page.next_cursor || unseen.length < page.data.length) break;
        p.set('cursor', page.next_cursor);
      }
      if (stopped) return;
      for (const event of fresh.reverse()) {
        seen.add(event.id);
        const row = eventRow(event);
        row.classList.add('fresh');
        list.prepend(row);
        count++;
      }
      if (fresh.length) showStatus();
    } catch (error) {
      if (!(error instanceof SignedOut)) status.textContent = `Live tail paused: ${error.message}`;
    }
    if (!stopped && live.checked) timer = setTimeout(tail, TAIL_MS);
  }
  live.addEventListener('change', () => {
    const p = new URLSearchParams(params);
    if (live.checked) p.set('live', '1'); else p.delete('live');
    history.replaceState(null, '', link(['events'], p));
    clearTimeout(timer);
    if (live.checked) timer = setTimeout(tail, TAIL_MS);
  });
  if (live.checked) timer = setTimeout(tail, TAIL_MS);
  let scrolled = 0;
  const leave = () => {
    scrolled = scrollY;
    stopped = true;
    observer.disconnect();
    clearTimeout(timer);
    kept = { key, nodes: [...view.childNodes], resume };
  };
  function resume() {
    stopped = false;
    cleanup = leave;
    observer.observe(sentinel);
    if (live.checked) timer = setTimeout(tail, TAIL_MS);
    scrollTo(0, scrolled);
  }
  cleanup = leave;
}

/// Exports the filter's events, part by part (each bounded by the API), into one file.
async function exportAll(format, q, status) {
  const parts = [];
  let cursor = null;
  let rows = 0;
  status.textContent = `Exporting…`;
  try {
    do {
      const p = new URLSearchParams(q);
      p.set('format', format);
      if (cursor) p.set('cursor', cursor);
      const response = await call('export', p);
      let text = await response.text();
      // The CSV header comes once.
      if (format === 'csv' && parts.length) text = text.slice(text.indexOf('\r\n') + 2);
      parts.push(text);
      rows += Number(response.headers.get('sentinel-export-rows') || 0);
      cursor = response.headers.get('sentinel-next-cursor');
      status.textContent = `Exporting… ${rows} events`;
    } while (cursor);
  } catch (error) {
    if (!(error instanceof SignedOut)) status.textContent = `Export failed: ${error.message}`;
    return;
  }
  const name = `sentinel-events-${(await caller).tenant_id}.${format}`;
  const blob = new Blob(parts, { type: format === 'csv' ? 'text/csv' : 'application/x-ndjson' });
  const a = h('a', { href: URL.createObjectURL(blob), download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 60_000);
  status.textContent = `Exported ${rows} events to ${name}`;
}

// ---------------------------------------------------------------- one event

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v) && !isRaw(v);

/// The leaves that differ between two JSON values, with their paths.
function diffRows(before, after, path = '', rows = []) {
  if (isObject(before) && isObject(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
    for (const k of keys) diffRows(before[k], after[k], path ? `${path}.${k}` : k, rows);
  } else if (Array.isArray(before) && Array.isArray(after)) {
    for (let i = 0; i < Math.max(before.length, after.length); i++) diffRows(before[i], after[i], `${path}[${i}]`, rows);
  } else if (JSON.stringify(before) !== JSON.stringify(after)) {
    const kind = before === undefined || before === null ? 'added' : after === undefined || after === null ? 'removed' : 'changed';
    rows.push({ path, before, after, kind });
  }
  return rows;
}

function changeDiff(name, change) {
  const before = change?.before;
  const after = change?.after;
  const rows = diffRows(before, after, '');
  return h('section', { class: 'change', 'data-field': name, 'aria-label': `Change of ${name}` },
    h('h3', {}, name),
    h('table', { class: 'diff' },
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Path'), h('th', { scope: 'col' }, 'Before'), h('th', { scope: 'col' }, 'After'))),
      h('tbody', {}, rows.length
        ? rows.map((r) => h('tr', { class: r.kind },
          h('th', { scope: 'row' }, r.path ? `${name}${r.path.startsWith('[') ? '' : '.'}${r.path}` : name),
          h('td', { class: 'before' }, h('code', {}, json(r.before))),
          h('td', { class: 'after' }, h('code', {}, json(r.after)))))
        : h('tr', {}, h('td', { colspan: '3' }, 'The same before and after')))));
}

async function eventView(view, id) {
  view.append(h('p', { class: 'status', role: 'status' }, 'Loading…'));
  let event;
  try {
    event = await api(`events/${encodeURIComponent(id)}`);
  } catch (error) {
    failed(view, error);
    return;
  }
  const resourceParams = new URLSearchParams({ resource_type: event.resource_type, resource_id: event.resource_id });
  const badge = h('p', { class: 'badge checking', id: 'badge', role: 'status' }, 'Checking against the signed log…');
  const rows = [
    ['Id', event.id], ['Tenant', event.tenant_id], ['Occurred', time(event.occurred_at)], ['Received', time(event.received_at)],
    ['Actor', h('a', { href: link(['events'], new URLSearchParams({ actor_id: event.actor_id })), id: 'actor-link' }, event.actor_id)],
    ['Actor type', event.actor_type ?? '—'], ['Action', event.action],
    ['Resource', h('a', { href: link(['resources', event.resource_type, event.resource_id], new URLSearchParams({ at: event.occurred_at })), id: 'resource-link' }, `${event.resource_type}/${event.resource_id}`)],
  ];
  view.replaceChildren(
    h('h1', {}, 'Event ', h('code', {}, event.id)),
    badge,
    h('dl', { class: 'fields', id: 'event-fields' }, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
    h('p', { class: 'links' },
      h('a', { href: link(['events'], new URLSearchParams({ actor_id: event.actor_id })) }, `Other events by ${event.actor_id}`), ' · ',
      h('a', { href: link(['events'], resourceParams), id: 'resource-events-link' }, 'Other events of this resource'), ' · ',
      h('a', { href: link(['resources', event.resource_type, event.resource_id], new URLSearchParams({ at: event.occurred_at })) }, 'Its state after this event')),
    h('h2', {}, 'Changes'),
    Object.keys(event.changes).length
      ? h('div', { id: 'changes' }, Object.entries(event.changes).map(([name, change]) => changeDiff(name, change)))
      : h('p', {}, 'No field changed.'),
    h('h2', {}, 'Metadata'),
    h('pre', { class: 'json', id: 'metadata' }, json(event.metadata)));
  checkBadge(badge, event);
}

async function checkBadge(badge, event) {
  const keyText = localStorage.getItem(KEY);
  const show = (kind, text) => { badge.className = `badge ${kind}`; badge.textContent = text; };
  if (!keyText) {
    show('unknown', 'Not checked: no checkpoint public key is set. Sign out and paste it (sentinel public-key) to check events against the signed log.');
    return;
  }
  try {
    const [proofResponse, checkpoint] = await Promise.all([
      call(`events/${encodeURIComponent(event.id)}/proof`).catch((e) => e),
      api('checkpoint'),
    ]);
    if (proofResponse instanceof ApiError && proofResponse.code === 'not_yet_checkpointed') {
      show('pending', 'Not yet in a signed checkpoint: checkpoints follow within a minute. Reload to check again.');
      return;
    }
    if (proofResponse instanceof Error) throw proofResponse;
    const proof = JSON.parse(await proofResponse.text(), exactNumbers);
    const { tenant_id: tenant } = await caller;
    const consistency = (from, to) => api('consistency', new URLSearchParams({ from: String(from), to: String(to) }));
    const ok = await verifyEvent({ proof, checkpoint, shown: event, tenant, keyText, consistency });
    show('verified', `Verified: this event is entry ${ok.index} of the log signed by ${ok.keyName} at size ${ok.size} (checked in this browser).`);
  } catch (error) {
    if (error instanceof SignedOut) return;
    const why = error instanceof VerifyError ? error.message : `the proof could not be read: ${error.message}`;
    show('failed', `Verification failed: ${why}`);
  }
}

// ---------------------------------------------------------------- one resource

async function resourceView(view, type, id, params) {
  const base = ['resources', type, id];
  const path = `resources/${encodeURIComponent(type)}/${encodeURIComponent(id)}`;
  const at = params.get('at') || new Date().toISOString();
  const timeline = h('ol', { class: 'timeline', id: 'timeline', 'aria-label': 'History, oldest first' });
  const state = h('div', { id: 'state', 'aria-live': 'polite' }, h('p', { class: 'status' }, 'Loading…'));
  const moreHistory = h('button', { type: 'button', class: 'secondary', hidden: true }, 'Load more history');
  const atInput = h('input', { id: 'at', type: 'datetime-local', step: '1', value: toLocalInput(at) });
  const atForm = h('form', { class: 'at', id: 'at-form' },
    h('label', { for: 'at' }, 'State at'), atInput, h('button', { type: 'submit' }, 'Show'));
  atForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const chosen = fromLocalInput(atInput.value);
    if (chosen) location.hash = link(base, new URLSearchParams({ at: chosen }));
  });
  view.append(
    h('h1', {}, 'Resource ', h('code', {}, `${type}/${id}`)),
    h('p', { class: 'links' }, h('a', { href: link(['events'], new URLSearchParams({ resource_type: type, resource_id: id })) }, 'Its events in the list')),
    h('div', { class: 'resource' },
      h('section', { 'aria-labelledby': 'history-title' }, h('h2', { id: 'history-title' }, 'History'), timeline, moreHistory),
      h('section', { 'aria-labelledby': 'state-title' }, h('h2', { id: 'state-title' }, 'State'), atForm, state)));

  let cursor = null;
  async function history() {
    const p = new URLSearchParams({ limit: String(PAGE) });
    if (cursor) p.set('cursor', cursor);
    try {
      const page = await api(`${path}/history`, p);
      for (const event of page.data) {
        const chosen = event.occurred_at === at;
        timeline.append(h('li', { class: chosen ? 'chosen' : '', 'data-id': event.id },
          time(event.occurred_at), ' ',
          h('a', { href: link(['events', event.id]) }, event.action), ` by ${event.actor_id}`,
          h('span', { class: 'col-changes' }, changedFields(event)), ' ',
          h('a', { class: 'button small secondary', href: link(base, new URLSearchParams({ at: event.occurred_at })), 'aria-label': `State after ${event.action} at ${event.occurred_at}` }, 'State here')));
      }
      cursor = page.next_cursor;
      moreHistory.hidden = !cursor;
    } catch (error) {
      failed(timeline, error);
    }
  }
  moreHistory.addEventListener('click', history);
  history();

  try {
    const found = await api(`${path}/state`, new URLSearchParams({ at }));
    // A state larger than one answer comes in parts: fetch the rest.
    for (let part = found; part.next_cursor;) {
      part = await api(`${path}/state`, new URLSearchParams({ cursor: part.next_cursor }));
      Object.assign(found.fields, part.fields);
      Object.assign(found.removed_fields, part.removed_fields);
    }
    const fieldRows = (fields) => Object.entries(fields).map(([name, f]) => h('tr', { 'data-field': name },
      h('th', { scope: 'row' }, name),
      h('td', {}, h('code', {}, json(f.value))),
      h('td', {}, h('a', { href: link(['events', f.event_id]) }, f.event_id), ' ', time(f.changed_at))));
    const table = (caption, fields, tableId) => h('table', { class: 'state', id: tableId },
      h('caption', {}, caption),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Field'), h('th', { scope: 'col' }, 'Value'), h('th', { scope: 'col' }, 'Last set by'))),
      h('tbody', {}, fieldRows(fields)));
    state.replaceChildren(
      h('p', { id: 'state-summary' }, `As of `, time(found.at), ` · ${found.event_count} event${found.event_count === 1 ? '' : 's'}`),
      table('Fields', found.fields, 'state-fields'),
      Object.keys(found.removed_fields).length ? table('Removed fields', found.removed_fields, 'state-removed') : '');
    markPainted('sentinel:state-rendered');
  } catch (error) {
    if (error.status === 404) state.replaceChildren(h('p', { class: 'message', id: 'state-summary' }, 'The resource had no events at or before this moment.'));
    else failed(state, error);
  }
}

// ---------------------------------------------------------------- start

// Relative times stay true while the page is open.
setInterval(() => {
  for (const t of document.querySelectorAll('time.when')) t.querySelector('.ago').textContent = ago(new Date(t.dateTime));
}, 30_000);

takeFragmentToken();
$('signin-form').addEventListener('submit', (e) => {
  e.preventDefault();
  sessionStorage.setItem(TOKEN, $('token').value.trim().replace(/^Bearer\s+/i, ''));
  const key = $('verifier-key').value.trim();
  if (key) localStorage.setItem(KEY, key); else localStorage.removeItem(KEY);
  $('token').value = '';
  signIn();
});
$('sign-out').addEventListener('click', () => signOut('Signed out.'));
addEventListener('hashchange', () => { if (location.hash.includes('token=')) { takeFragmentToken(); signIn(); } else render(); });
if (sessionStorage.getItem(TOKEN)) signIn(); else signOut('');
