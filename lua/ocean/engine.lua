-- ocean.engine: the object that owns every piece of an integration's
-- state, so that several engines can live in one Lua state (one per nginx
-- worker, or two integrations in one program). The `ocean` facade keeps a
-- default one; nothing in the framework keeps state at module level.
--
--   local engine = require "ocean.engine"
--   local eng = engine.new()                    -- unconfigured: no Port yet
--   assert(eng:configure { settings = s })       -- or {path=, env=, overrides=}
--   eng:on_resync("repo", fn); eng.router.post("/hook", fn)
--   local summary = eng:sync_raw_all()
--   eng:close()
--
-- What an engine owns (fields, read-only outside this file unless said):
--   settings        ocean.config's settings (nil until configured)
--   loop            the event loop (ocean.core Loop): libcurl, timers,
--                   signals; also made on demand for ocean.http alone
--   port            the Port client (ocean.port) on that loop
--   registry        resync functions and hooks: {kinds = {[kind] = {fn}},
--                   all = {fn}, on_start, on_resync_start,
--                   on_resync_complete}
--   router          the integration's routes (ocean.router instance)
--   mapping_cache   compiled jq programs by resource (ocean.mapping cache)
--   secrets         values the log masks while this engine lives
--   servers         HTTP servers waited on together with the loop
--   events          signals read by the loop, until take_events()
--   live            the live session (ocean.core Live, made on first use by
--                   live_session()): every live operation goes through it
--                   (docs/live-events.md)
-- and, through methods: the mapping fetched for live events (60 s), the
-- wait hook, the running run and the abort state.
--
-- Errors: configure returns nil, err; the operations return reports (see
-- docs/errors.md); misuse raises.
local core = require "ocean.core"
local config = require "ocean.config"
local log = require "ocean.log"
local mapping = require "ocean.mapping"
local ops = require "ocean.ops"
local port_mod = require "ocean.port"
local router_mod = require "ocean.router"
local runtime = require "ocean.runtime"
local sync = require "ocean.sync"

local type, error, ipairs, pcall, tostring, setmetatable =
  type, error, ipairs, pcall, tostring, setmetatable

local _M = {}

local Engine = {}
Engine.__index = Engine
_M.Engine = Engine

local APP_CONFIG_TTL = 60          -- seconds, as Ocean's cache
local HTTP_ONLY_CONCURRENCY = 8    -- the loop of an engine without Port

local function new_registry()
  return { kinds = {}, all = {}, on_start = {}, on_resync_start = {},
           on_resync_complete = {} }
end

-- A new engine, unconfigured unless opts say how (then as configure:
-- nil, err when the settings are wrong).
function _M.new(opts)
  local self = setmetatable({
    registry = new_registry(),
    router = router_mod.new(),
    mapping_cache = mapping.new_cache(),
    secrets = {},
    servers = {},
    events = {},
    live = nil,
    abort_requested = false,
    pauses = 0,                  -- Engine:pause calls so far (long work yielded)
  }, Engine)
  log.watch(self.secrets)
  self.on_events = function(events)
    for i = 1, #events do self.events[#self.events + 1] = events[i] end
  end
  if opts then
    local ok, err = self:configure(opts)
    if not ok then
      self:close()
      return nil, err
    end
  end
  return self
end

