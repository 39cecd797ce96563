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
--                   on_resync_complete, selectors = {[kind] = fields}}
--   router          the integration's routes (ocean.router instance)
--   mapping_cache   compiled jq programs by resource (ocean.mapping cache)
--   secrets         values the log masks while this engine lives
--   servers         HTTP servers waited on together with the loop
--   events          signals read by the loop, until take_events()
--   scheduler       the tasks on the loop, standalone (ocean.scheduler):
--                   every wait of a task yields to it
--   cancelled       light threads of nginx cancelled by ocean.gather
--                   (weak keys)
--   webhooks        the webhook processors by path (ocean.webhook)
--   event_queue     the durable queue of live events (ocean.event_queue),
--                   once open_live_events opened it
--   live            the live session (ocean.core Live, made on first use by
--                   live_session()): every live operation goes through it
--                   (docs/live-events.md)
--   caches          ocean.cache objects scoped to each resync: the
--                   engine's own (eng:cache(), behind
--                   ocean.cache_iterator_result/cache_coroutine_result)
--                   and those added with eng:add_cache(c); sync_raw_all
--                   calls their begin_resync/end_resync around the run
--   metrics         {reg, m} (ocean.metrics.engine_set) when
--                   OCEAN__METRICS__ENABLED, else nil: fed from the loop's
--                   request/retry events and each resync's summary
-- and, through methods: the mapping fetched for live events (60 s), the
-- wait hook, the running run and the abort state.
--
-- Errors: configure returns nil, err; the operations return reports (see
-- docs/errors.md); misuse raises.
local cache_mod = require "ocean.cache"
local core = require "ocean.core"
local config = require "ocean.config"
local event_queue = require "ocean.event_queue"
local gather = require "ocean.gather"
local journal = require "ocean.journal"
local log = require "ocean.log"
local mapping = require "ocean.mapping"
local metrics = require "ocean.metrics"
local netlog = require "ocean.netlog"
local ops = require "ocean.ops"
local port_mod = require "ocean.port"
local router_mod = require "ocean.router"
local runtime = require "ocean.runtime"
local scheduler = require "ocean.scheduler"
local selector = require "ocean.selector"
local sync = require "ocean.sync"
local webhook = require "ocean.webhook"

local type, error, ipairs, pcall, tostring, setmetatable, getmetatable =
  type, error, ipairs, pcall, tostring, setmetatable, getmetatable

local _M = {}

local Engine = {}
Engine.__index = Engine
_M.Engine = Engine

local APP_CONFIG_TTL = 60          -- seconds, as Ocean's cache
local HTTP_ONLY_CONCURRENCY = 8    -- the loop of an engine without Port

local function new_registry()
  return { kinds = {}, all = {}, on_start = {}, on_resync_start = {},
           on_resync_complete = {}, selectors = {} }
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
    caches = {},
    abort_requested = false,
    stop_requested = false,
    pauses = 0,                  -- Engine:pause calls so far (long work yielded)
  }, Engine)
  log.watch(self.secrets)
  -- signals are kept for take_events(); retries and requests are logged
  -- (ocean.netlog) as soon as the loop reports them
  self.on_events = function(events)
    local base = self.settings and self.settings.port and self.settings.port.base_url
    for i = 1, #events do
      local ev = events[i]
      if netlog.say(ev, base) then
        if self.metrics then metrics.feed_net_event(self.metrics, ev, base, self:metrics_kind()) end
      else
        self.events[#self.events + 1] = ev
      end
    end
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
    between_steps = function() if self.step_hook then self.step_hook() end end,
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

-- Wall-clock seconds (gettimeofday; inside nginx too: ngx.update_time()
-- would move the cached clock runtime.give_way reads).
function Engine.clock()
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
    -- Ocean's client_timeout is its Port client's timeout too
    timeout_ms = s.client_timeout and math.floor(s.client_timeout * 1000) or nil,
  })
end

-- Close the live session, the loop and the Port client (the
-- registrations stay).
local function disconnect(self)
  if self.live then pcall(self.live.close, self.live) end
  self.live = nil
  if self.port then pcall(self.port.close, self.port) end
  if self.loop then pcall(self.loop.close, self.loop) end
  self.port, self.core_port, self.loop, self.recording = nil, nil, nil, nil
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
  self:record_requests()
  local good, client, cerr = port_client(self, s)
  if not good or not client then
    disconnect(self)
    return nil, tostring(good and cerr or client)
  end
  self.settings, self.port, self.core_port = s, client, client.core
  if s.metrics and s.metrics.enabled and not self.metrics then self:enable_metrics() end
  return self
end

-- Keep Prometheus metrics (OCEAN__METRICS__ENABLED does it at configure)
-- in `store` (default: a Lua table; inside nginx, the shared dict's
-- metrics.shared_dict_store). Returns self.metrics ({reg, m}).
function Engine:enable_metrics(store)
  self.metrics = metrics.engine_set(metrics.new { store = store or metrics.table_store() })
  self:record_requests()
  return self.metrics
