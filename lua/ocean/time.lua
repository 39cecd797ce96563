-- ocean.time: time stamps as Port writes and reads them (ISO-8601 UTC),
-- for the sync engine, the listeners and the emulator.
--
--   time.iso(seconds) -> "2024-05-01T12:00:00.123Z" (epoch seconds,
--     fractional; milliseconds truncated)
--   time.iso_ms(ms) -> the same from integer milliseconds (exact)
--   time.parse_iso_ms(text) -> milliseconds since the epoch (fractional
--     below 1 ms) | nil: "2024-05-01", "2024-05-01T12:00", "...T12:00:00Z",
--     "...T12:00:00.123456+02:00" ("+02", "+0200" too; no zone: UTC)
--   time.parse_iso(text) -> seconds since the epoch | nil
--   time.http_date(seconds) -> "Wed, 01 May 2024 12:00:00 GMT" (RFC 7231)
local floor = math.floor
local format = string.format
local os_date = os.date
local type, tonumber = type, tonumber

local _M = {}

function _M.iso_ms(ms)
  local s = floor(ms / 1000)
  return os_date("!%Y-%m-%dT%H:%M:%S", s) .. format(".%03dZ", floor(ms - s * 1000))
end

function _M.iso(t)
  local s = floor(t)
  return os_date("!%Y-%m-%dT%H:%M:%S", s) .. format(".%03dZ", floor((t - s) * 1000))
end

-- Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
-- days_from_civil).
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

function _M.parse_iso_ms(s)
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

function _M.parse_iso(s)
  local ms = _M.parse_iso_ms(s)
  return ms and ms / 1000
end

function _M.http_date(sec)
  return os_date("!%a, %d %b %Y %H:%M:%S GMT", floor(sec))
end

return _M
