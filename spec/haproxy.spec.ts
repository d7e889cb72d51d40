import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { DangaSocket, Listener, type ErrorContext } from '../lib';
import { runUntil } from './helpers';
import { listeningAddresses } from './fixtures/children';

// End to end behind the real HAProxy (Debian package `haproxy`; CI installs it with
// scripts/ci-packages.sh). The configuration is the one docs/operations.md documents: the spec
// reads it from there and only swaps the loopback ports. No haproxy is a failure, not a skip.

const DOC = path.join(__dirname, '..', 'docs', 'operations.md');
const CLIENT_IP = '127.0.0.2'; // so the address the daemon reports is not HAProxy's 127.0.0.1

function haproxyPath(): string {
  const r = spawnSync('sh', ['-c', 'command -v haproxy'], { encoding: 'utf8' });
  const p = r.stdout.trim();
  if (r.status !== 0 || p === '') {
    throw new Error(
      'haproxy is not installed: this spec needs the Debian package (run scripts/ci-packages.sh, ' +
        'or apt-get install -y haproxy)',
    );
  }
  return p;
}

/** The ```haproxy block after the marker comment in docs/operations.md. */
function documentedConfig(): string {
  const text = fs.readFileSync(DOC, 'utf8');
  const m = /<!-- haproxy\.cfg:[^>]*-->\s*```haproxy\n([\s\S]*?)```/.exec(text);
  if (m === null) throw new Error(`no haproxy.cfg block in ${DOC}`);
  return m[1] as string;
}

/**
 * A free port below the kernel's ephemeral range. HAProxy's config must name the daemon's
 * port before the daemon listens, and each test listens on it again: a port from the
 * ephemeral range (what port 0 gives) can meanwhile become some other spec's client port
 * (the 10,000-connection holds take a third of the range), and listen fails with EADDRINUSE.
 * Nothing takes a port below the range unless asked for it by number.
 */
async function freePort(): Promise<number> {
  const range = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8');
  const low = Number(range.trim().split(/\s+/)[0]);
  const top = Number.isInteger(low) && low > 12000 ? low - 1 : 30000;
  for (let i = 0; i < 200; i++) {
    const port = 10000 + Math.floor(Math.random() * (top - 10000));
    const s = net.createServer();
    const ok = await new Promise<boolean>((resolve) => {
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (ok) {
      await new Promise<void>((resolve) => s.close(() => resolve()));
      return port;
    }
  }
  throw new Error('no free port below the ephemeral range in 200 tries');
}

/** Echoes; flushes then closes at EOF; remembers the peer it was given. */
class Echo extends DangaSocket {
  static all: Echo[] = [];
  readonly peer: string | undefined;
  reason: string | undefined = undefined;
  constructor(sock: net.Socket) {
    super(sock);
    this.peer = this.peerAddrString();
    Echo.all.push(this);
    this.watchRead(true);
  }
  override eventRead(): void {
    const b = this.read(1 << 20);
    if (b === null) {
      this.watchRead(false);
      this.write(() => this.close('eof'));
    } else if (b.length > 0) {
      this.write(b);
    }
  }
  override eventErr(): void {
    this.close('err');
  }
  override eventHup(): void {
    this.close('hup');
  }
  override close(reason?: string): void {
    if (!this.closed) this.reason = reason;
    super.close(reason);
  }
}

interface Conn {
  sock: net.Socket;
  /** `ip:port` of our end, taken while connected. */
  local: string;
  got: () => Buffer;
  ended: () => boolean;
}

/** Connect from `localAddress` (default 127.0.0.2); collects what comes back. */
function connect(port: number, localAddress = CLIENT_IP): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let ended = false;
    const sock = net.connect({ port, host: '127.0.0.1', localAddress, allowHalfOpen: true }, () =>
      resolve({
        sock,
        local: `${sock.localAddress ?? ''}:${sock.localPort ?? ''}`,
        got: () => Buffer.concat(chunks),
        ended: () => ended,
      }),
    );
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.on('end', () => (ended = true));
    sock.on('close', () => (ended = true));
    sock.on('error', () => {});
    sock.once('error', reject);
  });
}

let haproxy: ChildProcess | null = null;
let haproxyLog = '';
let dir = '';
let daemonPort = 0;
let frontV1 = 0;
let frontV2 = 0;
const reports: { err: unknown; context: ErrorContext }[] = [];

beforeAll(async () => {
  const bin = haproxyPath();
  daemonPort = await freePort();
  frontV1 = await freePort();
  frontV2 = await freePort();
  const doc = documentedConfig();
  for (const fixed of ['127.0.0.1:8001', '127.0.0.1:8002', '127.0.0.1:7777']) {
    expect(doc).toContain(fixed); // the doc and this spec agree on what gets replaced
  }
  const cfg = doc
    .replace(/127\.0\.0\.1:8001/g, `127.0.0.1:${frontV1}`)
    .replace(/127\.0\.0\.1:8002/g, `127.0.0.1:${frontV2}`)
    .replace(/127\.0\.0\.1:7777/g, `127.0.0.1:${daemonPort}`);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'danga-haproxy-'));
  const file = path.join(dir, 'haproxy.cfg');
  fs.writeFileSync(file, cfg);
  const check = spawnSync(bin, ['-c', '-f', file], { encoding: 'utf8' });
  if (check.status !== 0)
    throw new Error(`haproxy -c rejects the documented config:\n${check.stdout}${check.stderr}`);
  haproxy = spawn(bin, ['-f', file, '-db'], { stdio: ['ignore', 'pipe', 'pipe'] });
  haproxy.stdout?.on('data', (d: Buffer) => (haproxyLog += d.toString()));
  haproxy.stderr?.on('data', (d: Buffer) => (haproxyLog += d.toString()));
  // Ready once both frontends listen. Read from /proc, not by connecting: a probe
  // connection would be forwarded to the daemon, which a slow HAProxy may do only after a
  // test's listener is up, so that test would see a client that is not its own.
  for (const port of [frontV1, frontV2]) {
    let ok = false;
    for (let i = 0; i < 200 && !ok; i++) {
      ok = listeningAddresses(port).includes('127.0.0.1');
      if (!ok) await new Promise((r) => setTimeout(r, 50));
    }
    if (!ok) throw new Error(`haproxy did not listen on ${port}:\n${haproxyLog}`);
  }
});

