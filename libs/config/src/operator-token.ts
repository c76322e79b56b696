/**
 * The operator token: what an operator sends (`Authorization: Bearer <token>`, on HTTP or as a NATS
 * header) to make a service change something an agent did not write: begin a critical operation,
 * replay or discard dead letters (change-log), resolve a conflict or write a record (conflict-resolver).
 * One option, one check, for every service that has such requests.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { FleetError } from '@fleet/errors';
import type { OptionSpec } from './define';
import { envString } from './values';

/** `FLEET_<SERVICE>_OPERATOR_TOKEN`, falling back to `FLEET_OPERATOR_TOKEN` (one Secret for every service). */
export function operatorTokenOption(guards: string) {
  return {
    env: 'OPERATOR_TOKEN',
    schema: envString({ pattern: /^[!-~]{16,256}$/, patternHint: 'expected 16-256 printable characters' }).refine((t) => !t.includes('CHANGE_ME'), {
      error: 'still the placeholder of k8s/config/secret.yaml: generate a token (openssl rand -base64 32)',
    }),
    optional: true,
    secret: true,
    description: `the token an operator must send (\`Authorization: Bearer <token>\`, HTTP or NATS header) to ${guards}; unset: every such request is refused (FLEET_AUTH_004). Keep it in a Secret`,
    fallback: ['FLEET_OPERATOR_TOKEN'],
  } as const satisfies OptionSpec;
}

/**
 * Refuses (FLEET_AUTH_004) unless `authorization` is `Bearer <configured>`, compared in constant time;
 * with no token configured every such request is refused. `action` names the request, `variable` the
 * service's token variable, in the message.
 */
export function checkOperatorToken(configured: string | undefined, authorization: string | undefined, action: string, variable: string): void {
  if (configured === undefined) {
    throw new FleetError('FLEET_AUTH_004', `${action} is disabled: set ${variable} (or FLEET_OPERATOR_TOKEN) on the service and send it as \`Authorization: Bearer <token>\``);
  }
  const given = /^Bearer (.+)$/.exec(authorization ?? '')?.[1];
  const a = createHash('sha256').update(given ?? '').digest();
  const b = createHash('sha256').update(configured).digest();
  if (given === undefined || !timingSafeEqual(a, b)) throw new FleetError('FLEET_AUTH_004', `${action}: the operator token is missing or wrong (\`Authorization: Bearer <token>\`)`);
}
