/**
 * Release: delete the lease, only with the holder's token, mark it released and tell
 * watchers. The fence record describes this lease (acquire wrote it), so marking it is
 * enough; its expiry is left as acquire or renew set it, a day past the lease's.
 *
 * KEYS: [1] lease, [2] fence record.
 * ARGV: [1] token, [2] release channel (the message is the release time, ms; watchers
 *   use only the channel).
 * Returns 1 when released, 0 when the token does not hold the lease.
 * Calls besides TIME: 4 (GET, DEL, HSET, PUBLISH); 1 when refused.
 */
import type { ReleaseRequest } from '../Persister';
import { type LockKeys, releaseChannel } from './keys';
import { withPrelude } from './lua';
import { defineScript, type ScriptClient, unexpectedReply } from './script';

/** The release script. */
export const RELEASE_SCRIPT = defineScript(
  'release',
  withPrelude(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
local now = fmt(nowMs)
redis.call('HSET', KEYS[2], 'exp', now, 'rel', '1')
redis.call('PUBLISH', ARGV[2], now)
return 1
`),
);

/** Runs {@link RELEASE_SCRIPT}; resolves whether the token held the lease (and it is now deleted). */
export async function releaseLease(client: ScriptClient, lock: LockKeys, request: ReleaseRequest, what: string): Promise<boolean> {
  const reply = await RELEASE_SCRIPT.call(client, [lock.lease, lock.record], [request.token, releaseChannel(lock.prefix, lock.name)]);
  if (reply !== 0 && reply !== 1) throw unexpectedReply(what, lock.prefix, reply);
  return reply === 1;
}
