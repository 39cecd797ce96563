-- ocean.sail: the `ocean sail [PATH] [-O|--once] [-p|--port N]
-- [-l|--log-level LEVEL] [-i|--initialize-port-resources BOOL] [--host ADDR]
-- [--plan]` command line (Ocean's flags, plus --host and --plan), running an integration
-- folder the way Ocean runs a Python one. The parts it puts together:
-- ocean.config (settings), ocean.integration (main.lua, the bootstrap),
-- ocean.listener (when to resync, the health and resync routes),
-- ocean.server (HTTP). What is only the command's: its arguments, its
-- output, its signals and its exit status.
--
-- PATH holds main.lua (the integration: require "ocean" and register
-- resync functions, routes and hooks), .port/spec.yaml,
-- .port/resources/port-app-config.yml (the default mapping),
-- .port/resources/blueprints.json and optionally config.yaml.
--
-- Start: settings (ocean.config) -> engine -> main.lua -> HTTP server
-- (not with ONCE) -> bootstrap (the integration record, with the default
-- mapping, created if missing; blueprints created when
-- OCEAN__INITIALIZE_PORT_RESOURCES; with --plan nothing is written) ->
-- on_start hooks -> the listener:
--   ONCE           one resync; exit status as _M.exit_status (0, 1, 3)
--   POLLING        resync on start (OCEAN__EVENT_LISTENER__RESYNC_ON_START),
--                  then whenever Port's resync request is newer than the
--                  last one handled (checked every
--                  OCEAN__EVENT_LISTENER__INTERVAL seconds)
--   WEBHOOK, WEBHOOKS_ONLY   no automatic resync (POST /integration/resync)
-- plus a full resync every OCEAN__SCHEDULED_RESYNC_INTERVAL minutes.
-- The HTTP server (--port, default 8000; 0: any free port, logged) serves
-- GET /integration/health ({ok, listener, running, resyncs, last_resync:
-- status as integration.status_of, the words --once prints}),
-- GET /metrics (Prometheus text, when OCEAN__METRICS__ENABLED=true),
-- POST /integration/resync (202; a running resync is aborted for the new
-- one) and the integration's ocean.router routes under /integration,
-- also while a resync runs (between its waits). SIGTERM/SIGINT/SIGHUP stop
-- gracefully: a running resync is aborted (nothing deleted) and reported
-- "aborted" to Port; exit 0 for a listener whatever its resyncs did (ONCE:
-- 1). A second signal exits at once (1).
local config = require "ocean.config"
local integration = require "ocean.integration"
local listener = require "ocean.listener"
local log = require "ocean.log"
local metrics = require "ocean.metrics"
local router = require "ocean.router"
local server = require "ocean.server"

local _M = {}

local USAGE = [[
usage: ocean sail [PATH] [-O] [-p N] [-l LEVEL] [-i BOOL] [--host ADDR] [--plan]

Run the integration in PATH (default: the current directory). The options
are Ocean's (`ocean sail` of port-ocean), plus --host and --plan.

  -O, --once         one resync, then exit (OCEAN__EVENT_LISTENER__TYPE=ONCE);
                     see the exit statuses below
  -p, --port N       HTTP port for routes and webhooks (default 8000,
                     APPLICATION__PORT; 0: any free port, logged)
  -l, --log-level LEVEL
                     DEBUG, INFO, WARNING or ERROR (APPLICATION__LOG_LEVEL)
  -i, --initialize-port-resources BOOL
                     true: create the blueprints of .port/resources/blueprints.json
                     at the start (once per integration); false: don't
                     (default OCEAN__INITIALIZE_PORT_RESOURCES, true).
                     true/false, yes/no, 1/0, on/off
  --host ADDR        listen address (default 0.0.0.0)
  --plan             with --once (or OCEAN__EVENT_LISTENER__TYPE=ONCE): compute
                     what the resync would create, update and delete, and
                     write nothing
  A long option's value may also follow '=' (--port=8000).

Settings come from OCEAN__* environment variables (OCEAN__PORT__CLIENT_ID,
OCEAN__PORT__CLIENT_SECRET, OCEAN__PORT__BASE_URL, OCEAN__INTEGRATION__IDENTIFIER,
OCEAN__INTEGRATION__CONFIG__<NAME>, OCEAN__EVENT_LISTENER__TYPE, ...) and
PATH/config.yaml.

Unless --once, it serves GET /integration/health, POST /integration/resync,
the integration's routes under /integration and, with
OCEAN__METRICS__ENABLED=true, Prometheus metrics at GET /metrics. SIGTERM or SIGINT stops it
wherever it waits (a running resync is aborted and reported so; during
start-up the pending Port call or retry is cancelled); the requests being
answered and the live events being applied get 5 s to finish (a request
still running then is answered 503), and requests that arrive meanwhile
get 503 (Retry-After: 5); a second signal exits at once with status 1
(journaled live events stay for the next start).

Exit status:
  0  --once: the resync completed and Port took every entity. A listener
     (POLLING, WEBHOOK, WEBHOOKS_ONLY): it stopped on a signal, whatever
     its resyncs did (one the signal aborted, or one that failed, is in
     the log and in the health answer's last_resync)
  1  --once: the resync failed (a kind failed, the mapping or the owned
     entities' listing, Port unreachable mid-resync...: nothing was
     deleted), or a signal aborted it or stopped the start before it ran.
     Either mode: the start failed, or a second signal cut the stop short
  2  usage error
  3  the resync completed, but the catalog is not as the source has it:
     Port rejected entities (listed), items whose itemsToParse failed held
     back their blueprints' deletion, entities had no identifier or
     blueprint, or deletion was skipped (entityDeletionThreshold...): the
     reason is printed; or Port did not delete some stale
     entities
]]

-- Click's booleans, as Ocean's -i takes them.
local BOOLS = { ["true"] = true, ["1"] = true, yes = true, y = true, t = true, on = true,
                ["false"] = false, ["0"] = false, no = false, n = false, f = false, off = false }

-- Short options as Ocean spells them -> their long names.
local SHORT = { ["-O"] = "--once", ["-p"] = "--port", ["-l"] = "--log-level",
                ["-i"] = "--initialize-port-resources", ["-h"] = "--help" }

local function parse_args(args)
  local o = { path = "." }
  local i = 1
  while i <= #args do
    local a = args[i]
    local inline
    if a:sub(1, 2) == "--" and a:find("=", 3, true) then
      a, inline = a:match("^(.-)=(.*)$")
    end
    local shown = a
    a = SHORT[a] or a
    local function value()
      if inline then return inline end
      i = i + 1
      if args[i] == nil then return nil, shown .. " needs a value" end
      return args[i]
    end
    local v, err
    if a == "--help" then
      o.help = true
    elseif a == "--once" then
      o.once = true
    elseif a == "--plan" then
      o.plan = true
    elseif a == "--port" then
      v, err = value()
      if not v then return nil, err end
      o.port = tonumber(v)
      if not o.port or o.port < 0 or o.port > 65535 or o.port % 1 ~= 0 then
        return nil, shown .. ": not a port number: " .. v
      end
    elseif a == "--host" then
      v, err = value()
      if not v then return nil, err end
      o.host = v
    elseif a == "--log-level" then
      v, err = value()
      if not v then return nil, err end
      o.log_level, err = log.check_level(v, shown); if not o.log_level then return nil, err end
    elseif a == "--initialize-port-resources" then
      v, err = value()
      if not v then return nil, err end
      o.initialize = BOOLS[v:lower()]
      if o.initialize == nil then
        return nil, shown .. ": not a boolean: " .. v .. " (true or false)"
      end
    elseif a:sub(1, 1) == "-" and a ~= "-" then
      return nil, "unknown option " .. shown
    elseif o.path_set then
      return nil, "more than one PATH given"
    else
      o.path, o.path_set = a, true
    end
    if inline and (a == "--help" or a == "--once" or a == "--plan") then
      return nil, shown .. " takes no value"
    end
    i = i + 1
  end
  return o
end

-- {==================== human output ====================

-- Everything the command prints goes through one writer that masks
-- secrets (registered ones and credentials in URLs, as the log does):
-- identifiers, Port's messages, reasons and errors can all carry them.
local Out = {}
Out.__index = Out
local function masked(f) return setmetatable({ f = f }, Out) end
function Out:write(...)
  local parts = { ... }
  for i = 1, select("#", ...) do parts[i] = tostring(parts[i]) end
  self.f:write(log.mask(table.concat(parts)))
  return self
end
function Out:flush() self.f:flush() end

-- The exit status of `ocean sail --once` (README, --help): 0 the resync
-- completed and Port took every entity; 1 it failed (a kind failed, the
-- mapping could not be read...; nothing was deleted) or was aborted, or
-- the start failed; 2 a usage error; 3 it completed, but the catalog is
-- not as the source has it (Port rejected entities, items whose
-- itemsToParse failed held back their blueprints' deletion, entities were
-- dropped, deletion was skipped, or Port did not delete some stale
-- entities: ocean.sync's outcome "partial").
_M.EXIT = { completed = 0, failed = 1, aborted = 1, usage = 2, partial = 3 }

function _M.exit_status(summary)
  return _M.EXIT[summary.outcome] or (summary.ok and 0 or 1)
end

local SHOWN = 20          -- rejected entities listed one by one

local function print_problems(out, s)
  local failures = s.failures or {}
  for i, f in ipairs(failures) do
    if i > SHOWN then
      out:write(("  ... and %d more rejected entities\n"):format(#failures - SHOWN))
      break
    end
    out:write(("  rejected %s/%s (%s): %s%s%s\n"):format(f.blueprint, f.identifier, f.label or "?",
      f.status == 0 and "no answer" or tostring(f.status), f.code ~= "" and (" " .. f.code) or "",
      f.message ~= "" and (": " .. f.message) or ""))
  end
  for _, h in ipairs(s.held or {}) do
    out:write(("  deletion held back for blueprint '%s': %s\n"):format(h.blueprint, h.why))
  end
end

local function print_summary(s, boot)
  local out = masked(io.stdout)
  local unknown = (s.unknown or 0) > 0
    and (", upserted %d (created or updated: unknown)"):format(s.unknown) or ""
  if s.plan then
    local would = boot and boot.would_create or {}
    if #would > 0 then
      out:write("plan: the bootstrap would create ", table.concat(would, ", "), "\n")
    end
    -- a plan that failed says so first: its counts are not the resync's
    local head = ({ failed = "plan failed (incomplete)", aborted = "plan aborted (incomplete)",
                    partial = "plan completed with failures" })[s.outcome] or "plan"
    out:write(("%s: would create %d, update %d, delete %d; %d unchanged\n")
      :format(head, s.created, s.updated, s.deleted, s.unchanged))
    for _, e in ipairs(s.planned and s.planned.create or {}) do
      out:write(("  + %s/%s\n"):format(e.blueprint, e.identifier))
    end
    for _, e in ipairs(s.planned and s.planned.update or {}) do
      out:write(("  ~ %s/%s\n"):format(e.blueprint, e.identifier))
    end
    for _, e in ipairs(s.planned and s.planned.delete or {}) do
      out:write(("  - %s/%s\n"):format(e.blueprint, e.identifier))
    end
  else
    out:write(("resync %s: created %d, updated %d%s, unchanged %d, deleted %d%s, failed %d\n")
      :format(integration.status_of(s),
        s.created, s.updated, unknown, s.unchanged, s.deleted,
        (s.delete_failed or 0) > 0 and (" (%d could not be deleted)"):format(s.delete_failed) or "",
        s.failed))
  end
  for _, k in ipairs(s.kinds or {}) do
    -- "book #2" when the mapping has several book resources (as the log)
    local name = k.kind .. (type(k.label) == "string" and k.label:match("( #%d+)$") or "")
    local failed = (k.failed_entities or 0) > 0 and (", failed %d"):format(k.failed_entities) or ""
    local mark = k.status and k.status ~= "completed" and (" [" .. k.status .. "]") or ""
    out:write(("  kind %-20s %6d objects -> %6d entities: created %d, updated %d, unchanged %d%s%s\n")
      :format(name, k.raw, k.entities, k.created or 0, k.updated or 0, k.unchanged or 0, failed,
        mark))
  end
  print_problems(out, s)
  if s.deletion and s.deletion.skipped and s.deletion.candidates > 0 then
    out:write(("  deletion skipped (%d candidates): %s\n"):format(s.deletion.candidates,
      table.concat(s.deletion.reasons, "; ")))
  elseif s.deletion and s.deletion.skipped and #s.deletion.reasons > 0 then
    out:write(("  deletion skipped: %s\n"):format(table.concat(s.deletion.reasons, "; ")))
  end
  for _, e in ipairs(s.errors or {}) do out:write("  error: ", e, "\n") end
  out:flush()
end
_M.print_summary = print_summary

-- }====================

-- {==================== signals ====================

-- SIGTERM/SIGINT/SIGHUP (read by the engine's loop): stop, aborting the
-- running resync; a second one exits at once.
local function handle_signals(eng, state)
  for _, ev in ipairs(eng:take_events()) do
    if ev.type == "signal" then
      if state.stopping then
        log.warning("%s received again: exiting now", ev.name)
        -- the live events being applied go back to the journal unharmed
        -- (not counted as attempts), as after the grace
        if eng.event_queue then
          local ok, err = pcall(eng.event_queue.close, eng.event_queue)
          if not ok then log.error("closing the live-event journal failed: %s", tostring(err)) end
        end
        os.exit(1)
      end
      state.stopping = true
      local resync = state.listener and state.listener:stop() or eng:request_stop()
      log.info("%s received: stopping%s", ev.name, resync and " (aborting the running resync)" or "")
    end
  end
end

local function watch_signals(eng, state)
  local ok, err = eng.loop:watch_signals { keep_mask = true }
  if not ok then log.warning("signals are not watched: %s", tostring(err)) end
  eng:set_wait_hook(function() handle_signals(eng, state) end)
end

-- }====================

-- {==================== serving ====================

-- GET /metrics (outside /integration, where Ocean serves it) when
-- OCEAN__METRICS__ENABLED; nil otherwise (then a 404, as any unknown path).
local function metrics_route(eng)
  if not eng.metrics then return nil end
  return function(req)
    if req.path ~= "/metrics" then return nil end
    if req.method ~= "GET" then return router.not_found(req, { "GET" }) end
    -- the live-event queue's counts and journal depth, as of this scrape
    if eng.event_queue then metrics.feed_live(eng.metrics, eng.event_queue) end
    return router.response(200, eng.metrics.reg:render(), { ["content-type"] = metrics.CONTENT_TYPE })
  end
end

-- The HTTP server on the engine's router, under /integration, with the
-- listener's own routes. It listens from the start (a port in use fails
-- before anything is written to Port); requests are answered once serve()
-- runs, after the bootstrap. Its connection limits come from OCEAN__HTTP__*.
local function start_server(eng, o, state)
  local h = eng.settings.http or {}
  local srv, err = server.new { host = o.host or "0.0.0.0", port = eng.settings.http_port,
    router = eng.router, prefix = "/integration", outside = metrics_route(eng),
    max_connections = h.max_connections, max_connections_per_client = h.max_connections_per_client,
    header_timeout = h.header_timeout, body_timeout = h.body_timeout, max_body = h.max_body,
    log = function(level, msg) (log[level] or log.info)("%s", msg) end }
  if not srv then return nil, err end
  state.server = srv
  state.listener.server = srv
  eng:add_server(srv.c)
  state.listener:add_routes(eng.router)
  return srv
end

-- How long, once stopping, the requests being answered and the live
-- events being applied get to finish (Ocean's
-- max_wait_seconds_before_shutdown).
_M.SHUTDOWN_GRACE = 5

-- Serve: every request runs in a task of its own on the engine's
-- scheduler, beside the listener's task (which runs the resyncs), so no
-- request waits behind another's Port call. Requests are taken off the
-- server after each loop wait. On a stop signal the listener ends; the
-- requests already taken (and state.on_stop's work, the live events) get
-- SHUTDOWN_GRACE seconds to finish; the ones still queued, and those that
-- arrive meanwhile, are answered 503 (Server:refuse_waiting).
-- With webhook processors: read the mapping and compile every resource now
-- (into the engine's compile cache, as nginx's workers do at start), so the
-- first live event does not pay for it (jq 1.6: ~18 ms a program) in the
-- middle of a burst, and a resource that does not compile is said at
-- start. A mapping that cannot be read yet is read again by the first
-- event.
local function warm_mapping(eng)
  if not next(eng.webhooks.paths) then return end
  local w, err = integration.warm_mapping(eng)
  if not w then
    log.warning("live events: the mapping could not be read at start (the first event reads it "
      .. "again): %s", tostring(err))
    return
  end
  log.debug("live events: %d resource(s) of the mapping compiled in %.0f ms", w.resources,
    w.compile_ms)
end

local function serve(eng, state)
  local srv = state.server
  -- stop_exempt: on SIGTERM a request being answered gets the grace (below)
  srv.spawn = function(fn) eng:spawn(fn, { name = "request", eager = true, stop_exempt = true }) end
  eng:set_wait_hook(function()
    handle_signals(eng, state)
    if state.stopping then               -- nothing new starts: 503, retried later
      local ok, n = pcall(srv.refuse_waiting, srv, 503,
        { status = "error", message = "ocean sail is shutting down" })
      if not ok then log.error("refusing requests failed: %s", tostring(n)) end
      state.refused = (state.refused or 0) + (ok and n or 0)
      return
    end
    local ok, perr = pcall(srv.process, srv)
    if not ok then log.error("serving requests failed: %s", tostring(perr)) end
    if srv:busy() then eng.scheduler:poke() end    -- the rest of a burst: next turn
  end)
  eng:set_step_hook(function()
    if state.stopping then return end
    local ok, perr = pcall(srv.poll_priority, srv)
    if not ok then log.error("serving the health probe failed: %s", tostring(perr)) end
  end)
  log.info("listening on %s (listener %s)", srv:url(), state.listener.type)
  if eng.event_queue then
    local ok, err = eng.event_queue:start()
    if not ok then log.error("%s", err) end
    log.info("live events: journal %s, %d applied at once", eng.event_queue.path,
      eng.event_queue.concurrency)
    eng:spawn(function() warm_mapping(eng) end, { name = "the mapping warm-up", quiet = true })
  end
  local task = eng:spawn(function() state.listener:run() end, { name = "the listener" })
  eng:await(function() return task:done() end)
  -- the grace: the waits of the tasks left (requests, live events being
  -- applied) go on despite the stop, which would otherwise end them at once
  eng:despite_stop(function()
    for _, fn in ipairs(state.on_stop or {}) do fn() end
    local sched = eng.scheduler
    local n = sched:size()
    if n > 0 then
      log.info("waiting up to %d s for %d task(s) to finish: %s", _M.SHUTDOWN_GRACE, n,
        table.concat(sched:names(), ", "))
      if eng:await(function() return sched:size() == 0 end, _M.SHUTDOWN_GRACE * 1000) then
        log.info("the %d task(s) finished", n)
      else
        log.warning("%d task(s) did not finish within %d s, stopping anyway: %s", sched:size(),
          _M.SHUTDOWN_GRACE, table.concat(sched:names(), ", "))
      end
    end
  end)
  if (state.refused or 0) > 0 then
    log.info("%d request(s) that came during the stop were answered 503 (Retry-After: 5)",
      state.refused)
  end
  state.served = true            -- main says "stopped" once all is closed
end

-- }====================

local stderr = masked(io.stderr)

local function fail(msg)
  stderr:write("ocean sail: ", msg, "\n")
  return 1
end

-- A signal during the start (Port unreachable and retried, a slow login,
-- an on_start hook): every wait ended at once (engine:await); say where it
-- stopped. --once: 1 (no resync ran); a listener: 0 (stopped as asked).
local function stopped_at_start(once, where)
  log.warning("stopped during start-up (%s): no resync ran", where)
  return once and 1 or 0
end

-- --once with webhook processors: the journal is not opened, so its
-- pending events (a requeue, a stop that gave events back) wait for the
-- next start without --once. Say so when there are any (read-only look;
-- a journal another process holds, or none, is not this run's business).
local function warn_pending_journal(eng, folder)
  local journal = require "ocean.journal"
  local path = journal.path(eng.settings, { folder = folder })
  local j = path and journal.open(path, { read_only = true })
  if not j then return end
  local st = j:stats()
  j:close()
  if st and st.pending > 0 then
    log.warning("%d live event(s) pending in the journal %s: --once does not apply them; the next "
      .. "`ocean sail` without --once does", st.pending, path)
  end
end

-- The start, after settings: returns the exit code. Everything it opened
-- is closed by the caller (cleanup).
local function run(o, settings, state)
  local ocean = require "ocean"
  local eng, err = ocean.init { settings = settings }
  if not eng then return fail(err) end
  watch_signals(eng, state)
  local ok, lerr = integration.load(o.path)
  if not ok then return fail(lerr) end
  local once = settings.event_listener.type == "ONCE"
  if not once then
    state.listener = listener.new(eng)
    local srv, serr = start_server(eng, o, state)
    if not srv then return fail(serr) end
    if eng.webhooks.count > 0 then        -- webhook processors: the journal
      local q, qerr = eng:open_live_events { folder = o.path }
      if not q then return fail(qerr) end
      state.on_stop = { function() q:stop() end }
    end
  end
  local boot, berr = integration.bootstrap(eng, { plan = o.plan })
  if state.stopping then return stopped_at_start(once, "bootstrap") end
  if not boot then return fail(berr) end
  local hok, herr = integration.run_on_start(eng)
  if state.stopping then return stopped_at_start(once, "on_start hooks") end
  if not hok then return fail(herr) end
  if once then
    if eng.webhooks.count > 0 then warn_pending_journal(eng, o.path) end
    local summary = eng:sync_raw_all { plan = o.plan, app_config = boot.mapping }
    print_summary(summary, boot)
    return _M.exit_status(summary)
  end
  serve(eng, state)
  return 0
end

function _M.main(args)
  local o, perr = parse_args(args)
  if not o then
    io.stderr:write("ocean sail: ", perr, "\nsee ocean sail --help\n")
    return 2
  end
  if o.help then
    io.stdout:write(USAGE)
    return 0
  end
  local mf = io.open(o.path .. "/main.lua", "r")
  if not mf then
    stderr:write("ocean sail: ", o.path, " is not an integration folder (it has no main.lua)\n")
    return 1
  end
  mf:close()
  local overrides = { event_listener = {} }
  if o.once then overrides.event_listener.type = "ONCE" end
  if o.port then overrides.http_port = o.port end
  if o.log_level then overrides.log_level = o.log_level end
  if o.initialize ~= nil then overrides.initialize_port_resources = o.initialize end
  local settings, err = config.load { path = o.path, overrides = overrides }
  if not settings then
    stderr:write("ocean sail: ", err, "\n")
    return 1
  end
  -- -O or OCEAN__EVENT_LISTENER__TYPE=ONCE (the environment, config.yaml):
  -- only the settings know which
  if o.plan and settings.event_listener.type ~= "ONCE" then
    io.stderr:write("ocean sail: --plan needs --once (or OCEAN__EVENT_LISTENER__TYPE=ONCE; the "
      .. "listener is ", tostring(settings.event_listener.type), ")\nsee ocean sail --help\n")
    return 2
  end
  local state = { stopping = false }
  local ok, rc = xpcall(run, debug.traceback, o, settings, state)
  if not ok then rc = fail("internal error: " .. tostring(rc)) end
  local eng = require("ocean").engine()
  eng:set_wait_hook(nil)
  eng:set_step_hook(nil)
  if state.server then
    eng:remove_server(state.server.c)
    state.server:close()
  end
  eng:close()
  if state.served then log.info("stopped") end
  io.stdout:flush()
  return rc
end

return _M
