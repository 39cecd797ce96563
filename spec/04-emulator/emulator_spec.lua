-- The Port emulator end to end (a lua5.4 subprocess, driven with curl):
-- auth, integrations, blueprints, entity writes, owned listing, search.
local json = require "ocean.json"
local helpers = require "spec.helpers.emulator"

local UA = "port-ocean/github/1.2.3/my-gh/exporter"
local ISO_MS = "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$"

local emu

-- status and body only (for comparing both at once)
local function sb(status, body) return { status, body } end

local function api(method, path, body, opts)
  opts = opts or {}
  opts.user_agent = opts.user_agent or UA
  return emu.api(method, path, body, opts)
end

local function blueprints()
  assert.are.equal(201, (api("POST", "/v1/blueprints", { identifier = "team", title = "Team" })))
  assert.are.equal(201, (api("POST", "/v1/blueprints", {
    identifier = "service", title = "Service",
    schema = { properties = { url = { type = "string" }, stars = { type = "number" },
                              private = { type = "boolean" }, tags = { type = "array" },
                              meta = { type = "object" } },
               required = json.array{} },
    relations = { owner = { target = "team", required = false, many = false },
                  teams = { target = "team", required = false, many = true } },
  })))
  assert.are.equal(201, (api("POST", "/v1/blueprints", {
    identifier = "deployment",
    relations = { service = { target = "service", many = false } },
  })))
end

local function bulk(bp, entities, query, opts)
  return api("POST", "/v1/blueprints/" .. bp .. "/entities/bulk?" ..
    (query or "upsert=true&merge=true"), { entities = json.array(entities) }, opts)
end

local function entity(bp, id)
  for _, e in ipairs(emu.entities(bp)) do
    if e.identifier == id then return e end
  end
  return nil
end

local function ids(list)
  local out = {}
  for i, e in ipairs(list) do out[i] = e.identifier end
  return out
end

setup(function() emu = helpers.start{ page_limit = 3 } end)
teardown(helpers.stop_all)
before_each(function() emu.reset() end)

describe("emulator auth", function()
  it("issues a bearer token for the right credentials", function()
    local status, body, h = api("POST", "/v1/auth/access_token",
      { clientId = helpers.CLIENT_ID, clientSecret = helpers.CLIENT_SECRET }, { token = false })
    assert.are.equal(200, status)
    assert.are.equal("Bearer", body.tokenType)
    assert.are.equal(3600, body.expiresIn)
    assert.truthy(body.accessToken:match("^emu_%x+$"))
    assert.truthy(h["x-trace-id"]:match("^%x+$"))
  end)

  it("answers wrong credentials with 401 invalid_credentials", function()
    local status, body = api("POST", "/v1/auth/access_token",
      { clientId = helpers.CLIENT_ID, clientSecret = "wrong" }, { token = false })
    assert.are.equal(401, status)
    assert.are.same({ ok = false, error = "invalid_credentials",
      message = "invalid client id or client secret" }, body)
  end)

  it("requires a valid bearer token on every other /v1 call", function()
    local want = { ok = false, error = "unauthorized",
      message = "a valid 'Authorization: Bearer <token>' header is required" }
    local s1, b1 = api("GET", "/v1/blueprints/team", nil, { token = false })
    local s2, b2 = api("GET", "/v1/blueprints/team", nil, { token = "emu_forged" })
    assert.are.same({ 401, want }, { s1, b1 })
    assert.are.same({ 401, want }, { s2, b2 })
  end)

  it("refuses expired tokens", function()
    local short = helpers.start{ token_ttl = 1 }
    local token = short.token()
    assert.are.equal(404, (short.api("GET", "/v1/blueprints/x")))
    helpers.sleep(1.1)
    local status, body = short.api("GET", "/v1/blueprints/x", nil, { token = token })
    short.stop()
    assert.are.equal(401, status)
    assert.are.same({ ok = false, error = "unauthorized", message = "the access token has expired" }, body)
  end)

  it("refuses tokens issued before a reset", function()
    local token = emu.token()
    emu.reset()
    assert.are.equal(401, (api("GET", "/v1/blueprints/x", nil, { token = token })))
  end)
end)

