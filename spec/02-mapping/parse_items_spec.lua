-- ocean.parse_items: Ocean's mapping semantics (reference §3) with the
-- deliberate fixes listed in DESIGN.md.
local H = dofile("spec/02-mapping/helper.lua")
local ocean, null = H.ocean, H.null
local resource, with, parse, field = H.resource, H.with, H.parse, H.field

describe("parse_items", function()
  describe("field values", function()
    it("takes the first output of every expression", function()
      local r = parse(resource(with({
        title = ".names[]",
        properties = { pair = "1, 2", gen = "range(10)", deep = ".o.p" },
      })), { { id = "a", names = { "x", "y" }, o = { p = true } } })
      assert.are.same({ identifier = "a", blueprint = "bp", title = "x",
                        properties = { pair = 1, gen = 0, deep = true } },
                      r.passed[1])
      assert.are.same({}, r.misconfigured)
    end)

    it("stops a generator after its first output (infinite ones too)", function()
      assert.are.equal(1, (field("repeat(1)")))
      assert.are.equal(0, (field("range(1e9)")))
    end)

    -- expression -> why it is null; every one is reported misconfigured
    local null_cases = {
      { "empty", "no output" },
      { 'error("boom")', "an error" },
      { "error(null)", "error(null) (no output in jq 1.6)" },
      { ".n.x", "Cannot index number" },
      { ".missing", "a legitimate null" },
      { "null", "a literal null" },
      { ".s | tonumber", "a failing builtin" },
      { "input", "no input stream" },
    }
    for _, case in ipairs(null_cases) do
      it("gives null and reports the field for " .. case[2], function()
        local r = parse(resource(with({ properties = { x = case[1] } })),
                        { { id = "a", n = 5, s = "abc" } })
        assert.are.equal(null, r.passed[1].properties.x)
        assert.are.same({ ["properties.x"] = case[1] }, r.misconfigured)
      end)
    end

    it("reports each misconfigured path once per batch, not per item", function()
      local r = parse(resource(with({ title = ".t", icon = ".i" })),
                      { { id = "a" }, { id = "b", t = "T" } })
      assert.are.same({ title = ".t", icon = ".i" }, r.misconfigured)
      assert.are.equal(2, #r.passed)
    end)

    it("puts only the keys the mapping names into entities", function()
      local r = parse(resource({ identifier = ".id", blueprint = '"bp"',
                                 properties = {} }), { { id = "a", title = "t" } })
      assert.are.same({ identifier = "a", blueprint = "bp", properties = {} },
                      r.passed[1])
      assert.is_nil(r.passed[1].title)
      assert.is_nil(r.passed[1].relations)
      assert.is_nil(r.passed[1].team)
    end)

    it("maps title, icon, team, properties and relations", function()
      local r = parse(resource(with({
        title = ".name", icon = '"Github"', team = ".team",
        properties = { url = ".url" }, relations = { owner = ".owner" },
      })), { { id = "a", name = "A", team = { "t1" }, url = "u", owner = "o" } })
      assert.are.same({ identifier = "a", blueprint = "bp", title = "A",
                        icon = "Github", team = { "t1" },
                        properties = { url = "u" },
                        relations = { owner = "o" } }, r.passed[1])
    end)

    it("does not coerce the identifier's type", function()
      local r = parse(resource(with()), { { id = 5 } })
      assert.are.equal(5, r.passed[1].identifier)
      assert.are.equal("number", type(r.passed[1].identifier))
    end)

    it("returns JSON null as ocean.null and arrays that stay arrays", function()
      local v = field(".v", { id = "a", v = { a = null, b = {} } })
      assert.are.equal(null, v.a)
      assert.is_true(H.json.is_array(field(".v", { id = "a", v = H.json.array() })))
      assert.are.equal("[]", H.json.encode(field("[]")))
      assert.are.equal("{}", H.json.encode(field("{}")))
    end)

    it("refuses field values nested deeper than 256 levels", function()
      local v, misconfigured = field("reduce range(300) as $i (1; [.])")
      assert.are.equal(null, v)
      assert.is_true(misconfigured)
      assert.are.equal(1, field("reduce range(100) as $i (1; [.]) | flatten[0]"))
    end)
  end)

  describe("identifier and blueprint", function()
    -- Ocean keeps an entity only when both are truthy (Python): the others
    -- are dropped, which we report.
    local cases = {
      { { id = null }, "identifier is null", true },
      { { }, "identifier is null", true },
      { { id = "" }, 'identifier is ""', false },
      { { id = 0 }, "identifier is 0", false },
      { { id = false }, "identifier is false", false },
      { { id = H.json.array() }, "identifier is []", false },
      { { id = {} }, "identifier is {}", false },
    }
    for _, case in ipairs(cases) do
      it("drops an entity whose " .. case[2], function()
        local r = parse(resource(with()), { case[1] })
        assert.are.same({}, r.passed)
        assert.are.same({ { index = 1, reason = case[2] } }, r.dropped)
        assert.are.equal(case[3], r.misconfigured.identifier == ".id")
      end)
    end

    it("names both when both are missing", function()
      local r = parse(resource({ identifier = ".id", blueprint = ".bp" }),
                      { { id = "a", bp = "b" }, { x = 1 } })
      assert.are.equal(1, #r.passed)
      assert.are.same({ { index = 2, reason = "identifier is null, blueprint is null" } },
                      r.dropped)
      assert.are.same({ identifier = ".id", blueprint = ".bp" }, r.misconfigured)
    end)

    it("keeps a search-query identifier (an object)", function()
      local r = parse(resource(with({ identifier = {
        combinator = '"and"',
        rules = { { property = '"$title"', operator = '"="', value = ".name" } },
      } })), { { name = "svc" } })
      assert.are.same({ combinator = "and", rules = {
        { property = "$title", operator = "=", value = "svc" } } },
        r.passed[1].identifier)
    end)
  end)

  describe("selector", function()
    local cases = {
      { true, nil },
      { false, nil },
      { "yes", 'selector must produce a boolean, got "yes"' },
      { null, "selector must produce a boolean, got null" },
      { 1, "selector must produce a boolean, got 1" },
      { { 1 }, "selector must produce a boolean, got an array" },
      { { a = 1 }, "selector must produce a boolean, got an object" },
    }
    for _, case in ipairs(cases) do
      it("handles a selector giving " .. H.json.encode(case[1]), function()
        local r = parse(resource(with(), { selector = ".s" }),
                        { { id = "a", s = case[1] } })
        if case[2] then
          assert.are.same({ { index = 1, message = case[2] } }, r.errors)
          assert.are.same({}, r.passed)
        else
          assert.are.same({}, r.errors)
          assert.are.equal(case[1] and 1 or 0, #r.passed)
        end
        assert.are.same({}, r.failed)
      end)
    end

    it("makes an item whose selector errors or is empty an error", function()
      local r = parse(resource(with(), { selector = ".s | error" }),
                      { { id = "a", s = "bad" } })
      assert.are.same({ { index = 1, message =
        "selector must produce a boolean, got an error: bad" } }, r.errors)
      r = parse(resource(with(), { selector = "empty" }), { { id = "a" } })
      assert.are.same({ { index = 1, message =
        "selector must produce a boolean, got no output" } }, r.errors)
    end)

    it("takes the selector's first output", function()
      local r = parse(resource(with(), { selector = "true, false" }), { { id = "a" } })
      assert.are.equal(1, #r.passed)
    end)

    it("with parse_all, puts selector-false entities in failed", function()
      local items = { { id = "a", s = true }, { id = "b", s = false },
                      { id = "c", s = 3 } }
      local r = parse(resource(with(), { selector = ".s" }), items,
                      { parse_all = true })
      assert.are.same({ { identifier = "a", blueprint = "bp" } }, r.passed)
      assert.are.same({ { identifier = "b", blueprint = "bp" } }, r.failed)
      assert.are.same({ { index = 3, message =
        "selector must produce a boolean, got 3" } }, r.errors)
    end)

    it("does not evaluate fields (nor report them) when the selector is false", function()
      local r = parse(resource(with({ title = ".missing" }), { selector = "false" }),
                      { { id = "a" } })
      assert.are.same({}, r.misconfigured)
      assert.are.same({}, r.dropped)
    end)

    it("accepts a YAML boolean as the selector", function()
      local res = resource(with())
      res.selector.query = true
      assert.are.equal(1, #parse(res, { { id = "a" } }).passed)
      res.selector.query = false
      assert.are.equal(0, #parse(res, { { id = "a" } }).passed)
    end)
  end)

  describe("search queries", function()
    it("evaluates every leaf of identifier, team and relation queries", function()
      local query = { combinator = '"and"', rules = {
        { property = '"member_logins"', operator = '"contains"', value = ".login" },
        { combinator = '"or"', rules = {
          { property = '"x"', operator = '"="', value = ".missing" } } },
      } }
      local r = parse(resource(with({ team = query, relations = { user = query } })),
                      { { id = "a", login = "me" } })
      local expected = { combinator = "and", rules = {
        { property = "member_logins", operator = "contains", value = "me" },
        { combinator = "or", rules = { { property = "x", operator = "=", value = null } } },
      } }
      assert.are.same(expected, r.passed[1].team)
      assert.are.same(expected, r.passed[1].relations.user)
      assert.are.same({ ["team.rules.rules.value"] = ".missing",
                        ["relations.user.rules.rules.value"] = ".missing" },
                      r.misconfigured)
    end)

    it("names misconfigured query leaves without list indexes", function()
      local r = parse(resource(with({ identifier = { combinator = '"and"',
        rules = { { property = '"p"', operator = '"="', value = ".nope" } } } })),
        { { id = "a" } })
      assert.are.same({ ["identifier.rules.value"] = ".nope" }, r.misconfigured)
    end)
  end)

  describe("YAML scalars", function()
    it("uses non-string leaves as their JSON text", function()
      local r = parse(resource(with({ properties = {
        t = true, f = false, n = 5, d = 2.5, z = null } })), { { id = "a" } })
      assert.are.same({ t = true, f = false, n = 5, d = 2.5, z = null },
                      r.passed[1].properties)
      -- a null leaf is the expression `null`: present, null, reported
      assert.are.same({ ["properties.z"] = "null" }, r.misconfigured)
    end)

    it("keeps an explicit null title as a null title", function()
      local r = parse(resource(with({ title = null })), { { id = "a" } })
      assert.are.equal(null, r.passed[1].title)
      assert.are.same({ title = "null" }, r.misconfigured)
    end)
  end)

  describe("jq environment", function()
    it("hides the environment by default", function()
      assert.are.equal(null, (field("$ENV.HOME")))
      assert.are.equal(null, (field("env.HOME")))
    end)

    it("shows it with allow_env", function()
      local home = os.getenv("HOME")
      assert.are.equal(home, (field("$ENV.HOME", nil, { allow_env = true })))
      assert.are.equal(home, (field("env.HOME", nil, { allow_env = true })))
    end)

    it("follows OCEAN__ALLOW_ENVIRONMENT_VARIABLES_JQ_ACCESS when allow_env is not given", function()
      local script = [[
        local ocean = require "ocean"
        local r = ocean.parse_items({kind = "k", selector = {query = "true"},
          port = {entity = {mappings = {identifier = ".id", blueprint = '"b"',
          properties = {h = "$ENV.HOME"}}}}}, {{id = "a"}})
        local h = r.passed[1].properties.h
        io.write(h == ocean.null and "null" or tostring(h))]]
      local rt = jit and "luajit" or "lua5.4"    -- this interpreter
      local function run(value)
        local p = io.popen("OCEAN__ALLOW_ENVIRONMENT_VARIABLES_JQ_ACCESS=" .. value
                           .. " " .. rt .. " -e '" .. script:gsub("'", "'\\''") .. "' 2>&1")
        local out = p:read("*a")
        p:close()
        return out
      end
      assert.are.equal(os.getenv("HOME"), run("true"))
      assert.are.equal("null", run("false"))
      assert.are.equal("null", run(""))
    end)

    it("refuses import and include without crashing", function()
      for _, expr in ipairs({ 'import "foo" as f; f::x', 'include "foo"; 1',
                              'import "a" as $d; $d' }) do
        local r, err = ocean.parse_items(resource(with({ properties = { x = expr } })), {})
        assert.is_nil(r)
        assert.are.equal("kind 'k': properties.x: invalid jq expression '" .. expr
          .. "': import/include is not allowed in mappings at line 1, column 1", err)
      end
      -- the word alone is jq's business (a syntax error), still no crash
      local r, err = ocean.parse_items(resource(with({ properties = { x = ".a | import" } })), {})
      assert.is_nil(r)
      assert.are.equal("kind 'k': properties.x: invalid jq expression '.a | import': "
        .. "syntax error, unexpected import (Unix shell quoting issues?)", err)
      assert.are.equal("w", (field(".import", { id = "a", import = "w" })))
    end)

    it("makes halt and halt_error fail the item, and goes on", function()
      local res = resource(with({ properties = { x = 'if .h then ("bye" | halt_error) else 1 end' } }))
      local r = parse(res, { { id = "a", h = true }, { id = "b" } })
      assert.are.same({ { index = 1, message =
        "halt/halt_error in a mapping expression (exit code 5): bye" } }, r.errors)
      assert.are.equal("b", r.passed[1].identifier)
      r = parse(resource(with(), { selector = "halt" }), { { id = "a" } })
      assert.are.same({ { index = 1, message =
        "halt/halt_error in a mapping expression (exit code 0)" } }, r.errors)
    end)

    it("has no input stream", function()
      assert.are.same(H.json.array(), field("[inputs]"))
      local v, misconfigured = field("input")
      assert.are.equal(null, v)
      assert.is_true(misconfigured)
      assert.are.equal("input is not available in mappings",
                       field('try input catch .'))
    end)

    it("provides jq 1.7 builtins missing from 1.6 and fixes limit(0; f)", function()
      assert.are.same({ a = 1 }, field("{a: 1, b: 2} | pick(.a)"))
      assert.are.equal(3, field("-3 | abs"))
      assert.are.same({ 1 }, field("1 | toarray"))
      assert.are.equal("x", field('"  x " | trim'))
      assert.are.equal("x ", field('"  x " | ltrim'))
      assert.are.equal("  x", field('"  x " | rtrim'))
      -- jq 1.8's answer: does libjq keep number literals (1.7 with decNumber)
      local decnum = field("100000000000000000001 | tojson") == "100000000000000000001"
      assert.are.equal(decnum, field("have_decnum"))
      assert.are.equal(decnum, field("have_literal_numbers"))
      if not (os.getenv("OCEAN_TEST_VARIANT") or ""):match("jq17") then
        assert.is_false(decnum)
      end
      assert.are.same(H.json.array(), field("[limit(0; 1, 2)]"))
      assert.are.same({ 1, 2 }, field("[limit(2; 1, 2, 3)]"))
      assert.are.same({ 1, 2 }, field("[limit(-1; 1, 2)]"))
      assert.are.equal(1, field("1 | debug(\"msg\")"))
    end)

    it("accepts def inside an expression", function()
      assert.are.equal(4, field("def twice: . * 2; .n | twice", { id = "a", n = 2 }))
    end)

    it("keeps its first output when a user's try meets the next break (jq 1.6)", function()
      -- libjq 1.6's try also catches errors raised after its body produced
      -- a value; `first((try [f] catch ...), ...)` would yield twice here.
      assert.are.equal(1, field("(try (1, 2) catch 3), 4"))
      assert.are.equal("v", field(".a?", { id = "i", a = "v" }))
      assert.are.same({ "a", "b" }, field('[.x[]? | .n]', { id = "i", x = { { n = "a" }, { n = "b" } } }))
    end)
  end)

  describe("errors in expressions", function()
    local cases = {
      { { properties = { url = ".a |" } }, "properties.url", ".a |",
        "syntax error, unexpected end of file (Unix shell quoting issues?)" },
      { { title = "foo(1)" }, "title", "foo(1)", "foo/1 is not defined" },
      { { relations = { r = "$nope" } }, "relations.r", "$nope", "$nope is not defined" },
      { { properties = { s = '"abc' } }, "properties.s", '"abc',
        "unterminated string literal at line 1, column 1" },
      { { properties = { s = "(.a" } }, "properties.s", "(.a",
        "'(' is not closed at line 1, column 1" },
      { { properties = { s = ".a)" } }, "properties.s", ".a)",
        "unexpected ')' at line 1, column 3" },
      { { properties = { s = "" } }, "properties.s", "", "empty expression" },
      { { team = { rules = { { value = ".a[" } } } }, "team.rules.value", ".a[",
        "'[' is not closed at line 1, column 3" },
      { { properties = { s = ".a |\n# trailing comment\n" } }, "properties.s",
        ".a |\n# trailing comment\n",
        "syntax error, unexpected end of file (Unix shell quoting issues?)" },
    }
    for _, case in ipairs(cases) do
      it("fails the whole resource naming " .. case[2], function()
        local r, err = ocean.parse_items(resource(with(case[1]), { kind = "repository" }),
                                         { { id = "a" } })
        assert.is_nil(r)
        assert.are.equal("kind 'repository': " .. case[2] .. ": invalid jq expression '"
                         .. case[3] .. "': " .. case[4], err)
      end)
    end

    it("names the selector and itemsToParse", function()
      local _, err = ocean.parse_items(resource(with(), { selector = ".a ==" }), {})
      assert.are.equal("kind 'k': selector.query: invalid jq expression '.a ==': "
        .. "syntax error, unexpected end of file (Unix shell quoting issues?)", err)
      _, err = ocean.parse_items(resource(with(), { port = { itemsToParse = "nope" } }), {})
      assert.are.equal("kind 'k': port.itemsToParse: invalid jq expression 'nope': "
        .. "nope/0 is not defined", err)
    end)

    it("shortens a long expression in the message", function()
      local expr = ".a + " .. string.rep("1 + ", 100) .. "("
      local _, err = ocean.parse_items(resource(with({ title = expr })), {})
      assert.are.equal("kind 'k': title: invalid jq expression '" .. expr:sub(1, 200)
        .. "...': '(' is not closed at line 1, column 406", err)
    end)

    it("bounds jq error messages it reports", function()
      local r = parse(resource(with(), { selector = 'error("x" * 10000)' }), { { id = "a" } })
      local msg = r.errors[1].message
      assert.are.equal("selector must produce a boolean, got an error: " ..
                       string.rep("x", 300) .. "...", msg)
    end)
  end)

  describe("misuse", function()
    local cases = {
      { "not a table", "resource must be a table, got string" },
      { { selector = { query = "true" } }, "resource.kind must be a string" },
      { { kind = "k", port = { entity = { mappings = with() } } },
        "kind 'k': selector.query is required" },
      { { kind = "k", selector = { query = { 1 } }, port = { entity = { mappings = with() } } },
        "kind 'k': selector.query must be a jq expression (a string), got an array" },
      { { kind = "k", selector = { query = "true" } },
        "kind 'k': port.entity.mappings must be an object with identifier and blueprint" },
      { resource({ blueprint = '"b"' }), "kind 'k': port.entity.mappings.identifier is required" },
      { resource({ identifier = ".id" }), "kind 'k': port.entity.mappings.blueprint is required" },
      { resource({ identifier = null, blueprint = '"b"' }),
        "kind 'k': port.entity.mappings.identifier is required" },
      { resource(with({ properties = "x" })),
        "kind 'k': port.entity.mappings.properties must be an object" },
      { resource(with({ relations = { ".a" } })),
        "kind 'k': port.entity.mappings.relations must be an object" },
      { resource(with({ properties = { p = { a = ".a" } } })),
        "kind 'k': port.entity.mappings.properties.p must be a jq expression (a string), got an object" },
      { resource(with({ title = { ".a" } })),
        "kind 'k': port.entity.mappings.title must be a jq expression (a string), got an array" },
      { resource(with(), { port = { itemsToParseName = 5 } }),
        "kind 'k': port.itemsToParseName must be a string" },
      { resource(with(), { port = { itemsToParseTopLevelTransform = "yes" } }),
        "kind 'k': port.itemsToParseTopLevelTransform must be a boolean" },
      { { kind = "k", selector = { query = "true" }, f = print,
          port = { entity = { mappings = with() } } },
        "invalid resource: json encode: cannot encode a function at $.f" },
    }
    for _, case in ipairs(cases) do
      it("raises: " .. case[2], function()
        local ok, err = pcall(ocean.parse_items, case[1], {})
        assert.is_false(ok)
        assert.are.equal(case[2], err)
      end)
    end

    it("raises at the caller's line", function()
      local ok, err = pcall(function() ocean.parse_items(resource({ identifier = ".id" }), {}) end)
      assert.is_false(ok)
      assert.matches("parse_items_spec.lua:%d+: kind 'k': port.entity.mappings.blueprint is required", err)
    end)

    it("raises on items that are neither a list nor a JSON text", function()
      local ok, err = pcall(ocean.parse_items, resource(with()), 5)
      assert.is_false(ok)
      assert.are.equal("items must be a list of raw items or a JSON text, got number", err)
      ok, err = pcall(ocean.parse_items, resource(with()), { id = "a" })
      assert.is_false(ok)
      assert.matches("items must be a list of raw items or a JSON text %(got an object: wrap one item in a list%)", err)
    end)

    it("raises on unknown options", function()
      local ok, err = pcall(ocean.parse_items, resource(with()), {}, { parseAll = true })
      assert.is_false(ok)
      assert.are.equal("unknown option 'parseAll'", err)
    end)
  end)

  describe("raw items", function()
    local cases = {
      { 5, "raw item is a number, expected an object" },
      { "5", "raw item is a number, expected an object" },
      { '"s"', "raw item is a string, expected an object" },
      { "[1]", "raw item is an array, expected an object" },
      { H.json.array({ 1 }), "raw item is an array, expected an object" },
      { true, "raw item is a boolean, expected an object" },
      { null, "raw item is null, expected an object" },
      { print, "cannot convert a function to JSON at $" },
      { { id = "a", f = print }, "cannot convert a function to JSON at $.f" },
      { "{", "invalid JSON at line 1, column 2: object key (a string) expected (at end of input)" },
      { '{"id": "a",}', "invalid JSON at line 1, column 12: object key (a string) expected (near '}')" },
      { '{"id": "a"} x', "invalid JSON at line 1, column 13: unexpected data after the JSON value" },
    }
    for _, case in ipairs(cases) do
      it("reports an item " .. tostring(case[2]), function()
        local res = resource(with({ properties = { f = ".f | type" } }))
        local r = parse(res, { { id = "ok" }, case[1], { id = "ok2" } })
        assert.are.same({ { index = 2, message = case[2] } }, r.errors)
        assert.are.equal(2, #r.passed)
      end)
    end

    it("never echoes a big invalid input", function()
      local bad = '{"id": "' .. string.rep("x", 100000) .. '", oops}'
      local r = parse(resource(with()), { bad })
      local msg = r.errors[1].message
      assert.is_true(#msg < 200, msg)
      assert.matches("^invalid JSON at line 1, column 100012: object key %(a string%) expected %(near 'oops}'%)$", msg)
      r = parse(resource(with()), bad)
      assert.is_true(#r.errors[1].message < 200)
    end)

    it("bounds nesting at 200 levels", function()
      local deep = string.rep("[", 250) .. string.rep("]", 250)
      local r = parse(resource(with()), { '{"id": "a", "d": ' .. deep .. "}" })
      assert.matches("^invalid JSON at line 1, column %d+: nesting deeper than 200 levels",
                     r.errors[1].message)
      local t = { id = "a" }
      local cur = t
      for _ = 1, 250 do cur.d = {}; cur = cur.d end
      r = parse(resource(with({ properties = { d = ".d" } })), { t })
      assert.matches("^nesting deeper than 200 levels %(or a cycle%) at %$%.d%.d", r.errors[1].message)
      local ok = '{"id": "a", "d": ' .. string.rep("[", 150) .. string.rep("]", 150) .. "}"
      assert.are.equal(1, #parse(resource(with()), { ok }).passed)
    end)

    it("survives a cycle in a Lua table", function()
      local t = { id = "a" }
      t.self = t
      -- only what the mapping reads is converted...
      local r = parse(resource(with({ properties = { s = ".self.self.id" } })), { t })
      assert.are.equal("a", r.passed[1].properties.s)
      -- ...and reading everything meets the bound
      r = parse(resource(with({ properties = { s = "keys" } })), { t })
      assert.matches("nesting deeper than 200 levels %(or a cycle%) at %$%.self%.self", r.errors[1].message)
    end)

    it("gives the same result for tables, JSON texts, a JSON array and NDJSON", function()
      local res = resource(with({ title = ".name", properties = {
        n = ".n", tags = ".tags", u = ".o.u", none = ".x.y" } }), { selector = ".n > 1" })
      local items = { { id = "a", name = "A", n = 1 },
                      { id = "b", name = "B", n = 2, tags = { "x" }, o = { u = "U" } },
                      { id = "c", n = 3, o = { u = H.json.array() } } }
      local texts, lines = {}, {}
      for i, item in ipairs(items) do
        texts[i] = H.json.encode(item)
        lines[i] = texts[i]
      end
      local want = H.canon(parse(res, items))
      assert.are.equal(want, H.canon(parse(res, texts)))
      assert.are.equal(want, H.canon(parse(res, "[" .. table.concat(lines, ",") .. "]")))
      assert.are.equal(want, H.canon(parse(res, table.concat(lines, "\n"))))
      assert.are.equal(want, H.canon(parse(res, table.concat(lines, "\n") .. "\n")))
    end)

    it("stops a JSON text at its first error, naming the item", function()
      local r = parse(resource(with()), '{"id": "a"}\n{"id": "b"}\n{"id": \n')
      assert.are.equal(2, #r.passed)
      assert.are.same({ { index = 3, message =
        "invalid JSON at line 4, column 1: value expected (at end of input)" } }, r.errors)
      r = parse(resource(with()), '[{"id": "a"}, 5] [1]')
      assert.are.same({ { index = 2, message = "raw item is a number, expected an object" },
                        { index = 3, message =
        "invalid JSON at line 1, column 18: unexpected data after the JSON array (near '[1]')" } },
                      r.errors)
    end)

    it("accepts an empty list and an empty text", function()
      assert.are.same({ passed = {}, failed = {}, errors = {}, dropped = {}, misconfigured = {} },
                      parse(resource(with()), {}))
      assert.are.same({}, parse(resource(with()), "  \n").passed)
      assert.are.same({}, parse(resource(with()), "[]").passed)
    end)
  end)
end)
