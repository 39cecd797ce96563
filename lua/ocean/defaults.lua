-- ocean.defaults: `ocean defaults dock|clean [PATH]`, Ocean's commands for
-- an integration's defaults (port_ocean/cli/commands/defaults/): the
-- blueprints of PATH/.port/resources/blueprints.json and the default
-- mapping of PATH/.port/resources/port-app-config.yml, in Port.
--
--   dock [PATH] [--update-mapping]
--     creates the integration (with the default mapping) when Port has
--     none, and every blueprint of blueprints.json that Port lacks (first
--     without relations, then with them, as the bootstrap does), whatever
--     OCEAN__INITIALIZE_PORT_RESOURCES says: docking is the explicit ask.
--     --update-mapping also replaces the mapping of an existing
--     integration with the local file: THE way to push local mapping edits
--     (once the integration exists, `ocean sail` reads the mapping from
--     Port and never from the file).
--   clean [PATH] [--force] [--dry-run] [--destroy]
--     deletes the blueprints of blueprints.json and all their entities
--     (Ocean's `clean --force`: DELETE /blueprints/ID/all-entities
--     ?delete_blueprint=true), last listed first; with --destroy, then the
--     integration itself. As Ocean's, it does nothing when the integration
--     does not exist in Port. On a terminal it asks first; elsewhere
--     --force is required. --dry-run prints what would be deleted (with the
--     entity counts) and deletes nothing.
--
-- _M.main(args) -> exit status: 0 done, 1 failed (each failure named on
-- stderr), 2 usage error. Settings as `ocean sail` reads them (OCEAN__*,
-- PATH/config.yaml); secrets are never printed.
local config = require "ocean.config"
local integration = require "ocean.integration"
local log = require "ocean.log"
local port_mod = require "ocean.port"

local ipairs, tostring, type = ipairs, tostring, type
local format = string.format

local _M = {}

local USAGE = [[
usage: ocean defaults <dock|clean> [PATH] [options]

The integration's defaults in Port: the blueprints of
PATH/.port/resources/blueprints.json and the default mapping of
PATH/.port/resources/port-app-config.yml (PATH: default .).

  dock [PATH] [--update-mapping]
      create the integration with the default mapping when Port has none,
      and every blueprint Port lacks. With --update-mapping, also replace
      the mapping of an existing integration with the local file: the way
      to push edits of port-app-config.yml (once the integration exists,
      `ocean sail` reads its mapping from Port, not from the file).
  clean [PATH] [--force] [--dry-run] [--destroy]
      delete those blueprints and all their entities (Ocean's clean
      --force), when the integration exists in Port. It asks on a
      terminal; elsewhere --force is required.
        --force     do not ask
        --dry-run   print what would be deleted; delete nothing
        --destroy   then delete the integration itself

Settings as for `ocean sail` (OCEAN__PORT__CLIENT_ID, OCEAN__PORT__CLIENT_SECRET,
OCEAN__PORT__BASE_URL, OCEAN__INTEGRATION__IDENTIFIER, PATH/config.yaml).
Exit status: 0 done, 1 something failed (named on stderr), 2 usage error.
]]

local FLAGS = {
  dock = { ["--update-mapping"] = "update_mapping" },
  clean = { ["--force"] = "force", ["-f"] = "force", ["--dry-run"] = "dry_run",
            ["--destroy"] = "destroy", ["-d"] = "destroy" },
}

local function parse_args(args)
  local o = { path = "." }
  local first = args[1]
  if first == nil then return nil, "expected dock or clean" end
  if first == "--help" or first == "-h" then return { help = true } end
  if not FLAGS[first] then return nil, "unknown subcommand '" .. first .. "' (use dock or clean)" end
  o.cmd = first
  for i = 2, #args do
    local a = args[i]
    if a == "--help" or a == "-h" then
      o.help = true
    elseif FLAGS[o.cmd][a] then
      o[FLAGS[o.cmd][a]] = true
    elseif a:sub(1, 1) == "-" then
      return nil, "unknown option " .. a .. " for " .. o.cmd
    elseif o.path_set then
      return nil, "more than one PATH given"
    else
      o.path, o.path_set = a, true
    end
  end
  return o
end

local function say(fmt, ...)
  io.stdout:write(format(fmt, ...), "\n")
  io.stdout:flush()
end

local function fail(o, fmt, ...)
  io.stderr:write("ocean defaults ", o.cmd, ": ", log.mask(format(fmt, ...)), "\n")
  return 1
end

-- The engine over PATH's settings: eng | nil, err.
local function open(o)
  local settings, err = config.load { path = o.path }
  if not settings then return nil, err end
  local ocean = require "ocean"
  return ocean.init { settings = settings }
end

-- The integration record, false when Port has none | nil, err.
local function current_integration(eng)
  local id = eng.settings.integration.identifier
  local integ, err = eng.port:get_integration(id)
  if integ then return integ end
  if type(err) == "table" and err.status == 404 then return false end
  return nil, format("cannot read integration '%s' from Port: %s", id, tostring(err))
end

