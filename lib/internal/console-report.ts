/**
 * What the management console reports about the live process: snapshots of the descriptor
 * map, the profile, timers and memory, as plain data (for `/stats.json`) and as the line
 * protocol's text. Read-only: nothing here changes loop state.
 */
import * as net from 'node:net';
import { DangaSocket, createdSeconds } from '../danga-socket';
import { loop, nowSeconds } from '../event-loop';
import { kCreatedS } from '../internal';
import { NativeSocket } from '../native-socket';

/** One object of the descriptor map. */
export interface SocketRow {
  readonly id: number;
  readonly class: string;
  /** Watched events: `''`, `'R'`, `'W'` or `'RW'` (err and hup are always delivered). */
  readonly watch: string;
  readonly ageS: number;
  readonly writeQueueBytes: number;
  /** Bytes read from / written to the socket; null where the handle does not count them. */
  readonly bytesIn: number | null;
  readonly bytesOut: number | null;
  /** `asString()` of the object (its own override, if any). */
  readonly description: string;
}

/** Per-class profiling totals (all four hooks summed). */
export interface ProfileClassRow {
  readonly class: string;
  readonly userS: number;
  readonly systemS: number;
  readonly calls: number;
}

export interface StatsSnapshot {
  readonly pid: number;
  readonly now: number;
  readonly uptimeS: number;
  /** Loop iterations counted since the console started. */
  readonly iterations: number;
  readonly objects: number;
  readonly objectsByClass: Record<string, number>;
  /** Sums over the open objects' sockets (closed connections are no longer counted). */
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly writeQueueBytes: number;
  readonly timersPending: number;
  readonly profiling: boolean;
  readonly memory: NodeJS.MemoryUsage;
}

