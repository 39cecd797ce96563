-- Ocean's jq dialect: jq 1.7.1's syntax, builtins and results, on libjq
-- 1.6 and 1.7.1 alike. Each expression's first output (or its absence, or
-- its error message) through the engine is compared with what the jq
-- 1.7.1 command (build/jq-1.7.1/bin/jq, `make jq17`) gives for the same
-- expression on the same item. The command must be there: a missing one
-- fails the spec, it is not skipped.
local H = dofile("spec/02-mapping/helper.lua")
local mapping = require "ocean.mapping"
local json = H.json

local JQ = (os.getenv("OCEAN_ROOT") or ".") .. "/build/jq-1.7.1/bin/jq"

local ITEMS = {
  '{"id":"a","name":"Billing Service","n":5,"f":1.5,"s":"aéb","e":"","z":null,'
    .. '"xs":[3,1,2],"tags":["x","team-a","team-b"],"o":{"c":[1,2],"d":{"e":true}},'
    .. '"flags":[true,false],"t":"2024-05-01T12:00:00Z","b":"ME======","csv":"a,b,,c"}',
  '{"id":"b","n":-2,"f":-0.5,"s":"","xs":[],"tags":[],"o":{},"flags":[]}',
  '{"id":"c","n":0,"s":"  padded\\t ","xs":[12.5,-0.25,0.1],"o":{"c":[]}}',
}

-- Each: {v: first output} or {none: true} or {e: message}, as JSON text
-- (compared as values: number literals jq 1.7.1 keeps from its input are
-- the number issue's business, not the dialect's).
local PROBE = '(try ([first(%s)] | if length == 0 then {none: true} else {v: .[0]} end) '
              .. 'catch {e: .}) | tojson'