end

-- The kind label of what runs now: the resource's kind-index (Ocean's
-- "repository-0") while a resync function runs, else nil.
function Engine:metrics_kind()
  local ev = self.resync_event      -- the loop's events come to whoever waits
  if ev and ev.kind and ev.resource_index then
    return tostring(ev.kind) .. "-" .. tostring(ev.resource_index - 1)
  end
  return nil
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
    self:record_requests()
  end
  return self.loop
end

-- The loop reports every retry (logged at WARNING), and at DEBUG every
-- request (ocean.netlog; also counted when metrics are on); checked again before each wait, so that a log
-- level changed later takes effect.
function Engine:record_requests()
  -- every completed request when the log shows them or the metrics count them
  local debug = log.enabled("DEBUG") or self.metrics ~= nil
  if self.loop and self.recording ~= debug then
    self.loop:record { retries = true, requests = debug }
    self.recording = debug
  end
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
-- Once request_stop() was called (a signal to the runner), no wait goes
-- on: a job still pending is cancelled (its retries with it) and await
-- returns nil, "stopped"; a predicate is asked first (a run's own check
-- raises its abort there). So the start-up's Port calls, the login's
-- retries, on_start hooks and the listener's waits all end within one
-- wait of the signal. Exempt: the waits inside despite_stop, and those of
-- a task spawned stop_exempt (a live event being applied: it gets the
-- runner's grace period) and of the tasks it spawned.
local STOPPED = {}

function Engine:await(what, timeout_ms)
  local job
  local task = self.scheduler:current()
  local function stopped()
    return self.stop_requested and not self.stop_exempt and not (task and task.stop_exempt)
  end
  if type(what) == "function" then
    local pred = what
    what = function()
      self:tick()
      if pred() then return true end
      if stopped() then return STOPPED end
    end
  elseif getmetatable(what) == core.job_mt then
    job = what
    what = function()
      self:tick()
      if job:done() then return true end
      if stopped() then
        job:cancel()
        return STOPPED
      end
    end
  end                           -- anything else: runtime.await says so
  self:record_requests()
  -- a task of the scheduler yields to it; the main thread runs it nested
  -- (ocean.scheduler), serving the servers and the wait hook between waits
  local ok, v, err = pcall(runtime.await, self:get_loop(), what, {
    timeout_ms = timeout_ms, scheduler = self.scheduler, is_cancelled = self.is_cancelled,
    on_events = self.on_events })
  if not ok then
    if job and v == runtime.CANCELLED then job:cancel() end
    error(v, 0)
  end
  if v == STOPPED then return nil, "stopped" end
  if job and v ~= nil then return job:result() end
  return v, err
end

-- Between two waits: the running run's progress line when it is due.
function Engine:tick()
  local run = self.run
  if run and run.tick then run:tick() end
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

-- Wait `seconds` without holding anyone up (0: give the others a turn,
-- and the loop, the servers and the signals one wait). Once the engine
-- is stopping (request_stop) it raises "sleep stopped: the integration is
-- stopping" in code the stop is not exempt for (see await): a resync
-- generator that sleeps between pieces of work ends at its next sleep.
function Engine:sleep(seconds)
  runtime.sleep(self:get_loop(), seconds, {
    scheduler = self.scheduler, is_cancelled = self.is_cancelled, on_events = self.on_events })
  if self.stop_requested and not self.stop_exempt then
    local task = self.scheduler:current()
    if not (task and task.stop_exempt) then
      error("sleep stopped: the integration is stopping", 0)
    end
  end
  return true
end

-- Run fn(...) as a task of this engine's scheduler (standalone): it
-- starts at the next wait of whoever runs the loop. opts: {name=, group=, quiet=,
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

-- Let the rest of the program run for a moment, between two slices of
-- long work (the live operations' and a resync's mapping), counted in
-- eng.pauses. Inside nginx the worker yields (runtime.pause); in a task
-- of the scheduler (an `ocean sail` request, the listener's resync) the
-- task yields to the scheduler, which runs the others and the loop; in
-- the main thread the scheduler runs nested for one turn. It never runs
-- the wait hook from inside a task: that would start requests under the
-- feet of the task whose mapping is sliced.
function Engine:pause()
  self.pauses = self.pauses + 1
  if runtime.in_nginx() then
    return runtime.pause(self:get_loop(), { on_events = self.on_events })
  end
  if not self.scheduler:can_yield() then    -- the main thread: one loop turn
    runtime.pause(self:get_loop(), { servers = self.servers[1] and self.servers or nil,
      between_waits = self.wait_hook, on_events = self.on_events })
  end
  self:sleep(0)
end

-- fn(engine) runs after every blocking wait (the runner serves its HTTP
-- requests there, outside the event of the resync function that waits:
-- ocean.event is nil for them); nil removes it.
function Engine:set_wait_hook(fn)
  self.wait_hook = fn and function()
    local ev = self.current_event
    self.current_event = nil
    fn(self)
    self.current_event = ev
  end or nil
end

-- fn() runs between two task steps, at least every scheduler.POLL_MS
-- while tasks run (standalone; never inside a task, never waiting): the
-- runner answers priority requests (the health probe) there; nil removes
-- it.
function Engine:set_step_hook(fn)
  self.step_hook = fn
end

-- {==================== the current event ====================

-- Ocean's event context: while the resync functions of a resource run,
-- ocean.event gives {type = "resync", resync_id=, kind=, resource_index=,
-- resource_config= (the resource as written in the mapping: selector,
-- port, ...; a copy), port_app_config=}. fn(...) runs with it; returns
-- what fn returns (an error leaves it to end_run to clear).
-- A task of the scheduler keeps its own event: the requests that run
-- while a resync function waits in another task see none.
local function holder(self)
  return self.scheduler:current() or self
end

local function restore(h, prev, ...)
  h.current_event = prev
  return ...
end

local function restore_all(self, h, prev, prev_resync, ...)
  self.resync_event = prev_resync
  return restore(h, prev, ...)
end

function Engine:with_event(event, fn, ...)
  local h = holder(self)
  local prev, prev_resync = h.current_event, self.resync_event
  h.current_event, self.resync_event = event, event
  return restore_all(self, h, prev, prev_resync, fn(...))
end

function Engine:event()
  return holder(self).current_event
end

-- }====================

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
  if self.run == run then
    self.run = nil
    holder(self).current_event, self.resync_event = nil, nil
  end
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

-- Stop for good (the runner got SIGTERM/SIGINT): the running run is
-- aborted, and every wait from now on ends at once (see await). Returns
-- true when a run was running.
function Engine:request_stop()
  self.stop_requested = true
  return self:request_abort()
end

function Engine:stopping()
  return self.stop_requested == true
end

-- fn(...) with its waits exempt from a stop request: what must still
-- reach Port once stopping (the run's final state, "aborted"). A second
-- signal still exits at once (ocean sail). Returns what fn returns;
-- raises what it raises.
local function unexempt(self, prev, ok, ...)
  self.stop_exempt = prev
  if not ok then error((...), 0) end
  return ...
end

function Engine:despite_stop(fn, ...)
  local prev = self.stop_exempt
  self.stop_exempt = true
  return unexempt(self, prev, pcall(fn, ...))
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

-- The shape of kind's custom selector fields (ocean.selector): every
-- resync checks the mapping's resources of that kind against it.
function Engine:selector_schema(kind, fields)
  if type(kind) ~= "string" or kind == "" then
    error("selector_schema: expected a kind (string) and a table of fields", 2)
  end
  selector.check_field_specs(fields, kind)
  self.registry.selectors[kind] = fields
  return fields
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
-- integration folder), suffix (a name's suffix), shared (nginx: one
-- journal for every worker, one consumer; ocean.event_queue), worker
-- (nginx: the worker's pid, naming it in the log and the metrics), adopt
-- (nginx). Concurrency and attempts from settings.live_events. Returns the
-- queue, or nil, err.
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
    stall_seconds = le.stall_seconds,
    adopt = opts.adopt, base = base, shared = opts.shared,
    worker = opts.worker and tostring(opts.worker) or opts.suffix and tostring(opts.suffix) })
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
  self:set_app_config(app)
  return app
end

-- The mapping live events use for the next 60 s: every resync sets the
-- one it read, so that a webhook after it maps as the resync did.
function Engine:set_app_config(app)
  self.app_config_cache = { app = app, at = self.clock() }
end

-- }====================

-- {==================== operations ====================

-- The engine's own cache (ocean.cache, memory only), made on first use.
function Engine:cache()
  if not self.own_cache then
    self.own_cache = cache_mod.new()
    self:add_cache(self.own_cache)
  end
  return self.own_cache
end

-- Scope an ocean.cache object (e.g. one with a disk `dir`) to this
-- engine's resyncs. Returns c.
function Engine:add_cache(c)
  if type(c) ~= "table" or type(c.begin_resync) ~= "function" then
    error("add_cache: expected an ocean.cache object", 2)
  end
  for _, have in ipairs(self.caches) do
    if have == c then return c end
  end
  self.caches[#self.caches + 1] = c
  return c
end

-- A resync's scope over every cache: memory entries live from its start
-- to its end (completed, failed or aborted alike).
local function caches_scope(self, begin)
  for _, c in ipairs(self.caches) do
    if begin then c:begin_resync() else c:end_resync() end
  end
end

function Engine:sync_raw_all(opts)
  local t0 = self.clock()
  self:ensure_configured(2)
  caches_scope(self, true)
  local ok, summary = pcall(sync.sync_raw_all, self, opts)
  caches_scope(self, false)
  if not ok then error(summary, 0) end
  if self.metrics and not (opts and opts.plan) and type(summary) == "table" then
    metrics.feed_resync(self.metrics, summary, self.clock() - t0)
  end
  return summary
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