-- {==================== configuration ====================

-- Wall-clock seconds (ngx.now() inside nginx: the worker's cached time).
function Engine.clock()
  local ngx = _G.ngx
  if type(ngx) == "table" and ngx.now then
    if ngx.update_time then ngx.update_time() end
    return ngx.now()
  end
  return core.now()
end

local function port_client(self, s)
  return pcall(port_mod.new, {
    loop = self.loop,
    await = function(job) return self:await(job) end,
    base_url = s.port.base_url,
    client_id = s.port.client_id,
    client_secret = s.port.client_secret,
    integration_type = s.integration.type,
    integration_identifier = s.integration.identifier,
    integration_version = s.integration.version,
    verify_tls = s.port.verify_tls,
    bulk_max_entities = s.upsert_batch_max_length,
    bulk_max_bytes = s.upsert_batch_max_bytes,
    delete_batch = math.min(s.delete_batch_max or 100, 100),
    retry = s.port.retry,
  })
end

-- Close the live session, the loop and the Port client (the
-- registrations stay).
local function disconnect(self)
  if self.live then pcall(self.live.close, self.live) end
  self.live = nil
  if self.port then pcall(self.port.close, self.port) end
  if self.loop then pcall(self.loop.close, self.loop) end
  self.port, self.core_port, self.loop = nil, nil, nil
  self.app_config_cache = nil
end

-- Configure (again): opts.settings (as ocean.config.load returns them) or
-- opts.path/env/overrides for ocean.config.load. Opens a new loop and
-- Port client (closing the previous ones). Returns self | nil, err.
function Engine:configure(opts)
  opts = opts or {}
  local s = opts.settings
  if not s then
    local err
    s, err = config.load { path = opts.path, env = opts.env, overrides = opts.overrides }
    if not s then return nil, err end
  end
  local ok, perr = config.require_port(s)
  if not ok then return nil, perr end
  for _, v in ipairs(s.secrets or {}) do log.add_secret(v, self.secrets) end
  log.add_secret(s.port.client_secret, self.secrets)
  if s.log_level then log.set_level(s.log_level) end
  disconnect(self)
  local lerr
  self.loop, lerr = core.loop_new { concurrency = s.port.concurrency }
  if not self.loop then return nil, lerr end
  local good, client, cerr = port_client(self, s)
  if not good or not client then
    disconnect(self)
    return nil, tostring(good and cerr or client)
  end
  self.settings, self.port, self.core_port = s, client, client.core
  return self
end

function Engine:configured()
  return self.port ~= nil
end

-- Configured, or configured now from the OCEAN__* environment and the
-- current directory; raises when that fails (level: the caller's caller).
function Engine:ensure_configured(level)
  if self.port then return self end
  local ok, err = self:configure {}
  if not ok then
    error("ocean is not configured: " .. tostring(err)
      .. " (call ocean.init{...} or set the OCEAN__* variables)", (level or 2) + 1)
  end
  return self
end

-- The loop (one of its own when the engine has no Port configuration:
-- ocean.http works without one).
function Engine:get_loop()
  if not self.loop then
    self.loop = assert(core.loop_new { concurrency = HTTP_ONLY_CONCURRENCY })
  end
  return self.loop
end

-- ocean.http's client on this engine.
function Engine:http()
  if not self.http_client then self.http_client = require("ocean.http").new(self) end
  return self.http_client
end

-- Close everything this engine opened; forget its secrets. Idempotent.
function Engine:close()
  disconnect(self)
  log.unwatch(self.secrets)
end

-- }====================

-- {==================== waiting ====================

-- Wait for a Job (its result), or until pred() is true (true), serving
-- this engine's servers and wait hook between waits. timeout_ms: nil,
-- "timeout" after that long.
function Engine:await(what, timeout_ms)
  if type(what) == "function" then
    local pred = what
    what = function() if pred() then return true end end
  end
  return runtime.await(self:get_loop(), what, {
    timeout_ms = timeout_ms, servers = self.servers[1] and self.servers or nil,
    between_waits = self.wait_hook, on_events = self.on_events })
end

-- Let the rest of the program run for a moment, between two slices of
-- long work (the live operations' mapping): inside nginx the worker
-- yields; standalone one turn of the loop and the wait hook. Counted in
-- eng.pauses.
function Engine:pause()
  self.pauses = self.pauses + 1
  return runtime.pause(self:get_loop(), {
    servers = self.servers[1] and self.servers or nil,
    between_waits = self.wait_hook, on_events = self.on_events })
end

-- fn(engine) runs after every blocking wait (the runner serves its HTTP
-- requests there); nil removes it.
function Engine:set_wait_hook(fn)
  self.wait_hook = fn and function() return fn(self) end or nil
end

-- A C server (ocean.core Server) waited on with the loop.
function Engine:add_server(c)
  self.servers[#self.servers + 1] = c
end

function Engine:remove_server(c)
  for i, x in ipairs(self.servers) do
    if x == c then table.remove(self.servers, i) return end
  end
end

-- The events (signals) read by the loop so far, and forget them.
function Engine:take_events()
  local e = self.events
  self.events = {}
  return e
end

-- }====================

-- {==================== runs and aborts ====================

-- The outermost run (a resync, a sync): an operation started while
-- another runs (a webhook's ocean.sync during a resync) does not take its
-- place, or the resync could no longer be aborted.
function Engine:begin_run(run)
  if self.run ~= nil then return end
  self.abort_requested = false
  self.run = run
end

function Engine:end_run(run)
  if self.run == run then self.run = nil end
end

function Engine:running()
  return self.run
end

-- Ask the running run to stop at its next wait (nothing is deleted).
-- Returns true when a run was running.
function Engine:request_abort()
  if self.run == nil then return false end
  self.abort_requested = true
  return true
end

-- policy(run) -> true (stop), false (go on) or nil (the default rule):
-- how the OpenResty adapter stops a resync another worker superseded.
function Engine:set_abort_policy(policy)
  self.abort_policy = policy
end

function Engine:should_abort(run)
  if self.abort_policy then
    local v = self.abort_policy(run)
    if v ~= nil then return v end
  end
  return self.abort_requested and self.run == run
end

-- }====================

-- {==================== registrations ====================

local function check_fn(fn, what)
  if type(fn) ~= "function" then
    error(what .. ": expected a function, got " .. type(fn), 3)
  end
end

function Engine:on_resync(kind, fn)
  local r = self.registry
  if fn == nil and type(kind) == "function" then
    r.all[#r.all + 1] = kind
    return kind
  end
  if type(kind) ~= "string" or kind == "" then
    error("on_resync: expected a kind (string) and a function", 2)
  end
  check_fn(fn, "on_resync")
  local list = r.kinds[kind] or {}
  list[#list + 1] = fn
  r.kinds[kind] = list
  return fn
end

for _, name in ipairs { "on_start", "on_resync_start", "on_resync_complete" } do
  Engine[name] = function(self, fn)
    check_fn(fn, name)
    local list = self.registry[name]
    list[#list + 1] = fn
    return fn
  end
end

-- The functions that produce kind: its own, then those for every kind.
function Engine:resync_functions(kind)
  local fns = {}
  for _, fn in ipairs(self.registry.kinds[kind] or {}) do fns[#fns + 1] = fn end
  for _, fn in ipairs(self.registry.all) do fns[#fns + 1] = fn end
  return fns
end

-- }====================

-- {==================== the mapping ====================

function Engine:parse_items(resource, items, opts)
  return mapping.parse_items(resource, items, opts, self.mapping_cache)
end

-- The port app config: opts.app_config, or Port's, fetched at most every
-- 60 s (live events don't refetch every time). app | nil, err.
function Engine:app_config(opts)
  if opts and opts.app_config then return opts.app_config end
  local now = self.clock()
  local c = self.app_config_cache
  if c and now - c.at < APP_CONFIG_TTL then return c.app end
  local app, err = sync.fetch_app_config(self)
  if not app then return nil, err end
  self.app_config_cache = { app = app, at = now }
  return app
end

-- }====================

-- {==================== operations ====================

function Engine:sync_raw_all(opts)
  return sync.sync_raw_all(self:ensure_configured(2), opts)
end

function Engine:sync(entities, opts)
  return ops.sync(self:ensure_configured(2), entities, opts)
end

-- The live session (one per engine), made on first use.
function Engine:live_session()
  if not self.live then
    self:ensure_configured(3)
    local s = self.settings
    local le = type(s.live_events) == "table" and s.live_events or {}
    self.live = core.live_new(self.loop, self.core_port, {
      window_ms = le.window_ms, batch_max = s.upsert_batch_max_length,
      batch_max_bytes = s.upsert_batch_max_bytes,
      delete_batch = math.min(s.delete_batch_max or 100, 100) })
  end
  return self.live
end

-- Submit a live operation (ops.names: register_raw, unregister_raw,
-- update_raw_diff, sync_raw_results, register, unregister, update_diff)
-- to the live session: its ocean.Job, whose result is this caller's
-- report (docs/live-events.md). Waits for the mapping, never for Port.
function Engine:submit(name, ...)
  return ops.submit(self:ensure_configured(2), name, ...)
end

-- The ownership index of a finished sync session (a resync's) becomes the
-- live session's; true when adopted.
function Engine:adopt_owned(session)
  if not self.port then return false end
  return self:live_session():adopt(session)
end

-- The live session's counters (docs/live-events.md).
function Engine:live_stats()
  if not self.port then return nil end
  return self:live_session():stats()
end

for _, name in ipairs(ops.names) do
  local op = ops[name]
  Engine[name] = function(self, ...)
    return op(self:ensure_configured(2), ...)
  end
end

-- }====================

return _M
