import { emptyRecord, makeLocalChange, recordHash, validateChange, canonicalJson, vvIncrement, computeView } from '@fleet/sync-core';
import { FieldsSchema, CollectionSchema, KeySchema } from '@fleet/contracts';
import { encodeStoredState } from '../../libs/agent-store/src/stored-state';
const AGENT = 'bench-agent';
const SCOPE = `host.${AGENT}`;
const fields = (i: number) => ({ name: `package-${i}`, version: `1.${i % 100}.${i % 7}`, arch: 'x86_64', size: 1000 + (i % 5000) });
const meta = (i: number) => ({ origin: AGENT, originSeq: i + 1, changeId: '0190a000-0000-7000-8000-000000000001', hlc: '001700000000000-000000-bench-agent', protocol: 1 });
function t(name: string, n: number, fn: (i: number) => unknown) {
  for (let i = 0; i < 2000; i++) fn(i);
  const c0 = process.cpuUsage();
  for (let i = 0; i < n; i++) fn(i);
  const c = process.cpuUsage(c0);
  console.log(name.padEnd(30), ((c.user + c.system) / n).toFixed(2), 'us cpu');
}
const N = 20000;
const made = Array.from({ length: 100 }, (_, i) => makeLocalChange(emptyRecord({ scope: SCOPE, collection: 'c', key: `k${i}` }), { op: 'put', fields: fields(i) }, meta(i), { default: 'lww' }));
t('makeLocalChange', N, (i) => makeLocalChange(emptyRecord({ scope: SCOPE, collection: 'c', key: `k${i}` }), { op: 'put', fields: fields(i) }, meta(i), { default: 'lww' }));
t('recordHash', N, (i) => recordHash(made[i % 100]!.state));
t('validateChange', N, (i) => validateChange(made[i % 100]!.change));
t('canonicalJson(fields)', N, (i) => canonicalJson(fields(i)));
t('vvIncrement', N, (i) => vvIncrement({}, AGENT));
t('computeView', N, (i) => computeView(made[i % 100]!.state, { default: 'lww' }));
t('encodeStoredState', N, (i) => encodeStoredState(made[i % 100]!.state));
t('stringify change', N, (i) => JSON.stringify(made[i % 100]!.change));
t('zod fields', N, (i) => FieldsSchema.safeParse(fields(i)));
t('zod coll+key', N, (i) => { CollectionSchema.safeParse('packages'); KeySchema.safeParse(`pkg-${i}`); });
