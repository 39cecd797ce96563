-- jq 1.7's syntax on libjq 1.6: the lexer (src/jq/jqlex.c) rewrites it into
-- 1.6 syntax with the same meaning, touching nothing inside strings and
-- comments, and keywords used as keys or fields stay what they are.
local H = dofile("spec/02-mapping/helper.lua")
local core = require "ocean.core"

local function code(expr)
  local a, err = core.mapping_analyze(expr)
  assert(a, err)
  return a.code
end

describe("jq 1.7 syntax", function()
  local cases = {
    { "if . then 1 end", "if . then 1 else . end" },
    { "if .a then 1 elif .b then 2 end", "if .a then 1 elif .b then 2 else . end" },
    { "if .a then (if .b then 1 end) else 2 end", "if .a then (if .b then 1 else . end) else 2 end" },
    { "[if .a then 1 end, if .b then 2 else 3 end]", "[if .a then 1 else . end, if .b then 2 else 3 end]" },
    { "{if: 1, end: 2} | .end", "{if: 1, end: 2} | .end" },
    { "\"if x then y end\" # if z then w end", "\"if x then y end\" # if z then w end" },
    { ".a.[0]", ".a[0]" },
    { ".a.[\"k\"].b.[]", ".a[\"k\"].b[]" },
    { ".a . [0]", ".a  [0]" },
    { ".[0].[1]", ".[0][1]" },
    { "map(.[0])", "map(.[0])" },
    { "..[0]?", "..[0]?" },
    { ".a[1:2]", ".a[__oc_slice(1; 2)]" },
    { ".a[:2] | .[1:]", ".a[__oc_slice(null; 2)] | .[__oc_slice(1; null)]" },
    { ".a[.b[0:1][0]:]", ".a[__oc_slice(.b[__oc_slice(0; 1)][0]; null)]" },
    { "[1, 2] | .[{a: 1}.a:]", "[1, 2] | .[__oc_slice({a: 1}.a; null)]" },
    { "$__loc__", "({\"file\":\"<top-level>\",\"line\":1})" },
    { "1 |\n$__loc__.line", "1 |\n({\"file\":\"<top-level>\",\"line\":2}).line" },
    { "{$__loc__}", "{\"__loc__\": ({\"file\":\"<top-level>\",\"line\":1})}" },
    { "\"x\" * 1e10", "(\"x\" | __oc_n) * 1e10" },
    { "(\"a\" + \"b\") * 3", "((\"a\" | __oc_n) + (\"b\" | __oc_n)) * 3" },
    { "\"a\" + \"b\"", "\"a\" + \"b\"" },
    { ".a * \"x\"", ".a * (\"x\" | __oc_n)" },
  }
  for _, c in ipairs(cases) do
    it(("rewrites %q"):format(c[1]), function()
      assert.are.equal(c[2], code(c[1]))
    end)
  end

  it("gives the values jq 1.7.1 gives", function()
    assert.are.equal("pos", H.field("if .n > 0 then \"pos\" end", { id = "i", n = 1 }))
    assert.are.same({ id = "i", n = -1 }, H.field("if .n > 0 then \"pos\" end", { id = "i", n = -1 }))
    assert.are.equal(2, H.field(".a.[1]", { id = "i", a = { 1, 2 } }))
    assert.are.equal(2, H.field("1 |\n$__loc__.line"))
    assert.are.same({ 2, 3 }, H.field(".a[1:]", { id = "i", a = { 1, 2, 3 } }))
    assert.are.same({ 1, 2, 3 }, H.field(".a[nan:]", { id = "i", a = { 1, 2, 3 } }))
    assert.are.same({ 1, 3 }, H.field(".a | del(.[1:2])", { id = "i", a = { 1, 2, 3 } }))
    assert.are.same({ 1, 9, 3 }, H.field(".a | .[1:2] = [9]", { id = "i", a = { 1, 2, 3 } }))
  end)
end)
