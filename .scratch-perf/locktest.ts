import { Client } from 'pg';
async function main() {
  const a = new Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/postgres' }); await a.connect();
  const b = new Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/postgres' }); await b.connect();
  await a.query('begin'); await a.query(`select pg_advisory_xact_lock(hashtextextended('fleet.change_log.append', 0))`);
  await b.query('begin');
  const t0 = Date.now();
  try {
    await b.query(`with t as materialized (select set_config('lock_timeout', $1, true) as v)
  select t.v, pg_advisory_xact_lock(hashtextextended('fleet.change_log.append', 0)) from t`, ['300ms']);
    console.log('got lock?!');
  } catch (e: any) { console.log('after', Date.now() - t0, 'ms:', e.code, e.message); }
  await b.query('rollback'); await a.query('rollback'); await a.end(); await b.end();
}
main();
