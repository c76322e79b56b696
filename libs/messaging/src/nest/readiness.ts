import { FleetError } from '@fleet/errors';
import type { JetStreamServer } from './server';

/**
 * Readiness of the transport's NATS connection, for a service's `/health/ready`: a round trip to
 * the server, so a connection that is reconnecting hangs (and the health check times out) rather
 * than reporting ready.
 */
export function natsReadinessCheck(transport: JetStreamServer): { readonly name: string; check(): Promise<void> } {
  return {
    name: 'nats',
    check: async () => {
      const nc = transport.bus.nc; // throws FLEET_CONFIG_001 until the transport listens
      if (nc.isClosed() || nc.isDraining()) throw new FleetError('FLEET_INFRA_001', 'NATS connection closed');
      await nc.flush();
    },
  };
}
