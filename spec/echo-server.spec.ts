import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import type * as net from 'node:net';
import { DangaSocket } from '../lib';
import {
  ECHO_SERVER,
  connectTo,
  echo,
  killChildren,
  listeningAddresses,
  readToEnd,
  sleep,
  spawnChild,
  startEchoServer,
  type Child,
} from './fixtures/children';
import { waitFor } from './helpers';
import { NATIVE_OFF, REUSEPORT_NEEDS_ADDON } from './native-mode';

// End-to-end: bin/echo-server runs as a child process (from dist/, built by `pretest`).
const clients = new Set<net.Socket>();
async function client(port: number): Promise<net.Socket> {
  const c = await connectTo(port);
  clients.add(c);
  return c;
}

afterEach(async () => {
  for (const c of clients) c.destroy();
  clients.clear();
  await killChildren();
  DangaSocket.Reset();
});

/** The `calls` column of a profile row, e.g. `EchoClient-read  0.0004  0.0000  12 ...`. */
function profileCalls(out: string, key: string): number | undefined {
  const m = new RegExp(`^${key}\\s+[\\d.]+\\s+[\\d.]+\\s+(\\d+)\\s`, 'm').exec(out);
  return m === null ? undefined : Number(m[1]);
}

/** Resolves with the time until the server closed `c` (FIN or RST), or rejects after ms. */
function closedWithin(c: net.Socket, ms: number): Promise<number> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`still open after ${ms} ms`)), ms);
    const done = (): void => {
      clearTimeout(timer);
      resolve(Date.now() - t0);
    };
    c.on('error', () => {});
    c.once('end', done); // allowHalfOpen: our side stays open after the server's FIN
    c.once('close', done);
    c.resume();
  });
}

async function runToExit(args: string[]): Promise<{ code: number | null; child: Child }> {
  const child = spawnChild(process.execPath, [ECHO_SERVER, ...args]);
  const { code } = await child.exited;
  return { code, child };
}

