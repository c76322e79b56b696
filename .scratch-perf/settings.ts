import { Client } from 'pg';
import { openServerDataSource } from '@fleet/server-store';
import { createTestDatabase } from '@fleet/server-store/src/testing';
async function main() {
  const db = await createTestDatabase('fleet_scratch');
  const ds = await openServerDataSource({ url: db.url, poolSize: 1 });
  const pg = new Client({ connectionString: db.url }); await pg.connect();
  const a = new Map<string, string>((await pg.query('select name, setting from pg_settings')).rows.map((r: any) => [r.name, r.setting]));
  const b: any[] = await ds.query('select name, setting from pg_settings');
  for (const r of b) if (a.get(r.name) !== r.setting) console.log(r.name, JSON.stringify(a.get(r.name)), '->', JSON.stringify(r.setting));
  console.log(await ds.query(`select extname from pg_extension`));
  await pg.end(); await ds.destroy(); await db.drop();
}
main().catch((e) => { console.error(e); process.exit(1); });
