-- ocean.emulator.control: the test control API under /_emulator/ (no
-- authentication, no fault injection).
--
--   GET    /_emulator/health
--   POST   /_emulator/reset                 everything back to empty
--   GET    /_emulator/requests[?bodies=true] the request log
--   DELETE /_emulator/requests
--   GET    /_emulator/faults                 the rules with their counters
--   POST   /_emulator/faults {"rules":[...]} replace the rules
--   DELETE /_emulator/faults
--   GET    /_emulator/entities[?blueprint=]  the raw catalog
--   POST   /_emulator/entities {"entities":[...]}  seed entities as is
--   POST   /_emulator/resync-request {"integration": id}
--   POST   /_emulator/shutdown              save and exit (after answering)
local core = require "ocean.core"
local json = require "ocean.json"
local util = require "ocean.emulator.util"
local storemod = require "ocean.emulator.store"

local type, ipairs, format = type, ipairs, string.format
local array = json.array
local is_object = util.is_object

local _M = {}

local function err(status, message)
  return status, { ok = false, error = "invalid_request", message = message }
end

local body_object = util.body_object

local function health(emu)
  return 200, { ok = true, version = core.version, entities = emu.store.count,
                requests = #emu.requests }
end

local function reset(emu)
  emu:reset()
  return 200, { ok = true }
end

local function requests(emu, req)
  local bodies = req:query_bool("bodies", false)
  local out = array()
  for i, entry in ipairs(emu.requests) do
    local copy = util.copy(entry)
    copy._body = nil
    if bodies and entry._body then
      copy.body = util.decode(entry._body) or entry._body
    end
    out[i] = copy
  end
  return 200, { ok = true, requests = out }
end

local function clear_requests(emu)
  emu.requests, emu.seq = {}, 0
  return 200, { ok = true }
end

local function get_faults(emu)
  return 200, { ok = true, rules = emu.faults:list() }
end

local function set_faults(emu, req)
  local b = body_object(req)
  local ok, ferr = emu.faults:set(b.rules == nil and {} or b.rules)
  if not ok then return err(422, ferr) end
  return 200, { ok = true, rules = #emu.faults.rules }
end

local function clear_faults(emu)
  emu.faults:clear()
  return 200, { ok = true }
end

local function catalog(emu, req)
  local bp = req.query.blueprint
  if type(bp) == "table" then bp = bp[#bp] end
  local out = array()
  for i, e in ipairs(emu.store:entities(bp)) do out[i] = storemod.view(e) end
  return 200, { ok = true, entities = out }
end

local SEED_FIELDS = { "title", "icon", "team", "createdBy", "updatedBy" }

-- A seeded entity in the internal form, or nil, message.
local function seed_entity(v, i, ms, iso)
  if not is_object(v) or type(v.identifier) ~= "string" or v.identifier == ""
     or type(v.blueprint) ~= "string" or v.blueprint == "" then
    return nil, format("entities[%d] needs string identifier and blueprint", i - 1)
  end
  local e = { identifier = v.identifier, blueprint = v.blueprint,
              properties = is_object(v.properties) and v.properties or {},
              relations = is_object(v.relations) and v.relations or {},
              datasource = type(v.datasource) == "string" and v.datasource or "" }
  for _, f in ipairs(SEED_FIELDS) do e[f] = v[f] end
  local updated = type(v.updatedAt) == "string" and util.parse_iso(v.updatedAt)
  if v.updatedAt ~= nil and not updated then
    return nil, format("entities[%d].updatedAt is not an ISO-8601 date-time", i - 1)
  end
  e._ts = updated or ms
  e.updatedAt = updated and v.updatedAt or iso
  e.createdAt = type(v.createdAt) == "string" and v.createdAt or e.updatedAt
  return e
end

local function seed(emu, req)
  local b = body_object(req)
  local list = b.entities
  if type(list) ~= "table" then return err(422, "the body must be {\"entities\": [...]}") end
  local ms, iso = emu.store:write_time()
  local todo = {}
  for i, v in ipairs(list) do
    local e, serr = seed_entity(v, i, ms, iso)
    if not e then return err(422, serr) end
    todo[i] = e
  end
  for _, e in ipairs(todo) do emu.store:put(e) end
  return 200, { ok = true, count = #todo }
end

local function add_resync_request(emu, req)
  local b = body_object(req)
  if type(b.integration) ~= "string" or b.integration == "" then
    return err(422, "'integration' must be an integration identifier")
  end
  local _, iso = emu.store:write_time()
  local r = { id = util.random_hex(8), updatedAt = iso }
  emu.store:put_resync_request(b.integration, r)
  return 200, { ok = true, request = r }
end

local function shutdown(emu)
  emu.stopping = true
  return 200, { ok = true }
end

function _M.install(srv, emu)
  local function r(method, pattern, fn)
    srv:route(method, pattern, function(req) return fn(emu, req) end)
  end
  r("GET", "/_emulator/health", health)
  r("POST", "/_emulator/reset", reset)
  r("GET", "/_emulator/requests", requests)
  r("DELETE", "/_emulator/requests", clear_requests)
  r("GET", "/_emulator/faults", get_faults)
  r("POST", "/_emulator/faults", set_faults)
  r("DELETE", "/_emulator/faults", clear_faults)
  r("GET", "/_emulator/entities", catalog)
  r("POST", "/_emulator/entities", seed)
  r("POST", "/_emulator/resync-request", add_resync_request)
  r("POST", "/_emulator/shutdown", shutdown)
end

return _M
