import type { JetStreamServer } from '@fleet/messaging';
import type { Subjects } from '@fleet/contracts';
import type { LoggedChange } from '@fleet/sync-core';
import { publishAppended, type Publisher } from './resolver.service';

/** Publishing through the transport's connection (available once the microservice listens). */
export class ConflictResolverPublisher {
  constructor(
    private readonly transport: JetStreamServer,
    private readonly s: Subjects,
  ) {}

  get bus(): Publisher {
    return { publish: (subject, payload, opts) => this.transport.bus.publish(subject, payload, opts) };
  }

  appended(changes: readonly LoggedChange[]): Promise<void> {
    return publishAppended(this.bus, this.s, changes);
  }
}
