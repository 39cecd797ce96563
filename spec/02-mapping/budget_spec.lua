-- No hang: every item is mapped under a wall-clock limit and a memory cap
-- (time_limit / memory_limit, OCEAN__MAPPING_TIME_LIMIT /
-- OCEAN__MAPPING_MEMORY_LIMIT). A breach fails the item with a message
-- naming the field and the limit (its kind then fails: nothing deleted);
-- the next items are mapped as usual. A pending SIGTERM/SIGINT stops a
-- runaway expression at once; libjq's out-of-memory abort is caught.
local H = dofile("spec/02-mapping/helper.lua")
local mapping = require "ocean.mapping"
local null = H.null

local RT = jit and "luajit" or "lua5.4"
local ENV = ("LUA_PATH=%q LUA_CPATH=%q"):format(package.path, package.cpath)

local function with_field(expr, extra)
  return H.resource(H.with({ properties = { x = expr, ok = ".id" } }), extra)
end

-- Run a Lua script in a child process; returns its output and exit code.
local function child(script, shell_prefix)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(script)
  f:close()
  local p = io.popen(("%s%s %s %s 2>&1; echo \"rc=$?\""):format(shell_prefix or "", ENV, RT, path))
  local out = p:read("*a")
  p:close()
  os.remove(path)
  return out
end

