/**
 * The Lua scripts of {@link RedisPersister}: each store operation is one
 * script, so it is one atomic step on the server (DESIGN.md §3).
 *
 * Conventions shared by every script:
 * - all times come from the server's `TIME`, never from the client;
 * - Lua numbers are doubles, so big numbers (ms and µs since the epoch) are
 *   formatted with `%.0f` and returned as strings: `tostring` would print
 *   1.7e15 as `1.7e+15`;
 * - replies are arrays of strings headed by a status word (`ACQUIRED`, `HELD`,
 *   `RENEWED`, `NOT_HELD`), as the TypeScript side switches on it;
 * - each script makes as few calls as it can: the server time of a script is
 *   mostly its `redis.call`s.
 *
 * Keys of a lock `name` (all in one Cluster slot through the `{name}` hash tag):
 * - lease `<prefix>{<name>}`: STRING, the holder's token, expiring with PX after
 *   the lease length; taking it is `SET … NX PX`;
 * - fence `<prefix>{<name>}:fence`: HASH f (last fence handed out) and the last
 *   lease's owner, host, pid, fence, at (acquiredAt ms), exp (ms) and rel (`1`
 *   released, `0` not). The newest lease always rewrote it, so while the lease
 *   key exists it describes the current holder: conflicts, inspect and refused
 *   renewals read the holder from it. It expires a day after the lease it
 *   describes would (acquire and renew set it), so it always outlives the lease.
 */
import { createHash } from 'node:crypto';

/** A Lua script with its SHA1, so it can be run with EVALSHA. */
export interface RedisScript {
  /** A short name for error messages. */
  readonly name: string;
  /** How many of the arguments are keys. */
  readonly numberOfKeys: number;
  /** The Lua source. */
  readonly source: string;
  /** SHA1 of `source`, hex: what EVALSHA takes. */
  readonly sha1: string;
}

/** How long the fence record outlives the lease it describes, in ms (24 h). */
export const FENCE_RECORD_TTL_MS = 24 * 60 * 60 * 1000;

function script(name: string, numberOfKeys: number, body: string): RedisScript {
  const source = `${PRELUDE}\n${body.trim()}\n`;
  return Object.freeze({ name, numberOfKeys, source, sha1: createHash('sha1').update(source, 'utf8').digest('hex') });
}

/**
 * Shared by every script: the server clock and number formatting. Nothing else,
 * as it runs on every call. (No `redis.replicate_commands()`: Redis ≥ 5 replicates
 * script effects by default, and we require Redis ≥ 6.2.)
 */
const PRELUDE = `
local clock = redis.call('TIME')
local nowMs = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local function fmt(n) return string.format('%.0f', n) end
`;

/**
 * A Lua table `{status, owner, host, pid, fence, at, exp}` (no status when `status` is
 * null): the holder as the fence record describes it, from the locals `rec` (an HMGET
 * of owner, host, pid, fence, at) and `pttl` (the lease's PTTL). Inlined where used
 * rather than a Lua function, which every call of the script would build anew. A
 * record lost while the lease lives (deleted by hand, evicted) yields empty fields
 * rather than holes, which would cut the Lua array short.
 */
function holderReply(status: string | null): string {
  const head = status ? `'${status}', ` : '';
  return `{ ${head}rec[1] or '', rec[2] or '', rec[3] or '0', rec[4] or '0', rec[5] or '0', fmt(nowMs + (pttl > 0 and pttl or 0)) }`;
}

/**
 * Take the lease if it is free; idempotent for the holder's own token.
 *
 * KEYS: [1] lease, [2] fence record.
 * ARGV: [1] token, [2] ttlMs, [3] owner, [4] hostname, [5] pid.
 * Returns:
 * - `{'ACQUIRED', fence, at, exp}`: taken (or already held with this token: same fence);
 * - `{'ACQUIRED', fence, at, exp, owner, host, pid, fence, at, exp}`: taken over a lease
 *   that expired without release; the last six describe that previous lease;
 * - `{'HELD', owner, host, pid, fence, at, exp}`: someone else holds it.
 *
 * Calls besides TIME: 4 when free (SET NX PX, HMGET, HSET, PEXPIRE of the record);
 * 4 on conflict (SET, GET, HMGET, PTTL); 6 when re-sent with the holder's token.
 */
export const ACQUIRE_SCRIPT = script(
  'acquire',
  2,
  `
local ttl = tonumber(ARGV[2])
local exp = fmt(nowMs + ttl)
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  -- held: by someone else, or by this token (a re-sent acquire)
  local token = redis.call('GET', KEYS[1])
  local rec = redis.call('HMGET', KEYS[2], 'owner', 'host', 'pid', 'fence', 'at')
  if token ~= ARGV[1] then
    local pttl = redis.call('PTTL', KEYS[1])
    return ${holderReply('HELD')}
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  if rec[4] then
    redis.call('HSET', KEYS[2], 'exp', exp)
    redis.call('PEXPIRE', KEYS[2], ttl + ${FENCE_RECORD_TTL_MS})
    return { 'ACQUIRED', rec[4], rec[5] or fmt(nowMs), exp }
  end
  -- our lease lost its record (deleted by hand, evicted): describe it anew, with a new fence
end
local last = redis.call('HMGET', KEYS[2], 'f', 'owner', 'host', 'pid', 'fence', 'at', 'exp', 'rel')
local fence = (tonumber(last[1]) or 0) + 1
local nowUs = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
if fence < nowUs then fence = nowUs end
fence = fmt(fence)
local at = fmt(nowMs)
redis.call('HSET', KEYS[2], 'f', fence, 'owner', ARGV[3], 'host', ARGV[4], 'pid', ARGV[5],
  'fence', fence, 'at', at, 'exp', exp, 'rel', '0')
redis.call('PEXPIRE', KEYS[2], ttl + ${FENCE_RECORD_TTL_MS})
if last[8] == '0' and last[2] then
  return { 'ACQUIRED', fence, at, exp, last[2], last[3], last[4], last[5], last[6], last[7] }
end
return { 'ACQUIRED', fence, at, exp }
`,
);

