import { checkOperatorToken } from '@fleet/config';

/** The conflict-resolver's operator token check (libs/config), for every operator request: the conflict log (list, show, resolve), record writes, status. */
export function checkResolverOperator(configured: string | undefined, authorization: string | undefined, action: string): void {
  checkOperatorToken(configured, authorization, action, 'FLEET_CONFLICTRESOLVER_OPERATOR_TOKEN');
}
