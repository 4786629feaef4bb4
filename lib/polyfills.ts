/**
 * `Symbol.asyncDispose` exists in Node ≥ 20's main realm as
 * `Symbol.for('nodejs.asyncDispose')`, but not in other realms (vm contexts,
 * such as Jest's test environment). Define it there as the same registered
 * symbol, so `await using` works everywhere and means the same thing.
 */
if (typeof Symbol.asyncDispose !== 'symbol') {
  Object.defineProperty(Symbol, 'asyncDispose', { value: Symbol.for('nodejs.asyncDispose') });
}
if (typeof Symbol.dispose !== 'symbol') {
  Object.defineProperty(Symbol, 'dispose', { value: Symbol.for('nodejs.dispose') });
}
export {};
