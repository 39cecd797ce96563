-- Issue 13, deliverables 4 and 5 through a real `ocean sail`: the engine
-- scopes ocean.cache_iterator_result to each resync (two resources of one
-- kind fetch the API's pages once: counted in the fake API's request log),
-- and GET /metrics (OCEAN__METRICS__ENABLED) serves Prometheus text with
-- the resync's real counts, parsed by a strict parser; then the live
-- events' counts and the journal's depth (spec/fixtures/live's webhook
-- processor), and the items the mapping's time budget stopped, in a
-- resync and in a live event.
local ehelp = require "spec.helpers.emulator"
local fake = require "spec.helpers.fake_api"
local json = require "ocean.json"
local prom = require "spec.helpers.prometheus"
local sail = require "spec.helpers.sail"

local FIXTURE = ehelp.root() .. "/spec/fixtures/cached"
local LIVE = ehelp.root() .. "/spec/fixtures/live"
local SECRET = "hush-hush-webhook-secret"

-- A copy of fixture `from` in a new folder with `mapping` as its
-- port-app-config.yml. Returns the folder.
local function with_mapping(from, mapping)
  local dir = ehelp.tmpdir() .. "/integration"
  assert(os.execute(("cp -r %s %s"):format(ehelp.shell_quote(from), ehelp.shell_quote(dir))))
  local f = assert(io.open(dir .. "/.port/resources/port-app-config.yml", "w"))
  f:write(mapping)
  f:close()
  return dir
