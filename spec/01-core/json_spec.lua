local core = require "ocean.core"
local json = require "ocean.json"

local has_ints = math.type ~= nil
local jq17 = core.jq_literal_numbers     -- libjq keeps literals (1.7)

describe("core json", function()
  it("encodes with sorted keys", function()
    assert.are.equal('{"a":1,"b":[1,2]}', core.json_encode({ b = { 1, 2 }, a = 1 }))
  end)
end)

-- Numbers as jq has them (src/json/json_num.c, docs/numbers.md).
describe("JSON numbers", function()
  -- JSON text -> jq value -> JSON text: what the engine sends to Port for
  -- a number a mapping passes through unchanged.
  local function via_jq(text) return core.json_via_jq_text(text) end

  it("writes doubles as jq prints them", function()
    local cases = {
      { 0.1 + 0.2, "0.30000000000000004" }, { 1 / 3, "0.3333333333333333" },
      { 1e-5, "1e-05" }, { 0.0001, "0.0001" }, { 1e15, "1000000000000000" },
      { 1e16, "1e+16" }, { 1e17, "1e+17" }, { 1.5e300 * 10, "1.5e+301" },
      { 12345678.9, "12345678.9" }, { 2 ^ 63, "9223372036854776000" },
      { 123456789012345678.0, "123456789012345680" }, { 5e-324, "5e-324" },
      { 2.5e-320, "2.5e-320" }, { -2.5, "-2.5" }, { 1.5e-7, "1.5e-07" },
      { math.huge, "1.7976931348623157e+308" }, { -math.huge, "-1.7976931348623157e+308" },
      { 2 ^ 53 + 0.0, "9007199254740992" }, { 1e21, "1e+21" }, { 1.25e21, "1.25e+21" },
    }
    for _, c in ipairs(cases) do
      assert.are.equal(c[2], core.json_canonical(c[1] + 0.0), "for " .. c[2])
    end
  end)

  it("writes every double as the jq command does (seeded random doubles)", function()
    if os.execute("command -v jq >/dev/null 2>&1") ~= true and
       os.execute("command -v jq >/dev/null 2>&1") ~= 0 then
      error("the jq command is needed (scripts/packages.txt)")
    end
    math.randomseed(20240917)
    local xs, texts = {}, {}
    for i = 1, 3000 do
      local r, d = i % 3
      if r == 0 then
        d = math.random() * 10 ^ math.random(-320, 300)
      elseif r == 1 then
        d = math.floor(math.random() * 10 ^ math.random(0, 22))
      else
        d = math.random(-10 ^ 6, 10 ^ 6) / 10 ^ math.random(0, 8)
      end
      if d ~= 0 then
        xs[#xs + 1] = d
        texts[#texts + 1] = ("%.17g"):format(d)
      end
    end
    local dir = os.tmpname()
    local f = assert(io.open(dir, "w"))
    f:write("[", table.concat(texts, ","), "]")
    f:close()
    local p = assert(io.popen("jq -c '.[] + 0' " .. dir))
    local i = 0
    for line in p:lines() do
      i = i + 1
      assert.are.equal(line, core.json_canonical(xs[i] + 0.0))
    end
    p:close()
    os.remove(dir)
    assert.are.equal(#xs, i)
  end)

  it("keeps integers beyond 2^53 exactly as written, on libjq 1.6 and 1.7", function()
    for _, t in ipairs { "12345678901234567890", "9007199254740993", "-12345678901234567890",
                         "-9007199254740993", "18446744073709551615", "-18446744073709551615",
                         "123456789012345678", "9223372036854775807", "-9223372036854775808" } do
      assert.are.equal("[" .. t .. "]", via_jq("[" .. t .. "]"))
      assert.are.equal('{"a":{"b":[' .. t .. "]}}", via_jq('{"a":{"b":[' .. t .. "]}}"))
    end
  end)

  it("writes numbers a double holds in jq's form, not their spelling", function()
    assert.are.equal("[1.5,100,0.1,-0,0,12345678901234567000,9007199254740992,1e+35]",
      via_jq("[1.50,1e2,0.1000,-0,0.0,12345678901234567000,9007199254740992,1e35]"))
  end)

  it("keeps overflowing literals as jq does: infinite while computing, DBL_MAX in text", function()
    if jq17 then    -- jq 1.7 writes an unchanged literal as decNumber spells it
      assert.are.equal("[1E+400,-1E+400,1E-400]", via_jq("[1e400,-1e400,1E-400]"))
    else
      assert.are.equal("[1.7976931348623157e+308,-1.7976931348623157e+308,0]",
                       via_jq("[1e400,-1e400,1E-400]"))
    end
    assert.are.equal(math.huge, json.decode("1e400"))
    assert.are.equal(-math.huge, json.decode("[-1e400]")[1])
    assert.are.equal('[1.7976931348623157e+308]', json.encode(json.decode("[1e400]")))
  end)

  it("keeps long decimals with libjq 1.7 only", function()
    local t = "[0.10000000000000000000001,1.2345678901234567890e19,100000000000000000000000000000000001]"
    if jq17 then
      assert.are.equal("[0.10000000000000000000001,12345678901234567890,100000000000000000000000000000000001]",
                       via_jq(t))
    else
      assert.are.equal("[0.1,12345678901234567000,1e+35]", via_jq(t))
    end
  end)

  it("hashes numbers by value: 1.5 and 1.50, 0 and -0 alike, big integers exactly", function()
    assert.are.equal(core.json_canonical { a = 1.5, b = 0 }, core.json_canonical { a = 1.50, b = -0.0 })
    local a = json.decode('{"n":12345678901234567890}', { exact_numbers = true })
    local b = json.decode('{"n":12345678901234567891}', { exact_numbers = true })
    assert.are.equal('{"n":12345678901234567890}', core.json_canonical(a))
    assert.is_false(json.equal(a, b))
    -- a literal that is not written as an integer keeps its digits with
    -- libjq 1.7 only (libjq 1.6: integers)
    assert.are.equal(jq17, json.equal(a, json.decode('{"n":1.2345678901234567890e19}',
                                                     { exact_numbers = true })))
  end)
end)

describe("exact numbers (json.decode with exact_numbers)", function()
  local text = '{"big":12345678901234567890,"neg":-12345678901234567890,"m":9007199254740993,' ..
               '"inf":1e400,"tiny":1E-400,"f":0.1,"i":42,"list":[1,18446744073709551616]}'

  it("decodes what a Lua number cannot hold as exact numbers, the rest as numbers", function()
    local v = json.decode(text, { exact_numbers = true })
    assert.are.equal("userdata", type(v.big))
    assert.are.equal("12345678901234567890", tostring(v.big))
    assert.are.equal("-12345678901234567890", tostring(v.neg))
    assert.are.equal("1e400", tostring(v.inf))
    assert.are.equal("1E-400", tostring(v.tiny))
    assert.are.equal("18446744073709551616", tostring(v.list[2]))
    assert.are.equal(0.1, v.f)
    assert.are.equal(42, v.i)
    if has_ints then
      assert.are.equal(9007199254740993, v.m)      -- a Lua 5.4 integer holds it
      assert.are.equal("integer", math.type(v.m))
    else
      assert.are.equal("9007199254740993", tostring(v.m))
    end
    assert.is_true(json.is_number(v.big))
    assert.is_true(json.is_number(v.i))
    assert.is_false(json.is_number("1"))
  end)

  it("writes them back verbatim", function()
    local v = json.decode(text, { exact_numbers = true })
    assert.are.equal('{"big":12345678901234567890,"f":0.1,"i":42,"inf":1e400,"list":[1,18446744073709551616],' ..
                     '"m":9007199254740993,"neg":-12345678901234567890,"tiny":1E-400}', json.encode(v))
  end)

  it("compares by decimal value", function()
    local n = json.number("12345678901234567890")
    assert.is_true(n == json.number("1.2345678901234567890e19"))
    assert.is_false(n == json.number("12345678901234567891"))
    assert.is_true(n < json.number("12345678901234567891"))
    assert.is_true(json.number("-1e400") < json.number("-12345678901234567890"))
    assert.is_true(json.number("0.10000000000000000000001") > json.number("0.1"))
    assert.is_true(json.number("-0") <= json.number("0"))
    if has_ints then    -- Lua 5.4 compares across types
      assert.is_true(n > 1e19)
      assert.is_true(n < 2 ^ 64)
      assert.is_false(n < 0 / 0)
    end
    assert.are.equal("n=12345678901234567890", "n=" .. n)
  end)

  it("refuses text that is not one JSON number", function()
    for _, t in ipairs { "", "1.", ".5", "01", "1e", "+1", "1 ", "0x10", "NaN", "1,2" } do
      assert.has_error(function() json.number(t) end)
    end
  end)

  it("reach jq (and Port) exactly", function()
    local v = json.decode(text, { exact_numbers = true })
    local entity = core.json_canonical(v)
    assert.truthy(entity:find('"big":12345678901234567890', 1, true))
    assert.truthy(entity:find('"neg":-12345678901234567890', 1, true))
    assert.truthy(entity:find('"m":9007199254740993', 1, true))
  end)

  it("Lua 5.4 integers beyond 2^53 reach jq exactly", function()
    local back = core.json_canonical { n = 9007199254740993, m = -9007199254740993 }
    if has_ints then
      assert.are.equal('{"m":-9007199254740993,"n":9007199254740993}', back)
      assert.are.equal(9007199254740993, core.json_via_jq({ n = 9007199254740993 }).n)
    else   -- LuaJIT: the literal already is a double
      assert.are.equal('{"m":-9007199254740992,"n":9007199254740992}', back)
    end
  end)

  it("refuses NaN, writes infinities as jq does", function()
    assert.are.same({ nil, "json encode: cannot encode NaN at $.x" }, { json.encode { x = 0 / 0 } })
    assert.are.equal('{"x":-1.7976931348623157e+308}', json.encode { x = -math.huge })
  end)
end)

-- The scanner's positions and nesting bound, whatever the input form.
describe("JSON streams", function()
  local mapping = require "ocean.mapping"
  local m, reads_a, reads_all
  local function compile(props)
    return assert(mapping.compile {
      kind = "k", selector = { query = "true" },
      port = { entity = { mappings = { identifier = ".id", blueprint = '"b"', properties = props } } },
    })
  end
  setup(function()
    m = compile()
    reads_a = compile { a = ".a" }                -- converts .a only
    reads_all = compile { all = "." }             -- converts the whole item
  end)
  teardown(function()
    m:close(); reads_a:close(); reads_all:close()
  end)

  local function first_error(input)
    local r = m:parse(input)
    return r.errors[1] and r.errors[1].message, #r.passed
  end

  it("counts NDJSON error positions from the start of the text", function()
    local msg, passed = first_error('{"id":"a"}\n{"id":"b"}\n  {"id": tru}\n{"id":"d"}')
    assert.are.equal("invalid JSON at line 3, column 10: unexpected character (near 'tru}\\x0a{\"id\":\"d\"}')", msg)
    assert.are.equal(2, passed)
    msg = first_error('{"id":"a"} {"id":"b"} {"id":1.}')
    assert.are.equal("invalid JSON at line 1, column 31: invalid number (digit expected after '.') (near '}')", msg)
    msg = first_error('[{"id":"a"},\n {"id":"b"},\n {"id" "c"}]')
    assert.are.equal("invalid JSON at line 3, column 8: ':' expected after object key (near '\"c\"}]')", msg)
  end)

  local function nested(levels)
    return ('{"id":"x","a":' .. ("["):rep(levels - 1) .. ("]"):rep(levels - 1) .. "}")
  end

  it("bounds every item at 200 levels, in an array, in NDJSON or alone", function()
    local ok, deep = nested(200), nested(201)
    local want = "invalid JSON at line 1, column 214: nesting deeper than 200 levels (near '[]]]]]]]]]]]]]]]')"
    for _, form in ipairs {
      function(item) return item end,                               -- one item
      function(item) return "[" .. item .. "]" end,                 -- array
      function(item) return '{"id":"y"}\n' .. item end,             -- NDJSON, 2nd line
      function(item) return { item } end,                           -- list of texts
    } do
      local msg, passed = first_error(form(ok))
      assert.is_nil(msg)
      assert.is_true(passed >= 1)
      msg = first_error(form(deep))
      assert.is_truthy(msg and msg:find("nesting deeper than 200 levels", 1, true), tostring(msg))
    end
    assert.are.equal(want, (first_error(deep)))
    -- raw items as Lua tables: the same bound on what the mapping reads
    local function tables(levels)
      local item = { id = "x", a = {} }
      local t = item.a
      for _ = 3, levels do t[1] = {}; t = t[1] end
      return item
    end
    for _, mm in ipairs { reads_a, reads_all } do
      local r = mm:parse({ tables(200) })
      assert.are.equal(1, #r.passed)
      r = mm:parse({ tables(201) })
      assert.are.equal(0, #r.passed)
      assert.truthy(r.errors[1].message:find("^nesting deeper than 200 levels %(or a cycle%) at %$%.a%[0%]"),
                    r.errors[1].message)
    end
    assert.are.same({ nil, "invalid JSON at line 1, column 201: nesting deeper than 200 levels " ..
                           "(near '[]]]]]]]]]]]]]]]')" },
                    { json.decode(("["):rep(201) .. ("]"):rep(201)) })
    assert.is_table(json.decode(("["):rep(200) .. ("]"):rep(200)))
  end)
end)
