import { inspect } from 'node:util';

/**
 * A `Map<number, V>` whose values live in a slot array instead of the Map's own hash table:
 * the descriptor map, where every connection adds an entry and removes it milliseconds later.
 *
 * Why: V8 allocates a Map's grown or rehashed table in the generation of the table it
 * replaces, and leaves the replaced table's entries in place. The descriptor map lives for the
 * whole process, so its table is old, and under connection churn it is rebuilt every few dozen
 * connections. Each replaced old table is garbage that still points at the objects live when it
 * was replaced, and the scavenger treats old-generation pointers as roots until the next full
 * collection: those objects (with their sockets, channels and buffers) were promoted instead of
 * dying young, about 300 bytes per churned connection, with longer scavenges.
 *
 * Here the key → slot table holds small integers only, so a stale copy of it holds no object,
 * and a removed entry's slot is cleared at once (and reused). Only growing the slot array leaves
 * a stale copy behind, once per new high-water mark of live entries.
 *
 * The object is a real `Map` (its prototype is `Map.prototype`, so `instanceof`, `constructor`,
 * jest's `toEqual` and `assert.deepStrictEqual` treat it as one) whose methods are its own
 * non-enumerable properties. Everything `Map` offers works as on a `Map`: the same insertion
 * order, the same behaviour when entries come and go during an iteration (iteration follows
 * the key table, itself a `Map`). Only `Map.prototype` methods applied to it directly
 * (`Map.prototype.get.call(m, k)`) and `structuredClone` see an empty map.
 */
export interface SlotMap<V> extends Map<number, V> {
  /** `set` of a key known to be absent (a new object's id): one lookup fewer. */
  add(key: number, value: V): void;
  /** Delete `key` if it maps to `value` (a closed object's own entry), in one lookup. */
  deleteEntry(key: number, value: V): void;
  /** Slots in use or free (its spec checks that they are reused). */
  readonly slotCount: number;
}

export function createSlotMap<V>(): SlotMap<V> {
  /** key → slot index: numbers only. */
  const index = new Map<number, number>();
  /** slot → value; a removed entry's slot holds undefined until it is reused. */
  const slots: (V | undefined)[] = [];
  /** Slots free for reuse. */
  const free: number[] = [];

  const add = (key: number, value: V): void => {
    if (free.length > 0) {
      const s = free.pop() as number;
      slots[s] = value;
      index.set(key, s);
    } else {
      index.set(key, slots.length);
      slots.push(value);
    }
  };
  /** Forget `key`, which holds `slot`: the slot is cleared at once and free for reuse. */
  const drop = (key: number, slot: number): void => {
    index.delete(key);
    slots[slot] = undefined;
    free.push(slot);
  };
  function* entries(): Generator<[number, V], undefined> {
    for (const [key, slot] of index) yield [key, slots[slot] as V];
    return undefined;
  }
  function* values(): Generator<V, undefined> {
    for (const slot of index.values()) yield slots[slot] as V;
    return undefined;
  }

  const map = new Map<number, V>() as SlotMap<V>;
  const method = (value: unknown): PropertyDescriptor => ({
    value,
    writable: true,
    configurable: true,
    enumerable: false,
  });
  Object.defineProperties(map, {
    size: { get: () => index.size, configurable: true, enumerable: false },
    slotCount: { get: () => slots.length, configurable: true, enumerable: false },
    get: method((key: number): V | undefined => {
      const slot = index.get(key);
      return slot === undefined ? undefined : slots[slot];
    }),
    has: method((key: number): boolean => index.has(key)),
    set: method((key: number, value: V): SlotMap<V> => {
      const slot = index.get(key);
      if (slot !== undefined) slots[slot] = value;
      else add(key, value);
      return map;
    }),
    add: method(add),
    deleteEntry: method((key: number, value: V): void => {
      const slot = index.get(key);
      if (slot !== undefined && slots[slot] === value) drop(key, slot);
    }),
    delete: method((key: number): boolean => {
      const slot = index.get(key);
      if (slot === undefined) return false;
      drop(key, slot);
      return true;
    }),
    clear: method((): void => {
      index.clear();
      slots.length = 0;
      free.length = 0;
    }),
    forEach: method((cb: (value: V, key: number, m: Map<number, V>) => void, thisArg?: unknown) => {
      for (const [key, slot] of index) cb.call(thisArg, slots[slot] as V, key, map);
    }),
    keys: method(() => index.keys()),
    values: method(values),
    entries: method(entries),
    [Symbol.iterator]: method(entries),
    // `console.log` and `util.inspect` show the entries, as for any Map.
    [inspect.custom]: method((depth: number, options: object) =>
      inspect(new Map(entries()), { ...options, depth }),
    ),
  });
  return map;
}
