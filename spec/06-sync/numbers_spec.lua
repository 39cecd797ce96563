-- Numbers beyond a double reach Port exactly through a full resync: the
-- sync path keeps entities as jq values and writes the literal of every
-- number a mapping passes through unchanged (docs/numbers.md); the
-- emulator keeps and answers them exactly.
local ehelp = require "spec.helpers.emulator"
local oh = require "spec.helpers.ocean"
local json = require "ocean.json"
local core = require "ocean.core"

local EXACT = { exact_numbers = true }
local jq17 = core.jq_literal_numbers

local BLUEPRINTS = {
  { identifier = "acct", title = "Account", schema = { properties = {
      n = { type = "number" }, m = { type = "number" }, neg = { type = "number" },
      obj = { type = "object" }, arr = { type = "array" }, plus = { type = "number" },
      both = { type = "array" }, wrapped = { type = "object" }, text = { type = "string" },
      inf = { type = "boolean" }, nan = {}, small = { type = "number" } } } },
  { identifier = "mirror", title = "Mirror", schema = { properties = {
      n = { type = "number" } } } },
}

local MAPPINGS = { identifier = ".key", title = ".name", blueprint = '"acct"',
  properties = {
    n = ".n", m = ".m", neg = ".neg",                 -- plain paths (in C)
    obj = ".obj", arr = ".arr",                       -- copied whole
    plus = ".n + 1",                                  -- computed
    both = "[.n, .m | .]",                            -- built by jq
    wrapped = "{v: .neg, w: .obj.b}",
    text = ".n | tostring",
    inf = ".big | isinfinite", nan = ".big - .big", small = ".small",
  } }

local function mapping()
  return { resources = json.array {
    { kind = "acct", selector = { query = "true" }, port = { entity = { mappings = MAPPINGS } } },
  } }
end

-- Raw items: the big numbers as JSON text.
local function raw_text(i)
  return ('{"key":"%s","name":"A%d","n":12345678901234567890,"m":9007199254740993,' ..
    '"neg":-12345678901234567890,"obj":{"a":12345678901234567890,"b":[9007199254740993,-9007199254740993]},' ..
    '"arr":[18446744073709551615,{"x":-9223372036854775809}],"big":1e400,"small":0.1}')
    :format(i == 1 and "12345678901234567890" or "9007199254740993-" .. i, i)
end

