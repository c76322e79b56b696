import { Client } from 'pg';
import { readFileSync } from 'node:fs';
import { createServerDataSource, migrate } from '@fleet/server-store';
import { createTestDatabase, testChange } from '@fleet/server-store/src/testing';
const bcpu = (pid: number) => { const s = readFileSync(`/proc/${pid}/stat`, 'utf8'); const f = s.slice(s.lastIndexOf(')') + 2).split(' '); return (Number(f[11]) + Number(f[12])) * 10; };
async function main() {
  const db = await createTestDatabase('fleet_scratch');
  const mode = process.env.MODE ?? 'migrate';
  const ds = createServerDataSource({ url: db.url, poolSize: 1 }); await ds.initialize();
  if (mode === 'migrate') await migrate(ds);
  else { const d2 = createServerDataSource({ url: db.url, poolSize: 1 }); await d2.initialize(); await migrate(d2); await d2.destroy(); }
  if (process.env.DISCARD) await ds.query('discard all');
  const pid = (await ds.query('select pg_backend_pid() p'))[0].p;
  const N = 2000, T = 8;
  let seq = 0;
  const mk = () => Array.from({ length: N }, (_, k) => ({ ...testChange(`bench-${k % 8}`, seq + 1), seq: ++seq }));
  const sql = `insert into change_log (seq, change_id, origin, origin_seq, scope, collection, key, op, fields, unset, hlc, vv, hash, protocol)
       select * from unnest($1::bigint[], $2::uuid[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[],
                            $9::jsonb[], $10::jsonb[], $11::text[], $12::jsonb[], $13::text[], $14::int[])
       on conflict do nothing returning seq`;
  const params = (b: any[]) => [b.map((c) => c.seq), b.map((c) => c.changeId), b.map((c) => c.origin), b.map((c) => c.originSeq), b.map((c) => c.scope), b.map((c) => c.collection), b.map((c) => c.key), b.map((c) => c.op), b.map((c) => JSON.stringify(c.fields)), b.map(() => null), b.map((c) => c.hlc), b.map((c) => JSON.stringify(c.vv)), b.map((c) => c.hash), b.map((c) => c.protocol)];
  const out = [];
  for (let r = 0; r < 3; r++) {
      const bs = Array.from({ length: T }, mk);
      const c0 = bcpu(pid);
      for (const b of bs) { await ds.query('begin'); await ds.query(sql, params(b)); await ds.query('commit'); }
      out.push(((bcpu(pid) - c0) / T / N * 1000).toFixed(1));
  }
  console.log(`${mode} discard=${process.env.DISCARD ?? ''}: pg cpu us/row ${out.join(' ')}`);
  await ds.destroy(); await db.drop();
}
main().catch((e) => { console.error(e); process.exit(1); });
