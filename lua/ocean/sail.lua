-- ocean.sail: `ocean sail [PATH] [--once] [--port N] [--log-level LEVEL]`,
-- running an integration folder the way Ocean runs a Python one.
--
-- PATH holds main.lua (the integration: require "ocean" and register
-- resync functions, routes and hooks), .port/spec.yaml,
-- .port/resources/port-app-config.yml (the default mapping),
-- .port/resources/blueprints.json and optionally config.yaml.
--
-- Start: settings (ocean.config) -> engine -> main.lua -> bootstrap (the
-- integration record, with the default mapping, created if missing;
-- blueprints created when OCEAN__INITIALIZE_PORT_RESOURCES) -> on_start
-- hooks -> the listener:
--   ONCE           one resync; exit 0 when it succeeded, 1 otherwise
--   POLLING        resync on start, then whenever Port's resync-request is
--                  newer than the last one handled (checked every
--                  OCEAN__EVENT_LISTENER__INTERVAL seconds)
--   WEBHOOK, WEBHOOKS_ONLY   no automatic resync (POST /integration/resync)
-- plus a full resync every OCEAN__SCHEDULED_RESYNC_INTERVAL minutes.
-- The HTTP server (--port, default 8000) serves GET /integration/health,
-- POST /integration/resync and the integration's ocean.router routes under
-- /integration. A new resync aborts a running one; SIGTERM/SIGINT stop
-- gracefully (a running resync is aborted and reported as such).
local config = require "ocean.config"
local engine = require "ocean.engine"
local json = require "ocean.json"
local log = require "ocean.log"
local runtime = require "ocean.runtime"

local _M = {}

