import * as net from 'node:net';
import { DangaSocket, DangaSocketError, Listener, type NativeSocket } from '../lib';
import {
  Quiet,
  advanceUntil,
  advanceUntilSettled,
  runUntil,
  tcpPair,
  useFakeTime,
} from './helpers';

// Tests about time run on fake time (useFakeTime); those with real sockets on real time, with
// bounds of seconds. timing.spec.ts checks the loop against the real clock.
afterEach(() => {
  DangaSocket.Reset();
  jest.useRealTimers();
});

describe('DangaSocket.EventLoop', () => {
  it('runs exactly 4 iterations with LoopTimeout 250 when the 4th PLC call returns false (t/05)', async () => {
    useFakeTime();
    DangaSocket.SetLoopTimeout(250);
    let calls = 0;
    DangaSocket.SetPostLoopCallback(() => ++calls < 4);
    const t0 = Date.now();
    await advanceUntilSettled(DangaSocket.EventLoop());
    const elapsed = Date.now() - t0;
    expect(calls).toBe(4);
    expect(elapsed).toBeGreaterThanOrEqual(900);
    expect(elapsed).toBeLessThan(2500);
    expect(elapsed).toBeGreaterThanOrEqual(1000); // four idle waits, none cut short
  });

  it('rejects a second EventLoop while running with DS_ERR_LOOP_RUNNING', async () => {
    let n = 0;
    DangaSocket.SetLoopTimeout(0);
    DangaSocket.SetPostLoopCallback(() => ++n < 5);
    const first = DangaSocket.EventLoop();
    await expect(DangaSocket.EventLoop()).rejects.toMatchObject({ code: 'DS_ERR_LOOP_RUNNING' });
    await first;
    expect(n).toBe(5);
  });

  it('can be entered again after it returned, with state kept', async () => {
    let n = 0;
    DangaSocket.SetLoopTimeout(0);
    DangaSocket.SetPostLoopCallback(() => ++n % 3 !== 0);
    await DangaSocket.EventLoop();
    await DangaSocket.EventLoop();
    expect(n).toBe(6);
  });

  it('applies Perl truthiness to PLC results: 0, "", "0", null, undefined stop the loop', async () => {
    for (const falsy of [0, '', '0', null, undefined, false]) {
      let n = 0;
      DangaSocket.SetLoopTimeout(0);
      DangaSocket.SetPostLoopCallback(() => (++n < 2 ? 'yes' : falsy));
      await DangaSocket.EventLoop();
      expect(n).toBe(2);
    }
  });

  it('Reset() resolves a running loop and clears the map in place', async () => {
    const map = DangaSocket.DescriptorMap();
    const { server, client } = await tcpPair();
    const obj = new Quiet(server);
    DangaSocket.SetPostLoopCallback(() => true);
    const running = DangaSocket.EventLoop();
    setTimeout(() => DangaSocket.Reset(), 50);
    await running;
    expect(map.size).toBe(0);
    expect(obj.closed).toBe(true);
    expect(obj.closeReason).toBe('reset');
    await expect(obj.whenClosed()).resolves.toBe('reset');
    expect(server.destroyed).toBe(true);
    client.destroy();
  });

  it('wakes when a watch is turned on from outside the loop', async () => {
    const { server, client } = await tcpPair();
    let got = '';
    class R extends Quiet {
      override eventRead(): void {
        const b = this.read(100);
        if (b) got += b.toString();
      }
    }
    const r = new R(server);
    client.write('ping');
    setTimeout(() => r.watchRead(true), 50);
    DangaSocket.SetPostLoopCallback(() => got !== 'ping');
    const t0 = Date.now();
    await DangaSocket.EventLoop(); // LoopTimeout -1: only the wake can end this
    expect(got).toBe('ping');
    expect(Date.now() - t0).toBeLessThan(3000);
    client.destroy();
  });
});

