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
 *   `RENEWED`, `NOT_HELD`), as the TypeScript side switches on it.
 *
 * Keys of a lock `name` (all in one Cluster slot through the `{name}` hash tag):
 * - lease `<prefix>{<name>}`: HASH t (token), owner, host, pid, fence, at
 *   (acquiredAt ms), expiring with PX after the lease length;
 * - fence `<prefix>{<name>}:fence`: HASH f (last fence handed out) and the last
 *   lease's owner, host, pid, fence, at, exp (ms) and rel (`1` released, `0`
 *   not), expiring 24 h after the last write.
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

/** How long the fence record outlives its last write, in ms (24 h). */
export const FENCE_RECORD_TTL_MS = 24 * 60 * 60 * 1000;

function script(name: string, numberOfKeys: number, body: string): RedisScript {
  const source = `${PRELUDE}\n${body.trim()}\n`;
  return Object.freeze({ name, numberOfKeys, source, sha1: createHash('sha1').update(source, 'utf8').digest('hex') });
}

/**
 * Shared by every script: effects replication (needed before writes that follow
 * TIME on Redis < 5; a no-op later), the server clock, number formatting, and
 * `remember()`, which rewrites the whole last-holder record at `fenceKey` from a lease.
 */
const PRELUDE = `
if redis.replicate_commands then pcall(redis.replicate_commands) end
local function fmt(n) return string.format('%.0f', n) end
local clock = redis.call('TIME')
local nowMs = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local nowUs = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local LEASE_FIELDS = { 't', 'owner', 'host', 'pid', 'fence', 'at' }
local function remember(fenceKey, owner, host, pid, fence, at, exp, rel)
  local f = tonumber(redis.call('HGET', fenceKey, 'f')) or 0
  if f < tonumber(fence) then f = tonumber(fence) end
  redis.call('HSET', fenceKey, 'f', fmt(f), 'owner', owner, 'host', host, 'pid', pid,
    'fence', fence, 'at', at, 'exp', exp, 'rel', rel)
  redis.call('PEXPIRE', fenceKey, ${FENCE_RECORD_TTL_MS})
end
`;

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
 */
export const ACQUIRE_SCRIPT = script(
  'acquire',
  2,
  `
local ttl = tonumber(ARGV[2])
local lease = redis.call('HMGET', KEYS[1], unpack(LEASE_FIELDS))
if lease[1] then
  if lease[1] ~= ARGV[1] then
    local pttl = redis.call('PTTL', KEYS[1])
    if pttl < 0 then pttl = 0 end
    return { 'HELD', lease[2], lease[3], lease[4], lease[5], lease[6], fmt(nowMs + pttl) }
  end
  redis.call('PEXPIRE', KEYS[1], ttl)
  local exp = fmt(nowMs + ttl)
  remember(KEYS[2], lease[2], lease[3], lease[4], lease[5], lease[6], exp, '0')
  return { 'ACQUIRED', lease[5], lease[6], exp }
end
local last = redis.call('HMGET', KEYS[2], 'f', 'owner', 'host', 'pid', 'fence', 'at', 'exp', 'rel')
local fence = (tonumber(last[1]) or 0) + 1
if fence < nowUs then fence = nowUs end
fence = fmt(fence)
local at = fmt(nowMs)
local exp = fmt(nowMs + ttl)
redis.call('HSET', KEYS[1], 't', ARGV[1], 'owner', ARGV[3], 'host', ARGV[4], 'pid', ARGV[5], 'fence', fence, 'at', at)
redis.call('PEXPIRE', KEYS[1], ttl)
-- what remember() would write, without reading f again: the new fence is above every one handed out
redis.call('HSET', KEYS[2], 'f', fence, 'owner', ARGV[3], 'host', ARGV[4], 'pid', ARGV[5],
  'fence', fence, 'at', at, 'exp', exp, 'rel', '0')
redis.call('PEXPIRE', KEYS[2], ${FENCE_RECORD_TTL_MS})
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
 */
const RENEW_FUNCTION = `
local function renew(leaseKey, fenceKey, token, ttl)
  local lease = redis.call('HMGET', leaseKey, 't', 'fence')
  if lease[1] ~= token then
    if not lease[1] then return { 'NOT_HELD' } end
    local holder = redis.call('HMGET', leaseKey, 'owner', 'host', 'pid', 'fence', 'at')
    local pttl = redis.call('PTTL', leaseKey)
    if pttl < 0 then pttl = 0 end
    return { 'NOT_HELD', holder[1], holder[2], holder[3], holder[4], holder[5], fmt(nowMs + pttl) }
  end
  redis.call('PEXPIRE', leaseKey, ttl)
  local exp = fmt(nowMs + ttl)
  if redis.call('HGET', fenceKey, 'fence') == lease[2] then
    -- the hot path (a process may renew thousands of leases): touch only what changed
    redis.call('HSET', fenceKey, 'exp', exp)
    redis.call('PEXPIRE', fenceKey, ${FENCE_RECORD_TTL_MS})
  else
    local holder = redis.call('HMGET', leaseKey, 'owner', 'host', 'pid', 'fence', 'at')
    remember(fenceKey, holder[1], holder[2], holder[3], holder[4], holder[5], exp, '0')
  end
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
 *
 * KEYS: [1] lease, [2] fence record.
 * ARGV: [1] token, [2] release channel.
 * Returns 1 when released, 0 when the token does not hold the lease.
 */
export const RELEASE_SCRIPT = script(
  'release',
  2,
  `
local lease = redis.call('HMGET', KEYS[1], 't', 'fence')
if lease[1] ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[2], 'fence') == lease[2] then
  -- the hot path: the record already describes this lease (acquire wrote it); mark it released
  redis.call('HSET', KEYS[2], 'exp', fmt(nowMs), 'rel', '1')
  redis.call('PEXPIRE', KEYS[2], ${FENCE_RECORD_TTL_MS})
else
  local holder = redis.call('HMGET', KEYS[1], 'owner', 'host', 'pid', 'fence', 'at')
  remember(KEYS[2], holder[1], holder[2], holder[3], holder[4], holder[5], fmt(nowMs), '1')
end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], lease[2])
return 1
`,
);

/**
 * Read the current lease without its token.
 *
 * KEYS: [1] lease.
 * ARGV: none.
 * Returns `{}` when free, else `{owner, host, pid, fence, at, exp}`.
 */
export const INSPECT_SCRIPT = script(
  'inspect',
  1,
  `
local lease = redis.call('HMGET', KEYS[1], unpack(LEASE_FIELDS))
if not lease[1] then return {} end
local pttl = redis.call('PTTL', KEYS[1])
if pttl < 0 then pttl = 0 end
return { lease[2], lease[3], lease[4], lease[5], lease[6], fmt(nowMs + pttl) }
`,
);
