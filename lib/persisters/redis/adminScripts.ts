/**
 * The Lua scripts of the operator's side of `RedisPersister` (`forceRelease()` and the
 * explanation of a renewal refused after one), beside the lease scripts of this folder and
 * on the same data model (README: "Redis data model").
 *
 * A forced release leaves an eviction note at `<prefix>{<name>}:evicted` (a STRING, kept
 * 24 h, untouched by later leases): `<sha1 of the evicted token>\n<at ms>\n<evicted fence>\n<operator pid>\n<operator host>`.
 * The token itself is never copied; its SHA-1 lets the evicted holder's renewal be told.
 */
import { FENCE_RECORD_TTL_MS, holderReply, SERVER_TIME, WAITER_MARK } from './lua';
import { defineScript } from './script';

/**
 * End the lease whoever holds it, keep the fence, note the eviction, tell watchers.
 *
 * KEYS: [1] lease, [2] fence record, [3] eviction note.
 * ARGV: [1] operator host, [2] operator pid.
 * Returns `0` when nothing was held, else the evicted holder `{record, expiresAtMs}`
 * (expiresAtMs: when it would have expired).
 * Always publishes the release (an operator's act is rare; waiters should hear it at once).
 */
export const FORCE_RELEASE_SCRIPT = defineScript(
  'forceRelease',
  `${SERVER_TIME}
local held = redis.call('GET', KEYS[1])
if not held then return 0 end
local pttl = redis.call('PTTL', KEYS[1])
local rec = redis.pcall('GET', KEYS[2])
redis.call('DEL', KEYS[1])
if redis.pcall('SETRANGE', KEYS[2], 0, 'r') == 1 then redis.call('DEL', KEYS[2]) end
if string.byte(held, -1) == 42 then held = string.sub(held, 1, -2) end -- the waiter mark '${WAITER_MARK}' is not the token's
local fence = type(rec) == 'string' and string.match(rec, '^..\\n(%d+)') or '0'
redis.call('SET', KEYS[3], redis.sha1hex(held) .. string.format('\\n%.0f\\n', nowMs) .. fence .. '\\n' .. ARGV[2] .. '\\n' .. ARGV[1],
  'PX', ${FENCE_RECORD_TTL_MS})
redis.call('PUBLISH', KEYS[1] .. ':released', '')
return ${holderReply()}
`,
);

/**
 * Whether the lease of `token` was ended by a forced release, for a renewal refused with
 * nobody holding the lock.
 *
 * KEYS: [1] eviction note.
 * ARGV: [1] token.
 * Returns `0` when not, else `at\nfence\npid\nhost` (the note without the token's hash).
 */
export const EVICTION_SCRIPT = defineScript(
  'eviction',
  `
local note = redis.call('GET', KEYS[1])
if not note then return 0 end
local sha, rest = string.match(note, '^(%x+)\\n(.*)$')
if sha ~= redis.sha1hex(ARGV[1]) then return 0 end
return rest
`,
);
