import { DangaSocket } from '../lib';
import { AbsoluteTimer, CountdownTimer, PeriodicTimer } from '../lib/timers';
import { runUntil, watchTimeoutDelays } from './helpers';

// The loop and the timers against the real clock and Node's real timers. The other specs run
// time-dependent behaviour on fake time; these keep the real thing covered. The machine is
// shared and noisy: lower bounds are exact (never early), upper bounds are seconds.
const LATE_S = 3;

const cleanups: (() => void)[] = [];
afterEach(() => {
  DangaSocket.Reset();
  for (const fn of cleanups.splice(0)) fn();
});

function wallS(): number {
  return Date.now() / 1000;
}

describe('DangaSocket.AddTimer on the real clock', () => {
  it('fires a 0.2 s timer after >= 0.2 s and before 3 s of wall time', async () => {
    const t0 = wallS();
    let at = 0;
    DangaSocket.AddTimer(0.2, () => (at = wallS()));
    await runUntil(() => at > 0, LATE_S * 1000);
    expect(at - t0).toBeGreaterThanOrEqual(0.2 - 0.002);
    expect(at - t0).toBeLessThan(LATE_S);
  });

  it('fires timers in fire-time order, never early, and passes a `now` close to the wall clock', async () => {
    const delays = [0, 0.1, 0.2, 0.3];
    const t0 = wallS();
    const fired: [number, number, number][] = [];
    for (const d of [...delays].reverse()) {
      DangaSocket.AddTimer(d, (now) => fired.push([d, now, wallS()]));
    }
    await runUntil(() => fired.length === delays.length, LATE_S * 1000);
    expect(fired.map(([d]) => d)).toEqual(delays);
    for (const [d, now, wall] of fired) {
      expect(now).toBeGreaterThanOrEqual(t0 + d - 0.002);
      expect(now).toBeLessThan(t0 + d + LATE_S);
      expect(Math.abs(now - wall)).toBeLessThan(1);
    }
  });

  it('a cancelled timer does not wake the loop; the live one does', async () => {
    const t0 = wallS();
    const cancelled = DangaSocket.AddTimer(0.2, () => {});
    let liveAt = 0;
    DangaSocket.AddTimer(0.6, () => (liveAt = wallS()));
    cancelled.cancel();
    let firstWaitEnded = 0;
    DangaSocket.SetPostLoopCallback(() => {
      firstWaitEnded = wallS() - t0;
      return false;
    });
    // LoopTimeout -1: only a timer can end the first wait.
    const running = DangaSocket.EventLoop();
    const guard = setTimeout(() => DangaSocket.Reset(), LATE_S * 1000);
    cleanups.push(() => clearTimeout(guard));
    await running;
    expect(firstWaitEnded).toBeGreaterThanOrEqual(0.6 - 0.002); // not at 0.2 s
    expect(firstWaitEnded).toBeLessThan(LATE_S); // the live timer did end it
    await runUntil(() => liveAt > 0, LATE_S * 1000);
    expect(liveAt - t0).toBeGreaterThanOrEqual(0.6 - 0.002);
  });
});

describe('SetLoopTimeout on the real clock', () => {
  it('with 250 ms, four idle iterations take >= 0.9 s and < 3 s', async () => {
    DangaSocket.SetLoopTimeout(250);
    let calls = 0;
    DangaSocket.SetPostLoopCallback(() => ++calls < 4);
    const t0 = wallS();
    await DangaSocket.EventLoop();
    expect(calls).toBe(4);
    expect(wallS() - t0).toBeGreaterThanOrEqual(0.9);
    expect(wallS() - t0).toBeLessThan(LATE_S);
  });

  it('with 0, 200 iterations finish in < 3 s although a 10 s timer is pending', async () => {
    DangaSocket.AddTimer(10, () => {});
    DangaSocket.SetLoopTimeout(0);
    let n = 0;
    DangaSocket.SetPostLoopCallback(() => ++n < 200);
    const t0 = wallS();
    await DangaSocket.EventLoop();
    expect(n).toBe(200);
    expect(wallS() - t0).toBeLessThan(LATE_S);
  });
});

describe('timers.ts on the real clock', () => {
  it('PeriodicTimer ticks every 0.2 s, never early', async () => {
    const t0 = wallS();
    const ticks: number[] = [];
    const timer = new PeriodicTimer({ intervalS: 0.2, onTick: () => ticks.push(wallS() - t0) });
    timer.start();
    await runUntil(() => ticks.length >= 3, LATE_S * 1000);
    timer.stop();
    ticks.forEach((t, i) => expect(t).toBeGreaterThanOrEqual(0.2 * (i + 1) - 0.002));
    expect(ticks[2]).toBeLessThan(LATE_S);
  });

  it('CountdownTimer expires after >= 0.2 s and before 3 s', async () => {
    const t0 = wallS();
    let at = 0;
    new CountdownTimer({ delayS: 0.2, onExpire: () => (at = wallS()) }).start();
    await runUntil(() => at > 0, LATE_S * 1000);
    expect(at - t0).toBeGreaterThanOrEqual(0.2 - 0.002);
    expect(at - t0).toBeLessThan(LATE_S);
  });

  it('AbsoluteTimer fires at its wall-clock time, not before, and before 3 s after it', async () => {
    const target = wallS() + 0.2;
    let at = 0;
    new AbsoluteTimer({ time: target, onExpire: () => (at = wallS()) }).start();
    await runUntil(() => at > 0, LATE_S * 1000);
    expect(at).toBeGreaterThanOrEqual(target - 0.001);
    expect(at - target).toBeLessThan(LATE_S);
  });

  it('a 30-day wait neither overflows setTimeout nor fires; a short timer beside it does', async () => {
    const delays = watchTimeoutDelays();
    cleanups.push(() => delays.stop());
    let fired = 0;
    let shortFired = 0;
    // The loop itself waits for the countdown (no loop timeout) once the short timer fired, so
    // an unclamped setTimeout would overflow and fire after 1 ms.
    new CountdownTimer({ delayS: 30 * 86400, onExpire: () => fired++ }).start();
    new CountdownTimer({ delayS: 0.1, onExpire: () => shortFired++ }).start();
    const running = DangaSocket.EventLoop();
    const stop = setTimeout(() => DangaSocket.Reset(), 400);
    cleanups.push(() => clearTimeout(stop));
    await running;
    expect(shortFired).toBe(1);
    expect(fired).toBe(0);
    expect(delays.warnings()).toEqual([]);
    expect(delays.maxDelayMs()).toBe(2 ** 31 - 1); // the long wait was armed, clamped
  });
});
