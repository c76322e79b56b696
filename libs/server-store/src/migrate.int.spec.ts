import { openServerDataSource } from './data-source';
import { createTestDatabase } from './testing';
import type { TestDatabase } from './testing';

jest.setTimeout(60_000);

let db: TestDatabase | undefined;
afterEach(async () => {
  await db?.drop();
  db = undefined;
});

// Replicas of a service start together on a fresh database (a first deployment with 2+ replicas).
// Without the migration lock, two of them ran `create table change_log` at once and one crashed.
it('several processes migrating one empty database at once all succeed (pool of 1 each)', async () => {
  for (let round = 0; round < 3; round++) {
    db = await createTestDatabase('fleet_migrate_race');
    const dss = await Promise.all([1, 2, 3, 4].map(() => openServerDataSource({ url: db!.url, poolSize: 1 })));
    const [row] = (await dss[0]!.query(`select count(*)::int as n from migrations`)) as Array<{ n: number }>;
    expect(row?.n).toBeGreaterThan(0);
    await Promise.all(dss.map((d) => d.destroy()));
    await db.drop();
    db = undefined;
  }
});
