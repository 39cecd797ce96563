-- ocean.listener: when an integration resyncs (Ocean's event listener
-- types and its scheduled resync), the same rules for `ocean sail` and for
-- nginx (ocean.openresty applies them with nginx timers).
--
-- The rules:
--   ONCE                one resync, on start
--   POLLING             a resync on start (OCEAN__EVENT_LISTENER__RESYNC_ON_
--                       START, default true), then one whenever Port holds a
--                       resync request newer than the last one handled,
--                       checked every OCEAN__EVENT_LISTENER__INTERVAL seconds
--   WEBHOOK(S_ONLY)     no automatic resync
--   and with any of them, a resync every OCEAN__SCHEDULED_RESYNC_INTERVAL
--   minutes (the first one interval after the start).
--
--   listener.resync_on_start(settings) -> bool
--   listener.poll_interval(settings) -> seconds | nil    (POLLING only)
--   listener.schedule_interval(settings) -> seconds | nil
--   listener.poll(engine, mark) -> Port's request time (text) | nil
--     The polling rule: a request is newer than the watermark `mark`
--     ({get = fn() -> seconds | nil, set = fn(seconds)}, kept by the
--     runner: a table field, a lua_shared_dict) when its updatedAt is
--     later. The first time, the watermark is the last resync Port knows
--     of (the integration's resyncState.updatedAt, which a resync on start
--     moves forward); with neither, any request qualifies.
--
-- The standalone listener (`ocean sail`, one process):
--   local l = listener.new(engine)   -- l.type, l.resyncs, l.last, l.stopping
--   l:add_routes(engine.router)      -- GET /health, POST /resync
--   l:run()                          -- until l:stop()
--   l:request_resync(why) -> aborting (a running resync is aborted for it)
local json = require "ocean.json"
local log = require "ocean.log"
local integration = require "ocean.integration"
local otime = require "ocean.time"

local type, tostring, pcall = type, tostring, pcall
local huge, min, max, floor = math.huge, math.min, math.max, math.floor

local _M = {}

-- {==================== the rules ====================

function _M.resync_on_start(s)
  local t = s.event_listener.type
  return t == "ONCE" or (t == "POLLING" and s.event_listener.resync_on_start == true)
end

function _M.poll_interval(s)
  if s.event_listener.type ~= "POLLING" then return nil end
  return s.event_listener.interval
end

function _M.schedule_interval(s)
  return s.scheduled_resync_interval and s.scheduled_resync_interval * 60 or nil
end

-- The last resync Port knows of, as the first watermark.
local function first_mark(eng)
  local integ = eng.port:get_integration(eng.settings.integration.identifier)
  local st = type(integ) == "table" and type(integ.resyncState) == "table"
    and otime.parse_iso(integ.resyncState.updatedAt)
  return st or -huge
end

function _M.poll(eng, mark)
  local r, err = eng.port:get_resync_request(eng.settings.integration.identifier)
  if r == nil then
    log.warning("could not check Port's resync requests: %s", tostring(err))
    return nil
  end
  local at = type(r) == "table" and otime.parse_iso(r.updatedAt)
  if not at then return nil end
  local m = mark.get()
  if type(m) ~= "number" then
    m = first_mark(eng)
    mark.set(m)
  end
  if at <= m then return nil end
  log.info("Port asked for a resync (%s)", r.updatedAt)
  mark.set(at)
  return r.updatedAt
end

-- }====================

-- {==================== the standalone listener ====================

local Listener = {}
Listener.__index = Listener

function _M.new(eng)
  local s = eng.settings
  local l = setmetatable({ eng = eng, type = s.event_listener.type, resyncs = 0,
    pending = false, stopping = false, watermark = nil }, Listener)
  l.mark = { get = function() return l.watermark end,
             set = function(v) l.watermark = v end }
  return l
end

-- Ask for a resync; a running one is aborted for it. Returns whether one
-- was running.
function Listener:request_resync()
  self.pending = true
  return self.eng:request_abort()
end

-- Stop after the running resync (aborted). Returns whether one was running.
function Listener:stop()
  self.stopping = true
  return self.eng:request_stop()
end

-- GET /health and POST /resync, before the integration's own routes.
function Listener:add_routes(router)
  router:route("GET", "/health", function()
    local last = self.last
    return 200, { ok = true, listener = self.type, running = self.eng:running() ~= nil,
      resyncs = self.resyncs,
      http = self.server and self.server:stats() or nil,   -- sail's connection counters
      live_events = self.eng.event_queue and self.eng.event_queue:stats() or nil,
      last_resync = last and { status = integration.status_of(last), created = last.created,
        updated = last.updated, unchanged = last.unchanged, deleted = last.deleted,
        failed = last.failed } or json.null }
  end, { first = true, raw_body = true, priority = true })
  router:route("POST", "/resync", function()
    if self.stopping then
      return 503, { ok = false, error = "stopping", message = "the integration is stopping" }
    end
    local aborting = self:request_resync()
    log.info("resync requested over HTTP%s", aborting and " (aborting the running one)" or "")
    return 202, { ok = true, aborted_running = aborting }
  end, { first = true, raw_body = true })
end

function Listener:resync()
  local ok, summary = pcall(self.eng.sync_raw_all, self.eng)
  if not ok then
    log.error("resync failed: %s", tostring(summary))
    summary = { ok = false, created = 0, updated = 0, unchanged = 0, deleted = 0,
                failed = 0, errors = { tostring(summary) } }
  end
  self.last = summary
  self.resyncs = self.resyncs + 1
  return summary
end

-- Wait for the next thing to do: a resync asked for, a stop, or `due`.
local function wait_until(self, due)
  local eng, now = self.eng, self.eng.clock
  local wait_ms = due == huge and 60000 or max(0, (due - now()) * 1000)
  eng:await(function()
    return self.pending or self.stopping or now() >= due
  end, floor(wait_ms) + 1)
end

-- Resync as the rules say until stop().
function Listener:run()
  local s, now = self.eng.settings, self.eng.clock
  local interval, scheduled = _M.poll_interval(s), _M.schedule_interval(s)
  local next_poll = interval and now() or huge
  local next_scheduled = scheduled and now() + scheduled or huge
  if _M.resync_on_start(s) then self.pending = true end
  while not self.stopping do
    if self.pending then
      self.pending = false
      self:resync()
    else
      wait_until(self, min(next_poll, next_scheduled))
      if not self.stopping and now() >= next_poll then
        next_poll = now() + interval
        if _M.poll(self.eng, self.mark) then self.pending = true end
      end
      if now() >= next_scheduled then
        next_scheduled = now() + scheduled
        self.pending = true
      end
    end
  end
  -- the runner says "stopped" once what it waits for at the stop is over
  log.debug("the listener stopped")
end

-- }====================

return _M
