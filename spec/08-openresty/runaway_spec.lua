-- A mapping expression that never ends, inside nginx: the worker running it
-- is stopped by the budget (the webhook gets the breach as its error), the
-- other worker answers meanwhile, the busy one serves again right after,
-- and `nginx -s reload` / `-s quit` work with a runaway in progress.
local json = require "ocean.json"
local ehelp = require "spec.helpers.emulator"
local nh = require "spec.helpers.nginx"

local BUDGET = 2                        -- seconds: OCEAN__MAPPING_TIME_LIMIT

local MAPPING = [[
createMissingRelatedEntities: true
deleteDependentEntities: true
resources:
  - kind: service
    selector:
      query: .archived != true
    port:
      entity:
        mappings:
          identifier: .name
          blueprint: '"service"'
          properties:
            replicas: 'if .slow then last(range(1e15)) else .replicas end'
]]

local function slow_webhook()
  return json.encode { action = "upsert", service = { name = "svc-slow", slow = true } }
end

describe("ocean.openresty with a runaway mapping #nginx #slow", function()
  local emu, ng, dir

  local function health_timed()
    return ng:timed("GET", "/integration/health")
  end

  setup(function()
    emu = ehelp.start { quiet = true }
    dir = nh.integration { write = { [".port/resources/port-app-config.yml"] = MAPPING } }
    ng = nh.start { emu = emu, workers = 2, integration = dir,
                    env = { OCEAN__MAPPING_TIME_LIMIT = tostring(BUDGET) } }
    nh.wait_ready(ng)
  end)

  teardown(function()
    nh.stop_all()
    ehelp.stop_all()
    os.execute("rm -rf " .. ehelp.shell_quote(dir))
  end)

  it("answers other requests while a worker's mapping runs away, and frees it within the budget", function()
    local done = ng:background("POST", "/integration/webhook", slow_webhook())
    ehelp.sleep(0.3)
    -- the other worker answers at once, while the webhook is still running
    for _ = 1, 5 do
      local code, t = health_timed()
      assert.are.equal(200, code)
      assert.is_true(t < 1, "health took " .. t .. " s")
      assert.is_nil((done()))
    end
    local code, t = nh.wait_for(done, BUDGET + 10)
    assert.are.equal(502, code)
    assert.is_true(t >= BUDGET - 0.5 and t < BUDGET + 3, "the webhook took " .. tostring(t) .. " s")
    -- both workers serve again: every request is quick
    for _ = 1, 10 do
      local c, ht = health_timed()
      assert.are.equal(200, c)
      assert.is_true(ht < 1, "health took " .. ht .. " s")
    end
    local log = ng:error_log()
    assert.truthy(log:find("register_raw: 1 error: not deleting", 1, true), log)
  end)

  it("reports the breach to the webhook's caller", function()
    local status, body = ng:json("POST", "/integration/webhook", json.decode(slow_webhook()))
    assert.are.equal(502, status)
    assert.is_false(body.ok)
    assert.truthy(json.encode(body.errors):find("exceeded the time limit (2 s)", 1, true), json.encode(body))
    assert.is_nil(emu.entities("service")[1] and nil)
  end)

  it("reloads with a runaway in progress, and quits within the budget", function()
    local before = ng:worker_pids()
    local done = ng:background("POST", "/integration/webhook", slow_webhook())
    ehelp.sleep(0.3)
    ng:reload()
    local renewed = nh.wait_for(function()
      local now = ng:worker_pids()
      return #now == 2 and now[1] ~= before[1] and now[2] ~= before[2] and now
    end, BUDGET + 10)
    assert(renewed, "the workers were not replaced:\n" .. ng:error_log())
    assert.are.equal(502, (nh.wait_for(done, BUDGET + 10)))
    assert.are.equal(200, (health_timed()))
    -- quit while a runaway runs: the master is gone within the budget
    ng:background("POST", "/integration/webhook", slow_webhook())
    ehelp.sleep(0.3)
    local t0 = nh.now()
    ng:nginx("-s quit")
    local gone = nh.wait_for(function() return not ehelp.alive(ng.pid) end, BUDGET + 10)
    assert(gone, "nginx did not quit:\n" .. ng:error_log())
    assert.is_true(nh.now() - t0 < BUDGET + 3, "quit took " .. (nh.now() - t0) .. " s")
  end)
end)
