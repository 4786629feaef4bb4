import type { PersisterCapabilities } from '../persisters/Persister';

/**
 * The command's environment: `base` plus `SINGLETON_NAME`, and
 * `SINGLETON_FENCING_TOKEN` only when the store fences (its
 * `capabilities.fencing`) and the lease has a token. An inherited
 * `SINGLETON_FENCING_TOKEN` (singleton-run inside another one's command) is
 * never passed on: it belongs to another lock.
 */
export function commandEnv(
  base: NodeJS.ProcessEnv,
  name: string,
  fencingToken: bigint | number | undefined,
  capabilities: Pick<PersisterCapabilities, 'fencing'>,
): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...base, SINGLETON_NAME: name };
  delete env.SINGLETON_FENCING_TOKEN;
  if (capabilities.fencing && fencingToken !== undefined) env.SINGLETON_FENCING_TOKEN = String(fencingToken);
  return env;
}
