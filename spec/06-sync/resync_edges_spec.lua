-- Full resync: failures, retries, faults, ordering and pipelining.
local ehelp = require "spec.helpers.emulator"
local oh = require "spec.helpers.ocean"
local json = require "ocean.json"

local BLUEPRINTS = {
  { identifier = "team", title = "Team", schema = { properties = {} } },
  { identifier = "service", title = "Service",
    schema = { properties = { stars = { type = "number" } } },
    relations = { team = { target = "team", many = false, required = false } } },
}

local function resource(kind)
  if kind == "team" then
    return { kind = "team", selector = { query = "true" },
      port = { entity = { mappings = { identifier = ".id", title = ".name", blueprint = '"team"' } } } }
  end
  return { kind = "service", selector = { query = "true" },
    port = { entity = { mappings = { identifier = ".id", title = ".name", blueprint = '"service"',
      properties = { stars = ".stars" }, relations = { team = ".team" } } } } }
end

local function mapping(order, extra)
  local m = { createMissingRelatedEntities = false, deleteDependentEntities = true,
              resources = json.array {} }
  for _, k in ipairs(order) do m.resources[#m.resources + 1] = resource(k) end
  for k, v in pairs(extra or {}) do m[k] = v end
  return m
end

local TEAMS = { { id = "team-0", name = "Zero" }, { id = "team-1", name = "One" } }
local function services(n)
  local out = {}
  for i = 1, n do
    out[i] = { id = "svc-" .. i, name = "S" .. i, stars = i, team = "team-" .. (i % 2) }
  end
  return out
end

describe("sync_raw_all edge cases", function()
  local emu, ocean, data
  setup(function() emu = ehelp.start() end)
  teardown(function() ehelp.stop_all() end)

  local function start(m)
    emu.reset()
    local _
    _, ocean = oh.setup(emu, { blueprints = BLUEPRINTS, mapping = m })
    data = { teams = TEAMS, services = services(10) }
    ocean.on_resync("team", function() return data.teams end)
    ocean.on_resync("service", function() return data.services end)
  end

  local function count(bp) return #emu.entities(bp) end

  it("retries entities that failed for a missing relation target, targets first", function()
    start(mapping { "service", "team" })     -- sources before their targets
    local s = ocean.sync_raw_all()
    assert.is_true(s.ok, json.encode(s.errors))
    assert.are.equal(0, s.failed)
    assert.are.equal(12, s.created)
    assert.are.equal(10, count("service"))
    local saw207 = false
    for _, r in ipairs(emu.requests()) do
      if r.path == "/v1/blueprints/service/entities/bulk" and r.status == 207 then saw207 = true end
    end
    assert.is_true(saw207)
  end)

  it("reports an entity Port rejects, keeps the others, and deletes nothing because of it", function()
    start(mapping { "team", "service" })
    assert.is_true(ocean.sync_raw_all().ok)
    data.services[4].stars = "many"          -- 422: not a number
    local s = ocean.sync_raw_all()
    assert.are.equal(1, s.failed)
    assert.are.equal(0, s.deleted)
    assert.are.equal(1, #s.failures)
    assert.are.equal("svc-4", s.failures[1].identifier)
    assert.are.equal(422, s.failures[1].status)
    assert.are.equal(10, count("service"))
  end)

  it("rides through 429s and 503s without losing anything", function()
    start(mapping { "team", "service" })
    emu.faults { { method = "POST", path = "/entities/bulk$", status = 429, retry_after = "0.05", every = 2 },
                 { method = "POST", path = "datasource%-entities", status = 503, count = 1 } }
    local s = ocean.sync_raw_all()
    assert.is_true(s.ok, json.encode(s.errors))
    assert.are.equal(12, s.created)
    assert.are.equal(10, count("service"))
    emu.faults()
  end)

  it("does not delete when the owned entities cannot be read", function()
    start(mapping { "team", "service" })
    assert.is_true(ocean.sync_raw_all().ok)
    table.remove(data.services, 1)
    emu.faults { { method = "POST", path = "datasource%-entities", status = 500 } }
    local s = ocean.sync_raw_all()
    emu.faults()
    assert.are.equal(0, s.deleted)
    assert.is_true(s.deletion.skipped)
    assert.truthy(table.concat(s.deletion.reasons, ";"):find("could not read the entities", 1, true))
    assert.are.equal(10, count("service"))
  end)

  it("deletes sources before their targets when Port must not delete dependents", function()
    start(mapping({ "team", "service" }, { deleteDependentEntities = false }))
    assert.is_true(ocean.sync_raw_all().ok)
    data.teams = { TEAMS[2] }                -- team-0 goes, with its services
    local kept = {}
    for _, sv in ipairs(data.services) do if sv.team ~= "team-0" then kept[#kept + 1] = sv end end
    data.services = kept
    local s = ocean.sync_raw_all()
    assert.is_true(s.ok, json.encode(s.errors))
    assert.are.equal(6, s.deleted)
    assert.are.equal(5, count("service"))
    assert.are.equal(1, count("team"))
    local order = {}
    for _, r in ipairs(emu.requests()) do
      if r.path:match("/bulk/entities/delete$") then order[#order + 1] = r.path:match("^/v1/blueprints/([^/]+)") end
    end
    assert.are.same({ "service", "team" }, order)
  end)

  it("asks for the next page while the previous page's upserts are in flight", function()
    start(mapping { "team", "service" })
    emu.faults { { method = "POST", path = "/service/entities/bulk$", delay_ms = 400 } }
    local in_flight_at_resume = {}
    ocean.reset()
    ocean.on_resync("team", function() return data.teams end)
    ocean.on_resync("service", function()
      for p = 1, 3 do
        local page = {}
        for i = 1, 20 do
          local n = (p - 1) * 20 + i
          page[i] = { id = "svc-" .. n, name = "S" .. n, stars = n, team = "team-0" }
        end
        coroutine.yield(page)
        local run = ocean.context():running()
        in_flight_at_resume[p] = run.session:stats().in_flight
      end
    end)
    local s = ocean.sync_raw_all()
    emu.faults()
    assert.is_true(s.ok, json.encode(s.errors))
    assert.are.equal(60, count("service"))
    -- each page of 20 went out at once; the generator was resumed while
    -- it was still on the wire
    assert.is_true(in_flight_at_resume[1] >= 20, tostring(in_flight_at_resume[1]))
    assert.is_true(in_flight_at_resume[2] >= 20, tostring(in_flight_at_resume[2]))
  end)

  it("always upserts entities with a search identifier and never deletes them", function()
    start(mapping { "team", "service" })
    assert.is_true(ocean.sync_raw_all().ok)
    local m = mapping { "team", "service" }
    m.resources[3] = { kind = "rename", selector = { query = "true" },
      port = { entity = { mappings = {
        identifier = { combinator = '"and"', rules = json.array {
          { property = '"$identifier"', operator = '"="', value = ".target" } } },
        blueprint = '"service"', title = ".title" } } } }
    emu.api("PATCH", "/v1/integration/spec-integration", { config = m })
    ocean.on_resync("rename", function() return { { target = "svc-1", title = "Renamed" } } end)
    local s1 = ocean.sync_raw_all()
    assert.is_true(s1.ok, json.encode(s1.errors))
    local s2 = ocean.sync_raw_all()
    -- svc-1 is written by two kinds (title S1, then Renamed): both updates;
    -- the search-identifier entity has no stable key: sent every time
    assert.are.same({ 0, 2 }, { s2.created, s2.updated })
    assert.are.equal(0, s2.deleted)
    for _, e in ipairs(emu.entities("service")) do
      if e.identifier == "svc-1" then assert.are.equal("Renamed", e.title) end
    end
  end)
end)