describe("emulator integrations", function()
  it("creates, reads and patches an integration", function()
    local s0, b0 = api("GET", "/v1/integration/my-gh")
    assert.are.same({ 404, { ok = false, error = "not_found", message = "integration not found" } },
      { s0, b0 })
    local s1, b1 = api("POST", "/v1/integration", { installationId = "my-gh",
      installationAppType = "github", version = "1.2.3", config = { resources = json.array{} } })
    assert.are.equal(200, s1)
    assert.are.equal("my-gh", b1.integration.identifier)
    assert.are.equal("github", b1.integration.installationAppType)
    assert.are.equal(409, (api("POST", "/v1/integration", { installationId = "my-gh" })))
    local s2, b2 = api("PATCH", "/v1/integration/my-gh", { version = "1.2.4" })
    assert.are.equal(200, s2)
    assert.are.equal("1.2.4", b2.integration.version)
    assert.are.equal("github", b2.integration.installationAppType)
    local _, b3 = api("PATCH", "/v1/integration/my-gh/config",
      { config = { deleteDependentEntities = true } })
    assert.are.same({ deleteDependentEntities = true }, b3.integration.config)
    local _, b4 = api("PATCH", "/v1/integration/my-gh/resync-state", { status = "running" })
    assert.are.equal("running", b4.integration.resyncState.status)
    assert.truthy(b4.integration.resyncState.updatedAt:match(ISO_MS))
    local _, b5 = api("GET", "/v1/integration/my-gh")
    assert.are.same(b4.integration, b5.integration)
  end)

  it("deletes an integration", function()
    api("POST", "/v1/integration", { installationId = "my-gh" })
    assert.are.same({ 200, { ok = true } }, sb(api("DELETE", "/v1/integration/my-gh")))
    assert.are.equal(404, (api("GET", "/v1/integration/my-gh")))
    assert.are.equal(404, (api("DELETE", "/v1/integration/my-gh")))
  end)

  it("describes an organisation without feature flags", function()
    assert.are.same({ 200, { ok = true, organization = { id = "org_emulator",
      name = "Port emulator", featureFlags = {} } } }, sb(api("GET", "/v1/organization")))
  end)

  it("reports resync requests", function()
    api("POST", "/v1/integration", { installationId = "my-gh" })
    local _, none = api("GET", "/v1/integration/my-gh/resync-request")
    assert.are.same({ ok = true, request = json.null }, none)
    local r = emu.resync_request("my-gh")
    local _, some = api("GET", "/v1/integration/my-gh/resync-request")
    assert.are.same({ ok = true, request = r }, some)
    assert.truthy(r.updatedAt:match(ISO_MS))
  end)
end)

describe("emulator blueprints", function()
  it("creates, gets, patches and deletes a blueprint", function()
    local s1, b1 = api("POST", "/v1/blueprints", { identifier = "team", title = "Team" })
    assert.are.equal(201, s1)
    assert.are.same({ properties = {}, required = {} }, b1.blueprint.schema)
    assert.are.same({}, b1.blueprint.relations)
    local s2, b2 = api("GET", "/v1/blueprints/team")
    assert.are.same({ 200, b1.blueprint }, { s2, b2.blueprint })
    assert.are.same({ 409, { ok = false, error = "blueprint_exists",
      message = "blueprint 'team' already exists" } },
      sb(api("POST", "/v1/blueprints", { identifier = "team" })))
    local _, b3 = api("PATCH", "/v1/blueprints/team", { title = "Teams" })
    assert.are.equal("Teams", b3.blueprint.title)
    assert.are.equal(200, (api("DELETE", "/v1/blueprints/team")))
    assert.are.same({ 404, { ok = false, error = "not_found", message = "blueprint not found" } },
      sb(api("GET", "/v1/blueprints/team")))
  end)

  it("refuses to delete a blueprint that has entities", function()
    blueprints()
    bulk("team", { { identifier = "a" } })
    assert.are.same({ 409, { ok = false, error = "has_entities",
      message = "blueprint 'team' still has entities" } },
      sb(api("DELETE", "/v1/blueprints/team")))
  end)
end)

