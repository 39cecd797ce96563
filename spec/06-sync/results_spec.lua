-- What a resync function gives is checked (issue 10, deliverable 1): a
-- `nil, err`, an object page, anything that is not a list of objects
-- fails the kind, and a failed kind deletes nothing. The resource config
-- reaches the function (issue 13, deliverable 1).
local ehelp = require "spec.helpers.emulator"
local fake = require "spec.helpers.fake_api"
local oh = require "spec.helpers.ocean"
local json = require "ocean.json"
local log = require "ocean.log"

local BLUEPRINTS = {
  { identifier = "team", title = "Team", schema = { properties = { description = { type = "string" } } } },
}

local function team_resource(extra)
  local r = { kind = "team", selector = { query = "true" },
    port = { entity = { mappings = { identifier = ".id", title = ".name", blueprint = '"team"',
      properties = { description = ".description" } } } } }
  for k, v in pairs(extra or {}) do r.selector[k] = v end
  return r
end

local function mapping(resources)
  return { createMissingRelatedEntities = true, deleteDependentEntities = true,
           resources = json.array(resources or { team_resource() }) }
end

-- Log lines at level and above, captured for the duration of fn.
local function capture(level, fn)
  local lines, old = {}, log.level()
  log.set_sink(function(lv, line) lines[#lines + 1] = lv .. " " .. line end)
  log.set_level(level)
  local ok, err = pcall(fn)
  log.set_sink(nil)
  log.set_level(old)
  assert(ok, err)
  return lines
end

local function grep(lines, pattern)
  local out = {}
  for _, l in ipairs(lines) do if l:find(pattern, 1, true) then out[#out + 1] = l end end
  return out
end

describe("a resync function's result", function()
  local emu, api, ocean

  setup(function()
    emu = ehelp.start()
    api = fake.start()
  end)
  teardown(function()
    fake.stop_all()
    ehelp.stop_all()
  end)

  local function ids()
    local out = {}
    for _, e in ipairs(emu.entities("team")) do out[#out + 1] = e.identifier end
    table.sort(out)
    return out
  end

  -- A catalog of the fake API's five teams, then fn as the team resync.
  local function start(fn, m)
    emu.reset()
    api.reset()
    local _
    _, ocean = oh.setup(emu, { blueprints = BLUEPRINTS, mapping = m or mapping() })
    ocean.on_resync("team", function() return ocean.http.get_json(api.url .. "/teams") end)
    local s = ocean.sync_raw_all()
    assert(s.ok and s.created == 5, json.encode(s.errors))
    ocean.reset()
    ocean.on_resync("team", fn)
  end

  local function state()
    local _, body = emu.api("GET", "/v1/integration/spec-integration")
    return body.integration.resyncState.status
  end

  it("fails the kind with err when the function returns nil, err (README's get_json on a 401)",
    function()
      start(function() return ocean.http.get_json(api.url .. "/teams") end)
      api.faults { { path = "^/teams$", status = 401, body = { message = "bad token" } } }
      local lines = capture("INFO", function()
        local s = ocean.sync_raw_all()
        assert.is_false(s.ok)
        assert.are.equal("failed", s.outcome)
        assert.are.equal(0, s.deleted)
        assert.are.equal(1, #s.errors)
        assert.are.equal("resync function for kind 'team' returned nil, GET " .. api.url
          .. '/teams: HTTP 401 {"message":"bad token"}', s.errors[1])
        assert.is_true(s.deletion.skipped)
        assert.are.equal("1 error(s) during the resync: the state is incomplete (failed: kind 'team')",
          s.deletion.reasons[1])
      end)
      api.faults()
      assert.are.same({ "data", "mobile", "payments", "platform", "security" }, ids())
      assert.are.equal("failed", state())
      assert.are.equal(1, #grep(lines, "ERROR resync function for kind 'team' returned nil, GET"))
      assert.are.equal(1, #grep(lines, "WARNING deletion skipped: 1 error(s) during the resync: "
        .. "the state is incomplete (failed: kind 'team') (5 deletion candidates stay)"))
    end)

  local bad = {
    { "an object page", function() return ocean.http.get_json(api.url .. "/user-cursor") end,
      "returned an object with keys items, next_cursor: return its list of objects" },
    { "nil alone", function() return nil end,
      "returned nil: return a list of objects ({} when there are none)" },
    { "nothing at all", function() end,
      "returned nothing and yielded no page: return a list of objects ({} when there are none)" },
    { "a number", function() return 42 end, "returned a number (42)" },
    { "a list with a number in it", function() return { { id = "x" }, 7 } end,
      "returned a list whose item 2 is a number (7): expected objects" },
    { "a list with keys besides", function() return { { id = "x" }, total = 1 } end,
      "returned a table with 1 list items and the keys total: return a list of objects only" },
    { "json null", function() return json.null end, "returned null" },
    -- beyond the contract: nothing of it is synced (the first page was
    -- silently taken, the rest dropped, and its entities deleted)
    { "two pages in one yield", function() coroutine.yield({ { id = "x" } }, { { id = "y" } }) end,
      "yielded 2 pages in one yield: yield one page at a time; nothing of them was synced" },
    { "three pages in one yield", function() coroutine.yield({}, {}, {}) end,
      "yielded 3 pages in one yield: yield one page at a time; nothing of them was synced" },
    { "a page and something else in one yield", function() coroutine.yield({ { id = "x" } }, 5) end,
      "yielded 2 values (a table, then a number (5)): yield one list of objects; nothing of them "
        .. "was synced" },
    { "a list and an extra value", function() return { { id = "x" } }, true end,
      "returned 2 values (a table, then a boolean (true)): return one list of objects; nothing "
        .. "of them was synced" },
    { "a table raised", function() error({ code = 1, list = { 1, 2 } }) end,
      'failed: {"code":1,"list":[1,2]}' },
    { "a table with __tostring raised", function()
        error(setmetatable({}, { __tostring = function() return "custom error" end })) end,
      "failed: custom error" },
  }
  for _, case in ipairs(bad) do
    it("fails the kind, naming what came back, and deletes nothing: " .. case[1], function()
      start(case[2])
      local s = ocean.sync_raw_all()
      assert.is_false(s.ok)
      assert.are.equal(0, s.deleted)
      assert.are.same({ "resync function for kind 'team' " .. case[3] }, s.errors)
      assert.are.equal(5, #ids())
    end)
  end

  it("fails the kind for what a generator yields, and still takes its good pages", function()
    start(function()
      coroutine.yield { { id = "platform", name = "Platform (renamed)" } }
      coroutine.yield(nil, "GET /teams?page=2: HTTP 503")
      coroutine.yield { items = { { id = "mobile" } }, next = "3" }
      coroutine.yield { { id = "data", name = "Data", description = "Pipelines, warehouse and reporting" } }
    end)
    local s = ocean.sync_raw_all()
    assert.is_false(s.ok)
    assert.are.same({
      "resync function for kind 'team' yielded nil, GET /teams?page=2: HTTP 503",
      "resync function for kind 'team' yielded an object with keys items, next: return its list "
        .. "of objects" }, s.errors)
    assert.are.equal(0, s.deleted)
    assert.are.equal(5, #ids())
    local titles = {}
    for _, e in ipairs(emu.entities("team")) do titles[e.identifier] = e.title end
    assert.are.equal("Platform (renamed)", titles.platform)
    assert.are.same({ 2, 1, 1 }, { s.kinds[1].batches, s.updated, s.unchanged })
  end)

  it("takes an empty list as an empty source (the threshold still guards)", function()
    start(function() return {} end)
    local s = ocean.sync_raw_all()
    assert.is_true(s.ok, json.encode(s.errors))
    assert.is_true(s.deletion.skipped)         -- 5 of 5: above 0.9
    assert.truthy(s.deletion.reasons[1]:find("above entityDeletionThreshold", 1, true))
    local empty = json.array {}
    start(function() return empty end, mapping())
    emu.api("PATCH", "/v1/integration/spec-integration",
      { config = { entityDeletionThreshold = 1, resources = mapping().resources } })
    s = ocean.sync_raw_all()
    assert.is_true(s.ok, json.encode(s.errors))
    assert.are.equal(5, s.deleted)
  end)

  it("numbers a page that is not JSON by its page, as items are numbered from 1", function()
    start(function()
      coroutine.yield { { id = "platform", name = "Platform" } }
      coroutine.yield "hello"
    end)
    local s = ocean.sync_raw_all()
    assert.is_false(s.ok)
    assert.are.equal(1, #s.errors)
    assert.truthy(s.errors[1]:find("^kind 'team': page 2: invalid JSON"), s.errors[1])
    assert.are.equal(5, #ids())
  end)

  it("accepts pages of JSON texts and a JSON text page", function()
    start(function()
      coroutine.yield(json.encode { { id = "platform", name = "Platform" } })
      coroutine.yield { json.encode { id = "data", name = "Data" } }
      return ocean.http.get_json(api.url .. "/teams")
    end)
    local s = ocean.sync_raw_all()
    assert.is_true(s.ok, json.encode(s.errors))
    assert.are.equal(0, s.deleted)
  end)
end)

describe("the resource config", function()
  local emu, ocean

  setup(function() emu = ehelp.start() end)
  teardown(function() ehelp.stop_all() end)

  it("reaches each resource's resync function, and ocean.event inside generators and helpers",
    function()
      local m = mapping {
        team_resource { jql = "project = A", apiQueryParams = { status = "open" } },
        team_resource { jql = "project = B" },
      }
      emu.reset()
      m.resources[2].selector.query = '.id != "a1"'
      local _
      _, ocean = oh.setup(emu, { blueprints = BLUEPRINTS, mapping = m })
      local seen = {}
      local function helper()               -- no arguments: reads ocean.event
        local ev = ocean.event
        return { ev.kind, ev.resource_index, ev.resource_config.selector.jql, ev.type,
                 type(ev.resync_id) }
      end
      ocean.on_resync("team", function(kind, resource)
        seen[#seen + 1] = { kind, resource.selector.jql, resource.selector.query,
                            resource.selector.apiQueryParams and resource.selector.apiQueryParams.status }
        local inner = coroutine.wrap(function() coroutine.yield(helper()) end)
        seen[#seen + 1] = inner()
        assert(rawequal(ocean.event.resource_config, resource))
        resource.selector.jql = "changed"      -- a copy: the mapping is not touched
        coroutine.yield { { id = "a" .. #seen, name = resource.selector.jql } }
      end)
      assert.is_nil(ocean.event.resource_config)
      local s = ocean.sync_raw_all()
      assert.is_true(s.ok, json.encode(s.errors))
      assert.is_nil(ocean.event.kind)
      assert.are.same({
        { "team", "project = A", "true", "open" },
        { "team", 1, "project = A", "resync", "string" },
        { "team", "project = B", '.id != "a1"' },
        { "team", 2, "project = B", "resync", "string" },
      }, seen)
      -- once per resource, two resources of one kind, named apart in the log
      assert.are.same({ "kind 'team' #1", "kind 'team' #2" }, { s.kinds[1].label, s.kinds[2].label })
      local cfg = select(2, emu.api("GET", "/v1/integration/spec-integration")).integration.config
      assert.are.equal("project = A", cfg.resources[1].selector.jql)
    end)

  it("names a resource by its place in the mapping in every line, its errors too", function()
    -- 'project' first: the first 'team' resource is the mapping's second
    local project = team_resource()
    project.kind = "project"
    local m = mapping { project, team_resource { jql = "A" }, team_resource { jql = "B" } }
    emu.reset()
    local _
    _, ocean = oh.setup(emu, { blueprints = BLUEPRINTS, mapping = m })
    ocean.on_resync("project", function() return {} end)
    ocean.on_resync("team", function(_, r)
      if r.selector.jql == "B" then return nil, "B is down" end
      return { { id = "t1", name = "T1" }, 7 }
    end)
    local s
    local lines = capture("INFO", function() s = ocean.sync_raw_all() end)
    assert.are.same({ "kind 'project'", "kind 'team' #2", "kind 'team' #3" },
      { s.kinds[1].label, s.kinds[2].label, s.kinds[3].label })
    assert.are.same({ "INFO kind 'team' #2 started (resource 2 of 3, selector: true)" },
      grep(lines, "kind 'team' #2 started"))
    assert.are.same({
      "resync function for kind 'team' #2 returned a list whose item 2 is a number (7): expected objects",
      "resync function for kind 'team' #3 returned nil, B is down",
    }, { s.errors[1], s.errors[2] })
    assert.are.equal(1, #grep(lines, "ERROR resync function for kind 'team' #3 returned nil, B is down"))
    assert.are.equal(1, #grep(lines, "(failed: kind 'team' #2, kind 'team' #3)"))
  end)

  it("is not what a webhook handled between a resync function's waits sees", function()
    emu.reset()
    local _
    _, ocean = oh.setup(emu, { blueprints = BLUEPRINTS, mapping = mapping() })
    local eng = ocean.engine()
    local in_fn, hooked = false, {}
    eng:set_wait_hook(function()
      if in_fn then hooked[#hooked + 1] = tostring(ocean.event.kind) end
    end)
    ocean.on_resync("team", function()
      in_fn = true
      local r = ocean.register_raw("team", { { id = "w", name = "W" } })   -- waits on the loop
      in_fn = false
      assert(r.ok)
      return { { id = "w", name = "W" } }
    end)
    local s = ocean.sync_raw_all()
    eng:set_wait_hook(nil)
    assert.is_true(s.ok, json.encode(s.errors))
    assert.is_true(#hooked > 0)
    for _, k in ipairs(hooked) do assert.are.equal("nil", k) end
  end)
end)