describe('DangaSocket.AddTimer', () => {
  it('fires timers in fire-time order, never early, in random insertion order (t/05)', async () => {
    useFakeTime();
    const delays = [0, 0.1, 0.2, 0.3, 0.4, 0.5];
    const order = [...delays].sort(() => Math.random() - 0.5);
    const t0 = Date.now() / 1000;
    const fired: [number, number][] = [];
    for (const d of order) DangaSocket.AddTimer(d, (now) => fired.push([d, now]));
    DangaSocket.SetLoopTimeout(250);
    DangaSocket.SetPostLoopCallback(() => fired.length < 6);
    await advanceUntilSettled(DangaSocket.EventLoop());
    expect(fired.map(([d]) => d)).toEqual(delays);
    for (const [d, now] of fired) {
      expect(now).toBeGreaterThanOrEqual(t0 + d - 0.002);
      expect(now).toBeLessThan(t0 + d + 1);
    }
  });

  it('runs equal fire times in the order added', async () => {
    useFakeTime(); // the clock stands still while they are added: equal fire times
    const seen: number[] = [];
    const timers = [];
    for (let i = 0; i < 20; i++) timers.push(DangaSocket.AddTimer(0, () => seen.push(i)));
    expect(new Set(timers.map((t) => t.fireTime)).size).toBe(1);
    await advanceUntil(() => seen.length === 20);
    expect(seen).toEqual([...Array(20).keys()]);
  });

  it('runs a negative-delay timer added inside a timer in the same pass, a 0-delay one later', async () => {
    const log: string[] = [];
    let pass = 0;
    DangaSocket.AddTimer(0, () => {
      log.push(`outer@${pass}`);
      DangaSocket.AddTimer(0.0001, () => log.push(`nested0@${pass}`));
      DangaSocket.AddTimer(-1, () => log.push(`nestedNeg@${pass}`));
    });
    DangaSocket.SetLoopTimeout(0);
    DangaSocket.SetPostLoopCallback(() => {
      pass++;
      return log.length < 3 && pass < 1000;
    });
    await DangaSocket.EventLoop();
    expect(log[0]).toBe('outer@0');
    expect(log[1]).toBe('nestedNeg@0');
    expect(log[2]).toMatch(/^nested0@[1-9]/);
  });

  it('runs a 0-delay timer added inside a timer on a later pass even if the clock stood still', async () => {
    useFakeTime(); // the clock stands still within a pass: the nested fire time == pass time
    const log: string[] = [];
    let pass = 0;
    DangaSocket.AddTimer(0, () => {
      log.push(`outer@${pass}`);
      DangaSocket.AddTimer(0, () => log.push(`nested0@${pass}`));
      DangaSocket.AddTimer(-1, () => log.push(`nestedNeg@${pass}`));
    });
    DangaSocket.SetLoopTimeout(0);
    DangaSocket.SetPostLoopCallback(() => {
      pass++;
      return log.length < 3 && pass < 1000;
    });
    await advanceUntilSettled(DangaSocket.EventLoop());
    expect(log).toEqual(['outer@0', 'nestedNeg@0', 'nested0@1']);
  });

  it('passes the same snapshot time to every timer of one pass', async () => {
    const nows: number[] = [];
    useFakeTime();
    DangaSocket.AddTimer(-1, (now) => nows.push(now));
    DangaSocket.AddTimer(-1, (now) => {
      nows.push(now);
      jest.advanceTimersByTime(5); // a slow timer: the clock moves within the pass
    });
    DangaSocket.AddTimer(-1, (now) => nows.push(now));
    await advanceUntil(() => nows.length === 3);
    expect(nows[0]).toBe(nows[1]);
    expect(nows[2]).toBe(nows[1]);
  });

  it('fires a timer added by a slow timer when it is due, not later by the slow part', async () => {
    // Danga computes the wait from the pass's snapshot, so 200 ms of work in a timer made a
    // timer it added 100 ms ahead wait 300 ms. We read the clock again after the callbacks.
    useFakeTime();
    const t0 = Date.now();
    let addedAt = -1;
    let firedAt = -1;
    DangaSocket.AddTimer(0.05, () => {
      jest.advanceTimersByTime(200); // a slow timer: the clock moves within the pass
      addedAt = Date.now() - t0;
      DangaSocket.AddTimer(0.1, () => (firedAt = Date.now() - t0));
    });
    // No loop timeout: only the timers wake the loop (a third one lets the PLC see the second).
    DangaSocket.AddTimer(2, () => {});
    DangaSocket.SetLoopTimeout(-1);
    DangaSocket.SetPostLoopCallback(() => firedAt < 0);
    await advanceUntilSettled(DangaSocket.EventLoop());
    expect(addedAt).toBeGreaterThanOrEqual(250);
    expect(firedAt - addedAt).toBeGreaterThanOrEqual(100);
    expect(firedAt - addedAt).toBeLessThan(105);
  });

  it('cancel() is idempotent and a cancelled timer neither fires nor wakes the loop', async () => {
    useFakeTime();
    let fired = false;
    const t = DangaSocket.AddTimer(0.3, () => {
      fired = true;
    });
    t.cancel();
    t.cancel();
    let iterations = 0;
    const t0 = Date.now();
    const plcAt: number[] = [];
    DangaSocket.SetLoopTimeout(1000);
    DangaSocket.SetPostLoopCallback(() => {
      plcAt.push(Date.now() - t0);
      return ++iterations < 2;
    });
    let liveFiredAt = -1;
    DangaSocket.AddTimer(0.6, () => (liveFiredAt = Date.now() - t0));
    await advanceUntilSettled(DangaSocket.EventLoop());
    expect(fired).toBe(false);
    // Woken only by the 0.6 s timer, not the cancelled 0.3 s one.
    expect(Date.now() - t0).toBeGreaterThanOrEqual(550);
    expect(iterations).toBe(2);
    // The first wait ended for the live 0.6 s timer (not at 0.3 s, not at the 1 s timeout),
    // and that timer did fire.
    expect(plcAt[0]).toBeGreaterThanOrEqual(600);
    expect(plcAt[0]).toBeLessThan(650);
    expect(liveFiredAt).toBeGreaterThanOrEqual(600);
  });

  it('re-adds itself for periodic work (Perlbal _do_cleanup idiom)', async () => {
    let runs = 0;
    const tick = (): void => {
      runs++;
      if (runs < 5) DangaSocket.AddTimer(0.02, tick);
    };
    useFakeTime();
    DangaSocket.AddTimer(0.02, tick);
    await advanceUntil(() => runs === 5);
    expect(runs).toBe(5);
  });

  it('rejects NaN, Infinity, non-numbers and non-functions with DS_ERR_INVALID_ARG', () => {
    for (const bad of [NaN, Infinity, -Infinity, 'soon', undefined]) {
      expect(() => DangaSocket.AddTimer(bad as number, () => {})).toThrow(
        expect.objectContaining({ code: 'DS_ERR_INVALID_ARG' }),
      );
    }
    expect(() => DangaSocket.AddTimer(1, 42 as unknown as () => void)).toThrow(DangaSocketError);
  });
});

