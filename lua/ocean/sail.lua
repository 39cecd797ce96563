-- ocean.sail: `ocean sail [PATH] [--once] [--plan] [--port N] [--host ADDR]
-- [--log-level LEVEL]`, running an integration folder the way Ocean runs a
-- Python one.
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
--   ONCE           one resync; exit 0 when it succeeded, 1 otherwise
--   POLLING        resync on start (OCEAN__EVENT_LISTENER__RESYNC_ON_START),
--                  then whenever Port's resync request is newer than the
--                  last one handled (checked every
--                  OCEAN__EVENT_LISTENER__INTERVAL seconds)
--   WEBHOOK, WEBHOOKS_ONLY   no automatic resync (POST /integration/resync)
-- plus a full resync every OCEAN__SCHEDULED_RESYNC_INTERVAL minutes.
-- The HTTP server (--port, default 8000; 0: any free port, logged) serves
-- GET /integration/health ({ok, listener, running, resyncs, last_resync}),
-- POST /integration/resync (202; a running resync is aborted for the new
-- one) and the integration's ocean.router routes under /integration,
-- also while a resync runs (between its waits). SIGTERM/SIGINT/SIGHUP stop
-- gracefully: a running resync is aborted (nothing deleted) and reported
-- "aborted" to Port; exit 0 (ONCE: 1). A second signal exits at once.
local config = require "ocean.config"
local json = require "ocean.json"
local log = require "ocean.log"
local port_mod = require "ocean.port"

local _M = {}

local USAGE = [[
usage: ocean sail [PATH] [--once] [--port N] [--host ADDR] [--log-level LEVEL] [--plan]

Run the integration in PATH (default: the current directory).

  --once             one resync, then exit (OCEAN__EVENT_LISTENER__TYPE=ONCE);
                     exit status 0 when it succeeded, 1 otherwise
  --plan             with --once: compute what the resync would create,
                     update and delete, and write nothing
  --port N           HTTP port for routes and webhooks (default 8000,
                     APPLICATION__PORT; 0: any free port, logged)
  --host ADDR        listen address (default 0.0.0.0)
  --log-level LEVEL  DEBUG, INFO, WARNING or ERROR (APPLICATION__LOG_LEVEL)

Settings come from OCEAN__* environment variables (OCEAN__PORT__CLIENT_ID,
OCEAN__PORT__CLIENT_SECRET, OCEAN__PORT__BASE_URL, OCEAN__INTEGRATION__IDENTIFIER,
OCEAN__INTEGRATION__CONFIG__<NAME>, OCEAN__EVENT_LISTENER__TYPE, ...) and
PATH/config.yaml.

Unless --once, it serves GET /integration/health, POST /integration/resync
and the integration's routes under /integration. SIGTERM or SIGINT stops it
(a running resync is aborted and reported so); a second one exits at once.
]]

local function parse_args(args)
  local o = { path = "." }
  local i = 1
  while i <= #args do
    local a = args[i]
    local function value()
      i = i + 1
      if args[i] == nil then return nil, a .. " needs a value" end
      return args[i]
    end
    local v, err
    if a == "--help" or a == "-h" then
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
        return nil, "--port: not a port number: " .. v
      end
    elseif a == "--host" then
      v, err = value()
      if not v then return nil, err end
      o.host = v
    elseif a == "--log-level" then
      v, err = value()
      if not v then return nil, err end
      o.log_level = v
    elseif a:sub(1, 1) == "-" then
      return nil, "unknown option " .. a
    elseif o.path_set then
      return nil, "more than one PATH given"
    else
      o.path, o.path_set = a, true
    end
    i = i + 1
  end
  if o.plan and not o.once then return nil, "--plan needs --once" end
  return o
end

