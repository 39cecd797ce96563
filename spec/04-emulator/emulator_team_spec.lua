-- The emulator resolves an entity's `team` given as a search query
-- (issue 10, deliverable 9): against Port's system blueprint `_team`, as a
-- search relation is resolved in its target blueprint.
local json = require "ocean.json"
local helpers = require "spec.helpers.emulator"
local oh = require "spec.helpers.ocean"

local UA = "port-ocean/spec/1.0.0/spec-integration/exporter"

local emu

local function api(method, path, body)
  return emu.api(method, path, body, { user_agent = UA })
end

local function bulk(entities, query)
  return api("POST", "/v1/blueprints/service/entities/bulk?" .. (query or "upsert=true&merge=true"),
    { entities = json.array(entities) })
end

local function entity(bp, id)
  for _, e in ipairs(emu.entities(bp)) do
    if e.identifier == id then return e end
  end
end

local function q(rules, combinator)
  return { combinator = combinator or "and", rules = json.array(rules) }
end

setup(function() emu = helpers.start { quiet = true } end)
teardown(helpers.stop_all)
before_each(function()
  emu.reset()
  assert.are.equal(201, (api("POST", "/v1/blueprints", { identifier = "service", title = "Service" })))
  emu.seed {
    { identifier = "platform", blueprint = "_team", title = "Platform",
      properties = { slack = "#platform", area = "infra" } },
    { identifier = "sre", blueprint = "_team", title = "SRE",
      properties = { slack = "#sre", area = "infra" } },
    { identifier = "payments", blueprint = "_team", title = "Payments",
      properties = { slack = "#pay", area = "product" } },
    -- not a team: same property, another blueprint
    { identifier = "decoy", blueprint = "service", properties = { area = "infra" } },
  }
end)

describe("emulator: team as a search query", function()
  it("resolves a query matching one team to that team's identifier", function()
    local st, body = bulk { { identifier = "svc", team = q {
      { property = "slack", operator = "=", value = "#sre" } } } }
    assert.are.equal(200, st, json.encode(body))
    assert.are.same({ "sre" }, entity("service", "svc").team)
  end)

  it("resolves a query matching several teams to all of them, in catalog order", function()
    assert.are.equal(200, (bulk { { identifier = "svc", team = q {
      { property = "area", operator = "=", value = "infra" } } } }))
    assert.are.same({ "platform", "sre" }, entity("service", "svc").team)
  end)

  it("searches only the _team blueprint", function()
    assert.are.equal(200, (bulk { { identifier = "svc", team = q {
      { property = "$identifier", operator = "in", value = { "decoy", "payments" } } } } }))
    assert.are.same({ "payments" }, entity("service", "svc").team)
  end)

  it("accepts nested queries and the or combinator", function()
    assert.are.equal(200, (bulk { { identifier = "svc", team = q({
      { property = "$title", operator = "=", value = "Payments" },
      q { { property = "area", operator = "=", value = "infra" },
          { property = "slack", operator = "beginsWith", value = "#pl" } },
    }, "or") } }))
    assert.are.same({ "platform", "payments" }, entity("service", "svc").team)
  end)

  it("resolves queries inside a team list, keeping names and each team once", function()
    assert.are.equal(200, (bulk { { identifier = "svc", team = json.array {
      "payments",
      q { { property = "area", operator = "=", value = "infra" } },
      q { { property = "$identifier", operator = "=", value = "sre" } },
    } } }))
    assert.are.same({ "payments", "platform", "sre" }, entity("service", "svc").team)
  end)

  it("makes the resolved team searchable with $team", function()
    bulk { { identifier = "svc", team = q { { property = "$identifier", operator = "=", value = "sre" } } } }
    local st, body = api("POST", "/v1/entities/search", q {
      { property = "$blueprint", operator = "=", value = "service" },
      { property = "$team", operator = "containsAny", value = { "sre" } } })
    assert.are.equal(200, st)
    assert.are.same({ "svc" }, (function()
      local out = {}
      for i, e in ipairs(body.entities) do out[i] = e.identifier end
      return out
    end)())
  end)

  it("fails the entity with 404 when no team matches, writing nothing", function()
    local st, body = bulk { { identifier = "ok", team = "platform" },
      { identifier = "svc", team = q { { property = "slack", operator = "=", value = "#nobody" } } } }
    assert.are.equal(207, st)
    assert.are.same({ { identifier = "svc", index = 1, statusCode = 404, error = "not_found",
                        message = "no team matches the team search query" } }, body.errors)
    assert.is_nil(entity("service", "svc"))
    assert.are.equal("platform", entity("service", "ok").team)
  end)

  it("fails the entity with 422 on an invalid query, naming the team", function()
    local st, body = bulk { { identifier = "svc", team = q {
      { property = "area", operator = "sortOf", value = "x" } } } }
    assert.are.equal(207, st)
    assert.are.equal(422, body.errors[1].statusCode)
    assert.are.equal("invalid_search_query", body.errors[1].error)
    assert.truthy(body.errors[1].message:find("^team: "), body.errors[1].message)
  end)

  it("still refuses a team that is neither a string, a list nor a query", function()
    for _, bad in ipairs { 7, { name = "x" }, json.array { "a", 3 } } do
      local st, body = bulk { { identifier = "svc", team = bad } }
      assert.are.equal(207, st)
      assert.are.same({ { identifier = "svc", index = 0, statusCode = 422, error = "invalid_team",
        message = "team must be a string, a list of strings or a search query" } }, body.errors)
    end
  end)

  it("resolves a team query on the single-entity route and with validation_only", function()
    local st, body = api("POST", "/v1/blueprints/service/entities?upsert=true", { identifier = "one",
      team = q { { property = "$identifier", operator = "=", value = "payments" } } })
    assert.are.equal(201, st, json.encode(body))
    assert.are.same({ "payments" }, body.entity.team)
    st, body = bulk({ { identifier = "two", team = q {
      { property = "$identifier", operator = "=", value = "sre" } } } },
      "upsert=true&validation_only=true")
    assert.are.equal(200, st, json.encode(body))
    assert.is_nil(entity("service", "two"))
  end)

  it("gets a team mapped as a search query through a real resync", function()
    local _, ocean = oh.setup(emu, { mapping = { resources = json.array { {
      kind = "svc", selector = { query = "true" },
      port = { entity = { mappings = { identifier = ".name", blueprint = '"service"',
        team = { combinator = '"and"', rules = json.array { {
          property = '"slack"', operator = '"="', value = '"#" + .owner' } } } } } } } } } })
    ocean.on_resync("svc", function()
      return { { name = "api", owner = "pay" }, { name = "db", owner = "sre" } }
    end)
    local r = ocean.sync_raw_all()
    assert.is_true(r.ok, json.encode(r.errors))
    assert.are.same({ "payments" }, entity("service", "api").team)
    assert.are.same({ "sre" }, entity("service", "db").team)
  end)
end)
