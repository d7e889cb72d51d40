import * as os from 'node:os';
import * as vm from 'node:vm';
import { DangaSocket } from '../lib';
import { onSignal } from '../lib/signal';
import { runFor, runUntil, waitFor } from './helpers';

// SIGUSR1 belongs to Node's inspector; SIGUSR2 is free in tests.
const SIG = 'SIGUSR2';

// Jest gives each test file a copy of `process` whose listeners never see OS signals;
// onSignal listens on the host process (the main vm context's), so count listeners there.
// The guard keeps a stray delivery from killing the test process.
const hostProcess = vm.runInThisContext('process') as NodeJS.Process;
const guard = (): void => {};
beforeAll(() => hostProcess.on(SIG, guard));
afterAll(() => hostProcess.removeListener(SIG, guard));
afterEach(() => DangaSocket.Reset());

/**
 * Send SIG to ourselves and wait until the host process delivered it: a listener added after
 * onSignal's own runs after it, so onSignal's process handler has run too.
 */
async function deliver(): Promise<void> {
  let delivered = false;
  const marker = (): void => {
    delivered = true;
  };
  hostProcess.on(SIG, marker);
  try {
    process.kill(process.pid, SIG);
    await waitFor(() => delivered, `${SIG} delivery`);
  } finally {
    hostProcess.removeListener(SIG, marker);
  }
}

describe('onSignal', () => {
  it('runs every watcher once per delivery', async () => {
    const calls = [0, 0, 0];
    const names: string[] = [];
    const watches = calls.map((_, i) =>
      onSignal(SIG, (sig) => {
        calls[i]!++;
        names.push(sig);
      }),
    );
    for (let delivery = 1; delivery <= 3; delivery++) {
      process.kill(process.pid, SIG);
      await runUntil(() => calls.every((c) => c >= delivery), 3000);
      expect(calls).toEqual([delivery, delivery, delivery]);
    }
    // No late extra calls.
    await runFor(100);
    expect(calls).toEqual([3, 3, 3]);
    expect(new Set(names)).toEqual(new Set([SIG]));
    for (const w of watches) w.cancel();
  });

  it('runs the callback inside a loop iteration, not from the process handler', async () => {
    let called = 0;
    const w = onSignal('USR2', () => called++);
    await deliver(); // the process handler has run; the loop is not running
    expect(called).toBe(0);
    await runUntil(() => called > 0, 3000);
    expect(called).toBe(1);
    w.cancel();
  });

  it('cancel() removes one watcher; the process listener goes with the last one', async () => {
    const baseline = hostProcess.listenerCount(SIG);
    let a = 0;
    let b = 0;
    const wa = onSignal(SIG, () => a++);
    const wb = onSignal(SIG, () => b++);
    expect(wa.signal).toBe(SIG);
    expect(hostProcess.listenerCount(SIG)).toBe(baseline + 1);
    wa.cancel();
    wa.cancel();
    expect(hostProcess.listenerCount(SIG)).toBe(baseline + 1);
    process.kill(process.pid, SIG);
    await runUntil(() => b > 0, 3000);
    expect([a, b]).toEqual([0, 1]);
    wb.cancel();
    expect(hostProcess.listenerCount(SIG)).toBe(baseline);
  });

  it('does not call a watcher cancelled between the delivery and the loop pass', async () => {
    let a = 0;
    let b = 0;
    const wa = onSignal(SIG, () => a++);
    const wb = onSignal(SIG, () => b++);
    await deliver();
    wa.cancel();
    await runUntil(() => b > 0, 3000);
    expect([a, b]).toEqual([0, 1]);
    wb.cancel();
  });

  it('keeps calling the other watchers when one throws, and reports the error', async () => {
    const errors: unknown[] = [];
    DangaSocket.setErrorHandler((err) => errors.push(err));
    let after = 0;
    onSignal(SIG, () => {
      throw new Error('watcher failed');
    });
    onSignal(SIG, () => after++);
    process.kill(process.pid, SIG);
    await runUntil(() => after > 0, 3000);
    expect(after).toBe(1);
    expect(errors).toEqual([expect.objectContaining({ message: 'watcher failed' })]);
  });

  it('is cleared by DangaSocket.Reset(): old watchers never fire again', async () => {
    const baseline = hostProcess.listenerCount(SIG);
    let stale = 0;
    const old = onSignal(SIG, () => stale++);
    DangaSocket.Reset();
    expect(hostProcess.listenerCount(SIG)).toBe(baseline);
    old.cancel(); // harmless after Reset
    let fresh = 0;
    const w = onSignal(SIG, () => fresh++);
    process.kill(process.pid, SIG);
    await runUntil(() => fresh > 0, 3000);
    expect([stale, fresh]).toEqual([0, 1]);
    w.cancel();
    expect(hostProcess.listenerCount(SIG)).toBe(baseline);
  });

  it.each([['SIGFOO'], ['KILL'], ['SIGSTOP'], [''], [42], [9], [1.5], [-1], [null], ['12']])(
    'rejects the signal %p with DS_ERR_INVALID_ARG',
    (name) => {
      // The types reject most of these already; JavaScript callers get the run-time check.
      expect(() => onSignal(name as never, () => {})).toThrow(
        expect.objectContaining({ code: 'DS_ERR_INVALID_ARG' }),
      );
    },
  );

  it('takes a signal number and reports its name', async () => {
    const names: string[] = [];
    const w = onSignal(os.constants.signals.SIGUSR2, (sig) => names.push(sig));
    expect(w.signal).toBe(SIG);
    process.kill(process.pid, SIG);
    await runUntil(() => names.length > 0, 3000);
    expect(names).toEqual([SIG]);
    w.cancel();
  });

  it('rejects a non-function callback with DS_ERR_INVALID_ARG and installs nothing', () => {
    const baseline = hostProcess.listenerCount(SIG);
    expect(() => onSignal(SIG, 'cb' as never)).toThrow(
      expect.objectContaining({ code: 'DS_ERR_INVALID_ARG' }),
    );
    expect(hostProcess.listenerCount(SIG)).toBe(baseline);
  });
});
