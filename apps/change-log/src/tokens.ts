/** Injection tokens for values that are not classes. */
export const CHANGE_LOG_CONFIG = Symbol('ChangeLogConfig');
