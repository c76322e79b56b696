import { loadConfig } from '@fleet/config';
import { isFleetError } from '@fleet/errors';
import { changeLogConfig } from './config';
import { checkChangeLogOperator as checkOperatorToken } from './critical';

function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (isFleetError(e)) return `${e.code} ${e.message}`;
    throw e;
  }
  return 'accepted';
}

describe('change-log configuration: the operator token', () => {
  it('is optional, and refused when too short or still the k8s placeholder (never echoed)', () => {
    expect(loadConfig(changeLogConfig, {}).operatorToken).toBeUndefined();
    expect(loadConfig(changeLogConfig, { FLEET_OPERATOR_TOKEN: 'a-real-token-0123456789' }).operatorToken).toBe('a-real-token-0123456789');
    const placeholder = refusal(() => loadConfig(changeLogConfig, { FLEET_CHANGELOG_OPERATOR_TOKEN: 'CHANGE_ME_CHANGE_ME_CHANGE_ME' }));
    expect(placeholder).toMatch(/^FLEET_CONFIG_001 [^]*OPERATOR_TOKEN: still the placeholder/);
    expect(placeholder).not.toContain('CHANGE_ME_CHANGE_ME');
    expect(refusal(() => loadConfig(changeLogConfig, { FLEET_CHANGELOG_OPERATOR_TOKEN: 'short' }))).toMatch(/16-256 printable characters/);
  });

  it('begin checks it: Bearer and the exact token; refused when none is configured', () => {
    expect(refusal(() => checkOperatorToken('a-real-token-0123456789', 'Bearer a-real-token-0123456789'))).toBe('accepted');
    expect(refusal(() => checkOperatorToken('a-real-token-0123456789', 'Bearer a-real-token-012345678'))).toMatch(/^FLEET_AUTH_004 /);
    expect(refusal(() => checkOperatorToken('a-real-token-0123456789', 'a-real-token-0123456789'))).toMatch(/^FLEET_AUTH_004 /);
    expect(refusal(() => checkOperatorToken('a-real-token-0123456789', undefined))).toMatch(/^FLEET_AUTH_004 /);
    expect(refusal(() => checkOperatorToken(undefined, 'Bearer anything-at-all-here'))).toMatch(/^FLEET_AUTH_004 .*critical begin is disabled: set FLEET_CHANGELOG_OPERATOR_TOKEN/);
  });
});
