/**
 * The management console's HTML status page: one self-contained document (inline CSS, script
 * and SVG; nothing fetched but `/stats.json`). It carries no data itself: the script polls
 * `/stats.json` every second, sending the token as a Bearer header when the console has one.
 * Data reaches the DOM through `textContent` only, so a peer address or a subclass's
 * `asString()` can never inject markup.
 */

const STYLE = `
:root { color-scheme: light dark; --bg: #f6f7f9; --fg: #1d2330; --muted: #667085; --card: #fff;
  --line: #e3e6eb; --user: #3b82f6; --sys: #f59e0b; --ok: #16a34a; --bad: #dc2626; }
@media (prefers-color-scheme: dark) { :root { --bg: #12151b; --fg: #e6e9ef; --muted: #98a2b3;
  --card: #1b2029; --line: #2b3240; } }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif;
  background: var(--bg); color: var(--fg); }
header { display: flex; align-items: baseline; gap: 16px; padding: 14px 24px;
  border-bottom: 1px solid var(--line); background: var(--card); }
h1 { font-size: 18px; margin: 0; }
h2 { font-size: 15px; margin: 0 0 10px; }
h2 small, header small { color: var(--muted); font-weight: normal; }
main { padding: 16px 24px; display: grid; gap: 16px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 12px; }
.card, section.panel { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 12px 14px; }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card .value { font-size: 20px; font-variant-numeric: tabular-nums; margin-top: 2px; }
#status.ok { color: var(--ok); } #status.bad { color: var(--bad); }
table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { color: var(--muted); font-weight: 600; font-size: 12px; }
td.num, th.num { text-align: right; }
td.desc { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; white-space: normal; }
.scroll { max-height: 60vh; overflow: auto; }
svg text { fill: var(--fg); font-size: 12px; }
svg text.muted { fill: var(--muted); }
rect.user { fill: var(--user); } rect.system { fill: var(--sys); }
.legend span { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin: 0 4px 0 12px; }
#empty { color: var(--muted); margin: 4px 0; }
form { display: flex; gap: 8px; align-items: center; }
input { font: inherit; padding: 4px 8px; }
`;

const SCRIPT = `
'use strict';
const $ = (id) => document.getElementById(id);
const SVGNS = 'http://www.w3.org/2000/svg';
const KEY = 'danga-console-token';
let token = sessionStorage.getItem(KEY) || '';

function bytes(n) {
  if (n === null || n === undefined) return '-';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i === 0 ? String(n) : n.toFixed(1)) + ' ' + u[i];
}
function dur(s) {
  if (s < 60) return s.toFixed(1) + ' s';
  if (s < 3600) return Math.floor(s / 60) + ' min ' + Math.floor(s % 60) + ' s';
  return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
}
function ms(s) { return s * 1000 >= 100 ? (s * 1000).toFixed(0) + ' ms' : (s * 1000).toFixed(2) + ' ms'; }
function cell(tr, text, cls) {
  const td = document.createElement('td');
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
}
function svg(tag, attrs, text) {
  const el = document.createElementNS(SVGNS, tag);
  for (const k in attrs) el.setAttribute(k, String(attrs[k]));
  if (text !== undefined) el.textContent = text;
  return el;
}

function renderCards(s) {
  $('objects').textContent = s.objects;
  $('uptime').textContent = dur(s.uptimeS);
  $('iterations').textContent = s.iterations.toLocaleString();
  $('bytes-in').textContent = bytes(s.bytesIn);
  $('bytes-out').textContent = bytes(s.bytesOut);
  $('rss').textContent = bytes(s.memory.rss);
  $('heap').textContent = bytes(s.memory.heapUsed);
  $('timers').textContent = s.timersPending;
  $('pid').textContent = 'pid ' + s.pid;
  $('profiling').textContent = s.profiling ? 'on' : 'off';
  $('profiling-state').textContent = s.profiling ? '(profiling on)' : '(profiling off: "profile on" in the console)';
}

function renderChart(rows) {
  const chart = $('profile-chart');
  chart.replaceChildren();
  $('empty').hidden = rows.length > 0;
  chart.style.display = rows.length > 0 ? '' : 'none';
  if (rows.length === 0) return;
  const W = 720, LABEL = 170, BAR = 22, GAP = 8, TEXT = 150;
  const max = Math.max(...rows.map((r) => r.userS + r.systemS), 1e-9);
  const H = rows.length * (BAR + GAP);
  chart.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
  chart.setAttribute('height', String(H));
  rows.forEach((r, i) => {
    const y = i * (BAR + GAP);
    const g = svg('g', { 'data-class': r.class, 'data-calls': r.calls });
    const span = W - LABEL - TEXT;
    const wu = (r.userS / max) * span, ws = (r.systemS / max) * span;
    g.appendChild(svg('text', { x: LABEL - 8, y: y + BAR / 2 + 4, 'text-anchor': 'end' }, r.class));
    g.appendChild(svg('rect', { class: 'user', x: LABEL, y, width: Math.max(wu, 1), height: BAR, rx: 3 }));
    g.appendChild(svg('rect', { class: 'system', x: LABEL + wu, y, width: ws, height: BAR, rx: 3 }));
    g.appendChild(svg('text', { class: 'muted', x: LABEL + wu + ws + 6, y: y + BAR / 2 + 4 },
      ms(r.userS + r.systemS) + ' · ' + r.calls.toLocaleString() + ' calls'));
    const title = svg('title', {}, r.class + ': user ' + ms(r.userS) + ', system ' + ms(r.systemS) + ', ' + r.calls + ' calls');
    g.appendChild(title);
    chart.appendChild(g);
  });
}

function renderSockets(s) {
  const body = $('connections').tBodies[0];
  const frag = document.createDocumentFragment();
  for (const r of s.sockets) {
    const tr = document.createElement('tr');
    tr.dataset.id = r.id;
    tr.dataset.class = r.class;
    cell(tr, r.id, 'num');
    cell(tr, r.class);
    cell(tr, r.watch || '-');
    cell(tr, dur(r.ageS), 'num');
    cell(tr, bytes(r.writeQueueBytes), 'num');
    cell(tr, bytes(r.bytesIn), 'num');
    cell(tr, bytes(r.bytesOut), 'num');
    cell(tr, r.description, 'desc');
    frag.appendChild(tr);
  }
  body.replaceChildren(frag);
  $('sockets-count').textContent = s.sockets.length < s.socketsTotal
    ? '(first ' + s.sockets.length + ' of ' + s.socketsTotal + ')' : '(' + s.socketsTotal + ')';
}

function showAuth() {
  $('auth').hidden = false;
  $('status').textContent = 'token required';
  $('status').className = 'bad';
  $('token').focus();
}

async function refresh() {
  let again = true;
  try {
    const headers = token ? { Authorization: 'Bearer ' + token } : {};
    // A request that hangs must not stop the refreshing: give up after 5 s and retry.
    const res = await fetch('/stats.json', { headers, cache: 'no-store', signal: AbortSignal.timeout(5000) });
    if (res.status === 401) { again = false; showAuth(); return; }
    if (!res.ok) throw new Error('HTTP ' + res.status);
    const s = await res.json();
    renderCards(s);
    renderChart(s.profile);
    renderSockets(s);
    $('status').textContent = 'live · ' + new Date().toLocaleTimeString();
    $('status').className = 'ok';
    document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
  } catch (err) {
    $('status').textContent = 'disconnected (' + err.message + '), retrying';
    $('status').className = 'bad';
  } finally {
    if (again) setTimeout(refresh, 1000);
  }
}

$('auth').addEventListener('submit', (ev) => {
  ev.preventDefault();
  token = $('token').value.trim();
  sessionStorage.setItem(KEY, token);
  $('token').value = '';
  $('auth').hidden = true;
  refresh();
});
refresh();
`;

