import type { LockInfo } from '../Persister';

/** The lock's holder as the scripts return it, from `offset`: owner, host, pid, fence, at, exp. */
export function holderFrom(name: string, reply: readonly string[], offset: number): LockInfo {
  const [owner, hostname, pid, fence, at, exp] = reply.slice(offset, offset + 6);
  return {
    name,
    owner,
    hostname,
    pid: Number(pid),
    fencingToken: Number(fence),
    acquiredAt: new Date(Number(at)),
    expiresAt: new Date(Number(exp)),
  };
}
