/**
 * Mark for watchers: after `watch()` has subscribed to a name's release channel, this
 * makes sure its releases are published: it marks the current lease (its value ends
 * with `*`) and the fence record (`watched`), which every later acquire of the name
 * carries into its lease. A record that does not exist yet is created, describing no
 * lease (`r`, fence 0), for a day.
 *
 * KEYS: [1] lease, [2] fence record.
 * ARGV: none.
 * Returns 1.
 * Calls: 2 or 3 (GET of the lease, APPEND unless marked already, SET NX of the record),
 * one more (SETRANGE) when the record existed.
 */
import type { LockKeys } from './keys';
import { FENCE_RECORD_TTL_MS, WAITER_MARK } from './lua';
import { defineScript, type ScriptClient, unexpectedReply } from './script';

/** The mark script. */
export const MARK_WATCHED_SCRIPT = defineScript(
  'markWatched',
  `
local held = redis.call('GET', KEYS[1])
if held and string.byte(held, -1) ~= 42 then redis.call('APPEND', KEYS[1], '${WAITER_MARK}') end
if not redis.call('SET', KEYS[2], 'rw\\n0\\n0\\n0\\n\\n', 'NX', 'PX', ${FENCE_RECORD_TTL_MS}) then
  redis.pcall('SETRANGE', KEYS[2], 1, 'w')
end
return 1
`,
);

/** Runs {@link MARK_WATCHED_SCRIPT} on the keys of `lock`; `what` starts error messages. */
export async function markWatched(client: ScriptClient, lock: LockKeys, what: string): Promise<void> {
  const reply = await MARK_WATCHED_SCRIPT.call(client, [lock.lease, lock.record], []);
  if (reply !== 1) throw unexpectedReply(what, lock.prefix, reply);
}
