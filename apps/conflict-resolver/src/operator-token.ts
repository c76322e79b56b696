import { checkOperatorToken } from '@fleet/config';

/** The conflict-resolver's operator token check (libs/config): resolving conflicts and writing records; reads need none. */
export function checkResolverOperator(configured: string | undefined, authorization: string | undefined, action: string): void {
  checkOperatorToken(configured, authorization, action, 'FLEET_CONFLICTRESOLVER_OPERATOR_TOKEN');
}
