-- The Port client (src/port/port.c, src/port/port_entities.c, lua/ocean/port.lua)
-- against the Port emulator.
local core = require "ocean.core"
local json = require "ocean.json"
local oport = require "ocean.port"
local helpers = require "spec.helpers.emulator"

local SECRET = "spec-s3cr3t-" .. helpers.sh("od -An -N8 -tx1 /dev/urandom"):gsub("%s", "")
local WRONG = "wrong-secret-" .. SECRET:sub(-6)
local UA = "port-ocean/github/1.2.3/my-gh"
local UA_EXPORTER = UA .. "/exporter"

-- Every string that came out of a Port client in this file (errors,
-- results, bodies), and every token seen: the last spec checks that no
-- secret and no token appears in any of them.
local produced, tokens = {}, {}

local function collect(v, depth)
  depth = depth or 0
  if type(v) == "string" then
    produced[#produced + 1] = v
  elseif type(v) == "table" and depth < 6 then
    if getmetatable(v) == core.port_error_mt then produced[#produced + 1] = tostring(v) end
    for k, x in pairs(v) do
      collect(k, depth + 1)
      collect(x, depth + 1)
    end
  end
end

-- A Port client whose every answer is collected.
local function spy(p)
  return setmetatable({ core = p.core, loop = p.loop }, { __index = function(_, k)
    local f = p[k]
    if type(f) ~= "function" then return f end
    return function(_, ...)
      local r = table.pack(pcall(f, p, ...))
      if k ~= "token" or not r[1] then     -- token() returns one: legitimately
        for i = 2, r.n do collect(r[i]) end
      end
      if not r[1] then error(r[2], 2) end
      return table.unpack(r, 2, r.n)
    end
  end })
end

local emu
local ports = {}

local function new_port(o)
  local cfg = {
    base_url = emu.url, client_id = emu.client_id, client_secret = SECRET,
    integration_type = "github", integration_identifier = "my-gh",
    integration_version = "1.2.3",
    retry = { base_delay_ms = 20, max_total_wait_ms = 3000 },
  }
  for k, v in pairs(o or {}) do cfg[k] = v end
  local p = spy(oport.new(cfg))
  ports[#ports + 1] = p
  return p
end

-- The emulator's log of this client's requests (not the spec's own curl
-- calls).
local function log(opts)
  local out = {}
  for _, e in ipairs(emu.requests(opts)) do
    if type(e.user_agent) == "string" and e.user_agent:find("^port%-ocean/") then
      out[#out + 1] = e
    end
  end
  return out
end

local function count(entries, method, pattern)
  local n = 0
  for _, e in ipairs(entries) do
    if e.method == method and e.path:find(pattern) then n = n + 1 end
  end
  return n
end

local function statuses(entries)
  local out = {}
  for _, e in ipairs(entries) do
    out[#out + 1] = e.method .. " " .. e.path .. " " .. tostring(e.status)
  end
  return out
end

local function services(n, prefix)
  local list = {}
  for i = 1, n do
    list[i] = { identifier = (prefix or "svc-") .. i, blueprint = "service",
                title = "Service " .. i, properties = { n = i } }
  end
  return list
end

local function service_blueprint()
  local status = emu.api("POST", "/v1/blueprints", { identifier = "service",
    title = "Service", schema = { properties = { n = { type = "number" } } },
    relations = { owner = { target = "team", required = false, many = false } } })
  assert(status == 201, "blueprint: " .. tostring(status))
  status = emu.api("POST", "/v1/blueprints", { identifier = "team", title = "Team" })
  assert(status == 201, "blueprint: " .. tostring(status))
end

describe("Port client", function()
  setup(function()
    emu = helpers.start{ quiet = true, client_secret = SECRET, page_limit = 1000 }
  end)
  teardown(function()
    for _, p in ipairs(ports) do p:close() end
    helpers.stop_all()
  end)
  before_each(function()
    emu.reset()
    service_blueprint()
    emu.clear_requests()
  end)

  describe("token", function()
    it("is fetched once for many calls", function()
      local p = new_port()
      assert.are.equal("service", p:get_blueprint("service").identifier)
      assert.is_nil(p:get_integration("nope"))
      local r = p:upsert_entities("service", services(30))
      assert.are.equal(2, r.requests)
      assert.are.equal(30, #assert(p:list_owned()))
      local tok = assert(p:token())
      tokens[#tokens + 1] = tok
      assert.matches("^emu_", tok)
      assert.are.equal(1, count(log(), "POST", "^/v1/auth/access_token$"))
      assert.are.equal(1, p:stats().token_fetches)
    end)

    it("is fetched once when many calls start together", function()
      local p = new_port()
      local jobs = {}
      for i = 1, 8 do
        jobs[i] = p.core:call{ method = "GET", path = "/blueprints/service" }
      end
      for i = 1, 8 do
        local r = require("ocean.runtime").await(p.loop, jobs[i])
        assert.are.equal(200, r.status)
      end
      assert.are.equal(1, count(log(), "POST", "^/v1/auth/access_token$"))
    end)

    it("is refreshed once on 401 and the call resent", function()
      local p = new_port()
      assert(p:get_blueprint("service"))
      emu.reset()                                -- forgets every token
      service_blueprint()
      emu.clear_requests()
      assert.are.equal("service", p:get_blueprint("service").identifier)
      assert.are.same({ "GET /v1/blueprints/service 401",
                        "POST /v1/auth/access_token 200",
                        "GET /v1/blueprints/service 200" }, statuses(log()))
    end)

    it("is refreshed once when concurrent calls all get 401", function()
      local p = new_port()
      assert(p:get_blueprint("service"))
      emu.reset()
      service_blueprint()
      emu.clear_requests()
      local r = p:upsert_entities("service", services(100))
      for i = 1, 100 do assert.is_true(r.results[i].ok) end
      local l = log()
      assert.are.equal(1, count(l, "POST", "^/v1/auth/access_token$"))
      assert.are.equal(10, count(l, "POST", "/entities/bulk$"))   -- 5 x 401, 5 x 200
      assert.are.equal(5, r.requests)
    end)

    it("gives up when the call is refused again after the refresh", function()
      local p = new_port()
      emu.faults{ { method = "GET", path = "^/v1/blueprints/", status = 401 } }
      local v, err = p:get_blueprint("service")
      assert.is_nil(v)
      assert.are.equal(401, err.status)
      assert.are.same({ "POST /v1/auth/access_token 200",
                        "GET /v1/blueprints/service 401",
                        "POST /v1/auth/access_token 200",
                        "GET /v1/blueprints/service 401" }, statuses(log()))
    end)

    it("is renewed before it expires", function()
      local short = helpers.start{ quiet = true, client_secret = SECRET, token_ttl = 1 }
      local p = new_port{ base_url = short.url }
      assert.is_nil(p:get_integration("x"))
      helpers.sleep(1)
      assert.is_nil(p:get_integration("x"))
      local got = {}
      for _, e in ipairs(short.requests()) do got[#got + 1] = e.path .. " " .. e.status end
      assert.are.same({ "/v1/auth/access_token 200", "/v1/integration/x 404",
                        "/v1/auth/access_token 200", "/v1/integration/x 404" }, got)
      short.stop()
    end)

    it("fails fast, once, on wrong credentials", function()
      local p = new_port{ client_secret = WRONG }
      local t0 = core.monotonic_ms()
      local r = p:upsert_entities("service", services(100))
      assert.is_true(core.monotonic_ms() - t0 < 3000)
      local want = "^invalid Port credentials %(client id 'emulator%-client%-id'%): "
        .. "Port answered 401 invalid_credentials: invalid client id or client secret "
        .. "%(trace id %x+%)$"
      for i = 1, 100 do
        assert.is_false(r.results[i].ok)
        assert.matches(want, r.results[i].message)
      end
      assert.are.equal(401, r.error.status)
      assert.matches(want, tostring(r.error))
      local v, err = p:get_integration("x")     -- remembered: Port is not asked
      assert.is_nil(v)
      assert.matches(want, err.message)
      assert.are.same({ "POST /v1/auth/access_token 401" }, statuses(log()))
    end)

    it("masks the secret and the token wherever Port echoes them", function()
      local p = new_port()
      emu.faults{ { path = "^/v1/auth/access_token$", status = 403, count = 1,
                    body = "client secret " .. SECRET .. " is not valid" } }
      local v, err = p:get_blueprint("service")
      assert.is_nil(v)
      assert.matches("^invalid Port credentials", err.message)
      assert.is_nil(err.message:find(SECRET, 1, true))
      assert.is_nil(err.body:find(SECRET, 1, true))
      assert.matches("client secret %*+ is not valid", err.body)
      local q = new_port()
      local tok = assert(q:token())
      tokens[#tokens + 1] = tok
      emu.faults{ { path = "^/v1/blueprints/service$", status = 500, count = 1,
                    body = { ok = false, error = "boom", message = "Bearer " .. tok } } }
      v, err = q:get_blueprint("service")
      assert.is_nil(v)
      assert.are.equal(500, err.status)
      assert.is_nil(err.message:find(tok, 1, true))
      assert.is_nil(err.body:find(tok, 1, true))
      assert.matches("Bearer %*+", err.message)
    end)
  end)

  describe("requests", function()
    it("carry Ocean's User-Agent, exporter on entity calls only", function()
      local p = new_port()
      assert(p:get_blueprint("service"))
      assert(p:create_integration{ installationId = "my-gh", installationAppType = "github" })
      p:upsert_entities("service", services(3))
      assert(p:upsert_entity({ identifier = "one", blueprint = "service" }))
      assert(p:search({ combinator = "and", rules = json.array{} }))
      assert(p:list_owned())
      p:delete_entities("service", { "svc-1" })
      assert(p:delete_entity("service", "one"))
      local want = {
        ["/v1/auth/access_token"] = UA, ["/v1/blueprints/service"] = UA,
        ["/v1/integration"] = UA,
        ["/v1/blueprints/service/entities/bulk"] = UA_EXPORTER,
        ["/v1/blueprints/service/entities"] = UA_EXPORTER,
        ["/v1/entities/search"] = UA_EXPORTER,
        ["/v1/blueprints/entities/datasource-entities"] = UA_EXPORTER,
        ["/v1/blueprints/service/bulk/entities/delete"] = UA_EXPORTER,
        ["/v1/blueprints/service/entities/one"] = UA_EXPORTER,
      }
      local l = log()
      assert.are.equal(9, #l)
      for _, e in ipairs(l) do
        assert.are.equal(want[e.path], e.user_agent, e.path)
      end
      for _, e in ipairs(emu.entities("service")) do
        assert.are.equal(UA_EXPORTER, e.datasource)
      end
    end)

    it("carry the upsert options and Ocean's event parameters", function()
      local p = new_port()
      p:upsert_entities("service", services(1), { merge = false,
        event_type = "resync", resync_id = "r-1" })
      p:delete_entities("service", { "svc-1" }, { delete_dependents = false,
        event_type = "http_request" })
      local l = log()
      assert.are.equal("upsert=true&merge=false&create_missing_related_entities=true"
        .. "&validation_only=false&ocean_info_event_type=resync&ocean_info_resync_id=r-1",
        l[2].query)
      assert.are.equal("delete_dependents=false&ocean_info_event_type=http_request",
        l[3].query)
    end)

    it("escape identifiers in paths", function()
      local p = new_port()
      local e = assert(p:upsert_entity({ identifier = "a:b/c=d+e", blueprint = "service",
                                         title = "odd" }))
      assert.are.equal("a:b/c=d+e", e.identifier)
      assert.is_true(p:delete_entity("service", "a:b/c=d+e"))
      local ok, err = p:delete_entity("service", "a:b/c=d+e")
      assert.is_false(ok)
      assert.are.equal(404, err.status)
      local l = log()
      assert.are.equal("/v1/blueprints/service/entities/a:b/c=d+e", l[#l].path)
    end)

    it("fail with a structured error", function()
      local p = new_port()
      local v, err = p:get_blueprint("nope")
      assert.is_nil(v)
      assert.are.equal(404, err.status)
      assert.are.equal("not_found", err.code)
      assert.are.equal("GET", err.method)
      assert.are.equal("/v1/blueprints/nope", err.path)
      assert.matches("^%x+$", err.trace_id)
      assert.are.equal("Port GET /v1/blueprints/nope failed: 404 not_found: "
        .. "blueprint not found (trace id " .. err.trace_id .. ")", tostring(err))
      assert.are.same({ ok = false, error = "not_found", message = "blueprint not found" },
                      json.decode(err.body))
    end)

    it("are retried when retryable, a PATCH is not", function()
      local p = new_port()
      assert(p:create_integration{ installationId = "my-gh" })
      emu.faults{ { method = "PATCH", status = 503, count = 1 },
                  { path = "/entities/bulk$", status = 503, count = 1 } }
      local v, err = p:patch_integration("my-gh", { version = "2" })
      assert.is_nil(v)
      assert.are.equal(503, err.status)
      local r = p:upsert_entities("service", services(2))
      assert.is_true(r.results[1].ok and r.results[2].ok)
      local l = log()
      assert.are.equal(1, count(l, "PATCH", "^/v1/integration/my%-gh$"))
      assert.are.equal(2, count(l, "POST", "/entities/bulk$"))
    end)

    it("say how many attempts a failure took", function()
      local p = new_port{ retry = { base_delay_ms = 10, max_attempts = 3 } }
      emu.faults{ { method = "GET", path = "^/v1/blueprints/", status = 503 } }
      local _, err = p:get_blueprint("service")
      assert.matches("^Port GET /v1/blueprints/service failed: 503 service_unavailable: "
        .. "fault injected by the port emulator %(after 3 attempts; trace id %x+%)$",
        err.message)
    end)

    it("report a transport failure", function()
      local p = new_port{ base_url = "http://127.0.0.1:1",
                          retry = { base_delay_ms = 10, max_attempts = 2 } }
      local _, err = p:get_blueprint("x")
      assert.are.equal(0, err.status)
      assert.matches("^Port POST /v1/auth/access_token failed: Failed to connect to "
        .. "127%.0%.0%.1 port 1 .*%(after 2 attempts%)$", err.message)
    end)
  end)

  describe("integration calls", function()
    it("create, read, patch, resync state and resync request", function()
      local p = new_port()
      local it_ = assert(p:create_integration{ installationId = "my-gh",
        installationAppType = "github", version = "1.2.3", config = { resources = json.array{} } })
      assert.are.equal("my-gh", it_.identifier)
      assert.are.equal("github", p:get_integration("my-gh").installationAppType)
      assert.are.equal("2", p:patch_integration("my-gh", { version = "2" }).version)
      local st = assert(p:update_resync_state("my-gh", { status = "running",
        lastResyncStart = "2024-01-01T00:00:00.000Z", intervalInMinuets = json.null }))
      assert.are.equal("running", st.resyncState.status)
      assert.is_false(p:get_resync_request("my-gh"))
      local req = emu.resync_request("my-gh")
      assert.are.equal(req.id, p:get_resync_request("my-gh").id)
      local v, err = p:get_resync_request("other")
      assert.is_nil(v)
      assert.are.equal(404, err.status)
    end)
  end)

  describe("bulk upsert", function()
    it("reports per-entity results of a 207", function()
      local p = new_port()
      assert(p:upsert_entities("service", { { identifier = "exists", blueprint = "service" } }))
      local r = p:upsert_entities("service", {
        { identifier = "new-1", blueprint = "service", title = "New" },
        { identifier = "bad id!", blueprint = "service" },
        { identifier = { combinator = "and", rules = { { property = "$identifier",
          operator = "=", value = "nothing" } } }, blueprint = "service" },
        { identifier = { combinator = "and", rules = { { property = "$identifier",
          operator = "=", value = "exists" } } }, blueprint = "service", title = "Found" },
        { identifier = "typed", blueprint = "service", properties = { n = "not a number" } },
        '{"identifier":"as-text","blueprint":"service"}',
      }, { create_missing_related_entities = false })
      local res = r.results
      assert.are.equal(1, r.requests)
      assert.are.equal(0, r.failed_requests)
      assert.are.same({ ok = true, created = true, identifier = "new-1", status = 207 }, res[1])
      assert.is_false(res[2].ok)
      assert.are.equal(422, res[2].status)
      assert.are.equal("invalid_identifier", res[2].error)
      assert.is_false(res[3].ok)
      assert.is_true(res[3].unresolved)
      assert.are.equal(404, res[3].status)
      assert.are.equal("no entity matches the search identifier", res[3].message)
      assert.is_true(res[4].ok)
      assert.is_false(res[4].created)
      assert.are.equal("exists", res[4].identifier)
      assert.are.same({ ok = false, created = false, identifier = "typed", status = 422,
        error = "invalid_property_type",
        message = "property 'n' must be of type number, got string" }, res[5])
      assert.is_true(res[6].ok)
    end)

    it("splits a request Port finds too large, down to single entities", function()
      local p = new_port()
      local list = services(20)
      list[7].title = string.rep("x", 3000)          -- too large even alone
      emu.faults{ { path = "/entities/bulk$", max_body_bytes = 1500 } }
      local r = p:upsert_entities("service", list)
      for i = 1, 20 do
        if i == 7 then
          assert.is_false(r.results[i].ok)
          assert.are.equal(413, r.results[i].status)
          assert.matches("^Port POST /v1/blueprints/service/entities/bulk failed: 413 "
            .. "payload_too_large", r.results[i].message)
        else
          assert.is_true(r.results[i].ok, i)
        end
      end
      local sizes, ok413 = {}, 0
      for _, e in ipairs(log()) do
        if e.path:find("/entities/bulk$") then
          if e.status == 413 then ok413 = ok413 + 1 else sizes[#sizes + 1] = e.entities end
          assert.is_true(e.status == 413 or e.bytes <= 1500)
        end
      end
      assert.are.equal(r.requests, ok413 + #sizes)
      local total = 0
      for _, n in ipairs(sizes) do total = total + n end
      assert.are.equal(19, total)
      assert.are.equal(1, r.failed_requests)
    end)

    it("splits a bulk Port refuses as a whole (400, 422), so only the entity at fault fails", function()
      for _, st in ipairs { 400, 422 } do
        local p = new_port()
        -- the whole first request refused, then one entity's own request:
        -- halves down to it; the other 19 are upserted
        emu.faults{ { path = "/entities/bulk$", status = st, count = 1,
                      body = { ok = false, error = "bad_request", message = "refused as a whole" } },
                    { path = "/entities/bulk$", status = st, body_has = '"svc-7"',
                      body = { ok = false, error = "bad_request", message = "svc-07 is bad" } } }
        local r = p:upsert_entities("service", services(20))
        for i = 1, 20 do
          if i == 7 then
            assert.is_false(r.results[i].ok)
            assert.are.equal(st, r.results[i].status)
          else
            assert.is_true(r.results[i].ok, st .. ": " .. i .. " " .. tostring(r.results[i].message))
          end
        end
        emu.faults()
      end
    end)

    it("fails every entity of a request that failed as a whole", function()
      local p = new_port{ retry = { base_delay_ms = 10, max_attempts = 2 } }
      emu.faults{ { path = "/entities/bulk$", status = 500, count = 1 } }
      local r = p:upsert_entities("service", services(25))
      local failed = 0
      for i = 1, 25 do
        if not r.results[i].ok then
          failed = failed + 1
          assert.are.equal(500, r.results[i].status)
          assert.are.equal("internal_error", r.results[i].error)
        end
      end
      assert.is_true(failed == 20 or failed == 5)
      assert.are.equal(1, r.failed_requests)
      assert.are.equal(500, r.error.status)
    end)

    it("cuts at 20 entities and 1 MiB", function()
      local p = new_port()
      local list = services(45)
      for i = 1, 5 do list[i].properties.blob = string.rep("b", 300 * 1024) end
      local r = p:upsert_entities("service", list)
      assert.are.equal(45, #r.results)
      local sizes = {}
      for _, e in ipairs(log()) do
        if e.path:find("/entities/bulk$") then
          sizes[#sizes + 1] = e.entities
          assert.is_true(e.bytes <= 1048576)
        end
      end
      table.sort(sizes)
      assert.are.same({ 2, 3, 20, 20 }, sizes)   -- 3 blobs | 2 blobs + 18 | 20 | 2
    end)

    it("finishes an empty upsert without a request", function()
      local p = new_port()
      local r = p:upsert_entities("service", {})
      assert.are.equal(0, r.requests)
      assert.are.equal(0, #r.results)
    end)
  end)

  describe("search", function()
    it("adds the ownership rules to a query with rules", function()
      local p = new_port()
      p:upsert_entities("service", services(3))
      emu.seed{ { identifier = "svc-other", blueprint = "service",
                  datasource = "port-ocean/github/1.0.0/someone-else/exporter" } }
      emu.clear_requests()
      local found = assert(p:search({ combinator = "and", rules = {
        { property = "$blueprint", operator = "=", value = "service" } } },
        { "identifier", "blueprint" }))
      assert.are.equal(3, #found)
      assert.are.same({ blueprint = "service", identifier = "svc-1" }, found[1])
      local all = assert(p:search({ combinator = "and", rules = json.array{} }))
      assert.are.equal(4, #all)
      local l = log{ bodies = true }
      assert.are.equal("exclude_calculated_properties=true&include=identifier&include=blueprint",
                       l[1].query)
      assert.are.same({
        { property = "$blueprint", operator = "=", value = "service" },
        { property = "$datasource", operator = "contains", value = "port-ocean/github/" },
        { property = "$datasource", operator = "contains", value = "/my-gh/exporter" },
      }, l[1].body.rules)
      assert.are.equal(0, #l[2].body.rules)
    end)

    it("rejects a query that is not an object", function()
      local p = new_port()
      assert.has_error(function() p:search("[1]") end,
                       "port:search: search: the query is not a JSON object")
    end)
  end)

  describe("misuse", function()
    it("raises", function()
      assert.has_error(function() oport.new() end)
      assert.error_matches(function() oport.new{ base_url = "ftp://x", client_id = "a",
        client_secret = "b", integration_type = "t", integration_identifier = "i" } end,
        "ocean.port.new: Port client: base_url must be an http:// or https:// URL", 1, true)
      assert.has_error(function() oport.new{ base_url = "http://x", client_id = "a",
        client_secret = "b", integration_type = "t", integration_identifier = "a/b" } end)
      local p = new_port()
      assert.has_error(function() p:get_blueprint(42) end)
      assert.has_error(function() p:upsert_entities("service", { 42 }) end,
                       "port:upsert: entity 1: not an object")
      assert.has_error(function() p:delete_entities("service", { {} }) end,
                       "port:delete: id 1 is not a string")
    end)

    it("keeps the secret out of the client's own text", function()
      local p = new_port()
      assert.is_nil(tostring(p.core):find(SECRET, 1, true))
    end)
  end)

  describe("secrets", function()
    it("appear in no error, result or request log of this file", function()
      assert.is_true(#produced > 50)
      for _, s in ipairs(produced) do
        assert.is_nil(s:find(SECRET, 1, true), s)
        assert.is_nil(s:find(WRONG, 1, true), s)
        for _, t in ipairs(tokens) do assert.is_nil(s:find(t, 1, true), s) end
      end
      local logtext = json.encode(emu.requests{ bodies = true })
      assert.is_nil(logtext:find(SECRET, 1, true))
    end)
  end)
end)