describe("emulator bulk upsert", function()
  before_each(blueprints)

  it("answers 200 when every entity is written", function()
    local status, body = bulk("team", { { identifier = "a", title = "A" }, { identifier = "b" } })
    assert.are.equal(200, status)
    assert.are.same({ ok = true, errors = {},
      entities = { { identifier = "a", index = 0, created = true },
                   { identifier = "b", index = 1, created = true } } }, body)
    local _, again = bulk("team", { { identifier = "a" } })
    assert.are.same({ { identifier = "a", index = 0, created = false } }, again.entities)
  end)

  it("answers 207 with one error per failing entity", function()
    bulk("team", { { identifier = "team-a" } })
    local status, body = bulk("service", {
      { identifier = "ok-1", properties = { url = "u", stars = 3 }, relations = { owner = "team-a" } },
      { identifier = "", properties = {} },
      { identifier = 12 },
      { identifier = "has space" },
      { identifier = "bad-type", properties = { stars = "many" } },
      { identifier = "bad-rel", relations = { nope = "team-a" } },
      { identifier = "missing-target", relations = { owner = "team-zz" } },
      { identifier = "bad-many", relations = { teams = "team-a" } },
      { identifier = "ok-2", properties = { private = true, tags = json.array{ "x" }, meta = {} } },
    }, "upsert=true&merge=true&create_missing_related_entities=false")
    assert.are.equal(207, status)
    assert.are.same({ { identifier = "ok-1", index = 0, created = true },
                      { identifier = "ok-2", index = 8, created = true } }, body.entities)
    assert.are.same({
      { identifier = "", index = 1, statusCode = 422, error = "invalid_identifier",
        message = "identifier '' must be a non-empty string of letters, digits and @_.+:\\/=-" },
      { identifier = "12", index = 2, statusCode = 422, error = "invalid_identifier",
        message = "identifier must be a non-empty string or a search query" },
      { identifier = "has space", index = 3, statusCode = 422, error = "invalid_identifier",
        message = "identifier 'has space' must be a non-empty string of letters, digits and @_.+:\\/=-" },
      { identifier = "bad-type", index = 4, statusCode = 422, error = "invalid_property_type",
        message = "property 'stars' must be of type number, got string" },
      { identifier = "bad-rel", index = 5, statusCode = 422, error = "relation_not_found",
        message = "relation 'nope' is not defined in blueprint 'service'" },
      { identifier = "missing-target", index = 6, statusCode = 404, error = "not_found",
        message = "related entity 'team-zz' of blueprint 'team' not found" },
      { identifier = "bad-many", index = 7, statusCode = 422, error = "invalid_relation",
        message = "relation 'teams' is many: its value must be an array" },
    }, body.errors)
  end)

  it("fails every entity of an unknown blueprint with 404 blueprint_not_found", function()
    local status, body = bulk("nope", { { identifier = "a" }, { identifier = "b" } })
    assert.are.equal(207, status)
    assert.are.same({}, body.entities)
    assert.are.same({
      { identifier = "a", index = 0, statusCode = 404, error = "blueprint_not_found",
        message = "blueprint 'nope' not found" },
      { identifier = "b", index = 1, statusCode = 404, error = "blueprint_not_found",
        message = "blueprint 'nope' not found" } }, body.errors)
  end)

  it("refuses more than 20 entities in one request", function()
    local list = {}
    for i = 1, 21 do list[i] = { identifier = "t" .. i } end
    assert.are.same({ 422, { ok = false, error = "too_many_entities",
      message = "a bulk upsert takes at most 20 entities, got 21" } }, sb(bulk("team", list)))
    assert.are.same({}, emu.entities("team"))
  end)

  it("refuses to overwrite without upsert=true", function()
    bulk("team", { { identifier = "a" } })
    local status, body = bulk("team", { { identifier = "a" } }, "upsert=false")
    assert.are.equal(207, status)
    assert.are.same({ { identifier = "a", index = 0, statusCode = 409, error = "entity_exists",
      message = "entity 'a' already exists (upsert=false)" } }, body.errors)
  end)

  it("merges with merge=true and replaces with merge=false", function()
    bulk("team", { { identifier = "team-a" } })
    bulk("service", { { identifier = "s", title = "S", icon = "Git", team = json.array{ "x" },
      properties = { url = "u1", stars = 1 }, relations = { owner = "team-a" } } })
    bulk("service", { { identifier = "s", properties = { url = "u2" } } }, "upsert=true&merge=true")
    local merged = entity("service", "s")
    assert.are.same({ "S", "Git", { "x" }, { url = "u2", stars = 1 }, { owner = "team-a" } },
      { merged.title, merged.icon, merged.team, merged.properties, merged.relations })
    bulk("service", { { identifier = "s", title = "New", properties = { stars = 2 } } },
      "upsert=true&merge=false")
    local replaced = entity("service", "s")
    assert.are.same({ "New", nil, nil, { stars = 2 }, {} },
      { replaced.title, replaced.icon, replaced.team, replaced.properties, replaced.relations })
  end)

  it("records the writer as $datasource and strictly increasing updatedAt", function()
    bulk("team", { { identifier = "a" } })
    local first = entity("team", "a")
    bulk("team", { { identifier = "a" } }, nil, { user_agent = "port-ocean/other/1/x/exporter" })
    local second = entity("team", "a")
    assert.are.equal(UA, first.datasource)
    assert.are.equal("port-ocean/other/1/x/exporter", second.datasource)
    assert.truthy(first.updatedAt:match(ISO_MS))
    assert.are.equal(first.createdAt, first.updatedAt)
    assert.are.equal(first.createdAt, second.createdAt)
    assert.is_true(second.updatedAt > first.updatedAt)
    assert.are.same({ helpers.CLIENT_ID, helpers.CLIENT_ID }, { second.createdBy, second.updatedBy })
  end)

  it("creates missing related entities with create_missing_related_entities=true", function()
    local status = bulk("service", { { identifier = "s", relations = { owner = "team-new",
      teams = json.array{ "team-x", "team-y" } } } },
      "upsert=true&merge=true&create_missing_related_entities=true")
    assert.are.equal(200, status)
    assert.are.same({ "team-new", "team-x", "team-y" }, ids(emu.entities("team")))
    local stub = entity("team", "team-x")
    assert.are.same({ {}, {}, UA }, { stub.properties, stub.relations, stub.datasource })
  end)

  it("resolves search identifiers and search relations", function()
    bulk("team", { { identifier = "team-a", title = "Alpha" } })
    bulk("service", { { identifier = "s1" } })
    local query = { combinator = "and", rules = json.array{
      { property = "$identifier", operator = "=", value = "s1" } } }
    local status, body = bulk("service", {
      { identifier = query, properties = { url = "found" },
        relations = { owner = { combinator = "and", rules = json.array{
          { property = "$title", operator = "=", value = "Alpha" } } } } },
      { identifier = { combinator = "and", rules = json.array{
          { property = "$identifier", operator = "=", value = "nobody" } } } },
    })
    assert.are.equal(207, status)
    assert.are.same({ { identifier = "s1", index = 0, created = false } }, body.entities)
    assert.are.same({ { identifier = "unknown", index = 1, statusCode = 404, error = "not_found",
      message = "no entity matches the search identifier" } }, body.errors)
    local s1 = entity("service", "s1")
    assert.are.same({ { url = "found" }, { owner = "team-a" } }, { s1.properties, s1.relations })
  end)

  it("validates without writing with validation_only=true", function()
    local status, body = bulk("team", { { identifier = "a" } },
      "upsert=true&validation_only=true")
    assert.are.same({ 200, { { identifier = "a", index = 0, created = true } } },
      { status, body.entities })
    assert.are.same({}, emu.entities("team"))
  end)
end)

