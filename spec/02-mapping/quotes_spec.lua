-- Single-quoted string literals (Ocean's convention) through a real
-- lexer (src/jq/jqlex.c) instead of Ocean's regular expressions.
local H = dofile("spec/02-mapping/helper.lua")
local core = require "ocean.core"

local function rewrite(expr)
  local r, err = core.mapping_analyze(expr)
  if not r then return nil, err end
  return r.code
end

describe("single-quoted literals", function()
  local cases = {
    { "'x'", '"x"' },
    { ".status == 'active'", '.status == "active"' },
    { "[.a, 'x']", '[.a, "x"]' },                       -- Ocean: [.a, "x'] (fails)
    { "{a: 'x'}", '{a: "x"}' },
    { "'don't'", [["don't"]] },                         -- apostrophe in a word
    { "'it's a test'", [["it's a test"]] },
    { "'x'y'", [["x'y"]] },                               -- ' before a letter stays
    { "'say \"hi\"'", [["say \"hi\""]] },
    { [['a\'b']], [["a'b"]] },
    { [['tab\tnew\nline\\']], [["tab\tnew\nline\\"]] },
    { "'x' + 'y'", '"x" + "y"' },
    { "'x'|ascii_upcase", '"x"|ascii_upcase' },
    { "''", '""' },
    { [['\(.a)-\(.b)']], [["\(.a)-\(.b)"]] },
    { [['\(.a + '!')']], [["\(.a + "!")"]] },            -- literal inside interpolation
    { [["it's"]], [["it's"]] },                          -- inside a double-quoted string
    { [["a\"'b'"]], [["a\"'b'"]] },
    { [["\(.a + 'x') and 'y'"]], [["\(.a + "x") and 'y'"]] },
    { [["\("nested \("deep 'q'")")"]], [["\("nested \("deep 'q'")")"]] },
    { ".a # it's 'a' \"comment\"\n| 'x'", ".a # it's 'a' \"comment\"\n| \"x\"" },
    { "'#not a comment'", '"#not a comment"' },
    { "@base64d 'x'", '@base64d "x"' },
    { ".a as $x | 'v'", '.a as $x | "v"' },
    { "\t'x'\n", '\t"x"\n' },
    { "'é ✓'", '"é ✓"' },
  }
  for _, case in ipairs(cases) do
    it("rewrites " .. case[1], function()
      assert.are.equal(case[2], rewrite(case[1]))
    end)
  end

  local bad = {
    { "'abc", "unterminated single-quoted string literal at line 1, column 1" },
    { "'abc\\'", "unterminated single-quoted string literal at line 1, column 1" },
    { "'a 'b' c'", "unterminated single-quoted string literal at line 1, column 9" },
    { '"abc', "unterminated string literal at line 1, column 1" },
    { '.a + "x\\"', "unterminated string literal at line 1, column 6" },
    { '"\\(.a', "unterminated string interpolation at line 1, column 2" },
    { '"\\(.a"', "unterminated string literal at line 1, column 6" },
    { [['\(.a']], "unterminated single-quoted string literal at line 1, column 6" },
    { "(.a", "'(' is not closed at line 1, column 1" },
    { "[.a, {b: 1}", "'[' is not closed at line 1, column 1" },
    { ".a)", "unexpected ')' at line 1, column 3" },
    { "[.a}", "unexpected '}' at line 1, column 4" },
    { ".a |\n  (.b]", "unexpected ']' at line 2, column 6" },
    { 'import "m" as m; .', "import/include is not allowed in mappings at line 1, column 1" },
    { '. | include "m"; .', "import/include is not allowed in mappings at line 1, column 5" },
    { "import # c\n 'm' as m; .", "import/include is not allowed in mappings at line 1, column 1" },
    { string.rep("(", 300) .. string.rep(")", 300), "brackets nested too deeply at line 1, column 257" },
  }
  for _, case in ipairs(bad) do
    it("refuses " .. case[1]:sub(1, 40), function()
      local code, err = rewrite(case[1])
      assert.is_nil(code)
      assert.are.equal(case[2], err)
    end)
  end

  it("leaves words that only look like keywords alone", function()
    assert.are.equal(".import | .include", rewrite(".import | .include"))
    assert.are.equal("{import: 1}", rewrite("{import: 1}"))
    assert.are.equal("$include", rewrite("$include"))
  end)

  it("never fails badly on any prefix or split of an expression", function()
    local expr = [[.a # c'x"
      | "s\"\(.b + 'q\'' + "r") t" + 'u\(.c)v' + ([.d[]?, {e: 'f'}] | tostring)]]
    for i = 0, #expr do
      for _, piece in ipairs({ expr:sub(1, i), expr:sub(i + 1) }) do
        local code, err = rewrite(piece)
        assert.is_true(type(code) == "string" or type(err) == "string")
      end
    end
    assert.are.equal([[.a # c'x"
      | "s\"\(.b + "q'" + "r") t" + "u\(.c)v" + ([.d[]?, {e: "f"}] | tostring)]],
      rewrite(expr))
  end)

  it("maps Ocean's failing [.a, 'x'] case end to end", function()
    local r = H.parse(H.resource(H.with({ properties = {
      list = "[.a, 'x']", word = "'don't'", quoted = ".name + ' \"q\"'",
    } })), { { id = "i", a = "A", name = "n" } })
    assert.are.same({ list = { "A", "x" }, word = "don't", quoted = 'n "q"' },
                    r.passed[1].properties)
  end)
end)
