'use strict';
// Sums jest's JSON reports (one per test run) into CI's closing line:
// "N passed, N failed, N skipped". A suite that failed without a failing test (a load
// error) counts as one failure; a run whose report is missing or unreadable counts as one.
const fs = require('node:fs');
const path = require('node:path');

const dir = process.argv[2];
let passed = 0;
let failed = 0;
let skipped = 0;
const files = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.json')) : [];
for (const file of files.sort()) {
  let r;
  try {
    r = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8'));
  } catch {
    console.log(`${file}: unreadable report`);
    failed++;
    continue;
  }
  const brokenSuites = (r.testResults || []).filter(
    (s) => s.status === 'failed' && !(s.assertionResults || []).some((a) => a.status === 'failed'),
  ).length;
  const f = r.numFailedTests + brokenSuites;
  console.log(`${file}: ${r.numPassedTests} passed, ${f} failed, ${r.numPendingTests} skipped`);
  passed += r.numPassedTests;
  failed += f;
  skipped += r.numPendingTests;
}
if (files.length === 0) failed++;
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