const WATCH_FLAGS = /^[^(]*\(([RW]*)\)/;

/** The base class's `asString()` always shows the watch flags, whatever a subclass prints. */
function watchOf(obj: DangaSocket): string {
  return WATCH_FLAGS.exec(DangaSocket.prototype.asString.call(obj))?.[1] ?? '';
}

function describeObject(obj: DangaSocket): string {
  try {
    return String(obj.asString());
  } catch {
    // A subclass override that throws must not take the console down with it.
    return `${obj.constructor.name}: asString() threw`;
  }
}

/** One row for `obj`, at `now` (epoch seconds). */
export function socketRow(obj: DangaSocket, now: number): SocketRow {
  const sock = obj.sock();
  const counted = sock instanceof net.Socket || sock instanceof NativeSocket;
  return {
    id: obj.id,
    class: obj.constructor.name,
    watch: watchOf(obj),
    ageS: Math.max(0, now - createdSeconds(obj[kCreatedS])),
    writeQueueBytes: obj.writeBufSize,
    bytesIn: counted ? sock.bytesRead : null,
    bytesOut: counted ? sock.bytesWritten : null,
    description: describeObject(obj),
  };
}

/** Every object of the descriptor map, in id order, at most `limit` of them. */
export function socketRows(limit = Infinity): SocketRow[] {
  const now = nowSeconds();
  const rows: SocketRow[] = [];
  for (const obj of loop.map.values()) {
    if (rows.length >= limit) break;
    rows.push(socketRow(obj, now));
  }
  return rows;
}

/** Profiling data summed per class, busiest (user + system) first. */
export function profileByClass(): ProfileClassRow[] {
  const byClass = new Map<string, { userS: number; systemS: number; calls: number }>();
  for (const [key, [user, sys, calls]] of Object.entries(DangaSocket.ProfilingData())) {
    const dash = key.lastIndexOf('-');
    const cls = dash > 0 ? key.slice(0, dash) : key;
    const row = byClass.get(cls) ?? { userS: 0, systemS: 0, calls: 0 };
    row.userS += user;
    row.systemS += sys;
    row.calls += calls;
    byClass.set(cls, row);
  }
  return [...byClass]
    .map(([cls, r]) => ({ class: cls, ...r }))
    .sort((a, b) => b.userS + b.systemS - (a.userS + a.systemS));
}

export function stats(iterations: number): StatsSnapshot {
  const objectsByClass: Record<string, number> = {};
  let bytesIn = 0;
  let bytesOut = 0;
  let writeQueueBytes = 0;
  for (const obj of loop.map.values()) {
    const cls = obj.constructor.name;
    objectsByClass[cls] = (objectsByClass[cls] ?? 0) + 1;
    const sock = obj.sock();
    if (sock instanceof net.Socket || sock instanceof NativeSocket) {
      bytesIn += sock.bytesRead;
      bytesOut += sock.bytesWritten;
    }
    writeQueueBytes += obj.writeBufSize;
  }
  return {
    pid: process.pid,
    now: Date.now() / 1000,
    uptimeS: process.uptime(),
    iterations,
    objects: loop.map.size,
    objectsByClass,
    bytesIn,
    bytesOut,
    writeQueueBytes,
    timersPending: loop.timers.size,
    profiling: loop.profiling,
    memory: process.memoryUsage(),
  };
}

/** `/stats.json`: the stats, up to `maxSockets` socket rows, and the per-class profile. */
export function statsJson(iterations: number, maxSockets: number): string {
  return JSON.stringify({
    ...stats(iterations),
    socketsTotal: loop.map.size,
    sockets: socketRows(maxSockets),
    profile: profileByClass(),
  });
}

// ---- the line protocol's text ----------------------------------------------------------

function num(v: number | null): string {
  return v === null ? '-' : String(v);
}

/**
 * `sockets`: one line per object, in the contract's order — id, class, `asString()`, then
 * `wq=` write-queue bytes, `watch=` watched events, `age=` seconds, and `in=`/`out=` bytes
 * (`-` where the socket does not count them). The `key=value` fields after `asString()`
 * (which has spaces) keep the line parseable.
 */
export function socketsText(): string {
  const lines: string[] = [];
  for (const r of socketRows()) {
    lines.push(
      `${r.id} ${r.class} ${r.description}  wq=${r.writeQueueBytes} watch=${r.watch || '-'} ` +
        `age=${r.ageS.toFixed(1)} in=${num(r.bytesIn)} out=${num(r.bytesOut)}`,
    );
  }
  return lines.join('\n');
}

/** `show <id>`, or undefined if no object has that id. */
export function showText(id: number): string | undefined {
  const obj = loop.map.get(id);
  if (obj === undefined) return undefined;
  const r = socketRow(obj, nowSeconds());
  const lines = [
    `id: ${r.id}`,
    `class: ${r.class}`,
    `as_string: ${r.description}`,
    `watch: ${r.watch || '-'} (err and hup always delivered)`,
    `age_s: ${r.ageS.toFixed(3)}`,
    `closed: ${String(obj.closed)}${obj.closeReason !== undefined ? ` (${obj.closeReason})` : ''}`,
    `peer: ${obj.peerAddrString() ?? '-'}`,
    `local: ${obj.localAddrString() ?? '-'}`,
    `os_fd: ${obj.osFd() ?? '-'}`,
    `write_queue_bytes: ${r.writeQueueBytes}`,
    `bytes_in: ${num(r.bytesIn)}`,
    `bytes_out: ${num(r.bytesOut)}`,
  ];
  const prefix = `${r.class}-`;
  for (const [key, [user, sys, calls]] of Object.entries(DangaSocket.ProfilingData())) {
    if (!key.startsWith(prefix) || key.slice(prefix.length).includes('-')) continue;
    lines.push(
      `profile ${key} (whole class): user_s=${user.toFixed(6)} system_s=${sys.toFixed(6)} calls=${calls}`,
    );
  }
  return lines.join('\n');
}

export function profileText(): string {
  const rows = Object.entries(DangaSocket.ProfilingData()).sort(
    (a, b) => b[1][0] + b[1][1] - (a[1][0] + a[1][1]),
  );
  const lines = [
    `profiling is ${loop.profiling ? 'on' : 'off'}`,
    `${'key'.padEnd(32)} ${'user_s'.padStart(10)} ${'system_s'.padStart(10)} ` +
      `${'calls'.padStart(10)} ${'us_per_call'.padStart(12)}`,
  ];
  for (const [key, [user, sys, calls]] of rows) {
    const perCall = calls > 0 ? ((user + sys) * 1e6) / calls : 0;
    lines.push(
      `${key.padEnd(32)} ${user.toFixed(4).padStart(10)} ${sys.toFixed(4).padStart(10)} ` +
        `${String(calls).padStart(10)} ${perCall.toFixed(1).padStart(12)}`,
    );
  }
  if (rows.length === 0) lines.push('(no data)');
  return lines.join('\n');
}

export function timersText(): string {
  const next = loop.timers.peek();
  const lines = [
    `pending: ${loop.timers.size} (cancelled timers count until they reach the head)`,
    next === undefined
      ? 'next: none'
      : `next: in ${Math.max(0, next.fireTime - nowSeconds()).toFixed(3)} s`,
    `loop_timeout_ms: ${loop.loopTimeout}`,
  ];
  return lines.join('\n');
}

function mib(n: number): string {
  return `${(n / 1048576).toFixed(1)} MiB`;
}

export function statsText(iterations: number): string {
  const s = stats(iterations);
  const lines = [
    `pid: ${s.pid}`,
    `uptime_s: ${s.uptimeS.toFixed(1)}`,
    `loop_iterations: ${s.iterations} (since the console started)`,
    `objects: ${s.objects}`,
  ];
  for (const [cls, n] of Object.entries(s.objectsByClass).sort((a, b) => b[1] - a[1])) {
    lines.push(`objects.${cls}: ${n}`);
  }
  lines.push(
    `bytes_in: ${s.bytesIn} (open sockets)`,
    `bytes_out: ${s.bytesOut} (open sockets)`,
    `write_queue_bytes: ${s.writeQueueBytes}`,
    `timers_pending: ${s.timersPending}`,
    `profiling: ${s.profiling ? 'on' : 'off'}`,
    `memory.rss: ${mib(s.memory.rss)}`,
    `memory.heap_used: ${mib(s.memory.heapUsed)}`,
    `memory.heap_total: ${mib(s.memory.heapTotal)}`,
    `memory.external: ${mib(s.memory.external)}`,
    `memory.array_buffers: ${mib(s.memory.arrayBuffers)}`,
  );
  return lines.join('\n');
}
