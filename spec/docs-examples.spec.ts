import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ts from 'typescript';

/**
 * Every complete program in README.md and docs/*.md is run here, so the docs cannot drift.
 *
 * A complete program is a fence with the info string `ts example`; the next fence must be a
 * `text` block with exactly what the program prints on stdout. Each one is transpiled
 * (`typescript`'s transpileModule), `danga-socket` is mapped to this checkout's lib/
 * (transpiled once, beside the repository so the addon is found), and it runs in its own
 * `node` process, which must exit 0 within the time bound. A `ts` block that imports
 * danga-socket and runs the loop must say what it is: `ts example`, or `ts daemon` for a
 * program that serves until a signal (those are only checked to transpile).
 */

const ROOT = path.join(__dirname, '..');
const DOCS = ['README.md', ...fs.readdirSync(path.join(ROOT, 'docs')).map((f) => `docs/${f}`)]
  .filter((f) => f.endsWith('.md'))
  .sort();
// A bound, not a speed check: generous enough for a machine whose cores are both busy.
const RUN_TIMEOUT_MS = 60_000;

interface Fence {
  info: string;
  body: string;
  line: number;
}

function fences(md: string): Fence[] {
  const out: Fence[] = [];
  const lines = md.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(.*)$/.exec(lines[i] as string);
    if (open === null) continue;
    const body: string[] = [];
    let j = i + 1;
    while (j < lines.length && lines[j] !== '```') body.push(lines[j++] as string);
    out.push({ info: (open[1] as string).trim(), body: body.join('\n') + '\n', line: i + 1 });
    i = j;
  }
  return out;
}

interface Example {
  doc: string;
  line: number;
  source: string;
  expected: string;
}

function examples(): Example[] {
  const out: Example[] = [];
  for (const doc of DOCS) {
    const fs_ = fences(fs.readFileSync(path.join(ROOT, doc), 'utf8'));
    fs_.forEach((f, i) => {
      if (f.info !== 'ts example') return;
      const next = fs_[i + 1];
      if (next === undefined || next.info !== 'text') {
        throw new Error(`${doc}:${f.line}: a ts example needs a following text block (its output)`);
      }
      out.push({ doc, line: f.line, source: f.body, expected: next.body });
    });
  }
  return out;
}

function transpile(source: string, fileName: string, esm = false): string {
  const r = ts.transpileModule(source, {
    fileName,
    reportDiagnostics: true,
    compilerOptions: {
      module: esm ? ts.ModuleKind.ES2022 : ts.ModuleKind.CommonJS,
      target: ts.ScriptTarget.ES2022,
      esModuleInterop: true,
    },
  });
  const errors = (r.diagnostics ?? []).filter((d) => d.category === ts.DiagnosticCategory.Error);
  if (errors.length > 0) {
    throw new Error(
      `${fileName}: ${errors.map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n')).join('; ')}`,
    );
  }
  return r.outputText;
}

/** Transpile lib/ into a directory under the repository (its package.json locates the addon). */
function buildLib(dir: string): string {
  const walk = (from: string, to: string): void => {
    fs.mkdirSync(to, { recursive: true });
    for (const e of fs.readdirSync(from, { withFileTypes: true })) {
      const src = path.join(from, e.name);
      if (e.isDirectory()) walk(src, path.join(to, e.name));
      else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) {
        const js = transpile(fs.readFileSync(src, 'utf8'), src);
        fs.writeFileSync(path.join(to, e.name.replace(/\.ts$/, '.js')), js);
      }
    }
  };
  walk(path.join(ROOT, 'lib'), path.join(dir, 'lib'));
  return path.join(dir, 'lib', 'index.js');
}

