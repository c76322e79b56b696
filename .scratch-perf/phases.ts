import { openServerDataSource, PostgresChangeLog } from '@fleet/server-store';
import { createTestDatabase, testChange } from '@fleet/server-store/src/testing';
import { decodeChange } from '@fleet/contracts';
import { encodeJson, decodeJson } from '@fleet/contracts';

async function main() {
  const db = await createTestDatabase('fleet_scratch');
  const ds = await openServerDataSource({ url: db.url, poolSize: 2 });
  try {
    const log = new PostgresChangeLog(ds);
    // log query timings
    const origQuery = ds.driver.constructor.prototype;
    const N = Number(process.env.N ?? 2000);
    const T = Number(process.env.T ?? 25);
    let seq = 0;
    const batches = Array.from({ length: T }, () => Array.from({ length: N }, (_, k) => testChange(`bench-${k % 8}`, ++seq)));
    // decode cost
    const raw = batches.map((b) => decodeJson(encodeJson(b)) as unknown[]);
    let t0 = performance.now();
    for (const b of raw) for (const c of b) decodeChange(c);
    console.log(`decodeChange: ${((performance.now() - t0) / (N * T) * 1e3).toFixed(2)} us/change`);
    t0 = performance.now();
    for (const b of batches) await log.appendBatch(b);
    const t = performance.now() - t0;
    console.log(`appendBatch ${N} x ${T}: ${(t / T).toFixed(1)} ms/txn, ${Math.round(N * T / t * 1000)} rows/s`);
  } finally {
    await ds.destroy();
    await db.drop();
  }
}
main().catch((e) => { console.error(e); process.exit(1); });
