-- `ocean sail` with a mapping expression that never ends: the budget fails
-- the kind (nothing deleted) and --once exits non-zero by itself; with no
-- limit, SIGTERM still stops it within a second; a long-running sail
-- answers its routes again within the budget.
local json = require "ocean.json"
local ehelp = require "spec.helpers.emulator"
local sail = require "spec.helpers.sail"

local FIXTURE = ehelp.root() .. "/spec/fixtures/items"
local ID = "spec-runaway"
local DS = "port-ocean/items/0.3.0/" .. ID .. "/exporter"

local MAPPING = [[
deleteDependentEntities: true
createMissingRelatedEntities: true
resources:
  - kind: item
    selector:
      query: .enabled != false
    port:
      entity:
        mappings:
          identifier: .id
          title: .name
          blueprint: '"specItem"'
          properties:
            size: 'if .slow then last(range(1e15)) else .size end'
]]

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

-- The items integration with the runaway mapping, and its items file.
local function integration()
  local dir = ehelp.tmpdir()
  os.execute(("cp -r %s/. %s/"):format(ehelp.shell_quote(FIXTURE), ehelp.shell_quote(dir)))
  write(dir .. "/.port/resources/port-app-config.yml", MAPPING)
  write(dir .. "/items.json", assert(json.encode({
    { id = "a", name = "A", size = 1 }, { id = "b", name = "B", slow = true }, { id = "c", name = "C", size = 3 },
  })))
  return dir
end

local function now()
  local p = io.popen("date +%s.%N")
  local t = tonumber(p:read("*l"))
  p:close()
  return t
end

describe("ocean sail with a runaway mapping", function()
  local emu, dir

  before_each(function()
    emu = ehelp.start { quiet = true }
    dir = integration()
    -- an entity this integration owns and no longer produces: deleting it
    -- would be wrong while a kind failed
    emu.seed { { identifier = "old", blueprint = "specItem", title = "old", datasource = DS,
                 properties = {}, relations = {} } }
  end)

  after_each(function()
    sail.stop_all()
    ehelp.stop_all()
    os.execute("rm -rf " .. ehelp.shell_quote(dir))
  end)

  local function env(extra)
    local e = {
      OCEAN__PORT__BASE_URL = emu.url,
      OCEAN__PORT__CLIENT_ID = emu.client_id,
      OCEAN__PORT__CLIENT_SECRET = emu.client_secret,
      OCEAN__INTEGRATION__IDENTIFIER = ID,
      OCEAN__INTEGRATION__CONFIG__ITEMS_FILE = dir .. "/items.json",
    }
    for k, v in pairs(extra or {}) do e[k] = v end
    return e
  end

  it("--once exits non-zero by itself, naming the field and the limit, and deletes nothing", function()
    local t0 = now()
    local r = sail.run({ "sail", dir, "--once" }, env { OCEAN__MAPPING_TIME_LIMIT = "1" }, { limit = 60 })
    assert.are.equal(1, r.rc, r.out .. r.err)
    assert.is_true(now() - t0 < 30)
    local log = r.out .. r.err
    assert.truthy(log:find("kind 'item': item 2: properties.size: the mapping expression exceeded "
      .. "the time limit (1 s)", 1, true), log)
    local ids = {}
    for _, e in ipairs(emu.entities("specItem")) do ids[#ids + 1] = e.identifier end
    table.sort(ids)
    assert.are.same({ "a", "c", "old" }, ids)
  end)

  it("--once with no time limit stops within a second of SIGTERM", function()
    local p = sail.start({ "sail", dir, "--once" }, env { OCEAN__MAPPING_TIME_LIMIT = "0" })
    -- wait until the runaway item is being mapped (a and c were, b is stuck)
    sail.eventually(function()
      local out, err = p:output()
      return (out .. err):find("resync", 1, true)
    end, 20, "the resync to start")
    ehelp.sleep(1)
    assert.is_nil(p:status())
    local t0 = now()
    p:signal("TERM")
    local rc = p:wait(5)
    assert.is_true(now() - t0 < 1.5, "exited " .. (now() - t0) .. " s after SIGTERM")
    local out, err = p:output()
    assert.are.equal(1, rc, out .. err)
    assert.truthy((out .. err):find("interrupted", 1, true), out .. err)
    local ids = {}
    for _, e in ipairs(emu.entities("specItem")) do ids[#ids + 1] = e.identifier end
    assert.truthy(table.concat(ids, ","):find("old", 1, true))
  end)

  it("answers its routes again within the budget while a resync runs away", function()
    local port = sail.free_port()
    local p = sail.start({ "sail", dir, "--port", tostring(port), "--host", "127.0.0.1" },
                         env { OCEAN__MAPPING_TIME_LIMIT = "2", OCEAN__EVENT_LISTENER__TYPE = "WEBHOOKS_ONLY" },
                         { port = port })
    p:wait_ready()
    local status = p:http("POST", "/integration/resync", { body = "{}",
      headers = { ["Content-Type"] = "application/json" } })
    assert.are.equal(202, status)
    -- the runaway item takes the loop for at most the 2 s budget
    local t0 = now()
    status = p:http("GET", "/integration/health", { timeout = 10 })
    assert.are.equal(200, status)
    assert.is_true(now() - t0 < 5, "health answered after " .. (now() - t0) .. " s")
    sail.eventually(function()
      local _, body = p:http("GET", "/integration/health", { timeout = 5 })
      local h = json.decode(body)
      return h and h.resyncs == 1 and h.running == false
    end, 20, "the resync to end")
    local rc, out, err = p:stop()
    assert.are.equal(0, rc, out .. err)
    assert.truthy((out .. err):find("properties.size: the mapping expression exceeded the time limit (2 s)",
      1, true), out .. err)
  end)
end)
