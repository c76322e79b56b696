// Prints the error catalog as Markdown: `node -r ./scripts/register.js scripts/error-catalog.ts > docs/errors.md`.
// The doc comments in libs/errors/src/codes.ts are the source; this only formats them.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCodes, isErrorCode, parseCatalogSource } from '@fleet/errors';

const text = readFileSync(join(__dirname, '..', 'libs', 'errors', 'src', 'codes.ts'), 'utf8');
const lines = [
  '# Error catalog',
  '',
  'Generated from `libs/errors/src/codes.ts` by `scripts/error-catalog.ts`; do not edit by hand.',
  'Codes are stable: never reused or renumbered. A non-retryable failure of a message dead-letters it.',
  '',
];
let section: string | undefined = '\u0000';
for (const e of parseCatalogSource(text)) {
  if (!isErrorCode(e.code)) continue;
  if (e.section !== section) {
    section = e.section;
    lines.push(`## ${section ?? 'other'}`, '', '| code | name | retryable | message | meaning |', '|---|---|---|---|---|');
  }
  const entry = ErrorCodes[e.code];
  const cell = (s: string) => s.replace(/\|/g, '\\|');
  lines.push(`| \`${e.code}\` | ${entry.name} | ${entry.retryable ? 'yes' : 'no'} | ${cell(entry.message)} | ${cell(e.doc)} |`);
}
process.stdout.write(`${lines.join('\n').replace(/\|\n## /g, '|\n\n## ')}\n`);
