/**
 * Reads the doc comments of the catalog from the text of `codes.ts`, for the catalog test
 * (every code documented) and for `scripts/error-catalog.ts` (docs/errors.md). The comments
 * are the documentation, so they are read from the source rather than repeated in data.
 * Pure: the caller reads the file.
 */
export interface CatalogEntrySource {
  readonly code: string;
  /** The doc comment's text, without the comment markers; empty if the code has none. */
  readonly doc: string;
  /** The `// --- area ---` heading the code is under, if any. */
  readonly section: string | undefined;
}

export function parseCatalogSource(text: string): CatalogEntrySource[] {
  const start = text.indexOf('export const ErrorCodes');
  const end = text.indexOf('} as const', start);
  const body = text.slice(start, end);
  const out: CatalogEntrySource[] = [];
  const re = /(\/\*\*(?:(?!\*\/)[\s\S])*\*\/\s*)?(FLEET_[A-Za-z0-9_]+)\s*:|\/\/\s*---\s*(.+?)\s*---/g;
  let section: string | undefined;
  for (let m = re.exec(body); m !== null; m = re.exec(body)) {
    if (m[3] !== undefined) {
      section = m[3];
      continue;
    }
    const doc = (m[1] ?? '')
      .replace(/^\/\*\*|\*\/\s*$/g, '')
      .split('\n')
      .map((l) => l.replace(/^\s*\*\s?/, '').trim())
      .filter((l) => l.length > 0)
      .join(' ');
    out.push({ code: m[2] ?? '', doc, section });
  }
  return out;
}
