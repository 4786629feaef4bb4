/**
 * Renew: extend the lease, only with the holder's token.
 *
 * KEYS: [1] lease, [2] fence record.
 * ARGV: [1] token, [2] ttlMs.
 * Returns `{'RENEWED', exp}`, `{'NOT_HELD'}` (free) or
 * `{'NOT_HELD', owner, host, pid, fence, at, exp}` (someone else holds it).
 */
import type { RenewRequest, RenewResult } from '../Persister';
import { holderFrom } from './holder';
import type { LockKeys } from './keys';
import { FENCE_RECORD_TTL_MS, holderReply, withPrelude } from './lua';
import { defineScript, type ScriptClient, unexpectedReply } from './script';

/**
 * `renew(leaseKey, fenceKey, token, ttl)`: the body of {@link RENEW_SCRIPT}, shared with
 * the renewMany script. Returns what RENEW_SCRIPT does.
 * Calls besides TIME: 4 when renewed (GET, PEXPIRE, HSET, PEXPIRE of the record).
 */
export const RENEW_FUNCTION = `
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

/** The renew script. */
export const RENEW_SCRIPT = defineScript(
  'renew',
  withPrelude(`
${RENEW_FUNCTION}
return renew(KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]))
`),
);

/** Runs {@link RENEW_SCRIPT} for `request` on the keys of `lock`; `what` starts error messages. */
export async function renewLease(client: ScriptClient, lock: LockKeys, request: RenewRequest, what: string): Promise<RenewResult> {
  const reply = await RENEW_SCRIPT.call(client, [lock.lease, lock.record], [request.token, request.ttlMs]);
  return parseRenewReply(lock, reply, what);
}

/** A renew reply (also one lease's slot of a renewMany reply that was not renewed) as a `RenewResult`. */
export function parseRenewReply(lock: Pick<LockKeys, 'name' | 'prefix'>, reply: unknown, what: string): RenewResult {
  if (Array.isArray(reply) && reply[0] === 'RENEWED') return { renewed: true, expiresAt: new Date(Number(reply[1])) };
  if (Array.isArray(reply) && reply[0] === 'NOT_HELD') {
    return { renewed: false, holder: reply.length > 1 ? holderFrom(lock.name, reply as string[], 1) : null };
  }
  throw unexpectedReply(what, lock.prefix, reply);
}
