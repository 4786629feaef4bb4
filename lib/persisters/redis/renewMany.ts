/**
 * RenewMany: extend many leases of the same length in one call (standalone Redis
 * only: the keys span many Cluster slots). Each lease is renewed exactly as by the
 * renew script, on its own: an error on one lease fails that lease only. The common
 * answer is one integer, so a batch of thousands costs the client little to read.
 *
 * KEYS: lease and fence record of each lease, in pairs: [1] lease 1, [2] record 1, [3] lease 2, …
 * ARGV: [1] ttlMs (of every lease), then the token of each lease, in the same order.
 * Returns one reply per lease, in order: what the renew script returns for it (its new
 * expiry, `0` or `{record, expiresAtMs}`), or `{-1, message}` when renewing it raised an error.
 *
 * Calls: one TIME per call, then 3 per renewed lease (GET, PEXPIRE, PEXPIRE).
 */
import { toPersisterError } from '../../errors';
import type { RenewRequest, RenewResult } from '../Persister';
import { leaseKey, recordKey } from './keys';
import { SERVER_TIME } from './lua';
import { parseRenewReply, RENEW_FUNCTION, RENEW_SCRIPT } from './renew';
import { type Arg, defineScript, isNoScript, type ScriptClient } from './script';

/** Most leases one {@link RENEW_MANY_SCRIPT} call renews, so that no call keeps Redis busy for long. */
export const RENEW_MANY_CHUNK = 100;

/** The renewMany script. */
export const RENEW_MANY_SCRIPT = defineScript(
  'renewMany',
  `${SERVER_TIME}${RENEW_FUNCTION}
local ttl = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS / 2 do
  local ok, reply = pcall(renew, KEYS[2 * i - 1], KEYS[2 * i], ARGV[i + 1], ttl)
  out[i] = ok and reply or { -1, type(reply) == 'table' and reply.err or tostring(reply) }
end
return out
`,
);

/**
 * Renews `requests` (leases under `prefix`) as ONE pipeline of RENEW_MANY calls of up
 * to `RENEW_MANY_CHUNK` leases of one length each: one command (one ioredis Command
 * and promise) per hundred leases rather than per lease, and one integer back per
 * renewed lease, which is what keeps thousands of held leases cheap for the client.
 * Chunks that met NOSCRIPT are retried once after SCRIPT LOAD. Fills `results` (one
 * slot per request: its result or its own error); rejects when the whole pipeline
 * failed, leaving unfilled the slots it did not reach.
 */
export async function renewLeases(
  client: ScriptClient,
  prefix: string,
  requests: readonly RenewRequest[],
  results: Array<RenewResult | Error | undefined>,
): Promise<void> {
  // Plain index loops and one argument array per call, handed to ioredis as it is (it
  // flattens arrays): thousands of renewals a second allocate as little as they can.
  const byTtl = new Map<number, number[]>();
  for (let i = 0; i < requests.length; i++) {
    const { ttlMs } = requests[i];
    const group = byTtl.get(ttlMs);
    if (group) group.push(i);
    else byTtl.set(ttlMs, [i]);
  }
  let pending: number[][] = []; // chunks of request indexes, one ttl each
  for (const group of byTtl.values()) {
    for (let start = 0; start < group.length; start += RENEW_MANY_CHUNK) pending.push(group.slice(start, start + RENEW_MANY_CHUNK));
  }
  for (let attempt = 0; pending.length > 0; attempt++) {
    if (attempt > 0) {
      // The script cache was emptied (restart, SCRIPT FLUSH): reload the single-lease renewal too,
      // which the lease keeper sends for a lone lease, so it does not meet NOSCRIPT next.
      await Promise.all([client.script('LOAD', RENEW_MANY_SCRIPT.source), client.script('LOAD', RENEW_SCRIPT.source)]);
    }
    const pipeline = client.pipeline();
    for (let j = 0; j < pending.length; j++) {
      const chunk = pending[j];
      const n = chunk.length;
      // KEYS: lease and record of each; ARGV: the ttl, then each token
      const keysAndArgs: Arg[] = new Array(3 * n + 1);
      keysAndArgs[2 * n] = requests[chunk[0]].ttlMs;
      for (let k = 0; k < n; k++) {
        const request = requests[chunk[k]];
        const lease = leaseKey(prefix, request.name);
        keysAndArgs[2 * k] = lease;
        keysAndArgs[2 * k + 1] = recordKey(lease);
        keysAndArgs[2 * n + 1 + k] = request.token;
      }
      pipeline.evalsha(RENEW_MANY_SCRIPT.sha1, 2 * n, keysAndArgs);
    }
    const replies = await pipeline.exec();
    if (!replies || replies.length !== pending.length) throw new Error('the pipeline returned no replies');
    const missing: number[][] = [];
    replies.forEach(([error, reply], j) => {
      const chunk = pending[j];
      if (error && isNoScript(error) && attempt === 0) {
        missing.push(chunk);
        return;
      }
      // Every lease of a chunk renewed at once gets the same expiry (one TIME, one ttl): one
      // result object for all of them, not one (and a Date) per lease.
      let shared: RenewResult | undefined;
      let sharedMs = 0;
      chunk.forEach((i, k) => {
        const { name } = requests[i];
        if (error) {
          results[i] = toPersisterError(`Renewing lock "${name}"`, error);
          return;
        }
        const one = Array.isArray(reply) ? (reply[k] as unknown) : reply;
        if (shared && one === sharedMs) results[i] = shared;
        else {
          const result = renewResult(prefix, name, one);
          if (!(result instanceof Error) && result.renewed) {
            shared = Object.freeze(result);
            sharedMs = one as number;
          }
          results[i] = result;
        }
      });
    });
    pending = missing;
  }
}

/** One lease's slot of a RENEW_MANY reply; the message is only built when something went wrong. */
function renewResult(prefix: string, name: string, reply: unknown): RenewResult | Error {
  if (typeof reply === 'number' && reply > 0) return { renewed: true, expiresAt: new Date(reply) };
  const what = `Renewing lock "${name}"`;
  if (Array.isArray(reply) && reply[0] === -1) return toPersisterError(what, new Error(String(reply[1])));
  try {
    return parseRenewReply({ name, prefix }, reply, what);
  } catch (parseError) {
    return toPersisterError(what, parseError);
  }
}
