/**
 * The Lua scripts of the operator's side of {@link RedisPersister} (`forceRelease()` and
 * the explanation of a renewal refused after one), kept apart from the lease scripts of
 * redisScripts.ts. Same keys and conventions: the lease `<prefix>{<name>}` (a STRING
 * holding the holder's token) and its fence record `<prefix>{<name>}:fence` (a HASH).
 *
 * A forced release adds five fields to the fence record, kept across later leases:
 * `evt` (SHA-1 of the evicted lease's token: the token itself is never copied),
 * `evat` (when, ms, server clock), `evhost` and `evpid` (who forced it) and `evfence`
 * (the evicted lease's fence).
 */
import { createHash } from 'node:crypto';
import type { RedisScript } from '../redisScripts';

/** How long a fence record written by a forced release lives when it had no expiry (24 h, as the lease scripts'). */
const RECORD_TTL_MS = 24 * 60 * 60 * 1000;

function script(name: string, numberOfKeys: number, source: string): RedisScript {
  const body = `${source.trim()}\n`;
  return Object.freeze({ name, numberOfKeys, source: body, sha1: createHash('sha1').update(body, 'utf8').digest('hex') });
}

/**
 * End the lease whoever holds it, keep the fence, note the eviction, tell watchers.
 *
 * KEYS: [1] lease, [2] fence record.
 * ARGV: [1] release channel, [2] operator host, [3] operator pid.
 * Returns `{}` when nothing was held, else the evicted holder
 * `{owner, host, pid, fence, at, exp}` (exp: when it would have expired).
 */
export const FORCE_RELEASE_SCRIPT = script(
  'forceRelease',
  2,
  `
local clock = redis.call('TIME')
local nowMs = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local now = string.format('%.0f', nowMs)
local token = redis.call('GET', KEYS[1])
if not token then return {} end
local pttl = redis.call('PTTL', KEYS[1])
local rec = redis.call('HMGET', KEYS[2], 'owner', 'host', 'pid', 'fence', 'at')
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[2], 'exp', now, 'rel', '1', 'evt', redis.sha1hex(token), 'evat', now,
  'evhost', ARGV[2], 'evpid', ARGV[3], 'evfence', rec[4] or '0')
if redis.call('PTTL', KEYS[2]) < 0 then redis.call('PEXPIRE', KEYS[2], ${RECORD_TTL_MS}) end
redis.call('PUBLISH', ARGV[1], now)
return { rec[1] or '', rec[2] or '', rec[3] or '0', rec[4] or '0', rec[5] or '0',
  string.format('%.0f', nowMs + (pttl > 0 and pttl or 0)) }
`,
);

/**
 * Whether the lease of `token` was ended by a forced release, for a renewal refused with
 * nobody holding the lock.
 *
 * KEYS: [1] lease (unused, names the slot), [2] fence record.
 * ARGV: [1] token.
 * Returns `{}` when not, else `{evat, evhost, evpid, evfence}`.
 */
export const EVICTION_SCRIPT = script(
  'eviction',
  2,
  `
local ev = redis.call('HMGET', KEYS[2], 'evt', 'evat', 'evhost', 'evpid', 'evfence')
if not ev[1] or ev[1] ~= redis.sha1hex(ARGV[1]) then return {} end
return { ev[2] or '0', ev[3] or '', ev[4] or '0', ev[5] or '0' }
`,
);
