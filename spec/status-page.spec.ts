import * as fs from 'node:fs';
import type * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import {
  ECHO_SERVER,
  ROOT,
  connectTo,
  echo,
  killChildren,
  spawnChild,
  startEchoServer,
  type Child,
} from './fixtures/children';

// The status page as an operator sees it: bin/echo-server --admin runs as a child process with
// clients connected, the real Chromium (Debian's, driven by playwright-core; never a
// downloaded browser) opens the page, and profiling is switched on from the line protocol.

jest.setTimeout(90_000);

const CHROMIUM = process.env.DANGA_CHROMIUM ?? '/usr/bin/chromium';
// What this machine needs: no sandbox as root, and no background traffic to Google's hosts.
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const TOKEN = 'status-page-token-0123456789abcdef';

const sockets = new Set<net.Socket>();
let tmp = '';
let context: BrowserContext | null = null;

beforeAll(() => {
  // Fail, never skip: without the browser the page is untested.
  try {
    fs.accessSync(CHROMIUM, fs.constants.X_OK);
  } catch {
    throw new Error(
      `Chromium not found at ${CHROMIUM}: run scripts/ci-packages.sh (apt-get install -y chromium)`,
    );
  }
});

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'danga-status-page-'));
});

afterEach(async () => {
  await context?.close();
  context = null;
  for (const s of sockets) s.destroy();
  sockets.clear();
  await killChildren();
  fs.rmSync(tmp, { recursive: true, force: true });
});

async function client(port: number): Promise<net.Socket> {
  const c = await connectTo(port);
  c.on('error', () => {});
  sockets.add(c);
  return c;
}

/** Launch Chromium with a fresh profile under the test's temporary folder. */
async function browse(): Promise<{ page: Page; problems: string[]; urls: string[] }> {
  context = await chromium.launchPersistentContext(path.join(tmp, 'profile'), {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const problems: string[] = [];
  const urls: string[] = [];
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`console: ${msg.text()}`);
  });
  page.on('request', (req) => urls.push(req.url()));
  return { page, problems, urls };
}

/** A console session over TCP: one command, its reply up to the "." line. */
async function consoleCommand(port: number, lines: string[]): Promise<string> {
  const c = await client(port);
  let buf = '';
  c.setEncoding('utf8');
  c.on('data', (d: string) => (buf += d));
  const closed = new Promise((r) => c.once('close', r));
  c.end(lines.join('\n') + '\n');
  await closed;
  return buf;
}

async function echoServerWithAdmin(
  extra: string[] = [],
): Promise<{ child: Child; port: number; adminPort: number }> {
  const { child, port } = await startEchoServer(['--admin', '127.0.0.1:0', ...extra]);
  const m = await child.waitForStdout(/admin on 127\.0\.0\.1:(\d+)/);
  return { child, port, adminPort: Number(m[1]) };
}

/**
 * Poll `check` until it holds (the page refreshes every second); on timeout, fail with what
 * the page and the console show at that moment.
 */
