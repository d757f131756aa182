// Berth's one script. Every action calls the REST API (same-origin, session cookie plus the
// page's CSRF token), then re-renders from the server. Data is put in the page with
// textContent only, never innerHTML.
(() => {
  'use strict';

  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
  const enc = encodeURIComponent;
  const csrf = () => ($('meta[name="csrf-token"]') || {}).content || '';

  async function api(method, path, body) {
    const opts = { method, credentials: 'same-origin', headers: { 'X-CSRF-Token': csrf() } };
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(path, opts);
    } catch (e) {
      return { status: 0, ok: false, data: { error: { message: 'Network error: ' + e.message } } };
    }
    const text = await resp.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (_) { data = { raw: text }; }
    }
    return { status: resp.status, ok: resp.ok, data };
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === 'class') node.className = v;
      else if (k === 'text') node.textContent = v;
      else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else if (v !== false && v !== null && v !== undefined) node.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }

  function toast(message) {
    const t = $('#toast');
    if (!t) return;
    t.textContent = message;
    t.classList.add('show');
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => t.classList.remove('show'), 2500);
  }

  function errorMessage(res) {
    const err = res.data && res.data.error;
    return err ? err.message : `Request failed (HTTP ${res.status})`;
  }

  // Shows an API error beside its field (the error's `field` names it), else at form level.
  function showErrors(form, res) {
    clearErrors(form);
    const err = (res.data && res.data.error) || {};
    const field = err.field || '';
    const slots = $$('.field-error[data-for]', form);
    const slot = slots.find((s) => field === s.dataset.for
      || field.startsWith(s.dataset.for + '.') || field.startsWith(s.dataset.for + '['));
    const target = slot || $('.form-error', form);
    if (target) target.textContent = errorMessage(res);
    else toast(errorMessage(res));
    const input = slot && slot.closest('.field') && $('input, select', slot.closest('.field'));
    if (input) input.setAttribute('aria-invalid', 'true');
  }

  function clearErrors(form) {
    $$('.field-error, .form-error', form).forEach((e) => { e.textContent = ''; });
    $$('[aria-invalid]', form).forEach((e) => e.removeAttribute('aria-invalid'));
  }

  async function copyText(text) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch (_) {
      const area = el('textarea', { class: 'offscreen' });
      area.value = text;
      document.body.append(area);
      area.select();
      let ok = false;
      try { ok = document.execCommand('copy'); } catch (_) { ok = false; }
      area.remove();
      return ok;
    }
  }

  // A confirmation dialog of our own (keyboard friendly, no window.confirm).
  function confirmDialog(message, confirmLabel) {
    return new Promise((resolve) => {
      const back = el('div', { class: 'modal-backdrop', id: 'confirm-dialog' });
      const yes = el('button', { class: 'primary danger', type: 'button', id: 'confirm-yes', text: confirmLabel });
      const no = el('button', { type: 'button', id: 'confirm-no', text: 'Cancel' });
      const box = el('div', { class: 'modal', role: 'alertdialog', 'aria-modal': 'true', 'aria-labelledby': 'confirm-text' },
        el('p', { id: 'confirm-text', text: message }),
        el('div', { class: 'actions' }, el('span', { class: 'spacer' }), no, yes));
      back.append(box);
      document.body.append(back);
      const opener = document.activeElement;
      const done = (v) => { back.remove(); if (opener && opener.focus) opener.focus(); resolve(v); };
      yes.addEventListener('click', () => done(true));
      no.addEventListener('click', () => done(false));
      back.addEventListener('keydown', (e) => {
        if (e.key === 'Escape') { e.preventDefault(); done(false); }
        trapTab(e, box);
      });
      no.focus();
    });
  }

  function focusables(root) {
    return $$('a[href], button:not([disabled]), input:not([disabled]):not([type=hidden]), select, textarea, [tabindex="0"]', root)
      .filter((n) => n.offsetParent !== null);
  }

  function trapTab(e, root) {
    if (e.key !== 'Tab') return;
    const items = focusables(root);
    if (!items.length) return;
    const first = items[0];
    const last = items[items.length - 1];
    if (e.shiftKey && document.activeElement === first) { e.preventDefault(); last.focus(); }
    else if (!e.shiftKey && document.activeElement === last) { e.preventDefault(); first.focus(); }
  }

  // Test Webhook result: a badge whose tooltip has the status, duration, the start of the
  // body or the error, and "Copy full response".
  function renderTestResult(container, result) {
    container.textContent = '';
    const ok = !!result.success;
    const tipId = 'tip-' + Math.random().toString(36).slice(2);
    const badge = el('button', {
      type: 'button', class: 'badge ' + (ok ? 'ok' : 'bad'), 'aria-describedby': tipId,
      'data-test-badge': ok ? 'success' : 'failure', text: ok ? '✓ Success' : '✗ Failed',
    });
    const lines = [];
    lines.push(el('div', { text: `Status: ${result.statusCode == null ? 'no response' : result.statusCode}` }));
    lines.push(el('div', { text: `Duration: ${result.durationMs} ms` }));
    if (result.error) lines.push(el('div', { class: 'tip-error', text: `Error: ${result.error}` }));
    const bodyStart = result.response && result.response.body ? result.response.body.slice(0, 300) : '';
    if (bodyStart) lines.push(el('pre', { class: 'tip-body', text: bodyStart }));
    const copy = el('button', { type: 'button', class: 'small', 'data-copy-response': '', text: 'Copy full response' });
    copy.addEventListener('click', async (e) => {
      e.stopPropagation();
      const done = await copyText(JSON.stringify(result, null, 2));
      toast(done ? 'Full response copied' : 'Could not copy');
    });
    const tip = el('div', { class: 'tooltip', role: 'tooltip', id: tipId, hidden: true }, ...lines, copy);
    // Fixed positioning keeps the tooltip whole inside scrolling tables.
    const show = () => {
      tip.hidden = false;
      const r = badge.getBoundingClientRect();
      const width = Math.min(300, window.innerWidth - 16);
      tip.style.width = width + 'px';
      tip.style.left = Math.max(8, Math.min(window.innerWidth - width - 8, r.left + r.width / 2 - width / 2)) + 'px';
      tip.style.top = (r.bottom + 8) + 'px';
    };
    let shownAt = window.scrollY;
    badge.addEventListener('focus', () => { shownAt = window.scrollY; });
    window.addEventListener('scroll', () => { if (Math.abs(window.scrollY - shownAt) > 40) tip.hidden = true; }, { passive: true });
    const hide = () => { if (!tip.matches(':hover') && !tip.contains(document.activeElement)) tip.hidden = true; };
    badge.addEventListener('mouseenter', show);
    badge.addEventListener('focus', show);
    badge.addEventListener('click', () => { tip.hidden = !tip.hidden; });
    badge.addEventListener('mouseleave', () => setTimeout(hide, 300));
    tip.addEventListener('mouseleave', () => setTimeout(hide, 300));
    container.addEventListener('keydown', (e) => { if (e.key === 'Escape') tip.hidden = true; });
    container.append(badge, tip);
    show();
  }

  // ---- Workspace switcher ----
  const wsSwitch = $('#ws-switch');
  if (wsSwitch) wsSwitch.addEventListener('change', () => { location.href = '/w/' + enc(wsSwitch.value); });

  // ---- Model Registry page ----
  const createModelForm = $('#create-model-form');
  if (createModelForm) {
    const ws = createModelForm.dataset.ws;
    $('#create-model-open').addEventListener('click', () => {
      createModelForm.hidden = false;
      $('#model-name').focus();
    });
    $('[data-close="create-model-form"]').addEventListener('click', () => { createModelForm.hidden = true; });
    createModelForm.addEventListener('submit', async (e) => {
      e.preventDefault();
      const body = { name: $('#model-name').value.trim() };
      const description = $('#model-description').value;
      if (description) body.description = description;
      const res = await api('POST', `/api/v1/workspaces/${enc(ws)}/models`, body);
      if (res.ok) location.href = `/w/${enc(ws)}/m/${enc(res.data.name)}`;
      else showErrors(createModelForm, res);
    });
  }
  const filter = $('#model-filter');
  if (filter) {
    const apply = () => {
      const q = filter.value.trim().toLowerCase();
      $$('#models tbody tr').forEach((tr) => { tr.hidden = q !== '' && !tr.dataset.name.toLowerCase().includes(q); });
    };
    filter.addEventListener('input', apply);
    apply();
  }

  // ---- Model page ----
  const root = $('#model-root');
  if (root) {
    const ws = root.dataset.ws;
    const model = root.dataset.model;
    const base = `/api/v1/workspaces/${enc(ws)}/models/${enc(model)}`;
    const reload = () => location.reload();

    // Versions tab
    const addVersion = $('#add-version-form');
    if (addVersion) {
      addVersion.addEventListener('submit', async (e) => {
        e.preventDefault();
        const body = { version: $('#v-version').value.trim() };
        const tags = $('#v-tags').value.split(',').map((t) => t.trim()).filter(Boolean);
        if (tags.length) body.tags = tags;
        const exp = $('#v-exp').value.trim();
        if (exp) body.sourceExperimentKey = exp;
        const res = await api('POST', `${base}/versions`, body);
        if (res.ok) reload(); else showErrors(addVersion, res);
      });
    }
    $$('.status-select').forEach((select) => {
      const previous = select.value;
      select.addEventListener('change', async () => {
        const v = select.dataset.version;
        const status = select.value === '' ? null : select.value;
        const res = await api('PUT', `${base}/versions/${enc(v)}/status`, { status });
        if (res.ok) { toast(`Status of ${v} set`); reload(); return; }
        if (res.status === 403 && status) {
          const ask = await confirmDialog(`“${status}” needs a workspace admin's review. Request it for ${v}?`, 'Request review');
          if (ask) {
            const r = await api('POST', `${base}/versions/${enc(v)}/status-requests`, { status });
            if (r.ok) { toast('Review requested'); reload(); return; }
            toast(errorMessage(r));
          }
        } else {
          toast(errorMessage(res));
        }
        select.value = previous;
      });
    });
    $$('[data-remove-tag]').forEach((b) => b.addEventListener('click', async () => {
      const res = await api('PATCH', `${base}/versions/${enc(b.dataset.version)}/tags`, { remove: [b.dataset.removeTag] });
      if (res.ok) reload(); else toast(errorMessage(res));
    }));
    $$('form.tag-add').forEach((f) => f.addEventListener('submit', async (e) => {
      e.preventDefault();
      const tag = $('input', f).value.trim();
      if (!tag) return;
      const res = await api('PATCH', `${base}/versions/${enc(f.dataset.version)}/tags`, { add: [tag] });
      if (res.ok) reload(); else toast(errorMessage(res));
    }));
    const decide = (attr, verb) => $$(`[${attr}]`).forEach((b) => b.addEventListener('click', async () => {
      const id = b.getAttribute(attr);
      const res = await api('POST', `/api/v1/workspaces/${enc(ws)}/status-requests/${enc(id)}/${verb}`);
      if (res.ok) { toast(verb === 'approve' ? 'Approved' : 'Rejected'); reload(); } else toast(errorMessage(res));
    }));
    decide('data-approve', 'approve');
    decide('data-reject', 'reject');

    // Webhooks tab
    const dataNode = $('#webhooks-data');
    const hooks = dataNode ? JSON.parse(dataNode.textContent || '[]') : [];
    const byId = Object.fromEntries(hooks.map((h) => [h.id, h]));
    const modal = $('#webhook-modal');
    const form = $('#webhook-form');
    let editing = null;
    let opener = null;

    const snippet = () => {
      const types = $$('input[name=triggers]:checked', form).map((c) => c.value);
      return [
        'on:',
        '  repository_dispatch:',
        `    types: [${types.join(', ')}]`,
        'jobs:',
        '  on-model-event:',
        '    runs-on: ubuntu-latest',
        '    steps:',
        '      - run: echo "${{ github.event.client_payload.registryModelName }} ${{ github.event.client_payload.version }} ${{ github.event.action }}"',
      ].join('\n');
    };
    const syncGithub = () => {
      const on = $('#wh-github').checked;
      $('#gh-help').hidden = !on;
      $('#gh-url-hint').hidden = !on;
      $('#gh-snippet').textContent = snippet();
    };
    // A stored secret is never sent to another origin (scheme, host, port): when the URL
    // moves to one, the secret must be typed again or removed (the API refuses otherwise).
    const originOf = (u) => { try { return new URL(u).origin; } catch (_) { return null; } };
    const syncSecret = () => {
      const stored = !!(editing && editing.hasSecret);
      const moved = stored && originOf($('#wh-url').value.trim()) !== originOf(editing.url);
      const removing = $('#wh-remove-secret').checked;
      const secret = $('#wh-secret');
      secret.required = moved && !removing;
      secret.placeholder = stored && !moved ? '•••••• (unchanged; type to replace)' : '';
      $('#secret-label').textContent = moved && !removing ? 'Secret (required: the URL moved)' : 'Secret (optional)';
      $('#secret-hint').textContent = moved
        ? 'The URL now points to another origin, where the stored secret is not sent: type the secret again, or tick Remove secret.'
        : 'Sent as the Authorization header.';
    };
    const addHeaderRow = (name = '', value = '') => {
      const row = el('div', { class: 'header-row' },
        el('input', { class: 'h-name', 'aria-label': 'Header name', placeholder: 'X-Header', value: name }),
        el('input', { class: 'h-value', 'aria-label': 'Header value', placeholder: 'value', value }),
        el('button', { type: 'button', class: 'small', 'aria-label': 'Remove header', text: '×', onclick: () => row.remove() }));
      $('#header-rows').append(row);
      return row;
    };
    const collect = () => {
      const headers = {};
      $$('.header-row', form).forEach((r) => {
        const k = $('.h-name', r).value.trim();
        if (k) headers[k] = $('.h-value', r).value;
      });
      const body = {
        name: $('#wh-name').value.trim(),
        url: $('#wh-url').value.trim(),
        triggers: $$('input[name=triggers]:checked', form).map((c) => c.value),
        headers,
        githubActions: $('#wh-github').checked,
      };
      const secret = $('#wh-secret').value;
      if (editing && $('#wh-remove-secret').checked) body.secret = null;
      else if (secret) body.secret = secret;
      if (editing) body.enabled = editing.enabled;
      return body;
    };
    const closeModal = () => {
      modal.hidden = true;
      editing = null;
      if (opener && opener.focus) opener.focus();
    };
    const openModal = (hook) => {
      opener = document.activeElement;
      editing = hook;
      form.reset();
      clearErrors(form);
      $('#header-rows').textContent = '';
      $('#modal-test-result').textContent = '';
      $('#webhook-modal-title').textContent = hook ? 'Edit Webhook' : 'Create Webhook';
      $('#wh-name').value = hook ? hook.name : '';
      $('#wh-url').value = hook ? hook.url : '';
      $('#remove-secret-row').hidden = !(hook && hook.hasSecret);
      syncSecret();
      $$('input[name=triggers]', form).forEach((c) => { c.checked = !!hook && hook.triggers.includes(c.value); });
      if (hook) Object.entries(hook.headers || {}).forEach(([k, v]) => addHeaderRow(k, v));
      $('#wh-github').checked = !!(hook && hook.githubActions);
      syncGithub();
      modal.hidden = false;
      $('#wh-name').focus();
    };
    if (modal) {
      $('#create-webhook') && $('#create-webhook').addEventListener('click', () => openModal(null));
      $('#add-header').addEventListener('click', () => $('.h-name', addHeaderRow()).focus());
      $('#wh-github').addEventListener('change', syncGithub);
      $('#wh-url').addEventListener('input', syncSecret);
      $('#wh-remove-secret').addEventListener('change', syncSecret);
      $$('input[name=triggers]', form).forEach((c) => c.addEventListener('change', syncGithub));
      $('#copy-snippet').addEventListener('click', async () => toast(await copyText(snippet()) ? 'Snippet copied' : 'Could not copy'));
      $('#wh-cancel').addEventListener('click', closeModal);
      modal.addEventListener('keydown', (e) => {
        if (e.key === 'Escape') { e.preventDefault(); closeModal(); return; }
        trapTab(e, $('.modal', modal));
      });
      modal.addEventListener('mousedown', (e) => { if (e.target === modal) closeModal(); });
      form.addEventListener('submit', async (e) => {
        e.preventDefault();
        const body = collect();
        const res = editing
          ? await api('PUT', `${base}/webhooks/${enc(editing.id)}`, body)
          : await api('POST', `${base}/webhooks`, body);
        if (res.ok) { toast('Webhook saved'); location.reload(); } else showErrors(form, res);
      });
      $('#wh-test').addEventListener('click', async () => {
        const body = collect();
        delete body.enabled;
        if (editing) body.webhookId = editing.id;
        const out = $('#modal-test-result');
        out.textContent = 'Testing…';
        const res = await api('POST', `${base}/webhooks/test`, body);
        if (res.ok) { clearErrors(form); renderTestResult(out, res.data); } else { out.textContent = ''; showErrors(form, res); }
      });
    }

    // The ⋮ menus.
    const closeMenus = (except) => $$('.menu').forEach((m) => {
      if (m === except) return;
      $('.menu-items', m).hidden = true;
      $('.kebab', m).setAttribute('aria-expanded', 'false');
    });
    $$('.menu').forEach((menu) => {
      const button = $('.kebab', menu);
      const items = $('.menu-items', menu);
      button.addEventListener('click', (e) => {
        e.stopPropagation();
        const open = items.hidden;
        closeMenus(menu);
        items.hidden = !open;
        button.setAttribute('aria-expanded', String(open));
        if (open) { const first = items.firstElementChild; if (first) first.focus(); }
      });
      items.addEventListener('keydown', (e) => {
        const list = Array.from(items.children);
        const i = list.indexOf(document.activeElement);
        if (e.key === 'ArrowDown') { e.preventDefault(); list[(i + 1) % list.length].focus(); }
        if (e.key === 'ArrowUp') { e.preventDefault(); list[(i - 1 + list.length) % list.length].focus(); }
        if (e.key === 'Escape') { e.preventDefault(); items.hidden = true; button.setAttribute('aria-expanded', 'false'); button.focus(); }
      });
    });
    document.addEventListener('click', () => closeMenus(null));

    const toggle = async (hook, enabled) => {
      const body = { name: hook.name, url: hook.url, triggers: hook.triggers, headers: hook.headers, githubActions: hook.githubActions, enabled };
      const res = await api('PUT', `${base}/webhooks/${enc(hook.id)}`, body);
      if (res.ok) { toast(enabled ? 'Enabled' : 'Disabled'); location.reload(); } else toast(errorMessage(res));
    };
    // Re-enable a webhook Berth disabled, and queue what it missed: one call.
    const reenable = async (hook) => {
      const res = await api('POST', `${base}/webhooks/${enc(hook.id)}/enable`);
      if (res.ok) {
        const d = res.data;
        const n = d.replayedFailed + d.missedEvents + d.pending;
        toast(`Enabled; ${n} ${n === 1 ? 'delivery' : 'deliveries'} queued`);
        location.reload();
      } else toast(errorMessage(res));
    };
    $$('tr[data-webhook]').forEach((tr) => {
      const hook = byId[tr.dataset.webhook];
      if (!hook) return;
      $$('[data-action]', tr).forEach((item) => item.addEventListener('click', async (e) => {
        const action = item.dataset.action;
        if (action === 'deliveries') return;
        e.preventDefault();
        closeMenus(null);
        if (action === 'edit') openModal(hook);
        if (action === 'toggle') {
          if (hook.disabledByBerth) await reenable(hook); else await toggle(hook, !hook.enabled);
        }
        if (action === 'test') {
          const cell = $('.test-result', tr);
          cell.textContent = 'Testing…';
          const res = await api('POST', `${base}/webhooks/${enc(hook.id)}/test`);
          if (res.ok) renderTestResult(cell, res.data); else { cell.textContent = ''; toast(errorMessage(res)); }
        }
        if (action === 'delete') {
          if (await confirmDialog(`Delete webhook “${hook.name}”? Its pending deliveries and log are deleted too.`, 'Delete')) {
            const res = await api('DELETE', `${base}/webhooks/${enc(hook.id)}`);
            if (res.ok) { toast('Deleted'); location.reload(); } else toast(errorMessage(res));
          }
        }
      }));
    });
    $$('[data-enable]').forEach((b) => b.addEventListener('click', () => {
      const hook = byId[b.dataset.enable];
      if (hook) reenable(hook);
    }));
  }

  // ---- Deliveries page ----
  const droot = $('#deliveries-root');
  if (droot) {
    const { ws, model, webhook } = droot.dataset;
    const admin = droot.dataset.admin === 'true';
    const base = `/api/v1/workspaces/${enc(ws)}/models/${enc(model)}/webhooks/${enc(webhook)}`;
    const detail = $('#delivery-detail');
    const kv = (obj) => Object.entries(obj || {}).map(([k, v]) => `${k}: ${v}`).join('\n');
    const open = async (id) => {
      const res = await api('GET', `${base}/deliveries/${enc(id)}`);
      if (!res.ok) { toast(errorMessage(res)); return; }
      const d = res.data;
      detail.textContent = '';
      const head = el('div', { class: 'page-head' },
        el('h2', { text: `Delivery ${d.id}` }), el('span', { class: 'spacer' }),
        el('span', { class: 'pill state-' + d.state, text: d.state }));
      if (admin) {
        head.append(el('button', { type: 'button', class: 'primary', id: 'redeliver', text: 'Redeliver', onclick: async () => {
          const r = await api('POST', `${base}/deliveries/${enc(d.id)}/redeliver`);
          if (r.ok) { toast('Queued for redelivery'); setTimeout(() => location.reload(), 800); } else toast(errorMessage(r));
        } }));
      }
      detail.append(head,
        el('p', { class: 'muted', text: `${d.eventTrigger} · event ${d.eventId} · ${d.attemptCount} attempt(s)` }),
        el('h3', { text: 'Request' }),
        el('pre', { class: 'req', text: `POST ${d.request.url}\n${kv(d.request.headers)}\n\n${d.request.body}` }),
        el('h3', { text: 'Attempts' }));
      if (!d.attempts.length) detail.append(el('p', { class: 'muted', text: 'No attempt yet.' }));
      d.attempts.forEach((a) => {
        const title = `#${a.attempt} · ${a.startedAt} · ${a.statusCode == null ? 'no response' : 'HTTP ' + a.statusCode} · ${a.durationMs} ms`
          + (a.errorClass ? ` · ${a.errorClass}` : ' · success') + ` · node ${a.node}`;
        detail.append(el('div', { class: 'attempt' },
          el('strong', { text: title }),
          a.error ? el('p', { class: 'error', text: a.error }) : el('span'),
          el('pre', { text: `${kv(a.responseHeaders)}\n\n${a.responseBody || ''}` })));
      });
      detail.hidden = false;
      detail.scrollIntoView({ block: 'nearest' });
    };
    $$('tr.delivery').forEach((tr) => {
      tr.addEventListener('click', () => open(tr.dataset.delivery));
      tr.addEventListener('keydown', (e) => { if (e.key === 'Enter') open(tr.dataset.delivery); });
    });
    const replay = $('#replay-form');
    if (replay) {
      replay.addEventListener('submit', async (e) => {
        e.preventDefault();
        const value = $('#replay-since').value;
        const since = new Date(value);
        if (Number.isNaN(since.getTime())) { toast('Pick a date and time'); return; }
        const res = await api('POST', `${base}/replay`, { since: since.toISOString() });
        if (res.ok) { toast(`Queued ${res.data.requeued} failed deliveries`); setTimeout(() => location.reload(), 800); } else toast(errorMessage(res));
      });
    }
  }
})();
