/** Injection tokens for values that are not classes. */
export const CONFLICT_RESOLVER_CONFIG = Symbol('ConflictResolverConfig');
export const STRATEGY_CONFIG = Symbol('StrategyConfig');
