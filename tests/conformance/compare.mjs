// Compare one conformance run with its expected-failures ratchet file.
//
//   node compare.mjs RESULTS_DIR REQUIREMENTS_YAML EXPECTED_FILE REQ TOOLS_NODE_MODULES
//
// RESULTS_DIR holds the suite's per-scenario folders (server-<scenario>-<time>/
// checks.json). The scenarios that count are the server scenarios the
// requirement set lists, scored or not, except extensions (reason: extension,
// e.g. tasks-*): they are optional by definition. A failure is identified as
// "<scenario>/<check-id>"; a counted scenario with no result is
// "<scenario>/no-result".
//
// EXPECTED_FILE lists one such id per line, "<id>  # reason"; blank lines and
// lines starting with # are ignored. Exit 1 when a failure is not listed or a
// listed entry did not fail (the ratchet only tightens), 0 otherwise.

import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';

const [resultsDir, requirementsFile, expectedFile, req, toolsModules] = process.argv.slice(2);
if (!toolsModules) {
  console.error('usage: compare.mjs RESULTS_DIR REQUIREMENTS_YAML EXPECTED_FILE REQ TOOLS_NODE_MODULES');
  process.exit(2);
}

const { parse } = createRequire(join(toolsModules, 'noop.js'))('yaml');
const requirements = parse(readFileSync(requirementsFile, 'utf8'));
const counted = new Set(requirements.server ?? []);
const ignored = new Set();
for (const entry of requirements.not_scored ?? []) {
  if (entry.leg !== 'server') continue;
  (entry.reason === 'extension' ? ignored : counted).add(entry.scenario);
}

// server-<scenario>-YYYY-MM-DDTHH-MM-SS-mmmZ
const folder = /^server-(.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$/;
const results = new Map();
for (const name of readdirSync(resultsDir)) {
  const match = folder.exec(name);
  const checks = join(resultsDir, name, 'checks.json');
  if (match && existsSync(checks)) results.set(match[1], JSON.parse(readFileSync(checks, 'utf8')));
}

let passed = 0;
let failedChecks = 0;
const failures = new Map(); // id -> first error message
for (const scenario of [...counted].sort()) {
  const checks = results.get(scenario);
  if (!checks) {
    failedChecks += 1;
    failures.set(`${scenario}/no-result`, 'the suite wrote no checks.json for this scenario');
    continue;
  }
  for (const check of checks) {
    if (check.status === 'SUCCESS') passed += 1;
    if (check.status !== 'FAILURE') continue;
    failedChecks += 1;
    const id = `${scenario}/${check.id}`;
    if (!failures.has(id)) failures.set(id, check.errorMessage ?? '');
  }
}

const expected = new Map(); // id -> reason
for (const raw of readFileSync(expectedFile, 'utf8').split('\n')) {
  const line = raw.trim();
  if (!line || line.startsWith('#')) continue;
  const hash = line.indexOf('#');
  const id = (hash === -1 ? line : line.slice(0, hash)).trim();
  const reason = hash === -1 ? '' : line.slice(hash + 1).trim();
  expected.set(id, reason);
}

const unexpected = [...failures.keys()].filter((id) => !expected.has(id));
const stale = [...expected.keys()].filter((id) => !failures.has(id));
const listed = [...failures.keys()].filter((id) => expected.has(id)).length;

for (const id of unexpected) console.log(`NEW FAILURE  ${id}: ${failures.get(id)}`);
for (const id of stale) console.log(`NOW PASSING  ${id} (listed in ${expectedFile}; remove it)`);
for (const id of [...failures.keys()].filter((id) => expected.has(id))) {
  console.log(`expected     ${id}  # ${expected.get(id)}`);
}
if (ignored.size > 0) {
  console.log(`not counted (extensions): ${[...ignored].filter((s) => results.has(s)).join(', ') || 'none run'}`);
}
console.log(`conformance ${req}: ${passed} passed, ${failedChecks} failed (${listed} expected)`);
process.exit(unexpected.length > 0 || stale.length > 0 ? 1 : 0);
