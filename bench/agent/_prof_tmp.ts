import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteLocalStore } from '@fleet/agent-store';
const AGENT = 'bench-agent';
const SCOPE = `host.${AGENT}`;
function fields(i: number) {
  return { name: `package-${i}`, version: `1.${i % 100}.${i % 7}`, arch: 'x86_64', size: 1000 + (i % 5000) };
}
const total = Number(process.argv[2] ?? 20000);
const dir = mkdtempSync(join(process.env.BASE ?? tmpdir(), 'agent-prof-'));
const store = SqliteLocalStore.open({ dataDir: dir, agentId: AGENT, synchronous: (process.env.SYNC ?? 'NORMAL') as 'NORMAL', outboxMax: total + 2000, coalesceAbove: total + 2000 });
store.transaction(() => { for (let i = 0; i < 1000; i++) store.put({ scope: SCOPE, collection: 'warm', key: `w${i}` }, fields(i)); });
const c0 = process.cpuUsage();
const t0 = performance.now();
for (let i = 0; i < total; i += 100) {
  store.transaction(() => { for (let j = i; j < i + 100; j++) store.put({ scope: SCOPE, collection: 'packages', key: `pkg-${(j * 7919) % total}` }, fields(j)); });
}
const ms = performance.now() - t0;
const c = process.cpuUsage(c0);
console.log(`${Math.round(total / ms * 1000)} writes/s, cpu ${((c.user + c.system) / total).toFixed(1)} us/write (user ${(c.user/total).toFixed(1)} sys ${(c.system/total).toFixed(1)})`);
store.close();
rmSync(dir, { recursive: true, force: true });