async function until(
  check: () => Promise<boolean>,
  what: string,
  page: Page,
  adminPort: number,
  ms = 15_000,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) {
      const status = await page.locator('#status').textContent();
      const updates = await page.locator('body').getAttribute('data-updates');
      const sockets = await consoleCommand(adminPort, ['sockets']);
      throw new Error(
        `waited ${ms} ms for ${what}; page status ${status}, ${updates} updates\n${sockets}`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('status page in Chromium', () => {
  it('shows the connected clients live, and the profiling turned on from the console', async () => {
    const { port, adminPort } = await echoServerWithAdmin();
    const clients: net.Socket[] = [];
    for (let i = 0; i < 3; i++) {
      const c = await client(port);
      await echo(c, `client ${i} says hello\n`);
      clients.push(c);
    }
    const { page, problems, urls } = await browse();
    const origin = `http://127.0.0.1:${adminPort}`;
    await page.goto(`${origin}/`);
    expect(await page.title()).toBe('danga-socket status');

    // One table row per connected client, with its class and address.
    const rows = page.locator('#connections tbody tr');
    for (const c of clients) {
      const row = rows.filter({ hasText: `to 127.0.0.1:${c.localPort}` });
      await row.waitFor({ timeout: 10_000 });
      expect(await row.getAttribute('data-class')).toBe('EchoClient');
      expect(await row.locator('td').nth(2).textContent()).toBe('R');
    }
    expect(await page.locator('#objects').textContent()).toMatch(/^\d+$/);

    // No profiling yet: the chart says how to turn it on.
    await page.locator('#empty').waitFor({ state: 'visible' });
    expect(await page.locator('#profiling').textContent()).toBe('off');

    // The operator turns profiling on in the console; traffic follows.
    expect(await consoleCommand(adminPort, ['profile on'])).toBe(
      'profiling on (data cleared)\n.\n',
    );
    for (let i = 0; i < 30; i++) {
      for (const c of clients) await echo(c, `ping ${i}\n`);
    }
    const bar = page.locator('#profile-chart g[data-class="EchoClient"]');
    await bar.waitFor({ timeout: 10_000 });
    // Refreshed every second: the bar's call count catches up with the traffic.
    await until(
      async () => Number(await bar.getAttribute('data-calls')) >= 90,
      'the EchoClient bar to count 90 calls',
      page,
      adminPort,
    );
    expect(await page.locator('#profiling').textContent()).toBe('on');
    expect(await bar.locator('rect.user').getAttribute('width')).toMatch(/^[\d.]+$/);
    expect(await page.locator('#empty').isHidden()).toBe(true);

    // A client leaves: its row goes away on a later refresh.
    const gone = clients.pop() as net.Socket;
    const goneRow = rows.filter({ hasText: `to 127.0.0.1:${gone.localPort}` });
    gone.destroy();
    await until(async () => (await goneRow.count()) === 0, 'the row to go', page, adminPort);

    const shot = path.join(tmp, 'status-page.png');
    await page.screenshot({ path: shot, fullPage: true });
    const png = fs.readFileSync(shot);
    expect(png.subarray(1, 4).toString()).toBe('PNG');
    expect(png.length).toBeGreaterThan(10_000);
    if (process.env.DANGA_UPDATE_SCREENSHOT === '1') {
      fs.mkdirSync(path.join(ROOT, 'docs', 'img'), { recursive: true });
      fs.copyFileSync(shot, path.join(ROOT, 'docs', 'img', 'status-page.png'));
    }

    // Self-contained under its Content-Security-Policy: no errors, nothing fetched elsewhere.
    expect(problems).toEqual([]);
    expect(urls.filter((u) => !u.startsWith(`${origin}/`))).toEqual([]);
    expect(urls).toContain(`${origin}/stats.json`);
  });

  it('asks for the token when the console has one, then shows the data', async () => {
    // The token from the environment (jest's process.env does not reach children: env(1)).
    const child = spawnChild('env', [
      `DANGA_ADMIN_TOKEN=${TOKEN}`,
      process.execPath,
      ECHO_SERVER,
      '--port',
      '0',
      '--admin',
      '127.0.0.1:0',
    ]);
    const listening = await child.waitForStdout(/listening on 127\.0\.0\.1:(\d+)/);
    const admin = await child.waitForStdout(/admin on 127\.0\.0\.1:(\d+) \(token required\)/);
    const started = { port: Number(listening[1]), adminPort: Number(admin[1]) };
    const c = await client(started.port);
    await echo(c, 'hello\n');
    const { page, urls } = await browse();
    await page.goto(`http://127.0.0.1:${started.adminPort}/`);
    await page.locator('#auth').waitFor({ state: 'visible', timeout: 10_000 });
    expect(await page.locator('#connections tbody tr').count()).toBe(0);
    await page.locator('#token').fill(TOKEN);
    await page.locator('#auth button').click();
    await page
      .locator('#connections tbody tr', { hasText: `to 127.0.0.1:${c.localPort}` })
      .waitFor({ timeout: 10_000 });
    expect(urls.every((u) => !u.includes(TOKEN))).toBe(true); // a header, never in a URL
  });
});

describe('bin/echo-server --admin', () => {
  it('prints the console address after "listening on" and answers its clients command', async () => {
    const { child, port, adminPort } = await echoServerWithAdmin(['--max-connections', '10']);
    // "listening on" stays the first line (API §9); the console's address follows.
    expect(child.stdout()).toMatch(/^listening on 127\.0\.0\.1:\d+\nadmin on 127\.0\.0\.1:\d+\n/);
    await echo(await client(port), 'x');
    expect(await consoleCommand(adminPort, ['clients'])).toBe('1 echo clients (max 10)\n.\n');
  });

  it('says "token required" and enforces it when started with a token', async () => {
    const { child, adminPort } = await echoServerWithAdmin(['--admin-token', TOKEN]);
    expect(child.stdout()).toMatch(/admin on 127\.0\.0\.1:\d+ \(token required\)/);
    expect(await consoleCommand(adminPort, ['clients'])).toBe(
      'ERROR: authentication required: auth <token>\n.\n',
    );
    expect(await consoleCommand(adminPort, [`auth ${TOKEN}`, 'clients'])).toBe(
      'OK authenticated\n.\n0 echo clients\n.\n',
    );
    expect(child.stdout() + child.stderr()).not.toContain(TOKEN);
  });

  it('refuses a non-loopback console without a token, and --admin with --workers (exit 2)', async () => {
    const open = spawnChild(process.execPath, [ECHO_SERVER, '--port', '0', '--admin', '0.0.0.0:0']);
    expect((await open.exited).code).toBe(2);
    expect(open.stderr()).toContain('without a token');
    const workers = spawnChild(process.execPath, [
      ECHO_SERVER,
      '--port',
      '0',
      '--workers',
      '2',
      '--admin',
      '0',
    ]);
    expect((await workers.exited).code).toBe(2);
    expect(workers.stderr()).toContain('--workers');
    const bad = spawnChild(process.execPath, [ECHO_SERVER, '--admin', 'nowhere']);
    expect((await bad.exited).code).toBe(2);
  });
});
