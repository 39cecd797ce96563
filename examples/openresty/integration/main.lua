-- A service catalog kept in a JSON file (catalog.json beside this file, or
-- OCEAN__INTEGRATION__CONFIG__CATALOG_FILE), synced into Port as `service`
-- entities, and kept up to date between resyncs by a webhook:
--
--   POST /integration/webhook  {"action": "upsert" | "delete",
--                               "service": {...} | "services": [{...}, ...]}
--
-- The same folder runs under `ocean sail` and inside nginx (see ../README.md).
local ocean = require "ocean"

local PAGE = 10

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."

local function catalog_file()
  return ocean.integration_config.catalog_file or (here .. "/catalog.json")
end

local function read_catalog()
  local f = assert(io.open(catalog_file(), "rb"))
  local text = f:read("*a")
  f:close()
  return assert(ocean.json.decode(text))
end

-- A generator: one page of services at a time.
ocean.on_resync("service", function()
  local all = read_catalog()
  for i = 1, #all, PAGE do
    local page = {}
    for k = i, math.min(i + PAGE - 1, #all) do page[#page + 1] = all[k] end
    coroutine.yield(page)
  end
end)

ocean.router.post("/webhook", function(req)
  local ev = req.body
  if type(ev) ~= "table" or (ev.action ~= "upsert" and ev.action ~= "delete") then
    return 422, { ok = false, error = "expected {action = 'upsert' | 'delete', service = {...}}" }
  end
  local services = ev.services or { ev.service }
  if type(services) ~= "table" or #services == 0 then
    return 422, { ok = false, error = "no service in the event" }
  end
  local rep
  if ev.action == "upsert" then
    rep = ocean.register_raw("service", services)
  else
    rep = ocean.unregister_raw("service", services)
  end
  return rep.ok and 200 or 502, {
    ok = rep.ok, created = rep.created, updated = rep.updated, deleted = rep.deleted,
    failed = rep.failed, errors = ocean.json.array(rep.errors or {}) }
end)
