/**
 * How store failures read: `toPersisterError` wraps a driver's error once, says a subject
 * once when a failure is wrapped with a longer one, and keeps a missing driver's code.
 */
import { PersisterError, SingletonError, toPersisterError } from '../lib/errors';

describe('toPersisterError', () => {
  it("wraps a driver's error once, with the advice to retry", () => {
    const driver = new Error('connect ECONNREFUSED 127.0.0.1:1');
    const error = toPersisterError('Acquiring lock "x"', driver);
    expect(error).toBeInstanceOf(PersisterError);
    expect(error.message).toBe('Acquiring lock "x" failed: connect ECONNREFUSED 127.0.0.1:1. Check that the store is reachable; the operation can be retried.');
    expect(error.cause).toBe(driver);
    expect(toPersisterError('Acquiring lock "x"', error)).toBe(error);
  });

  it('says the subject once when a failure is wrapped with a longer subject', () => {
    const inner = toPersisterError('Watching lock "x"', new Error('cannot connect to Redis (ECONNREFUSED)'));
    const outer = toPersisterError('Watching lock "x" for releases (falling back to polling)', inner);
    expect(outer.message).toBe('Watching lock "x" for releases (falling back to polling) failed: cannot connect to Redis (ECONNREFUSED). Check that the store is reachable; the operation can be retried.');
    expect(outer.cause).toBe(inner.cause);
    // Another subject keeps both.
    expect(toPersisterError('Acquiring lock "x"', inner).message).toMatch(/^Acquiring lock "x" failed: Watching lock "x" failed: /);
  });

  it('a missing driver keeps its code and is not said to be retryable', () => {
    const missing = new SingletonError('SINGLETON_DRIVER_MISSING', 'A mongodb:// store needs the "mongodb" driver, which is not installed. Install it next to singleton-process: npm install mongodb');
    const error = toPersisterError('Acquiring lock "x"', missing);
    expect(error).toBeInstanceOf(PersisterError);
    expect(error.code).toBe('SINGLETON_DRIVER_MISSING');
    expect(error.message).toMatch(/npm install mongodb\.$/);
    expect(error.message).not.toMatch(/retried/);
  });
});
