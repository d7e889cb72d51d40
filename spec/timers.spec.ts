import { DangaSocket } from '../lib';
import { AbsoluteTimer, CountdownTimer, PeriodicTimer, type RescheduleMode } from '../lib/timers';
import { advanceFor, advanceUntil, useFakeTime, watchTimeoutDelays } from './helpers';

// Fake time throughout (jest's modern fake timers drive the loop's clock); the real-time
// behaviour of these timers is covered with loose bounds in timing.spec.ts.
const cleanups: (() => void)[] = [];
beforeEach(() => useFakeTime());
afterEach(() => {
  DangaSocket.Reset();
  for (const fn of cleanups.splice(0)) fn();
  jest.useRealTimers();
});

const DAY_S = 86400;

function nowS(): number {
  return performance.now() / 1000;
}

/** A tick that blocks the loop until `t`: the fake clock moves while the tick runs. */
function blockUntilS(t: number): void {
  const ms = (t - nowS()) * 1000;
  if (ms > 0) jest.advanceTimersByTime(ms);
}

function captureErrors(): unknown[] {
  const errors: unknown[] = [];
  DangaSocket.setErrorHandler((err) => errors.push(err));
  return errors;
}

describe('PeriodicTimer', () => {
  // The reference's example (100 ms interval, 2nd tick blocks 350 ms) scaled ×3: interval
  // 0.3 s, the 2nd tick returns at 1.65 s.
  const expected: Record<RescheduleMode, number[]> = {
    hard: [0.3, 0.6, 1.65, 1.65, 1.65, 1.8],
    skip: [0.3, 0.6, 1.8, 2.1, 2.4, 2.7],
    drift: [0.3, 0.6, 1.95, 2.25, 2.55, 2.85],
  };
  it.each(['hard', 'skip', 'drift'] as const)(
    'reschedules a late tick in %s mode at the reference times',
    async (mode) => {
      const ticks: number[] = [];
      let t0 = 0;
      const timer = new PeriodicTimer({
        intervalS: 0.3,
        reschedule: mode,
        onTick: () => {
          ticks.push(nowS() - t0);
          if (ticks.length === 2) blockUntilS(t0 + 1.65);
          // Running on after the 6th: with no loop timeout, only a pending timer wakes the
          // loop for the post-loop callback that sees the 6th tick.
          if (ticks.length === 7) timer.stop();
        },
      });
      t0 = nowS();
      timer.start();
      // No loop timeout, as a daemon runs: only the timers wake the loop, so a wait computed
      // from a stale clock after the slow tick would show (it fired 1.05 s late here).
      await advanceUntil(() => ticks.length >= 6, 6000, -1);
      expect(ticks).toHaveLength(6);
      timer.stop();
      ticks.forEach((t, i) => {
        const want = expected[mode][i] as number;
        expect(t).toBeGreaterThanOrEqual(want - 0.001);
        expect(t).toBeLessThan(want + 0.01);
      });
      if (mode === 'hard') {
        // The three missed ticks catch up back-to-back.
        expect((ticks[4] as number) - (ticks[2] as number)).toBeLessThan(0.1);
      }
    },
  );

  it('never fires inside start(), even with firstIntervalS 0, and honours firstIntervalS', async () => {
    const ticks: number[] = [];
    const t0 = nowS();
    const timer = new PeriodicTimer({
      intervalS: 0.4,
      firstIntervalS: 0,
      onTick: () => ticks.push(nowS() - t0),
    });
    timer.start();
    expect(ticks).toHaveLength(0);
    expect(timer.isRunning).toBe(true);
    await advanceUntil(() => ticks.length >= 2, 3000);
    timer.stop();
    expect(ticks[0]).toBeLessThan(0.15);
    expect(ticks[1]).toBeGreaterThanOrEqual(0.39);
  });

  it('stop() inside onTick prevents the next tick', async () => {
    let ticks = 0;
    const timer = new PeriodicTimer({
      intervalS: 0.05,
      onTick: () => {
        ticks++;
        timer.stop();
      },
    });
    timer.start();
    await advanceFor(400); // eight intervals
    expect(ticks).toBe(1);
    expect(timer.isRunning).toBe(false);
  });

  it('stop(); start() inside onTick restarts from now without a double schedule', async () => {
    const ticks: number[] = [];
    const t0 = nowS();
    const timer = new PeriodicTimer({
      intervalS: 0.2,
      onTick: () => {
        ticks.push(nowS() - t0);
        if (ticks.length === 1) {
          timer.stop();
          timer.start();
          expect(timer.isRunning).toBe(true);
        }
        if (ticks.length === 3) timer.stop();
      },
    });
    timer.start();
    await advanceFor(1200);
    expect(ticks).toHaveLength(3);
    expect((ticks[1] as number) - (ticks[0] as number)).toBeGreaterThanOrEqual(0.19);
    expect((ticks[2] as number) - (ticks[1] as number)).toBeGreaterThanOrEqual(0.19);
  });

  it('start() while running does nothing (one tick per interval)', async () => {
    let ticks = 0;
    const timer = new PeriodicTimer({ intervalS: 0.25, onTick: () => ticks++ });
    timer.start();
    timer.start();
    await advanceFor(400); // one tick at 0.25 s; a second schedule would tick there too
    timer.stop();
    expect(ticks).toBe(1);
  });

  it('reschedules after a throwing onTick and reports the error to the error handler', async () => {
    const errors = captureErrors();
    let ticks = 0;
    const timer = new PeriodicTimer({
      intervalS: 0.05,
      onTick: () => {
        ticks++;
        throw new Error(`tick ${ticks}`);
      },
    });
    timer.start();
    await advanceUntil(() => ticks >= 3, 3000);
    timer.stop();
    expect(ticks).toBe(3);
    expect(errors.map((e) => (e as Error).message)).toEqual(['tick 1', 'tick 2', 'tick 3']);
  });

  it('is stopped by DangaSocket.Reset() and can be started again', async () => {
    let ticks = 0;
    const timer = new PeriodicTimer({ intervalS: 0.05, onTick: () => ticks++ });
    timer.start();
    DangaSocket.Reset();
    expect(timer.isRunning).toBe(false);
    timer.start();
    await advanceUntil(() => ticks >= 1, 2000);
    expect(ticks).toBe(1);
  });

  it.each([
    [{ intervalS: 0, onTick: () => {} }],
    [{ intervalS: -1, onTick: () => {} }],
    [{ intervalS: NaN, onTick: () => {} }],
    [{ intervalS: Infinity, onTick: () => {} }],
    [{ intervalS: '1', onTick: () => {} }],
    [{ intervalS: 1, onTick: 'tick' }],
    [{ intervalS: 1, onTick: () => {}, reschedule: 'later' }],
    [{ intervalS: 1, onTick: () => {}, firstIntervalS: -0.5 }],
    [null],
  ])('rejects bad options %p with DS_ERR_INVALID_ARG', (opts) => {
    expect(() => new PeriodicTimer(opts as never)).toThrow(
      expect.objectContaining({ code: 'DS_ERR_INVALID_ARG' }),
    );
  });
});

