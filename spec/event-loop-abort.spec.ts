import { DangaSocket } from '../lib';
import { caught, tcpPair } from './helpers';

/** Fake time for the loop: jest's modern timers, with promises and streams left real. */
function useFakeLoopTime(): void {
  jest.useFakeTimers({ doNotFake: ['nextTick', 'queueMicrotask'] });
}

/** Start the loop; `state.ended` flips once its promise resolves. */
function start(options?: { signal?: AbortSignal }): { ended: boolean; done: Promise<void> } {
  const state = { ended: false, done: Promise.resolve() };
  state.done = DangaSocket.EventLoop(options).then(() => {
    state.ended = true;
  });
  return state;
}

afterEach(() => {
  DangaSocket.Reset();
  jest.useRealTimers();
});

describe('DangaSocket.EventLoop({ signal })', () => {
  it('runs iterations when the signal is not aborted (the baseline for the next test)', async () => {
    const ac = new AbortController();
    let plcCalls = 0;
    let fired = false;
    DangaSocket.SetLoopTimeout(0); // never wait: each iteration reaches the callbacks
    DangaSocket.AddTimer(0, () => (fired = true));
    DangaSocket.SetPostLoopCallback(() => ++plcCalls < 2);
    await DangaSocket.EventLoop({ signal: ac.signal });
    expect(fired).toBe(true);
    expect(plcCalls).toBe(2);
  });

  it('returns at once for an already-aborted signal, running no timer and no callback', async () => {
    let plcCalls = 0;
    let fired = false;
    DangaSocket.SetLoopTimeout(0);
    DangaSocket.AddTimer(0, () => (fired = true));
    DangaSocket.SetPostLoopCallback(() => ++plcCalls < 2);
    await DangaSocket.EventLoop({ signal: AbortSignal.abort() });
    expect(fired).toBe(false);
    expect(plcCalls).toBe(0);
    // Nothing was consumed: a normal run afterwards still fires the timer.
    await DangaSocket.EventLoop();
    expect(fired).toBe(true);
  });

  it('wakes an idle loop that waits with no timeout, finishes that iteration and resolves', async () => {
    useFakeLoopTime();
    const ac = new AbortController();
    let plcCalls = 0;
    DangaSocket.SetPostLoopCallback(() => {
      plcCalls++;
      return true; // only the abort can end this loop
    });
    const run = start({ signal: ac.signal });
    await jest.advanceTimersByTimeAsync(60_000);
    expect(run.ended).toBe(false); // idle and waiting: an hour would change nothing
    const before = plcCalls;
    ac.abort();
    await jest.advanceTimersByTimeAsync(0);
    expect(run.ended).toBe(true);
    expect(plcCalls).toBe(before + 1); // the woken iteration ran its post-loop callbacks
  });

  it('ends at the end of the iteration whose timer aborted, without waiting for an event', async () => {
    useFakeLoopTime();
    const ac = new AbortController();
    const order: string[] = [];
    DangaSocket.AddTimer(5, () => {
      order.push('timer');
      ac.abort();
      order.push('after abort');
    });
    DangaSocket.SetPostLoopCallback(() => {
      order.push('plc');
      return true;
    });
    const run = start({ signal: ac.signal });
    await jest.advanceTimersByTimeAsync(4_900);
    expect(run.ended).toBe(false);
    expect(order).toEqual([]); // the first iteration waits for the timer
    await jest.advanceTimersByTimeAsync(200);
    expect(run.ended).toBe(true);
    expect(order).toEqual(['plc', 'timer', 'after abort', 'plc']);
  });

  it('keeps Danga’s order otherwise: a flag set by a timer is seen only after the next wait', async () => {
    useFakeLoopTime();
    let done = false;
    DangaSocket.AddTimer(1, () => (done = true));
    DangaSocket.SetPostLoopCallback(() => !done);
    const run = start();
    await jest.advanceTimersByTimeAsync(60_000);
    // timers → wait → events → callbacks: the timer's iteration is still waiting for an event.
    expect(done).toBe(true);
    expect(run.ended).toBe(false);
    DangaSocket.AddTimer(0, () => {}); // any wake-up ends the wait; the callback sees the flag
    await jest.advanceTimersByTimeAsync(10);
    expect(run.ended).toBe(true);
  });

  it('an abort from a hook ends the loop after that iteration’s deferred closes', async () => {
    const pair = await tcpPair();
    const ac = new AbortController();
    class Closer extends DangaSocket {
      override eventRead(): void {
        this.close('done');
        ac.abort();
      }
      override eventErr(): void {}
      override eventHup(): void {}
    }
    const obj = new Closer(pair.server);
    obj.watchRead(true);
    pair.client.write('x');
    const reasons: (string | undefined)[] = [];
    void obj.whenClosed().then((r) => reasons.push(r));
    await DangaSocket.EventLoop({ signal: ac.signal });
    expect(DangaSocket.DescriptorMap().size).toBe(0); // really closed in that iteration
    await Promise.resolve();
    expect(reasons).toEqual(['done']);
    pair.close();
  });

  it('can run again after an abort; the old signal no longer affects the new run', async () => {
    useFakeLoopTime();
    const first = new AbortController();
    const run1 = start({ signal: first.signal });
    await jest.advanceTimersByTimeAsync(10);
    first.abort();
    await jest.advanceTimersByTimeAsync(0);
    expect(run1.ended).toBe(true);

    const second = new AbortController();
    const run2 = start({ signal: second.signal });
    await jest.advanceTimersByTimeAsync(10);
    first.abort(); // already aborted, and its listener is gone
    await jest.advanceTimersByTimeAsync(1_000);
    expect(run2.ended).toBe(false);
    second.abort();
    await jest.advanceTimersByTimeAsync(0);
    expect(run2.ended).toBe(true);
  });

  it('Reset() ends a run with a signal and drops the listener', async () => {
    useFakeLoopTime();
    const ac = new AbortController();
    const run = start({ signal: ac.signal });
    await jest.advanceTimersByTimeAsync(10);
    DangaSocket.Reset();
    await jest.advanceTimersByTimeAsync(0);
    expect(run.ended).toBe(true);
    const run2 = start();
    await jest.advanceTimersByTimeAsync(10);
    ac.abort(); // belongs to the old run
    await jest.advanceTimersByTimeAsync(1_000);
    expect(run2.ended).toBe(false);
    DangaSocket.Reset();
    await jest.advanceTimersByTimeAsync(0);
    expect(run2.ended).toBe(true);
  });

  it('still rejects a second EventLoop while running, even with an aborted signal', async () => {
    const ac = new AbortController();
    const run = DangaSocket.EventLoop({ signal: ac.signal });
    await expect(DangaSocket.EventLoop({ signal: AbortSignal.abort() })).rejects.toMatchObject({
      code: 'DS_ERR_LOOP_RUNNING',
    });
    ac.abort();
    await run;
  });

  it.each([
    ['a number', 42],
    ['null', null],
    ['a string', 'stop'],
    ['a non-signal signal', { signal: 'soon' }],
    ['a plain object as signal', { signal: { aborted: 'no' } }],
  ])('throws DS_ERR_INVALID_ARG synchronously for %s', (_name, bad) => {
    const err = caught(() => DangaSocket.EventLoop(bad as never));
    expect(err.code).toBe('DS_ERR_INVALID_ARG');
  });

  it('accepts { signal: undefined } and {} as no signal', async () => {
    DangaSocket.SetLoopTimeout(0);
    DangaSocket.SetPostLoopCallback(() => false);
    await DangaSocket.EventLoop({ signal: undefined });
    await DangaSocket.EventLoop({});
  });
  it('really closes a socket closed outside the loop just before the abort', async () => {
    const p = await tcpPair();
    const q = new (class extends DangaSocket {
      override eventRead(): void {}
      override eventErr(): void {}
      override eventHup(): void {}
    })(p.server);
    const peerEnded = new Promise<void>((resolve) => p.client.once('end', () => resolve()));
    p.client.on('error', () => {});
    p.client.resume();
    DangaSocket.SetLoopTimeout(0); // never waits: the abort lands between two iterations
    const ctrl = new AbortController();
    const loop = start({ signal: ctrl.signal });
    await new Promise((r) => setImmediate(r));
    expect(loop.ended).toBe(false);
    q.close('outside');
    expect(DangaSocket.ToClose()).toHaveLength(1); // pending until the loop reaps it
    ctrl.abort();
    await loop.done;
    expect(DangaSocket.ToClose()).toHaveLength(0);
    await peerEnded; // the peer sees the close: nothing was left open
    expect(q.closeReason).toBe('outside');
    p.close();
  });
});
