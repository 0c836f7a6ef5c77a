#!/usr/bin/env node
// `npm test`: every node:test suite — codec unit tests and the real integration tests, which create network namespaces
// and veth pairs and therefore need root. Integration files run one at a time (they time real traffic on 2 cores);
// their namespace names carry the pid anyway.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const only = process.argv.slice(2);
const files = [];
for (const dir of ['dist/test/unit', 'dist/test/integration']) {
  if (!existsSync(dir)) continue;
  for (const f of readdirSync(dir).sort()) if (f.endsWith('.test.js')) files.push(join(dir, f));
}
let selected = only.length ? files.filter((f) => only.some((o) => f.includes(o))) : files;
if (selected.length === 0) {
  console.error('no test files found under dist/test: did the build run?');
  process.exit(1);
}
// Unit tests need no privileges; integration tests make network namespaces and veth pairs, which only root can.
const root = !process.getuid || process.getuid() === 0;
const skippedIntegration = root ? [] : selected.filter((f) => f.includes('/integration/'));
selected = selected.filter((f) => !skippedIntegration.includes(f));
if (selected.length === 0) {
  console.error(`${skippedIntegration.length} integration test file(s) need root (they create network namespaces): run sudo npm test`);
  process.exit(1);
}
// Human-readable spec output on stdout, TAP into a file from which the closing "N passed, N failed" line is taken.
const tap = join(mkdtempSync(join(tmpdir(), 'rawpoll-tests-')), 'results.tap');
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1',
  '--test-reporter=spec', '--test-reporter-destination=stdout',
  '--test-reporter=tap', `--test-reporter-destination=${tap}`, ...selected], { stdio: 'inherit' });
const counts = { pass: 0, fail: 0, skipped: 0 };
try {
  for (const m of readFileSync(tap, 'utf8').matchAll(/^# (pass|fail|skipped) (\d+)$/gm)) counts[m[1]] = Number(m[2]);
} catch {
  /* the runner died before writing: the exit status says so */
}
console.log(`\n${counts.pass} passed, ${counts.fail} failed, ${counts.skipped} skipped`);
if (skippedIntegration.length) {
  // Not a pass: most of what rawpoll does is only tested against the real kernel.
  console.log(`NOT RUN: ${skippedIntegration.length} integration test files; they create network namespaces and veth pairs, ` +
    'which needs root: run sudo npm test (unit tests alone, as any user: npm run test:unit)');
  process.exit(r.status || 1);
}
process.exit(r.status ?? 1);
