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

  it('matches a sorted-list model under any interleaving of adds, cancels, peeks, pops and clears', () => {
    // Fire times 0.4 ms apart: several share a millisecond, arriving in any order, and a
    // millisecond gains timers after its first one was popped. A few far-off or infinite
    // times too (the first one may be one).
    type Q = ReturnType<TimerQueue['add']>;
    const fireTime = fc.oneof(
      { weight: 9, arbitrary: fc.integer({ min: 0, max: 30 }).map((n) => n * 0.0004) },
      { weight: 1, arbitrary: fc.constantFrom(1e300, -1e300, Infinity, 1e15) },
    );
    const op = fc.oneof(
      fc.record({ add: fireTime }),
      fc.record({ cancel: fc.nat() }),
      fc.constant({ peek: true }),
      fc.constant({ pop: true }),
      { weight: 1, arbitrary: fc.constant({ clear: true }) },
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 300 }), (ops) => {
        const q = new TimerQueue();
        let model: { t: number; seq: number; timer: Q }[] = [];
        const added: Q[] = [];
        let seq = 0;
        const byTime = (a: { t: number; seq: number }, b: { t: number; seq: number }): number =>
          a.t < b.t ? -1 : a.t > b.t ? 1 : a.seq - b.seq;
        for (const o of ops) {
          if ('add' in o) {
            const timer = q.add(o.add, () => {});
            added.push(timer);
            model.push({ t: o.add, seq: seq++, timer });
          } else if ('cancel' in o) {
            if (added.length === 0) continue;
            const timer = added[o.cancel % added.length] as Q;
            timer.cancel();
            model = model.filter((m) => m.timer !== timer);
          } else if ('clear' in o) {
            q.clear();
            model = [];
          } else {
            model.sort(byTime);
            expect(q.peek()).toBe(model[0]?.timer);
            if ('pop' in o) expect(q.pop()).toBe(model.shift()?.timer);
          }
          // Cancelled timers count until they are dropped from the head.
          expect(q.size).toBeGreaterThanOrEqual(model.length);
        }
        model.sort(byTime);
        const rest = [];
        for (let t = q.pop(); t !== undefined; t = q.pop()) rest.push(t);
        expect(rest).toEqual(model.map((m) => m.timer));
        expect(q.size).toBe(0);
      }),
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
