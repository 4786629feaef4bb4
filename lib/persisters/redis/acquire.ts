/**
 * Acquire: take the lease if it is free; idempotent for the holder's own token.
 *
 * KEYS: [1] lease, [2] fence record, [3] waiting queue (only with ARGV[4]).
 * ARGV: [1] token, [2] ttlMs, [3] the holder as the record stores it (`pid\nhostname\nowner`),
 * [4] `1` when the caller waits on its turn channel: a conflict queues it (`token\nclaimMs\nholder`,
 * scored by arrival: the fence it would have had), a lease taken takes it out of the queue;
 * [5] with [4]: how long a lease handed to it lasts before its first renewal (the claim).
 * Returns:
 * - `{1, fence, acquiredAtMs}`: taken; it expires at acquiredAt + ttlMs;
 * - `{1, fence, acquiredAtMs, expiresAtMs}`: already held with this token (a re-sent
 *   acquire): same fence and acquiredAt, extended by ttlMs from now;
 * - `{1, fence, acquiredAtMs, record, expiresAtMs}`: taken over a lease that expired
 *   without release; `record` (the previous fence record) and `expiresAtMs` describe it;
 * - `{0, record, expiresAtMs, nowMs}`: someone else holds it (the current fence record, when
 *   that lease expires, and the server's time: a waiter in line bounds the start of a lease
 *   handed to it later by it). The caller may wait for its release: the lease is marked
 *   (its value ends with `*`) so that its release is published.
 *
 * Calls: free 4 (TIME, GET record, SET NX PX, SET record PX), one more (PTTL of the
 * record) on takeover of an expired lease; conflict 5 (TIME, GET record, SET, GET,
 * PTTL), one more (APPEND) the first time a lease is marked, two more (ZADD, PEXPIRE) when
 * queued; taken while queued one more (ZREM); re-sent by the holder 5.
 */
import type { AcquireRequest, AcquireResult, LockInfo } from '../Persister';
import type { LockKeys } from './keys';
import { FENCE_RECORD_TTL_MS, holderReply, NEXT_FENCE, SERVER_TIME, WAITER_MARK } from './lua';
import { holderFromRecord } from './record';
import { defineScript, unexpectedReply } from './script';

const DAY = FENCE_RECORD_TTL_MS;

/** The acquire script. */
export const ACQUIRE_SCRIPT = defineScript(
  'acquire',
  `${SERVER_TIME}
local token, ttl = ARGV[1], tonumber(ARGV[2])
local old = redis.pcall('GET', KEYS[2])
if type(old) ~= 'string' then old = nil end
local watched = old and string.byte(old, 2) == 119 -- 'w'
${NEXT_FENCE}
local queued = ARGV[4] == '1'
if not redis.call('SET', KEYS[1], (watched or ahead) and token .. '${WAITER_MARK}' or token, 'NX', 'PX', ttl) then
  local held = redis.call('GET', KEYS[1])
  if held ~= token and held ~= token .. '${WAITER_MARK}' then
    -- someone else holds it: name the holder, and mark the lease, as the caller may wait for its release
    if held and string.byte(held, -1) ~= 42 then redis.call('APPEND', KEYS[1], '${WAITER_MARK}') end
    if queued then
      -- a waiter listening on its turn channel: queue it (by arrival; a place kept is not moved)
      redis.call('ZADD', KEYS[3], 'NX', fenceText, token .. '\\n' .. ARGV[5] .. '\\n' .. ARGV[3])
      redis.call('PEXPIRE', KEYS[3], ${DAY})
    end
    local rec, pttl = old, redis.call('PTTL', KEYS[1])
    return ${holderReply('0', 'nowMs')}
  end
  -- re-sent by the holder: extend it, same fence
  redis.call('PEXPIRE', KEYS[1], ttl)
  local same, at = string.match(old or '', '^..\\n(%d+)\\n(%d+)\\n')
  if same then
    redis.call('PEXPIRE', KEYS[2], ttl + ${DAY})
    return { 1, tonumber(same), tonumber(at), nowMs + ttl }
  end
  -- our lease lost its record (deleted by hand, evicted): describe it anew, with a new fence
  old, watched = nil, false
  fenceText = clock[1] .. micros
  fence = tonumber(fenceText)
end
local expired
if old and string.byte(old, 1) == 104 then -- 'h': the previous lease was never released, and its key is gone
  local pttl = redis.call('PTTL', KEYS[2]) -- the record expires a day after the lease it describes did
  expired = pttl > 0 and nowMs + pttl - ${DAY} or nowMs
end
if queued then redis.call('ZREM', KEYS[3], token .. '\\n' .. ARGV[5] .. '\\n' .. ARGV[3]) end
redis.call('SET', KEYS[2], (watched and 'hw\\n' or 'h-\\n') .. fenceText .. '\\n' .. clock[1] .. string.sub(micros, 1, 3) .. '\\n' .. ARGV[3], 'PX', ttl + ${DAY})
if expired then return { 1, fence, nowMs, old, expired } end
return { 1, fence, nowMs }
`,
);

/** The server's time (ms) in a conflict reply of the acquire script (see {@link parseAcquireReply}). */
export function conflictServerMs(reply: unknown): number {
  return Array.isArray(reply) ? Number(reply[3]) : Number.NaN;
}

/** An acquire reply as an `AcquireResult`; throws a `PersisterError` for anything else. */
export function parseAcquireReply(lock: LockKeys, request: AcquireRequest, reply: unknown, what: string): AcquireResult {
  if (!Array.isArray(reply)) throw unexpectedReply(what, lock.prefix, reply);
  if (reply[0] === 0 && reply.length === 4) return { acquired: false, holder: holderFromRecord(lock.name, String(reply[1]), Number(reply[2])) };
  if (reply[0] !== 1 || typeof reply[1] !== 'number' || typeof reply[2] !== 'number') throw unexpectedReply(what, lock.prefix, reply);
  const { owner } = request;
  const lease: LockInfo = {
    name: lock.name,
    owner: owner.owner,
    hostname: owner.hostname,
    pid: owner.pid,
    fencingToken: reply[1],
    acquiredAt: new Date(reply[2]),
    expiresAt: new Date(reply.length === 4 ? Number(reply[3]) : reply[2] + request.ttlMs),
  };
  if (reply.length === 5) return { acquired: true, lease, expired: holderFromRecord(lock.name, String(reply[3]), Number(reply[4])) };
  return { acquired: true, lease };
}
