-- ocean.netlog: what the event loop did with HTTP requests, said in the
-- log. C never calls Lua: the loop (src/net/loop.c) queues an event for
-- every retry it schedules and for every request it completes
-- (loop:record), and the engine hands them here after each wait
-- (engine.lua's on_events). Lines:
--
--   WARNING  retrying Port POST /v1/auth/access_token in 600 ms (attempt 3/11):
--            Couldn't connect to server
--   WARNING  retrying GET https://api.example.com/users?page=2 in 1.0 s
--            (attempt 2/4): HTTP 503
--   WARNING  gave up on Port POST /v1/blueprints/service/entities/bulk after
--            11 attempts (118.2 s of waiting): HTTP 503
--   INFO     Port POST /v1/...: HTTP 207 after 3 attempts (2.1 s)
--   DEBUG    Port POST /v1/blueprints/service/entities/bulk -> 207 (35 ms)
--   DEBUG    GET https://api.example.com/users?page=2 -> 200 (12 ms)
--
-- Port's requests are named by their path (the base URL and the query,
-- which only carries Ocean's bookkeeping, left out); third-party requests
-- by their URL without user information, with the values of query
-- parameters whose names look secret (token, key, secret, password,
-- auth, signature, code, ...) replaced by ****, and then every registered
-- secret masked by ocean.log as in any line.
local log = require "ocean.log"

local format = string.format
local type, ipairs = type, ipairs

local _M = {}

local SECRET_NAME = { "token", "key", "secret", "passw", "pwd", "auth", "sig",
                      "credential", "session", "code" }

local function secret_name(name)
  name = name:lower()
  for _, w in ipairs(SECRET_NAME) do
    if name:find(w, 1, true) then return true end
  end
  return false
end

local function mask_query(q)
  return (q:gsub("([^&=]+)=([^&]*)", function(k, v)
    if v ~= "" and secret_name(k) then return k .. "=****" end
  end))
end

-- How a request is named in the log. port_base: the Port base URL.
function _M.name(method, url, port_base)
  url = url or "?"
  if type(port_base) == "string" and port_base ~= ""
     and url:sub(1, #port_base) == port_base then
    local path = url:sub(#port_base + 1):gsub("%?.*$", "")
    if path == "" then path = "/" end
    return "Port " .. method .. " " .. path
  end
  url = url:gsub("^(%a[%w+.-]*://)[^/@]*@", "%1")      -- user:password@
  local base, q = url:match("^([^?#]*)%?([^#]*)")
  if base then url = base .. "?" .. mask_query(q) end
  if #url > 300 then url = url:sub(1, 300) .. "..." end
  return method .. " " .. url
end

local function seconds(ms)
  ms = ms or 0
  if ms < 1000 then return format("%d ms", ms) end
  return format("%.1f s", ms / 1000)
end

local function outcome(ev)
  if ev.error then return ev.error end
  return "HTTP " .. tostring(ev.status)
end

-- Log one event of loop:wait (a "retry", "request" or "dropped" one).
-- Returns true when it was one of those.
function _M.say(ev, port_base)
  local t = ev.type
  if t == "retry" then
    log.warning("retrying %s in %s (attempt %d/%d): %s", _M.name(ev.method, ev.url, port_base),
      seconds(ev.delay_ms), ev.attempt + 1, ev.max_attempts, outcome(ev))
  elseif t == "request" then
    local what = _M.name(ev.method, ev.url, port_base)
    if ev.gave_up then
      log.warning("gave up on %s after %d attempts (%s of waiting): %s", what, ev.attempt,
        seconds(ev.waited_ms), outcome(ev))
    elseif ev.attempt > 1 then
      log.info("%s: %s after %d attempts (%s)", what, outcome(ev), ev.attempt,
        seconds(ev.elapsed_ms))
    else
      log.debug("%s -> %s (%d ms)", what, ev.error or tostring(ev.status), ev.elapsed_ms)
    end
  elseif t == "dropped" then
    log.warning("%d request events were not logged (more than the loop keeps between two waits)",
      ev.count)
  else
    return false
  end
  return true
end

return _M
