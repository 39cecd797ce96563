-- No mapping expression can crash the process: every way libjq (1.6 and
-- 1.7.1) could reach an assert, an abort or a C stack overflow from a
-- program, by class (docs/jq.md lists them). Each case gives jq 1.7.1's
-- answer, or a per-field error naming the field and the reason. The specs
-- run in this process: a crash fails the whole run.
local H = dofile("spec/02-mapping/helper.lua")
local json, null = H.json, H.null

-- a JSON text: its keys keep their order
local ITEM = '{"id":"i","name":"Billing Service","a":{"c":[1,2]},'
             .. '"settings":{"x":1,"y":{"z":2}},"s":"aéb"}'

-- The field's value, or the item error's message.
local function eval(expr, opts)
  local r = H.parse(H.resource(H.with({ properties = { x = expr } })), { ITEM }, opts)
  if r.errors[1] then return nil, r.errors[1].message end
  return r.passed[1].properties.x, r.misconfigured["properties.x"] ~= nil
end

local function cases(list, opts)
  for _, case in ipairs(list) do
    it(case[1] .. " -> " .. json.encode(case[2]), function()
      local v, err = eval(case[1], opts)
      if case[3] then
        assert.are.equal(case[3], err)
      else
        assert.is_nil(type(err) == "string" and err or nil)
        assert.are.same(case[2], v)
      end
    end)
  end
end

local SIZE = "properties.x: the mapping expression would exceed the memory limit (256 MiB)"

