import { DataSource, MigrationExecutor } from 'typeorm';
import { ChangeLogEntry } from './entities/change-log.entity';
import { OriginProgress } from './entities/origin-progress.entity';
import { RecordRow } from './entities/record.entity';
import { ConflictRow } from './entities/conflict.entity';
import { SERVER_STORE_MIGRATIONS } from './migrations';

export const DEFAULT_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/fleet_sync';

/** Entities of the server store, for a DataSource (or `TypeOrmModule.forRoot`) of one's own. */
export const SERVER_STORE_ENTITIES = [ChangeLogEntry, OriginProgress, RecordRow, ConflictRow];

export interface ServerDataSourceOptions {
  readonly url: string;
  /** Pool size (node-postgres `max`). Default 10. */
  readonly poolSize?: number;
  /** Name reported in pg_stat_activity. */
  readonly applicationName?: string;
}

/**
 * A DataSource over the server database: the store's entities and migrations, never
 * `synchronize` (the schema is what the migrations say, reviewed like code).
 */
export function createServerDataSource(o: ServerDataSourceOptions): DataSource {
  return new DataSource({
    type: 'postgres',
    url: o.url,
    entities: SERVER_STORE_ENTITIES,
    migrations: SERVER_STORE_MIGRATIONS,
    migrationsTransactionMode: 'all',
    synchronize: false,
    logging: ['error'],
    applicationName: o.applicationName ?? 'fleet-server-store',
    poolSize: o.poolSize ?? 10,
  });
}

/** Serialises migrations between processes starting at once (a session lock: held across the migration transaction). */
const MIGRATE_LOCK = `hashtextextended('fleet.server_store.migrate', 0)`;

/**
 * Runs pending migrations; safe to call at every start, from any number of replicas at once.
 * TypeORM takes no lock of its own on PostgreSQL: two replicas starting together on an empty
 * database both saw no migrations table and both ran `create table`, and one crashed at boot
 * (`pg_type_typname_nsp_index`; found by the change-log's two-replica process test). So the
 * migrations run on one connection holding a session advisory lock: the second replica waits, then
 * finds nothing pending. One connection, so a pool of size 1 cannot deadlock on it.
 */
export async function migrate(ds: DataSource): Promise<number> {
  const qr = ds.createQueryRunner();
  await qr.connect();
  try {
    await qr.query(`select pg_advisory_lock(${MIGRATE_LOCK})`);
    try {
      const executor = new MigrationExecutor(ds, qr);
      executor.transaction = 'all';
      return (await executor.executePendingMigrations()).length;
    } finally {
      await qr.query(`select pg_advisory_unlock(${MIGRATE_LOCK})`).catch(() => undefined);
    }
  } finally {
    await qr.release();
  }
}

/** Initialises and migrates: what a service or test needs before touching the log. */
export async function openServerDataSource(o: ServerDataSourceOptions): Promise<DataSource> {
  const ds = createServerDataSource(o);
  await ds.initialize();
  let executed: number;
  try {
    executed = await migrate(ds);
  } catch (e) {
    await ds.destroy();
    throw e;
  }
  if (executed === 0) return ds;
  // The backend that created the tables stays about twice as slow at inserting into them for its
  // whole life (measured: ~60 vs ~28 µs of PostgreSQL CPU per change_log row; DISCARD ALL does not
  // help), and the pool would keep handing it out. Start over with fresh connections.
  await ds.destroy();
  const fresh = createServerDataSource(o);
  await fresh.initialize();
  return fresh;
}

/** Readiness of the PostgreSQL pool, for a service's `/health/ready`. */
export function postgresReadinessCheck(ds: DataSource): { readonly name: string; check(): Promise<void> } {
  return { name: 'postgres', check: async () => void (await ds.query('select 1')) };
}
