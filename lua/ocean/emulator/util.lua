-- ocean.emulator.util: time stamps, random ids and small JSON helpers
-- shared by the emulator's modules.
local core = require "ocean.core"
local json = require "ocean.json"

local floor, random = math.floor, math.random
local format, byte = string.format, string.byte
local type, tonumber, next, pairs, tostring = type, tonumber, next, pairs, tostring
local getmetatable, setmetatable = getmetatable, setmetatable
local os_date = os.date

local _M = {}

local null = json.null
_M.null = null
local EXACT = { exact_numbers = true }

-- {==================== time ====================

-- Milliseconds since the epoch -> "2024-05-01T12:00:00.123Z".
function _M.iso(ms)
  local s = floor(ms / 1000)
  return os_date("!%Y-%m-%dT%H:%M:%S", s) .. format(".%03dZ", floor(ms - s * 1000))
end

-- Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant).
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local function tz_offset_ms(tz)
  if tz == "" or tz == "Z" or tz == "z" then return 0 end
  local sign, h, m = tz:match("^([+-])(%d%d):?(%d%d)$")
  if not sign then
    sign, h = tz:match("^([+-])(%d%d)$")
    m = "00"
  end
  if not sign then return nil end
  local off = (tonumber(h) * 60 + tonumber(m)) * 60000
  return sign == "-" and -off or off
end

-- ISO-8601 ("2024-05-01", "2024-05-01T12:00:00Z", "...T12:00:00.123456+00:00")
-- -> milliseconds since the epoch (fractional below 1 ms), or nil.
function _M.parse_iso(s)
  if type(s) ~= "string" then return nil end
  local y, mo, d, rest = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)(.*)$")
  if not y then return nil end
  local h, mi, sec, frac = 0, 0, 0, 0
  if rest ~= "" then
    local hh, mm, ss, tail = rest:match("^[Tt ](%d%d):(%d%d):?(%d?%d?)(.*)$")
    if not hh then return nil end
    h, mi, sec, rest = tonumber(hh), tonumber(mm), tonumber(ss) or 0, tail
    local digits, tail2 = rest:match("^[.,](%d+)(.*)$")
    if digits then
      frac = tonumber("0." .. digits) * 1000
      rest = tail2
    end
  end
  local off = tz_offset_ms(rest)
  mo, d = tonumber(mo), tonumber(d)
  if not off or mo < 1 or mo > 12 or d < 1 or d > 31 or h > 23 or mi > 59
     or sec > 60 then
    return nil
  end
  local days = days_from_civil(tonumber(y), mo, d)
  return ((days * 24 + h) * 60 + mi) * 60000 + sec * 1000 + frac - off
end

-- An RFC 7231 HTTP-date for epoch seconds.
function _M.http_date(sec)
  return os_date("!%a, %d %b %Y %H:%M:%S GMT", floor(sec))
end

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