local EXPRS = {
  -- syntax of jq 1.7
  "if .n > 0 then \"pos\" end", "if .n > 0 then 1 elif .n < 0 then -1 end",
  "if .z then 1 elif .n then 2 end", ".o.[\"c\"]", ".o.c.[0]", ".tags.[]",
  "[.xs.[]?]", "$__loc__", "{$__loc__}", "$__loc__.line",
  "if .n then (if .s then 1 end) end", "{if: 1, then: 2, end: 3} | .end",
  -- builtins added in 1.7
  "pick(.o.c)", "pick(.xs[1])", "pick(.o.d.e, .n)", ".n | abs", ".f | abs", "\"abc\" | abs",
  "[limit(0; .xs[])]", "[limit(2; .xs[])]", "[limit(-1; 1, 2)]", "debug(\"msg\") | .id",
  "null | indices(\"i\")", "{} | indices(\"i\")", "[nth(1; empty)]",
  "nth(-1; 1)", "input_line_number",
  ".s | [scan(\"[aé]\"; \"g\")]", ".tags | map(select(startswith(\"team-\")))",
  -- regular expressions (libjq 1.6 loops or crashes on empty matches)
  ".name | ascii_downcase | gsub(\"[^a-z0-9]*\"; \"\")", ".s | gsub(\"\"; \"-\")",
  ".s | [match(\"\"; \"g\") | .offset]", ".s | [splits(\"\")]", ".csv | [splits(\",\")]",
  ".csv | [splits(\",+\"; \"g\")]", ".csv | split(\",\"; null)", ".name | test(\"billing\"; \"i\")",
  ".name | [match(\"(?<first>\\\\w+) (?<second>\\\\w+)\")]", ".name | capture(\"(?<a>[A-Z])\")",
  ".name | [scan(\"[A-Z]\")]", ".name | [scan(\"([a-z])(i)\")]", ".name | sub(\"(?<x>[aeiou])\"; \"<\\(.x)>\")",
  ".name | sub(\"(?<x>[aeiou])\"; \"<\\(.x)>\"; \"g\")", ".name | gsub(\"(?<x>l+)\"; \"[\\(.x)]\", \"{\\(.x)}\")",
  ".name | sub(\"^\"; \">\")", ".name | gsub(\"$\"; \"!\")", ".name | test(\"(\")",
  ".name | test([\"SERVICE\", \"i\"])", ".name | match(\"x\"; \"q\")", ".n | test(\"a\")",
  ".name | [match(\"(a)|(b)|(i)\"; \"g\") | .captures | map(.offset)]",
  ".s | [match(\"(?=b)\"; \"g\")]", ".name | ascii_upcase",
  -- strings, formats, numbers
  "\"x\" * 0", "\"x\" * 0.5", "\"ab\" * 2.7", "\"x\" * -1", "\"x\" * nan", ".s * 2", "2 * .s",
  ".name | indices(\"i\")", ".name | index(\"i\")", ".name | rindex(\"i\")", "\"aaa\" | indices(\"aa\")",
  ".s | indices(\"\")", ".xs | indices(1)", ".csv | split(\",\")", ".csv / \",\"",
  ".s | explode", ".s | explode | implode", "[65, 233] | implode", ".name | ltrimstr(\"Billing \")",
  ".n | ltrimstr(\"a\")", ".name | rtrimstr(\"ice\")", ".name | ltrimstr(1)",
  ".f | tojson", ".xs | tojson", ".xs | tostring", "[1.1, 0.1, 1e-5, 1e17, 100] | map(. * 1) | tojson",
  "\"\\(.f) \\(.xs)\"", ".tags | @csv", ".tags | @tsv", ".name | @uri", ".name | @html",
  ".name | @sh", ".name | @base64", ".name | @base64 | @base64d",
  ".f | significand", "8 | significand", "ldexp(3; 2)", "scalb(3; 2)", ".f | frexp",
  "0 | significand", "-8 | significand", "0.1 | significand", "1e-310 | significand",
  "infinite | significand", "-0 | significand", "5e300 | significand",
  "ldexp(3; 2.7)", "ldexp(3; -2)", "ldexp(1; 2000)", "ldexp(.f; .n)", "scalb(3; 2.7)",
  "scalb(3; -1)", "scalb(.f; .n)", "[.f, .n] | tojson", "-1e-5 | tojson",
  "getpath([\"a\", \"b\"])", "getpath([\"o\", \"c\", 5])", "try getpath([\"f\", \"x\"]) catch .",
  "null | getpath([\"a\", 0, \"b\"])", "getpath([])", "[paths(..)] | length",
  "[getpath([\"o\", \"c\"], [\"xs\"])]", "try getpath([\"xs\", \"a\"]) catch .",
  "{} | [paths]", "[[]] | [paths]",
  ".f | floor", ".f | round", ".n | sqrt", "infinite | tostring", "[nan] | tojson",
  "1e1000 * 1 | tostring", "-1e1000 * 1 | tojson", ".n / 0", "5 % 0", "[.xs[] | . * 2]",
  -- paths and assignments
  "[paths]", "[paths(type == \"number\")]", "getpath([\"o\", \"c\", 0])", "getpath([\"nope\", 1])",
  "try getpath([\"n\", \"x\"]) catch \"E\"", "path(..)",
  ".o.c[1] = 9", ".xs |= map(. + 1)", ".xs[] |= . * 10", ".xs[] |= empty",
  "(.xs[] | select(. == 1)) |= empty", ".o.d |= empty", ".n += 1", ".z //= \"d\"",
  ".tags[1:] = [\"y\"]", "del(.xs[0, 2])", "to_entries | map(.key) | sort",
  "with_entries(select(.key == \"n\"))", ".[\"n\", \"s\"]", "del(.o)", "delpaths([[\"xs\", 0]])",
  "[.xs[1:], .xs[:1], .xs[-1:]]", ".s[1:]", ".xs[nan:]", ".xs[:nan]",
  -- generators, first outputs and catches
  "first(.xs[] | tostring?)", "[.xs[] | tostring?]",
  "[(try (1, 2) catch 3), 4]", "[.xs[] | (1 / .)?]", "first(empty)", "nth(1; .xs[])",
  "isempty(.xs[])", "[limit(1; .tags[])]", "until(. > 100; . * 2 + 1)", "[range(0; 10; 3)]",
  "[.[] | numbers]", "[.xs[] as $x | $x * 2]", ". as [$a] ?// $a | $a | type",
  "reduce .xs[] as $x (0; . + $x)", "[foreach .xs[] as $x (0; . + $x)]",
  "label $out | .xs[] | if . > 1 then ., break $out else empty end",
  "[.xs[] | select(. > 1)]", "error(\"boom\")", "error({a: 1})",
  "try error(\"x\") catch .", ".n.x", ".xs[\"a\"]", "{} | .a.b.c", "[] | first",
  ".z | length", ".tags | join(\"-\")", "[.xs[], .tags[]] | join(\",\")", "[1, null, \"a\"] | join(\"/\")",
  "tostream", "[tostream] | fromstream(.[])", "input_line_number", "$ENV | type", "env | type",
  "splits(\"a\")", "[1,2] | combinations", "[[1,2],[3]] | [combinations]",
  "walk(if type == \"number\" then . + 1 else . end)", "[.xs[] | tostring] | add",
  "@json \"v=\\(.xs)\"", "[.xs, .tags] | transpose", "keys", "to_entries | length",
  ".t | fromdate", ".t | fromdate | todate", "now | type", "[.n, .f] | min_by(.)",
  "group_by(type)?", ".xs | sort", ".xs | unique", ".xs | min, max",
  "getpath([\"xs\", 5]) = 1", ".xs[5] = 1", "[.[] | strings]", "map_values(type)?",
  "tojson | fromjson | .id", "\"\\u00e9\" | utf8bytelength", "@text \"\\(.n)\"",
}

