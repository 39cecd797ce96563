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
--   scheduler       the tasks on the loop, standalone (ocean.scheduler):
--                   every wait of a task yields to it
--   cancelled       light threads of nginx cancelled by ocean.gather
--                   (weak keys)
--   live            the live-event session (not used yet: live events run
--                   one session per operation)
--   webhooks        the webhook processors by path (ocean.webhook)
--   event_queue     the durable queue of live events (ocean.event_queue),
--                   once open_live_events opened it
-- and, through methods: the mapping fetched for live events (60 s), the
-- wait hook, the running run and the abort state.
--
-- Errors: configure returns nil, err; the operations return reports (see
-- docs/errors.md); misuse raises.
local core = require "ocean.core"
local config = require "ocean.config"
local event_queue = require "ocean.event_queue"
local gather = require "ocean.gather"
local journal = require "ocean.journal"
local log = require "ocean.log"
local mapping = require "ocean.mapping"
local ops = require "ocean.ops"
local port_mod = require "ocean.port"
local router_mod = require "ocean.router"
local runtime = require "ocean.runtime"
local scheduler = require "ocean.scheduler"
local sync = require "ocean.sync"
local webhook = require "ocean.webhook"

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
    webhooks = webhook.new_registry(),
    mapping_cache = mapping.new_cache(),
    secrets = {},
    servers = {},
    events = {},
    live = nil,
    abort_requested = false,
  }, Engine)
  log.watch(self.secrets)
  self.on_events = function(events)
    for i = 1, #events do self.events[#self.events + 1] = events[i] end
  end
  self.cancelled = setmetatable({}, { __mode = "k" })
  self.is_cancelled = function()
    local co = coroutine.running()
    return co ~= nil and self.cancelled[co] == true
  end
  self.scheduler = scheduler.new {
    loop = function() return self:get_loop() end, servers = self.servers,
    on_events = self.on_events,
    between_waits = function() if self.wait_hook then self.wait_hook() end end,
  }
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

-- Close the loop and the Port client (the registrations stay).
local function disconnect(self)
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
  if self.event_queue then
    self.event_queue:close()
    self.event_queue = nil
  end
  disconnect(self)
  log.unwatch(self.secrets)
end

-- }====================

-- {==================== waiting ====================

-- Wait for a Job (its result), or until pred() is true (true): in a task
-- of the engine's scheduler the task yields and the others run; inside
-- nginx the request or timer yields to nginx (ocean.runtime). The
-- engine's servers and wait hook are served between waits. timeout_ms:
-- nil, "timeout" after that long. A cancelled wait raises
-- runtime.CANCELLED.
function Engine:await(what, timeout_ms)
  if type(what) == "function" then
    local pred = what
    what = function() if pred() then return true end end
  end
  return runtime.await(self:get_loop(), what, {
    timeout_ms = timeout_ms, scheduler = self.scheduler, is_cancelled = self.is_cancelled,
    on_events = self.on_events })
end

-- Wait for the next self:signal(cond) (cond: any table): its value (true
-- by default), or nil, "timeout" after timeout_ms. Standalone, a task
-- waiting so costs nothing until the signal (await's predicate is polled
-- after every loop wait); inside nginx it is polled like any wait.
function Engine:wait_signal(cond, timeout_ms)
  if runtime.in_nginx() then
    local seen = cond.signals or 0
    local v, err = self:await(function() return (cond.signals or 0) > seen end, timeout_ms)
    if v then return cond.value end
    return v, err
  end
  local deadline = timeout_ms and core.monotonic_ms() + timeout_ms
  local v, err = self.scheduler:wait_signal(cond, deadline)
  if err == runtime.CANCELLED then error(runtime.CANCELLED, 0) end
  return v, err
end

function Engine:signal(cond, v)
  self.scheduler:signal(cond, v)
end

-- Wait `seconds` without holding anyone up (0: give the others a turn).
function Engine:sleep(seconds)
  return runtime.sleep(self:get_loop(), seconds, {
    scheduler = self.scheduler, is_cancelled = self.is_cancelled, on_events = self.on_events })
end

-- Run fn(...) as a task of this engine's scheduler (standalone): it
-- starts at the next wait of whoever runs the loop. opts: {name=, quiet=,
-- eager=} (eager: it runs at once, until its first wait).
function Engine:spawn(fn, opts)
  return self.scheduler:spawn(fn, opts)
end

-- ocean.gather / ocean.map on this engine (see ocean.gather).
function Engine:gather(fns, opts)
  return gather.gather(self, fns, opts)
end

function Engine:map(items, fn, opts)
  return gather.map(self, items, fn, opts)
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

-- ocean.add_webhook_processor (see ocean.webhook).
function Engine:add_webhook_processor(path, processor)
  return webhook.add(self, path, processor)
end

-- Open the durable queue of live events that the webhook processors'
-- routes append to (ocean.event_queue); start it with
-- engine.event_queue:start(). opts: path (the journal file; default
-- ocean.journal.path(settings, {folder=, suffix=})), folder (the
-- integration folder), suffix (nginx: the worker's pid), adopt (nginx).
-- Concurrency and attempts from settings.live_events. Returns the queue,
-- or nil, err.
function Engine:open_live_events(opts)
  opts = opts or {}
  if self.event_queue then return self.event_queue end
  local s = self.settings or {}
  local path, err = opts.path
  if not path then
    path, err = journal.path(s, { folder = opts.folder, suffix = opts.suffix })
    if not path then return nil, err end
  end
  local le = type(s.live_events) == "table" and s.live_events or {}
  local base = (journal.path(s, { folder = "." }) or ""):match("([^/]*)%.sqlite3$")
  local q, qerr = event_queue.open(self, {
    path = path, concurrency = le.concurrency, max_attempts = le.max_attempts,
    adopt = opts.adopt, base = base })
  if not q then return nil, qerr end
  self.event_queue = q
  return q
end

-- }====================

-- {==================== the mapping ====================

function Engine:parse_items(resource, items, opts)
  return mapping.parse_items(resource, items, opts, self.mapping_cache)
end

-- The port app config: opts.app_config, or Port's, fetched at most every
-- 60 s (live events don't refetch every time). One fetch at a time: the
-- callers that come while it runs (a burst of webhooks) wait for its
-- result instead of fetching too. app | nil, err.
function Engine:app_config(opts)
  if opts and opts.app_config then return opts.app_config end
  local now = self.clock()
  local c = self.app_config_cache
  if c and now - c.at < APP_CONFIG_TTL then return c.app end
  local f = self.app_config_fetch
  if f then
    if not f.done then self:wait_signal(f) end
    if f.app then return f.app end
    return nil, f.err
  end
  f = {}
  self.app_config_fetch = f
  local ok, app, err = pcall(sync.fetch_app_config, self)
  self.app_config_fetch = nil
  if not ok then                  -- raised (a cancelled wait): the waiters
    f.err, f.done = tostring(app), true -- get the reason, the caller the error
    self:signal(f)
    error(app, 0)
  end
  f.app, f.err, f.done = app, err, true
  self:signal(f)
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

for _, name in ipairs { "register_raw", "unregister_raw", "update_raw_diff",
                        "update_diff", "register", "unregister" } do
  local op = ops[name]
  Engine[name] = function(self, ...)
    return op(self:ensure_configured(2), ...)
  end
end

-- }====================

return _M