-- {==================== the integration ====================

-- Load PATH/main.lua with PATH on package.path (its own modules).
local function load_integration(path)
  local main = path .. "/main.lua"
  local f = io.open(main, "r")
  if not f then return nil, "no main.lua in " .. path end
  f:close()
  package.path = path .. "/?.lua;" .. path .. "/?/init.lua;" .. package.path
  local chunk, err = loadfile(main)
  if not chunk then return nil, err end
  local ok, lerr = xpcall(chunk, debug.traceback)
  if not ok then return nil, "main.lua failed: " .. tostring(lerr) end
  return true
end
_M.load_integration = load_integration

-- The integration record and the default blueprints (Ocean's bootstrap).
-- opts.plan: read only; returns what it would create instead (an
-- integration that does not exist yet plans with the default mapping).
-- Returns {integration=, mapping= (plan without integration), would_create=
-- {...}} | nil, err.
function _M.bootstrap(ctx, opts)
  local plan = opts and opts.plan
  local s = ctx.settings
  local id = s.integration.identifier
  local out = { would_create = {} }
  local integ, err = ctx.port:get_integration(id)
  if not integ then
    if type(err) ~= "table" or err.status ~= 404 then
      return nil, "cannot read the integration from Port: " .. tostring(err)
    end
    local mapping = s.default_mapping or { resources = json.array {} }
    if plan then
      log.info("integration '%s' does not exist in Port: the plan uses the default mapping", id)
      out.mapping = mapping
      out.would_create[#out.would_create + 1] = "integration " .. id
    else
      log.info("integration '%s' does not exist in Port: creating it", id)
      integ, err = ctx.port:create_integration {
        installationId = id, installationAppType = s.integration.type,
        version = s.integration.version, config = mapping,
      }
      if not integ then return nil, "cannot create the integration in Port: " .. tostring(err) end
    end
  elseif not plan and (integ.version ~= s.integration.version
         or integ.installationAppType ~= s.integration.type) then
    local _, perr = ctx.port:patch_integration(id, { version = s.integration.version,
                                                     installationAppType = s.integration.type })
    if perr then log.warning("could not update the integration's version in Port: %s", tostring(perr)) end
  end
  out.integration = integ
  if s.initialize_port_resources and not (integ and integ.arePortResourcesInitialized == true) then
    local created, berr = _M.create_blueprints(ctx, s.blueprints or {}, plan)
    if not created then return nil, berr end
    for _, bp in ipairs(created) do
      out.would_create[#out.would_create + 1] = "blueprint " .. tostring(bp.identifier)
    end
    if not plan then
      local _, perr = ctx.port:patch_integration(id, { arePortResourcesInitialized = true })
      if perr then log.warning("could not mark the integration's resources initialized: %s", tostring(perr)) end
    end
  end
  return out
end

-- Blueprints that don't exist yet: first without relations (their targets
-- may not exist yet), then with them (as Ocean does). plan: create
-- nothing. Returns the list of blueprints created (or to create) | nil, err.
function _M.create_blueprints(ctx, blueprints, plan)
  local created = {}
  for _, bp in ipairs(blueprints) do
    local id = tostring(bp.identifier)
    local existing, gerr = ctx.port:get_blueprint(id)
    if not existing then
      if type(gerr) ~= "table" or gerr.status ~= 404 then
        return nil, ("cannot read blueprint '%s' from Port: %s"):format(id, tostring(gerr))
      end
      if not plan then
        local bare = {}
        for k, v in pairs(bp) do if k ~= "relations" then bare[k] = v end end
        local ok, err = ctx.port:create_blueprint(bare)
        if not ok then
          return nil, ("cannot create blueprint '%s': %s"):format(id, tostring(err))
        end
        log.info("created blueprint '%s'", id)
      end
      created[#created + 1] = bp
    end
  end
  if plan then return created end
  for _, bp in ipairs(created) do
    if type(bp.relations) == "table" and next(bp.relations) then
      local body, err = ctx.port:call { method = "PATCH",
        path = "/blueprints/" .. port_mod.escape(bp.identifier),
        body = { relations = bp.relations } }
      if body == nil then
        return nil, ("cannot add the relations of blueprint '%s': %s"):format(bp.identifier, tostring(err))
      end
    end
  end
  return created
end

-- }====================

-- {==================== human output ====================

local function print_summary(s, boot)
  local out = io.stdout
  if s.plan then
    local would = boot and boot.would_create or {}
    if #would > 0 then
      out:write("plan: the bootstrap would create ", table.concat(would, ", "), "\n")
    end
    out:write(("plan: would create %d, update %d, delete %d; %d unchanged\n")
      :format(s.created, s.updated, s.deleted, s.unchanged))
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
    out:write(("resync %s: created %d, updated %d, unchanged %d, deleted %d, failed %d\n")
      :format(s.ok and "completed" or (s.aborted and "aborted" or "failed"),
        s.created, s.updated, s.unchanged, s.deleted, s.failed))
  end
  for _, k in ipairs(s.kinds or {}) do
    out:write(("  kind %-20s %6d objects -> %6d entities: created %d, updated %d, unchanged %d\n")
      :format(k.kind, k.raw, k.entities, k.created or 0, k.updated or 0, k.unchanged or 0))
  end
  if s.deletion and s.deletion.skipped and s.deletion.candidates > 0 then
    out:write(("  deletion skipped (%d candidates): %s\n"):format(s.deletion.candidates,
      table.concat(s.deletion.reasons, "; ")))
  end
  for _, e in ipairs(s.errors or {}) do out:write("  error: ", log.mask(e), "\n") end
  out:flush()
end
_M.print_summary = print_summary

local function status_of(summary)
  if summary.ok then return "completed" end
  return summary.aborted and "aborted" or "failed"
end

-- }====================

-- {==================== signals ====================

-- SIGTERM/SIGINT/SIGHUP (read by the engine's loop): stop, aborting the
-- running resync; a second one exits at once.
local function handle_signals(ctx, state)
  for _, ev in ipairs(ctx:take_events()) do
    if ev.type == "signal" then
      if state.stopping then
        log.warning("%s received again: exiting now", ev.name)
        os.exit(1)
      end
      local resync = ctx:request_abort()
      log.info("%s received: stopping%s", ev.name, resync and " (aborting the running resync)" or "")
      state.stopping = true
    end
  end
end

local function watch_signals(ctx)
  local ok, err = ctx.loop:watch_signals { keep_mask = true }
  if not ok then log.warning("signals are not watched: %s", tostring(err)) end
end

-- }====================

-- {==================== the long-running listeners ====================

local floor = math.floor

-- Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
-- days_from_civil).
local function days_from_civil(y, m, d)
  y = m <= 2 and y - 1 or y
  local era = floor(y / 400)
  local yoe = y - era * 400
  local doy = floor((153 * (m + (m > 2 and -3 or 9)) + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

-- Seconds since the epoch of an ISO-8601 time stamp as Port writes them
-- ("2024-05-01T12:00:00.123Z"; "+02:00" offsets; no zone: UTC), or nil.
local function parse_time(s)
  if type(s) ~= "string" then return nil end
  local y, mo, d, h, mi, sec, frac, tz =
    s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)[Tt ](%d%d):(%d%d):(%d%d)([.,]?%d*)(.*)$")
  if not y then return nil end
  local off = 0
  if tz ~= "" and tz ~= "Z" and tz ~= "z" then
    local sign, th, tm = tz:match("^([+-])(%d%d):?(%d%d)$")
    if not sign then return nil end
    off = (tonumber(th) * 3600 + tonumber(tm) * 60) * (sign == "+" and 1 or -1)
  end
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  h, mi, sec = tonumber(h), tonumber(mi), tonumber(sec)
  if mo < 1 or mo > 12 or d < 1 or d > 31 or h > 23 or mi > 59 or sec > 60 then return nil end
  local f = (frac ~= "" and #frac > 1) and tonumber("0." .. frac:sub(2)) or 0
  return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec + f - off
end
_M.parse_time = parse_time

local function start_server(ctx, o)
  local server = require "ocean.server"
  local srv, err = server.new { host = o.host or "0.0.0.0", port = ctx.settings.http_port,
    log = function(level, msg) log[level == "error" and "error" or "info"]("%s", msg) end }
  if not srv then return nil, err end
  return srv
end

local function add_routes(ctx, srv, state)
  srv:route("GET", "/integration/health", function()
    local last = state.last
    return 200, { ok = true, listener = state.listener, running = ctx:running() ~= nil,
      resyncs = state.resyncs,
      last_resync = last and { status = status_of(last), created = last.created,
        updated = last.updated, unchanged = last.unchanged, deleted = last.deleted,
        failed = last.failed } or json.null }
  end)
  srv:route("POST", "/integration/resync", function()
    if state.stopping then
      return 503, { ok = false, error = "stopping", message = "the integration is stopping" }
    end
    state.pending = true
    local aborting = ctx:request_abort()
    log.info("resync requested over HTTP%s", aborting and " (aborting the running one)" or "")
    return 202, { ok = true, aborted_running = aborting }
  end)
  srv:route("*", "/integration/*rest", function(req)
    local status, body, headers = ctx.router:dispatch {
      method = req.method, path = "/" .. req.params.rest, headers = req.headers,
      query = req.query, raw_body = req.body or "" }
    return { status = status, body = body, headers = headers }
  end)
end

-- Ocean's polling: a resync request newer than the last one handled
-- triggers a resync. The first request seen is compared with the last
-- resync Port knows of (the integration's resyncState.updatedAt, which the
-- resync on start moved forward); with neither, any request qualifies.
local function poll_resync_request(ctx, state)
  local id = ctx.settings.integration.identifier
  local r, perr = ctx.port:get_resync_request(id)
  if r == nil then
    log.warning("could not check Port's resync requests: %s", tostring(perr))
    return
  end
  local at = type(r) == "table" and parse_time(r.updatedAt)
  if not at then return end
  if state.watermark == nil then
    local integ = ctx.port:get_integration(id)
    local st = type(integ) == "table" and type(integ.resyncState) == "table"
      and parse_time(integ.resyncState.updatedAt)
    state.watermark = st or -math.huge
  end
  if at > state.watermark then
    log.info("Port asked for a resync (%s)", r.updatedAt)
    state.watermark = at
    state.pending = true
  end
end

local function resync(state)
  local ok, summary = pcall(require("ocean").sync_raw_all)
  if not ok then
    log.error("resync failed: %s", tostring(summary))
    summary = { ok = false, created = 0, updated = 0, unchanged = 0, deleted = 0,
                failed = 0, errors = { tostring(summary) } }
  end
  state.last = summary
  state.resyncs = state.resyncs + 1
end

-- Serve routes and run the listener until a signal stops it.
local function serve(ctx, srv, state)
  local s = ctx.settings
  local listener = state.listener
  add_routes(ctx, srv, state)
  ctx:set_wait_hook(function()
    handle_signals(ctx, state)
    if state.dispatching then return end       -- a route handler is waiting
    state.dispatching = true
    local ok, err = pcall(srv.process, srv)
    state.dispatching = false
    if not ok then log.error("serving requests failed: %s", tostring(err)) end
  end)
  log.info("listening on %s (listener %s)", srv:url(), listener)

  local now = ctx.clock
  local interval = s.event_listener.interval
  local next_poll = listener == "POLLING" and now() or math.huge
  local scheduled = s.scheduled_resync_interval and s.scheduled_resync_interval * 60
  local next_scheduled = scheduled and now() + scheduled or math.huge
  if listener == "POLLING" and s.event_listener.resync_on_start then state.pending = true end

  while not state.stopping do
    if state.pending then
      state.pending = false
      resync(state)
    else
      local due = math.min(next_poll, next_scheduled)
      local wait_ms = due == math.huge and 60000 or math.max(0, (due - now()) * 1000)
      ctx:await(function()
        return state.pending or state.stopping or now() >= due
      end, math.floor(wait_ms) + 1)
      if not state.stopping and now() >= next_poll then
        next_poll = now() + interval
        poll_resync_request(ctx, state)
      end
      if now() >= next_scheduled then
        next_scheduled = now() + scheduled
        state.pending = true
      end
    end
  end
  log.info("stopped")
  return true
end

-- }====================

-- The start, after settings: returns the exit code. Everything it opened
-- is closed by the caller (cleanup).
local function run(o, settings, state)
  local ocean = require "ocean"
  local ctx, err = ocean.init { settings = settings }
  if not ctx then
    io.stderr:write("ocean sail: ", log.mask(err), "\n")
    return 1
  end
  watch_signals(ctx)
  ctx:set_wait_hook(function() handle_signals(ctx, state) end)
  local ok, lerr = load_integration(o.path)
  if not ok then
    io.stderr:write("ocean sail: ", log.mask(lerr), "\n")
    return 1
  end
  local once = settings.event_listener.type == "ONCE"
  if not once then
    local srv, serr = start_server(ctx, o)
    if not srv then
      io.stderr:write("ocean sail: ", serr, "\n")
      return 1
    end
    state.server = srv
    ctx:add_server(srv.c)
  end
  local boot, berr = _M.bootstrap(ctx, { plan = o.plan })
  if not boot then
    io.stderr:write("ocean sail: ", log.mask(berr), "\n")
    return 1
  end
  for _, fn in ipairs(ctx.registry.on_start) do
    local hok, herr = pcall(fn)
    if not hok then
      io.stderr:write("ocean sail: on_start hook failed: ", log.mask(tostring(herr)), "\n")
      return 1
    end
  end
  if state.stopping then return once and 1 or 0 end
  if once then
    local summary = ocean.sync_raw_all { plan = o.plan, app_config = boot.mapping }
    print_summary(summary, boot)
    return summary.ok and 0 or 1
  end
  serve(ctx, state.server, state)
  return 0
end

function _M.main(args)
  local o, perr = parse_args(args)
  if not o then
    io.stderr:write("ocean sail: ", perr, "\n\n", USAGE)
    return 2
  end
  if o.help then
    io.stdout:write(USAGE)
    return 0
  end
  local mf = io.open(o.path .. "/main.lua", "r")
  if not mf then
    io.stderr:write("ocean sail: ", o.path, " is not an integration folder (it has no main.lua)\n")
    return 1
  end
  mf:close()
  local overrides = { event_listener = {} }
  if o.once then overrides.event_listener.type = "ONCE" end
  if o.port then overrides.http_port = o.port end
  if o.log_level then overrides.log_level = o.log_level end
  local settings, err = config.load { path = o.path, overrides = overrides }
  if not settings then
    io.stderr:write("ocean sail: ", err, "\n")
    return 1
  end
  local state = { listener = settings.event_listener.type, resyncs = 0,
                  pending = false, stopping = false }
  local ok, rc = xpcall(run, debug.traceback, o, settings, state)
  if not ok then
    io.stderr:write("ocean sail: internal error: ", log.mask(tostring(rc)), "\n")
    rc = 1
  end
  local eng = require("ocean").engine()
  eng:set_wait_hook(nil)
  if state.server then
    eng:remove_server(state.server.c)
    state.server:close()
  end
  eng:close()
  io.stdout:flush()
  return rc
end

return _M
