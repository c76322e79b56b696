import { emptyRecord, makeLocalChange, encodeRecordState, recordHash } from '@fleet/sync-core';
import { FieldsSchema } from '@fleet/contracts';
import Database from 'better-sqlite3';
import { v7 } from 'uuid';
const N = 20000;
let t = performance.now();
const encs: string[] = [];
for (let i = 0; i < N; i++) {
  const st = emptyRecord({ scope: 'host.a1', collection: 'pkgs', key: 'k' + i });
  const m = makeLocalChange(st, { op: 'put', fields: { name: 'p' + i, version: '1.2.3', size: i } }, { origin: 'a1', originSeq: i + 1, changeId: v7(), hlc: '001795850249861-000000-a1', protocol: 1 }, { default: 'lww' });
  encs.push(encodeRecordState(m.state)); JSON.stringify(m.change);
}
console.log('core us/write', ((performance.now() - t) * 1000 / N).toFixed(1), 'state bytes', encs[0]!.length);
t = performance.now();
for (let i = 0; i < N; i++) FieldsSchema.safeParse({ name: 'p' + i, version: '1.2.3', size: i });
console.log('zod us', ((performance.now() - t) * 1000 / N).toFixed(1));
const db = new Database('/tmp/agsmoke/raw.db'); db.pragma('journal_mode=WAL'); db.pragma('synchronous=FULL');
db.exec('DROP TABLE IF EXISTS r; CREATE TABLE r (scope TEXT, collection TEXT, key TEXT, state TEXT, UNIQUE(scope, collection, key)); DROP TABLE IF EXISTS o; CREATE TABLE o (seq INTEGER PRIMARY KEY, c TEXT)');
const ins = db.prepare('INSERT INTO r VALUES (?,?,?,?)'); const io = db.prepare('INSERT INTO o VALUES (?,?)'); const sel = db.prepare('SELECT state FROM r WHERE scope=? AND collection=? AND key=?');
const tx = db.transaction((a: number) => { for (let i = a; i < a + 100; i++) { sel.get('host.a1', 'pkgs', 'k' + i); ins.run('host.a1', 'pkgs', 'k' + i, encs[i]); io.run(i, encs[i]); } });
t = performance.now();
for (let i = 0; i < N; i += 100) tx(i);
console.log('sql us/write', ((performance.now() - t) * 1000 / N).toFixed(1));
const sp = db.transaction(() => 1);
const tx2 = db.transaction(() => { for (let i = 0; i < 100; i++) sp(); });
t = performance.now();
for (let i = 0; i < N; i += 100) tx2();
console.log('savepoint us', ((performance.now() - t) * 1000 / N).toFixed(1));
