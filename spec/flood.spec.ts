import type * as net from 'node:net';
import { DangaSocket, Listener } from '../lib';
import { Echo, runUntil, waitFor } from './helpers';
import {
  LOAD_CLIENT,
  churnClientCommand,
  fdCount,
  socketFdCount,
  killChildren,
  spawnChild,
  type Child,
} from './fixtures/children';

// Issue 4, load: many connections at once and many in a row, served by the library in this
// process, with the clients in a child process (spec/fixtures/load-client.js; for the churn,
// its C twin spec/fixtures/churn-client.c when there is a C compiler) because both sides
// together would pass the machine's 20,000-descriptor limit.

afterEach(async () => {
  await killChildren();
  DangaSocket.Reset();
});

interface Report {
  phase: string;
  open?: number;
  ok?: number;
  mismatches?: number;
  errors?: Record<string, number>;
  ms?: number;
}

/** The JSON lines a load client printed so far. */
function reports(child: Child): Report[] {
  return child
    .stdout()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Report);
}

function phase(child: Child, name: string): Report | undefined {
  return reports(child).find((r) => r.phase === name);
}

async function listen(): Promise<{
  listener: Listener;
  port: number;
  closes: Map<string, number>;
}> {
  const closes = new Map<string, number>();
  class Counted extends Echo {
    override close(reason?: string): void {
      if (!this.closed) closes.set(reason ?? '', (closes.get(reason ?? '') ?? 0) + 1);
      super.close(reason);
    }
  }
  const listener = await Listener.listen({ port: 0, backlog: 1024 }, (s) => {
    s.setNoDelay(true);
    new Counted(s);
  });
  return { listener, port: (listener.address() as net.AddressInfo).port, closes };
}

describe('Listener + DangaSocket under load', () => {
  it('holds 10,000 concurrent connections, echoes on all of them, and frees them all', async () => {
    const N = 10_000;
    const { port, closes } = await listen();
    const fdsBefore = fdCount();
    const socketsBefore = socketFdCount();
    const client = spawnChild(process.execPath, [
      LOAD_CLIENT,
      '--port', String(port),
      '--mode', 'hold',
      '--conns', String(N),
      '--pending', '512',
      '--deadline-ms', '60000',
    ]); // prettier-ignore
    await runUntil(() => phase(client, 'established') !== undefined, 65000);
    const est = phase(client, 'established');
    expect(est).toEqual({ phase: 'established', open: N, mismatches: 0, errors: {} });
    expect(DangaSocket.WatchedSockets()).toBe(N + 1); // + the listener
    expect(socketFdCount()).toBeGreaterThanOrEqual(socketsBefore + N);

    client.proc.stdin?.write('echo\n');
    await runUntil(() => phase(client, 'echoed') !== undefined, 40000);
    expect(phase(client, 'echoed')).toEqual({ phase: 'echoed', ok: N, mismatches: 0 });

    client.proc.stdin?.write('close\n');
    await runUntil(() => DangaSocket.WatchedSockets() === 1, 40000);
    expect(DangaSocket.WatchedSockets()).toBe(1);
    expect((await client.exited).code).toBe(0);
    expect(closes.get('eof')).toBe(N);
    await waitFor(() => fdCount() <= fdsBefore + 3, 'descriptors back to their baseline', 5000);
    expect(fdCount()).toBeLessThanOrEqual(fdsBefore + 3);
  }, 180_000);

  it('churns 50,000 connections with no descriptor or map-entry leak', async () => {
    // Bounded by the ~28k ephemeral ports: the client closes first, so its ports sit in
    // TIME_WAIT and come back after about a second (tcp_tw_reuse on loopback). The C churn
    // client (churnClientCommand; load-client.js without a C compiler) keeps 64 slots busy and
    // this process's loop is then the limit, at ~7k connections/s here, far below that.
    const COUNT = 50_000;
    const { port, closes } = await listen();
    const fdsBefore = fdCount();
    const mapBefore = DangaSocket.WatchedSockets();
    const client = spawnChild(
      ...churnClientCommand([
        ...['--port', String(port), '--count', String(COUNT), '--slots', '64'],
        ...['--deadline-ms', '200000'],
      ]),
    );
    let peakMap = 0;
    await runUntil(() => {
      peakMap = Math.max(peakMap, DangaSocket.WatchedSockets());
      return phase(client, 'churned') !== undefined;
    }, 205_000);
    const r = phase(client, 'churned');
    expect(r).toMatchObject({ phase: 'churned', ok: COUNT, mismatches: 0, errors: {} });
    expect((await client.exited).code).toBe(0);
    await runUntil(() => DangaSocket.WatchedSockets() === mapBefore, 5000);
    expect(DangaSocket.WatchedSockets()).toBe(mapBefore);
    expect(peakMap).toBeLessThanOrEqual(mapBefore + 64 * 2);
    expect(closes.get('eof')).toBe(COUNT);
    await waitFor(() => fdCount() <= fdsBefore + 3, 'descriptors back to their baseline', 5000);
    expect(fdCount()).toBeLessThanOrEqual(fdsBefore + 3);
  }, 300_000);
});
