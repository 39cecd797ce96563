-- What the compiler learns from an expression (src/jq/jqanalyze.c): the input
-- paths it reads (raw items are parsed/converted only there) and whether
-- the engine evaluates it itself. Both must be invisible: every case is
-- also run against plain jq on whole items.
local H = dofile("spec/02-mapping/helper.lua")
local core = require "ocean.core"
local mapping = require "ocean.mapping"
local json = H.json

local function analyze(expr)
  return assert(core.mapping_analyze(expr))
end

describe("expression analysis", function()
  local paths = {
    { ".a.b", { { "a", "b" } } },
    { '"git clone " + .clone_url', { { "clone_url" } } },
    { "(.size / 1024 | floor)", { { "size" } } },
    { '.topics | map(select(startswith("team-")))', { { "topics" } } },
    { "{a, b: .c}", { { "a" }, { "c" } } },
    { '{"a", $__loc__}', { { "a" } } },
    { ".a as $x | .b", { { "a" }, { "b" } } },
    { "label $out | .a", { { "a" } } },
    { "reduce .items[] as $i (.init; . + $i.n)", { { "items" }, { "init" } } },
    { "foreach .a[] as $x (0; . + $x; [., .y])", { { "a" } } },
    { "if .a then .b | .c elif .d then .e else .f end", { { "a" }, { "b" }, { "d" }, { "e" }, { "f" } } },
    { '"\\(.org)/\\(.name)"', { { "org" }, { "name" } } },
    { ".a[.b]", { { "a" }, { "b" } } },
    { '.["x"].y', { { "x", "y" } } },
    { '.a["b"].c', { { "a", "b", "c" } } },
    { ".a.b?.c", { { "a", "b", "c" } } },
    { ".a | .b, .c", { { "a" }, { "c" } } },     -- .c is not on the item: extra, harmless
    { "first(.a[])", { { "a" } } },
    { "[limit(2; .a[])]", { { "a" } } },
    { "-.a // 'dflt'", { { "a" } } },
    { "{(.k): .v}", { { "k" }, { "v" } } },
    { "[.a[] | .x]", { { "a" } } },
    { "try .a catch null", { { "a" } } },
    { '@base64 "\\(.a)"', { { "a" } } },
    { "$__loc__ | .line", {} },
    { "'const'", {} },
    { "now | todate", {} },
    { "[range(.n)]", { { "n" } } },
  }
  for _, case in ipairs(paths) do
    it("finds the paths " .. case[1] .. " reads", function()
      assert.are.same(case[2], analyze(case[1]).paths)
    end)
  end

  local whole = { ".", "..", "keys", "to_entries", "length", ".[]", ".[0]", ".[.k]",
    "select(.a)", ". as $r | $r.a", ".a |= 1", ".a = 1", "def f: .; f", "tojson",
    "@base64", "try .a catch .", "has(\"a\")", "not", "map(.a)",
    'getpath(["a"])', "paths", "with_entries(.)", "error", '."a\\(.b)"', '."\\u0061"',
    "{(.a): .}", "if . then 1 else 2 end", "reduce . as $x (0; 1)",
    ".a | def f: .; f" }                   -- (safe: `;` is taken as back on the item)
  for _, expr in ipairs(whole) do
    it("gives up on " .. expr, function()
      assert.is_nil(analyze(expr).paths)
    end)
  end

  local forms = {
    { '"x"', "const" }, { "5", "const" }, { "1.5e3", "const" }, { "true", "const" },
    { "null", "const" }, { "'x'", "const" }, { '"\\u00e9"', "complex" },
    { ".a", "path" }, { ".a.b.c", "path" }, { '."a b".c', "path" },
    { ".a == 'x'", "eq" }, { "'x' == .a", "eq" }, { ".a.b != 1", "ne" },
    { ".a == .b", "complex" }, { ".a == 1 == true", "complex" },
    { '"x" + .a', "plus" }, { ".a + .b + 'c'", "plus" }, { "1 + 2", "plus" },
    { ".a + (.b)", "complex" }, { ".a | .b", "complex" }, { ".a?", "complex" },
    { ".[0]", "complex" }, { "-1", "complex" }, { ".a # c", "path" },
  }
  for _, case in ipairs(forms) do
    it("classifies " .. case[1] .. " as " .. case[2], function()
      assert.are.equal(case[2], analyze(case[1]).form)
    end)
  end
end)

