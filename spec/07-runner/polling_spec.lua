-- `ocean sail` with the POLLING listener: a resync on start, then one per
-- new resync request Port holds (OCEAN__EVENT_LISTENER__INTERVAL apart).
local json = require "ocean.json"
local ehelp = require "spec.helpers.emulator"
local sail = require "spec.helpers.sail"

local ITEMS = ehelp.root() .. "/spec/fixtures/items"

local function write(path, value)
  local f = assert(io.open(path, "w"))
  f:write((assert(json.encode(value))))
  f:close()
end

local function ids(list)
  local out = {}
  for _, e in ipairs(list) do out[#out + 1] = e.identifier end
  table.sort(out)
  return out
end

describe("ocean sail (POLLING)", function()
  local emu, dir

  setup(function()
    emu = ehelp.start { quiet = true }
    dir = ehelp.tmpdir()
  end)
  teardown(function()
    sail.stop_all()
    ehelp.stop_all()
    os.execute("rm -rf " .. ehelp.shell_quote(dir))
  end)
  before_each(function() emu.reset() end)

  local function start(id, extra)
    local env = sail.emulator_env(emu, {
      OCEAN__INTEGRATION__IDENTIFIER = id,
      OCEAN__INTEGRATION__CONFIG__ITEMS_FILE = dir .. "/items.json",
      OCEAN__EVENT_LISTENER__INTERVAL = "0.2",
    })
    for k, v in pairs(extra or {}) do env[k] = v end
    local p = sail.serve(ITEMS, env)
    local function health()
      local status, text = p:http("GET", "/integration/health")
      assert.are.equal(200, status)
      return json.decode(text)
    end
    return p, health
  end

  local function resync_requests_polled(id)
    local n = 0
    for _, r in ipairs(emu.requests()) do
      if r.path == "/v1/integration/" .. id .. "/resync-request" then n = n + 1 end
    end
    return n
  end

  it("resyncs on start, then only when Port holds a newer resync request", function()
    write(dir .. "/items.json", { { id = "a", name = "A" } })
    local p, health = start("spec-poll")
    sail.eventually(function() return health().resyncs == 1 end, 10, "the resync on start")
    assert.are.same({ "a" }, ids(emu.entities("specItem")))
    -- polls go on; with no request, no resync
    local polled = resync_requests_polled("spec-poll")
    sail.eventually(function() return resync_requests_polled("spec-poll") >= polled + 3 end, 10,
      "three more polls")
    assert.are.equal(1, health().resyncs)

    write(dir .. "/items.json", { { id = "a", name = "A" }, { id = "d", name = "D" } })
    emu.resync_request("spec-poll")
    local h = sail.eventually(function()
      local x = health()
      return x.resyncs == 2 and x
    end, 10, "the requested resync")
    assert.are.equal("completed", h.last_resync.status)
    assert.are.same({ "a", "d" }, ids(emu.entities("specItem")))
    -- the same request does not trigger again
    polled = resync_requests_polled("spec-poll")
    sail.eventually(function() return resync_requests_polled("spec-poll") >= polled + 3 end, 10,
      "three more polls")
    assert.are.equal(2, health().resyncs)

    local rc, _, err = p:stop()
    assert.are.equal(0, rc)
    assert.truthy(err:find("Port asked for a resync", 1, true))
  end)

  it("with RESYNC_ON_START=false, resyncs only when Port asks", function()
    write(dir .. "/items.json", { { id = "b", name = "B" } })
    local p, health = start("spec-poll-2", { OCEAN__EVENT_LISTENER__RESYNC_ON_START = "false" })
    local polled = resync_requests_polled("spec-poll-2")
    sail.eventually(function() return resync_requests_polled("spec-poll-2") >= polled + 3 end, 10,
      "three polls")
    assert.are.same({ 0, {} }, { health().resyncs, emu.entities("specItem") })
    emu.resync_request("spec-poll-2")
    sail.eventually(function() return health().resyncs == 1 end, 10, "the requested resync")
    assert.are.same({ "b" }, ids(emu.entities("specItem")))
    assert.are.equal(0, (p:stop()))
  end)

  it("resyncs every OCEAN__SCHEDULED_RESYNC_INTERVAL minutes, the first after one interval", function()
    write(dir .. "/items.json", { { id = "s", name = "S" } })
    local p, health = start("spec-scheduled", { OCEAN__EVENT_LISTENER__TYPE = "WEBHOOKS_ONLY",
                                                OCEAN__SCHEDULED_RESYNC_INTERVAL = "0.05" })
    -- 3 s: long enough that a loaded machine reads health before the first
    assert.are.equal(0, health().resyncs)                  -- not on start
    sail.eventually(function() return health().resyncs >= 2 end, 20, "two scheduled resyncs")
    assert.are.same({ "s" }, ids(emu.entities("specItem")))
    assert.are.equal(0, resync_requests_polled("spec-scheduled"))
    assert.are.equal(0, (p:stop()))
  end)
end)