describe("no crash", function()
  describe("libjq 1.6's path-tracking reset (stack_restore: path_len == 0)", function()
    cases({
      { "paths | length", 1 },
      { "first(path(.a.c[]))", { "a", "c", 0 } },
      { ".settings | paths(type == \"number\") | join(\".\")", "x" },
      { "[paths] | length", 11 },
      { "path(..) | select(length > 2)", { "a", "c", 0 } },
      { "first(paths(type == \"number\"))", { "a", "c", 0 } },
      { "getpath([\"a\", \"c\"]) | first(path(.[]))", { 0 } },
      { "[limit(2; paths)] | length", 2 },
      { "(path(.a.c[]) | tostring), 1", "[\"a\",\"c\",0]" },
      { "try (.a | map_values(error)) catch \"caught\"", "caught" },
      { "[.settings | map_values(tonumber?)] | length", 1 },
      { "first(.a.c | map_values(. + 1) | .[])", 2 },
    })
    -- builtins of libjq 1.6 that run its own _modify (map_values, INDEX,
    -- with_entries): an error raised in the update unwinds paths the
    -- program must still be inside path(...) for
    for _, expr in ipairs({ ".settings | map_values(error)",
                            "INDEX(.a.c[]; error)",
                            ".settings | with_entries(error)",
                            "[.name] | map_values(tonumber)" }) do
      it(expr .. " -> a field error", function()
        local v, bad = eval(expr)
        assert.are.same({ H.null, true }, { v, bad })
      end)
    end
    -- libjq's own map_values (1.6 and 1.7.1) ran its update while `.[]`
    -- over the object was live inside path(...): an error there dropped a
    -- reference to the next key (seen under valgrind, `make valgrind`).
    -- The prelude's map_values collects the paths first; jq 1.7.1's values.
    cases({
      { ".settings | map_values(tostring)", { x = "1", y = "{\"z\":2}" } },
      { ".settings | map_values(empty)", {} },
      { ".settings | map_values(select(type == \"number\"))", { x = 1 } },
      { "try (.settings | map_values(error)) catch .", 1 },
      { ".settings | map_values(1, 2)", { x = 1, y = 1 } },
      { "[.settings | map_values(.z?)] | length", 1 },
    })
    it("halts inside a path expression and still frees the stack", function()
      -- the watchdog stops the item while libjq's stack holds forks saved
      -- during path(...): the next item's reset walks them
      local res = H.resource(H.with({ properties = {
        x = "path(.a.c[]) as $p | def f: f; f", y = "first(path(..))" } }))
      local r = H.parse(res, { ITEM, ITEM }, { time_limit = 0.3 })
      assert.are.same({ { index = 1, message =
        "properties.x: the mapping expression exceeded the time limit (0.3 s)" },
        { index = 2, message =
        "properties.x: the mapping expression exceeded the time limit (0.3 s)" } }, r.errors)
      assert.are.equal(1, #H.parse(H.resource(H.with({ properties = { y = "first(path(..))" } })),
                                   { ITEM }).passed)
    end)
  end)

  describe("out of memory in one builtin call (jv_mem_alloc aborts)", function()
    cases({
      { "\"x\" * 1e10", nil, SIZE },
      { "\"abc\" * (1e9 | floor)", nil, SIZE },
      { "[] | .[2147483647] = 1", nil, SIZE },
      { "[] | .[1e9] = 1 | length", nil, SIZE },
      { "null | setpath([1e9]; 1)", nil, SIZE },
      { "[] | .[536870911] |= 1", nil, SIZE },
      { "pick(.a.c[1e9])", nil, SIZE },
      { "fromstream([[1e9], 1], [[1e9]])", nil, SIZE },
      { "reduce range(60) as $i ([]; [., .]) | tojson", nil, SIZE },
      { "reduce range(60) as $i ([]; [., .]) | tostring", nil, SIZE },
      { "reduce range(60) as $i ([]; [., .]) | \"\\(.)\"", nil, SIZE },
      { "reduce range(60) as $i ([]; [., .]) | @json", nil, SIZE },
      { "reduce range(40) as $i ([\"a\"]; [., .]) | flatten(0) | @csv", nil, SIZE },
      { "(\"x\" * 1000000 | . + .) as $s | [range(200)] | map($s) | @text", nil, SIZE },
      -- within the limit: the answer
      { "\"ab\" * 3", "ababab" },
      { "\"x\" * 0", "" },
      { "\"x\" * -1", null },
      { "[] | .[3] = 1", json.array({ null, null, null, 1 }) },
    })
  end)

  describe("builtins that loop or crash inside C", function()
    cases({
      -- libjq 1.6: the empty-match regex loop / segfault; jq 1.7.1's answers
      { ".name | ascii_downcase | gsub(\"[^a-z0-9]*\"; \"\")", "billingservice" },
      { "\"abc\" | gsub(\"\"; \"-\")", "-a-b-c-" },
      { "\"abc\" | [match(\"\"; \"g\") | .offset]", { 0, 1, 2, 3 } },
      { ".s | [splits(\"\")]", { "", "a", "é", "", "b", "" } },
      { ".s | [match(\"\"; \"g\")] | length", 5 },
      { "\"abc\" | [scan(\"\")]", { "", "", "", "" } },
      { "\"x\" | [splits(\"\")]", { "", "x", "" } },
      { "\"a1b2\" | [scan(\"[a-z]([0-9])\")]", { { "1" }, { "2" } } },
      { "\"test\" | sub(\"(?<x>t)\"; \"<\\(.x)>\"; \"g\")", "<t>es<t>" },
      -- libjq 1.6: _strindices with an empty needle never returns
      { "\"abc\" | indices(\"\")", json.array() },
      { "\"aaa\" | indices(\"aa\")", { 0, 1 } },
      -- nan in a path component given as a value (getpath, setpath,
      -- delpaths, del, |=): libjq 1.6 asserts on a nan slice bound and
      -- loops in jv_dels on a nan index; 1.7.1 aborts on the latter.
      -- jq 1.7.1's answer, or a field error (null, misconfigured)
      { ".a.c | setpath([{\"start\":nan,\"end\":1}]; [9])", { 9, 2 } },
      { ".a.c | setpath([{\"start\":0,\"end\":nan}]; [9])", { 9 } },
      { ".a.c | delpaths([[{\"start\":nan,\"end\":1}]])", { 2 } },
      { ".a.c | getpath([{\"start\":nan,\"end\":1}])", { 1 } },
      { ".a.c | getpath([nan])", null, true },
      { ".a | getpath([\"c\", {\"start\":1,\"end\":nan}])", { 2 } },
      { ".a.c | delpaths([[nan]])", null, true },
      { ".a.c | del(.[nan])", null, true },
      { ".a.c | delpaths([[1], [nan]])", null, true },
      { ".a.c | setpath([nan]; 1)", null, true },
      { ".a.c | delpaths([[1e300], [-1e300], [infinite]])", { 1, 2 } },
      { ".a.c | del(.[0])", { 2 } },
      -- ... and as an index written in the expression, nth and indices
      -- (jqlex.c: x[e] -> x[__oc_idx(e)]); jq 1.7.1's answers
      { ".a.c | .[{\"start\":nan,\"end\":1}]", { 1 } },
      { ".a.c | .[{\"start\":nan,\"end\":1}] = [9]", { 9, 2 } },
      { ".a.c | .[{\"start\":nan,\"end\":1}] |= [9]", { 9, 2 } },
      { ".a.c | .[{\"start\":0,\"end\":nan}]", { 1, 2 } },
      { ".a.c | {\"start\":nan,\"end\":1} as $s | .[$s]", { 1 } },
      { ".a.c | nth({\"start\":nan,\"end\":1})", { 1 } },
      { "\"abc\" | indices({\"start\":nan,\"end\":1})", "a" },
      { ".a.c | .[.[0]]", 2 },
      { ".a | .[(\"c\")] | .[-1:]", { 2 } },
      { ".a.c | .[] |= empty", {} },
      { "path(getpath([\"a\", \"c\"]))", { "a", "c" } },
      -- libjq 1.6: a nan slice bound asserts (parse_slice)
      { "[1,2,3] | .[nan:]", { 1, 2, 3 } },
      { "[1,2,3] | .[:nan]", { 1, 2, 3 } },
      { "\"abc\" | .[1:nan]", "bc" },
      { "[1,2,3] | .[1:]", { 2, 3 } },
      { "[1,2,3] | del(.[:2])", { 3 } },
      -- libjq 1.7.1: string repetition loops in C for huge counts
      { "\"\" * 1e10", "" },
    })
    it("bounds catastrophic regex backtracking with an error #slow", function()
      for _, re in ipairs({ "^(a|a)+$", "^(a+)+$" }) do
        local v, mis = eval("(\"a\" * 30 + \"!\") | try test(\"" .. re .. "\") catch .")
        assert.is_false(mis)
        assert.are.equal("Regex failure: retry-limit-in-match over", v)
      end
    end)
  end)

  -- #slow: minutes under valgrind, where the time limit would stop them
  -- These take seconds on a loaded machine: the time limit is not what they
  -- test (the memory limit and the depth bound are), so it is set far away.
  local DEEP = { time_limit = 120 }
  describe("deep values (recursive free, compare and print in C) #slow", function()
    cases({
      { "reduce range(1000000) as $i (null; [.]) | 1", 1 },
      { "reduce range(300000) as $i (null; {a: .}) | tojson | length > 256", true },
      { "reduce range(300000) as $i (null; [.]) | getpath([range(10) | 0]) | type", "array" },
      { "getpath([range(1000000) | \"a\"])", null },
    }, DEEP)
    it("counts a field value deeper than 256 levels as null, and frees it safely", function()
      local v, mis = eval("reduce range(500000) as $i (null; [.])", DEEP)
      assert.are.equal(null, v)
      assert.is_true(mis)
      v, mis = eval("reduce range(200) as $i (null; [.]) | flatten", DEEP)
      assert.are.same({ null }, v)
      assert.is_false(mis)
    end)
    it("survives a deep error value and a deep selector value", function()
      local v, mis = eval("error(reduce range(500000) as $i (null; [.]))", DEEP)
      assert.are.equal(null, v)
      assert.is_true(mis)
      local r = H.parse(H.resource(H.with(), { selector = "reduce range(500000) as $i (null; [.])" }),
                        { ITEM }, DEEP)
      assert.are.same({ { index = 1, message = "selector must produce a boolean, got a value nested "
        .. "deeper than 256 levels or larger than the memory limit" } }, r.errors)
    end)
    it("refuses a field value bigger than the memory limit when written out", function()
      local v, mis = eval("reduce range(40) as $i ([\"a\"]; [., .])", DEEP)
      assert.are.equal(null, v)
      assert.is_true(mis)
    end)
  end)

  describe("halt", function()
    cases({
      { "halt", nil, "halt/halt_error in a mapping expression (exit code 0)" },
      { "try halt catch 1", nil, "halt/halt_error in a mapping expression (exit code 0)" },
      { "\"bye\" | halt_error(1)", nil, "halt/halt_error in a mapping expression (exit code 1): bye" },
      { "1 | halt_error(\"x\")", null },
      { "first((1, halt))", 1 },
    })
    it("makes a non-number exit code the jq error jq 1.7.1 gives", function()
      local v = eval("try (\"x\" | halt_error(\"a\")) catch .")
      assert.are.equal("string (\"x\") halt_error/1: number required", v)
    end)
  end)

  describe("compile time", function()
    it("does not fold a huge string repetition while compiling (libjq 1.7)", function()
      local v, err = eval("(\"a\" + \"b\") * 1e10")
      assert.are.equal(SIZE, err)
      assert.is_nil(v)
      assert.are.equal("ababab", (eval("(\"a\" + \"b\") * 3")))
    end)
    it("compiles a very long expression on the big stack", function()
      local v = eval(string.rep("1 + ", 20000) .. "1")
      assert.are.equal(20001, v)
    end)
  end)
end)