afterAll(async () => {
  if (haproxy !== null && haproxy.exitCode === null) {
    const gone = new Promise((resolve) => haproxy?.once('exit', resolve));
    haproxy.kill('SIGKILL');
    await gone;
  }
  if (dir !== '') fs.rmSync(dir, { recursive: true, force: true });
});

beforeEach(async () => {
  Echo.all = [];
  reports.length = 0;
  DangaSocket.setErrorHandler((err, context) => reports.push({ err, context }));
  await Listener.listen(
    { host: '127.0.0.1', port: daemonPort, proxyProtocol: true, proxyHeaderTimeoutMs: 1500 },
    (s) => new Echo(s),
  );
});
afterEach(() => DangaSocket.Reset());

describe('Listener.listen({ proxyProtocol }) behind HAProxy', () => {
  it.each([
    ['send-proxy (v1)', () => frontV1],
    ['send-proxy-v2 (v2)', () => frontV2],
  ])('%s: the daemon sees the client, and 4 MB echo unchanged both ways', async (_n, front) => {
    const c = await connect(front());
    const data = randomBytes(4 * 1024 * 1024);
    c.sock.end(data);
    await runUntil(() => c.ended(), 20000);
    expect(c.got().length).toBe(data.length);
    expect(c.got().equals(data)).toBe(true);
    expect(c.local).toMatch(new RegExp(`^${CLIENT_IP.replace(/\./g, '\\.')}:\\d+$`));
    expect(Echo.all.map((e) => e.peer)).toEqual([c.local]);
    expect(reports).toEqual([]);
  });

  it('serves both versions at once from several clients, each with its own address', async () => {
    const conns = await Promise.all([
      connect(frontV1, '127.0.0.2'),
      connect(frontV2, '127.0.0.3'),
      connect(frontV1, '127.0.0.4'),
      connect(frontV2, '127.0.0.5'),
    ]);
    conns.forEach((c, i) => c.sock.write(`client ${i}`));
    await runUntil(() => conns.every((c, i) => c.got().toString() === `client ${i}`), 10000);
    const peers = Echo.all.map((e) => e.peer).sort();
    const want = conns.map((c) => c.local).sort();
    expect(peers).toEqual(want);
  });

  it('closes malformed, truncated, oversized and slow headers, each on its own, while a proxied client keeps echoing', async () => {
    const through = await connect(frontV2);
    through.sock.write('before');
    await runUntil(() => through.got().toString() === 'before', 10000);

    // Straight to the daemon, as a misconfigured balancer or a stray client would.
    const direct = (): Promise<Conn> => connect(daemonPort, '127.0.0.1');
    const malformed = await direct();
    malformed.sock.write('PROXY TCP4 127.0.0.2 127.0.0.1 99999 7777\r\nhello');
    const truncated = await direct();
    truncated.sock.end('PROXY TCP4 127.0.0.2 ');
    const oversized = await direct();
    oversized.sock.write(`PROXY UNKNOWN ${'a'.repeat(150)}\r\n`);
    const slow = await direct();
    const header = Buffer.from('PROXY TCP4 127.0.0.9 127.0.0.1 1 2\r\n');
    let i = 0;
    // One byte a second: the 1.5 s deadline ends it after two bytes.
    const drip = setInterval(() => {
      if (!slow.ended() && i < header.length) slow.sock.write(header.subarray(i, ++i));
    }, 1000);
    try {
      await runUntil(() => [malformed, truncated, oversized, slow].every((c) => c.ended()), 10000);
    } finally {
      clearInterval(drip);
    }
    for (const c of [malformed, truncated, oversized, slow]) expect(c.got().length).toBe(0);

    through.sock.write(' and after');
    await runUntil(() => through.got().toString() === 'before and after', 10000);
    expect(through.ended()).toBe(false);
    const served = Echo.all.filter((e) => e.reason !== 'proxy_protocol');
    expect(served.map((e) => e.peer)).toEqual([through.local]);
    // Each bad connection's object saw no byte and closed with reason 'proxy_protocol'.
    const refused = Echo.all.filter((e) => e.reason === 'proxy_protocol');
    expect(refused.map((e) => e.peer).sort()).toEqual(
      [malformed, truncated, oversized, slow].map((c) => c.local).sort(),
    );
    // At least the first failure is reported (later ones within a second are counted in it).
    const kinds = reports.map((r) => r.context.kind);
    expect(kinds.length).toBeGreaterThan(0);
    expect(new Set(kinds)).toEqual(new Set(['proxy_protocol']));
  });
});
