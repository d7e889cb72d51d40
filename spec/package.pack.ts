// Run by `npm run test:pack` (and once by .ci/run), not by `npm test`: packing, installing
// offline and running the smoke programs takes over a minute, and it is the same on every
// Node, so the per-version runs would only repeat it.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

const root = path.join(__dirname, '..');

/** Run scripts/pack-smoke.sh; resolves with its exit code and output. */
function packSmoke(): Promise<{ code: number | null; out: string }> {
  const env = { ...process.env };
  // The smoke programs prove the shipped addon loads: never turn it off for them.
  delete env['DANGA_NO_NATIVE'];
  // A fresh local build is the same Node-API binary prebuildify would make; CI's
  // scripts/pack-smoke.sh step runs prebuildify itself.
  // CI sets DANGA_PREBUILD_REUSE=0 so that prebuildify itself runs once.
  if (
    env['DANGA_PREBUILD_REUSE'] === undefined &&
    fs.existsSync(path.join(root, 'build', 'Release', 'danga_socket.node'))
  ) {
    env['DANGA_PREBUILD_REUSE'] = '1';
  }
  return new Promise((resolve) => {
    const child = spawn('bash', [path.join(root, 'scripts', 'pack-smoke.sh')], {
      cwd: root,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 170_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

describe('the packed package', () => {
  it('installs offline without tsc or a compiler and runs from CommonJS, ESM and TypeScript', async () => {
    const { code, out } = await packSmoke();
    const last = out.trim().split('\n').at(-1);
    if (last !== 'pack-smoke: PASS') {
      // The script's own failure line (and what led to it) is the useful message.
      throw new Error(out.split('\n').slice(-30).join('\n'));
    }
    expect(code).toBe(0);
    expect(out).toContain('cjs ok');
    expect(out).toContain('esm ok');
  }, 180_000);
});
