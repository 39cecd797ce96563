-- ocean.netlog: what the event loop did with HTTP requests, said in the
-- log. C never calls Lua: the loop (src/net/loop.c) queues an event for
-- every retry it schedules and for every request it completes
-- (loop:record), and the engine hands them here after each wait
-- (engine.lua's on_events). Lines:
--
--   WARNING  retrying Port POST /v1/auth/access_token in 600 ms (attempt 3 of
--            at most 11, within 120 s of waiting): Couldn't connect to server
--   WARNING  retrying GET https://api.example.com/users?page=2 in 1.0 s
--            (attempt 2 of at most 4, within 60 s of waiting): HTTP 503
--   WARNING  gave up on Port POST /v1/blueprints/service/entities/bulk after
--            9 attempts (118.2 s of waiting, the most it waits): HTTP 503
--   WARNING  gave up on Port POST /v1/.../entities/bulk after 1 attempts
--            (0 ms of waiting): HTTP 429; it asked to wait 27.8 h
--            (Retry-After), more than the retry budget allows
--   INFO     Port POST /v1/...: HTTP 207 after 3 attempts (2.1 s)
--   INFO     Port token expired or revoked (Port POST /v1/.../entities/bulk
--            answered 401): logging in again
--   DEBUG    Port POST /v1/blueprints/service/entities/bulk -> 207 (35 ms)
--   DEBUG    GET https://api.example.com/users?page=2 -> 200 (12 ms)
--
-- Port's requests are named by their path (the base URL and the query,
-- which only carries Ocean's bookkeeping, left out); third-party requests
-- by their URL with its password masked (log.redact_url), with the values of query
-- parameters whose names look secret (token, key, secret, password,
-- auth, signature, code, ...) replaced by ****, and then every registered
-- secret masked by ocean.log as in any line.
local log = require "ocean.log"

local format = string.format
local type = type

local _M = {}

-- How a request is named in the log. port_base: the Port base URL.
function _M.name(method, url, port_base)
  url = url or "?"
  if type(port_base) == "string" and port_base ~= ""
     and url:sub(1, #port_base) == port_base then
    local path = url:sub(#port_base + 1):gsub("%?.*$", "")
    if path == "" then path = "/" end
    return "Port " .. method .. " " .. path
  end
  url = log.redact_url(url)           -- user:****@, ?token=****
  if #url > 300 then url = url:sub(1, 300) .. "..." end
  return method .. " " .. url
end

local function seconds(ms)
  ms = ms or 0
  if ms < 1000 then return format("%d ms", ms) end
  return format("%.1f s", ms / 1000)
end

local function hours(ms)
  if ms < 3600000 then return seconds(ms) end
  return format("%.1f h", ms / 3600000)
end

-- "of at most 11, within 120 s of waiting": both caps, whichever ends
-- the retries first.
local function caps(ev)
  local w = (ev.max_wait_ms or 0) > 0 and format(", within %s of waiting", seconds(ev.max_wait_ms))
    or ""
  return format("of at most %d%s", ev.max_attempts, w)
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
    log.warning("retrying %s in %s (attempt %d %s): %s", _M.name(ev.method, ev.url, port_base),
      seconds(ev.delay_ms), ev.attempt + 1, caps(ev), outcome(ev))
  elseif t == "request" then
    local what = _M.name(ev.method, ev.url, port_base)
    local port_call = what:sub(1, 5) == "Port "
    if ev.status == 401 and port_call and not what:find("/v1/auth/access_token", 1, true) then
      -- ocean.port logs in again and resends once (a 401 after that is
      -- the caller's error to report)
      log.info("Port token expired or revoked (%s answered 401%s): logging in again", what,
        ev.attempt > 1 and format(" after %d attempts", ev.attempt) or "")
    elseif ev.status == 401 and ev.attempt < 2 and not log.enabled("DEBUG") then
      return true          -- recorded for Port's token only
    elseif ev.gave_up and ev.asked_ms then
      log.warning("gave up on %s after %d attempts (%s of waiting): %s; it asked to wait %s "
        .. "(Retry-After), more than the retry budget allows", what, ev.attempt,
        seconds(ev.waited_ms), outcome(ev), hours(ev.asked_ms))
    elseif ev.gave_up then
      local why = ev.attempt < ev.max_attempts and (ev.max_wait_ms or 0) > 0
        and ", the most it waits" or ""
      log.warning("gave up on %s after %d attempts (%s of waiting%s): %s", what, ev.attempt,
        seconds(ev.waited_ms), why, outcome(ev))
    elseif ev.attempt > 1 then
      log.info("%s: %s after %d attempts (%s)", what, outcome(ev), ev.attempt,
        seconds(ev.elapsed_ms))
    else
      log.debug("%s -> %s (%d ms)", what, ev.error or tostring(ev.status), ev.elapsed_ms)
    end
  elseif t == "dropped" then
    log.warning("%d retries or requests were not logged one by one (more than %d happened "
      .. "between two looks at the event loop, or memory ran out)", ev.count, 65536)
  else
    return false
  end
  return true
end

return _M
