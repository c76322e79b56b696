import { DataSource } from 'typeorm';
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

/** Runs pending migrations; safe to call at every start (TypeORM locks its migrations table). */
export async function migrate(ds: DataSource): Promise<void> {
  await ds.runMigrations({ transaction: 'all' });
}

/** Initialises and migrates: what a service or test needs before touching the log. */
export async function openServerDataSource(o: ServerDataSourceOptions): Promise<DataSource> {
  const ds = createServerDataSource(o);
  await ds.initialize();
  try {
    await migrate(ds);
  } catch (e) {
    await ds.destroy();
    throw e;
  }
  return ds;
}
