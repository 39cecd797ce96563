-- ocean.emulator.util: time stamps, random ids and small JSON helpers
-- shared by the emulator's modules.
local core = require "ocean.core"
local json = require "ocean.json"
local otime = require "ocean.time"

local random = math.random
local format, byte = string.format, string.byte
local type, next, pairs, tostring = type, next, pairs, tostring
local getmetatable, setmetatable = getmetatable, setmetatable

local _M = {}

local null = json.null
_M.null = null
local EXACT = { exact_numbers = true }

-- {==================== time ====================

-- ocean.time's: iso(ms) -> "2024-05-01T12:00:00.123Z"; parse_iso(text)
-- -> milliseconds since the epoch | nil; http_date(seconds).
_M.iso = otime.iso_ms
_M.parse_iso = otime.parse_iso_ms
_M.http_date = otime.http_date
_M.now_ms = core.realtime_ms
_M.monotonic_ms = core.monotonic_ms

-- }====================

-- {==================== ids ====================

local urandom

-- n random bytes as hex (from /dev/urandom; math.random if unavailable).
function _M.random_hex(n)
  if urandom == nil then urandom = io.open("/dev/urandom", "rb") or false end
  local bytes = urandom and urandom:read(n)
  local out = {}
  for i = 1, n do
    out[i] = format("%02x", bytes and byte(bytes, i) or random(0, 255))
  end
  return table.concat(out)
end

-- A cheap random id for trace ids (not secret).
function _M.trace_id()
  return format("%08x%08x", random(0, 0x7fffffff), random(0, 0x7fffffff))
end

-- }====================

-- {==================== JSON values ====================

function _M.is_array(v)
  return type(v) == "table" and getmetatable(v) == json.array_mt
end

-- A JSON object (a table that is not an array; {} counts).
function _M.is_object(v)
  return type(v) == "table" and getmetatable(v) ~= json.array_mt
end

-- The JSON type name of a decoded value.
function _M.json_type(v)
  local t = type(v)
  if v == null then return "null" end
  if json.is_number(v) then return "number" end
  if t == "table" then
    if getmetatable(v) == json.array_mt then return "array" end
    if next(v) == 1 then return "array" end
    return "object"
  end
  if t == "number" then return "number" end
  if t == "string" then return "string" end
  if t == "boolean" then return "boolean" end
  return t
end

-- A shallow copy (an array stays an array).
-- JSON text decoded as the emulator keeps it: numbers that a Lua number
-- cannot hold exactly (12345678901234567890) stay exact (json.number), so
-- that Port's catalog answers them as they were written.
function _M.decode(text)
  return json.decode(text, EXACT)
end

-- A request's JSON body, which must be an object: 400 for invalid JSON
-- (as req:json), 422 for anything else.
function _M.body_object(req)
  local b = req._exact_json
  if b == nil then
    local err
    b, err = json.decode(req.body, EXACT)
    if b == nil then
      error(require("ocean.server").http_error(400, { ok = false, error = "invalid_json",
        message = "invalid JSON body: " .. tostring(err) }), 0)
    end
    req._exact_json = b
  end
  if not _M.is_object(b) then
    error(require("ocean.server").http_error(422, { ok = false, error = "invalid_request",
      message = "the body must be a JSON object" }), 0)
  end
  return b
end

function _M.copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return setmetatable(c, getmetatable(t))
end

_M.array = json.array

-- }====================

return _M
