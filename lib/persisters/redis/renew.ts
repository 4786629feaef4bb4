/**
 * Renew: extend the lease, only with the holder's token.
 *
 * KEYS: [1] lease, [2] fence record.
 * ARGV: [1] token, [2] ttlMs.
 * Returns the new expiry (ms since the epoch) when renewed; `0` when nobody holds it;
 * `{record, expiresAtMs}` when someone else does (its fence record, and when it expires).
 *
 * Calls: 4 when renewed (TIME, GET, PEXPIRE of the lease and of the record, which keeps
 * the record exactly a day past the lease); 4 when someone else holds it.
 */
import type { RenewRequest, RenewResult } from '../Persister';
import type { LockKeys } from './keys';
import { FENCE_RECORD_TTL_MS, holderReply, SERVER_TIME, WAITER_MARK } from './lua';
import { holderFromRecord, isHolderReply } from './record';
import type { ScriptRunner } from './runner';
import { defineScript, unexpectedReply } from './script';

/**
 * Lua: `renew(leaseKey, recordKey, token, ttl)`, the body of {@link RENEW_SCRIPT}, shared
 * with the renewMany script; returns what RENEW_SCRIPT does. Uses the local `nowMs`.
 */
export const RENEW_FUNCTION = `
local function renew(lease, record, token, ttl)
  local held = redis.call('GET', lease)
  if held == token or held == token .. '${WAITER_MARK}' then
    redis.call('PEXPIRE', lease, ttl)
    redis.call('PEXPIRE', record, ttl + ${FENCE_RECORD_TTL_MS})
    return nowMs + ttl
  end
  if not held then return 0 end
  local rec, pttl = redis.pcall('GET', record), redis.call('PTTL', lease)
  return ${holderReply()}
end
`;

/** The renew script. */
export const RENEW_SCRIPT = defineScript(
  'renew',
  `${SERVER_TIME}${RENEW_FUNCTION}
return renew(KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]))
`,
);

/** Runs {@link RENEW_SCRIPT} for `request` on the keys of `lock`; `what` starts error messages. */
export function renewLease(runner: ScriptRunner, lock: LockKeys, request: RenewRequest, what: string): Promise<RenewResult> {
  return runner.run(RENEW_SCRIPT, [lock.lease, lock.record], [request.token, request.ttlMs], what, (reply) => parseRenewReply(lock, reply, what));
}

/** A renew reply (also one lease's slot of a renewMany reply) as a `RenewResult`. */
export function parseRenewReply(lock: Pick<LockKeys, 'name' | 'prefix'>, reply: unknown, what: string): RenewResult {
  if (typeof reply === 'number' && reply > 0) return { renewed: true, expiresAt: new Date(reply) };
  if (reply === 0) return { renewed: false, holder: null };
  if (isHolderReply(reply)) return { renewed: false, holder: holderFromRecord(lock.name, reply[0], reply[1]) };
  throw unexpectedReply(what, lock.prefix, reply);
}
