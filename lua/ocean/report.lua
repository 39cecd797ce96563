-- ocean.report: what a resync says about itself while it runs and when it
-- ends, so that nothing fails silently (ocean.sync calls it; it decides
-- nothing).
--
--   report.label(kind, index, count_of_kind)  how a resource is named in
--                                    every line about it: "kind 'team'",
--                                    or "kind 'team' #3" when the mapping
--                                    has several resources of that kind
--                                    (#: its 1-based place in the
--                                    mapping's resources, the "resource 3
--                                    of N" of its start line)
--   report.render(v)                 an error value as text (tables as
--                                    bounded JSON)
--   report.notes(cap)                per-kind capped item problems: the
--                                    first `cap` of each sort are logged
--                                    one by one, then one "... and N more"
--   report.progress(stats, delta, seconds)  the line a running kind logs
--                                    at least every progress interval
--   report.failures(list, label_of)  Port's rejections grouped by reason
--                                    per resource, at WARNING, capped
--   report.deletion(rep, held)       the deletion decision, one line per
--                                    reason
-- Counts in lines are plain integers; rates are objects read per second.
local json = require "ocean.json"
local log = require "ocean.log"

local format, concat = string.format, table.concat
local pairs, ipairs, tostring, type, next, pcall = pairs, ipairs, tostring, type, next, pcall
local getmetatable = getmetatable

local _M = {}

local IDS_SHOWN = 5        -- identifiers named per reason
local REASONS_SHOWN = 10   -- reasons named per resource

-- {==================== names ====================

function _M.label(kind, index, count_of_kind)
  if (count_of_kind or 1) > 1 then return format("kind '%s' #%d", kind, index) end
  return format("kind '%s'", kind)
end

-- "first, second, third and 4 more" from a list of strings.
local function some(list, shown, total)
  local parts = {}
  for i = 1, math.min(#list, shown) do parts[i] = list[i] end
  local s = concat(parts, ", ")
  total = total or #list
  if total > #parts then s = s .. format(" and %d more", total - #parts) end
  return s
end
_M.some = some

-- }====================

-- {==================== capped item notes ====================

-- Notes (item errors, dropped entities, items whose itemsToParse failed)
-- of one resource: each sort logged one by one up to `cap`, the rest
-- counted and said once by :done().
local Notes = {}
Notes.__index = Notes

function _M.notes(cap, label)
  return setmetatable({ cap = cap or 10, label = label, counts = {}, order = {} }, Notes)
end

-- Count one note of `sort` ("item errors", ...); log it (level, the line,
-- or a function giving it: called only then) while under the cap.
-- Returns true when it was logged.
function Notes:add(sort, level, line)
  local n = (self.counts[sort] or 0) + 1
  if n == 1 then self.order[#self.order + 1] = sort end
  self.counts[sort] = n
  if n > self.cap then return false end
  if type(line) == "function" then line = line() end
  log[level]("%s", line)
  return true
end

-- Count n notes of `sort` that are not logged one by one (beyond what a
-- feed report lists).
function Notes:skip(sort, n)
  if n <= 0 then return end
  if not self.counts[sort] then self.order[#self.order + 1] = sort end
  self.counts[sort] = (self.counts[sort] or 0) + n
end

-- The "... and N more" lines; returns them (for the run's errors).
function Notes:done(level)
  local out = {}
  for _, sort in ipairs(self.order) do
    local n = self.counts[sort]
    if n > self.cap then
      local line = format("%s: ... and %d more %s (%d in all)", self.label, n - self.cap, sort, n)
      log[level or "warning"]("%s", line)
      out[#out + 1] = line
    end
  end
  return out
end

-- }====================

-- {==================== progress ====================

-- "kind 'user': 12400 objects read, 12390 entities, 600 upserts answered by
-- Port (40 queued), 3 failed, 1033 objects/s (12 s)": sent.answered
-- (upserts Port answered, this kind), sent.queued (handed to the Port
-- client, not answered yet), sent.failed (this kind).
function _M.progress(label, stats, sent, seconds)
  local rate = seconds > 0 and stats.raw / seconds or 0
  log.info("%s: %d objects read, %d entities, %d upserts answered by Port (%d queued), %d failed, "
    .. "%.0f objects/s (%.0f s)", label, stats.raw, stats.entities, sent.answered, sent.queued,
    sent.failed, rate, seconds)
end

-- }====================

-- {==================== Port's rejections ====================

local function reason_of(f)
  local code = f.code ~= "" and f.code or nil
  if f.status == 0 then return "no answer" .. (code and (" " .. code) or "") end
  return tostring(f.status) .. (code and (" " .. code) or "")
end

-- Group failures (session:failures(), each with a `label`) by resource
-- and reason, in order of first appearance: {{label=, total=, reasons =
-- {{reason=, message=, ids={...}, count=}}}}.
function _M.group(failures)
  local by_label, out = {}, {}
  for _, f in ipairs(failures) do
    local g = by_label[f.label]
    if not g then
      g = { label = f.label, total = 0, reasons = {}, index = {} }
      by_label[f.label] = g
      out[#out + 1] = g
    end
    g.total = g.total + 1
    local key = reason_of(f)
    local r = g.index[key]
    if not r then
      r = { reason = key, message = f.message, ids = {}, count = 0 }
      g.index[key] = r
      g.reasons[#g.reasons + 1] = r
    end
    r.count = r.count + 1
    if #r.ids < IDS_SHOWN then r.ids[#r.ids + 1] = f.blueprint .. "/" .. f.identifier end
  end
  return out
end

-- Log Port's rejections: one WARNING per resource and reason (at most
-- REASONS_SHOWN per resource), naming the first identifiers.
function _M.failures(failures)
  for _, g in ipairs(_M.group(failures)) do
    log.warning("%s: Port rejected %d %s", g.label, g.total, g.total == 1 and "entity" or "entities")
    for i, r in ipairs(g.reasons) do
      if i > REASONS_SHOWN then
        local rest = 0
        for k = i, #g.reasons do rest = rest + g.reasons[k].count end
        log.warning("%s: ... and %d more reasons (%d entities)", g.label, #g.reasons - i + 1, rest)
        break
      end
      log.warning("%s: %d rejected with %s (%s): %s", g.label, r.count, r.reason,
        r.message ~= "" and r.message or "no message", some(r.ids, IDS_SHOWN, r.count))
    end
  end
end

-- }====================

-- {==================== the deletion decision ====================

-- One line per reason deletion was skipped, and what was held back.
function _M.deletion(d, held)
  if d.skipped then
    local stay = d.candidates > 0 and format(" (%d deletion candidates stay)", d.candidates) or ""
    for _, reason in ipairs(d.reasons) do
      log.warning("deletion skipped: %s%s", reason, stay)
    end
  end
  if held and #held > 0 then
    local parts = {}
    for _, h in ipairs(held) do parts[#parts + 1] = format("'%s' (%s)", h.blueprint, h.why) end
    log.warning("deletion held back for blueprint%s %s: %d owned entities not produced by this "
      .. "resync stay", #held > 1 and "s" or "", concat(parts, ", "), d.held or 0)
  end
end

-- }====================

-- {==================== items and the end ====================

-- "item 3 of page 2 (id "x")": where a raw item is, and its identifier
-- when the raw object has one under a usual key (its entity's identifier
-- is not known: it could not be mapped).
local ID_KEYS = { "identifier", "id", "key", "name", "slug", "uuid" }
function _M.where(page, batch, index)
  local s = ("item %d of page %d"):format(index, page)
  local item = type(batch) == "table" and batch[index]
  if type(item) == "string" then item = json.decode(item) end
  if type(batch) == "string" and index > 0 then
    local ok, list = pcall(json.decode, batch)
    if ok and type(list) == "table" then item = list[index] end
  end
  if type(item) == "table" then
    for _, k in ipairs(ID_KEYS) do
      local v = item[k]
      if type(v) == "string" or type(v) == "number" then
        return s .. (" (%s %s)"):format(k, json.encode(v))
      end
    end
  end
  return s
end

function _M.misconfigured(stats)
  if not next(stats.misconfigured) then return end
  local parts = {}
  for path, expr in pairs(stats.misconfigured) do parts[#parts + 1] = ("%s (%s)"):format(path, expr) end
  table.sort(parts)
  log.warning("%s: fields that came out null (misconfigured?): %s",
    stats.label or ("kind '" .. tostring(stats.kind) .. "'"), concat(parts, ", "))
end

-- What the end of the session did, in the log.
function _M.session_end(rep, held)
  local d = rep.deletion
  if rep.retried > 0 then
    log.info("retried %d failed upserts in relation order (%d levels): %d succeeded",
      rep.retried, rep.retry_levels, rep.retry_ok)
  end
  _M.deletion(d, held)
  if not d.skipped and d.candidates > 0 then
    if rep.confirmed < d.candidates then
      log.info("%d deletion candidates changed since the resync started; they stay",
        d.candidates - rep.confirmed)
    end
    if rep.protected_targets > 0 then
      log.info("%d deletion candidates are relation targets of synced or held-back entities; "
        .. "they stay",
        rep.protected_targets)
    end
  end
  for i, e in ipairs(rep.failed_deletes) do
    if i > IDS_SHOWN * 2 then
      log.warning("... and %d more entities could not be deleted", #rep.failed_deletes - i + 1)
      break
    end
    log.warning("could not delete %s/%s: %s", e.blueprint, e.identifier, e.message or "?")
  end
end

-- }====================

-- A value raised or given as an error, as text for a message: a string
-- as is; a table with __tostring through it; another table as bounded
-- JSON ({"code":1}; cycles and functions shown as such), never
-- "table: 0x..."; the rest by tostring. At most RENDER_MAX bytes. (The
-- log and `ocean sail` mask secrets in it when they print it.)
local RENDER_MAX = 500
local function render_table(v, seen, depth)
  if seen[v] then return '"<cycle>"' end
  if depth > 4 then return '"..."' end
  seen[v] = true
  local n, keys = #v, {}
  for k in pairs(v) do
    if not (type(k) == "number" and k >= 1 and k <= n and k % 1 == 0) then keys[#keys + 1] = k end
  end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local parts = {}
  local function one(x)
    if type(x) == "table" and x ~= json.null then return render_table(x, seen, depth + 1) end
    if type(x) == "string" or type(x) == "number" or type(x) == "boolean" or x == json.null then
      local ok, t = pcall(json.encode, x)
      if ok and t then return t end
    end
    return json.encode("<" .. type(x) .. ">")
  end
  for i = 1, n do parts[#parts + 1] = one(v[i]) end
  for _, k in ipairs(keys) do parts[#parts + 1] = json.encode(tostring(k)) .. ":" .. one(v[k]) end
  seen[v] = nil
  if #keys == 0 and n > 0 then return "[" .. concat(parts, ",") .. "]" end
  return "{" .. concat(parts, ",") .. "}"
end

function _M.render(v)
  local s
  if type(v) == "table" and v ~= json.null then
    local mt = getmetatable(v)
    if type(mt) == "table" and mt.__tostring then s = tostring(v)
    else s = render_table(v, {}, 1) end
  else
    s = tostring(v)
  end
  if #s > RENDER_MAX then s = s:sub(1, RENDER_MAX) .. "..." end
  return s
end

-- A value in a message: "a string", "a number (5)", "nil"...
function _M.describe(v)
  local t = type(v)
  if v == nil then return "nil" end
  if t == "number" or t == "boolean" then return format("%s (%s)", t == "number" and "a number"
    or "a boolean", tostring(v)) end
  return "a " .. t
end

return _M
