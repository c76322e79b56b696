import { openServerDataSource, PostgresChangeLog } from '@fleet/server-store';
import { createTestDatabase } from '@fleet/server-store/src/testing';
import { Agent } from '../../apps/conflict-resolver/src/testing/harness';
async function main() {
  const db = await createTestDatabase('fleet_vb');
  const ds = await openServerDataSource({ url: db.url, poolSize: 4 });
  const st = { default: 'lww' } as const;
  const a = new Agent('bench-a', st), b = new Agent('bench-b', st);
  const N = 10000;
  const refs = Array.from({ length: N }, (_, i) => ({ scope: 'group.bench', collection: 'settings', key: `doc${i}` }));
  const base = refs.map((ref) => a.write(ref, { op: 'put', fields: { n: 0, name: 'base' } }));
  b.receive(base);
  const log = new PostgresChangeLog(ds);
  for (let i = 0; i < base.length; i += 500) await log.appendBatch(base.slice(i, i + 500));
  const edits = [];
  for (const ref of refs) { edits.push(a.write(ref, { op: 'put', fields: { n: 1, by: 'a' } })); edits.push(b.write(ref, { op: 'put', fields: { n: 2, by: 'b' } })); }
  const sz = Number(process.argv[2] ?? 500);
  const t0 = performance.now();
  for (let i = 0; i < edits.length; i += sz) await log.appendBatch(edits.slice(i, i + sz));
  console.log(`append 20000 in ${sz}: ${(performance.now() - t0).toFixed(0)} ms`);
  await ds.destroy(); await db.drop();
}
main();
