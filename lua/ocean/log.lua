-- ocean.log: levelled logging with secrets masked.
--
--   log.debug/info/warning/error(fmt, ...)   string.format-style
--   log.set_level("INFO")                    DEBUG, INFO, WARNING, ERROR
--   log.add_secret(value [, list])           never printed again, anywhere
--                                            (stripped; blank/short ones ignored);
--                                            list: an engine's secrets
--   log.watch(list), log.unwatch(list)       mask what an engine's list
--                                            holds while the engine lives
--   log.parse_level(v), log.check_level(v, flag)  validate a level name
--   log.set_sink(fn(level, line))            default: stderr (ngx.log in nginx)
--   log.mask(text) -> text with every registered secret replaced by ****,
--                     and credentials in URLs masked (log.redact_url)
--   log.redact_url(url) -> url without its password (user:****@) and with
--                     secret-looking query values (token=****) masked
local os_date, io_stderr = os.date, io.stderr
local ipairs, pairs, next, tostring, select, setmetatable =
  ipairs, pairs, next, tostring, select, setmetatable
local string_format = string.format

local _M = {}

local LEVELS = { DEBUG = 10, INFO = 20, WARNING = 30, ERROR = 40 }
_M.LEVELS = LEVELS

local threshold = LEVELS.INFO
local secrets = {}      -- the process's own (the CLI's, before any engine)
-- The secret lists of the live engines (each engine owns its list; this
-- only refers to it, weakly, so a collected engine's secrets go too).
local watched = setmetatable({}, { __mode = "k" })
local sink

local function plain_find_replace(s, needle, repl)
  local out, i = {}, 1
  while true do
    local a, b = s:find(needle, i, true)
    if not a then break end
    out[#out + 1] = s:sub(i, a - 1)
    out[#out + 1] = repl
    i = b + 1
  end
  out[#out + 1] = s:sub(i)
  return table.concat(out)
end

function _M.watch(list) watched[list] = true end
function _M.unwatch(list) watched[list] = nil end

-- Every secret known: the process's and the live engines', longest first
-- (a secret containing another is masked whole).
local function all_secrets()
  if next(watched) == nil then return secrets end
  local all = {}
  for _, s in ipairs(secrets) do all[#all + 1] = s end
  for list in pairs(watched) do
    for _, s in ipairs(list) do all[#all + 1] = s end
  end
  table.sort(all, function(a, b) return #a > #b end)
  return all
end

-- {==================== URLs ====================

-- Query parameters whose names look secret (a substring, any case).
local SECRET_NAME = { "token", "key", "secret", "passw", "pwd", "auth", "sig",
                      "credential", "session", "code" }

local function secret_name(name)
  name = name:lower()
  for _, w in ipairs(SECRET_NAME) do
    if name:find(w, 1, true) then return true end
  end
  return false
end

-- url with its credentials masked: the user information's password
-- ("bob:****@"; a lone user name, often a token, as "****@") and the
-- values of query parameters whose names look secret (token=****,
-- access_token=****, api_key=****, signature=****...). The rest is kept,
-- so the line still says which request it was.
function _M.redact_url(url)
  url = tostring(url)
  url = url:gsub("^(%a[%w+.-]*://)([^/?#@]*)@", function(scheme, userinfo)
    local user = userinfo:match("^([^:]*):")
    return scheme .. (user and (user .. ":****") or "****") .. "@"
  end)
  local base, q, frag = url:match("^([^?#]*)%?([^#]*)(.*)$")
  if base then
    q = q:gsub("([^&=]+)=([^&]*)", function(k, v)
      if v ~= "" and secret_name(k) then return k .. "=****" end
    end)
    url = base .. "?" .. q .. frag
  end
  return url
end

-- }====================

function _M.mask(text)
  text = tostring(text)
  for _, s in ipairs(all_secrets()) do
    text = plain_find_replace(text, s, "****")
  end
  -- credentials inside URLs (user:password@, ?token=...), wherever a URL is
  if text:find("://", 1, true) then
    text = text:gsub("%a[%w+.-]*://[^%s\"'<>`]+", _M.redact_url)
  end
  -- whatever looks like a bearer token, even one we were never told about
  text = text:gsub("([Bb]earer%s+)[%w%-%._~%+/=]+", "%1****")
  return text
end

-- Register a secret. Surrounding whitespace is stripped first (as Ocean
-- does: a token read with its trailing newline must still be masked where
-- it is printed without it); a value that is then shorter than 4 bytes is
-- ignored: masking it (or a blank) would garble ordinary text, and it is
-- not a secret worth the name. list: an engine's secrets (default: the
-- process's own).
function _M.add_secret(value, list)
  list = list or secrets
  if type(value) ~= "string" then return end
  value = value:match("^%s*(.-)%s*$")
  if #value < 4 then return end
  for _, s in ipairs(list) do
    if s == value then return end
  end
  list[#list + 1] = value
  -- longest first, so a secret containing another is masked whole
  table.sort(list, function(a, b) return #a > #b end)
end

-- parse_level(value) -> "DEBUG" | "INFO" | "WARNING" | "ERROR" | nil, why.
-- Case-insensitive; Ocean's WARN and CRITICAL are WARNING and ERROR.
function _M.parse_level(value)
  local t = tostring(value):upper()
  if t == "WARN" then t = "WARNING" end
  if t == "CRITICAL" then t = "ERROR" end
  if not LEVELS[t] then
    return nil, "is not a log level (use DEBUG, INFO, WARNING or ERROR)"
  end
  return t
end

-- check_level(value, flag) -> level | nil, err naming the flag, for a
-- command line: "--log-level: 'LOUD' is not a log level (use ...)".
function _M.check_level(value, flag)
  local t, why = _M.parse_level(value)
  if not t then return nil, ("%s: '%s' %s"):format(flag or "--log-level", tostring(value), why) end
  return t
end

function _M.set_level(name)
  local t = _M.parse_level(name)
  if not t then
    return nil, ("unknown log level '%s' (use DEBUG, INFO, WARNING or ERROR)")
      :format(tostring(name))
  end
  threshold = LEVELS[t]
  return true
end

function _M.level()
  for name, n in pairs(LEVELS) do
    if n == threshold then return name end
  end
end

function _M.enabled(level)
  return LEVELS[level] >= threshold
end

-- ngx.errlog.raw_log (lua-resty-core) logs without ngx.log's prefix,
-- which would always name this file.
local raw_log
local function default_sink(level, line)
  if ngx and ngx.log and ngx.get_phase and ngx.get_phase() ~= "init" then
    local lv = ({ DEBUG = ngx.DEBUG, INFO = ngx.INFO, WARNING = ngx.WARN,
                  ERROR = ngx.ERR })[level]
    if raw_log == nil then
      local ok, errlog = pcall(require, "ngx.errlog")
      raw_log = ok and errlog.raw_log or false
    end
    if raw_log then
      raw_log(lv, "[ocean] " .. line)
    else
      ngx.log(lv, line)
    end
    return
  end
  io_stderr:write(os_date("!%Y-%m-%dT%H:%M:%SZ"), " ", level,
                  (" "):rep(8 - #level), line, "\n")
end

function _M.set_sink(fn)
  sink = fn
end

local function emit(level, fmt, ...)
  if LEVELS[level] < threshold then return end
  local line
  if select("#", ...) > 0 then
    local ok, s = pcall(string_format, fmt, ...)
    line = ok and s or tostring(fmt)
  else
    line = tostring(fmt)
  end
  line = _M.mask(line)
  ;(sink or default_sink)(level, line)
end

function _M.debug(fmt, ...) emit("DEBUG", fmt, ...) end
function _M.info(fmt, ...) emit("INFO", fmt, ...) end
function _M.warning(fmt, ...) emit("WARNING", fmt, ...) end
function _M.error(fmt, ...) emit("ERROR", fmt, ...) end

return _M
