/** Critical-operation fixtures for tests (import from '@fleet/contracts/src/testing/critical'). */
import type { CriticalOperation } from '../critical';

/** A stand-in certificate: the form the schema checks (one PEM block), not a real certificate. */
export const TEST_PEM = '-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUYWJj\n-----END CERTIFICATE-----\n';

export function testCertificate(name: string, notAfter = '2035-01-01T00:00:00Z'): CriticalOperation {
  return { kind: 'certificate', name, value: { pem: TEST_PEM, notAfter } };
}
