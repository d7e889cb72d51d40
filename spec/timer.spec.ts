import fc from 'fast-check';
import { TimerQueue } from '../lib/timer';

describe('TimerQueue', () => {
  it('pops in (fire time, insertion order) for any sequence of adds and cancels', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 20 }), fc.boolean()), { maxLength: 200 }),
        (specs) => {
          const q = new TimerQueue();
          const timers = specs.map(([t, cancel], i) => ({
            t,
            cancel,
            i,
            timer: q.add(t, () => {}),
          }));
          for (const s of timers) if (s.cancel) s.timer.cancel();
          const expected = timers
            .filter((s) => !s.cancel)
            .sort((a, b) => a.t - b.t || a.i - b.i)
            .map((s) => s.timer);
          const got = [];
          for (let head = q.peek(); head !== undefined; head = q.peek()) got.push(q.pop());
          expect(got).toEqual(expected);
        },
      ),
    );
  });

  it('holds 10^6 timers and pops them in order', () => {
    const q = new TimerQueue();
    const noop = (): void => {};
    for (let i = 0; i < 1_000_000; i++) q.add(Math.random() * 1000, noop);
    let last = -1;
    let n = 0;
    // One expect for the whole run: a million expect() calls took minutes.
    let outOfOrder = 0;
    for (let t = q.pop(); t !== undefined; t = q.pop()) {
      if (t.fireTime < last) outOfOrder++;
      last = t.fireTime;
      n++;
    }
    expect(outOfOrder).toBe(0);
    expect(n).toBe(1_000_000);
  });
});