describe('post-loop callbacks', () => {
  it('calls per-object PLCs once each in the first iteration, before the global one (t/05)', async () => {
    const { server, client } = await tcpPair();
    const a = new Quiet(server);
    const b = new Quiet(client);
    const calls: string[] = [];
    a.setPostLoopCallback(() => {
      calls.push('a');
      return calls.includes('b') ? 0 : 1;
    });
    b.setPostLoopCallback(() => {
      calls.push('b');
      return calls.includes('a') ? 0 : 1;
    });
    DangaSocket.SetPostLoopCallback(() => {
      calls.push('global');
      return true;
    });
    DangaSocket.SetLoopTimeout(0);
    await DangaSocket.EventLoop();
    // The first falsy return stops the rest, the global one included.
    expect(calls).toEqual(['a', 'b']);
  });

  it('passes the live descriptor map to the PLC', async () => {
    const { server, client } = await tcpPair();
    const a = new Quiet(server);
    let seen: Map<number, DangaSocket> | undefined;
    DangaSocket.SetLoopTimeout(0);
    DangaSocket.SetPostLoopCallback((map) => {
      seen = map;
      return false;
    });
    await DangaSocket.EventLoop();
    expect(seen).toBe(DangaSocket.DescriptorMap());
    expect(seen?.get(a.id)).toBe(a);
    client.destroy();
  });

  it('removes a per-object PLC when its object closes', async () => {
    const { server, client } = await tcpPair();
    const a = new Quiet(server);
    let objCalls = 0;
    a.setPostLoopCallback(() => ++objCalls > 0);
    let n = 0;
    DangaSocket.SetLoopTimeout(0);
    DangaSocket.SetPostLoopCallback(() => {
      n++;
      if (n === 2) a.close('done');
      return n < 5;
    });
    await DangaSocket.EventLoop();
    expect(objCalls).toBe(2);
    client.destroy();
  });

  it('rejects non-function callbacks; null clears', () => {
    expect(() => DangaSocket.SetPostLoopCallback(42 as unknown as null)).toThrow(
      expect.objectContaining({ code: 'DS_ERR_INVALID_ARG' }),
    );
    expect(() => DangaSocket.SetPostLoopCallback(null)).not.toThrow();
  });
});

