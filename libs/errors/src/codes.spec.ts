import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCodes, FleetError, isErrorCode, isFleetError } from './index';
import { parseCatalogSource } from './catalog-source';

const source = readFileSync(join(__dirname, 'codes.ts'), 'utf8');

describe('error catalog', () => {
  const codes = Object.keys(ErrorCodes);

  it('names every code FLEET_<AREA>_<NNN>', () => {
    for (const c of codes) expect(c).toMatch(/^FLEET_[A-Z]+_\d{3}$/);
  });

  it('gives every code a unique name and a message', () => {
    const names = Object.values(ErrorCodes).map((e) => e.name);
    expect(new Set(names).size).toBe(names.length);
    for (const e of Object.values(ErrorCodes)) {
      expect(e.name).toMatch(/^[A-Z][A-Za-z]+$/);
      expect(e.message.length).toBeGreaterThan(0);
    }
  });

  it('documents every code with a doc comment in codes.ts', () => {
    const entries = parseCatalogSource(source);
    expect(entries.map((e) => e.code).sort()).toEqual([...codes].sort());
    for (const e of entries) expect({ code: e.code, doc: e.doc.length > 10 }).toEqual({ code: e.code, doc: true });
  });

  it('recognises codes', () => {
    expect(isErrorCode('FLEET_DECODE_001')).toBe(true);
    expect(isErrorCode('FLEET_NOPE_999')).toBe(false);
    expect(isErrorCode('toString')).toBe(false);
  });
});

describe('FleetError', () => {
  it('carries code, retryable, details and cause, and drops the stack on the wire', () => {
    const cause = new Error('socket closed');
    const e = new FleetError('FLEET_INFRA_001', 'nats', { cause, details: { server: 'n1' } });
    expect(e.message).toBe('dependency unavailable: nats');
    expect(e.retryable).toBe(true);
    expect(e.cause).toBe(cause);
    expect(e.stack).toBeDefined();
    const json = JSON.parse(JSON.stringify(e)) as Record<string, unknown>;
    expect(json).toEqual({ code: 'FLEET_INFRA_001', message: 'dependency unavailable: nats', details: { server: 'n1' } });
    expect(JSON.stringify(e)).not.toContain('socket closed');
    expect(new FleetError('FLEET_DECODE_001').toJSON()).toEqual({ code: 'FLEET_DECODE_001', message: 'payload is not valid JSON' });
  });
  it('is recognised by code', () => {
    const e = new FleetError('FLEET_AUTH_001');
    expect(isFleetError(e)).toBe(true);
    expect(isFleetError(e, 'FLEET_AUTH_001')).toBe(true);
    expect(isFleetError(e, 'FLEET_AUTH_002')).toBe(false);
    expect(isFleetError(new Error('x'))).toBe(false);
  });
});
