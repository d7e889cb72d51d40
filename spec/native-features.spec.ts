import type * as net from 'node:net';
import { DangaSocket, onSignal, socketAlarm, type SocketAlarm } from '../lib';
import { Quiet, nativeTcpPair, runUntil } from './helpers';
import { describeNative } from './native-mode';

// Issue 11 §5, on objects of the native backend (whatever DANGA_BACKEND says): SocketAlarm on
// `nativeSocket.fd`, and onSignal/AddTimer callbacks writing to a native object while the loop
// waits in the addon's epoll set.

const pairs: Awaited<ReturnType<typeof nativeTcpPair>>[] = [];
const alarms: SocketAlarm[] = [];
afterEach(() => {
  for (const a of alarms.splice(0)) a.cancel();
  DangaSocket.Reset();
  for (const p of pairs.splice(0)) p.close();
});

async function pair(): Promise<Awaited<ReturnType<typeof nativeTcpPair>>> {
  const p = await nativeTcpPair();
  p.client.on('error', () => {});
  pairs.push(p);
  return p;
}

function collect(c: net.Socket): { text: () => string; ended: () => boolean } {
  let text = '';
  let ended = false;
  c.on('data', (d: Buffer) => (text += d.toString()));
  c.on('end', () => (ended = true));
  return { text: () => text, ended: () => ended };
}

describeNative('native objects with SocketAlarm, onSignal and timers', () => {
  it('SocketAlarm on nativeSocket.fd: the peer going away (bytes unread) shuts another connection', async () => {
    const a = await pair();
    const b = await pair();
    const c = await pair(); // control: its alarm watches a peer that stays
    new Quiet(a.server);
    a.client.write('GET / HTTP/1.0\r\n\r\n'); // never read
    const bSeen = collect(b.client);
    const cSeen = collect(c.client);
    alarms.push(socketAlarm(a.server.fd, [['shut_w', b.server.fd]]));
    const control = socketAlarm(c.server.fd, [['shut_w', c.server.fd]]);
    alarms.push(control);
    a.client.destroy();
    await runUntil(() => bSeen.ended(), 5000);
    expect(bSeen.ended()).toBe(true);
    expect(cSeen.ended()).toBe(false);
    expect(control.triggered).toBe(false);
  });

  it('onSignal and AddTimer callbacks write to a native object while the loop waits in epoll', async () => {
    const p = await pair();
    const o = new Quiet(p.server);
    const seen = collect(p.client);
    const w = onSignal('SIGUSR2', () => o.write('signal;'));
    DangaSocket.AddTimer(0.05, () => {
      o.write('timer;');
      process.kill(process.pid, 'SIGUSR2');
    });
    await runUntil(() => seen.text() === 'timer;signal;', 5000);
    w.cancel();
    expect(seen.text()).toBe('timer;signal;');
  });
});
