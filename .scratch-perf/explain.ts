import { Client } from 'pg';
import { openServerDataSource } from '@fleet/server-store';
import { createTestDatabase, testChange } from '@fleet/server-store/src/testing';

async function main() {
  const db = await createTestDatabase('fleet_scratch');
  await (await openServerDataSource({ url: db.url, poolSize: 1 })).destroy();
  const pg = new Client({ connectionString: db.url });
  await pg.connect();
  try {
    const N = 2000;
    let seq = 0;
    const mk = () => Array.from({ length: N }, (_, k) => ({ ...testChange(`bench-${k % 8}`, seq + 1), seq: ++seq }));
    const ins = (b: any[], explain: string) => pg.query(
      `${explain} insert into change_log (seq, change_id, origin, origin_seq, scope, collection, key, op, fields, unset, hlc, vv, hash, protocol)
       select * from unnest($1::bigint[], $2::uuid[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[],
                            $9::jsonb[], $10::jsonb[], $11::text[], $12::jsonb[], $13::text[], $14::int[])
       on conflict do nothing returning seq`,
      [b.map((c) => c.seq), b.map((c) => c.changeId), b.map((c) => c.origin), b.map((c) => c.originSeq), b.map((c) => c.scope), b.map((c) => c.collection), b.map((c) => c.key), b.map((c) => c.op), b.map((c) => JSON.stringify(c.fields)), b.map(() => null), b.map((c) => c.hlc), b.map((c) => JSON.stringify(c.vv)), b.map((c) => c.hash), b.map((c) => c.protocol)]);
    for (let i = 0; i < 20; i++) await ins(mk(), '');
    const b = mk();
    let t0 = performance.now();
    const r = await ins(b, 'explain (analyze, buffers)');
    console.log(`explain took ${(performance.now() - t0).toFixed(1)} ms`);
    for (const row of r.rows) console.log(row['QUERY PLAN']);
    await pg.query('vacuum analyze change_log');
    const b2 = mk();
    t0 = performance.now();
    const r2 = await ins(b2, 'explain (analyze, buffers)');
    console.log(`explain after vacuum took ${(performance.now() - t0).toFixed(1)} ms`);
    for (const row of r2.rows) console.log(row['QUERY PLAN']);
    // lookup
    const b3 = mk();
    const r3 = await pg.query(`explain (analyze, buffers) select seq from change_log where change_id = any($1::uuid[])
       union
       select seq from change_log
        where (origin, origin_seq) in (select * from unnest($2::text[], $3::bigint[]))`, [b3.map((c) => c.changeId), b3.map((c) => c.origin), b3.map((c) => c.originSeq)]);
    for (const row of r3.rows) console.log(row['QUERY PLAN']);
  } finally {
    await pg.end();
    await db.drop();
  }
}
main().catch((e) => { console.error(e); process.exit(1); });
