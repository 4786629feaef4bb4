/**
 * Inspect: read the current lease without its token.
 *
 * KEYS: [1] lease, [2] fence record.
 * ARGV: none.
 * Returns `{}` when free, else `{owner, host, pid, fence, at, exp}`.
 */
import type { LockInfo } from '../Persister';
import { holderFrom } from './holder';
import type { LockKeys } from './keys';
import { holderReply, withPrelude } from './lua';
import { defineScript, type ScriptClient, unexpectedReply } from './script';

/** The inspect script. */
export const INSPECT_SCRIPT = defineScript(
  'inspect',
  withPrelude(`
local pttl = redis.call('PTTL', KEYS[1])
if pttl == -2 then return {} end -- no lease
local rec = redis.call('HMGET', KEYS[2], 'owner', 'host', 'pid', 'fence', 'at')
return ${holderReply(null)}
`),
);

/** Runs {@link INSPECT_SCRIPT}: the holder of `lock`, or null when free. */
export async function inspectLease(client: ScriptClient, lock: LockKeys, what: string): Promise<LockInfo | null> {
  const reply = await INSPECT_SCRIPT.call(client, [lock.lease, lock.record], []);
  if (!Array.isArray(reply)) throw unexpectedReply(what, lock.prefix, reply);
  return reply.length === 0 ? null : holderFrom(lock.name, reply as string[], 0);
}
