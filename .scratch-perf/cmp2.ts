import { Client } from 'pg';
import { readFileSync } from 'node:fs';
import { openServerDataSource, createServerDataSource } from '@fleet/server-store';
import { createTestDatabase, testChange } from '@fleet/server-store/src/testing';
const bcpu = (pid: number) => { const s = readFileSync(`/proc/${pid}/stat`, 'utf8'); const f = s.slice(s.lastIndexOf(')') + 2).split(' '); return (Number(f[11]) + Number(f[12])) * 10; };
async function main() {
  const db = await createTestDatabase('fleet_scratch');
  const ds = await openServerDataSource({ url: db.url, poolSize: 1 });
  const pg = new Client({ connectionString: db.url }); await pg.connect();
  const rawPid = (await pg.query('select pg_backend_pid() p')).rows[0].p;
  const ormPid = (await ds.query('select pg_backend_pid() p'))[0].p;
  const ds2 = createServerDataSource({ url: db.url, poolSize: 1 }); await ds2.initialize();
  const orm2Pid = (await ds2.query('select pg_backend_pid() p'))[0].p;
  const pg2 = new Client({ connectionString: db.url }); await pg2.connect();
  const raw2Pid = (await pg2.query('select pg_backend_pid() p')).rows[0].p;
  const N = 2000, T = 8;
  let seq = 0;
  const mk = () => Array.from({ length: N }, (_, k) => ({ ...testChange(`bench-${k % 8}`, seq + 1), seq: ++seq }));
  const sql = `insert into change_log (seq, change_id, origin, origin_seq, scope, collection, key, op, fields, unset, hlc, vv, hash, protocol)
       select * from unnest($1::bigint[], $2::uuid[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[],
                            $9::jsonb[], $10::jsonb[], $11::text[], $12::jsonb[], $13::text[], $14::int[])
       on conflict do nothing returning seq`;
  const params = (b: any[]) => [b.map((c) => c.seq), b.map((c) => c.changeId), b.map((c) => c.origin), b.map((c) => c.originSeq), b.map((c) => c.scope), b.map((c) => c.collection), b.map((c) => c.key), b.map((c) => c.op), b.map((c) => JSON.stringify(c.fields)), b.map(() => null), b.map((c) => c.hlc), b.map((c) => JSON.stringify(c.vv)), b.map((c) => c.hash), b.map((c) => c.protocol)];
  for (let r = 0; r < 3; r++) {
    for (const [name, q, pid] of [['orm', (s: string, p?: any[]) => ds.query(s, p), ormPid], ['raw', (s: string, p?: any[]) => pg.query(s, p), rawPid], ['orm-nomigrate', (s: string, p?: any[]) => ds2.query(s, p), orm2Pid], ['raw2', (s: string, p?: any[]) => pg2.query(s, p), raw2Pid]] as const) {
      const bs = Array.from({ length: T }, mk);
      const c0 = bcpu(pid); const t0 = performance.now();
      for (const b of bs) { await q('begin'); await q(sql, params(b)); await q('commit'); }
      console.log(`${name} ${((performance.now() - t0) / T).toFixed(1)} ms/txn pg cpu ${((bcpu(pid) - c0) / T / N * 1000).toFixed(1)} us/row`);
    }
  }
  await pg.end(); await ds.destroy(); await db.drop();
}
main().catch((e) => { console.error(e); process.exit(1); });
