-- ocean.json and the Lua <-> jq <-> JSON bridge the mapping engine stands
-- on: null survives, empty arrays stay arrays, numbers keep their kind
-- where the runtime has one.
local H = dofile("spec/02-mapping/helper.lua")
local core = require "ocean.core"
local json = require "ocean.json"
local null = json.null
local has_ints = math.type ~= nil

describe("ocean.json", function()
  it("round-trips null, empty arrays and empty objects through text", function()
    local text = '{"a":null,"b":{},"c":[],"d":[1,null,3],"e":{"f":[]}}'
    local v = json.decode(text)
    assert.are.equal(null, v.a)
    assert.is_false(json.is_array(v.b))
    assert.is_true(json.is_array(v.c))
    assert.are.equal(null, v.d[2])
    assert.are.equal(text, json.encode(v))
    assert.are.equal(null, require("ocean").null)
  end)

  it("writes sorted keys and marks arrays with json.array", function()
    assert.are.equal('{"a":1,"b":[1,2],"c":[],"d":{}}',
                     json.encode({ d = {}, c = json.array(), b = { 1, 2 }, a = 1 }))
    assert.are.equal("[]", json.encode(json.array({})))
  end)

  it("keeps integers and floats apart on Lua 5.4", function()
    local v = json.decode('{"i":2,"f":2.0,"e":1e2,"big":9007199254740993}')
    if has_ints then
      assert.are.equal("integer", math.type(v.i))
      assert.are.equal("float", math.type(v.f))
      assert.are.equal("float", math.type(v.e))
      assert.are.equal(9007199254740993, v.big)
      assert.are.equal('{"big":9007199254740993,"e":100.0,"f":2.0,"i":2}', json.encode(v))
    else
      assert.are.equal('{"big":9007199254740992,"e":100,"f":2,"i":2}', json.encode(v))
    end
  end)

  it("compares values regardless of key order, null members and 1 vs 1.0", function()
    assert.is_true(json.equal({ a = 1, b = { 1, 2 } }, { b = { 1, 2 }, a = 1.0 }))
    assert.is_true(json.equal({ a = null, b = 1 }, { b = 1 }))
    assert.is_false(json.equal({ 1, 2 }, { 2, 1 }))
    assert.is_false(json.equal({}, json.array()))
  end)

  it("reports bad text and unencodable values", function()
    assert.are.same({ nil, "invalid JSON at line 1, column 4: unexpected character (near ']')" },
                    { json.decode("[1,]") })
    local v, err = json.encode({ f = print })
    assert.is_nil(v)
    assert.are.equal("json encode: cannot encode a function at $.f", err)
  end)
end)

describe("Lua <-> jq <-> JSON", function()
  it("round-trips Lua values through jq values", function()
    local v = { a = null, b = {}, c = json.array(), d = { 1, "two", true, null },
                e = { f = { g = 2.5 } } }
    local back = core.json_via_jq(v)
    assert.are.equal(json.encode(v), json.encode(back))
    assert.is_true(json.is_array(back.c))
    assert.are.equal(null, back.d[4])
  end)

  it("gives jq's numbers: doubles, integral ones as integers", function()
    local back = core.json_via_jq({ i = 2, f = 2.0, h = 2.5 })
    assert.are.equal(2, back.f)
    assert.are.equal(2.5, back.h)
    if has_ints then assert.are.equal("integer", math.type(back.f)) end
  end)

  it("round-trips JSON text through jq values (sorted keys)", function()
    assert.are.equal('{"a":{"x":"é\\n","y":[]},"b":[1,2,null,{}]}',
                     core.json_via_jq_text('{"b":[1,2.0,null,{}],"a":{"y":[],"x":"é\\n"}}'))
    assert.are.same({ nil, "invalid JSON at line 1, column 3: ',' or ']' expected in array (at end of input)" },
                    { core.json_via_jq_text("[1") })
  end)

  it("maps a value through jq unchanged (Lua -> jq program -> Lua)", function()
    local v = { a = null, list = json.array(), obj = {}, n = { 1, 2.5, -3 }, s = "é\0x" }
    local r = H.parse(H.resource(H.with({ properties = { all = ".v" } })), { { id = "i", v = v } })
    assert.are.equal(json.encode(v), json.encode(r.passed[1].properties.all))
    local t = H.parse(H.resource(H.with({ properties = { all = ".v" } })),
                      { json.encode({ id = "i", v = v }) })
    assert.are.equal(json.encode(v), json.encode(t.passed[1].properties.all))
  end)
end)