-- {==================== dock ====================

local function dock(o, eng)
  local s = eng.settings
  local id = s.integration.identifier
  local mapping = s.default_mapping
  if not mapping then
    return fail(o, "%s/.port/resources/port-app-config.yml is missing: no default mapping to dock", o.path)
  end
  local integ, err = current_integration(eng)
  if integ == nil then return fail(o, "%s", err) end
  if not integ then
    local _, cerr = eng.port:create_integration {
      installationId = id, installationAppType = s.integration.type,
      version = s.integration.version, config = mapping }
    if cerr then return fail(o, "cannot create integration '%s' in Port: %s", id, tostring(cerr)) end
    say("created integration '%s' with the mapping of port-app-config.yml", id)
  elseif o.update_mapping then
    local _, perr = eng.port:patch_integration(id, { config = mapping })
    if perr then
      return fail(o, "cannot update the mapping of integration '%s' in Port: %s", id, tostring(perr))
    end
    say("updated the mapping of integration '%s' from port-app-config.yml", id)
  else
    say("integration '%s' exists: its mapping in Port is kept (--update-mapping replaces it"
      .. " with port-app-config.yml)", id)
  end
  local bps = s.blueprints or {}
  local created, berr = integration.create_blueprints(eng, bps)
  if not created then return fail(o, "%s", berr) end
  local new = {}
  for _, bp in ipairs(created) do new[tostring(bp.identifier)] = true end
  for _, bp in ipairs(bps) do
    local bid = tostring(bp.identifier)
    say(new[bid] and "created blueprint '%s'" or "blueprint '%s' exists: kept", bid)
  end
  local _, merr = eng.port:patch_integration(id, { arePortResourcesInitialized = true })
  if merr then log.warning("could not mark the integration's resources initialized: %s", tostring(merr)) end
  return 0
end

-- }====================

-- {==================== clean ====================

local function on_terminal()
  local ok = os.execute("test -t 0")
  return ok == true or ok == 0
end

-- The blueprints of blueprints.json that Port has, last listed first,
-- each with its entity count: {{identifier=, entities=}...} | nil, err.
local function present_blueprints(eng, bps)
  local out = {}
  for i = #bps, 1, -1 do
    local bid = tostring(bps[i].identifier)
    local bp, err = eng.port:get_blueprint(bid)
    if bp then
      local body, lerr = eng.port:call { method = "GET",
        path = "/blueprints/" .. port_mod.escape(bid) .. "/entities" }
      if body == nil then
        return nil, format("cannot list the entities of blueprint '%s': %s", bid, tostring(lerr))
      end
      local ents = type(body) == "table" and body.entities
      out[#out + 1] = { identifier = bid, entities = type(ents) == "table" and #ents or 0 }
    elseif type(err) ~= "table" or err.status ~= 404 then
      return nil, format("cannot read blueprint '%s' from Port: %s", bid, tostring(err))
    else
      say("blueprint '%s' is not in Port: nothing to delete", bid)
    end
  end
  return out
end

local function confirm(what)
  io.stdout:write(what, " [y/N]: ")
  io.stdout:flush()
  local answer = io.stdin:read("l") or ""
  return answer:match("^%s*[yY]") ~= nil
end

local function clean(o, eng)
  local id = eng.settings.integration.identifier
  local integ, err = current_integration(eng)
  if integ == nil then return fail(o, "%s", err) end
  if not integ then
    say("integration '%s' does not exist in Port: nothing cleaned", id)
    return 0
  end
  local todo, perr = present_blueprints(eng, eng.settings.blueprints or {})
  if not todo then return fail(o, "%s", perr) end
  local verb = o.dry_run and "would delete" or "will delete"
  for _, t in ipairs(todo) do
    say("%s blueprint '%s' and its %d entities", verb, t.identifier, t.entities)
  end
  if o.destroy then say("%s integration '%s'", verb, id) end
  if o.dry_run then return 0 end
  if #todo == 0 and not o.destroy then return 0 end
  if not o.force then
    if not on_terminal() then
      return fail(o, "refusing to delete without --force when not on a terminal (--dry-run shows what would go)")
    end
    if not confirm("Delete them?") then
      say("nothing deleted")
      return 0
    end
  end
  local failed = 0
  for _, t in ipairs(todo) do
    local body, derr = eng.port:call { method = "DELETE",
      path = "/blueprints/" .. port_mod.escape(t.identifier) .. "/all-entities",
      query = { delete_blueprint = "true" } }
    if body == nil then
      failed = failed + 1
      fail(o, "cannot delete blueprint '%s': %s", t.identifier, tostring(derr))
    elseif type(body) == "table" and type(body.migrationId) == "string" and body.migrationId ~= "" then
      say("deleting blueprint '%s' and its entities: Port migration %s started", t.identifier,
        body.migrationId)
    else
      say("deleted blueprint '%s' and its %d entities", t.identifier, t.entities)
    end
  end
  if failed > 0 then
    if o.destroy then say("integration '%s' kept: %d blueprints were not deleted", id, failed) end
    return 1
  end
  if o.destroy then
    local body, derr = eng.port:call { method = "DELETE", path = "/integration/" .. port_mod.escape(id) }
    if body == nil then return fail(o, "cannot delete integration '%s': %s", id, tostring(derr)) end
    say("deleted integration '%s'", id)
  end
  return 0
end

-- }====================

function _M.main(args)
  local o, perr = parse_args(args)
  if not o then
    io.stderr:write("ocean defaults: ", perr, "\n\n", USAGE)
    return 2
  end
  if o.help then
    io.stdout:write(USAGE)
    return 0
  end
  local f = io.open(o.path .. "/.port/spec.yaml", "r")
  if not f then
    io.stderr:write("ocean defaults ", o.cmd, ": ", o.path,
      " is not an integration folder (it has no .port/spec.yaml)\n")
    return 1
  end
  f:close()
  local eng, err = open(o)
  if not eng then return fail(o, "%s", tostring(err)) end
  local ok, rc = xpcall(o.cmd == "dock" and dock or clean, debug.traceback, o, eng)
  if not ok then rc = fail(o, "internal error: %s", tostring(rc)) end
  eng:close()
  return rc
end

_M.USAGE = USAGE
return _M
