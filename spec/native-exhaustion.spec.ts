import * as fs from 'node:fs';
import type * as net from 'node:net';
import { connectTo, echo, killChildren, sleep, startEchoServer } from './fixtures/children';
import { describeNative } from './native-mode';

// API.md §9: EMFILE/ENFILE on a native listener's accept stops polling that listener for a
// back-off (100 ms doubling to 1 s), reports once, resumes, and never spins.

const peers = new Set<net.Socket>();
afterEach(async () => {
  for (const p of peers) p.destroy();
  peers.clear();
  await killChildren();
});

async function client(port: number): Promise<net.Socket> {
  const c = await connectTo(port);
  c.on('error', () => {});
  peers.add(c);
  return c;
}

/** User + system CPU seconds of a process, from /proc/PID/stat (clock ticks of 1/100 s). */
function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

describeNative('native listener out of descriptors (ulimit -n 64)', () => {
  it('backs off instead of spinning, reports it, and serves again once descriptors free up', async () => {
    const { child, port } = await startEchoServer(['--backend', 'native'], 64);
    // 100 clients against ~45 free descriptors: the kernel completes every handshake (the
    // backlog holds the rest), the server can accept only some of them.
    const crowd = await Promise.all(Array.from({ length: 100 }, () => client(port)));
    const served = await Promise.all(
      crowd.map((c, i) =>
        echo(c, `crowd ${i}`, 1500).then(
          (b) => b.toString() === `crowd ${i}`,
          () => false,
        ),
      ),
    );
    const nServed = served.filter(Boolean).length;
    expect(nServed).toBeGreaterThan(0);
    expect(nServed).toBeLessThan(100);

    // Still out of descriptors with connections waiting in the backlog: a listener that
    // retried at once would burn a core; backing off (at most 10 retries a second) costs ~0.
    const cpu0 = cpuSeconds(child.pid);
    await sleep(2000);
    const cpu = cpuSeconds(child.pid) - cpu0;
    expect(cpu).toBeLessThan(0.5); // measured here: 0.00-0.02 s; spinning: ~2 s
    expect(child.stderr()).toMatch(/EMFILE/);
    expect(child.proc.exitCode).toBeNull();

    for (const c of crowd) c.destroy();
    await sleep(1500); // the longest back-off is 1 s
    for (let i = 0; i < 20; i++) {
      const c = await client(port);
      expect((await echo(c, `after ${i}`, 3000)).toString()).toBe(`after ${i}`);
      c.destroy();
    }
    child.proc.kill('SIGTERM');
    expect((await child.exited).code).toBe(0);
  });
});
