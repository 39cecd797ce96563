-- A 200 000-object resync fed by a generator keeps memory flat: the raw
-- objects and mapped entities of finished pages are not held. Bound:
-- the process's resident memory grows by less than 64 MiB while the raw
-- objects total ~200 MB (1 KB each). (#slow: not run under valgrind.)
local ehelp = require "spec.helpers.emulator"
local oh = require "spec.helpers.ocean"
local json = require "ocean.json"

local TOTAL, PAGE, BOUND_MB = 200000, 1000, 64

local function rss_mb()
  local f = io.open("/proc/self/status")
  local text = f:read("a")
  f:close()
  return tonumber(text:match("VmRSS:%s*(%d+)")) / 1024
end

describe("a 200 000-object resync #slow", function()
  local emu
  setup(function() emu = ehelp.start { quiet = true } end)
  teardown(function() ehelp.stop_all() end)

  it("streams: memory stays under the bound and every entity lands", function()
    local _, ocean = oh.setup(emu, {
      blueprints = { { identifier = "item", title = "Item",
                       schema = { properties = { n = { type = "number" } } } } },
      mapping = { resources = json.array { { kind = "item", selector = { query = "true" },
        port = { entity = { mappings = { identifier = ".id", blueprint = '"item"',
          properties = { n = ".n" } } } } } } } })
    local pad = ("x"):rep(1000)
    collectgarbage()
    local base, peak = rss_mb(), 0
    ocean.on_resync("item", function()
      for p = 0, TOTAL / PAGE - 1 do
        local page = {}
        for i = 1, PAGE do
          local n = p * PAGE + i
          page[i] = { id = "i" .. n, n = n, payload = pad .. n }   -- ~1 KB, unique
        end
        coroutine.yield(page)
        local r = rss_mb()
        if r > peak then peak = r end
      end
    end)
    local s = ocean.sync_raw_all()
    assert.is_true(s.ok, json.encode(s.errors))
    assert.are.equal(TOTAL, s.created)
    local growth = peak - base
    print(("\n    200k resync: RSS %.1f MB -> peak %.1f MB (+%.1f MB, bound %d MB)")
      :format(base, peak, growth, BOUND_MB))
    assert.is_true(growth < BOUND_MB, ("RSS grew by %.1f MB"):format(growth))
    local st, body = emu.api("POST", "/v1/blueprints/entities/datasource-entities",
      { datasource_prefix = "port-ocean/spec/", datasource_suffix = "/spec-integration/exporter",
        limit = 1 })
    assert.are.equal(200, st)
    assert.are.equal(1, #body.entities)
  end)
end)
