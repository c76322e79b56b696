import { Client } from 'pg';
import { openServerDataSource, PostgresChangeLog } from '@fleet/server-store';
import { createTestDatabase, testChange } from '@fleet/server-store/src/testing';

const stats = new Map<string, { n: number; ms: number }>();
const orig = Client.prototype.query as any;
(Client.prototype as any).query = function (this: any, ...args: any[]) {
  const text = typeof args[0] === 'string' ? args[0] : args[0]?.text;
  const key = String(text).replace(/\s+/g, ' ').slice(0, 60);
  const t0 = performance.now();
  const r = orig.apply(this, args);
  if (r && typeof r.then === 'function') {
    return r.then((v: any) => { const s = stats.get(key) ?? { n: 0, ms: 0 }; s.n++; s.ms += performance.now() - t0; stats.set(key, s); return v; });
  }
  return r;
};

async function main() {
  const db = await createTestDatabase('fleet_scratch');
  const ds = await openServerDataSource({ url: db.url, poolSize: 2 });
  try {
    const log = new PostgresChangeLog(ds);
    const N = Number(process.env.N ?? 2000);
    const T = Number(process.env.T ?? 25);
    let seq = 0;
    const batches = Array.from({ length: T }, () => Array.from({ length: N }, (_, k) => testChange(`bench-${k % 8}`, ++seq)));
    stats.clear();
    const t0 = performance.now();
    for (const b of batches) await log.appendBatch(b);
    const t = performance.now() - t0;
    console.log(`appendBatch ${N} x ${T}: ${(t / T).toFixed(1)} ms/txn, ${Math.round(N * T / t * 1000)} rows/s`);
    for (const [k, s] of stats) console.log(`${(s.ms / T).toFixed(1).padStart(7)} ms/txn  ${s.n}x  ${k}`);
  } finally {
    await ds.destroy();
    if (!process.env.KEEP) await db.drop(); else console.log(db.url);
  }
}
main().catch((e) => { console.error(e); process.exit(1); });
