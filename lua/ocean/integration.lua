-- ocean.integration: an Ocean integration folder and its place in Port,
-- as both runners (`ocean sail`, ocean.openresty) start one.
--
--   integration.load(path) -> true | nil, err
--     runs PATH/main.lua (with PATH on package.path for its own modules);
--     its registrations (ocean.on_resync, ocean.router, hooks) go to the
--     default engine. err: "main.lua failed: FILE:LINE: message" at the
--     integration's line for its own errors and our API's misuse errors,
--     with a traceback only for a crash inside lua-ocean (or at
--     APPLICATION__LOG_LEVEL=DEBUG): see load_error
--   integration.bootstrap(engine [, {plan=}]) -> {integration=, mapping=,
--     would_create={...}} | nil, err
--     Ocean's bootstrap: the integration record (created with the default
--     mapping when missing; its version and type kept current) and, with
--     OCEAN__INITIALIZE_PORT_RESOURCES, the blueprints of
--     .port/resources/blueprints.json. plan: read only; an integration
--     that does not exist yet plans with the default mapping (out.mapping)
--   integration.create_blueprints(engine, blueprints [, plan])
--     -> {blueprint...} created (or to create) | nil, err
--   integration.run_on_start(engine) -> true | nil, err   (on_start hooks)
--   integration.status_of(summary) -> "completed" | "completed with failures"
--     | "aborted" | "failed"
local json = require "ocean.json"
local log = require "ocean.log"
local port_mod = require "ocean.port"

local type, pairs, ipairs, tostring, pcall = type, pairs, ipairs, tostring, pcall

local _M = {}

-- The folder of lua-ocean's own Lua modules, as their chunks' source
-- ("@<dir>/integration.lua" -> "@<dir>/"): a frame whose source starts
-- with it is ours, any other Lua frame the integration's.
local OURS = debug.getinfo(1, "S").source:match("^(@.*/)[^/]*$")

