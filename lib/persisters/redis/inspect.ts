/**
 * Inspect: read the current lease without its token.
 *
 * KEYS: [1] lease, [2] fence record.
 * ARGV: none.
 * Returns `0` when free, else `{record, expiresAtMs}`.
 * Calls: 3 (PTTL, GET of the record, TIME); 1 when free.
 */
import type { LockInfo } from '../Persister';
import type { LockKeys } from './keys';
import { holderReply, SERVER_TIME } from './lua';
import { holderFromRecord, isHolderReply } from './record';
import type { ScriptRunner } from './runner';
import { defineScript, unexpectedReply } from './script';

/** The inspect script. */
export const INSPECT_SCRIPT = defineScript(
  'inspect',
  `
local pttl = redis.call('PTTL', KEYS[1])
if pttl == -2 then return 0 end -- no lease
local rec = redis.pcall('GET', KEYS[2])
${SERVER_TIME}
return ${holderReply()}
`,
);

/** Runs {@link INSPECT_SCRIPT}: the holder of `lock`, or null when free. */
export function inspectLease(runner: ScriptRunner, lock: LockKeys, what: string): Promise<LockInfo | null> {
  return runner.run(INSPECT_SCRIPT, [lock.lease, lock.record], [], what, (reply) => {
    if (reply === 0) return null;
    if (!isHolderReply(reply)) throw unexpectedReply(what, lock.prefix, reply);
    return holderFromRecord(lock.name, reply[0], reply[1]);
  });
}