-- Numbers in mappings, as jq 1.6 and 1.7.1 have them (docs/numbers.md).
-- Their exact text reaching Port is in spec/06-sync/numbers_spec.lua.
describe("numbers in mappings", function()
  local raw = '{"id":"i","inf":1e400,"ninf":-1e400,"n":12345678901234567890,' ..
              '"m":9007199254740993,"f":0.1}'

  -- the field's value for raw as JSON text and as Lua tables
  local function field(expr)
    local a = H.field(expr, raw)
    local b = H.field(expr, json.decode(raw, { exact_numbers = true }))
    assert.are.equal(json.encode(a), json.encode(b))
    return a
  end

  it("keeps overflowing literals infinite until printing, as jq", function()
    assert.is_true(field(".inf | isinfinite"))
    assert.is_true(field(".ninf | isinfinite"))
    assert.is_true(field(".inf > 1e308"))
    assert.are.equal(null, (field(".inf + .ninf")))            -- NaN: null, as jq
    assert.are.equal(null, (field("[.inf + .ninf][0]")))
    assert.are.equal("number", field(".inf | type"))
  end)

  it("computes with doubles, as jq 1.6 and 1.7.1 do", function()
    assert.are.equal("12345678901234567000", field(".n + 1 | tostring"))
    assert.are.equal("9007199254740992", field(".m + 0 | tostring"))
    assert.are.equal("-12345678901234567000", field("-.n | tostring"))
    assert.is_true(field(".n + 1 == .n"))                       -- beyond 2^53
  end)

  it("keeps literals where jq 1.7.1 does (libjq 1.7), jq 1.6's doubles otherwise", function()
    if core.jq_literal_numbers then
      assert.are.equal("12345678901234567890", field(".n | tostring"))
      assert.are.equal("9007199254740993", field(".m | tojson"))
      assert.are.equal("x-12345678901234567890", field('"x-\\(.n)"'))
      assert.is_false(field(".n == 12345678901234567891"))      -- in C
      assert.is_false(field(".n | . == 12345678901234567891"))  -- in jq
      assert.are.equal(2, field("[.n, 12345678901234567891] | unique | length"))
    else
      assert.are.equal("12345678901234567000", field(".n | tostring"))
      assert.are.equal("9007199254740992", field(".m | tojson"))
      assert.is_true(field(".n == 12345678901234567891"))
      assert.is_true(field(".n | . == 12345678901234567891"))
      assert.are.equal(1, field("[.n, 12345678901234567891] | unique | length"))
    end
    assert.is_true(field(".n == .n"))
    assert.are.equal(0.1, field(".f"))
  end)

  it("gives Lua exact numbers when asked (exact_numbers)", function()
    local r = H.parse(H.resource(H.with({ properties = { n = ".n", m = ".m", c = ".n + 1",
                                                         l = "[.n, .f]" } })),
                      raw, { exact_numbers = true })
    local p = r.passed[1].properties
    assert.are.equal("userdata", type(p.n))
    assert.are.equal("12345678901234567890", tostring(p.n))
    assert.are.equal("12345678901234567890", tostring(p.l[1]))
    assert.are.equal(0.1, p.l[2])
    assert.are.equal(1.2345678901234567e19, p.c)                  -- computed: a double
    if math.type then
      assert.are.equal(9007199254740993, p.m)                      -- a Lua integer
    else
      assert.are.equal("9007199254740993", tostring(p.m))
    end
  end)

  it("gives Lua the nearest Lua number (Lua 5.4: integers up to 2^63 exactly)", function()
    local n, m = field(".n"), field(".m")
    assert.are.equal(1.2345678901234567e19, n)
    if math.type then
      assert.are.equal(9007199254740993, m)
      assert.are.equal("integer", math.type(m))
    else
      assert.are.equal(9007199254740992, m)
    end
  end)
end)
