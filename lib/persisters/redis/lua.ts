/**
 * Lua shared by the scripts of the `RedisPersister`. Each operation is one script,
 * so it is one atomic step on the server (DESIGN.md §3). Conventions:
 * - all times come from the server's `TIME`, and only scripts that need a time ask;
 * - each script makes as few Redis calls as it can (the server time of a script is
 *   mostly its `redis.call`s and their conversions), and does little else;
 * - numbers go back as integer replies (Lua doubles hold ms and µs since the epoch
 *   exactly); the acquire writes the fence into the record from `TIME`'s text (seconds and
 *   six digits of µs), or with `%.0f` when it is above the clock, as `tostring` would
 *   print 1.7e15 as `1.7e+15`;
 * - the fence record is read with `redis.pcall`, so that a key of another type there
 *   (a record of an older version: a hash) reads as no record rather than failing.
 */

/** How long the fence record outlives the lease it describes, in ms (24 h). */
export const FENCE_RECORD_TTL_MS = 24 * 60 * 60 * 1000;

/** Lua: the server clock as the locals `clock` (`TIME`'s reply) and `nowMs`. */
export const SERVER_TIME = `
local clock = redis.call('TIME')
local nowMs = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
`;

/**
 * Lua: the fence of a new lease after the record `old` (nil: none), from `clock` — the
 * server clock in µs, or one above the record's fence when the clock is behind it (then
 * `ahead` is true: that lease's release must keep the record). Sets the locals `micros`
 * (`TIME`'s µs, six digits), `fence`, `fenceText` (its decimal text: no number
 * formatting on the common path) and `ahead`.
 */
export const NEXT_FENCE = `
local micros = string.rep('0', 6 - #clock[2]) .. clock[2]
local fenceText = clock[1] .. micros
local fence = tonumber(fenceText)
local last = old and tonumber(string.match(old, '^..\\n(%d+)'))
local ahead = last and fence <= last
if ahead then
  fence = last + 1
  fenceText = string.format('%.0f', fence)
end
`;

/** Lua: the marker a lease's value ends with once someone may wait for its release (`*`, byte 42). */
export const WAITER_MARK = '*';

/**
 * Lua expression: the reply naming a holder, `{record, exp}` (`{head, record, exp}` with a
 * head), from the locals `rec` (the record, as `redis.pcall('GET')` returned it) and
 * `pttl` (the lease's PTTL), then `tail` if given. A record lost while the lease lives
 * (deleted by hand, evicted) reads as `''`.
 */
export function holderReply(head?: string, tail?: string): string {
  return `{ ${head === undefined ? '' : `${head}, `}type(rec) == 'string' and rec or '', nowMs + (pttl > 0 and pttl or 0)${tail === undefined ? '' : `, ${tail}`} }`;
}
