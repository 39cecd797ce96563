-- Issue 13, deliverables 4 and 5 through a real `ocean sail`: the engine
-- scopes ocean.cache_iterator_result to each resync (two resources of one
-- kind fetch the API's pages once: counted in the fake API's request log),
-- and GET /metrics (OCEAN__METRICS__ENABLED) serves Prometheus text with
-- the resync's real counts, parsed by a strict parser.
local ehelp = require "spec.helpers.emulator"
local fake = require "spec.helpers.fake_api"
local json = require "ocean.json"
local prom = require "spec.helpers.prometheus"
local sail = require "spec.helpers.sail"

local FIXTURE = ehelp.root() .. "/spec/fixtures/cached"
local PAGES = { "/users?per_page=10", "/users?page=2&per_page=10", "/users?page=3&per_page=10",
                "/users?page=4&per_page=10", "/users?page=5&per_page=10" }

teardown(function()
  sail.stop_all()
  fake.stop_all()
  ehelp.stop_all()
end)

describe("the engine's cache and metrics in ocean sail", function()
  local emu, api, n = nil, nil, 0
  setup(function()
    emu = ehelp.start { quiet = true }
    api = fake.start()
  end)
  teardown(function()
    api.stop()
    emu.stop()
  end)

  local function env(extra)
    n = n + 1
    local e = {
      OCEAN__PORT__BASE_URL = emu.url,
      OCEAN__PORT__CLIENT_ID = emu.client_id,
      OCEAN__PORT__CLIENT_SECRET = emu.client_secret,
      OCEAN__INTEGRATION__CONFIG__API_URL = api.url,
      OCEAN__INTEGRATION__IDENTIFIER = "cached-" .. n,
    }
    for k, v in pairs(extra or {}) do e[k] = v end
    return e
  end

  local function api_queries()
    local out = {}
    for _, req in ipairs(api.requests()) do out[#out + 1] = req.path .. "?" .. req.query end
    return out
  end

  local function concat_lists(...)
    local out = {}
    for _, l in ipairs { ... } do
      for _, v in ipairs(l) do out[#out + 1] = v end
    end
    return out
  end

  before_each(function()
    emu.reset()
    emu.clear_requests()
    api.reset()
    api.faults()
    api.clear_requests()
  end)

  describe("ocean.cache_iterator_result", function()
    it("fetches the pages once for two resources of one kind (--once)", function()
      local r = sail.run({ "sail", FIXTURE, "-O" }, env())
      assert.are.equal(0, r.rc, r.err)
      assert.are.same(PAGES, api_queries())
      -- both resources got every page: 45 active users; the admins
      assert.are.equal(45, #emu.entities("cachedUser"))
      assert.is_true(#emu.entities("cachedAdmin") > 0)
      -- two resources of one kind are named apart on stdout (#: place in the mapping)
      assert.are.equal(2, select(2, r.out:gsub("kind user #%d +50 objects", "")))
    end)

    it("fetches them per resource without it (the control)", function()
      local r = sail.run({ "sail", FIXTURE, "-O" }, env { OCEAN__INTEGRATION__CONFIG__CACHED = "false" })
      assert.are.equal(0, r.rc, r.err)
      assert.are.same(concat_lists(PAGES, PAGES), api_queries())
    end)

    it("keeps nothing from one resync to the next (memory scope)", function()
      local port = sail.free_port()
      local p = sail.start({ "sail", FIXTURE, "-p", tostring(port), "--host", "127.0.0.1" },
        env { OCEAN__EVENT_LISTENER__TYPE = "WEBHOOKS_ONLY" }, { port = port })
      p:wait_ready()
      for i = 1, 2 do
        assert.are.equal(202, (p:http("POST", "/integration/resync")))
        sail.eventually(function()
          local _, text = p:http("GET", "/integration/health")
          local h = json.decode(text)
          return h.resyncs == i and not h.running
        end, 30, "resync " .. i)
      end
      assert.are.same(concat_lists(PAGES, PAGES), api_queries())
      assert.are.equal(0, (p:stop()))
    end)
  end)

  describe("GET /metrics", function()
    local function start(extra)
      local port = sail.free_port()
      local e = env(extra)
      e.OCEAN__EVENT_LISTENER__TYPE = "WEBHOOKS_ONLY"
      local p = sail.start({ "sail", FIXTURE, "-p", tostring(port), "--host", "127.0.0.1" }, e,
        { port = port })
      p:wait_ready()
      return p
    end

    local function resync(p)
      assert.are.equal(202, (p:http("POST", "/integration/resync")))
      sail.eventually(function()
        local _, text = p:http("GET", "/integration/health")
        local h = json.decode(text)
        return h.resyncs == 1 and not h.running
      end, 30, "the resync")
    end

    it("is a 404 unless OCEAN__METRICS__ENABLED=true", function()
      local p = start()
      local status = p:http("GET", "/metrics")
      assert.are.equal(404, status)
      p:stop()
      p = start { OCEAN__METRICS__ENABLED = "false" }
      assert.are.equal(404, (p:http("GET", "/metrics")))
      p:stop()
    end)

    it("serves the resync's counts in Prometheus text, with Ocean's names and ours", function()
      api.faults { { path = "^/users$", query = "page=3", status = 503, count = 1 } }
      local p = start { OCEAN__METRICS__ENABLED = "true" }
      resync(p)
      local status, text, headers = p:http("GET", "/metrics")
      assert.are.equal(200, status)
      assert.are.equal("text/plain; version=0.0.4; charset=utf-8", headers["content-type"])
      local r = prom.parse(text)
      local v = function(name, labels) return prom.value(r, name, labels) end
      for i, kind in ipairs { "user-0", "user-1" } do
        local ents = i == 1 and #emu.entities("cachedUser") or #emu.entities("cachedAdmin")
        assert.are.equal(50, v("object_count", { kind = kind, phase = "extract",
                                                 object_count_type = "raw_extracted" }))
        assert.are.equal(ents, v("object_count", { kind = kind, phase = "transform",
                                                   object_count_type = "transformed" }))
        assert.are.equal(50 - ents, v("object_count", { kind = kind, phase = "transform",
                                                        object_count_type = "filtered_out" }))
        assert.are.equal(ents, v("object_count", { kind = kind, phase = "load",
                                                   object_count_type = "loaded" }))
        assert.are.equal(ents, v("upserted_count", { kind = kind, phase = "load" }))
        assert.are.equal(0, v("failed_count", { kind = kind, phase = "load" }))
        assert.are.equal(0, v("error_count", { kind = kind, phase = "resync" }))
        assert.are.equal(1, v("success", { kind = kind, phase = "resync" }))
        assert.is_true(v("duration_seconds", { kind = kind, phase = "resync" }) >= 0)
      end
      assert.are.equal(1, v("success", { kind = "__resync__", phase = "resync" }))
      assert.are.equal(0, v("deleted_count", { kind = "__reconciliation__", phase = "delete" }))
      -- third-party requests: the five pages once (the cache), page 3 twice (a 503, retried)
      local ep = api.url .. "/users"
      assert.are.equal(5, v("http_requests_count", { endpoint = ep, kind = "user-0",
                                                     phase = "extract", status = "200" }))
      assert.is_nil(v("http_requests_count", { endpoint = ep, kind = "user-1",
                                               phase = "extract", status = "200" }))
      assert.are.equal(1, v("ocean_retries_total", { target = "third_party", reason = "503" }))
      assert.is_true(v("ocean_retry_wait_seconds_total", { target = "third_party" }) > 0)
      -- Port requests by route template, as many as the emulator saw
      local bulk = 0
      for _, req in ipairs(emu.requests()) do
        if req.method == "POST" and req.path:match("^/v1/blueprints/[^/]+/entities/bulk$") then
          bulk = bulk + 1
        end
      end
      assert.is_true(bulk >= 2)
      assert.are.equal(bulk, v("ocean_port_requests_total",
        { endpoint = "/v1/blueprints/{blueprint}/entities/bulk", status = "200" }))
      for _, name in ipairs(r.order) do
        for _, s in ipairs(r.families[name].samples) do
          for _, lv in pairs(s.labels) do
            assert.is_nil(lv:find("cachedUser", 1, true), "an identifier in a label: " .. lv)
          end
        end
      end
      p:stop()
    end)
  end)
end)
