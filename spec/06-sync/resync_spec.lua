-- Full resync end to end against the bundled emulator.
local ehelp = require "spec.helpers.emulator"
local oh = require "spec.helpers.ocean"
local json = require "ocean.json"

local BLUEPRINTS = {
  { identifier = "team", title = "Team", schema = { properties = {} } },
  { identifier = "service", title = "Service",
    schema = { properties = { url = { type = "string" }, stars = { type = "number" } } },
    relations = { team = { target = "team", many = false, required = false } } },
}

local function mapping(extra)
  local m = {
    createMissingRelatedEntities = false,
    deleteDependentEntities = true,
    resources = json.array {
      { kind = "team", selector = { query = "true" },
        port = { entity = { mappings = { identifier = ".id", title = ".name",
          blueprint = '"team"' } } } },
      { kind = "service", selector = { query = ".archived != true" },
        port = { entity = { mappings = { identifier = ".id", title = ".name",
          blueprint = '"service"',
          properties = { url = ".url", stars = ".stars" },
          relations = { team = ".team" } } } } },
    },
  }
  for k, v in pairs(extra or {}) do m[k] = v end
  return m
end

local function services(n, opts)
  opts = opts or {}
  local list = {}
  for i = 1, n do
    list[i] = { id = "svc-" .. i, name = "Service " .. i, url = "https://x/" .. i,
                stars = opts.stars and opts.stars[i] or i, team = "team-" .. (i % 3) }
  end
  return list
end

local TEAMS = { { id = "team-0", name = "Zero" }, { id = "team-1", name = "One" },
                { id = "team-2", name = "Two" } }

