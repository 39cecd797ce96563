-- A 200 000-object resync fed by a generator keeps memory flat: the raw
-- objects and mapped entities of finished pages are not held. Bound: the
-- resident memory of a fresh process running the resync grows by less
-- than 64 MiB, while the raw objects total ~200 MB (1 KB each).
-- (#slow: not run under valgrind.)
local ehelp = require "spec.helpers.emulator"
local oh = require "spec.helpers.ocean"
local json = require "ocean.json"

local TOTAL, PAGE, BOUND_MB = 200000, 1000, 64

describe("a 200 000-object resync #slow", function()
  local emu
  setup(function() emu = ehelp.start { quiet = true } end)
  teardown(function() ehelp.stop_all() end)

  it("streams: memory stays under the bound and every entity lands", function()
    oh.setup(emu, {
      blueprints = { { identifier = "item", title = "Item",
                       schema = { properties = { n = { type = "number" } } } } },
      mapping = { resources = json.array { { kind = "item", selector = { query = "true" },
        port = { entity = { mappings = { identifier = ".id", blueprint = '"item"',
          properties = { n = ".n" } } } } } } } })
    local rt = os.getenv("OCEAN_TEST_RUNTIME") or "lua5.4"
    local p = assert(io.popen(("%s spec/06-sync/stream_driver.lua %s %d %d 2>&1")
      :format(rt, emu.url, TOTAL, PAGE)))
    local out = p:read("a") or p:read("*a")
    p:close()
    local created, growth, base = out:match("^(%d+) ([%d.]+) ([%d.]+)")
    assert.is_not_nil(created, out)
    print(("\n    200k resync (%s): RSS %.1f MB at the start, grew by %.1f MB (bound %d MB)")
      :format(rt, tonumber(base), tonumber(growth), BOUND_MB))
    assert.are.equal(TOTAL, tonumber(created))
    assert.is_true(tonumber(growth) < BOUND_MB, ("RSS grew by %s MB"):format(growth))
  end)
end)