-- Beyond jq 1.7.1 (jq 1.8's additions Ocean mappings meet, and toarray,
-- @base32d): the values jq 1.8's manual gives.
local LATER = {
  { "\" hello \" | trim, ltrim, rtrim", "hello" },
  { "\" hello \" | [trim, ltrim, rtrim]", { "hello", "hello ", " hello" } },
  { "\"\\u00a0x\\u3000\" | trim", "x" },
  { "try (1 | trim) catch .", "trim input must be a string" },
  { "\"foobarfoo\" | trimstr(\"foo\")", "bar" },
  { "1 | toarray", { 1 } },
  { "[1] | toarray", { 1 } },
  { "add(1, 2, 3)", 6 },
  { "[skip(2; 1, 2, 3, 4)]", { 3, 4 } },
  { "[\"true\", \"false\", true] | map(toboolean)", { true, false, true } },
  { "try (\"yes\" | toboolean) catch .", "string (\"yes\") cannot be parsed as a boolean" },
  { "\"ME======\" | @base32d", "a" },
  { "\"NBSWY3DP\" | @base32d", "hello" },
}

local function write(text)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

-- jq 1.7.1's answer for PROBE(expr) on item (stderr, debug's, dropped).
local function jq_cli(expr, item)
  local prog, input = write(PROBE:format(expr)), write(item)
  local p = io.popen(("%s -c -f %s %s 2>/dev/null"):format(JQ, prog, input))
  local out = p:read("*a")
  p:close()
  os.remove(prog)
  os.remove(input)
  return (out:gsub("\n$", ""))
end

describe("Ocean's jq dialect", function()
  it("has the jq 1.7.1 command to compare with (make jq17)", function()
    local f = io.open(JQ, "r")
    assert(f, JQ .. " is missing: run `make jq17`")
    f:close()
  end)

  it("gives jq 1.7.1's first output, no-output or error, expression by expression", function()
    local props = {}
    for i, e in ipairs(EXPRS) do props["e" .. i] = PROBE:format(e) end
    local m = assert(mapping.compile(H.resource(H.with({ properties = props })), { native = false }))
    local mismatches = {}
    for k, item in ipairs(ITEMS) do
      local r = m:parse({ item })
      assert.are.same({}, r.errors)
      for i, e in ipairs(EXPRS) do
        local want = jq_cli(e, item)
        local got = r.passed[1].properties["e" .. i]
        local ok, text = pcall(json.decode, want)
        want = ok and type(text) == "string" and json.canonical(json.decode(text)) or want
        got = json.canonical(json.decode(got))
        if want ~= got then
          mismatches[#mismatches + 1] = ("item %d: %s\n  jq 1.7.1: %s\n  engine:   %s"):format(k, e, want, got)
        end
      end
    end
    m:close()
    assert(#mismatches == 0, #mismatches .. " differences:\n" .. table.concat(mismatches, "\n"))
  end)

  -- libjq 1.6's own semantics that the engine keeps (docs/jq.md): its try
  -- (and `?`) also catches a break raised after its body produced a value,
  -- and an error without a message is no error at all.
  local KNOWN_16 = {
    { "[first(range(10) | tostring?)]", { "0" }, { "0", "1", "2", "3", "4", "5", "6", "7", "8", "9" } },
    { "[limit(2; range(5) | tostring?)]", { "0", "1" }, { "0", "1", "2", "3", "4" } },
    { "[try error(null) catch \"caught\"]", { "caught" }, H.json.array() },
  }
  it("keeps libjq 1.6's try/break and error(null) where 1.7.1 differs", function()
    local v16 = not (os.getenv("OCEAN_TEST_VARIANT") or ""):match("jq17")
    for _, case in ipairs(KNOWN_16) do
      local cli = json.decode(json.decode(jq_cli(case[1], "null")))
      assert.are.same({ v = case[2] }, cli, case[1])
      assert.are.same(v16 and case[3] or case[2], (H.field(case[1])), case[1])
    end
  end)

  it("has jq 1.8's later builtins (and toarray, @base32d)", function()
    for _, case in ipairs(LATER) do
      assert.are.same(case[2], (H.field(case[1])), case[1])
    end
  end)
end)
