import { Client } from 'pg';
import { openServerDataSource } from '@fleet/server-store';
import { createTestDatabase, testChange } from '@fleet/server-store/src/testing';

const COLS = 'seq, change_id, origin, origin_seq, scope, collection, key, op, fields, unset, hlc, vv, hash, protocol';
async function main() {
  const db = await createTestDatabase('fleet_scratch');
  await (await openServerDataSource({ url: db.url, poolSize: 1 })).destroy();
  const pg = new Client({ connectionString: db.url });
  await pg.connect();
  const bpid = (await pg.query('select pg_backend_pid() as p')).rows[0].p;
  const fs = await import('node:fs');
  const bcpu = () => { const f = fs.readFileSync(`/proc/${bpid}/stat`, 'utf8').split(') ')[1]!.split(' '); return (Number(f[11]) + Number(f[12])) * 10; };
  const N = 2000, T = Number(process.env.T ?? 10);
  let seq = 0;
  const mk = () => Array.from({ length: N }, (_, k) => ({ ...testChange(`bench-${k % 8}`, seq + 1), seq: ++seq }));
  const arrays = (b: any[]) => [b.map((c) => c.seq), b.map((c) => c.changeId), b.map((c) => c.origin), b.map((c) => c.originSeq), b.map((c) => c.scope), b.map((c) => c.collection), b.map((c) => c.key), b.map((c) => c.op), b.map((c) => JSON.stringify(c.fields)), b.map((c) => c.unset === undefined ? null : JSON.stringify(c.unset)), b.map((c) => c.hlc), b.map((c) => JSON.stringify(c.vv)), b.map((c) => c.hash), b.map((c) => c.protocol)];
  const UNNEST = `select * from unnest($1::bigint[], $2::uuid[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[], $9::jsonb[], $10::jsonb[], $11::text[], $12::jsonb[], $13::text[], $14::int[])`;
  const variants: Record<string, (b: any[]) => Promise<unknown>> = {
    'unnest on conflict': (b) => pg.query(`insert into change_log (${COLS}) ${UNNEST} on conflict do nothing returning seq`, arrays(b)),
    'unnest plain': (b) => pg.query(`insert into change_log (${COLS}) ${UNNEST}`, arrays(b)),
    'json_to_recordset plain': (b) => pg.query(`insert into change_log (${COLS}) select ${COLS} from json_to_recordset($1::json) as r(seq bigint, change_id uuid, origin text, origin_seq bigint, scope text, collection text, key text, op text, fields jsonb, unset jsonb, hlc text, vv jsonb, hash text, protocol int)`,
      [JSON.stringify(b.map((c) => ({ seq: c.seq, change_id: c.changeId, origin: c.origin, origin_seq: c.originSeq, scope: c.scope, collection: c.collection, key: c.key, op: c.op, fields: c.fields, unset: c.unset ?? null, hlc: c.hlc, vv: c.vv, hash: c.hash, protocol: c.protocol })))]),
    'jsonb_to_recordset plain': (b) => pg.query(`insert into change_log (${COLS}) select ${COLS} from jsonb_to_recordset($1::jsonb) as r(seq bigint, change_id uuid, origin text, origin_seq bigint, scope text, collection text, key text, op text, fields jsonb, unset jsonb, hlc text, vv jsonb, hash text, protocol int)`,
      [JSON.stringify(b.map((c) => ({ seq: c.seq, change_id: c.changeId, origin: c.origin, origin_seq: c.originSeq, scope: c.scope, collection: c.collection, key: c.key, op: c.op, fields: c.fields, unset: c.unset ?? null, hlc: c.hlc, vv: c.vv, hash: c.hash, protocol: c.protocol })))]),
    'json_to_recordset on conflict': (b) => pg.query(`insert into change_log (${COLS}) select ${COLS} from json_to_recordset($1::json) as r(seq bigint, change_id uuid, origin text, origin_seq bigint, scope text, collection text, key text, op text, fields jsonb, unset jsonb, hlc text, vv jsonb, hash text, protocol int) on conflict do nothing returning seq`,
      [JSON.stringify(b.map((c) => ({ seq: c.seq, change_id: c.changeId, origin: c.origin, origin_seq: c.originSeq, scope: c.scope, collection: c.collection, key: c.key, op: c.op, fields: c.fields, unset: c.unset ?? null, hlc: c.hlc, vv: c.vv, hash: c.hash, protocol: c.protocol })))]),
  };
  try {
    for (let i = 0; i < 10; i++) await variants['unnest plain']!(mk());
    for (let round = 0; round < 2; round++) for (const [name, f] of Object.entries(variants)) {
      const bs = Array.from({ length: T }, mk);
      const cpu0 = process.cpuUsage(); const b0 = bcpu();
      const t0 = performance.now();
      for (const b of bs) { await pg.query('begin'); await f(b); await pg.query('commit'); }
      const t = performance.now() - t0; const cpu = process.cpuUsage(cpu0);
      console.log(`${name.padEnd(32)} ${(t / T).toFixed(1)} ms/txn  ${Math.round(N * T / t * 1000)} rows/s  node cpu ${((cpu.user + cpu.system) / 1000 / T).toFixed(1)} ms/txn  pg cpu ${((bcpu() - b0) / T).toFixed(1)} ms/txn`);
    }
  } finally {
    await pg.end();
    await db.drop();
  }
}
main().catch((e) => { console.error(e); process.exit(1); });
