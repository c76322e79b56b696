import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { DEFAULT_DATABASE_URL } from '../data-source';

export interface TestDatabase {
  /** Connection URL of the new, empty database. */
  readonly url: string;
  readonly name: string;
  /** Drops the database (terminating leftover connections). */
  drop(): Promise<void>;
}

/**
 * A fresh database per integration test file, on the server of DATABASE_URL (default
 * 127.0.0.1:5432, user postgres, trust auth), so test files run in parallel without sharing rows.
 */
export async function createTestDatabase(prefix = 'fleet_test'): Promise<TestDatabase> {
  const base = new URL(process.env['DATABASE_URL'] ?? DEFAULT_DATABASE_URL);
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  const admin = new URL(base);
  admin.pathname = '/postgres';
  const withAdmin = async (sql: string) => {
    const client = new Client({ connectionString: admin.toString() });
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  };
  await withAdmin(`create database "${name}"`);
  const url = new URL(base);
  url.pathname = `/${name}`;
  return { url: url.toString(), name, drop: () => withAdmin(`drop database if exists "${name}" with (force)`) };
}