describe("the evaluation budget", function()
  local runaways = {
    "def f: f; f",
    "last(range(1e15))",
    "until(false; .)",
    "[limit(1e12; repeat(1))] | length",
    "[.id | splits(\"x\")] | until(false; .)",
  }
  for _, expr in ipairs(runaways) do
    it("stops `" .. expr .. "` at the time limit, and maps the next items", function()
      local r = H.parse(with_field(expr), { { id = "a" }, "{\"id\": \"b\"}" }, { time_limit = 0.4 })
      assert.are.same({
        { index = 1, message = "properties.x: the mapping expression exceeded the time limit (0.4 s)" },
        { index = 2, message = "properties.x: the mapping expression exceeded the time limit (0.4 s)" },
      }, r.errors)
      assert.are.same({}, r.passed)
    end)
  end

  it("names the selector and itemsToParse when they run away", function()
    local r = H.parse(H.resource(H.with(), { selector = "def f: f; f" }), { { id = "a" } },
                      { time_limit = 0.3 })
    assert.are.same({ { index = 1, message =
      "selector.query: the mapping expression exceeded the time limit (0.3 s)" } }, r.errors)
    r = H.parse(H.resource({ identifier = ".item", blueprint = '"b"' },
                           { port = { itemsToParse = "[range(1e15)]" } }), { { id = "a" } },
                { time_limit = 0.3 })
    assert.are.same(1, #r.errors)
    assert.matches("^port%.itemsToParse: the mapping expression exceeded the (%a+) limit", r.errors[1].message)
  end)

  it("stops a growing value at the memory limit #slow", function()
    for _, expr in ipairs({ "[range(1e12)]", "reduce range(1e12) as $i ([]; . + [$i])",
                            "[repeat(\"x\" * 1000)] | length" }) do
      local r = H.parse(with_field(expr), { { id = "a" } }, { time_limit = 60, memory_limit = 48 })
      assert.are.same({ { index = 1, message =
        "properties.x: the mapping expression exceeded the memory limit (48 MiB)" } }, r.errors, expr)
    end
  end)

  it("lets an item finish when its limits are off (0)", function()
    local r = H.parse(with_field("[range(3000000)] | length"), { { id = "a" } },
                      { time_limit = 0, memory_limit = 0 })
    assert.are.same({}, r.errors)
    assert.are.equal(3000000, r.passed[1].properties.x)
  end)

  it("keeps its compile: a runaway item does not recompile the program", function()
    local core = require "ocean.core"
    local m = assert(mapping.compile(with_field("if .slow then last(range(1e15)) else 1 end"),
                                     { time_limit = 0.2 }))
    local before = core.mapping_stats().compiles
    local r = m:parse({ { id = "a", slow = true }, { id = "b" } })
    assert.are.equal(1, #r.errors)
    assert.are.same({ x = 1, ok = "b" }, r.passed[1].properties)
    assert.are.equal(before, core.mapping_stats().compiles)
    m:close()
  end)

  it("reads the limits from OCEAN__MAPPING_TIME_LIMIT and OCEAN__MAPPING_MEMORY_LIMIT", function()
    local out = child([[
      local ocean = require "ocean"
      local r = ocean.parse_items({kind = "k", selector = {query = "true"},
        port = {entity = {mappings = {identifier = ".id", blueprint = '"b"',
        properties = {x = "last(range(1e15))", y = "[range(1e12)]"}}}}}, {{id = "a"}})
      print(r.errors[1].message)]], "OCEAN__MAPPING_TIME_LIMIT=0.25 OCEAN__MAPPING_MEMORY_LIMIT=32 ")
    assert.are.equal("properties.x: the mapping expression exceeded the time limit (0.25 s)\nrc=0\n", out)
  end)

  it("refuses a limit that is not a number >= 0", function()
    local res = with_field(".id")
    local ok, err = pcall(mapping.compile, res, { time_limit = -1 })
    assert.is_false(ok)
    assert.matches("time_limit must be a number >= 0 %(0: no limit%), got %-1", err)
    ok, err = pcall(mapping.compile, res, { memory_limit = "lots" })
    assert.is_false(ok)
    assert.matches("memory_limit must be a number >= 0 %(0: no limit%), got lots", err)
  end)

  it("stops a runaway item at once when SIGTERM is pending (signals read by a loop)", function()
    -- the way `ocean sail` runs: the loop blocks SIGTERM and reads it from
    -- a signalfd, so only the watchdog can see it while jq runs away
    local out = child([[
      local core = require "ocean.core"
      local loop = core.loop_new {}
      assert(loop:watch_signals { keep_mask = true })
      os.execute("(sleep 0.3; kill -TERM $PPID) >/dev/null 2>&1 &")
      local ocean = require "ocean"
      local t0 = os.time()
      local r = ocean.parse_items({kind = "k", selector = {query = "true"},
        port = {entity = {mappings = {identifier = ".id", blueprint = '"b"',
        properties = {x = "def f: f; f"}}}}}, {{id = "a"}, {id = "b"}}, {time_limit = 0})
      print(r.errors[1].message)
      print(#r.errors, os.time() - t0 < 5)
      local ev = loop:wait(1000)
      print(ev and ev[1] and ev[1].name)]])
    assert.are.equal("properties.x: the mapping expression was interrupted: the process is stopping "
      .. "(SIGTERM, SIGINT, SIGQUIT or SIGHUP)\n2\ttrue\nSIGTERM\nrc=0\n", out)
  end)

  it("stops a runaway item on a pending SIGTERM with no limits at all (0 and 0)", function()
    -- the watchdog runs without a time or memory limit too: it still
    -- watches the stop signals
    local out = child([[
      local core = require "ocean.core"
      local loop = core.loop_new {}
      assert(loop:watch_signals { keep_mask = true })
      os.execute("(sleep 0.3; kill -TERM $PPID) >/dev/null 2>&1 &")
      local ocean = require "ocean"
      local t0 = os.time()
      local r = ocean.parse_items({kind = "k", selector = {query = "true"},
        port = {entity = {mappings = {identifier = ".id", blueprint = '"b"',
        properties = {x = "def f: f; f"}}}}}, {{id = "a"}}, {time_limit = 0, memory_limit = 0})
      print(r.errors[1].message)
      print(os.time() - t0 < 5)]])
    assert.are.equal("properties.x: the mapping expression was interrupted: the process is stopping "
      .. "(SIGTERM, SIGINT, SIGQUIT or SIGHUP)\ntrue\nrc=0\n", out)
  end)

  it("recovers from libjq running out of memory (jv_mem_alloc)", function()
    -- no cap of our own, and an address space too small for the array:
    -- malloc fails inside libjq, which would abort the process
    local out = child([[
      local ocean = require "ocean"
      local res = {kind = "k", selector = {query = "true"},
        port = {entity = {mappings = {identifier = ".id", blueprint = '"b"',
        properties = {x = "if .big then [range(1e10)] | length else .id end"}}}}}
      local r = ocean.parse_items(res, {{id = "a", big = true}, {id = "b"}},
                                  {time_limit = 0, memory_limit = 0})
      print(r.errors[1] and r.errors[1].message, #r.passed, r.passed[1].properties.x)
      r = ocean.parse_items(res, {{id = "c"}}, {time_limit = 0, memory_limit = 0})
      print(r.passed[1].properties.x)]], "ulimit -v 1800000; ")
    assert.are.equal("properties.x: the mapping expression ran out of memory\t1\tb\nc\nrc=0\n", out)
  end)
end)

describe("the budget settings", function()
  local config = require "ocean.config"
  local function load(env, yaml)
    local p = assert(io.popen("mktemp -d"))
    local dir = p:read("l")
    p:close()
    os.execute(("mkdir -p %q/.port"):format(dir))
    local f = assert(io.open(dir .. "/.port/spec.yaml", "w"))
    f:write("type: t\nversion: 1.0.0\n")
    f:close()
    if yaml then
      f = assert(io.open(dir .. "/config.yaml", "w"))
      f:write(yaml)
      f:close()
    end
    env.OCEAN__PORT__CLIENT_ID, env.OCEAN__PORT__CLIENT_SECRET = "id", "secret"
    local s, err = config.load { path = dir, env = env }
    os.execute(("rm -rf %q"):format(dir))
    return s, err
  end

  it("defaults to 5 s and 256 MiB per item", function()
    local s = assert(load({}))
    assert.are.equal(5, s.mapping_time_limit)
    assert.are.equal(256, s.mapping_memory_limit)
    assert.are.same({ allow_env = false, time_limit = 5, memory_limit = 256, parse_all = true },
                    mapping.options(s, { parse_all = true }))
  end)

  it("takes OCEAN__MAPPING_TIME_LIMIT / OCEAN__MAPPING_MEMORY_LIMIT, or config.yaml; 0 is no limit", function()
    local s = assert(load({ OCEAN__MAPPING_TIME_LIMIT = "0.5", OCEAN__MAPPING_MEMORY_LIMIT = "0" }))
    assert.are.equal(0.5, s.mapping_time_limit)
    assert.are.equal(0, s.mapping_memory_limit)
    s = assert(load({}, "mappingTimeLimit: 2\nmappingMemoryLimit: 512\n"))
    assert.are.equal(2, s.mapping_time_limit)
    assert.are.equal(512, s.mapping_memory_limit)
  end)

  it("refuses a limit that is not a number >= 0, naming the variable", function()
    local s, err = load({ OCEAN__MAPPING_TIME_LIMIT = "-1" })
    assert.is_nil(s)
    assert.matches("OCEAN__MAPPING_TIME_LIMIT", err)
    assert.matches("is not a number >= 0 %(0: no limit%)", err)
  end)
end)

describe("values the budget refuses", function()
  it("counts a field value larger than the memory limit when written out as null", function()
    -- small in memory (shared), 13 GB as JSON
    local expr = "reduce range(30) as $i ([\"abcdefghij\"]; [., .])"
    local r = H.parse(with_field(expr), { { id = "a" } })
    assert.are.same({}, r.errors)
    assert.are.equal(null, r.passed[1].properties.x)
    assert.are.same({ ["properties.x"] = expr }, r.misconfigured)
  end)
end)