describe("native evaluation and projection", function()
  local items = {
    { a = "x", b = "y", n = 1, arr = { 1 }, obj = { k = 1 }, ["a-b"] = 3, ["a b"] = { c = 4 } },
    { a = 5, b = H.null },
    { a = { b = { c = 1 } }, c = { d = "z" } },
    { a = { 1, 2 }, b = "s" },
    { a = "a string longer than fifteen bytes", b = 7 },
    {},
    { a = { b = "x" }, c = 5 },
    { a = true, b = false },
    { a = { b = { 1, 2 } }, arr = { { x = 1 }, { x = 2 } } },
  }
  local exprs = {
    ".a", ".a.b", ".a.b.c", '."a-b"', '.["a"]', '.a["b"]', '."a b".c', ".missing.deep",
    '.a == "x"', '.a != "x"', '"x" == .a', ".a.b == 1", ".a == null", ".a.b.c != 1",
    ".a + .b", '"x" + .a', '.a + "-" + .b', ".a.b + .c.d", ".c.d + .a.b", "1 + .n",
    ".arr + .arr", ".obj + .obj", "null + .a", ".a + null", ".n + 0.5", '.a + 1',
    "5", "1.5", "1e3", "true", "null", '"str"', '"a\\"b"', '"\\u00e9"', "'q'",
    -- complex ones, for projection
    "[.a, .b]", "{a, b}", ".a | tostring", "[.arr[]? | .x]", ".a.b | length",
    '"\\(.a)-\\(.b)"', "if .a then .b else .n end", ".a // .b", "(.a | type) + .b",
    "[.a.b[]?]", ".obj | keys", "reduce .arr[]? as $i (0; . + 1)", ".a as $x | [$x, .b]",
    "try (.a | error) catch .", "[.a[]?] | length",
  }

  local function same_as_plain(res)
    local plain = assert(mapping.compile(res, { projection = false, native = false }))
    local fast = assert(mapping.compile(res))
    local want = H.canon(plain:parse(items, true))
    assert.are.equal(want, H.canon(fast:parse(items, true)))
    assert.are.equal(want, H.canon(fast:parse(json.encode(items), true)))
    plain:close()
    fast:close()
  end

  it("matches plain jq for every expression as a field", function()
    local props = {}
    for i, expr in ipairs(exprs) do props["x" .. i] = expr end
    same_as_plain(H.resource({ identifier = '"id"', blueprint = '"bp"', properties = props }))
  end)

  -- as selectors, their errors are visible (item errors)
  for _, expr in ipairs(exprs) do
    if analyze(expr).form ~= "complex" then
      it("matches plain jq for the selector " .. expr, function()
        same_as_plain(H.resource({ identifier = '"id"', blueprint = '"bp"' }, { selector = expr }))
      end)
    end
  end

  it("keeps jq's error messages", function()
    local r = H.parse(H.resource(H.with(), { selector = '.a + 1' }),
                      { { id = "i", a = "a string longer than fifteen bytes" } })
    assert.are.equal('selector must produce a boolean, got an error: string ("a string l...) '
                     .. "and number (1) cannot be added", r.errors[1].message)
    r = H.parse(H.resource(H.with(), { selector = '.a.b.c + .x.y' }), { { id = "i", a = 1, x = 2 } })
    assert.are.equal('selector must produce a boolean, got an error: Cannot index number with string "y"',
                     r.errors[1].message)
  end)

  it("reads only the keys the mapping uses from JSON text and tables", function()
    local res = H.resource(H.with({ properties = { u = ".o.u" } }))
    -- a function in an unread key would fail a whole-item conversion
    local r = H.parse(res, { { id = "a", o = { u = 1, f = print }, g = print } })
    assert.are.equal(1, r.passed[1].properties.u)
    r = H.parse(H.resource(H.with({ properties = { all = "." } })), { { id = "a", g = print } })
    assert.are.equal("cannot convert a function to JSON at $.g", r.errors[1].message)
  end)
end)