end
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

    it("counts a failed kind's errors (its resync function failed), not only its items'", function()
      api.faults { { path = "^/users$", status = 401 } }
      local p = start { OCEAN__METRICS__ENABLED = "true" }
      resync(p)
      local r = prom.parse(select(2, p:http("GET", "/metrics")))
      for _, kind in ipairs { "user-0", "user-1" } do
        assert.are.equal(1, prom.value(r, "error_count", { kind = kind, phase = "resync" }))
        assert.are.equal(0, prom.value(r, "success", { kind = kind, phase = "resync" }))
      end
      assert.are.equal(2, prom.value(r, "error_count", { kind = "__resync__", phase = "resync" }))
      assert.are.equal(0, prom.value(r, "success", { kind = "__resync__", phase = "resync" }))
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
      -- durations to the millisecond, written without float noise
      local durations = 0
      for value in text:gmatch("\nduration_seconds{[^}]*} (%S+)") do
        durations = durations + 1
        assert.matches("^%d+%.?%d?%d?%d?$", value)
      end
      assert.are.equal(3, durations)
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

    it("counts the items the mapping's time budget stopped, per kind-index", function()
      -- user 1 alone joined on 2023-01-01: its role never ends (1 s budget)
      local dir = with_mapping(FIXTURE, [[
resources:
  - kind: user
    selector:
      query: .active
    port:
      entity:
        mappings:
          identifier: .login
          title: .name
          blueprint: '"cachedUser"'
          properties:
            role: 'if .joined_at == "2023-01-01T09:00:00Z" then (def f: f; f) else .role end'
  - kind: user
    selector:
      query: .role == "admin"
    port:
      entity:
        mappings:
          identifier: .login
          title: .name
          blueprint: '"cachedAdmin"'
]])
      local port = sail.free_port()
      local e = env { OCEAN__METRICS__ENABLED = "true", OCEAN__MAPPING_TIME_LIMIT = "1",
                      OCEAN__EVENT_LISTENER__TYPE = "WEBHOOKS_ONLY" }
      local p = sail.start({ "sail", dir, "-p", tostring(port), "--host", "127.0.0.1" }, e,
        { port = port })
      p:wait_ready()
      local r = prom.parse(select(2, p:http("GET", "/metrics")))
      assert.is_nil(prom.value(r, "ocean_mapping_budget_hits_total", { kind = "user-0", budget = "time" }))
      resync(p)
      r = prom.parse(select(2, p:http("GET", "/metrics")))
      assert.are.equal(1, prom.value(r, "ocean_mapping_budget_hits_total",
        { kind = "user-0", budget = "time" }))
      assert.is_nil(prom.value(r, "ocean_mapping_budget_hits_total", { kind = "user-1", budget = "time" }))
      assert.is_nil(prom.value(r, "ocean_mapping_budget_hits_total",
        { kind = "user-0", budget = "memory" }))
      assert.are.equal(1, prom.value(r, "error_count", { kind = "user-0", phase = "resync" }))
      -- no live-event processor: no live-event samples
      assert.is_nil(prom.value(r, "ocean_journal_depth"))
      p:stop()
    end)
  end)

  describe("GET /metrics with live events", function()
    local function start(dir, extra)
      local port = sail.free_port()
      local e = env(extra)
      e.OCEAN__METRICS__ENABLED = "true"
      e.OCEAN__EVENT_LISTENER__TYPE = "WEBHOOKS_ONLY"
      e.OCEAN__INTEGRATION__CONFIG__WEBHOOK_SECRET = SECRET
      e.OCEAN__LIVE_EVENTS__JOURNAL_DIR = ehelp.tmpdir() .. "/journal"
      local p = sail.start({ "sail", dir, "-p", tostring(port), "--host", "127.0.0.1" }, e,
        { port = port })
      p:wait_ready()
      return p
    end

    local function hook(p, item)
      local status = p:http("POST", "/integration/items", { body = { item = item },
        headers = { ["X-Secret"] = SECRET } })
      assert.are.equal(200, status)
    end

    local function scrape(p)
      local status, text = p:http("GET", "/metrics")
      assert.are.equal(200, status)
      local r = prom.parse(text)
      return function(name, labels) return prom.value(r, name, labels) end
    end

    it("counts events queued and processed, and the journal's depth before and after", function()
      local p = start(LIVE)
      local v = scrape(p)
      assert.are.same({ 0, 0, 0, 0 }, { v("ocean_live_events_total", { state = "queued" }),
        v("ocean_live_events_total", { state = "processed" }),
        v("ocean_live_events_total", { state = "failed" }), v("ocean_journal_depth") })
      -- Port is slow: the events are journaled, answered, not yet applied
      emu.faults { { method = "POST", path = "/entities/bulk$", delay_ms = 1500 } }
      hook(p, { id = "m1", name = "One", size = 1 })
      hook(p, { id = "m2", name = "Two", size = 2 })
      hook(p, { id = "m3", name = "Three", size = 3 })
      v = scrape(p)
      assert.are.equal(3, v("ocean_live_events_total", { state = "queued" }))
      assert.are.equal(3, v("ocean_journal_depth") + v("ocean_live_events_total", { state = "processed" }))
      assert.is_true(v("ocean_journal_depth") >= 1, "nothing was pending while Port was slow")
      sail.eventually(function()
        return scrape(p)("ocean_live_events_total", { state = "processed" }) == 3
      end, 30, "the events applied")
      emu.faults()
      assert.are.equal(3, #emu.entities("specItem"))
      v = scrape(p)
      assert.are.same({ 3, 3, 0, 0 }, { v("ocean_live_events_total", { state = "queued" }),
        v("ocean_live_events_total", { state = "processed" }),
        v("ocean_live_events_total", { state = "failed" }), v("ocean_journal_depth") })
      assert.are.same({ 0, 0 }, { v("ocean_live_events_total", { state = "given_back" }),
        v("ocean_live_events_total", { state = "unknown_kind" }) })
      -- a scrape adds nothing by itself (the feed adds increases only)
      v = scrape(p)
      assert.are.equal(3, v("ocean_live_events_total", { state = "queued" }))
      assert.are.equal(3, v("ocean_live_events_total", { state = "processed" }))
      assert.are.equal(0, (p:stop()))
    end)

    -- a mapping whose only kind is not the fixture's ("item")
    local OTHER_ONLY = [[
resources:
  - kind: other
    selector:
      query: "true"
    port:
      entity:
        mappings:
          identifier: .id
          blueprint: '"specItem"'
]]

    it("counts an event naming a kind the mapping lacks as unknown_kind (and a dead letter)", function()
      local dir = with_mapping(LIVE, OTHER_ONLY)
      local p = start(dir)
      hook(p, { id = "u1", name = "Unknown", size = 1 })
      sail.eventually(function()
        return scrape(p)("ocean_live_events_total", { state = "failed" }) == 1
      end, 30, "the dead letter")
      local v = scrape(p)
      assert.are.same({ 1, 0, 1, 0 }, { v("ocean_live_events_total", { state = "queued" }),
        v("ocean_live_events_total", { state = "processed" }),
        v("ocean_live_events_total", { state = "unknown_kind" }),
        v("ocean_live_events_total", { state = "given_back" }) })
      assert.are.equal(0, (p:stop()))
    end)

    it("counts a dead letter as failed, and its items stopped by the time budget", function()
      local dir = with_mapping(LIVE, OTHER_ONLY .. [[
  - kind: item
    selector:
      query: "true"
    port:
      entity:
        mappings:
          identifier: .id
          title: .name
          blueprint: '"specItem"'
          properties:
            size: 'def f: f; f'
]])
      local p = start(dir, { OCEAN__MAPPING_TIME_LIMIT = "1", OCEAN__LIVE_EVENTS__MAX_ATTEMPTS = "1" })
      hook(p, { id = "spin", name = "Spin", size = 1 })
      sail.eventually(function()
        return scrape(p)("ocean_live_events_total", { state = "failed" }) == 1
      end, 30, "the dead letter")
      local v = scrape(p)
      assert.are.equal(1, v("ocean_live_events_total", { state = "queued" }))
      assert.are.equal(0, v("ocean_live_events_total", { state = "processed" }))
      assert.are.equal(0, v("ocean_journal_depth"))     -- a dead letter is not waiting
      -- the resource's place in the whole mapping (the second), as in a resync
      assert.are.equal(1, v("ocean_mapping_budget_hits_total", { kind = "item-1", budget = "time" }))
      assert.is_nil(v("ocean_mapping_budget_hits_total", { kind = "item-1", budget = "memory" }))
      assert.are.equal(0, #emu.entities("specItem"))
      assert.are.equal(0, (p:stop()))
    end)
  end)
end)
