//! The Lua scripts of the Redis queue (the dead-letter store's are in `dead`).

/// Moves up to ARGV[2] entries due by ARGV[1] from the delayed set (KEYS[1]) to the stream
/// (KEYS[2]); answers how many, and the next due time (-1: none).
pub(super) const PROMOTE: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, m in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 'e', m)
  redis.call('ZREM', KEYS[1], m)
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #nxt == 0 then return {#due, -1} end
return {#due, tonumber(nxt[2])}
";

/// Appends one envelope per key, all at once, unless the server's clock is past ARGV[1].
pub(super) const PUSH: &str = r"
local t = redis.call('TIME')
if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > tonumber(ARGV[1]) then
  return 0
end
for i, key in ipairs(KEYS) do
  redis.call('XADD', key, '*', 'e', ARGV[i + 1])
end
return 1
";
