import { Client } from 'pg';
import { readFileSync } from 'node:fs';
import { openServerDataSource, PostgresChangeLog } from '@fleet/server-store';
import { createTestDatabase, testChange } from '@fleet/server-store/src/testing';

const bcpu = (pid: number) => { const s = readFileSync(`/proc/${pid}/stat`, 'utf8'); const f = s.slice(s.lastIndexOf(')') + 2).split(' '); return (Number(f[11]) + Number(f[12])) * 10; };
const stats = new Map<string, { n: number; ms: number; cpu: number }>();
const orig = Client.prototype.query as any;
(Client.prototype as any).query = function (this: any, ...args: any[]) {
  const text = typeof args[0] === 'string' ? args[0] : args[0]?.text;
  const key = String(text).replace(/\s+/g, ' ').slice(0, 60);
  const pid = this.processID;
  const c0 = pid ? bcpu(pid) : 0;
  const t0 = performance.now();
  const r = orig.apply(this, args);
  if (r && typeof r.then === 'function') {
    return r.then((v: any) => { const s = stats.get(key) ?? { n: 0, ms: 0, cpu: 0 }; s.n++; s.ms += performance.now() - t0; s.cpu += pid ? bcpu(pid) - c0 : 0; stats.set(key, s); return v; });
  }
  return r;
};

async function main() {
  const db = await createTestDatabase('fleet_scratch');
  const ds = await openServerDataSource({ url: db.url, poolSize: 1 });
  try {
    const log = new PostgresChangeLog(ds);
    const N = Number(process.env.N ?? 2000);
    const T = Number(process.env.T ?? 25);
    let seq = 0;
    const batches = Array.from({ length: T }, () => Array.from({ length: N }, (_, k) => testChange(`bench-${k % 8}`, ++seq)));
    await log.appendBatch(Array.from({ length: 10 }, (_, k) => testChange(`warm`, k + 1)));
    stats.clear();
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    for (const b of batches) await log.appendBatch(b);
    const t = performance.now() - t0;
    const c = process.cpuUsage(c0);
    console.log(`appendBatch ${N} x ${T}: ${(t / T).toFixed(1)} ms/txn, ${Math.round(N * T / t * 1000)} rows/s, node cpu ${((c.user + c.system) / 1000 / (N * T) * 1000).toFixed(1)} us/row`);
    let tot = 0;
    for (const [k, s] of stats) { tot += s.cpu; console.log(`${(s.ms / T).toFixed(1).padStart(7)} ms/txn  pg cpu ${(s.cpu / (N * T) * 1000).toFixed(1).padStart(5)} us/row  ${s.n}x  ${k}`); }
    console.log(`pg cpu total ${(tot / (N * T) * 1000).toFixed(1)} us/row`);
  } finally {
    await ds.destroy();
    await db.drop();
  }
}
main().catch((e) => { console.error(e); process.exit(1); });
