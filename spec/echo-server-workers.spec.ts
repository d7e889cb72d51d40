import * as fs from 'node:fs';
import * as net from 'node:net';
import {
  connectTo,
  ECHO_SERVER,
  echo,
  killChildren,
  sleep,
  spawnChild,
  startEchoServer,
  type Child,
} from './fixtures/children';
import { REUSEPORT_NEEDS_ADDON, describeNative } from './native-mode';

// bin/echo-server --workers N: N processes listening on one port with SO_REUSEPORT, a parent
// that only supervises. Which worker serves a connection is read from /proc (the worker that
// holds the server side of that TCP connection), so the server needs no debug output.

// Each test starts a parent and its worker processes: on a loaded machine that alone can take
// longer than jest's default 30 s.
jest.setTimeout(120_000);

const clients = new Set<net.Socket>();
async function client(port: number): Promise<net.Socket> {
  const c = await connectTo(port);
  c.on('error', () => {}); // a killed worker resets its connections
  clients.add(c);
  return c;
}

afterEach(async () => {
  for (const c of clients) c.destroy();
  clients.clear();
  await killChildren();
});

/** PIDs whose parent is `ppid` (Linux /proc). */
function childPidsOf(ppid: number): number[] {
  const out: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === ppid && fields[0] !== 'Z') out.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return out.sort((a, b) => a - b);
}

function isAlive(pid: number): boolean {
  try {
    return !/\) Z /.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/**
 * The socket inodes of the server sides of connections to `serverPort`, by client port: one
 * read of /proc/net/tcp (it lists every TIME_WAIT socket of the machine: tens of thousands
 * after a churn spec, so it is read once per question, not once per connection).
 */
function serverSideInodes(serverPort: number): Map<number, string> {
  const out = new Map<number, string>();
  for (const line of fs.readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    const local = cols[1];
    const remote = cols[2];
    const inode = cols[9];
    if (local === undefined || remote === undefined || inode === undefined) continue;
    if (parseInt(local.split(':')[1] ?? '', 16) === serverPort) {
      out.set(parseInt(remote.split(':')[1] ?? '', 16), inode);
    }
  }
  return out;
}

/** The process among `pids` holding each socket inode (`socket:[inode]` links). */
function socketOwners(pids: readonly number[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const link = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
        if (link.startsWith('socket:[')) out.set(link.slice(8, -1), pid);
      } catch {
        // closed meanwhile
      }
    }
  }
  return out;
}

/** Which of `pids` holds the server side of each client (undefined if none does). */
function servingPids(
  serverPort: number,
  cs: readonly net.Socket[],
  pids: readonly number[],
): (number | undefined)[] {
  const inodes = serverSideInodes(serverPort);
  const owners = socketOwners(pids);
  return cs.map((c) => {
    const inode = inodes.get(c.localPort ?? -1);
    return inode === undefined ? undefined : owners.get(inode);
  });
}

/** Which of `pids` holds the server side of `c` (undefined if none does). */
function servingPid(
  serverPort: number,
  c: net.Socket,
  pids: readonly number[],
): number | undefined {
  return servingPids(serverPort, [c], pids)[0];
}

async function workersOf(child: Child, n: number): Promise<number[]> {
  for (let i = 0; i < 300 && childPidsOf(child.pid).length !== n; i++) await sleep(100);
  const pids = childPidsOf(child.pid);
  expect(pids).toHaveLength(n);
  return pids;
}

/** Open `n` connections, each echoing once, and map each to the worker serving it. */
async function spread(
  port: number,
  n: number,
  pids: readonly number[],
): Promise<Map<number, net.Socket[]>> {
  const byPid = new Map<number, net.Socket[]>();
  const cs: net.Socket[] = [];
  for (let i = 0; i < n; i++) {
    const c = await client(port);
    expect((await echo(c, `hello ${i}`)).toString()).toBe(`hello ${i}`);
    cs.push(c);
  }
  servingPids(port, cs, pids).forEach((pid, i) => {
    expect(pid).toBeDefined();
    byPid.set(pid as number, [...(byPid.get(pid as number) ?? []), cs[i] as net.Socket]);
  });
  return byPid;
}

/** Ping-pong 1 KiB on `c` until `stop.now`; counts round trips, records how it ended. */
function keepBusy(c: net.Socket, stop: { now: boolean }) {
  const state = { trips: 0, failed: undefined as string | undefined };
  const payload = Buffer.alloc(1024, 0x61);
  const done = (async () => {
    while (!stop.now) {
      try {
        await echo(c, payload, 5000);
        state.trips++;
      } catch (err) {
        state.failed = (err as Error).message;
        return;
      }
    }
  })();
  return { state, done };
}

