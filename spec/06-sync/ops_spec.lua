-- The live-event operations and sync(entities), end to end.
local ehelp = require "spec.helpers.emulator"
local oh = require "spec.helpers.ocean"
local json = require "ocean.json"

local BLUEPRINTS = {
  { identifier = "team", title = "Team", schema = { properties = {} } },
  { identifier = "user", title = "User",
    schema = { properties = { email = { type = "string" }, active = { type = "boolean" } } },
    relations = { team = { target = "team", many = false, required = false } } },
}

local MAPPING = {
  createMissingRelatedEntities = true,
  deleteDependentEntities = true,
  resources = json.array {
    { kind = "user", selector = { query = ".active" },
      port = { entity = { mappings = { identifier = ".login", title = ".name",
        blueprint = '"user"', properties = { email = ".email", active = ".active" },
        relations = { team = ".team" } } } } },
  },
}

local function user(login, extra)
  local u = { login = login, name = "User " .. tostring(login), email = tostring(login) .. "@x.io",
              active = true, team = "core" }
  for k, v in pairs(extra or {}) do u[k] = v end
  return u
end

describe("live-event operations", function()
  local emu, ocean
  setup(function() emu = ehelp.start() end)
  teardown(function() ehelp.stop_all() end)
  before_each(function()
    emu.reset()
    local _
    _, ocean = oh.setup(emu, { blueprints = BLUEPRINTS, mapping = MAPPING })
  end)

  local function users()
    local out = {}
    for _, e in ipairs(emu.entities("user")) do out[e.identifier] = e end
    return out
  end

  it("register_raw maps and upserts, creating missing related entities", function()
    local r = ocean.register_raw("user", { user("ann"), user("bob") })
    assert.is_true(r.ok, json.encode(r.errors))
    assert.are.equal(2, r.created)
    local u = users()
    assert.are.equal("ann@x.io", u.ann.properties.email)
    assert.are.equal("core", u.ann.relations.team)
    assert.are.equal(1, #emu.entities("team"))
  end)

  it("register_raw deletes an owned entity that now fails the selector", function()
    ocean.register_raw("user", { user("ann"), user("bob") })
    local r = ocean.register_raw("user", user("bob", { active = false }))
    assert.is_true(r.ok)
    assert.are.equal(1, r.deleted)
    assert.is_nil(users().bob)
    assert.truthy(users().ann)
  end)

  it("reports an item the mapping dropped (no identifier): ok false, counted, no deletion", function()
    ocean.register_raw("user", { user("ann"), user("bob") })
    -- bob now fails the selector, but one item has no login: the state is
    -- incomplete, as in a resync, so nothing is deleted
    local r = ocean.register_raw("user", { user("bob", { active = false }), user(nil, { name = "Nobody" }),
                                           user("cid") })
    assert.is_false(r.ok)
    assert.are.same({ 1, 1, 0, 0 }, { r.dropped, r.created, r.deleted or 0, #r.errors })
    assert.are.equal(1, #r.dropped_items)
    assert.are.equal(2, r.dropped_items[1].index)
    assert.matches("^kind 'user': ", r.dropped_items[1].reason)
    assert.truthy(users().bob)
    assert.truthy(users().cid)
    -- a clean call reports dropped 0
    r = ocean.register_raw("user", { user("dan") })
    assert.are.same({ true, 0 }, { r.ok, r.dropped })
    -- unregister_raw and update_raw_diff say the same
    r = ocean.unregister_raw("user", { user(nil) })
    assert.are.same({ false, 1 }, { r.ok, r.dropped })
    r = ocean.update_raw_diff("user", { before = { user("dan") }, after = { user(nil) } })
    assert.are.same({ false, 1, 0 }, { r.ok, r.dropped, r.deleted or 0 })
    assert.truthy(users().dan)
  end)

  it("unregister_raw deletes only what this integration owns", function()
    ocean.register_raw("user", { user("ann") })
    emu.seed { { identifier = "eve", blueprint = "user", title = "Eve",
                 datasource = "port-ocean/spec/1.0.0/someone-else/exporter",
                 properties = {}, relations = {} } }
    local r = ocean.unregister_raw("user", { user("ann"), user("eve") })
    assert.are.equal(1, r.deleted)
    assert.are.equal(1, r.not_owned)
    assert.is_nil(users().ann)
    assert.truthy(users().eve)
  end)

  it("update_raw_diff upserts what changed and deletes what disappeared", function()
    ocean.register_raw("user", { user("ann"), user("bob"), user("cid") })
    emu.clear_requests()
    local r = ocean.update_raw_diff("user", {
      before = { user("ann"), user("bob"), user("cid") },
      after = { user("ann"), user("bob", { email = "bob@new.io" }), user("dan") },
    })
    assert.is_true(r.ok, json.encode(r.errors))
    assert.are.same({ 1, 1, 1, 1 }, { r.created, r.updated, r.unchanged, r.deleted })
    local u = users()
    assert.are.equal("bob@new.io", u.bob.properties.email)
    assert.truthy(u.dan)
    assert.is_nil(u.cid)
    -- ann was identical in both states: not sent
    for _, req in ipairs(emu.requests { bodies = true }) do
      if req.path:match("/entities/bulk$") then
        for _, e in ipairs(req.body.entities) do assert.are_not.equal("ann", e.identifier) end
      end
    end
  end)

  it("update_diff, register and unregister work on ready-made entities", function()
    local a = { identifier = "ann", blueprint = "user", title = "Ann", properties = { email = "a@x" } }
    local b = { identifier = "bob", blueprint = "user", title = "Bob", properties = { email = "b@x" } }
    assert.is_true(ocean.register({ a, b }).ok)
    local r = ocean.update_diff { before = { a, b }, after = { a } }
    assert.are.equal(1, r.deleted)
    assert.is_nil(users().bob)
    r = ocean.unregister { a }
    assert.are.equal(1, r.deleted)
    assert.is_nil(users().ann)
  end)

  it("sync(entities) makes the owned entities equal to the list", function()
    ocean.register_raw("user", { user("ann"), user("bob"), user("cid"), user("dan") })
    local list = {
      { identifier = "ann", blueprint = "user", title = "User ann",
        properties = { email = "ann@x.io", active = true }, relations = { team = "core" } },
      { identifier = "eve", blueprint = "user", title = "Eve", properties = {}, relations = {} },
    }
    local s = ocean.sync(list, { })
    assert.is_true(s.ok, json.encode(s.errors))
    assert.are.same({ 1, 0, 1 }, { s.created, s.updated, s.unchanged })
    -- 3 of 5 owned (4 users + the created team) : 60 % <= 90 %
    assert.are.equal(3, s.deleted)
    local u = users()
    assert.truthy(u.ann and u.eve)
    assert.is_nil(u.bob)
  end)

  it("sync(entities) never deletes an entity whose upsert failed", function()
    ocean.register_raw("user", { user("ann"), user("bob") })
    local list = {
      { identifier = "ann", blueprint = "user", title = "Ann", properties = { email = 5 } },  -- 422
      { identifier = "bob", blueprint = "user", title = "User bob",
        properties = { email = "bob@x.io", active = true }, relations = { team = "core" } },
    }
    local s = ocean.sync(list)
    assert.are.equal(1, s.failed)
    assert.are.equal(0, s.deleted)
    assert.truthy(users().ann)
  end)

  it("plan mode writes nothing for live events", function()
    ocean.register_raw("user", { user("ann") })
    emu.clear_requests()
    local r = ocean.register_raw("user", { user("bob"), user("ann", { active = false }) }, { plan = true })
    assert.are.equal(1, #r.planned)
    assert.are.equal("ann", r.planned_delete[1].identifier)
    for _, req in ipairs(emu.requests()) do
      assert.is_true(req.path == "/v1/entities/search" or req.method == "GET"
        or req.path == "/v1/auth/access_token", req.method .. " " .. req.path)
    end
    assert.is_nil(users().bob)
  end)
end)
