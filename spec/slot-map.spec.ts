import { inspect } from 'node:util';
import fc from 'fast-check';
import * as assert from 'node:assert';
import { type SlotMap, createSlotMap } from '../lib/internal/slot-map';
import { DangaSocket } from '../lib';

type Op =
  | { set: [number, string] }
  | { add: [number, string] }
  | { del: number }
  | { delEntry: [number, string] }
  | { clear: true }
  | { iterate: { delEvery: number; addKey: number } };

const key = fc.integer({ min: -3, max: 12 });
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ set: fc.tuple(key, fc.string({ maxLength: 3 })) }) },
  { weight: 3, arbitrary: fc.record({ add: fc.tuple(key, fc.string({ maxLength: 3 })) }) },
  { weight: 4, arbitrary: fc.record({ del: key }) },
  { weight: 3, arbitrary: fc.record({ delEntry: fc.tuple(key, fc.string({ maxLength: 1 })) }) },
  { weight: 1, arbitrary: fc.record({ clear: fc.constant(true as const) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      iterate: fc.record({ delEvery: fc.integer({ min: 1, max: 4 }), addKey: key }),
    }),
  },
);

/** Everything a reader can see of a map. */
function view(m: Map<number, string>): unknown {
  const seen: unknown[] = [];
  m.forEach((v, k, whole) => seen.push([k, v, whole === m]));
  return {
    size: m.size,
    entries: [...m],
    keys: [...m.keys()],
    values: [...m.values()],
    viaEntries: [...m.entries()],
    seen,
  };
}

/**
 * One step on either map; returns what the step itself observed. The internal `add` (a key
 * known to be absent) and `deleteEntry` (only if the key maps to that value) are modelled on
 * a plain Map by what they promise.
 */
function apply(m: Map<number, string>, o: Op): unknown {
  if ('set' in o) return m.set(o.set[0], o.set[1]) === m;
  if ('add' in o) {
    const [k, v] = o.add;
    if (m.has(k)) return 'skipped: add is for absent keys';
    if (isSlotMap(m)) m.add(k, v);
    else m.set(k, v);
    return 'added';
  }
  if ('delEntry' in o) {
    const [k, v] = o.delEntry;
    if (isSlotMap(m)) m.deleteEntry(k, v);
    else if (m.get(k) === v) m.delete(k);
    return 'done';
  }
  if ('del' in o) return m.delete(o.del);
  if ('clear' in o) return m.clear();
  // Iterate while deleting some entries and adding one: Map's live-iteration rules.
  const out: unknown[] = [];
  let i = 0;
  for (const [k, v] of m) {
    out.push([k, v, m.get(k), m.has(k)]);
    if (++i % o.iterate.delEvery === 0) m.delete(k);
    if (i === 1) m.set(o.iterate.addKey, `new${i}`);
    if (i > 40) break;
  }
  return out;
}

describe('SlotMap (the descriptor map)', () => {
  it('behaves as a Map under any sequence of sets, deletes, clears and mutating iterations', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 80 }), (ops) => {
        const model = new Map<number, string>();
        const real = createSlotMap<string>();
        for (const o of ops) {
          expect(apply(real, o)).toEqual(apply(model, o));
          expect(view(real)).toEqual(view(model));
          for (let k = -3; k <= 12; k++) {
            expect(real.get(k)).toBe(model.get(k));
            expect(real.has(k)).toBe(model.has(k));
          }
        }
      }),
    );
  });

  it('is a Map to instanceof, util.inspect, jest equality and assert.deepStrictEqual', () => {
    const m = createSlotMap<string>();
    m.set(7, 'seven').set(3, 'three');
    const plain = new Map([
      [7, 'seven'],
      [3, 'three'],
    ]);
    expect(m).toBeInstanceOf(Map);
    expect(Object.getPrototypeOf(m)).toBe(Map.prototype);
    expect(Object.prototype.toString.call(m)).toBe('[object Map]');
    expect(inspect(m)).toBe(inspect(plain));
    expect(new Map(m)).toEqual(plain);
    expect(m).toEqual(plain);
    expect(m).toStrictEqual(plain);
    assert.deepStrictEqual(m, plain);
    expect(Object.keys(m)).toEqual([]);
    // ... and told apart from a Map with other entries.
    expect(m).not.toEqual(new Map([[7, 'seven']]));
    expect(() =>
      assert.deepStrictEqual(
        m,
        new Map([
          [7, 'seven'],
          [3, 'four'],
        ]),
      ),
    ).toThrow();
  });

  it('reuses the slot of a deleted entry instead of growing', () => {
    const m = createSlotMap<object>();
    for (let i = 0; i < 4; i++) m.set(i, {});
    for (let round = 0; round < 1000; round++) {
      const id = 4 + round;
      m.set(id, {});
      m.delete(id - 4);
    }
    expect(m.size).toBe(4);
    expect([...m.keys()]).toEqual([1000, 1001, 1002, 1003]);
    // At most five entries at once (each set comes before its delete): five slots, not 1,004.
    expect(m.slotCount).toBe(5);
  });

  it('is what DangaSocket.DescriptorMap() returns', () => {
    const map = DangaSocket.DescriptorMap();
    expect(map).toBeInstanceOf(Map);
    expect(isSlotMap(map)).toBe(true);
    expect(map).toEqual(new Map());
  });
});

function isSlotMap<V>(m: Map<number, V>): m is SlotMap<V> {
  return typeof (m as Partial<SlotMap<V>>).deleteEntry === 'function';
}