local USAGE = [[
usage: ocean sail [PATH] [--once] [--port N] [--host ADDR] [--log-level LEVEL] [--plan]

Run the integration in PATH (default: the current directory).

  --once             one resync, then exit (OCEAN__EVENT_LISTENER__TYPE=ONCE);
                     exit status 0 when it succeeded, 1 otherwise
  --plan             with --once: compute what the resync would create,
                     update and delete, and write nothing
  --port N           HTTP port for routes and webhooks (default 8000,
                     APPLICATION__PORT)
  --host ADDR        listen address (default 0.0.0.0)
  --log-level LEVEL  DEBUG, INFO, WARNING or ERROR (APPLICATION__LOG_LEVEL)

Settings come from OCEAN__* environment variables (OCEAN__PORT__CLIENT_ID,
OCEAN__PORT__CLIENT_SECRET, OCEAN__PORT__BASE_URL, OCEAN__INTEGRATION__IDENTIFIER,
OCEAN__INTEGRATION__CONFIG__<NAME>, ...) and PATH/config.yaml.
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
function _M.bootstrap(ctx)
  local s = ctx.settings
  local id = s.integration.identifier
  local integ, err = ctx.port:get_integration(id)
  if not integ then
    if type(err) ~= "table" or err.status ~= 404 then
      return nil, "cannot read the integration from Port: " .. tostring(err)
    end
    log.info("integration '%s' does not exist in Port: creating it", id)
    integ, err = ctx.port:create_integration {
      installationId = id, installationAppType = s.integration.type,
      version = s.integration.version, config = s.default_mapping or { resources = json.array {} },
    }
    if not integ then return nil, "cannot create the integration in Port: " .. tostring(err) end
  elseif integ.version ~= s.integration.version
         or integ.installationAppType ~= s.integration.type then
    ctx.port:patch_integration(id, { version = s.integration.version,
                                     installationAppType = s.integration.type })
  end
  if s.initialize_port_resources and integ.arePortResourcesInitialized ~= true then
    local ok, berr = _M.create_blueprints(ctx, s.blueprints or {})
    if not ok then return nil, berr end
    ctx.port:patch_integration(id, { arePortResourcesInitialized = true })
  end
  return integ
end

-- Blueprints that don't exist yet: first without relations (their targets
-- may not exist yet), then with them (as Ocean does).
function _M.create_blueprints(ctx, blueprints)
  local created = {}
  for _, bp in ipairs(blueprints) do
    local existing = ctx.port:get_blueprint(bp.identifier)
    if not existing then
      local bare = {}
      for k, v in pairs(bp) do if k ~= "relations" then bare[k] = v end end
      local ok, err = ctx.port:create_blueprint(bare)
      if not ok then
        return nil, ("cannot create blueprint '%s': %s"):format(tostring(bp.identifier), tostring(err))
      end
      created[#created + 1] = bp
      log.info("created blueprint '%s'", bp.identifier)
    end
  end
  for _, bp in ipairs(created) do
    if bp.relations and next(bp.relations) then
      local _, err = ctx.port:call { method = "PATCH",
        path = "/blueprints/" .. require("ocean.port").escape(bp.identifier),
        body = { relations = bp.relations } }
      if err then
        return nil, ("cannot add the relations of blueprint '%s': %s"):format(bp.identifier, tostring(err))
      end
    end
  end
  return true
end

-- }====================

-- {==================== human output ====================

local function print_summary(s)
  local out = io.stdout
  if s.plan then
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
  for _, e in ipairs(s.errors or {}) do out:write("  error: ", e, "\n") end
  out:flush()
end
_M.print_summary = print_summary

-- }====================

-- {==================== the long-running listeners ====================

local function serve(ctx, o)
  local server = require "ocean.server"
  local router = require "ocean.router"
  local s = ctx.settings
  local state = { pending = false, stopping = false, last = nil, watermark = nil,
                  dispatching = false }
  local listener = s.event_listener.type
  local srv, err = server.new { host = o.host or "0.0.0.0", port = s.http_port,
    log = function(level, msg) log[level == "error" and "error" or "info"]("%s", msg) end }
  if not srv then return nil, err end
  srv:route("GET", "/integration/health", function()
    return 200, { ok = true, running = ctx.running ~= nil,
                  last_resync = state.last and { ok = state.last.ok, created = state.last.created,
                    updated = state.last.updated, deleted = state.last.deleted,
                    failed = state.last.failed } or json.null }
  end)
  srv:route("POST", "/integration/resync", function()
    state.pending = true
    local aborting = ctx.running ~= nil
    if aborting then ctx.abort_requested = true end
    log.info("resync requested over HTTP%s", aborting and " (aborting the running one)" or "")
    return 202, { ok = true, aborted_running = aborting }
  end)
  srv:route("*", "/integration/*rest", function(req)
    local status, body, headers = router.dispatch {
      method = req.method, path = "/" .. req.params.rest, headers = req.headers,
      query = req.query, raw_body = req.body or "" }
    return { status = status, body = body, headers = headers }
  end)
  local ok, serr = ctx.loop:watch_signals()
  if not ok then log.warning("signals are not watched: %s", tostring(serr)) end
  local function handle_signals()
    for _, ev in ipairs(runtime.take_events()) do
      if ev.type == "signal" then
        log.info("%s received: stopping", ev.name)
        state.stopping = true
        if ctx.running then ctx.abort_requested = true end
      end
    end
  end
  runtime.servers = { srv.c }
  runtime.between_waits = function()
    handle_signals()
    if state.dispatching then return end
    state.dispatching = true
    local pok, perr = pcall(srv.process, srv)
    state.dispatching = false
    if not pok then log.error("serving requests failed: %s", tostring(perr)) end
  end
  log.info("listening on %s (listener %s)", srv:url(), listener)

  local now = ctx.clock
  local interval = s.event_listener.interval
  local next_poll = listener == "POLLING" and now() or math.huge
  local scheduled = s.scheduled_resync_interval and s.scheduled_resync_interval * 60
  local next_scheduled = scheduled and now() + scheduled or math.huge
  if listener == "POLLING" and s.event_listener.resync_on_start then state.pending = true end

  -- Ocean's polling: a resync request newer than the last one handled
  -- triggers a resync; the first one seen only sets the watermark when the
  -- listener already resynced on start.
  state.started_with_resync = state.pending
  local function poll_resync_request()
    local r, perr = ctx.port:get_resync_request(s.integration.identifier)
    if r == nil then
      log.warning("could not check Port's resync requests: %s", tostring(perr))
      return
    end
    local at = type(r) == "table" and r.updatedAt
    if type(at) ~= "string" then return end
    if state.watermark == nil then
      state.watermark = at
      if not state.started_with_resync then state.pending = true end
    elseif at > state.watermark then
      log.info("Port asked for a resync (%s)", at)
      state.watermark = at
      state.pending = true
    end
  end

  while not state.stopping do
    if state.pending then
      state.pending = false
      state.last = require("ocean").sync_raw_all()
    else
      local due = math.min(next_poll, next_scheduled)
      local wait_ms = due == math.huge and 60000 or math.max(0, (due - now()) * 1000)
      ctx.await(function()
        return state.pending or state.stopping or now() >= due
      end, math.floor(wait_ms) + 1)
      if now() >= next_poll then
        next_poll = now() + interval
        poll_resync_request()
      end
      if now() >= next_scheduled then
        next_scheduled = now() + scheduled
        state.pending = true
      end
    end
  end
  runtime.servers, runtime.between_waits = nil, nil
  srv:close()
  return true
end

-- }====================

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
  local overrides = { event_listener = {} }
  if o.once then overrides.event_listener.type = "ONCE" end
  if o.port then overrides.http_port = o.port end
  if o.log_level then overrides.log_level = o.log_level end
  local settings, err = config.load { path = o.path, overrides = overrides }
  if not settings then
    io.stderr:write("ocean sail: ", err, "\n")
    return 1
  end
  local ocean = require "ocean"
  local ctx
  ctx, err = ocean.init { settings = settings }
  if not ctx then
    io.stderr:write("ocean sail: ", log.mask(err), "\n")
    return 1
  end
  local ok, lerr = load_integration(o.path)
  if not ok then
    io.stderr:write("ocean sail: ", log.mask(lerr), "\n")
    return 1
  end
  local boot, berr = _M.bootstrap(ctx)
  if not boot then
    io.stderr:write("ocean sail: ", log.mask(berr), "\n")
    engine.close()
    return 1
  end
  for _, fn in ipairs(require("ocean.sync").registry.on_start) do
    local hok, herr = pcall(fn)
    if not hok then
      io.stderr:write("ocean sail: on_start hook failed: ", log.mask(tostring(herr)), "\n")
      engine.close()
      return 1
    end
  end
  local rc = 0
  if settings.event_listener.type == "ONCE" then
    local summary = ocean.sync_raw_all { plan = o.plan }
    print_summary(summary)
    rc = summary.ok and 0 or 1
  else
    local sok, serr = serve(ctx, o)
    if not sok then
      io.stderr:write("ocean sail: ", log.mask(tostring(serr)), "\n")
      rc = 1
    end
  end
  engine.close()
  return rc
end

return _M
