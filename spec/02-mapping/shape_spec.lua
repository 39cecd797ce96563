-- First output means first output, whatever the other fields do: one
-- program per resource must give every field the value its expression
-- gives alone (and the selector the verdict it gives alone), however the
-- other expressions behave (several outputs, none, errors, generators,
-- catches, path expressions), in time that does not depend on them.
--
-- A differential check over seeded random mappings compares each entity
-- with the per-expression path: every expression compiled and run on its
-- own (one slot per program).
local H = dofile("spec/02-mapping/helper.lua")
local mapping = require "ocean.mapping"
local json = H.json
local null = H.null

-- Park-Miller: the same sequence under Lua 5.4 and LuaJIT (exact in doubles).
local function rng(seed)
  local x = seed % 2147483647
  if x <= 0 then x = x + 2147483646 end
  return function(n)
    x = x * 16807 % 2147483647
    return x % n + 1
  end
end

local function pick(r, list) return list[r(#list)] end

-- Expressions by behaviour; each works on the items below.
local SELECTORS = {
  "true", "false", "true, false", "false, true", ".flags[]", "first(.flags[])",
  ".n > 2", "empty, true", "(.tags[] | false), true", "select(.n > 1) | true",
  ".flags[] | not", "[.xs[] | . > 2] | any", "(.s | test(\"a\")), false",
}
local FIELDS = {
  -- several outputs
  ".xs[]", ".flags[]", "1, 2", ".tags[], \"none\"", "range(3000000)",
  "repeat(1)", "range(5) | select(. > 2)", "limit(3; repeat(.n))", "..",
  -- no output
  "empty", ".tags[]", "select(false)", ".xs[] | select(. > 100)", "first(empty)",
  -- errors
  "error(\"boom\")", ".n.x", ".s | tonumber", "(1, error(\"late\"))",
  "(error(\"first\"), 1)", "[.xs[] | tostring] | error",
  -- catches (libjq 1.6's try/? also catch a later break)
  ".a?", "try error(\"x\") catch \"caught\"", "(.s | tonumber)?",
  "(try (1, 2) catch 3), 4", "[.xs[] | (. / 0)?]", ".xs[] | tostring?",
  "first(range(10) | tostring?)", ". as [$a] ?// $a | $a | type",
  "try (.xs[] | error) catch .",
  -- path tracking
  "paths | length", "first(path(.o.c[]))", "[paths(type == \"number\")]",
  "path(..) | join(\".\")?", "getpath([\"o\", \"c\", 0])",
  -- plain
  ".s", ".n * 2", "{a: .n, b: [.xs[0]]}", "\"\\(.s)-\\(.n)\"", ".o.c | length",
}

local function items(r)
  local out = {}
  local TAGS = { json.array(), json.array({ "t1" }), json.array({ "t1", "t2" }) }
  local FLAGS = { json.array({ true, false }), json.array({ false, true }),
                  json.array({ true, "x" }), json.array(), json.array({ false }) }
  for i = 1, 4 do
    out[i] = { id = "i" .. i, n = r(5), s = pick(r, { "abc", "12", "" }),
               tags = pick(r, TAGS), flags = pick(r, FLAGS),
               xs = json.array({ r(4), r(4), r(4) }),
               o = { c = json.array({ r(9), r(9) }) } }
  end
  return out
end

local function resource(selector, fields)
  local props = {}
  for i, f in ipairs(fields) do props["f" .. i] = f end
  return H.resource({ identifier = ".id", blueprint = '"b"', properties = props },
                    { selector = selector })
end

-- The per-expression path: each expression compiled and run on its own.
-- Returns, per item, what the one-program path must give.
local function expected(selector, fields, list, native)
  local function run(mappings, sel, parse_all)
    local m = assert(mapping.compile(H.resource(mappings, { selector = sel }),
                                     { native = native }))
    local out = {}
    for i, item in ipairs(list) do out[i] = m:parse({ item }, parse_all) end
    m:close()
    return out
  end
  local sel = run({ identifier = '"x"', blueprint = '"b"' }, selector, false)
  local alone = {}
  for i, f in ipairs(fields) do
    alone[i] = run({ identifier = '"x"', blueprint = '"b"', properties = { v = f } }, "true", true)
  end
  local want = {}
  for k = 1, #list do
    local s = sel[k]
    if s.errors[1] then
      want[k] = { verdict = "error: " .. s.errors[1].message }
    elseif #s.passed == 0 then
      want[k] = { verdict = false }
    else
      local props, mis = {}, {}
      want[k] = { verdict = true, properties = props, misconfigured = mis }
      for i, f in ipairs(fields) do
        local a = alone[i][k]
        if a.errors[1] then
          want[k] = { verdict = "error: " .. a.errors[1].message }
          break
        end
        props["f" .. i] = a.passed[1].properties.v
        if a.misconfigured["properties.v"] then mis["properties.f" .. i] = f end
      end
    end
  end
  return want
end

local function actual(selector, fields, list, native)
  local m = assert(mapping.compile(resource(selector, fields), { native = native }))
  local got = {}
  for k, item in ipairs(list) do
    local r = m:parse({ item }, false)
    if r.errors[1] then
      got[k] = { verdict = "error: " .. r.errors[1].message }
    elseif #r.passed == 0 then
      got[k] = { verdict = false }
    else
      assert(#r.passed == 1, "one entity per item")
      got[k] = { verdict = true, properties = r.passed[1].properties,
                 misconfigured = r.misconfigured }
    end
  end
  m:close()
  return got
end

describe("one program per resource", function()
  it("gives the entity the issue's backtracking cases lost", function()
    -- selector with two outputs, a field with none: the entity stays
    for _, sel in ipairs({ "true, false", ".flags[]" }) do
      local r = H.parse(H.resource(H.with({ properties = { t = ".tags[]" } }), { selector = sel }),
                        { { id = "a", flags = { true, false }, tags = json.array() } })
      assert.are.equal(1, #r.passed, sel)
      assert.are.equal(null, r.passed[1].properties.t)
      assert.are.same({ ["properties.t"] = ".tags[]" }, r.misconfigured)
      assert.are.same({}, r.errors)
    end
    -- over [true, "x"]: no bogus "must produce a boolean"
    local r = H.parse(H.resource(H.with({ properties = { t = ".tags[]" } }), { selector = ".flags[]" }),
                      { { id = "a", flags = { true, "x" }, tags = json.array() } })
    assert.are.same({}, r.errors)
    assert.are.equal(1, #r.passed)
  end)

  it("does not multiply the work of a generator by a later empty field", function()
    -- each item would take seconds if `range`/`repeat` were resumed for the
    -- empty field; with a 5 s limit per item, 50 items would time out
    local r = H.parse(H.resource(H.with({ properties = {
      a = "range(3000000)", b = "repeat(1)", c = ".tags[]", d = "empty" } })), (function()
      local t = {}
      for i = 1, 50 do t[i] = { id = "i" .. i, tags = json.array() } end
      return t
    end)(), { time_limit = 5 })
    assert.are.same({}, r.errors)
    assert.are.equal(50, #r.passed)
    assert.are.same({ a = 0, b = 1, c = null, d = null }, r.passed[50].properties)
  end)

  it("takes each selector's and field's first output as it would alone (seeded, native and not)", function()
    local r = rng(20261130)
    local checked = 0
    for round = 1, 40 do
      local sel = pick(r, SELECTORS)
      local fields = {}
      for i = 1, r(4) do fields[i] = pick(r, FIELDS) end
      local native = round % 2 == 0
      local list = items(r)
      local want = expected(sel, fields, list, native)
      local got = actual(sel, fields, list, native)
      for k = 1, #list do
        assert.are.same(want[k], got[k], ("round %d: selector %q, fields %s, item %s"):format(
          round, sel, json.encode(fields), json.encode(list[k])))
        checked = checked + 1
      end
    end
    assert.are.equal(160, checked)
  end)
end)
