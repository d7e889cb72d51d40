#!/usr/bin/env node
'use strict';
// npm run test:stress [-- RUNS] — the whole suite RUNS times (default 10) while two busy-loop
// processes hog both cores, then "K/RUNS green". Exits 0 only when every run is green.
// Each run's jest report is kept in .stress/run-<i>.json; failing tests are listed.
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const arg = process.argv[2];
const runs = arg === undefined ? 10 : Number(arg);
if (!Number.isInteger(runs) || runs < 1) {
  console.error(`usage: npm run test:stress [-- RUNS]  (RUNS a positive integer, got ${arg})`);
  process.exit(2);
}
const jest = path.join(root, 'node_modules', 'jest', 'bin', 'jest.js');
const outDir = path.join(root, '.stress');
fs.rmSync(outDir, { recursive: true, force: true });
fs.mkdirSync(outDir, { recursive: true });

const build = spawnSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit' });
if (build.status !== 0) process.exit(1);

// Two processes that never sleep: as many as this machine's cores (2), so every test
// competes for CPU the whole time.
const hogs = [0, 1].map(() => spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }));
const stopHogs = () => {
  for (const h of hogs) if (h.exitCode === null) h.kill('SIGKILL');
};
process.on('exit', stopHogs);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    stopHogs();
    process.exit(130);
  });
}

/** One whole-suite run; resolves with its summary. */
function runOnce(i) {
  const report = path.join(outDir, `run-${i}.json`);
  const start = Date.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [jest, '--json', `--outputFile=${report}`], {
      cwd: root,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr = (stderr + d.toString()).slice(-20000);
    });
    // Bounded: a hung run is killed and counted red.
    const limit = setTimeout(() => child.kill('SIGKILL'), 15 * 60 * 1000);
    child.on('close', (code) => {
      clearTimeout(limit);
      const seconds = (Date.now() - start) / 1000;
      let r = null;
      try {
        r = JSON.parse(fs.readFileSync(report, 'utf8'));
      } catch {
        // no report: counted red below
      }
      const failedTests = [];
      for (const s of r?.testResults ?? []) {
        const failing = (s.assertionResults ?? []).filter((a) => a.status === 'failed');
        for (const a of failing) failedTests.push(`${path.basename(s.name)} › ${a.fullName}`);
        if (s.status === 'failed' && failing.length === 0) {
          failedTests.push(`${path.basename(s.name)} (suite failed to run)`);
        }
      }
      const green = code === 0 && r !== null && r.success === true && failedTests.length === 0;
      resolve({ green, seconds, r, failedTests, stderr });
    });
  });
}

async function main() {
  let green = 0;
  for (let i = 1; i <= runs; i++) {
    const res = await runOnce(i);
    if (res.green) green++;
    const counts =
      res.r === null
        ? 'no report'
        : `${res.r.numPassedTests} passed, ${res.r.numFailedTests} failed`;
    console.log(
      `run ${i}/${runs}: ${res.green ? 'green' : 'RED'} (${counts}) in ${res.seconds.toFixed(0)} s`,
    );
    for (const t of res.failedTests) console.log(`  failed: ${t}`);
    if (!res.green && res.failedTests.length === 0) console.log(res.stderr.slice(-3000));
  }
  stopHogs();
  console.log(`${green}/${runs} green`);
  process.exitCode = green === runs ? 0 : 1;
}

void main();
