-- The emulator keeps up with a full-size resync: 10 000 entities in 500
-- bulk upserts of 20, the owned listing (two pages of 5000), and 100 bulk
-- deletes of 100, all over one keep-alive connection.
local core = require "ocean.core"
local json = require "ocean.json"
local helpers = require "spec.helpers.emulator"

local UA = "port-ocean/github/1.2.3/my-gh/exporter"
local N = 10000

teardown(helpers.stop_all)

describe("emulator throughput", function()
  it("round-trips 10 000 entities in a few seconds", function()
    local emu = helpers.start{ quiet = true }
    assert.are.equal(201, (emu.api("POST", "/v1/blueprints", { identifier = "repo",
      schema = { properties = { stars = { type = "number" }, url = { type = "string" } } } })))
    local headers = { Authorization = "Bearer " .. emu.token(), ["User-Agent"] = UA }
    local upserts = {}
    for r = 1, N / 20 do
      local list = {}
      for i = 1, 20 do
        local n = (r - 1) * 20 + i
        list[i] = { identifier = "repo-" .. n, title = "Repo " .. n,
                    properties = { stars = n, url = "https://example.com/r/" .. n } }
      end
      upserts[r] = { "POST", emu.url .. "/v1/blueprints/repo/entities/bulk?upsert=true&merge=true",
                     { entities = json.array(list) }, headers }
    end

    local t0 = core.monotonic_ms()
    local st = helpers.http_many(upserts)
    local t1 = core.monotonic_ms()
    local owned, from, pages = {}, nil, 0
    repeat
      local status, body = emu.api("POST", "/v1/blueprints/entities/datasource-entities",
        { datasource_prefix = "port-ocean/github/", datasource_suffix = "/my-gh/exporter",
          limit = 5000, from = from })
      assert.are.equal(200, status)
      pages = pages + 1
      for _, e in ipairs(body.entities) do owned[#owned + 1] = e.identifier end
      from = body.next ~= json.null and body.next or nil
    until not from
    local t2 = core.monotonic_ms()
    local deletes = {}
    for r = 1, N / 100 do
      local ids = {}
      for i = 1, 100 do ids[i] = owned[(r - 1) * 100 + i] end
      deletes[r] = { "POST", emu.url .. "/v1/blueprints/repo/bulk/entities/delete?delete_dependents=true",
                     { entities = json.array(ids) }, headers }
    end
    local sd = helpers.http_many(deletes)
    local t3 = core.monotonic_ms()

    local ok_up, ok_del = 0, 0
    for _, s in ipairs(st) do if s == 200 then ok_up = ok_up + 1 end end
    for _, s in ipairs(sd) do if s == 200 then ok_del = ok_del + 1 end end
    assert.are.same({ 500, N, 2, 100 }, { ok_up, #owned, pages, ok_del })
    assert.are.same({}, emu.entities())
    io.stderr:write(("\n[emulator throughput] 500 upserts %.0f ms, listing %.0f ms, "
      .. "100 deletes %.0f ms, total %.0f ms\n"):format(t1 - t0, t2 - t1, t3 - t2, t3 - t0))
    local slow = os.getenv("VALGRIND") or os.getenv("OCEAN_EMULATOR_VALGRIND")
    local limit = slow and 120000 or 15000
    assert.is_true(t3 - t0 < limit, ("took %.0f ms"):format(t3 - t0))
    emu.stop()
  end)
end)
