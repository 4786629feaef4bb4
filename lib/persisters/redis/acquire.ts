/**
 * Acquire: take the lease if it is free; idempotent for the holder's own token.
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
import type { AcquireRequest, AcquireResult, LockInfo } from '../Persister';
import { holderFrom } from './holder';
import type { LockKeys } from './keys';
import { FENCE_RECORD_TTL_MS, holderReply, withPrelude } from './lua';
import { defineScript, type ScriptClient, unexpectedReply } from './script';

/** The acquire script. */
export const ACQUIRE_SCRIPT = defineScript(
  'acquire',
  withPrelude(`
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
`),
);

/** Runs {@link ACQUIRE_SCRIPT} for `request` on the keys of `lock`; `what` starts error messages. */
export async function acquireLease(client: ScriptClient, lock: LockKeys, request: AcquireRequest, what: string): Promise<AcquireResult> {
  const { token, ttlMs, owner } = request;
  const reply = await ACQUIRE_SCRIPT.call(client, [lock.lease, lock.record], [token, ttlMs, owner.owner, owner.hostname, owner.pid]);
  if (!Array.isArray(reply)) throw unexpectedReply(what, lock.prefix, reply);
  const fields = reply as string[];
  if (fields[0] === 'HELD') return { acquired: false, holder: holderFrom(lock.name, fields, 1) };
  if (fields[0] !== 'ACQUIRED') throw unexpectedReply(what, lock.prefix, reply);
  const [, fence, at, exp] = fields;
  const lease: LockInfo = {
    name: lock.name,
    owner: owner.owner,
    hostname: owner.hostname,
    pid: owner.pid,
    fencingToken: Number(fence),
    acquiredAt: new Date(Number(at)),
    expiresAt: new Date(Number(exp)),
  };
  return fields.length > 4 ? { acquired: true, lease, expired: holderFrom(lock.name, fields, 4) } : { acquired: true, lease };
}