describe("numbers beyond a double", function()
  local emu, ocean
  local pages = {}                 -- what the resync function yields
  setup(function() emu = ehelp.start() end)
  teardown(function() ehelp.stop_all() end)
  before_each(function()
    emu.reset()
    local _
    _, ocean = oh.setup(emu, { blueprints = BLUEPRINTS, mapping = mapping() })
    ocean.on_resync("acct", function()
      for _, page in ipairs(pages) do coroutine.yield(page) end
    end)
  end)

  -- The emulator's catalog as JSON text, and decoded with exact numbers.
  local function catalog(bp)
    local status, text = ehelp.http("GET", emu.url .. "/_emulator/entities?blueprint=" .. bp)
    assert.are.equal(200, status)
    local out = {}
    for _, e in ipairs(json.decode(text, EXACT).entities) do out[e.identifier] = e end
    return out, text
  end

  local function check_exact(e)
    local p = e.properties
    assert.are.equal("12345678901234567890", tostring(p.n))
    assert.are.equal("9007199254740993", tostring(p.m))
    assert.are.equal("-12345678901234567890", tostring(p.neg))
    assert.are.equal('{"a":12345678901234567890,"b":[9007199254740993,-9007199254740993]}',
                     json.encode(p.obj))
    assert.are.equal("[18446744073709551615,{\"x\":-9223372036854775809}]", json.encode(p.arr))
    assert.are.equal("[12345678901234567890,9007199254740993]", json.encode(p.both))
    assert.are.equal('{"v":-12345678901234567890,"w":[9007199254740993,-9007199254740993]}',
                     json.encode(p.wrapped))
    -- computed values are doubles, written as jq 1.7.1 writes them
    assert.are.equal("12345678901234567000", json.encode(p.plus))
    assert.is_true(p.inf)
    assert.are.equal(json.null, p.nan)
    assert.are.equal(0.1, p.small)
    -- tostring: jq 1.7.1 keeps the literal; jq 1.6 writes its double
    assert.are.equal(jq17 and "12345678901234567890" or "12345678901234567000", p.text)
  end

  local function resync_with(list)
    pages = list
    local s = ocean.sync_raw_all()
    assert.is_true(s.ok, json.encode(s.errors))
    return s
  end

  it("from a JSON text page, exactly (identifiers given as strings too)", function()
    local s = resync_with { "[" .. raw_text(1) .. "," .. raw_text(2) .. "]" }
    assert.are.equal(2, s.created)
    local cat, text = catalog("acct")
    check_exact(cat["12345678901234567890"])
    check_exact(cat["9007199254740993-2"])
    assert.truthy(text:find('"n":12345678901234567890', 1, true))
    assert.truthy(text:find('"m":9007199254740993', 1, true))
  end)

  it("from NDJSON, a list of JSON texts and exact Lua tables alike", function()
    resync_with {
      raw_text(1) .. "\n" .. raw_text(2),
      { raw_text(3) },
      { json.decode(raw_text(4), EXACT), json.decode(raw_text(5), EXACT) },
    }
    local cat = catalog("acct")
    for _, id in ipairs { "12345678901234567890", "9007199254740993-2", "9007199254740993-3",
                          "9007199254740993-4", "9007199254740993-5" } do
      assert.is_table(cat[id], id)
      check_exact(cat[id])
    end
  end)

  it("unchanged on the next resync: Port's copy compares equal", function()
    local page = "[" .. raw_text(1) .. "," .. raw_text(2) .. "]"
    resync_with { page }
    emu.clear_requests()
    local s = resync_with { page }
    assert.are.equal(2, s.unchanged)
    assert.are.equal(0, s.updated)
    assert.are.equal(0, oh.count(emu, "POST", "/bulk$"))
  end)

  it("a number one unit away is a change", function()
    resync_with { raw_text(1) }
    local s = resync_with { (raw_text(1):gsub('"n":12345678901234567890', '"n":12345678901234567891')) }
    assert.are.equal(1, s.updated)
    assert.are.equal("12345678901234567891", tostring(catalog("acct")["12345678901234567890"].properties.n))
  end)

  it("through live events (register_raw) from JSON texts and exact tables alike", function()
    local r = ocean.register_raw("acct", { raw_text(1), json.decode(raw_text(2), EXACT) })
    assert.is_true(r.ok, json.encode(r.errors))
    assert.are.equal(2, r.created)
    local cat = catalog("acct")
    check_exact(cat["12345678901234567890"])
    check_exact(cat["9007199254740993-2"])
  end)

  it("from plain Lua tables: exact up to what the runtime's numbers hold", function()
    resync_with { { json.decode(raw_text(1)) } }
    local p = catalog("acct")["12345678901234567890"].properties
    if math.type then    -- Lua 5.4: integers up to 2^63 exactly
      assert.are.equal("9007199254740993", tostring(p.m))
    else                 -- LuaJIT: doubles
      assert.are.equal(9007199254740992, p.m)
    end
    assert.are.equal("12345678901234567000", json.encode(p.n))   -- a double
  end)

  it("from ocean.http text pages (and exact pages), exactly", function()
    local fake = require "spec.helpers.fake_api"
    local api = fake.start()
    finally(function() fake.stop_all() end)
    for i = 1, 3 do
      local status = ehelp.http("POST", api.url .. "/users", { body =
        ('{"login":"u%d","id":1234567890123456789%d,"score":9007199254740993}'):format(i, i) })
      assert.are.equal(201, status)
    end
    local function kind(name)
      return { kind = name, selector = { query = "true" }, port = { entity = { mappings = {
        identifier = '"' .. name .. '-" + .login', blueprint = '"acct"', title = ".login",
        properties = { n = ".id", m = ".score" } } } } }
    end
    local _
    _, ocean = oh.setup(emu, { identifier = "spec-http", mapping = { resources = json.array {
      kind("text"), kind("exact") } } })
    local url = api.url .. "/users?per_page=2"         -- two pages, Link headers
    ocean.on_resync("text", function()
      for page in ocean.http.paginate(url, { text = true }) do
        assert(type(page) == "string")
        coroutine.yield(page)
      end
    end)
    ocean.on_resync("exact", function()
      for page in ocean.http.paginate(url, { exact_numbers = true }) do coroutine.yield(page) end
    end)
    local s = ocean.sync_raw_all()
    assert.is_true(s.ok, json.encode(s.errors))
    local cat = catalog("acct")
    for _, k in ipairs { "text", "exact" } do
      for i = 1, 3 do
        local p = cat[k .. "-u" .. i].properties
        assert.are.equal("1234567890123456789" .. i, tostring(p.n))
        assert.are.equal("9007199254740993", tostring(p.m))
      end
    end
  end)
end)

describe("the emulator keeps numbers exactly", function()
  teardown(function() ehelp.stop_all() end)

  it("stores, answers, searches and persists them", function()
    local data = ehelp.tmpdir() .. "/port.json"
    finally(function() os.remove(data) end)
    local emu = ehelp.start { data = data }
    local st = emu.api("POST", "/v1/blueprints", BLUEPRINTS[2])
    assert.is_true(st == 200 or st == 201)
    local function call(path, body)
      return ehelp.http("POST", emu.url .. path, { body = body, headers = {
        Authorization = "Bearer " .. emu.token(), ["Content-Type"] = "application/json" } })
    end
    local status, text = call("/v1/blueprints/mirror/entities",
                              '{"identifier":"e1","properties":{"n":12345678901234567890}}')
    assert.are.equal(201, status, text)
    assert.truthy(text:find('"n":12345678901234567890', 1, true))
    local function search(op, value)
      local _, res = call("/v1/blueprints/mirror/entities/search",
        '{"combinator":"and","rules":[{"property":"n","operator":"' .. op .. '","value":' .. value .. "}]}")
      return #json.decode(res).entities
    end
    assert.are.equal(1, search("=", "12345678901234567890"))
    assert.are.equal(0, search("=", "12345678901234567891"))
    assert.are.equal(0, search("=", "12345678901234567000"))
    assert.are.equal(1, search(">", "12345678901234567889"))
    assert.are.equal(0, search(">", "12345678901234567890"))
    assert.are.equal(1, search(">=", "12345678901234567890"))
    assert.are.equal(1, search("<", "1e20"))
    assert.are.equal(1, search("in", "[1, 12345678901234567890]"))
    emu.stop()
    emu = ehelp.start { data = data }              -- the same catalog again
    local _, listing = ehelp.http("GET", emu.url .. "/_emulator/entities?blueprint=mirror")
    assert.truthy(listing:find('"n":12345678901234567890', 1, true), listing)
  end)
end)
