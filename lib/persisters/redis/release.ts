/**
 * Release: delete the lease, only with the holder's token, and mark its fence record
 * released (its expiry stays a day past the lease's). The release is published only
 * when the lease is marked (its value ends with `*`), that is when someone may wait for
 * it: a watcher marked it, or the name, before it was taken (`watch()`), or a
 * conflicting acquire did. Waiters subscribe before they try, and every try that meets
 * the lease marks it, so no waiter misses a release it waits for.
 *
 * KEYS: [1] lease, [2] fence record.
 * ARGV: [1] token.
 * Publishes on the lease key + `:released` (the channel `releaseChannel` names); the
 * message is empty: watchers use only the channel.
 * Returns 1 when released, 0 when the token does not hold the lease.
 *
 * Calls: 3 (GET, DEL, SETRANGE of the record), 4 when marked (PUBLISH); 1 when refused.
 * No TIME: nothing it writes is a time.
 */
import type { ReleaseRequest } from '../Persister';
import { type LockKeys, RELEASED_SUFFIX } from './keys';
import { WAITER_MARK } from './lua';
import { defineScript, type ScriptClient, unexpectedReply } from './script';

/** The release script. */
export const RELEASE_SCRIPT = defineScript(
  'release',
  `
local held, token = redis.call('GET', KEYS[1]), ARGV[1]
local marked = held ~= token
if marked and held ~= token .. '${WAITER_MARK}' then return 0 end
redis.call('DEL', KEYS[1])
-- no record (deleted by hand, evicted): SETRANGE made a 1-byte one, which must not stay
if redis.pcall('SETRANGE', KEYS[2], 0, 'r') == 1 then redis.call('DEL', KEYS[2]) end
if marked then redis.call('PUBLISH', KEYS[1] .. '${RELEASED_SUFFIX}', '') end
return 1
`,
);

/** Runs {@link RELEASE_SCRIPT}; resolves whether the token held the lease (and it is now deleted). */
export async function releaseLease(client: ScriptClient, lock: LockKeys, request: ReleaseRequest, what: string): Promise<boolean> {
  const reply = await RELEASE_SCRIPT.call(client, [lock.lease, lock.record], [request.token]);
  if (reply !== 0 && reply !== 1) throw unexpectedReply(what, lock.prefix, reply);
  return reply === 1;
}
