import { Client } from 'pg';
import { readFileSync } from 'node:fs';
import { openServerDataSource } from '@fleet/server-store';
import { createTestDatabase, testChange } from '@fleet/server-store/src/testing';
const bcpu = (pid: number) => { const s = readFileSync(`/proc/${pid}/stat`, 'utf8'); const f = s.slice(s.lastIndexOf(')') + 2).split(' '); return (Number(f[11]) + Number(f[12])) * 10; };
const COLS = 'seq, change_id, origin, origin_seq, scope, collection, key, op, fields, unset, hlc, vv, hash, protocol';
async function main() {
  const db = await createTestDatabase('fleet_scratch');
  await (await openServerDataSource({ url: db.url, poolSize: 1 })).destroy();
  const pg = new Client({ connectionString: db.url }); await pg.connect();
  const pid = (await pg.query('select pg_backend_pid() p')).rows[0].p;
  const N = 2000, T = 6;
  let seq = 0;
  const mk = () => Array.from({ length: N }, (_, k) => testChange(`bench-${k % 8}`, ++seq));
  const UNNEST = `select * from unnest($1::bigint[], $2::uuid[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[], $9::jsonb[], $10::jsonb[], $11::text[], $12::jsonb[], $13::text[], $14::int[])`;
  const V: Record<string, (b: any[]) => [string, any[]]> = {
    'unnest on conflict': (b) => { const base = seq - N; return [`insert into change_log (${COLS}) ${UNNEST} on conflict do nothing returning seq`, [b.map((_, i) => base + i + 1), b.map((c) => c.changeId), b.map((c) => c.origin), b.map((c) => c.originSeq), b.map((c) => c.scope), b.map((c) => c.collection), b.map((c) => c.key), b.map((c) => c.op), b.map((c) => JSON.stringify(c.fields)), b.map((c) => c.unset === undefined ? null : JSON.stringify(c.unset)), b.map((c) => c.hlc), b.map((c) => JSON.stringify(c.vv)), b.map((c) => c.hash), b.map((c) => c.protocol)]]; },
    'unnest plain': (b) => { const base = seq - N; return [`insert into change_log (${COLS}) ${UNNEST}`, [b.map((_, i) => base + i + 1), b.map((c) => c.changeId), b.map((c) => c.origin), b.map((c) => c.originSeq), b.map((c) => c.scope), b.map((c) => c.collection), b.map((c) => c.key), b.map((c) => c.op), b.map((c) => JSON.stringify(c.fields)), b.map((c) => c.unset === undefined ? null : JSON.stringify(c.unset)), b.map((c) => c.hlc), b.map((c) => JSON.stringify(c.vv)), b.map((c) => c.hash), b.map((c) => c.protocol)]]; },
    'jsonb_to_recordset ordinality': (b) => [`with h as (select coalesce(max(seq), 0) as head from change_log),
      ins as (insert into change_log (${COLS}) select h.head + r.ord, r."changeId", r.origin, r."originSeq", r.scope, r.collection, r.key, r.op, r.fields, r.unset, r.hlc, r.vv, r.hash, r.protocol
        from h, rows from (jsonb_to_recordset($1::jsonb) as ("changeId" uuid, origin text, "originSeq" bigint, scope text, collection text, key text, op text, fields jsonb, unset jsonb, hlc text, vv jsonb, hash text, protocol int)) with ordinality as r("changeId", origin, "originSeq", scope, collection, key, op, fields, unset, hlc, vv, hash, protocol, ord) returning 1)
      select (select head from h) as head, (select count(*) from ins) as n`, [JSON.stringify(b)]],
    'json_to_recordset ordinality': (b) => [`with h as (select coalesce(max(seq), 0) as head from change_log),
      ins as (insert into change_log (${COLS}) select h.head + r.ord, r."changeId", r.origin, r."originSeq", r.scope, r.collection, r.key, r.op, r.fields, r.unset, r.hlc, r.vv, r.hash, r.protocol
        from h, rows from (json_to_recordset($1::json) as ("changeId" uuid, origin text, "originSeq" bigint, scope text, collection text, key text, op text, fields jsonb, unset jsonb, hlc text, vv jsonb, hash text, protocol int)) with ordinality as r("changeId", origin, "originSeq", scope, collection, key, op, fields, unset, hlc, vv, hash, protocol, ord) returning 1)
      select (select head from h) as head, (select count(*) from ins) as n`, [JSON.stringify(b)]],
  };
  const res = new Map<string, { pg: number[]; node: number[] }>();
  for (let r = 0; r < 4; r++) for (const [name, f] of Object.entries(V)) {
    let pgc = 0, nodec = 0;
    for (let i = 0; i < T; i++) {
      const b = mk();
      await pg.query('begin');
      const c0 = bcpu(pid); const n0 = process.cpuUsage();
      const [sql, params] = f(b);
      await pg.query(sql, params);
      const n1 = process.cpuUsage(n0); pgc += bcpu(pid) - c0; nodec += (n1.user + n1.system) / 1000;
      await pg.query('commit');
    }
    const e = res.get(name) ?? { pg: [], node: [] }; e.pg.push(pgc / T / N * 1000); e.node.push(nodec / T / N * 1000); res.set(name, e);
  }
  const med = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!.toFixed(1);
  for (const [k, e] of res) console.log(`${k.padEnd(32)} pg ${e.pg.map((x) => x.toFixed(1)).join(' ')} (med ${med(e.pg)})  node ${e.node.map((x) => x.toFixed(1)).join(' ')} (med ${med(e.node)}) us/row`);
  const cnt = await pg.query('select count(*) from change_log');
  console.log(cnt.rows);
  await pg.end(); await db.drop();
}
main().catch((e) => { console.error(e); process.exit(1); });