describe('bin/echo-server', () => {
  it('echoes 3 MB of random bytes identically and closes after the client half-closes', async () => {
    const { port } = await startEchoServer();
    const c = await client(port);
    const data = randomBytes(3 * 1024 * 1024);
    const result = readToEnd(c);
    c.end(data);
    const { data: got, ended, error } = await result;
    expect(error).toBeUndefined();
    expect(ended).toBe(true);
    expect(got.length).toBe(data.length);
    expect(got.equals(data)).toBe(true);
  });

  it('listens on 127.0.0.1 by default and never on a wildcard address', async () => {
    const { host, port } = await startEchoServer();
    expect(host).toBe('127.0.0.1');
    expect(listeningAddresses(port)).toEqual(['127.0.0.1']);
  });

  it('--profile prints <Class>-read rows with non-zero calls at exit (SIGTERM)', async () => {
    const { child, port } = await startEchoServer(['--profile']);
    const c = await client(port);
    expect((await echo(c, 'hello')).toString()).toBe('hello');
    expect((await echo(c, 'again')).toString()).toBe('again');
    child.proc.kill('SIGTERM');
    expect((await child.exited).code).toBe(0);
    const out = child.stdout();
    expect(profileCalls(out, 'EchoClient-read')).toBeGreaterThanOrEqual(2);
    expect(profileCalls(out, 'Listener-read')).toBeGreaterThanOrEqual(1);
  });

  it('--profile prints the table on SIGUSR2 and keeps serving', async () => {
    const { child, port } = await startEchoServer(['--profile']);
    const c = await client(port);
    await echo(c, 'ping');
    child.proc.kill('SIGUSR2');
    await child.waitForStdout(/^EchoClient-read\s+\S+\s+\S+\s+[1-9]/m);
    expect((await echo(c, 'still here')).toString()).toBe('still here');
    expect(child.proc.exitCode).toBeNull();
  });

  it('prints no profile table without --profile', async () => {
    const { child, port } = await startEchoServer();
    const c = await client(port);
    await echo(c, 'x');
    child.proc.kill('SIGUSR2');
    await sleep(300);
    child.proc.kill('SIGTERM');
    expect((await child.exited).code).toBe(0);
    expect(child.stdout()).not.toMatch(/-read/);
  });

  it('on SIGTERM flushes what a client still has queued, then exits 0 within 3 s', async () => {
    const { child, port } = await startEchoServer();
    const c = await client(port);
    c.pause(); // do not read yet: the echo piles up in the server's write queue
    // Below the server's 1 MiB pause mark, so it reads every byte before the signal.
    const data = randomBytes(1_000_000);
    await new Promise<void>((resolve) => c.write(data, () => resolve()));
    await sleep(500);
    const t0 = Date.now();
    child.proc.kill('SIGTERM');
    await sleep(100);
    const { data: got, ended, error } = await readToEnd(c);
    const { code } = await child.exited;
    const elapsed = Date.now() - t0;
    expect(error).toBeUndefined();
    expect(ended).toBe(true);
    expect(got.length).toBe(data.length);
    expect(got.equals(data)).toBe(true);
    expect(code).toBe(0);
    expect(elapsed).toBeLessThan(3000);
  });

  it('on SIGTERM closes idle clients at once instead of waiting out the 2 s drain limit', async () => {
    // Three rounds: the signal can land while the loop waits or between two iterations.
    for (let round = 0; round < 3; round++) {
      const { child, port } = await startEchoServer();
      const c = await client(port);
      await echo(c, 'idle after this');
      const t0 = Date.now();
      child.proc.kill('SIGTERM');
      const ms = await closedWithin(c, 3000);
      expect(ms).toBeLessThan(1000);
      expect((await child.exited).code).toBe(0);
      expect(Date.now() - t0).toBeLessThan(1500);
    }
  });

  it('on SIGTERM exits 0 within 3 s even if a client never reads its echo', async () => {
    const { child, port } = await startEchoServer();
    const c = await client(port);
    c.pause();
    c.on('error', () => {});
    await new Promise<void>((resolve) => c.write(randomBytes(1_000_000), () => resolve()));
    await sleep(300);
    const t0 = Date.now();
    child.proc.kill('SIGTERM');
    const { code } = await child.exited;
    expect(code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(3000);
  });

  it('stops accepting on SIGTERM: new connections are refused while draining', async () => {
    const { child, port } = await startEchoServer();
    const busy = await client(port);
    busy.pause();
    busy.on('error', () => {});
    await new Promise<void>((resolve) => busy.write(randomBytes(1_000_000), () => resolve()));
    await sleep(200);
    child.proc.kill('SIGTERM');
    await sleep(300); // the server is draining `busy` (it does not read) for up to 2 s
    const late = await connectTo(port).then(
      (s) => {
        clients.add(s);
        return closedWithin(s, 2000).then(() => 'closed');
      },
      (err: Error & { code?: string }) => err.code ?? 'error',
    );
    expect(['ECONNREFUSED', 'closed']).toContain(late);
    expect((await child.exited).code).toBe(0);
  });

  it('--max-connections 1 accepts and closes the extra connection at once, serving the first', async () => {
    const { port } = await startEchoServer(['--max-connections', '1']);
    const first = await client(port);
    expect((await echo(first, 'one')).toString()).toBe('one');
    const extra = await client(port);
    let extraBytes = 0;
    extra.on('data', (d: Buffer) => (extraBytes += d.length));
    extra.write('nope');
    await closedWithin(extra, 2000);
    expect(extraBytes).toBe(0);
    expect((await echo(first, 'still one')).toString()).toBe('still one');
    // Once the first leaves, a new connection is served.
    first.destroy();
    let served = false;
    for (let i = 0; i < 20 && !served; i++) {
      await sleep(100);
      const next = await client(port);
      served = await echo(next, 'next', 500).then(
        (b) => b.toString() === 'next',
        () => false,
      );
    }
    expect(served).toBe(true);
  });

  it('--idle-timeout 1 closes a client that sends nothing', async () => {
    const { port } = await startEchoServer(['--idle-timeout', '1']);
    const c = await client(port);
    const ms = await closedWithin(c, 4000);
    expect(ms).toBeGreaterThanOrEqual(700);
  });

  it('--idle-timeout 1 closes a slowloris (1 byte every 2 s) but keeps a client that talks', async () => {
    const { port } = await startEchoServer(['--idle-timeout', '1']);
    const slow = await client(port);
    const chatty = await client(port);
    const slowClosed = closedWithin(slow, 5000);
    let chattyOpen = true;
    chatty.on('close', () => (chattyOpen = false));
    let echoed = 0;
    chatty.on('data', (d: Buffer) => (echoed += d.length));
    const t0 = Date.now();
    let slowSent = 0;
    let sent = 0;
    while (Date.now() - t0 < 2500) {
      if (Date.now() - t0 >= slowSent * 2000 && !slow.destroyed) {
        slow.write('.');
        slowSent++;
      }
      chatty.write('x');
      sent++;
      await sleep(200);
    }
    await slowClosed;
    expect(chattyOpen).toBe(true);
    await waitFor(() => echoed === sent, 'every chatty byte echoed', 10000);
    expect(echoed).toBe(sent);
    expect(chattyOpen).toBe(true);
  });

  it.each([
    [['--port', 'abc']],
    [['--bogus']],
    [['--idle-timeout', '-1']],
    [['--idle-timeout', '0']],
    [['--idle-timeout', '.']],
    [['--port', '70000']],
    [['--max-connections', 'x']],
    [['--workers', '0']],
    [['--host']],
    [['--profile=yes']],
  ])('rejects bad flags %j with a usage line on stderr and exit 2', async (args) => {
    const { code, child } = await runToExit(args);
    expect(code).toBe(2);
    expect(child.stderr()).toMatch(/^usage: echo-server /m);
    expect(child.stdout()).not.toMatch(/listening on/);
  });

  it.each(['.5', '0.5', '2.'])('--idle-timeout accepts %s seconds', async (v) => {
    const { port } = await startEchoServer(['--idle-timeout', v]);
    expect(port).toBeGreaterThan(0);
  });

  it('--help prints the usage and exits 0', async () => {
    const { code, child } = await runToExit(['--help']);
    expect(code).toBe(0);
    expect(child.stdout()).toMatch(/^usage: echo-server /m);
  });

  it('--workers 2 serves connections and shuts down cleanly on SIGTERM', async () => {
    if (NATIVE_OFF && REUSEPORT_NEEDS_ADDON) {
      // Node 20 without the addon: reusePort cannot be set, and the server says why.
      const child = spawnChild(process.execPath, [ECHO_SERVER, '--port', '0', '--workers', '2']);
      const { code } = await child.exited;
      expect(code).not.toBe(0);
      expect(child.stderr()).toMatch(/reusePort .*needs the danga-socket native addon/);
      return;
    }
    const { child, port } = await startEchoServer(['--workers', '2']);
    const workerPids = (): number[] => childPidsOf(child.pid);
    for (let i = 0; i < 30 && workerPids().length < 2; i++) await sleep(100);
    const pids = workerPids();
    expect(pids).toHaveLength(2);
    const socks = await Promise.all(Array.from({ length: 8 }, () => client(port)));
    const replies = await Promise.all(socks.map((s, i) => echo(s, `worker test ${i}`)));
    replies.forEach((r, i) => expect(r.toString()).toBe(`worker test ${i}`));
    child.proc.kill('SIGTERM');
    const { code } = await child.exited;
    expect(code).toBe(0);
    for (const pid of pids) expect(isAlive(pid)).toBe(false);
  });
});

/** PIDs whose parent is `ppid` (Linux /proc). */
function childPidsOf(ppid: number): number[] {
  const out: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      // pid (comm) state ppid ...; comm may contain spaces, so split after the last ')'.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === ppid) out.push(Number(name));
    } catch {
      // the process went away meanwhile
    }
  }
  return out;
}

function isAlive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/\) Z /.test(stat); // a zombie has exited
  } catch {
    return false;
  }
}
