/** Injection tokens for values that are not classes. */
export const VERSION_VECTOR_CONFIG = Symbol('VersionVectorConfig');
export const STRATEGY_CONFIG = Symbol('StrategyConfig');
