-- engine.checks: helpers for `check:` hooks and lua steps.
--   local checks = require("engine.checks")
--   return checks.counts_match(steps.source_counts.outputs.tables, outputs.tables)
local M = {}

-- Every table of `expected` has the same row count in `actual` (within a
-- relative tolerance, default 0). Returns ok, message.
function M.counts_match(expected, actual, tolerance)
  tolerance = tolerance or 0
  local bad = {}
  for name, n in pairs(expected) do
    local got = rawget(actual, name)
    if got == nil then
      bad[#bad + 1] = name .. ": missing"
    else
      local diff = math.abs(got - n)
      if diff > tolerance * math.max(n, 1) then
        bad[#bad + 1] = string.format("%s: %d rows, expected %d", name, got, n)
      end
    end
  end
  table.sort(bad)
  if #bad > 0 then
    return false, "row counts differ: " .. table.concat(bad, "; ")
  end
  return true
end

-- Each named table has at least `min` rows (default 1).
function M.not_empty(tables, names, min)
  min = min or 1
  for _, name in ipairs(names) do
    local n = rawget(tables, name)
    if n == nil or n < min then
      return false, string.format("%s has %s rows, expected at least %d", name, tostring(n), min)
    end
  end
  return true
end

-- Parse an RFC 3339 UTC time ("2026-11-21T10:00:00.000Z") to epoch seconds.
function M.epoch(ts)
  local y, mo, d, h, mi, s = ts:match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)")
  if not y then error("not an RFC 3339 time: " .. tostring(ts)) end
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  -- days from civil (Howard Hinnant's algorithm)
  y = mo <= 2 and y - 1 or y
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local doy = (153 * (mo + (mo > 2 and -3 or 9)) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  local days = era * 146097 + doe - 719468
  return days * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(s)
end

-- The backup taken at `ts` is at most `max_s` seconds older than `now_ts`.
function M.fresh(ts, now_ts, max_s)
  local age = M.epoch(now_ts) - M.epoch(ts)
  if age > max_s then
    return false, string.format("backup is %d s old, limit %d s", age, max_s)
  end
  return true
end

return M