describe('SetLoopTimeout', () => {
  it('returns the stored value and rejects non-numbers', () => {
    expect(DangaSocket.SetLoopTimeout(150)).toBe(150);
    expect(DangaSocket.SetLoopTimeout(-1)).toBe(-1);
    expect(() => DangaSocket.SetLoopTimeout('soon' as unknown as number)).toThrow(
      expect.objectContaining({ code: 'DS_ERR_INVALID_ARG' }),
    );
    expect(() => DangaSocket.SetLoopTimeout(NaN)).toThrow(DangaSocketError);
  });

  it('with 0 never waits (a busy loop that still runs I/O)', async () => {
    useFakeTime();
    DangaSocket.AddTimer(10, () => {}); // a loop that waited would wait for this
    DangaSocket.SetLoopTimeout(0);
    let n = 0;
    DangaSocket.SetPostLoopCallback(() => ++n < 200);
    const t0 = Date.now();
    await advanceUntilSettled(DangaSocket.EventLoop());
    expect(n).toBe(200);
    expect(Date.now() - t0).toBeLessThan(2000);
  });
});

describe('HaveEpoll / WatchedSockets / ToClose', () => {
  it('HaveEpoll is true on Linux', () => {
    expect(DangaSocket.HaveEpoll()).toBe(process.platform === 'linux');
  });

  it('counts objects closed this iteration until the iteration ends', async () => {
    const { server, client } = await tcpPair();
    const a = new Quiet(server);
    expect(DangaSocket.WatchedSockets()).toBe(1);
    let during: number | undefined;
    let pending: readonly (net.Socket | net.Server | NativeSocket)[] = [];
    DangaSocket.AddTimer(0, () => {
      a.close('bye');
      during = DangaSocket.WatchedSockets();
      pending = DangaSocket.ToClose();
    });
    await runUntil(() => during !== undefined);
    expect(during).toBe(1);
    expect(pending).toEqual([server]);
    expect(DangaSocket.WatchedSockets()).toBe(0);
    expect(DangaSocket.ToClose()).toEqual([]);
    await expect(a.whenClosed()).resolves.toBe('bye');
    client.destroy();
  });
});

describe('waking from outside the loop', () => {
  it('a timer cancelled while the loop waits for it does not wake the loop', async () => {
    useFakeTime();
    let plcCalls = 0;
    const t = DangaSocket.AddTimer(0.3, () => {});
    DangaSocket.AddTimer(0.8, () => {});
    setTimeout(() => t.cancel(), 100);
    DangaSocket.SetPostLoopCallback(() => ++plcCalls < 1);
    const t0 = Date.now();
    await advanceUntilSettled(DangaSocket.EventLoop());
    // Woken by the 0.8 s timer only: one PLC call, not one at 0.3 s.
    expect(Date.now() - t0).toBeGreaterThanOrEqual(750);
    expect(plcCalls).toBe(1);
    // The live timer did wake it, at its own time (LoopTimeout is -1: nothing else could).
    expect(Date.now() - t0).toBeLessThan(850);
  });

  it('an object wrapped from outside the loop wakes it, so PLCs see it at once', async () => {
    const p = await tcpPair();
    let seen = 0;
    DangaSocket.SetPostLoopCallback((map) => {
      seen = map.size;
      return seen === 0;
    });
    setTimeout(() => new Quiet(p.server), 50);
    const t0 = Date.now();
    await DangaSocket.EventLoop();
    expect(seen).toBe(1);
    expect(Date.now() - t0).toBeLessThan(2000);
    p.client.destroy();
  });

  it('read(n) with 0 < n < 1 returns null, like read(0)', async () => {
    const p = await tcpPair();
    const q = new Quiet(p.server);
    expect(q.read(0.5)).toBeNull();
    p.close();
  });
});

