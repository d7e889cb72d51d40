import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { DangaSocket, DangaSocketError, SocketAlarm } from '../lib';
import { getTcpCork, nativeBinding } from '../lib/native';
import { Echo, caught, runUntil, tcpPair } from './helpers';
import { NATIVE_OFF } from './native-mode';

// API §0: the core works when the addon is not there; what needs it throws
// DS_ERR_NATIVE_UNAVAILABLE with a message that says how to build it. CI runs the whole
// suite once with DANGA_NO_NATIVE=1; in a normal run the same checks run in a child process.

afterEach(() => DangaSocket.Reset());

/** What each addon feature does without the addon, as `name: code-or-result`. */
function probeFeatures(lib: typeof import('../lib'), native: typeof import('../lib/native')) {
  const result: Record<string, string> = {};
  const code = (fn: () => unknown): string => {
    try {
      fn();
      return 'ok';
    } catch (err) {
      return err instanceof lib.DangaSocketError || (err as { code?: unknown }).code !== undefined
        ? `${String((err as { code?: unknown }).code)}: ${(err as Error).message}`
        : `other: ${String(err)}`;
    }
  };
  result['binding'] = native.nativeBinding() === undefined ? 'undefined' : 'loaded';
  result['SocketAlarm'] = code(() => new lib.SocketAlarm({ socket: 0 }));
  result['OtherFds'] = code(() => lib.DangaSocket.OtherFds({ 0: () => {} }));
  result['OtherFds(empty)'] = code(() => lib.DangaSocket.OtherFds({}));
  result['getTcpCork'] = code(() => native.getTcpCork(0));
  result['setTcpCork'] = code(() => (result['cork'] = String(native.setTcpCork(0, true))));
  return result;
}

function expectUnavailable(r: Record<string, string>): void {
  expect(r['binding']).toBe('undefined');
  for (const feature of ['SocketAlarm', 'OtherFds', 'getTcpCork']) {
    expect(r[feature]).toMatch(/^DS_ERR_NATIVE_UNAVAILABLE: .*npm rebuild danga-socket/);
    expect(r[feature]).toContain('DANGA_NO_NATIVE');
  }
  expect(r['OtherFds(empty)']).toBe('ok'); // clearing needs no addon
  expect(r['cork']).toBe('false'); // cork degrades to a flag
}

if (NATIVE_OFF) {
  describe('with the addon turned off (DANGA_NO_NATIVE)', () => {
    it('reports every addon feature unavailable, with how to build it', () => {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      expectUnavailable(probeFeatures(require('../lib'), require('../lib/native')));
      expect(caught(() => getTcpCork(0))).toBeInstanceOf(DangaSocketError);
      expect(() => new SocketAlarm({ socket: 0 })).toThrow(DangaSocketError);
    });

    it('keeps the core working: echo through a wrapped socket, tcpCork as a flag', async () => {
      expect(nativeBinding()).toBeUndefined();
      const p = await tcpPair();
      const e = new Echo(p.server);
      e.tcpCork(true);
      expect(e.isCorked).toBe(true);
      e.tcpCork(false);
      let got = '';
      p.client.on('data', (d: Buffer) => (got += d.toString()));
      p.client.write('hello');
      await runUntil(() => got === 'hello');
      expect(got).toBe('hello');
      p.close();
    });
  });
} else {
  describe('DANGA_NO_NATIVE=1 in a child process', () => {
    it('turns the addon off: its features throw DS_ERR_NATIVE_UNAVAILABLE, the rest works', () => {
      // The same probe in a process started with the variable, on the built library (dist/).
      expect(nativeBinding()).toBeDefined(); // the variable, not a missing build, turns it off
      const dist = path.join(__dirname, '..', 'dist', 'lib');
      const script = `
        const lib = require(${JSON.stringify(path.join(dist, 'index.js'))});
        const native = require(${JSON.stringify(path.join(dist, 'native.js'))});
        const probe = ${probeFeatures.toString()};
        process.stdout.write(JSON.stringify(probe(lib, native)));
      `;
      const run = (value: string | undefined): Record<string, string> => {
        const env = { ...process.env };
        if (value === undefined) delete env['DANGA_NO_NATIVE'];
        else env['DANGA_NO_NATIVE'] = value;
        const out = execFileSync(process.execPath, ['-e', script], { env, encoding: 'utf8' });
        return JSON.parse(out) as Record<string, string>;
      };
      expectUnavailable(run('1'));
      // Without the variable (or with 0) the same probe sees the addon.
      expect(run(undefined)['binding']).toBe('loaded');
      expect(run('0')['binding']).toBe('loaded');
    });
  });
}
