import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

const binDir = path.join(__dirname, '..', 'bin');
const bins = fs.readdirSync(binDir).filter((f) => !f.startsWith('.'));

/** The flags a bin's argument parser accepts: its `case '--flag':` labels. */
function parsedFlags(source: string): string[] {
  return [...source.matchAll(/case '(-{1,2}[a-z][a-z-]*)':/g)].map((m) => m[1] as string);
}

describe.each(bins)('bin/%s --help', (bin) => {
  const file = path.join(binDir, bin);
  const run = (): ReturnType<typeof spawnSync> =>
    spawnSync(process.execPath, [file, '--help'], { encoding: 'utf8', timeout: 20_000 });

  it('prints the help on stdout and exits 0', () => {
    const r = run();
    expect(r.status).toBe(0);
    expect(String(r.stdout)).toMatch(/^usage: /);
  });

  it('describes every flag the parser accepts, the defaults and the signals handled', () => {
    const source = fs.readFileSync(file, 'utf8');
    const flags = parsedFlags(source);
    expect(flags.length).toBeGreaterThan(0);
    const help = String(run().stdout);
    // The usage line lists them; the description below it must too, one line each.
    const described = help.split('\n').slice(1).join('\n');
    const missing = flags.filter(
      (f) => !new RegExp(`(^|[\\s,])${f}(?=[\\s=,|]|$)`, 'm').test(described),
    );
    expect(missing).toEqual([]);
    expect(described).toMatch(/default/);
    // Every signal the program listens for is named.
    const signals = [...source.matchAll(/(?:onSignal|process\.on)\('(SIG[A-Z0-9]+)'/g)].map(
      (m) => m[1] as string,
    );
    for (const sig of new Set(signals)) expect(described).toContain(sig);
  });
});
