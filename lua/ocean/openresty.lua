-- ocean.openresty: an integration inside nginx (ngx_lua + lua-resty-core,
-- LuaJIT). Webhook locations call ocean.register_raw & co, resyncs run in
-- the background, and the worker's event loop is never blocked.
--
--   http {
--     lua_shared_dict ocean 1m;                  -- locks and resync state
--     lua_package_path  "<repo>/lua/?.lua;<repo>/lua/?/init.lua;;";
--     lua_package_cpath "<repo>/build/luajit/?.so;;";
--     env OCEAN__PORT__CLIENT_ID; ...            -- the OCEAN__* settings
--     init_by_lua_block        { assert(require("ocean.openresty").init{ path = "/srv/it" }) }
--     init_worker_by_lua_block { require("ocean.openresty").init_worker() }
--     exit_worker_by_lua_block { require("ocean.openresty").exit_worker() }
--     server {
--       location /integration/ {
--         content_by_lua_block { require("ocean.openresty").handle() }
--       }
--     }
--   }
--
-- openresty.init{path=, env=, overrides=, dict=, metrics_dict=, prefix=, lock_ttl=,
--                lock_wait=} -> true | nil, err          (init_by_lua)
--   Settings as `ocean sail` reads them (ocean.config: overrides, then the
--   OCEAN__* variables, then path/config.yaml), then path/main.lua: its
--   registrations (on_resync, router routes, hooks). No network here; the
--   YAML library (which sets a global) is loaded here, not in a request.
--   dict: the lua_shared_dict's name (default "ocean"); metrics_dict: the
--   one for metrics (default "ocean_metrics", needed only with
--   OCEAN__METRICS__ENABLED=true); prefix: the
--   location (default "/integration"); lock_ttl: seconds the resync lock
--   lives unless refreshed (default 30); lock_wait: seconds a resync waits
--   for a running one to abort (default 300).
-- openresty.init_worker()                                (init_worker_by_lua)
--   One engine per worker (ocean.engine: the libcurl loop, the Port client
--   with its token and connections). A 0-delay timer then bootstraps the
--   integration in Port once (one worker does it, like `ocean sail`),
--   fetches the mapping and compiles every resource into the jq compile
--   cache, so that webhooks never pay jq_compile (~20 ms of blocked
--   worker per resource). Timers: OCEAN__SCHEDULED_RESYNC_INTERVAL
--   (minutes) resyncs on a schedule; the POLLING listener resyncs on start
--   (once per nginx start, not per reload) and when Port's resync request
--   is newer than the last one seen (every OCEAN__EVENT_LISTENER__INTERVAL
--   seconds); ONCE resyncs on start. One worker acts on each tick.
--   With webhook processors (ocean.add_webhook_processor), every worker
--   opens the one live-event journal (<dir>/<identifier>.sqlite3, shared,
--   docs/live-events.md) and appends the webhooks it answers; one worker
--   at a time (the holder of <dir>/<identifier>-consumer.lock) applies
--   them all, once ready, in timers, in the order they were answered, and
--   adopts the per-worker journals an older lua-ocean left.
-- openresty.handle()                                     (content_by_lua)
--   GET  <prefix>/health  200 {ok, pid, ready, running, generation,
--                         last_resync, mapping, live_events} (503 when the
--                         engine failed)
--   POST <prefix>/resync  202 at once; the resync runs in a timer
--   anything else        the integration's ocean.router routes (the body
--                         must be JSON: 400 otherwise; a failing handler: 500)
-- openresty.metrics()                                   (content_by_lua, location = /metrics)
--   With OCEAN__METRICS__ENABLED=true: Prometheus text of every worker's
--   samples (ocean.metrics over lua_shared_dict ocean_metrics, or
--   init{metrics_dict=}); else 404.
-- openresty.exit_worker()                                (exit_worker_by_lua)
--   Closes the worker's engine (loop, curl handles, Port client).
--
-- One resync at a time across all workers: a lock in the shared dict
-- (owner "pid:generation", a TTL refreshed while the resync runs, so a
-- crashed or killed worker can't leave it stuck) and a generation counter.
-- A resync request increments the generation; the running resync sees it
-- at its next wait (the engine's abort policy), stops, reports "aborted" to Port
-- (nothing is deleted) and releases the lock, which the newest request
-- then takes; requests superseded while waiting give up. On worker exit
-- (nginx -s reload / quit) a running resync aborts the same way.
local ocean = require "ocean"
local core = require "ocean.core"
local runtime = require "ocean.runtime"
local config = require "ocean.config"
local json = require "ocean.json"
local log = require "ocean.log"
local integration = require "ocean.integration"
local listener = require "ocean.listener"
local metrics = require "ocean.metrics"
local router = require "ocean.router"

local type, tostring, pcall, pairs, ipairs, error = type, tostring, pcall, pairs, ipairs, error
local ngx = _G.ngx

local _M = {
  DEFAULT_DICT = "ocean",
  DEFAULT_METRICS_DICT = "ocean_metrics",
  DEFAULT_PREFIX = "/integration",
  LOCK_TTL = 30,             -- s
  LOCK_WAIT = 300,           -- s
  LOCK_POLL = 0.05,          -- s between two attempts at the lock
  BOOT_RETRY = 5,            -- s before retrying a failed bootstrap/warm-up
}

local K_GEN, K_LOCK, K_LAST = "resync:gen", "resync:lock", "resync:last"

-- Set by init (in nginx's master, inherited by every worker).
local S
-- This worker: ctx, err (engine failure), ready, warm, active (the running
-- resync: {gen=, owner=, run=}).
local W = {}

local function now_ms() return core.monotonic_ms() end

local function in_nginx()
  return type(ngx) == "table" and type(ngx.get_phase) == "function"
end

local function check_phase(fn_name, phases)
  local phase = ngx.get_phase()
  if not phases[phase] then
    error(("openresty.%s: called in the %s phase"):format(fn_name, tostring(phase)), 3)
  end
end

-- {==================== init (master) ====================

function _M.init(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("openresty.init: expected a table", 2) end
  if not in_nginx() then error("openresty.init: not running inside nginx (ngx_lua)", 2) end
  if type(opts.path) ~= "string" or opts.path == "" then
    error("openresty.init: `path` (the integration folder) is required", 2)
  end
  local dict_name = opts.dict or _M.DEFAULT_DICT
  if not ngx.shared[dict_name] then
    return nil, ("lua_shared_dict %s is not declared (add `lua_shared_dict %s 1m;` to http {})")
      :format(dict_name, dict_name)
  end
  local settings, err = config.load { path = opts.path, env = opts.env, overrides = opts.overrides }
  if not settings then return nil, err end
  local metrics_dict = opts.metrics_dict or _M.DEFAULT_METRICS_DICT
  if settings.metrics and settings.metrics.enabled and not ngx.shared[metrics_dict] then
    return nil, ("OCEAN__METRICS__ENABLED is true but lua_shared_dict %s is not declared"
      .. " (add `lua_shared_dict %s 4m;` to http {})"):format(metrics_dict, metrics_dict)
  end
  for _, s in ipairs(settings.secrets or {}) do log.add_secret(s) end
  if settings.log_level then log.set_level(settings.log_level) end
  local ok, cerr = config.require_port(settings)
  if not ok then return nil, cerr end
  ocean.reset()
  ocean.integration_config = settings.integration.config or {}
  local lok, lerr = integration.load(opts.path)
  if not lok then return nil, log.mask(lerr) end
  S = {
    settings = settings, path = opts.path, dict_name = dict_name,
    metrics_dict = settings.metrics and settings.metrics.enabled and metrics_dict or nil,
    prefix = (opts.prefix or _M.DEFAULT_PREFIX):gsub("/+$", ""),
    lock_ttl = opts.lock_ttl or _M.LOCK_TTL, lock_wait = opts.lock_wait or _M.LOCK_WAIT,
  }
  _M.add_routes(ocean.engine().router)
  return true
end

-- }====================

-- {==================== the resync lock ====================

local function dict() return ngx.shared[S.dict_name] end

local function owns_lock(a)
  return dict():get(K_LOCK) == a.owner
end

-- Refresh the lock's TTL while we own it. false: the lock is lost.
local function refresh_lock(a)
  local d = dict()
  if d:get(K_LOCK) ~= a.owner then return false end
  if d.expire then
    d:expire(K_LOCK, S.lock_ttl)
  else
    d:set(K_LOCK, a.owner, S.lock_ttl)
  end
  return true
end

local function release_lock(a)
  local d = dict()
  if d:get(K_LOCK) == a.owner then d:delete(K_LOCK) end
end

-- Keep the lock alive while the resync `a` runs (a timer chain: it stops
-- by itself when the run ends, and nothing refreshes a dead worker's lock).
local function heartbeat(premature, a)
  if W.active ~= a then return end
  if not refresh_lock(a) then a.lost = true end
  if premature then return end
  local ok, err = ngx.timer.at(S.lock_ttl / 3, heartbeat, a)
  if not ok and not ngx.worker.exiting() then
    log.error("resync lock: cannot schedule its refresh: %s", tostring(err))
  end
end

-- Why the running resync `a` must stop, or nil.
local function abort_reason(a)
  if a.lost then return "the resync lock was lost" end
  if ngx.worker.exiting() then return "the nginx worker is exiting" end
  if dict():get(K_GEN) ~= a.gen then return "a newer resync was requested" end
  if not owns_lock(a) then
    a.lost = true
    return "the resync lock was lost"
  end
  return nil
end

-- }====================

-- {==================== resyncs ====================

local function record_last(summary, a)
  local status = integration.status_of(summary)
  local last = {
    status = status, resync_id = summary.resync_id, generation = a.gen, pid = ngx.worker.pid(),
    created = summary.created, updated = summary.updated, unchanged = summary.unchanged,
    deleted = summary.deleted, failed = summary.failed,
    errors = json.array(summary.errors or {}), abort_reason = a.reason or json.null,
    finished_at = ngx.now(),
  }
  local text = json.encode(last)
  if text then dict():set(K_LAST, text) end
end

-- The timer that runs the resync of generation `gen`: wait for the lock
-- (while no newer request supersedes this one), run, release.
local function resync_timer(premature, gen, reason)
  if premature then return end
  local d = dict()
  local owner = ngx.worker.pid() .. ":" .. gen
  local deadline = now_ms() + S.lock_wait * 1000
  local waited = false
  while true do
    if d:get(K_GEN) ~= gen then
      log.info("resync %d (%s) superseded by a newer request before it started", gen, reason)
      return
    end
    if ngx.worker.exiting() then return end
    local ok, err = d:add(K_LOCK, owner, S.lock_ttl)
    if ok then break end
    if err ~= "exists" then
      log.error("resync %d: cannot take the lock: %s", gen, tostring(err))
      return
    end
    if now_ms() > deadline then
      log.error("resync %d: gave up after %d s waiting for the running resync (%s) to stop",
        gen, S.lock_wait, tostring(d:get(K_LOCK)))
      return
    end
    if not waited then
      log.info("resync %d (%s): waiting for the running resync %s to stop", gen, reason,
        tostring(d:get(K_LOCK)))
      waited = true
    end
    ngx.sleep(_M.LOCK_POLL)
  end
  local a = { gen = gen, owner = owner }
  W.active = a
  heartbeat(false, a)
  log.info("resync %d (%s) starting in worker %d", gen, reason, ngx.worker.pid())
  local ok, summary = pcall(ocean.sync_raw_all)
  W.active = nil
  if ok and summary.aborted then a.reason = a.reason or abort_reason(a) end
  release_lock(a)
  if not ok then
    log.error("resync %d failed: %s", gen, tostring(summary))
    summary = { ok = false, errors = { tostring(summary) } }
  end
  record_last(summary, a)
end

-- Ask for a resync; returns the generation and whether one was running.
local function request_resync(reason)
  local d = dict()
  local gen, err = d:incr(K_GEN, 1, 0)
  if not gen then return nil, "cannot count the resync request: " .. tostring(err) end
  local running = d:get(K_LOCK)
  local ok, terr = ngx.timer.at(0, resync_timer, gen, reason)
  if not ok then return nil, "cannot start the resync: " .. tostring(terr) end
  if running then
    log.info("resync %d requested (%s): aborting the running resync %s", gen, reason, running)
  end
  return gen, running ~= nil
end
_M.request_resync = request_resync

-- The engine's abort policy: the active resync (the first resync run seen
-- while this worker holds the lock) stops when the shared state says so;
-- any resync stops when the worker exits.
local function abort_policy()
  return function(run)
    local a = W.active
    if a and run.event == "resync" and a.run == nil then a.run = run end
    if a and a.run == run then
      local why = abort_reason(a)
      if why then
        if not a.reason then
          a.reason = why
          log.warning("resync %d aborting: %s", a.gen, why)
        end
        return true
      end
      return false
    end
    if run.event == "resync" and ngx.worker.exiting() then return true end
  end
end

-- }====================

-- {==================== worker start ====================

-- The integration record and blueprints in Port, once per integration
-- version across workers and reloads (the shared dict outlives a reload).
local function bootstrap_once(ctx)
  local d = dict()
  local s = ctx.settings
  local key = "boot:" .. s.integration.identifier .. ":" .. s.integration.version
  local lock = key .. ":lock"
  local deadline = now_ms() + 120000
  while not d:get(key) do
    if ngx.worker.exiting() then return nil, "exiting" end
    if d:add(lock, ngx.worker.pid(), 120) then
      local ok, err = integration.bootstrap(ctx)
      if ok then d:set(key, true) end
      d:delete(lock)
      if not ok then return nil, err end
      log.info("integration '%s' bootstrapped in Port", s.integration.identifier)
      return true
    end
    if now_ms() > deadline then return nil, "another worker's bootstrap did not finish" end
    ngx.sleep(0.1)
  end
  return true
end

-- Fetch the mapping (this also fills the 60 s cache the live events use)
-- and compile each resource into the content-keyed compile cache.
local function warm_mapping(ctx)
  local w, err = integration.warm_mapping(ctx)
  if not w then return nil, err end
  W.warm = w
  return true
end

local function on_start_hooks()
  local ok, err = integration.run_on_start(W.ctx)
  if not ok then log.error("%s", err) end
end

local function resync_on_start()
  local s = S.settings
  if listener.resync_on_start(s) then
    -- once per nginx start: the shared dict outlives reloads, not restarts
    if dict():add("started:" .. s.integration.identifier, true) then
      local gen, err = request_resync("start")
      if not gen then log.error("%s", err) end
    end
  end
end

local function warm(premature)
  if premature or not W.ctx then return end
  local ok, err = bootstrap_once(W.ctx)
  if ok then ok, err = warm_mapping(W.ctx) end
  if not ok then
    if ngx.worker.exiting() then return end
    log.warning("worker %d not ready (retrying in %d s): %s", ngx.worker.pid(),
      _M.BOOT_RETRY, tostring(err))
    W.warm_error = tostring(err)
    ngx.timer.at(_M.BOOT_RETRY, warm)
    return
  end
  W.ready, W.warm_error = true, nil
  log.info("worker %d ready: mapping fetched in %.0f ms, %d resources compiled in %.0f ms",
    ngx.worker.pid(), W.warm.fetch_ms, W.warm.resources, W.warm.compile_ms)
  local q = W.ctx.event_queue
  if q and not q.started then
    local qok, qerr = q:start()
    if not qok then log.error("%s", qerr) end
  end
  if not W.started then
    W.started = true
    on_start_hooks()
    resync_on_start()
  end
end

-- One worker acts per tick: the first to add the tick's key.
local function once_per_tick(key, seconds)
  return dict():add(key, true, seconds * 0.9)
end

local function scheduled(premature, seconds)
  if premature or not W.ctx then return end
  if not once_per_tick("tick:scheduled", seconds) then return end
  if dict():get(K_LOCK) then
    log.info("scheduled resync skipped: a resync is running")
    return
  end
  local gen, err = request_resync("scheduled")
  if not gen then log.error("%s", err) end
end

-- POLLING (ocean.listener's rule): a resync request newer than the
-- watermark, which all workers share, triggers a resync.
local function poll(premature, seconds)
  if premature or not W.ctx or not W.ready then return end
  if not once_per_tick("tick:poll", seconds) then return end
  local key = "poll:watermark:" .. W.ctx.settings.integration.identifier
  local mark = { get = function() return dict():get(key) end,
                 set = function(v) dict():set(key, v) end }
  if listener.poll(W.ctx, mark) then request_resync("Port's resync request") end
end

function _M.init_worker()
  if not S then
    error("openresty.init_worker: openresty.init{...} did not run (or failed) in init_by_lua", 2)
  end
  check_phase("init_worker", { init_worker = true })
  -- every worker inherits the master's PRNG state: resync ids would repeat
  math.randomseed(ngx.worker.pid() * 1000003 + math.floor(ngx.now() * 1000) % 1000003)
  local ctx, err = ocean.init { settings = S.settings }
  if not ctx then
    W.err = log.mask(tostring(err))
    log.error("ocean engine not started in worker %d: %s", ngx.worker.pid(), W.err)
    return nil, W.err
  end
  W.ctx = ctx
  -- every worker feeds the same samples (the engine's own are a table)
  if S.metrics_dict then ctx:enable_metrics(metrics.shared_dict_store(ngx.shared[S.metrics_dict])) end
  ctx:set_abort_policy(abort_policy())
  if ctx.webhooks.count > 0 then
    -- the workers' one journal (docs/live-events.md): opened here, never
    -- in the master; every worker appends to it, one applies (the holder
    -- of its consumer lock), so that the events are applied in the order
    -- they were answered, whichever worker answered; the journals of
    -- workers of older lua-ocean versions (one each) are adopted
    local q, qerr = ctx:open_live_events { folder = S.path, shared = true, adopt = true,
                                           worker = ngx.worker.pid() }
    if not q then
      W.live_err = log.mask(tostring(qerr))
      log.error("live events are off in worker %d: %s", ngx.worker.pid(), W.live_err)
    end
  end
  ngx.timer.at(0, warm)
  local every = listener.schedule_interval(S.settings)
  if every then ngx.timer.every(every, scheduled, every) end
  every = listener.poll_interval(S.settings)
  if every then ngx.timer.every(every, poll, every) end
  return true
end

function _M.exit_worker()
  local a = W.active
  if a then release_lock(a) end
  W.active, W.ready, W.ctx = nil, false, nil
  ocean.engine():close()
end

-- }====================

-- {==================== requests ====================

local function respond(status, body, headers)
  ngx.status = status
  if type(body) == "table" then
    body = json.encode(body)
    ngx.header["Content-Type"] = "application/json"
  end
  for k, v in pairs(headers or {}) do ngx.header[k] = v end
  if body and body ~= "" then ngx.print(body) end
  return ngx.exit(ngx.HTTP_OK)
end

local function health()
  local d = dict()
  local last = d:get(K_LAST)
  last = last and json.decode(last) or json.null
  -- live events off (the journal could not be opened): every webhook gets
  -- 503, so the worker is not healthy either (a probe restarts it)
  local ok = W.ctx ~= nil and W.live_err == nil
  -- events answered 2xx that no worker applies: not healthy either
  local q = W.ctx and W.ctx.event_queue
  local stalled = ok and q and q:stalled() or nil
  if stalled then ok = false end
  local body = {
    ok = ok, pid = ngx.worker.pid(), ready = W.ready == true,
    running = d:get(K_LOCK) or false, generation = d:get(K_GEN) or 0,
    last_resync = last,
    mapping = { resources = W.warm and W.warm.resources or 0,
                compile_ms = W.warm and W.warm.compile_ms or json.null,
                compiles = core.mapping_stats().compiles },
    error = W.err or W.warm_error or W.live_err or (stalled and "live events: " .. stalled)
      or json.null,
    live_events = W.ctx and W.ctx.event_queue and W.ctx.event_queue:stats() or nil,
  }
  return ok and 200 or 503, body
end

local function error_body(code, message)
  return { ok = false, error = code, message = message }
end

local function resync()
  local gen, aborting = request_resync("http")
  if not gen then return 503, error_body("resync_failed", aborting) end
  return 202, { ok = true, generation = gen, aborted_running = aborting,
                pid = ngx.worker.pid() }
end

-- GET /health and POST /resync, before the integration's own routes
-- (done by init in the integration's router).
function _M.add_routes(r)
  r:route("GET", "/health", health, { first = true, raw_body = true })
  r:route("POST", "/resync", resync, { first = true, raw_body = true })
end

local function read_body()
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if body then return body end
  local file = ngx.req.get_body_file()
  if not file then return "" end
  local f = io.open(file, "rb")
  if not f then return "" end
  body = f:read("*a")
  f:close()
  return body or ""
end

-- GET /metrics: every worker's samples, from the shared dict (404 when
-- OCEAN__METRICS__ENABLED is not true).
function _M.metrics()
  if not S or not S.metrics_dict then
    return respond(404, error_body("not_found", "metrics are off (OCEAN__METRICS__ENABLED)"))
  end
  if ngx.req.get_method() ~= "GET" then
    return respond(405, error_body("method_not_allowed", "use GET"), { Allow = "GET" })
  end
  local set = metrics.engine_set(metrics.new { store = metrics.shared_dict_store(ngx.shared[S.metrics_dict]) })
  -- this worker's live-event counts as of now (the others' consumers feed
  -- theirs at least every event_queue.POLL_S seconds)
  local q = W.ctx and W.ctx.metrics and W.ctx.event_queue
  if q then
    local ok, err = pcall(metrics.feed_live, W.ctx.metrics, q, q.worker)
    if not ok then log.warning("metrics: feeding the live-event counts failed: %s", tostring(err)) end
  end
  return respond(200, set.reg:render(), { ["Content-Type"] = metrics.CONTENT_TYPE })
end

function _M.handle()
  if not S then
    return respond(503, error_body("not_configured", "openresty.init did not run"))
  end
  local path = ngx.var.uri
  if path:sub(1, #S.prefix) == S.prefix then path = path:sub(#S.prefix + 1) end
  if path == "" then path = "/" end
  -- a burst's requests spread over loop iterations; the probe never waits
  if path ~= "/health" then runtime.give_way() end
  if not W.ctx and path ~= "/health" then
    return respond(503, error_body("not_ready", W.err or "the ocean engine is not running"))
  end
  return respond(ocean.engine().router:dispatch(router.request {
    method = ngx.req.get_method(), path = path, headers = ngx.req.get_headers(100),
    query = ngx.req.get_uri_args(100), body = read_body(),
  }))
end

-- }====================

return _M
