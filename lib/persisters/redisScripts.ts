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
 * `remember()`, which rewrites the last-holder record of KEYS[2] from a lease.
 */
const PRELUDE = `
if redis.replicate_commands then pcall(redis.replicate_commands) end
local function fmt(n) return string.format('%.0f', n) end
local clock = redis.call('TIME')
local nowMs = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local nowUs = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local LEASE_FIELDS = { 't', 'owner', 'host', 'pid', 'fence', 'at' }
local function remember(owner, host, pid, fence, at, exp, rel)
  local f = tonumber(redis.call('HGET', KEYS[2], 'f')) or 0
  if f < tonumber(fence) then f = tonumber(fence) end
  redis.call('HSET', KEYS[2], 'f', fmt(f), 'owner', owner, 'host', host, 'pid', pid,
    'fence', fence, 'at', at, 'exp', exp, 'rel', rel)
  redis.call('PEXPIRE', KEYS[2], ${FENCE_RECORD_TTL_MS})
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
  remember(lease[2], lease[3], lease[4], lease[5], lease[6], exp, '0')
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
remember(ARGV[3], ARGV[4], ARGV[5], fence, at, exp, '0')
if last[8] == '0' and last[2] then
  return { 'ACQUIRED', fence, at, exp, last[2], last[3], last[4], last[5], last[6], last[7] }
end
return { 'ACQUIRED', fence, at, exp }
`,
);

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
local ttl = tonumber(ARGV[2])
local lease = redis.call('HMGET', KEYS[1], 't', 'fence')
if lease[1] ~= ARGV[1] then
  if not lease[1] then return { 'NOT_HELD' } end
  local holder = redis.call('HMGET', KEYS[1], 'owner', 'host', 'pid', 'fence', 'at')
  local pttl = redis.call('PTTL', KEYS[1])
  if pttl < 0 then pttl = 0 end
  return { 'NOT_HELD', holder[1], holder[2], holder[3], holder[4], holder[5], fmt(nowMs + pttl) }
end
redis.call('PEXPIRE', KEYS[1], ttl)
local exp = fmt(nowMs + ttl)
if redis.call('HGET', KEYS[2], 'fence') == lease[2] then
  -- the hot path (a process may renew thousands of leases): touch only what changed
  redis.call('HSET', KEYS[2], 'exp', exp)
  redis.call('PEXPIRE', KEYS[2], ${FENCE_RECORD_TTL_MS})
else
  local holder = redis.call('HMGET', KEYS[1], 'owner', 'host', 'pid', 'fence', 'at')
  remember(holder[1], holder[2], holder[3], holder[4], holder[5], exp, '0')
end
return { 'RENEWED', exp }
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
local lease = redis.call('HMGET', KEYS[1], unpack(LEASE_FIELDS))
if lease[1] ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
remember(lease[2], lease[3], lease[4], lease[5], lease[6], fmt(nowMs), '1')
redis.call('PUBLISH', ARGV[2], lease[5])
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
