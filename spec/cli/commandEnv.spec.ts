/**
 * The command's environment: SINGLETON_FENCING_TOKEN only from a store that
 * fences (`capabilities.fencing`), never an inherited one.
 */
import { commandEnv } from '../../lib/cli/commandEnv';
import { fromCallbackPersister, type CallbackPersister } from '../../lib/persisters/fromCallbackPersister';
import { MemoryPersister } from '../../lib/persisters/MemoryPersister';
import type { Persister } from '../../lib/persisters/Persister';
import { Singleton } from '../../lib/Singleton';

/** A seed-library style store (create / delete / exists), in memory: it cannot fence. */
function callbackStore(): CallbackPersister {
  const locks = new Map<string, Date>();
  return {
    persistLock(name, callback) {
      if (locks.has(name)) return callback(null, false, locks.get(name));
      locks.set(name, new Date());
      callback(null, true);
    },
    deleteLock(name, callback) {
      locks.delete(name);
      callback();
    },
    lockExists(name, callback) {
      callback(null, locks.has(name));
    },
  };
}

/** Locks `name` on `persister` and returns the environment singleton-run would give the command. */
async function envFor(persister: Persister, name: string, base: NodeJS.ProcessEnv = {}): Promise<NodeJS.ProcessEnv> {
  const singleton = new Singleton(name, persister, { handleSignals: false, handleErrors: false });
  try {
    expect(await singleton.lock()).toBe(true);
    return commandEnv(base, name, singleton.fencingToken, persister.capabilities);
  } finally {
    await singleton.release();
  }
}

describe('commandEnv', () => {
  it('a store that fences: SINGLETON_NAME and the lease fencing token', async () => {
    const persister = new MemoryPersister();
    expect(persister.capabilities.fencing).toBe(true);
    const env = await envFor(persister, 'fenced', { PATH: '/bin' });
    expect(env).toEqual({ PATH: '/bin', SINGLETON_NAME: 'fenced', SINGLETON_FENCING_TOKEN: expect.stringMatching(/^\d+$/) });
  });

  it('a store that does not fence (fromCallbackPersister): no SINGLETON_FENCING_TOKEN at all', async () => {
    const persister = fromCallbackPersister(callbackStore());
    expect(persister.capabilities.fencing).toBe(false);
    const env = await envFor(persister, 'unfenced', { PATH: '/bin' });
    expect(env).toEqual({ PATH: '/bin', SINGLETON_NAME: 'unfenced' });
  });

  it('never passes on an inherited SINGLETON_FENCING_TOKEN (singleton-run inside another one)', () => {
    const outer = { SINGLETON_NAME: 'outer', SINGLETON_FENCING_TOKEN: '41', HOME: '/root' };
    expect(commandEnv(outer, 'inner', undefined, { fencing: true })).toEqual({ SINGLETON_NAME: 'inner', HOME: '/root' });
    expect(commandEnv(outer, 'inner', 7n, { fencing: false })).toEqual({ SINGLETON_NAME: 'inner', HOME: '/root' });
    expect(commandEnv(outer, 'inner', 7n, { fencing: true })).toEqual({ SINGLETON_NAME: 'inner', SINGLETON_FENCING_TOKEN: '7', HOME: '/root' });
    expect(outer.SINGLETON_FENCING_TOKEN).toBe('41');
  });
});
