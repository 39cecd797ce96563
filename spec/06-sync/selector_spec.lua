-- Declared selector fields (issue 13, deliverable 1's option): the mapping
-- is checked whenever a resync reads it, the error names the field, the
-- declared defaults reach the resync function; `ocean port-app-config
-- schema PATH` prints the JSON Schema.
local ehelp = require "spec.helpers.emulator"
local oh = require "spec.helpers.ocean"
local sail = require "spec.helpers.sail"
local json = require "ocean.json"

local q = ehelp.shell_quote

local BLUEPRINTS = { { identifier = "issue", title = "Issue", schema = { properties = {} } } }

local FIELDS = {
  jql = { type = "string", required = true, description = "JQL filter" },
  includeArchived = { type = "boolean", default = false },
  maxResults = { type = "integer" },
  state = { type = "string", enum = { "open", "closed" } },
  apiQueryParams = { type = "object", properties = {
    status = { type = "array", items = { type = "string" } },
    team = { type = "string", required = true } } },
}

local function resource(selector)
  selector.query = selector.query or "true"
  return { kind = "issue", selector = selector, port = { entity = { mappings = {
    identifier = ".key", title = ".key", blueprint = '"issue"' } } } }
end

describe("declared selector fields", function()
  local emu, ocean

  setup(function() emu = ehelp.start() end)
  teardown(function() ehelp.stop_all() end)

  local function run(selector)
    emu.reset()
    local _
    _, ocean = oh.setup(emu, { blueprints = BLUEPRINTS,
      mapping = { resources = json.array { resource(selector) } } })
    ocean.selector_schema("issue", FIELDS)
    local seen
    ocean.on_resync("issue", function(_, r)
      seen = r.selector
      return { { key = "I-1" } }
    end)
    return ocean.sync_raw_all(), seen
  end

  it("reach the resync function checked, with their declared defaults", function()
    local s, seen = run { jql = "project = X", apiQueryParams = { team = "a", status = { "open" } } }
    assert.is_true(s.ok, json.encode(s.errors))
    assert.are.same({ "project = X", false, "a", "open" },
      { seen.jql, seen.includeArchived, seen.apiQueryParams.team, seen.apiQueryParams.status[1] })
  end)

  local bad = {
    { { jql = 5 }, "selector.jql: expected a string, got a number" },
    { {}, "selector.jql: required, missing" },
    { { jql = "x", maxResults = 2.5 }, "selector.maxResults: expected an integer, got a number" },
    { { jql = "x", state = "gone" }, 'selector.state: "gone" is not one of "open", "closed"' },
    { { jql = "x", includeArchived = "yes" }, "selector.includeArchived: expected a boolean, got a string" },
    { { jql = "x", apiQueryParams = { team = "a", status = { "open", 7 } } },
      "selector.apiQueryParams.status[2]: expected a string, got a number" },
    { { jql = "x", apiQueryParams = { status = { "open" } } },
      "selector.apiQueryParams.team: required, missing" },
    { { jql = "x", apiQueryParams = { "a" } }, "selector.apiQueryParams: expected an object, got an array" },
    -- every wrong field at once, in name order
    { { jql = 42, maxResults = "x", state = "gone" }, "selector.jql: expected a string, got a number; "
      .. "selector.maxResults: expected an integer, got a string; "
      .. 'selector.state: "gone" is not one of "open", "closed"' },
  }
  for _, case in ipairs(bad) do
    it("fail the kind when the mapping breaks them, naming the field: " .. case[2], function()
      local s, seen = run(case[1])
      assert.is_false(s.ok)
      assert.is_nil(seen)
      assert.are.same({ "kind 'issue': " .. case[2] }, s.errors)
      assert.is_true(s.deletion.skipped)
    end)
  end

  it("are declared as documented, or the call raises naming the field", function()
    ocean = require "ocean"
    for _, case in ipairs {
      { { jql = { type = "str" } }, "selector.jql: type must be string, number, integer, boolean, "
        .. "object or array, got str" },
      { { jql = { type = "string", requird = true } }, "selector.jql: unknown key 'requird'" },
      { { query = { type = "string" } }, "'query' is the selector's own jq query" },
      { { a = { type = "array", items = { type = "x" } } }, "selector.a[]: type must be" },
      { { a = { type = "string", enum = {} } }, "selector.a: enum must be a non-empty list" },
      -- a default must be a value of the field's type and enum
      { { maxPages = { type = "integer", default = "lots" } },
        'selector.maxPages (default): expected an integer, got a string' },
      { { s = { type = "string", enum = { "a", "b" }, default = "c" } },
        'selector.s (default): "c" is not one of "a", "b"' },
      { { o = { type = "object", properties = { n = { type = "number", default = true } } } },
        "selector.o.n (default): expected a number, got a boolean" },
    } do
      local ok, err = pcall(ocean.selector_schema, "issue", case[1])
      assert.is_false(ok)
      assert.truthy(err:find("selector_schema: kind 'issue': " .. case[2], 1, true), err)
      assert.is_nil(err:find("traceback", 1, true), err)
    end
    -- a good default is fine
    ocean.selector_schema("issue", { n = { type = "integer", default = 5 },
                                     e = { type = "string", enum = { "a" }, default = "a" } })
  end)
end)

describe("ocean port-app-config schema", function()
  local dir

  setup(function()
    dir = ehelp.tmpdir()
    os.execute("mkdir -p " .. q(dir .. "/.port"))
    local f = assert(io.open(dir .. "/.port/spec.yaml", "w"))
    f:write("type: jira-like\nversion: 1.0.0\n")
    f:close()
    f = assert(io.open(dir .. "/main.lua", "w"))
    f:write([[
local ocean = require "ocean"
ocean.selector_schema("issue", {
  jql = { type = "string", required = true, description = "JQL filter" },
  includeArchived = { type = "boolean", default = false },
  labels = { type = "array", items = { type = "string" } },
})
ocean.on_resync("issue", function() return {} end)
ocean.on_resync("project", function() return {} end)
]])
    f:close()
  end)
  teardown(function() os.execute("rm -rf " .. q(dir)) end)

  it("prints the JSON Schema of the mapping, with the declared selector fields", function()
    local r = sail.run({ "port-app-config", "schema", dir }, {})
    assert.are.equal(0, r.rc, r.err)
    local s = assert(json.decode(r.out))
    assert.are.same({ "http://json-schema.org/draft-07/schema#", "port app config of jira-like",
                      { "resources" } }, { s["$schema"], s.title, s.required })
    local any = s.properties.resources.items.anyOf
    assert.are.same({ "issue", "project" }, { any[1].properties.kind.const, any[2].properties.kind.const })
    local sel = any[1].properties.selector
    assert.are.same({ "jql", "query" }, sel.required)
    assert.are.same({ type = "string", description = "JQL filter" }, sel.properties.jql)
    assert.are.same({ type = "boolean", default = false }, sel.properties.includeArchived)
    assert.are.same({ type = "array", items = { type = "string" } }, sel.properties.labels)
    assert.are.same({ "query" }, any[2].properties.selector.required)
    assert.are.equal("#/definitions/port", any[1].properties.port["$ref"])
    assert.are.same({ "identifier", "blueprint" }, s.definitions.port.properties.entity.properties
      .mappings.required)
  end)

  it("allows any kind for an integration with a resync function for every kind", function()
    local d = ehelp.tmpdir()
    local f = assert(io.open(d .. "/main.lua", "w"))
    f:write('local ocean = require "ocean"\nocean.on_resync(function(kind) return {} end)\n')
    f:close()
    local r = sail.run({ "port-app-config", "schema", d }, {})
    assert.are.equal(0, r.rc, r.err)
    local any = assert(json.decode(r.out)).properties.resources.items.anyOf
    assert.are.equal(1, #any)      -- never an empty anyOf (which no resource matches)
    assert.are.same({ type = "string" }, any[1].properties.kind)
    assert.are.same({ "query" }, any[1].properties.selector.required)
    -- with declared kinds too, the catch-all still allows the others
    f = assert(io.open(d .. "/main.lua", "a"))
    f:write('ocean.on_resync("issue", function() return {} end)\n')
    f:close()
    r = sail.run({ "port-app-config", "schema", d }, {})
    any = assert(json.decode(r.out)).properties.resources.items.anyOf
    assert.are.same({ { type = "string" }, { const = "issue" } },
      { any[1].properties.kind, any[2].properties.kind })
    os.execute("rm -rf " .. q(d))
  end)

  it("says a wrong declaration in main.lua without a Lua traceback, naming kind and field",
    function()
      local d = ehelp.tmpdir()
      local f = assert(io.open(d .. "/main.lua", "w"))
      f:write('local ocean = require "ocean"\n'
        .. 'ocean.selector_schema("book", { maxPages = { type = "int" } })\n')
      f:close()
      local r = sail.run({ "port-app-config", "schema", d }, {})
      assert.are.equal(1, r.rc)
      assert.are.equal("ocean port-app-config: main.lua failed: " .. d .. "/main.lua:2: "
        .. "selector_schema: kind 'book': selector.maxPages: type must be string, number, "
        .. "integer, boolean, object or array, got int\n", r.err)
      -- a plain bug keeps its traceback
      f = assert(io.open(d .. "/main.lua", "w"))
      f:write('local x = nil\nreturn x.y\n')
      f:close()
      r = sail.run({ "port-app-config", "schema", d }, {})
      assert.are.equal(1, r.rc)
      assert.truthy(r.err:find("stack traceback", 1, true), r.err)
      os.execute("rm -rf " .. q(d))
    end)

  -- ocean sail, and any API misuse error: the integration's file:line and
  -- the message, one line; a traceback for a crash, and at DEBUG
  describe("main.lua's load errors at ocean sail", function()
    local d
    before_each(function() d = ehelp.tmpdir() end)
    after_each(function() os.execute("rm -rf " .. q(d)) end)

    local ENV = { OCEAN__PORT__CLIENT_ID = "x", OCEAN__PORT__CLIENT_SECRET = "y",
                  OCEAN__PORT__BASE_URL = "http://127.0.0.1:9", OCEAN__INTEGRATION__TYPE = "spec" }

    local function sail_main(src, env)
      os.execute("mkdir -p " .. q(d .. "/.port"))
      local f = assert(io.open(d .. "/.port/spec.yaml", "w"))
      f:write("type: spec\n")
      f:close()
      f = assert(io.open(d .. "/main.lua", "w"))
      f:write(src)
      f:close()
      local e = {}
      for k, v in pairs(ENV) do e[k] = v end
      for k, v in pairs(env or {}) do e[k] = v end
      return sail.run({ "sail", d, "--once" }, e)
    end

    local PROC = 'local ocean = require "ocean"\n\n'
      .. 'ocean.add_webhook_processor("/hook", {\n'
      .. '  should_process_event = function() return true end,\n'
      .. '  get_matching_kinds = function() return { "x" } end,\n'
      .. '  authenticate = function() return true end,\n'
      .. '  validate_payload = function() return true end,\n'
      .. '})\n'

    local cases = {
      { "a processor without handle_event", PROC, 3, "add_webhook_processor(/hook): the processor has "
        .. "no function handle_event (it needs should_process_event, get_matching_kinds, authenticate, "
        .. "validate_payload, handle_event)" },
      { "a route without a handler", 'local ocean = require "ocean"\nocean.router.post("/x", 5)\n', 2, nil },
      { "the integration's own error()", 'local ocean = require "ocean"\n\nerror("no API token given")\n',
        3, "no API token given" },
    }
    for _, c in ipairs(cases) do
      it("says " .. c[1] .. " at its line, one line, no traceback", function()
        local r = sail_main(c[2])
        assert.are.equal(1, r.rc)
        local head = "ocean sail: main.lua failed: " .. d .. "/main.lua:" .. c[3] .. ": "
        if c[4] then
          assert.are.equal(head .. c[4] .. "\n", r.err)
        else
          assert.are.equal(head, r.err:sub(1, #head), r.err)
          assert.are.equal(1, select(2, r.err:gsub("\n", "")), r.err)
        end
        assert.is_nil(r.err:find("traceback", 1, true))
      end)
    end

    it("keeps the traceback at APPLICATION__LOG_LEVEL=DEBUG", function()
      local r = sail_main(PROC, { APPLICATION__LOG_LEVEL = "DEBUG" })
      assert.are.equal(1, r.rc)
      assert.truthy(r.err:find("no function handle_event", 1, true), r.err)
      assert.truthy(r.err:find("stack traceback", 1, true), r.err)
    end)

    it("keeps the traceback of a crash inside lua-ocean", function()
      local r = sail_main('local ocean = require "ocean"\nrequire("ocean.integration").status_of(nil)\n')
      assert.are.equal(1, r.rc)
      assert.truthy(r.err:find("ocean/integration.lua:%d+: attempt to index"), r.err)
      assert.truthy(r.err:find("stack traceback", 1, true), r.err)
      assert.truthy(r.err:find(d .. "/main.lua:2: in main chunk", 1, true), r.err)
    end)
  end)

  it("says how to use it, and fails on a folder without main.lua", function()
    local r = sail.run({ "port-app-config", "--help" }, {})
    assert.are.equal(0, r.rc)
    assert.truthy(r.out:find("^usage: ocean port%-app%-config schema %[PATH%]"), r.out)
    r = sail.run({ "port-app-config", "scheme" }, {})
    assert.are.equal(2, r.rc)
    r = sail.run({ "port-app-config", "schema", dir .. "/nowhere" }, {})
    assert.are.same({ 1, "" }, { r.rc, r.out })
    assert.truthy(r.err:find("^ocean port%-app%-config: no main.lua in "), r.err)
  end)
end)
