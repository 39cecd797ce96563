-- ocean.emulator.faults: fault injection rules for the Port API routes.
--
-- A rule (all fields optional but one effect):
--   method          "POST"...               match this method only
--   path            Lua pattern             string.find on the path
--   count           N                       fire for the first N matches
--   every           K                       fire on every K-th match
--   max_body_bytes  B                       match only bodies larger than B
--                                           (default status 413)
--   body_has        "text"                  match only bodies holding this
--                                           text (plain, not a pattern)
-- effects:
--   status          100..599                answer this instead of the API
--   body            object or string        the answer's body
--   headers         {name = value}          extra answer headers
--   retry_after     "1" | HTTP-date         Retry-After header, as given
--   retry_after_date S                      Retry-After: HTTP-date now + S s
--   ratelimit_reset "..."                   x-ratelimit-reset header, as given
--   ratelimit_reset_in S                    x-ratelimit-reset: epoch now + S s
--   drop            true                    close the connection, no answer
--   delay_ms        N                       answer (or drop) N ms late
-- A rule with only delay_ms lets the API answer normally, late.
-- Rules are tried in order; the first one that fires wins.
local util = require "ocean.emulator.util"

local type, ipairs, pairs, tostring, pcall = type, ipairs, pairs, tostring, pcall
local format, floor = string.format, math.floor

local _M = {}

local Faults = {}
Faults.__index = Faults

local DEFAULT_ERROR = {
  [413] = "payload_too_large", [429] = "rate_limited",
  [500] = "internal_error", [502] = "bad_gateway",
  [503] = "service_unavailable", [504] = "gateway_timeout",
}

local function is_int(v, min, max)
  return type(v) == "number" and v == floor(v) and v >= min and (not max or v <= max)
end

local CHECKS = {
  method = function(v) return type(v) == "string" end,
  path = function(v)
    return type(v) == "string" and (pcall(string.find, "", v))
  end,
  count = function(v) return is_int(v, 1) end,
  every = function(v) return is_int(v, 1) end,
  max_body_bytes = function(v) return is_int(v, 0) end,
  body_has = function(v) return type(v) == "string" and v ~= "" end,
  status = function(v) return is_int(v, 100, 599) end,
  body = function(v) return type(v) == "string" or util.is_object(v) end,
  headers = function(v)
    if not util.is_object(v) then return false end
    for k, x in pairs(v) do
      if type(k) ~= "string" or (type(x) ~= "string" and type(x) ~= "number") then
        return false
      end
    end
    return true
  end,
  retry_after = function(v) return type(v) == "string" or type(v) == "number" end,
  retry_after_date = function(v) return type(v) == "number" end,
  ratelimit_reset = function(v) return type(v) == "string" or type(v) == "number" end,
  ratelimit_reset_in = function(v) return type(v) == "number" end,
  drop = function(v) return type(v) == "boolean" end,
  delay_ms = function(v) return type(v) == "number" and v >= 0 end,
}

-- A validated copy of rule r, or nil, err.
local function check_rule(r, i)
  if not util.is_object(r) then
    return nil, format("rules[%d] must be an object", i)
  end
  local rule = { matched = 0, fired = 0 }
  for k, v in pairs(r) do
    local check = CHECKS[k]
    if not check then
      return nil, format("rules[%d]: unknown field '%s'", i, tostring(k))
    end
    if not check(v) then
      return nil, format("rules[%d]: invalid value for '%s'", i, k)
    end
    rule[k] = v
  end
  if rule.method then rule.method = rule.method:upper() end
  if not (rule.status or rule.drop or rule.delay_ms or rule.max_body_bytes) then
    return nil, format("rules[%d] has no effect (status, drop, delay_ms or max_body_bytes)", i)
  end
  if rule.max_body_bytes and not rule.status then rule.status = 413 end
  return rule
end

-- Replace the rules. Returns true, or nil, err (rules unchanged).
function Faults:set(rules)
  if not util.is_array(rules) and not (type(rules) == "table" and next(rules) == nil) then
    return nil, "'rules' must be an array"
  end
  local out = {}
  for i, r in ipairs(rules) do
    local rule, err = check_rule(r, i - 1)
    if not rule then return nil, err end
    out[i] = rule
  end
  self.rules = out
  return true
end

function Faults:clear()
  self.rules = {}
end

-- The rules with their counters (for GET /_emulator/faults).
function Faults:list()
  return util.array(self.rules)
end

local function matches(r, req)
  return (not r.method or r.method == req.method)
     and (not r.path or req.path:find(r.path) ~= nil)
     and (not r.max_body_bytes or #req.body > r.max_body_bytes)
     and (not r.body_has or (req.body or ""):find(r.body_has, 1, true) ~= nil)
end

-- The rule that fires for req (counters advance), or nil.
function Faults:match(req)
  for _, r in ipairs(self.rules) do
    if matches(r, req) then
      r.matched = r.matched + 1
      if (not r.every or r.matched % r.every == 0)
         and (not r.count or r.fired < r.count) then
        r.fired = r.fired + 1
        return r
      end
    end
  end
  return nil
end

-- The answer a fired rule with a status gives: status, body, headers.
function _M.answer(rule)
  local headers = {}
  for k, v in pairs(rule.headers or {}) do headers[k:lower()] = tostring(v) end
  local now = util.now_ms() / 1000
  if rule.retry_after ~= nil then headers["retry-after"] = tostring(rule.retry_after) end
  if rule.retry_after_date then
    headers["retry-after"] = util.http_date(now + rule.retry_after_date)
  end
  if rule.ratelimit_reset ~= nil then
    headers["x-ratelimit-reset"] = tostring(rule.ratelimit_reset)
  end
  if rule.ratelimit_reset_in then
    headers["x-ratelimit-reset"] = tostring(floor(now + rule.ratelimit_reset_in))
  end
  local body = rule.body
  if body == nil then
    body = { ok = false, error = DEFAULT_ERROR[rule.status] or "emulated_fault",
             message = "fault injected by the port emulator" }
  end
  return rule.status, body, headers
end

function _M.new()
  return setmetatable({ rules = {} }, Faults)
end

return _M
