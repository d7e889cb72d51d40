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
 * Everything `Map` offers works as on a `Map` (same insertion order, same behaviour when
 * entries come and go during an iteration, because iteration follows the key table, which is a
 * `Map`). Only `Map.prototype` methods called on it directly (`Map.prototype.get.call(m, k)`)
 * see an empty map, and `structuredClone` copies it as one.
 */
export class SlotMap<V> extends Map<number, V> {
  /** key → slot index: numbers only. */
  readonly #index = new Map<number, number>();
  /** slot → value; a removed entry's slot holds undefined until it is reused. */
  readonly #slots: (V | undefined)[] = [];
  /** Slots free for reuse. */
  readonly #free: number[] = [];

  constructor() {
    super();
  }

  /** @internal slots in use or free (its spec checks that they are reused) */
  get slotCount(): number {
    return this.#slots.length;
  }

  override get size(): number {
    return this.#index.size;
  }

  override get(key: number): V | undefined {
    const slot = this.#index.get(key);
    return slot === undefined ? undefined : this.#slots[slot];
  }

  override has(key: number): boolean {
    return this.#index.has(key);
  }

  override set(key: number, value: V): this {
    const slot = this.#index.get(key);
    if (slot !== undefined) this.#slots[slot] = value;
    else this.add(key, value);
    return this;
  }

  /** @internal `set` of a key known to be absent (a new object's id): one lookup fewer. */
  add(key: number, value: V): void {
    const slots = this.#slots;
    const free = this.#free;
    if (free.length > 0) {
      const s = free.pop() as number;
      slots[s] = value;
      this.#index.set(key, s);
    } else {
      this.#index.set(key, slots.length);
      slots.push(value);
    }
  }

  /** @internal delete `key` if it maps to `value` (a closed object's own entry), in one lookup. */
  deleteEntry(key: number, value: V): void {
    const slot = this.#index.get(key);
    if (slot === undefined || this.#slots[slot] !== value) return;
    this.#index.delete(key);
    this.#slots[slot] = undefined;
    this.#free.push(slot);
  }

  override delete(key: number): boolean {
    const slot = this.#index.get(key);
    if (slot === undefined) return false;
    this.#index.delete(key);
    this.#slots[slot] = undefined;
    this.#free.push(slot);
    return true;
  }

  override clear(): void {
    this.#index.clear();
    this.#slots.length = 0;
    this.#free.length = 0;
  }

  override forEach(
    cb: (value: V, key: number, map: Map<number, V>) => void,
    thisArg?: unknown,
  ): void {
    for (const [key, slot] of this.#index) cb.call(thisArg, this.#slots[slot] as V, key, this);
  }

  override keys(): MapIterator<number> {
    return this.#index.keys();
  }

  override *values(): MapIterator<V> {
    for (const slot of this.#index.values()) yield this.#slots[slot] as V;
  }

  override *entries(): MapIterator<[number, V]> {
    for (const [key, slot] of this.#index) yield [key, this.#slots[slot] as V];
  }

  override [Symbol.iterator](): MapIterator<[number, V]> {
    return this.entries();
  }

  /** `console.log` and `util.inspect` show the entries, as for a Map. */
  [inspect.custom](depth: number, options: object): string {
    return inspect(new Map(this.entries()), { ...options, depth });
  }
}
