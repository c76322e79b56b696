import { Global, Module } from '@nestjs/common';
import type { DynamicModule, ValueProvider } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { JetStreamServer } from '@fleet/messaging';
import { openServerDataSource } from './data-source';

/**
 * The connections every server service shares app-wide: the PostgreSQL pool (migrated at start) and
 * the JetStream transport (built in the app's bootstrap, handed to Nest both as the microservice
 * strategy and as a provider, so health checks and handlers reach the same connection), plus the
 * app's own values (its config, its strategies). Global, so every module of the app, the health
 * module included, can inject them.
 *
 * The pool closes in `onApplicationShutdown`, which Nest runs after the microservice drained:
 * in-flight handlers finish their transactions first.
 */
@Global()
@Module({})
export class ServiceInfraModule {
  static forRoot(o: {
    readonly applicationName: string;
    readonly databaseUrl: string;
    readonly dbPoolSize: number;
    readonly transport: JetStreamServer;
    readonly values?: readonly ValueProvider[];
  }): DynamicModule {
    const values = o.values ?? [];
    return {
      module: ServiceInfraModule,
      providers: [
        ...values,
        { provide: JetStreamServer, useValue: o.transport },
        { provide: DataSource, useFactory: () => openServerDataSource({ url: o.databaseUrl, poolSize: o.dbPoolSize, applicationName: o.applicationName }) },
        { provide: 'DataSourceCloser', inject: [DataSource], useFactory: (ds: DataSource) => ({ onApplicationShutdown: () => ds.destroy() }) },
      ],
      exports: [...values.map((v) => v.provide), JetStreamServer, DataSource],
    };
  }
}