/**
 * `renew(leaseKey, fenceKey, token, ttl)`: the body of {@link RENEW_SCRIPT}, shared with
 * {@link RENEW_MANY_SCRIPT}. Returns `{'RENEWED', exp}`, `{'NOT_HELD'}` (free) or
 * `{'NOT_HELD', owner, host, pid, fence, at, exp}` (someone else holds it).
 * Calls besides TIME: 4 when renewed (GET, PEXPIRE, HSET, PEXPIRE of the record).
 */
const RENEW_FUNCTION = `
local function renew(leaseKey, fenceKey, token, ttl)
  local held = redis.call('GET', leaseKey)
  if held ~= token then
    if not held then return { 'NOT_HELD' } end
    local rec = redis.call('HMGET', fenceKey, 'owner', 'host', 'pid', 'fence', 'at')
    local pttl = redis.call('PTTL', leaseKey)
    return ${holderReply('NOT_HELD')}
  end
  redis.call('PEXPIRE', leaseKey, ttl)
  local exp = fmt(nowMs + ttl)
  redis.call('HSET', fenceKey, 'exp', exp)
  -- keeps the record alive past the lease, also for leases held longer than its day
  redis.call('PEXPIRE', fenceKey, ttl + ${FENCE_RECORD_TTL_MS})
  return { 'RENEWED', exp }
end
`;

/**
 * Extend the lease, only with the holder's token.
 *
 * KEYS: [1] lease, [2] fence record.
 * ARGV: [1] token, [2] ttlMs.
 * Returns `{'RENEWED', exp}`, `{'NOT_HELD'}` (free) or
 * `{'NOT_HELD', owner, host, pid, fence, at, exp}` (someone else holds it).
 */
export const RENEW_SCRIPT = script(
  'renew',
  2,
  `
${RENEW_FUNCTION}
return renew(KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]))
`,
);

/** Most leases one {@link RENEW_MANY_SCRIPT} call renews, so that no call keeps Redis busy for long. */
export const RENEW_MANY_CHUNK = 100;

/**
 * Extend many leases of the same length in one call (standalone Redis only: the
 * keys span many Cluster slots). Each lease is renewed exactly as by
 * {@link RENEW_SCRIPT}, on its own: an error on one lease fails that lease only.
 * The common answer is one integer, so a batch of thousands costs the client
 * little to read.
 *
 * KEYS: lease and fence record of each lease, in pairs: [1] lease 1, [2] fence 1, [3] lease 2, …
 * ARGV: [1] ttlMs (of every lease), then the token of each lease, in the same order.
 * Returns one reply per lease, in order: its new expiry (ms since the epoch, an
 * integer) when renewed; else what {@link RENEW_SCRIPT} returns (`{'NOT_HELD', …}`);
 * or `{'ERROR', message}` when renewing that lease raised an error.
 */
export const RENEW_MANY_SCRIPT = script(
  'renewMany',
  0, // variable: twice the number of leases
  `
${RENEW_FUNCTION}
local ttl = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS / 2 do
  local ok, reply = pcall(renew, KEYS[2 * i - 1], KEYS[2 * i], ARGV[i + 1], ttl)
  if not ok then
    out[i] = { 'ERROR', type(reply) == 'table' and reply.err or tostring(reply) }
  elseif reply[1] == 'RENEWED' then
    out[i] = nowMs + ttl
  else
    out[i] = reply
  end
end
return out
`,
);

/**
 * Delete the lease, only with the holder's token, mark it released and tell watchers.
 * The fence record describes this lease (acquire wrote it), so marking it is enough;
 * its expiry is left as acquire or renew set it, a day past the lease's.
 *
 * KEYS: [1] lease, [2] fence record.
 * ARGV: [1] token, [2] release channel (the message is the release time, ms; watchers
 *   use only the channel).
 * Returns 1 when released, 0 when the token does not hold the lease.
 * Calls besides TIME: 4 (GET, DEL, HSET, PUBLISH); 1 when refused.
 */
export const RELEASE_SCRIPT = script(
  'release',
  2,
  `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
local now = fmt(nowMs)
redis.call('HSET', KEYS[2], 'exp', now, 'rel', '1')
redis.call('PUBLISH', ARGV[2], now)
return 1
`,
);

/**
 * Read the current lease without its token.
 *
 * KEYS: [1] lease, [2] fence record.
 * ARGV: none.
 * Returns `{}` when free, else `{owner, host, pid, fence, at, exp}`.
 */
export const INSPECT_SCRIPT = script(
  'inspect',
  2,
  `
local pttl = redis.call('PTTL', KEYS[1])
if pttl == -2 then return {} end -- no lease
local rec = redis.call('HMGET', KEYS[2], 'owner', 'host', 'pid', 'fence', 'at')
return ${holderReply(null)}
`,
);
