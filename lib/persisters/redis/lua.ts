/**
 * Lua shared by the scripts of the `RedisPersister` (each script is one atomic
 * step on the server, DESIGN.md §3). Conventions:
 * - all times come from the server's `TIME`, never from the client;
 * - Lua numbers are doubles, so big numbers (ms and µs since the epoch) are
 *   formatted with `%.0f` and returned as strings: `tostring` would print
 *   1.7e15 as `1.7e+15`;
 * - replies are arrays of strings headed by a status word (`ACQUIRED`, `HELD`,
 *   `RENEWED`, `NOT_HELD`), as the TypeScript side switches on it;
 * - each script makes as few calls as it can: the server time of a script is
 *   mostly its `redis.call`s.
 */

/** How long the fence record outlives the lease it describes, in ms (24 h). */
export const FENCE_RECORD_TTL_MS = 24 * 60 * 60 * 1000;

/**
 * Shared by every script: the server clock and number formatting. Nothing else,
 * as it runs on every call. (No `redis.replicate_commands()`: Redis ≥ 5 replicates
 * script effects by default, and we require Redis ≥ 6.2.)
 */
export const PRELUDE = `
local clock = redis.call('TIME')
local nowMs = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local function fmt(n) return string.format('%.0f', n) end
`;

/** `PRELUDE` then `body`: the source of one script. */
export function withPrelude(body: string): string {
  return `${PRELUDE}\n${body.trim()}\n`;
}

/**
 * A Lua table `{status, owner, host, pid, fence, at, exp}` (no status when `status` is
 * null): the holder as the fence record describes it, from the locals `rec` (an HMGET
 * of owner, host, pid, fence, at) and `pttl` (the lease's PTTL). Inlined where used
 * rather than a Lua function, which every call of the script would build anew. A
 * record lost while the lease lives (deleted by hand, evicted) yields empty fields
 * rather than holes, which would cut the Lua array short.
 */
export function holderReply(status: string | null): string {
  const head = status ? `'${status}', ` : '';
  return `{ ${head}rec[1] or '', rec[2] or '', rec[3] or '0', rec[4] or '0', rec[5] or '0', fmt(nowMs + (pttl > 0 and pttl or 0)) }`;
}