const BODY = `
<header><h1>danga-socket</h1><small id="pid"></small><span id="status">connecting…</span>
<form id="auth" hidden><label for="token">Console token</label>
<input id="token" type="password" autocomplete="off"><button>Connect</button></form></header>
<main>
<div class="cards">
<div class="card"><div class="label">Objects</div><div class="value" id="objects">–</div></div>
<div class="card"><div class="label">Uptime</div><div class="value" id="uptime">–</div></div>
<div class="card"><div class="label">Loop iterations</div><div class="value" id="iterations">–</div></div>
<div class="card"><div class="label">Bytes in (open)</div><div class="value" id="bytes-in">–</div></div>
<div class="card"><div class="label">Bytes out (open)</div><div class="value" id="bytes-out">–</div></div>
<div class="card"><div class="label">RSS</div><div class="value" id="rss">–</div></div>
<div class="card"><div class="label">Heap used</div><div class="value" id="heap">–</div></div>
<div class="card"><div class="label">Timers</div><div class="value" id="timers">–</div></div>
<div class="card"><div class="label">Profiling</div><div class="value" id="profiling">–</div></div>
</div>
<section class="panel"><h2>CPU by class <small id="profiling-state"></small></h2>
<div class="legend"><span style="background:var(--user)"></span>user<span style="background:var(--sys)"></span>system</div>
<svg id="profile-chart" width="100%" role="img" aria-label="CPU time per class"></svg>
<p id="empty">No profiling data yet. Turn profiling on in the console: <code>profile on</code>.</p>
</section>
<section class="panel"><h2>Connections <small id="sockets-count"></small></h2>
<div class="scroll"><table id="connections"><thead><tr><th class="num">id</th><th>class</th>
<th>watch</th><th class="num">age</th><th class="num">write queue</th><th class="num">in</th>
<th class="num">out</th><th>asString()</th></tr></thead><tbody></tbody></table></div>
</section>
</main>
`;

/** The page, with `nonce` allowing its one inline script (see the CSP in the response). */
export function statusPage(nonce: string): string {
  return (
    '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">' +
    '<meta name="viewport" content="width=device-width, initial-scale=1">' +
    '<link rel="icon" href="data:,"><title>danga-socket status</title>' +
    `<style>${STYLE}</style></head><body>${BODY}<script nonce="${nonce}">${SCRIPT}</script>` +
    '</body></html>\n'
  );
}

/** The Content-Security-Policy sent with the page: its own script and styles, `/stats.json`. */
export function statusPagePolicy(nonce: string): string {
  return (
    `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'unsafe-inline'; ` +
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
  );
}
