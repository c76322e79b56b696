import { Client } from 'pg';
import { openServerDataSource, PostgresChangeLog } from '@fleet/server-store';
import { createTestDatabase, testChange } from '@fleet/server-store/src/testing';
async function main() {
  const db = await createTestDatabase('fleet_scratch');
  const ds = await openServerDataSource({ url: db.url, poolSize: 2 });
  const log = new PostgresChangeLog(ds);
  const N = 2000, T = 10;
  let seq = 0;
  const mk = () => Array.from({ length: N }, (_, k) => testChange(`bench-${k % 8}`, ++seq));
  for (let r = 0; r < 3; r++) {
    const bs = Array.from({ length: T }, mk);
    let t0 = performance.now();
    for (const b of bs) await log.appendBatch(b);
    console.log(`appendBatch ${((performance.now() - t0) / T).toFixed(1)} ms/txn`);
    const bs2 = Array.from({ length: T }, mk);
    t0 = performance.now();
    let ins = 0;
    for (const b of bs2) await ds.transaction('READ COMMITTED', async (tx) => {
      const [head] = await tx.query('select coalesce(max(seq), 0) as head from change_log');
      const base = Number(head.head);
      const t1 = performance.now();
      await tx.query(`insert into change_log (seq, change_id, origin, origin_seq, scope, collection, key, op, fields, unset, hlc, vv, hash, protocol)
       select * from unnest($1::bigint[], $2::uuid[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[],
                            $9::jsonb[], $10::jsonb[], $11::text[], $12::jsonb[], $13::text[], $14::int[])
       on conflict do nothing returning seq`, [b.map((_, i) => base + i + 1), b.map((c) => c.changeId), b.map((c) => c.origin), b.map((c) => c.originSeq), b.map((c) => c.scope), b.map((c) => c.collection), b.map((c) => c.key), b.map((c) => c.op), b.map((c) => JSON.stringify(c.fields)), b.map(() => null), b.map((c) => c.hlc), b.map((c) => JSON.stringify(c.vv)), b.map((c) => c.hash), b.map((c) => c.protocol)]);
      ins += performance.now() - t1;
    });
    console.log(`plain txn ${((performance.now() - t0) / T).toFixed(1)} ms/txn, insert ${(ins / T).toFixed(1)}`);
  }
  await ds.destroy(); await db.drop();
}
main().catch((e) => { console.error(e); process.exit(1); });