function run(file: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [file],
      { timeout: RUN_TIMEOUT_MS, killSignal: 'SIGKILL', cwd: path.dirname(file) },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

const all = examples();
let work = '';
let libIndex = '';

beforeAll(() => {
  const cache = path.join(ROOT, 'node_modules', '.cache');
  fs.mkdirSync(cache, { recursive: true });
  work = fs.mkdtempSync(path.join(cache, 'docs-examples-'));
  libIndex = buildLib(work);
});

afterAll(() => {
  if (work !== '') fs.rmSync(work, { recursive: true, force: true });
});

describe('docs examples', () => {
  it('finds the complete programs of README.md, the guide and the client docs', () => {
    const docs = new Set(all.map((e) => e.doc));
    for (const doc of ['README.md', 'docs/guide.md', 'docs/clients.md']) {
      expect([...docs]).toContain(doc);
    }
  });

  it('every ts block that imports danga-socket and runs the loop is marked example or daemon', () => {
    const unmarked: string[] = [];
    for (const doc of DOCS) {
      for (const f of fences(fs.readFileSync(path.join(ROOT, doc), 'utf8'))) {
        if (f.info !== 'ts') continue;
        const code = f.body.replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, ''); // comments don't count
        if (code.includes("from 'danga-socket'") && code.includes('EventLoop(')) {
          unmarked.push(`${doc}:${f.line}`);
        }
      }
    }
    expect(unmarked).toEqual([]);
  });

  it('docs/guide.md: the chat daemon is no longer than the same on net, with the counts shown', () => {
    const md = fs.readFileSync(path.join(ROOT, 'docs', 'guide.md'), 'utf8');
    const chat = fences(md).filter(
      (f) => f.info === 'ts example' && f.body.includes('// ---- demo'),
    );
    expect(chat).toHaveLength(2); // ours, then the net version
    const [ours, net] = chat.map(
      (f) =>
        (f.body.split('// ---- demo')[0] as string).split('\n').filter((l) => l.trim() !== '')
          .length,
    );
    const shown = /\*\*(\d+) lines\*\* with danga-socket and\s+\*\*(\d+) lines\*\* on `net`/.exec(
      md,
    );
    expect(shown).not.toBeNull();
    expect([Number(shown?.[1]), Number(shown?.[2])]).toEqual([ours, net]);
    expect(ours).toBeLessThanOrEqual(net as number);
    expect(chat[1]?.body).not.toContain('danga-socket'); // the comparison really is plain net
  });

  it('ts daemon blocks transpile', () => {
    for (const doc of DOCS) {
      for (const f of fences(fs.readFileSync(path.join(ROOT, doc), 'utf8'))) {
        if (f.info === 'ts daemon')
          expect(() => transpile(f.body, `${doc}:${f.line}`, true)).not.toThrow(); // may await at top level
      }
    }
  });

  it('every example type-checks under strict settings against lib/', () => {
    const files = new Map(
      all.map((e) => [
        path.join(ROOT, `.docs-example-${e.doc.replace(/[/.]/g, '_')}_${e.line}.ts`),
        e,
      ]),
    );
    const options: ts.CompilerOptions = {
      strict: true,
      noUncheckedIndexedAccess: true,
      exactOptionalPropertyTypes: true,
      noImplicitOverride: true,
      target: ts.ScriptTarget.ES2022,
      lib: ['lib.es2022.d.ts', 'lib.esnext.disposable.d.ts'],
      module: ts.ModuleKind.Node16,
      moduleResolution: ts.ModuleResolutionKind.Node16,
      types: ['node'],
      skipLibCheck: true,
      noEmit: true,
      baseUrl: ROOT,
      paths: { 'danga-socket': ['lib/index.ts'] },
    };
    const host = ts.createCompilerHost(options);
    const getSourceFile = host.getSourceFile.bind(host);
    host.getSourceFile = (name, version, onError) => {
      const e = files.get(path.resolve(name));
      return e !== undefined
        ? ts.createSourceFile(name, e.source, version)
        : getSourceFile(name, version, onError);
    };
    const fileExists = host.fileExists.bind(host);
    host.fileExists = (name) => files.has(path.resolve(name)) || fileExists(name);
    const program = ts.createProgram([...files.keys()], options, host);
    // Only the examples' own diagnostics: checking lib/'s bodies too tripled the time.
    const problems = program
      .getSourceFiles()
      .filter((sf) => files.has(path.resolve(sf.fileName)))
      .flatMap((sf) => [
        ...program.getSyntacticDiagnostics(sf),
        ...program.getSemanticDiagnostics(sf),
      ])
      .map((d) => {
        const e = files.get(path.resolve((d.file as ts.SourceFile).fileName)) as Example;
        const { line } = (d.file as ts.SourceFile).getLineAndCharacterOfPosition(d.start ?? 0);
        return `${e.doc}:${e.line + 1 + line}: ${ts.flattenDiagnosticMessageText(d.messageText, ' ')}`;
      });
    expect(problems).toEqual([]);
  }, 60_000);

  it.each(all.map((e) => [`${e.doc}:${e.line}`, e] as const))(
    '%s exits 0 and prints what the doc shows',
    async (_name, example) => {
      const js = transpile(example.source, `${example.doc}:${example.line}.ts`).replace(
        /require\("danga-socket"\)/g,
        `require(${JSON.stringify(libIndex)})`,
      );
      const file = path.join(work, `${example.doc.replace(/[/.]/g, '_')}_${example.line}.js`);
      fs.writeFileSync(file, js);
      const r = await run(file);
      if (r.code !== 0) {
        throw new Error(`exit ${String(r.code)} (timeout ${RUN_TIMEOUT_MS} ms?)\n${r.stderr}`);
      }
      expect(r.stdout).toBe(example.expected);
    },
    RUN_TIMEOUT_MS + 10_000,
  );
});

describe('docs/api.md', () => {
  const api = fs.readFileSync(path.join(ROOT, 'docs', 'api.md'), 'utf8');

  it('names every export of lib/index.ts, values and types', () => {
    // The export lists of lib/index.ts, read from its syntax (types leave nothing at run time).
    const src = ts.createSourceFile(
      'index.ts',
      fs.readFileSync(path.join(ROOT, 'lib', 'index.ts'), 'utf8'),
      ts.ScriptTarget.ES2022,
    );
    const names: string[] = [];
    for (const st of src.statements) {
      if (ts.isExportDeclaration(st) && st.exportClause && ts.isNamedExports(st.exportClause)) {
        for (const el of st.exportClause.elements) names.push(el.name.text);
      }
    }
    expect(names.length).toBeGreaterThan(50);
    expect(names.filter((n) => !api.includes(`\`${n}`))).toEqual([]);
  });

  it('lists every error code', () => {
    const codes = [
      ...fs
        .readFileSync(path.join(ROOT, 'lib', 'errors.ts'), 'utf8')
        .matchAll(/'(DS_ERR_[A-Z_]+)'/g),
    ].map((m) => m[1] as string);
    expect(new Set(codes).size).toBeGreaterThanOrEqual(15);
    expect([...new Set(codes)].filter((c) => !api.includes(`\`${c}\``))).toEqual([]);
  });
});