describe('CountdownTimer', () => {
  it('expires once after delayS, then isExpired until the next start()', async () => {
    let expired = 0;
    const t0 = nowS();
    let at = 0;
    const timer = new CountdownTimer({
      delayS: 0.2,
      onExpire: () => {
        expired++;
        at = nowS() - t0;
        expect(timer.isRunning).toBe(false);
        expect(timer.isExpired).toBe(true);
      },
    });
    timer.start();
    expect(timer.isExpired).toBe(false);
    await advanceFor(600);
    expect(expired).toBe(1);
    expect(at).toBeGreaterThanOrEqual(0.199);
    expect(timer.isExpired).toBe(true);
    timer.start();
    expect(timer.isExpired).toBe(false);
    timer.stop();
  });

  it('reset() while running restarts the full delay (watchdog)', async () => {
    const t0 = nowS();
    let at = 0;
    const timer = new CountdownTimer({ delayS: 0.4, onExpire: () => (at = nowS() - t0) });
    timer.start();
    DangaSocket.AddTimer(0.2, () => timer.reset());
    await advanceUntil(() => at > 0, 3000);
    expect(at).toBeGreaterThanOrEqual(0.599);
    expect(at).toBeLessThan(0.9);
  });

  it('reset() when not running does nothing', async () => {
    let expired = 0;
    const timer = new CountdownTimer({ delayS: 0, onExpire: () => expired++ });
    timer.reset();
    expect(timer.isRunning).toBe(false);
    await advanceFor(100);
    expect(expired).toBe(0);
    // The same timer, started, does expire on the next pass.
    timer.start();
    await advanceUntil(() => expired > 0, 1000);
    expect(expired).toBe(1);
  });

  it('fires delay 0 on the next loop pass, not inside start(); start() in onExpire re-arms', async () => {
    let expired = 0;
    const timer = new CountdownTimer({
      delayS: 0,
      onExpire: () => {
        if (++expired < 3) timer.start();
      },
    });
    timer.start();
    expect(expired).toBe(0);
    const iterations = await advanceUntil(() => expired >= 3, 2000, 0);
    expect(expired).toBe(3);
    expect(iterations).toBeGreaterThanOrEqual(3);
  });

  it('stop() prevents expiry', async () => {
    let expired = 0;
    let controlExpired = 0;
    const timer = new CountdownTimer({ delayS: 0.05, onExpire: () => expired++ });
    const control = new CountdownTimer({ delayS: 0.05, onExpire: () => controlExpired++ });
    timer.start();
    control.start();
    timer.stop();
    timer.stop();
    await advanceFor(200);
    expect(controlExpired).toBe(1); // the same delay, not stopped, did expire
    expect(expired).toBe(0);
    expect(timer.isExpired).toBe(false);
  });

  it.each([
    [{ delayS: -1, onExpire: () => {} }],
    [{ delayS: NaN, onExpire: () => {} }],
    [{ delayS: 1 }],
  ])('rejects bad options %p with DS_ERR_INVALID_ARG', (opts) => {
    expect(() => new CountdownTimer(opts as never)).toThrow(
      expect.objectContaining({ code: 'DS_ERR_INVALID_ARG' }),
    );
  });
});

