/** The seeds test/fuzz/known-issues.json keeps out of the bounded run, by fuzzer. */
import { readFileSync } from 'node:fs';

const file = new URL('../known-issues.json', import.meta.url);

export function knownIssueSeeds(fuzzer) {
  const all = JSON.parse(readFileSync(file, 'utf8'));
  return new Set((all[fuzzer] ?? []).map((issue) => issue.seed));
}