describe("emulator single upsert", function()
  before_each(blueprints)

  it("answers the entity, and 404 not_found for a missing related entity", function()
    local status, body = api("POST", "/v1/blueprints/service/entities?upsert=true",
      { identifier = "s", properties = { url = "u" } })
    assert.are.equal(201, status)
    assert.are.same({ "s", "service", { url = "u" }, UA },
      { body.entity.identifier, body.entity.blueprint, body.entity.properties, body.entity.datasource })
    assert.are.same({ 404, { ok = false, error = "not_found",
      message = "related entity 'ghost' of blueprint 'team' not found" } },
      sb(api("POST", "/v1/blueprints/service/entities?upsert=true",
        { identifier = "s", relations = { owner = "ghost" } })))
  end)
end)

describe("emulator owned-entity listing", function()
  local MINE = { prefix = "port-ocean/github/", suffix = "/my-gh/exporter" }

  local function list(body)
    local status, res = api("POST", "/v1/blueprints/entities/datasource-entities", body)
    assert.are.equal(200, status)
    return res
  end

  local function all(body)
    local out, pages = {}, 0
    repeat
      local res = list(body)
      pages = pages + 1
      for _, e in ipairs(res.entities) do out[#out + 1] = e.identifier end
      body.from = res.next ~= json.null and res.next or nil
    until not body.from
    return out, pages
  end

  before_each(function()
    blueprints()
    bulk("team", { { identifier = "t1" }, { identifier = "t2" } })
    bulk("team", { { identifier = "t3" } }, nil, { user_agent = "port-ocean/github/2.0.0/my-gh/exporter" })
    bulk("team", { { identifier = "o1" } }, nil, { user_agent = "port-ocean/github/1.2.3/other/exporter" })
    bulk("team", { { identifier = "o2" } }, nil, { user_agent = "port-ocean/jira/1.2.3/my-gh/exporter" })
    bulk("service", { { identifier = "s1" }, { identifier = "s2" }, { identifier = "s3" } })
    emu.seed{ { identifier = "seeded", blueprint = "team", datasource = "someone-else" } }
  end)

  it("lists the entities whose datasource matches prefix and suffix, page by page", function()
    local got, pages = all{ datasource_prefix = MINE.prefix, datasource_suffix = MINE.suffix }
    assert.are.same({ "t1", "t2", "t3", "s1", "s2", "s3" }, got)
    assert.are.equal(2, pages)        -- --page-limit 3
    local small, small_pages = all{ datasource_prefix = MINE.prefix,
      datasource_suffix = MINE.suffix, limit = 2 }
    assert.are.same(got, small)
    assert.are.equal(3, small_pages)
  end)

  it("returns full entities and a null cursor on the last page", function()
    local res = list{ datasource_prefix = "port-ocean/jira/", datasource_suffix = MINE.suffix }
    assert.are.equal(json.null, res.next)
    assert.are.equal(1, #res.entities)
    local e = res.entities[1]
    assert.are.same({ "o2", "team", {}, {}, "port-ocean/jira/1.2.3/my-gh/exporter" },
      { e.identifier, e.blueprint, e.properties, e.relations, e.datasource })
    assert.truthy(e.updatedAt:match(ISO_MS))
  end)

  it("keeps only entities updated strictly before `before`", function()
    local t2 = entity("team", "t2")
    local t3 = entity("team", "t3")
    local got = all{ datasource_prefix = MINE.prefix, datasource_suffix = MINE.suffix,
      before = t3.updatedAt }
    assert.are.same({ "t1", "t2" }, got)
    assert.are.same({}, (all{ datasource_prefix = MINE.prefix, datasource_suffix = MINE.suffix,
      before = t2.updatedAt }))
  end)

  it("understands Python's isoformat and explicit offsets in `before`", function()
    emu.seed{ { identifier = "old", blueprint = "team", datasource = "ds-x",
                updatedAt = "2020-01-01T00:00:00.000Z" },
              { identifier = "new", blueprint = "team", datasource = "ds-x",
                updatedAt = "2030-01-01T00:00:00.000Z" } }
    local cases = { "2025-06-01T12:00:00.123456+00:00", "2025-06-01T14:00:00+02:00",
                    "2025-06-01T12:00:00Z", "2025-06-01" }
    for _, before in ipairs(cases) do
      assert.are.same({ "old" }, (all{ datasource_prefix = "ds-", before = before }), before)
    end
    assert.are.same({ 422, { ok = false, error = "invalid_request",
      message = "'before' must be an ISO-8601 date-time" } },
      sb(api("POST", "/v1/blueprints/entities/datasource-entities", { before = "yesterday" })))
  end)
end)

describe("emulator search", function()
  before_each(function()
    blueprints()
    bulk("team", { { identifier = "team-a", title = "Alpha", team = json.array{ "x", "y" } },
                   { identifier = "team-b", title = "Beta" } })
    bulk("service", { { identifier = "s1", properties = { url = "https://a", stars = 5 },
                        relations = { owner = "team-a" } },
                      { identifier = "s2", properties = { url = "https://b", stars = 1 } } },
      nil, { user_agent = "port-ocean/github/1/other/exporter" })
  end)

  local function search(rules, combinator, query)
    local status, body = api("POST", "/v1/entities/search" .. (query or ""),
      { combinator = combinator or "and", rules = json.array(rules) })
    assert.are.equal(200, status)
    return ids(body.entities), body.entities
  end

  local R = function(p, op, v) return { property = p, operator = op, value = v } end
  local cases = {
    { "$identifier =", { R("$identifier", "=", "s1") }, { "s1" } },
    { "$identifier in + $blueprint =", { R("$identifier", "in", json.array{ "s1", "team-a", "s2" }),
      R("$blueprint", "=", "service") }, { "s1", "s2" } },
    { "$datasource contains (ownership rules)", { R("$datasource", "contains", "port-ocean/github/"),
      R("$datasource", "contains", "/my-gh/exporter") }, { "team-a", "team-b" } },
    { "$title", { R("$title", "=", "Beta") }, { "team-b" } },
    { "$team containsAny", { R("$team", "containsAny", json.array{ "y", "z" }) }, { "team-a" } },
    { "property =", { R("url", "=", "https://b") }, { "s2" } },
    { "property != ", { R("$blueprint", "=", "service"), R("stars", "!=", 5) }, { "s2" } },
    { "property >", { R("stars", ">", 2) }, { "s1" } },
    { "beginsWith", { R("$identifier", "beginsWith", "team-") }, { "team-a", "team-b" } },
    { "nested or", { R("$blueprint", "=", "service"), { combinator = "or", rules = json.array{
      R("$identifier", "=", "s2"), R("stars", "=", 5) } } }, { "s1", "s2" } },
    { "no rules", {}, { "team-a", "team-b", "s1", "s2" } },
  }
  for _, c in ipairs(cases) do
    it("filters with " .. c[1], function()
      assert.are.same(c[3], (search(c[2])))
    end)
  end

  it("combines top-level rules with or", function()
    assert.are.same({ "team-b", "s1" },
      (search({ R("$title", "=", "Beta"), R("$identifier", "=", "s1") }, "or")))
  end)

  it("projects the included fields", function()
    local _, ents = search({ R("$identifier", "=", "s1") }, "and",
      "?include=identifier&include=blueprint&include=properties.url&include=relations.owner"
      .. "&exclude_calculated_properties=true")
    assert.are.same({ { identifier = "s1", blueprint = "service",
      properties = { url = "https://a" }, relations = { owner = "team-a" } } }, ents)
  end)

  it("answers an invalid query with 400", function()
    assert.are.same({ 400, { ok = false, error = "invalid_search_query",
      message = "query.rules[0]: unknown operator 'like'" } },
      sb(api("POST", "/v1/entities/search", { combinator = "and",
        rules = json.array{ R("$title", "like", "x") } })))
  end)
end)

describe("emulator deletes", function()
  local function del(bp, list, query)
    return api("POST", "/v1/blueprints/" .. bp .. "/bulk/entities/delete" .. (query or ""),
      { entities = json.array(list) })
  end

  before_each(function()
    blueprints()
    bulk("team", { { identifier = "team-a" }, { identifier = "team-b" } })
    bulk("service", { { identifier = "s1", relations = { owner = "team-a" } },
                      { identifier = "s2", relations = { teams = json.array{ "team-a" } } } })
    bulk("deployment", { { identifier = "d1", relations = { service = "s1" } } })
  end)

  it("deletes the listed entities", function()
    local s1, b1 = del("team", { "team-b" })
    assert.are.same({ 200, { ok = true, deletedEntities = { "team-b" }, errors = {} } }, { s1, b1 })
    local status, body = del("deployment", { "d1", "ghost" })
    assert.are.equal(207, status)
    assert.are.same({ ok = true, deletedEntities = { "d1" }, errors = { { identifier = "ghost",
      statusCode = 404, error = "not_found",
      message = "entity 'ghost' of blueprint 'deployment' not found" } } }, body)
    assert.are.same({ "team-a" }, ids(emu.entities("team")))
  end)

  it("keeps an entity that still has dependents without delete_dependents", function()
    local status, body = del("team", { "team-a", "team-b" }, "?delete_dependents=false")
    assert.are.equal(207, status)
    assert.are.same({ ok = true, deletedEntities = { "team-b" }, errors = { {
      identifier = "team-a", statusCode = 409, error = "has_dependents",
      message = "entity 'team-a' has dependent entities (e.g. 's1' of blueprint 'service')" } } },
      body)
    local s2, b2 = del("service", { "s1", "s2" })
    assert.are.equal(207, s2)
    assert.are.same({ "s2" }, b2.deletedEntities)
    assert.are.same({ "d1" }, ids(emu.entities("deployment")))
  end)

  it("deletes dependents recursively with delete_dependents=true", function()
    local status, body = del("team", { "team-a" }, "?delete_dependents=true")
    assert.are.same({ 200, { ok = true, deletedEntities = { "team-a" }, errors = {} } },
      { status, body })
    assert.are.same({ "team-b" }, ids(emu.entities()))
  end)

  it("refuses more than 100 identifiers", function()
    local list = {}
    for i = 1, 101 do list[i] = "x" .. i end
    assert.are.same({ 422, { ok = false, error = "too_many_entities",
      message = "a bulk delete takes at most 100 identifiers, got 101" } }, sb(del("team", list)))
  end)

  it("deletes one entity, 404 when it is missing", function()
    assert.are.equal(200, (api("DELETE", "/v1/blueprints/deployment/entities/d1")))
    assert.are.same({ 404, { ok = false, error = "not_found", message = "entity not found" } },
      sb(api("DELETE", "/v1/blueprints/deployment/entities/d1")))
    assert.are.equal(409, (api("DELETE", "/v1/blueprints/team/entities/team-a")))
    assert.are.equal(200, (api("DELETE", "/v1/blueprints/team/entities/team-a?delete_dependents=true")))
    assert.are.same({ "team-b" }, ids(emu.entities()))
  end)
end)
