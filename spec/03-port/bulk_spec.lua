-- 10 000 entities through the Port client and the emulator: bulk upsert,
-- owned listing (paged), bulk delete, with exact request counts.
local core = require "ocean.core"
local oport = require "ocean.port"
local helpers = require "spec.helpers.emulator"

local N = 10000
local UA_EXPORTER = "port-ocean/github/1.2.3/my-gh/exporter"

describe("a 10 000-entity round trip", function()
  local emu, port

  setup(function()
    emu = helpers.start{ quiet = true, page_limit = 1000 }
    assert(emu.api("POST", "/v1/blueprints", { identifier = "service" }) == 201)
    emu.seed{ { identifier = "not-mine", blueprint = "service",
                datasource = "port-ocean/github/1.2.3/other/exporter" } }
    emu.clear_requests()
    port = oport.new{ base_url = emu.url, client_id = emu.client_id,
      client_secret = emu.client_secret, integration_type = "github",
      integration_identifier = "my-gh", integration_version = "1.2.3",
      concurrency = 5 }
  end)
  teardown(function()
    if port then port:close() end
    helpers.stop_all()
  end)

  local function requests_to(pattern)
    local n, sizes = 0, {}
    for _, e in ipairs(emu.requests()) do
      if e.method == "POST" and e.path:find(pattern) then
        n = n + 1
        sizes[e.entities or 0] = (sizes[e.entities or 0] or 0) + 1
      end
    end
    return n, sizes
  end

  local timing = {}

  it("upserts in 500 requests of 20, all owned by this integration", function()
    local list = {}
    for i = 1, N do
      list[i] = { identifier = "svc-" .. i, blueprint = "service", title = "Service " .. i,
                  properties = { rank = i, url = "https://example.com/svc/" .. i } }
    end
    local t0 = core.monotonic_ms()
    local r = port:upsert_entities("service", list)
    timing.upsert = core.monotonic_ms() - t0
    assert.are.equal(500, r.requests)
    assert.are.equal(0, r.failed_requests)
    local created = 0
    for i = 1, N do
      assert(r.results[i].ok and r.results[i].identifier == "svc-" .. i, i)
      if r.results[i].created then created = created + 1 end
    end
    assert.are.equal(N, created)
    local n, sizes = requests_to("/entities/bulk$")
    assert.are.equal(500, n)
    assert.are.same({ [20] = 500 }, sizes)
    local mine = 0
    for _, e in ipairs(emu.entities("service")) do
      if e.datasource == UA_EXPORTER then mine = mine + 1 end
    end
    assert.are.equal(N, mine)
    local s = port:stats()
    assert.are.equal(5, s.peak_active)
    assert.are.equal(1, s.token_fetches)
  end)

  it("lists exactly the owned entities, page by page", function()
    emu.clear_requests()
    local t0 = core.monotonic_ms()
    local owned, pages = assert(port:list_owned())
    timing.list = core.monotonic_ms() - t0
    assert.are.equal(N, #owned)
    assert.are.equal(10, pages)
    assert.are.equal(10, (requests_to("/datasource%-entities$")))
    local seen = {}
    for _, e in ipairs(owned) do
      assert.are.equal(UA_EXPORTER, e.datasource)
      seen[e.identifier] = true
    end
    for i = 1, N do assert(seen["svc-" .. i], i) end
    local none = assert(port:list_owned{ before = "2000-01-01T00:00:00.000Z" })
    assert.are.equal(0, #none)
  end)

  it("deletes them in 100 requests of 100", function()
    emu.clear_requests()
    local ids = {}
    for i = 1, N do ids[i] = "svc-" .. i end
    local t0 = core.monotonic_ms()
    local r = port:delete_entities("service", ids)
    timing.delete = core.monotonic_ms() - t0
    assert.are.equal(100, r.requests)
    for i = 1, N do assert(r.results[i].ok and r.results[i].deleted, i) end
    local n, sizes = requests_to("/bulk/entities/delete$")
    assert.are.equal(100, n)
    assert.are.same({ [100] = 100 }, sizes)
    local left = emu.entities("service")
    assert.are.equal(1, #left)
    assert.are.equal("not-mine", left[1].identifier)
    io.stderr:write(("\n[10k round trip, %s] upsert %.0f ms, list %.0f ms, delete %.0f ms\n")
      :format(os.getenv("OCEAN_TEST_RUNTIME") or "?", timing.upsert, timing.list,
              timing.delete))
  end)
end)
