/**
 * The operator token: what an operator sends (`Authorization: Bearer <token>`, on HTTP or as a NATS
 * header) with EVERY operator request, reads as well as changes: the conflict log and records
 * (conflict-resolver), critical operations, dead letters and the agents the log knows (change-log),
 * group memberships, pull facts and the fleet's sync health (delta-calculator), `status` and `verify`
 * (every service). Conflict items, dead letters and verify diffs hold fleet data, so reading them is
 * authenticated like changing them. Left open: the probes (`/health/live`, `/health/ready`), the metrics
 * port, and what agents themselves ask (pull, push, origin, Merkle exchanges, critical-operation
 * messages), which NATS permissions scope per agent.
 * One option, one check, for every service.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { FleetError } from '@fleet/errors';
import type { OptionSpec } from './define';
import { envString } from './values';

/**
 * `FLEET_<SERVICE>_OPERATOR_TOKEN`, falling back to `FLEET_OPERATOR_TOKEN` (one Secret for every service).
 * `guards` lists the service's operator requests (reads and changes), for its `--help` and docs table.
 */
export function operatorTokenOption(guards: string) {
  return {
    env: 'OPERATOR_TOKEN',
    schema: envString({ pattern: /^[!-~]{16,256}$/, patternHint: 'expected 16-256 printable characters' }).refine((t) => !t.includes('CHANGE_ME'), {
      error: 'still the placeholder of k8s/config/secret.yaml: generate a token (openssl rand -base64 32)',
    }),
    optional: true,
    secret: true,
    description: `the token an operator must send (\`Authorization: Bearer <token>\`, HTTP or NATS header) with every operator request, reads as well as changes: ${guards}; not the probes, the metrics or agents' requests; unset: every operator request is refused (FLEET_AUTH_004). Keep it in a Secret`,
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
  if (given === undefined || !timingSafeEqual(a, b)) {
    throw new FleetError('FLEET_AUTH_004', `${action} refused: send \`Authorization: Bearer <token>\` with the value of the service's ${variable} (or FLEET_OPERATOR_TOKEN)`);
  }
}

/** A service's operator check, bound to its configured token and variable: throws FLEET_AUTH_004 (see `checkOperatorToken`). */
export type OperatorCheck = (authorization: string | undefined, action: string) => void;

/** `checkOperatorToken` bound to a service's `configured` token and its `variable` (`FLEET_<SERVICE>_OPERATOR_TOKEN`). */
export function operatorCheck(configured: string | undefined, variable: string): OperatorCheck {
  return (authorization, action) => checkOperatorToken(configured, authorization, action, variable);
}
