/**
 * Release: delete the lease, only with the holder's token. The release is published only
 * when the lease is marked (its value ends with `*`), that is when someone may wait for
 * it: a watcher marked it, or the name, before it was taken (`watch()`), or a
 * conflicting acquire did. Waiters subscribe before they try, and every try that meets
 * the lease marks it, so no waiter misses a release it waits for.
 *
 * The fence record: an unmarked lease takes its record with it (one `DEL` of both keys),
 * so a name used once leaves nothing behind; the next lease of the name starts again from
 * the server clock in µs, which is past this lease's fence (that fence was the clock when
 * it was acquired: a fence the acquire had to put above the clock marks its lease, and is
 * kept). A marked lease keeps its record, marked released (`r`): its `w` (watched) stays
 * for the next lease. Its expiry stays a day past the lease's.
 *
 * KEYS: [1] lease, [2] fence record.
 * ARGV: [1] token.
 * Publishes on the lease key + `:released` (the channel `releaseChannel` names); the
 * message is empty: watchers use only the channel.
 * Returns 1 when released, 0 when the token does not hold the lease.
 *
 * Calls: 2 (GET, DEL of both keys); marked 4 (GET, DEL, SETRANGE of the record,
 * PUBLISH); 1 when refused. No TIME: nothing it writes is a time.
 */
import type { ReleaseRequest } from '../Persister';
import { type LockKeys, RELEASED_SUFFIX } from './keys';
import { WAITER_MARK } from './lua';
import type { ScriptRunner } from './runner';
import { defineScript, unexpectedReply } from './script';

/** The release script. */
export const RELEASE_SCRIPT = defineScript(
  'release',
  `
local held, token = redis.call('GET', KEYS[1]), ARGV[1]
if held == token then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 1
end
if held ~= token .. '${WAITER_MARK}' then return 0 end
redis.call('DEL', KEYS[1])
-- no record (deleted by hand, evicted): SETRANGE made a 1-byte one, which must not stay
if redis.pcall('SETRANGE', KEYS[2], 0, 'r') == 1 then redis.call('DEL', KEYS[2]) end
redis.call('PUBLISH', KEYS[1] .. '${RELEASED_SUFFIX}', '')
return 1
`,
);

/** Runs {@link RELEASE_SCRIPT}; resolves whether the token held the lease (and it is now deleted). */
export function releaseLease(runner: ScriptRunner, lock: LockKeys, request: ReleaseRequest, what: string): Promise<boolean> {
  return runner.run(RELEASE_SCRIPT, [lock.lease, lock.record], [request.token], what, (reply) => {
    if (reply !== 0 && reply !== 1) throw unexpectedReply(what, lock.prefix, reply);
    return reply === 1;
  });
}