local function ours(source)
  return OURS ~= nil and source:sub(1, #OURS) == OURS
end

-- The innermost frame at or above `level` of the integration's own code
-- (a Lua function outside lua-ocean's modules): its getinfo, or nil.
local function user_frame(level)
  while true do
    local info = debug.getinfo(level + 1, "Sl")
    if not info then return nil end
    if info.what ~= "C" and info.currentline and info.currentline > 0 and not ours(info.source) then
      return info
    end
    level = level + 1
  end
end

-- The message main.lua's error shows (the message handler of load, on
-- the stack of the error; level 2 is the function that raised it):
-- * a usage error of the declarations (ocean.selector): its own message;
-- * APPLICATION__LOG_LEVEL=DEBUG, or an error that is not a string: with
--   the whole traceback;
-- * raised by error() at the integration's own line (its own error(),
--   or our API's misuse error with a level pointing there): the message
--   alone, which names the file and line;
-- * our API's misuse error (raised by error()) whose level missed the
--   caller (a tail call in between): the message at the integration's
--   innermost line instead of ours, alone;
-- * anything else — a crash (indexing nil...) in the integration's code
--   or in lua-ocean's, an assert: with the traceback, which is what
--   finding the bug needs.
local function load_error(e)
  if require("ocean.selector").is_usage_error(e) then return e end
  if type(e) ~= "string" or log.enabled("DEBUG") then return debug.traceback(tostring(e), 2) end
  local where = e:match("^(.-):%d+: ")
  local raiser = debug.getinfo(2, "f")
  if not (raiser and raiser.func == error) then return debug.traceback(e, 2) end
  local user = user_frame(2)
  local at_ours = false
  if where then
    local f = 2
    while true do
      local info = debug.getinfo(f + 1, "S")
      if not info then break end
      if info.short_src == where and ours(info.source) then at_ours = true break end
      f = f + 1
    end
  end
  if where and not at_ours then return e end
  if user then
    local msg = where and e:sub(#e:match("^(.-:%d+: )") + 1) or e
    return ("%s:%d: %s"):format(user.short_src, user.currentline, msg)
  end
  return debug.traceback(e, 2)
end

function _M.load(path)
  local main = path .. "/main.lua"
  local f = io.open(main, "r")
  if not f then return nil, "no main.lua in " .. path end
  f:close()
  package.path = path .. "/?.lua;" .. path .. "/?/init.lua;" .. package.path
  local chunk, err = loadfile(main)
  if not chunk then return nil, err end
  local ok, lerr = xpcall(chunk, load_error)
  if not ok then return nil, "main.lua failed: " .. tostring(lerr) end
  return true
end

-- A missing integration: created with the default mapping (plan: only
-- said). Returns the integration record (nil in plan) | nil, err.
local function create_integration(eng, out, plan)
  local s = eng.settings
  local id = s.integration.identifier
  local mapping = s.default_mapping or { resources = json.array {} }
  if plan then
    log.info("integration '%s' does not exist in Port: the plan uses the default mapping", id)
    out.mapping = mapping
    out.would_create[#out.would_create + 1] = "integration " .. id
    return nil
  end
  log.info("integration '%s' does not exist in Port: creating it", id)
  local integ, err = eng.port:create_integration {
    installationId = id, installationAppType = s.integration.type,
    version = s.integration.version, config = mapping,
  }
  if not integ then return nil, "cannot create the integration in Port: " .. tostring(err) end
  return integ
end

-- The record's version and type as this integration's (a warning if not).
local function keep_current(eng, integ)
  local s = eng.settings
  if integ.version == s.integration.version and integ.installationAppType == s.integration.type then
    return
  end
  local _, perr = eng.port:patch_integration(s.integration.identifier,
    { version = s.integration.version, installationAppType = s.integration.type })
  if perr then log.warning("could not update the integration's version in Port: %s", tostring(perr)) end
end

-- OCEAN__INITIALIZE_PORT_RESOURCES: the blueprints, once per integration.
local function initialize_resources(eng, integ, out, plan)
  local s = eng.settings
  if not s.initialize_port_resources then
    log.info("resources initialization disabled (-i false or OCEAN__INITIALIZE_PORT_RESOURCES=false):"
      .. " blueprints not created")
    return true
  end
  if integ and integ.arePortResourcesInitialized == true then return true end
  local created, berr = _M.create_blueprints(eng, s.blueprints or {}, plan)
  if not created then return nil, berr end
  for _, bp in ipairs(created) do
    out.would_create[#out.would_create + 1] = "blueprint " .. tostring(bp.identifier)
  end
  if not plan then
    local _, perr = eng.port:patch_integration(s.integration.identifier,
      { arePortResourcesInitialized = true })
    if perr then log.warning("could not mark the integration's resources initialized: %s", tostring(perr)) end
  end
  return true
end

function _M.bootstrap(eng, opts)
  local plan = opts and opts.plan
  local out = { would_create = {} }
  local integ, err = eng.port:get_integration(eng.settings.integration.identifier)
  if not integ then
    if type(err) ~= "table" or err.status ~= 404 then
      return nil, "cannot read the integration from Port: " .. tostring(err)
    end
    integ, err = create_integration(eng, out, plan)
    if err then return nil, err end
  elseif not plan then
    keep_current(eng, integ)
  end
  out.integration = integ
  local ok, ierr = initialize_resources(eng, integ, out, plan)
  if not ok then return nil, ierr end
  return out
end

-- Blueprints that don't exist yet: first without relations (their targets
-- may not exist yet), then with them (as Ocean does). opts.quiet: no INFO
-- line per blueprint created (the caller says it).
function _M.create_blueprints(eng, blueprints, plan, opts)
  local created = {}
  for _, bp in ipairs(blueprints) do
    local id = tostring(bp.identifier)
    local existing, gerr = eng.port:get_blueprint(id)
    if not existing then
      if type(gerr) ~= "table" or gerr.status ~= 404 then
        return nil, ("cannot read blueprint '%s' from Port: %s"):format(id, tostring(gerr))
      end
      if not plan then
        local bare = {}
        for k, v in pairs(bp) do if k ~= "relations" then bare[k] = v end end
        local ok, err = eng.port:create_blueprint(bare)
        if not ok then
          return nil, ("cannot create blueprint '%s': %s"):format(id, tostring(err))
        end
        if not (opts and opts.quiet) then log.info("created blueprint '%s'", id) end
      end
      created[#created + 1] = bp
    end
  end
  if plan then return created end
  for _, bp in ipairs(created) do
    if type(bp.relations) == "table" and next(bp.relations) then
      local body, err = eng.port:call { method = "PATCH",
        path = "/blueprints/" .. port_mod.escape(bp.identifier),
        body = { relations = bp.relations } }
      if body == nil then
        return nil, ("cannot add the relations of blueprint '%s': %s"):format(bp.identifier, tostring(err))
      end
    end
  end
  return created
end

function _M.run_on_start(eng)
  for _, fn in ipairs(eng.registry.on_start) do
    local ok, err = pcall(fn)
    if not ok then return nil, "on_start hook failed: " .. tostring(err) end
  end
  return true
end

-- How a resync ended, in the words `ocean sail --once` prints and both
-- health answers (ocean.listener, ocean.openresty) give as last_resync's
-- status: ocean.sync's outcome, "partial" said as "completed with
-- failures" (Port rejected entities, deletion was held back or skipped:
-- --once exits 3 for it). A summary without an outcome (a resync that
-- raised) is "failed" unless ok.
local STATUS = { completed = "completed", partial = "completed with failures",
                 failed = "failed", aborted = "aborted" }

function _M.status_of(summary)
  local st = STATUS[summary.outcome]
  if st then return st end
  if summary.ok then return "completed" end
  return summary.aborted and "aborted" or "failed"
end

-- Read the mapping (ctx:app_config()) and compile every resource into the
-- engine's compile cache, as the first resync or live event would: at
-- start, so that none of them pays for it later (jq 1.6: ~18 ms a
-- program). A resource that does not compile is a WARNING. Returns
-- {resources = compiled, failed =, fetch_ms =, compile_ms =}, or nil, err
-- when the mapping cannot be read.
function _M.warm_mapping(ctx)
  local mapping = require "ocean.mapping"
  local now_ms = require("ocean.core").monotonic_ms
  local t0 = now_ms()
  local app, err = ctx:app_config()
  if not app then return nil, err end
  local t1 = now_ms()
  local n, failed = 0, 0
  for _, r in ipairs(app.resources) do
    if type(r) == "table" then
      local ok, res, perr = pcall(ctx.parse_items, ctx, r, {}, mapping.options(ctx.settings))
      if ok and res then
        n = n + 1
      else
        failed = failed + 1
        -- the error names the kind (mapping.c's compile errors do: once)
        log.error("a resource does not compile (its resyncs and live events fail until the "
          .. "mapping is fixed): %s", mapping.with_kind(r.kind, tostring(ok and perr or res)))
      end
    end
  end
  return { resources = n, failed = failed, fetch_ms = t1 - t0, compile_ms = now_ms() - t1 }
end

return _M