// On Node 20 reusePort needs the addon: without it these become one check that it is off.
(REUSEPORT_NEEDS_ADDON ? describeNative : describe)('bin/echo-server --workers', () => {
  it('runs N listening processes on one port, and the kernel spreads connections over them', async () => {
    const { child, port } = await startEchoServer(['--workers', '2']);
    const pids = await workersOf(child, 2);
    // Each connection lands on a worker by a hash of its addresses: 32 all on one of two
    // workers has probability 2^-31.
    const byPid = await spread(port, 32, pids);
    expect([...byPid.keys()].sort((a, b) => a - b)).toEqual(pids);
    // The parent holds no listening socket and no connection: it is in no data path.
    const parentSockets = fs
      .readdirSync(`/proc/${child.pid}/fd`)
      .map((fd) => {
        try {
          return fs.readlinkSync(`/proc/${child.pid}/fd/${fd}`);
        } catch {
          return '';
        }
      })
      .filter((l) => l.startsWith('socket:'));
    const inodes = serverSideInodes(port);
    for (const c of clients) {
      const inode = inodes.get(c.localPort ?? -1);
      expect(inode).toBeDefined();
      expect(parentSockets).not.toContain(`socket:[${inode}]`);
    }
  });

  it('loses only the killed worker’s connections under load, and restarts that worker', async () => {
    const { child, port } = await startEchoServer(['--workers', '2']);
    const pids = await workersOf(child, 2);
    const byPid = await spread(port, 24, pids);
    expect(byPid.size).toBe(2);
    const [victim, survivor] = pids as [number, number];
    const stop = { now: false };
    const busy = new Map<net.Socket, ReturnType<typeof keepBusy>>();
    for (const c of clients) busy.set(c, keepBusy(c, stop));
    await sleep(300);

    process.kill(victim, 'SIGKILL');
    const victimConns = byPid.get(victim) ?? [];
    const survivorConns = byPid.get(survivor) ?? [];
    // The victim's connections end (reset or closed by the kernel) ...
    await Promise.all(victimConns.map((c) => busy.get(c)?.done ?? Promise.resolve()));
    for (const c of victimConns) expect(busy.get(c)?.state.failed).toBeDefined();
    // ... while the survivor's keep echoing.
    const before = survivorConns.map((c) => busy.get(c)?.state.trips ?? 0);
    await sleep(500);
    survivorConns.forEach((c, i) => {
      const s = busy.get(c)?.state;
      expect(s?.failed).toBeUndefined();
      expect(s?.trips ?? 0).toBeGreaterThan(before[i] ?? 0);
    });

    // The parent starts a new worker, which takes connections again.
    await child.waitForStdout(/listening on/); // (already printed; keeps the child typed)
    let fresh: number[] = [];
    for (let i = 0; i < 50; i++) {
      fresh = childPidsOf(child.pid).filter((p) => p !== survivor);
      if (fresh.length === 1 && fresh[0] !== victim) break;
      await sleep(100);
    }
    expect(fresh).toHaveLength(1);
    expect(fresh[0]).not.toBe(victim);
    for (let i = 0; i < 50 && !/worker \d+ listening/.test(child.stderr()); i++) await sleep(100);
    expect(child.stderr()).toMatch(new RegExp(`worker ${victim} exited \\(signal SIGKILL\\)`));
    let servedByNew = false;
    for (let i = 0; i < 64 && !servedByNew; i++) {
      const c = await client(port);
      expect((await echo(c, 'again')).toString()).toBe('again');
      servedByNew = servingPid(port, c, fresh) === fresh[0];
      c.destroy();
    }
    expect(servedByNew).toBe(true);

    stop.now = true;
    await Promise.all([...busy.values()].map((b) => b.done));
  });

  it('drains every worker on SIGTERM: echoes flushed, clients closed, parent exits 0', async () => {
    const { child, port } = await startEchoServer(['--workers', '2']);
    const pids = await workersOf(child, 2);
    const byPid = await spread(port, 16, pids);
    expect(byPid.size).toBe(2);
    const got = new Map<net.Socket, string>();
    const ends = [...clients].map(
      (c) =>
        new Promise<void>((resolve) => {
          c.setEncoding('utf8');
          c.on('data', (d: string) => got.set(c, (got.get(c) ?? '') + d));
          c.once('end', resolve);
          c.once('close', resolve);
        }),
    );
    for (const c of clients) c.write('last words');
    for (
      let i = 0;
      i < 100 && [...got.values()].filter((g) => g === 'last words').length < 16;
      i++
    ) {
      await sleep(20);
    }
    const t0 = Date.now();
    child.proc.kill('SIGTERM');
    const { code } = await child.exited;
    expect(code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(6000);
    await Promise.all(ends); // every worker closed its clients
    for (const c of clients) expect(got.get(c)).toBe('last words');
    for (const pid of pids) expect(isAlive(pid)).toBe(false);
  });

  it('exits 1 with a message when its workers cannot listen (port taken without reusePort)', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const child = spawnChild(process.execPath, [
        ECHO_SERVER,
        '--workers',
        '2',
        '--port',
        String(port),
      ]);
      const { code } = await child.exited;
      expect(code).toBe(1);
      expect(child.stderr()).toMatch(/EADDRINUSE|address already in use/i);
      expect(child.stdout()).not.toMatch(/listening on/);
    } finally {
      blocker.close();
    }
  });
});
