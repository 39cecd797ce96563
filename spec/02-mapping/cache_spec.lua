-- One jq program per resource, compiled once and reused (libjq 1.6 spends
-- ~18 ms in every jq_compile), and the ocean.Mapping object behind it.
local H = dofile("spec/02-mapping/helper.lua")
local core = require "ocean.core"
local mapping = require "ocean.mapping"

local function compiles()
  return core.mapping_stats().compiles
end

local function wide(n)
  local props = {}
  for i = 1, n do props["p" .. i] = ".a" .. i .. " | tostring" end
  return H.resource(H.with({ title = ".t", properties = props,
                             relations = { r = "[.x[]?]" } }))
end

describe("compiled mappings", function()
  before_each(function() H.ocean.reset() end)    -- a new engine: an empty cache

  it("compiles a resource once, whatever its number of fields", function()
    for _, n in ipairs({ 1, 20, 60 }) do
      local res = wide(n)
      local before = compiles()
      H.parse(res, { { id = "a" } })
      assert.are.equal(before + 1, compiles())
      for _ = 1, 5 do H.parse(res, { { id = "b" } }) end
      assert.are.equal(before + 1, compiles())
    end
  end)

  it("shares the program of equal resources and recompiles a mutated one", function()
    local res = wide(3)
    local before = compiles()
    H.parse(res, {})
    H.parse(wide(3), {})                       -- equal content, another table
    assert.are.equal(before + 1, compiles())
    res.port.entity.mappings.title = ".other"
    local r = H.parse(res, { { id = "a", other = "O" } })
    assert.are.equal("O", r.passed[1].title)
    assert.are.equal(before + 2, compiles())
  end)

  it("keys the cache on allow_env too", function()
    local res = wide(1)
    local before = compiles()
    H.parse(res, {})
    H.parse(res, {}, { allow_env = true })
    H.parse(res, {}, { allow_env = false })
    assert.are.equal(before + 2, compiles())
  end)

  it("bounds the cache", function()
    local kept = {}
    for i = 1, 70 do
      kept[i] = H.resource(H.with({ title = '"' .. i .. '"' }))
      H.parse(kept[i], {})
    end
    local info = H.ocean.engine().mapping_cache:info()
    assert.are.equal(64, info.capacity)
    assert.are.equal(64, info.size)
  end)

  it("does not cache a resource that fails, and costs one more compile to word the error", function()
    local res = H.resource(H.with({ title = ".a |" }))
    local before = compiles()
    assert.is_nil((mapping.parse_items(res, {})))
    assert.is_nil((mapping.parse_items(res, {})))
    assert.are.equal(before + 4, compiles())
  end)

  it("exposes the mapping as ocean.Mapping", function()
    local m = assert(mapping.compile(H.resource(H.with({
      title = ".t", icon = '"i"',
      properties = { b = ".b", a = ".a" },
      relations = { r = { combinator = '"and"', rules = { { value = ".v" } } } },
    }), { kind = "repo" })))
    assert.matches("^ocean.Mapping %(repo, 8 fields%)$", tostring(m))
    assert.are.equal("repo", m:kind())
    assert.are.same({ title = true, icon = true, team = false,
                      properties = { "a", "b" }, relations = { "r" } }, m:signature())
    assert.are.same({
      { path = "identifier", expr = ".id" }, { path = "title", expr = ".t" },
      { path = "blueprint", expr = '"bp"' }, { path = "icon", expr = '"i"' },
      { path = "properties.a", expr = ".a" }, { path = "properties.b", expr = ".b" },
      { path = "relations.r.combinator", expr = '"and"' },
      { path = "relations.r.rules.value", expr = ".v" },
    }, m:fields())
    assert.are.equal(1, #m:parse({ { id = "x" } }).passed)
    m:close()
    m:close()                                  -- idempotent
    assert.matches("ocean.Mapping %(closed%)", tostring(m))
    local ok, err = pcall(m.parse, m, {})
    assert.is_false(ok)
    assert.matches("mapping is closed", err)
  end)

  it("frees a mapping with __close / __gc", function()
    for _ = 1, 3 do
      local m = assert(mapping.compile(wide(2)))
      m:parse({ { id = "a" } })
    end
    collectgarbage()
    collectgarbage()
    local m = assert(mapping.compile(wide(2)))
    local close = getmetatable(m).__close
    assert.are.equal(getmetatable(m).__gc, close)
    close(m)
    assert.matches("closed", tostring(m))
  end)

  it("rejects unknown compile options", function()
    local ok, err = pcall(mapping.compile, wide(1), { native = false, fast = true })
    assert.is_false(ok)
    assert.are.equal("unknown option 'fast'", err)
  end)
end)