describe('deferred closes', () => {
  it('a close made in a timer reaches the peer without waiting for another event', async () => {
    const p = await tcpPair();
    const q = new Quiet(p.server);
    const ended = new Promise<number>((resolve) => {
      p.client.on('end', () => resolve(Date.now()));
      p.client.resume();
    });
    DangaSocket.AddTimer(0.05, () => q.close('idle'));
    DangaSocket.SetPostLoopCallback(() => true);
    const running = DangaSocket.EventLoop();
    const t0 = Date.now();
    const at = await ended;
    expect(at - t0).toBeLessThan(1000);
    await expect(q.whenClosed()).resolves.toBe('idle');
    DangaSocket.Reset();
    await running;
    p.close();
  });
});

describe('many ready objects', () => {
  it('dispatches at most 1,000 per iteration, and the ones left out come first next time', async () => {
    const N = 1100;
    const accepted: (net.Socket | NativeSocket)[] = [];
    const clients: net.Socket[] = [];
    const dial = (port: number): void => {
      for (let i = 0; i < N; i++) {
        const c = net.connect({ port, host: '127.0.0.1' });
        c.on('error', () => {});
        clients.push(c);
      }
    };
    try {
      if (DangaSocket.DefaultBackend === 'native') {
        const l = await Listener.listen({ host: '127.0.0.1', port: 0, backlog: 2048 }, (s) => {
          accepted.push(s);
        });
        dial((l.address() as net.AddressInfo).port);
        await runUntil(() => accepted.length === N, 30000);
        l.close('done');
      } else {
        // Node hands out one accepted connection per libuv turn: take them without the loop.
        const srv = net.createServer({ pauseOnConnect: true, allowHalfOpen: true });
        // A backlog above N: no SYN is dropped (and retried seconds later).
        await new Promise<void>((r) =>
          srv.listen({ port: 0, host: '127.0.0.1', backlog: 2048 }, r),
        );
        let timer: NodeJS.Timeout | undefined;
        const all = new Promise<void>((resolve, reject) => {
          srv.on('connection', (s: net.Socket) => {
            if (accepted.push(s) === N) resolve();
          });
          timer = setTimeout(() => reject(new Error(`accepted ${accepted.length} of ${N}`)), 30000);
        });
        dial((srv.address() as net.AddressInfo).port);
        try {
          await all;
        } finally {
          clearTimeout(timer);
          srv.close();
        }
      }
      let iter = 0;
      const seen: number[][] = [];
      class Ready extends DangaSocket {
        constructor(
          s: net.Socket | NativeSocket,
          readonly i: number,
        ) {
          super(s);
          this.watchRead(true);
        }
        override eventRead(): void {
          (seen[iter] ??= []).push(this.i); // reads nothing: stays readable
        }
        override eventWrite(): void {}
        override eventErr(): void {}
        override eventHup(): void {}
      }
      accepted.forEach((s, i) => new Ready(s, i));
      for (const c of clients) c.write('x');
      // Until every object has been readable (then all of them are, level-triggered).
      const fired = new Set<number>();
      await runUntil(() => {
        for (const s of seen) for (const i of s ?? []) fired.add(i);
        seen.length = 0;
        return fired.size === N;
      }, 30000);
      seen.length = 0;
      DangaSocket.SetLoopTimeout(20);
      DangaSocket.SetPostLoopCallback(() => ++iter < 2);
      await DangaSocket.EventLoop();
      const [first = [], second = []] = seen;
      expect(first).toHaveLength(1000);
      expect(second).toHaveLength(1000);
      expect(new Set(first).size).toBe(1000);
      const left = [...Array(N).keys()].filter((i) => !first.includes(i));
      expect(left).toHaveLength(N - 1000);
      expect(new Set(second.slice(0, left.length))).toEqual(new Set(left));
    } finally {
      for (const c of clients) c.destroy();
    }
  }, 60000);
});