describe("sync_raw_all", function()
  local emu, ocean
  setup(function() emu = ehelp.start { page_limit = 7 } end)
  teardown(function() ehelp.stop_all() end)

  local data
  before_each(function()
    emu.reset()
    local _
    _, ocean = oh.setup(emu, { blueprints = BLUEPRINTS, mapping = mapping() })
    data = { teams = TEAMS, services = services(25) }
    ocean.on_resync("team", function() return data.teams end)
    ocean.on_resync("service", function()
      local page = {}
      for _, s in ipairs(data.services) do
        page[#page + 1] = s
        if #page == 10 then coroutine.yield(page); page = {} end
      end
      if #page > 0 then coroutine.yield(page) end
    end)
  end)

  local function ids(bp)
    local out = {}
    for _, e in ipairs(emu.entities(bp)) do out[#out + 1] = e.identifier end
    table.sort(out)
    return out
  end

  it("creates every entity on the first resync, coalescing pages into full requests", function()
    local s = ocean.sync_raw_all()
    assert.is_true(s.ok, json.encode(s.errors))
    assert.are.equal(28, s.created)
    assert.are.equal(0, s.updated)
    assert.are.equal(0, s.deleted)
    assert.are.equal(25, #ids("service"))
    local e = emu.entities("service")[1]
    assert.are.equal("port-ocean/spec/1.0.0/spec-integration/exporter", e.datasource)
    -- 25 services in pages of 10: requests of 20 + 5, not 10 + 10 + 5
    assert.are.equal(2, oh.count(emu, "POST", "^/v1/blueprints/service/entities/bulk$"))
    assert.are.equal(1, oh.count(emu, "POST", "^/v1/blueprints/team/entities/bulk$"))
  end)

  it("sends no upsert and no search when nothing changed", function()
    assert.is_true(ocean.sync_raw_all().ok)
    emu.clear_requests()
    local s = ocean.sync_raw_all()
    assert.is_true(s.ok)
    assert.are.same({ 0, 0, 28, 0 }, { s.created, s.updated, s.unchanged, s.deleted })
    assert.are.equal(0, oh.count(emu, "POST", "/entities/bulk$"))
    assert.are.equal(0, oh.count(emu, "POST", "^/v1/entities/search$"))
    assert.are.equal(0, oh.count(emu, "POST", "/bulk/entities/delete$"))
  end)

  it("updates exactly the entity whose property changed", function()
    assert.is_true(ocean.sync_raw_all().ok)
    data.services[7].stars = 700
    emu.clear_requests()
    local s = ocean.sync_raw_all()
    assert.are.same({ 0, 1, 27 }, { s.created, s.updated, s.unchanged })
    local reqs = emu.requests { bodies = true }
    local sent = {}
    for _, r in ipairs(reqs) do
      if r.path:match("/entities/bulk$") then
        for _, e in ipairs(r.body.entities) do sent[#sent + 1] = e.identifier end
      end
    end
    assert.are.same({ "svc-7" }, sent)
    for _, e in ipairs(emu.entities("service")) do
      if e.identifier == "svc-7" then assert.are.equal(700, e.properties.stars) end
    end
  end)

  it("deletes an entity whose source object is gone", function()
    assert.is_true(ocean.sync_raw_all().ok)
    table.remove(data.services, 3)
    local s = ocean.sync_raw_all()
    assert.is_true(s.ok)
    assert.are.equal(1, s.deleted)
    assert.are.equal(24, #ids("service"))
    for _, id in ipairs(ids("service")) do assert.are_not.equal("svc-3", id) end
  end)

  it("leaves every entity in place when a generator raises mid-way, and reports it", function()
    assert.is_true(ocean.sync_raw_all().ok)
    ocean.reset()
    ocean.on_resync("team", function() return data.teams end)
    ocean.on_resync("service", function()
      coroutine.yield({ data.services[1] })
      error("the third-party API went away")
    end)
    local s = ocean.sync_raw_all()
    assert.is_false(s.ok)
    assert.are.equal(0, s.deleted)
    assert.truthy(s.errors[1]:find("the third-party API went away", 1, true), s.errors[1])
    assert.is_true(s.deletion.skipped)
    assert.are.equal(25, #ids("service"))
    local st, body = emu.api("GET", "/v1/integration/spec-integration")
    assert.are.equal(200, st)
    assert.are.equal("failed", body.integration.resyncState.status)
  end)

  it("refuses a mass deletion above the threshold", function()
    emu.api("PATCH", "/v1/integration/spec-integration", { config = mapping {
      entityDeletionThreshold = 0.5 } })
    assert.is_true(ocean.sync_raw_all().ok)
    data.services = { data.services[1] }     -- 24 of 28 owned: 86 % > 50 %
    local s = ocean.sync_raw_all()
    assert.are.equal(0, s.deleted)
    assert.is_true(s.deletion.skipped)
    assert.truthy(s.deletion.reasons[1]:find("above entityDeletionThreshold", 1, true))
    assert.are.equal(25, #ids("service"))
  end)

  it("never touches entities owned by another integration or written by hand", function()
    emu.seed {
      { identifier = "svc-other", blueprint = "service", title = "theirs",
        datasource = "port-ocean/spec/1.0.0/another-integration/exporter", properties = {}, relations = {} },
      { identifier = "svc-manual", blueprint = "service", title = "by hand",
        datasource = "Mozilla/5.0", properties = {}, relations = {} },
    }
    local s = ocean.sync_raw_all()
    assert.is_true(s.ok)
    local got = ids("service")
    assert.are.equal(27, #got)
    assert.truthy(table.concat(got, ","):find("svc-other", 1, true))
    assert.truthy(table.concat(got, ","):find("svc-manual", 1, true))
  end)

  it("keeps an entity written by a webhook during the resync", function()
    assert.is_true(ocean.sync_raw_all().ok)
    -- the source no longer has svc-9, but a webhook rewrites it while the
    -- resync runs: it must survive
    table.remove(data.services, 9)
    ocean.reset()
    ocean.on_resync("team", function() return data.teams end)
    ocean.on_resync("service", function()
      local r = ocean.register_raw("service", { { id = "svc-9", name = "Service 9 (webhook)",
        url = "https://x/9", stars = 9, team = "team-0" } })
      assert(r.ok, json.encode(r.errors))
      return data.services
    end)
    local s = ocean.sync_raw_all()
    assert.is_true(s.ok)
    assert.are.equal(0, s.deleted)
    local found
    for _, e in ipairs(emu.entities("service")) do
      if e.identifier == "svc-9" then found = e end
    end
    assert.are.equal("Service 9 (webhook)", found and found.title)
  end)

  it("plans without writing, and predicts exactly what the real run does", function()
    assert.is_true(ocean.sync_raw_all().ok)
    data.services[2].stars = 222
    table.remove(data.services, 5)
    data.services[#data.services + 1] = { id = "svc-new", name = "New", url = "u", stars = 1, team = "team-1" }
    emu.clear_requests()
    local plan = ocean.sync_raw_all { plan = true }
    assert.is_true(plan.ok, json.encode(plan.errors))
    for _, r in ipairs(emu.requests()) do
      assert.is_true(r.method == "GET" or r.path == "/v1/auth/access_token"
        or r.path == "/v1/blueprints/entities/datasource-entities",
        "plan mode wrote: " .. r.method .. " " .. r.path)
    end
    assert.are.same({ 1, 1, 1 }, { plan.created, plan.updated, plan.deleted })
    assert.are.same({ { blueprint = "service", identifier = "svc-new" } }, plan.planned.create)
    assert.are.same({ { blueprint = "service", identifier = "svc-2" } }, plan.planned.update)
    assert.are.same("svc-5", plan.planned.delete[1].identifier)
    local real = ocean.sync_raw_all()
    assert.are.same({ plan.created, plan.updated, plan.unchanged, plan.deleted },
                    { real.created, real.updated, real.unchanged, real.deleted })
  end)

  it("reports a kind with no resync function and does not delete", function()
    assert.is_true(ocean.sync_raw_all().ok)
    ocean.reset()
    ocean.on_resync("service", function() return {} end)
    local s = ocean.sync_raw_all()
    assert.is_false(s.ok)
    assert.truthy(s.errors[1]:find("no resync function is registered for kind 'team'", 1, true))
    assert.are.equal(28, #ids("service") + #ids("team"))
  end)

  it("fails a kind whose mapping does not compile, naming the field", function()
    emu.api("PATCH", "/v1/integration/spec-integration", { config = mapping {
      resources = json.array { { kind = "team", selector = { query = "true" },
        port = { entity = { mappings = { identifier = ".id |", blueprint = '"team"' } } } } } } })
    local s = ocean.sync_raw_all()
    assert.is_false(s.ok)
    assert.truthy(s.errors[1]:find("identifier", 1, true), s.errors[1])
  end)
end)