describe('AbsoluteTimer', () => {
  it('fires at its epoch time, not before', async () => {
    const target = Date.now() / 1000 + 0.3;
    let firedAt = 0;
    const timer = new AbsoluteTimer({
      time: target,
      onExpire: () => (firedAt = Date.now() / 1000),
    });
    timer.start();
    await advanceUntil(() => firedAt > 0, 2000);
    expect(firedAt).toBeGreaterThanOrEqual(target - 0.001);
    expect(firedAt - target).toBeLessThan(0.2);
    expect(timer.isRunning).toBe(false);
  });

  it('fires a time in the past on the next loop pass', async () => {
    let fired = 0;
    const timer = new AbsoluteTimer({ time: Date.now() / 1000 - 10, onExpire: () => fired++ });
    timer.start();
    expect(fired).toBe(0);
    await advanceUntil(() => fired > 0, 1000, 0);
    expect(fired).toBe(1);
  });

  it('re-arms when time is changed while running', async () => {
    let firedAt = 0;
    const timer = new AbsoluteTimer({
      time: Date.now() / 1000 + 3600,
      onExpire: () => (firedAt = Date.now() / 1000),
    });
    timer.start();
    const target = Date.now() / 1000 + 0.2;
    timer.time = target;
    expect(timer.time).toBe(target);
    await advanceUntil(() => firedAt > 0, 2000);
    expect(firedAt).toBeGreaterThanOrEqual(target - 0.001);
  });

  it('does not fire early when the wait exceeds 2^31-1 ms (30 days)', async () => {
    // The delays the loop gives setTimeout, each Node would overflow named as its warning.
    const delays = watchTimeoutDelays();
    cleanups.push(() => delays.stop());
    const fired: string[] = [];
    let absoluteAtS = 0;
    const start = Date.now();
    new AbsoluteTimer({
      time: start / 1000 + 30 * DAY_S,
      onExpire: () => {
        absoluteAtS = (Date.now() - start) / 1000;
        fired.push('absolute');
      },
    }).start();
    new CountdownTimer({ delayS: 30 * DAY_S, onExpire: () => fired.push('countdown') }).start();
    new PeriodicTimer({
      intervalS: 30 * DAY_S,
      onTick: () => fired.push('periodic'),
    }).start();
    const running = DangaSocket.EventLoop();
    await jest.advanceTimersByTimeAsync(29.9 * DAY_S * 1000);
    expect(fired).toEqual([]);
    await jest.advanceTimersByTimeAsync(0.1 * DAY_S * 1000 + 1000);
    expect(fired).toHaveLength(3);
    expect(absoluteAtS).toBeGreaterThanOrEqual(30 * DAY_S);
    expect(absoluteAtS).toBeLessThan(30 * DAY_S + 2);
    DangaSocket.Reset();
    await running;
    const warnings = delays.warnings();
    expect(warnings).not.toContain('TimeoutOverflowWarning');
    expect(delays.maxDelayMs()).toBe(2 ** 31 - 1); // the loop's long waits, clamped
  });

  it('stop() disarms it', async () => {
    let fired = 0;
    let controlFired = 0;
    const time = Date.now() / 1000 + 0.05;
    const timer = new AbsoluteTimer({ time, onExpire: () => fired++ });
    const control = new AbsoluteTimer({ time, onExpire: () => controlFired++ });
    timer.start();
    control.start();
    timer.stop();
    await advanceFor(200);
    expect(controlFired).toBe(1); // the same time, not stopped, did fire
    expect(fired).toBe(0);
  });

  it.each([
    [{ time: NaN, onExpire: () => {} }],
    [{ time: '2030', onExpire: () => {} }],
    [{ time: 1 }],
  ])('rejects bad options %p with DS_ERR_INVALID_ARG', (opts) => {
    expect(() => new AbsoluteTimer(opts as never)).toThrow(
      expect.objectContaining({ code: 'DS_ERR_INVALID_ARG' }),
    );
  });
});
