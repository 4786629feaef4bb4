/**
 * Release: delete the lease, only with the holder's token — or hand it straight to the
 * first waiter in the queue. The release is published only when the lease is marked (its
 * value ends with `*`), that is when someone may wait for it: a watcher marked it, or the
 * name, before it was taken (`watch()`), or a conflicting acquire did. Waiters subscribe
 * before they try, and every try that meets the lease marks it, so no waiter misses a
 * release it waits for.
 *
 * The hand-off: a marked lease with waiters queued (waiters that listen on their own turn
 * channel: `RedisPersister.watch` with a turn) is not freed but given to the first of them
 * that still listens: the script publishes the new lease (`fence\nacquiredAtMs\nexpiresAtMs`)
 * on that waiter's turn channel and, when Redis counts a subscriber there, writes the lease
 * (`token*`: marked, the next release looks at the queue again) and its record. A waiter
 * whose connection is gone counts no subscriber: it is dropped and the next one is tried.
 * So the lease moves in one server step (no free moment another client could take, no
 * herd of waiters retrying), in arrival order, with a fence above the last one.
 *
 * The fence record: an unmarked lease takes its record with it (one `DEL` of both keys),
 * so a name used once leaves nothing behind; the next lease of the name starts again from
 * the server clock in µs, which is past this lease's fence (that fence was the clock when
 * it was acquired: a fence the acquire had to put above the clock marks its lease, and is
 * kept). A marked lease keeps its record, marked released (`r`): its `w` (watched) stays
 * for the next lease. Its expiry stays a day past the lease's.
 *
 * KEYS: [1] lease, [2] fence record, [3] waiting queue.
 * ARGV: [1] token, [2] (optional) a queue entry to take out first: a waiter leaving.
 * Publishes on the lease key + `:released` (the channel `releaseChannel` names) when the
 * lease is freed; the message is empty: watchers use only the channel.
 * Returns 1 when released, 2 when handed to a waiter, 0 when the token does not hold the lease.
 *
 * Calls: 2 (GET, DEL of both keys); marked 5 (GET, ZPOPMIN, DEL, SETRANGE of the record,
 * PUBLISH); handed over 7 (GET, ZPOPMIN, GET record, TIME, PUBLISH, SET, SET), two more
 * (ZPOPMIN, PUBLISH) per waiter gone; 1 when refused (2 for a leaving waiter).
 */
import type { ReleaseRequest } from '../Persister';
import { type LockKeys, RELEASED_SUFFIX, TURN_INFIX } from './keys';
import { FENCE_RECORD_TTL_MS, NEXT_FENCE, SERVER_TIME, WAITER_MARK } from './lua';
import type { ScriptRunner } from './runner';
import { defineScript, unexpectedReply } from './script';

/** The release script. */
export const RELEASE_SCRIPT = defineScript(
  'release',
  `
if ARGV[2] then redis.call('ZREM', KEYS[3], ARGV[2]) end
local held, token = redis.call('GET', KEYS[1]), ARGV[1]
if held == token then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 1
end
if held ~= token .. '${WAITER_MARK}' then return 0 end
local first = redis.call('ZPOPMIN', KEYS[3])
if first[1] then
  local old = redis.pcall('GET', KEYS[2])
  if type(old) ~= 'string' then old = nil end
  ${SERVER_TIME}
  ${NEXT_FENCE}
  local at = clock[1] .. string.sub(micros, 1, 3)
  local state = (old and string.byte(old, 2) == 119) and 'hw\\n' or 'h-\\n'
  repeat
    local waiter, ttl, holder = string.match(first[1], '^([^\\n]+)\\n(%d+)\\n(.*)$')
    if waiter and redis.call('PUBLISH', KEYS[1] .. '${TURN_INFIX}' .. waiter,
        fenceText .. '\\n' .. at .. '\\n' .. string.format('%.0f', nowMs + tonumber(ttl))) > 0 then
      redis.call('SET', KEYS[1], waiter .. '${WAITER_MARK}', 'PX', ttl)
      redis.call('SET', KEYS[2], state .. fenceText .. '\\n' .. at .. '\\n' .. holder, 'PX', tonumber(ttl) + ${FENCE_RECORD_TTL_MS})
      return 2
    end
    first = redis.call('ZPOPMIN', KEYS[3])
  until not first[1]
end
redis.call('DEL', KEYS[1])
-- no record (deleted by hand, evicted): SETRANGE made a 1-byte one, which must not stay
if redis.pcall('SETRANGE', KEYS[2], 0, 'r') == 1 then redis.call('DEL', KEYS[2]) end
redis.call('PUBLISH', KEYS[1] .. '${RELEASED_SUFFIX}', '')
return 1
`,
);

/**
 * Runs {@link RELEASE_SCRIPT}; resolves whether the token held the lease (and it is now
 * deleted or handed to a waiter). `leaving`: a queue entry to take out first.
 */
export function releaseLease(runner: ScriptRunner, lock: LockKeys, request: ReleaseRequest, what: string, leaving?: string): Promise<boolean> {
  const args = leaving === undefined ? [request.token] : [request.token, leaving];
  return runner.run(RELEASE_SCRIPT, [lock.lease, lock.record, lock.queue], args, what, (reply) => {
    if (reply !== 0 && reply !== 1 && reply !== 2) throw unexpectedReply(what, lock.prefix, reply);
    return reply !== 0;
  });
}
