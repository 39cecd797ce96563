-- nginx with webhook processors whose journal cannot be opened: live
-- events are off in the worker, every webhook is answered 503, and so the
-- health answer is 503 with ok = false and the reason, not "ok" (a probe
-- would keep alive a worker that can accept no webhook).
local ehelp = require "spec.helpers.emulator"
local nh = require "spec.helpers.nginx"

local LIVE = ehelp.root() .. "/spec/fixtures/live"

describe("ocean.openresty with its journal unusable #nginx", function()
  local emu, ng

  setup(function()
    emu = ehelp.start { quiet = true }
    ng = nh.start { emu = emu, workers = 1, integration = LIVE, identifier = "spec-live-off", env = {
      OCEAN__INTEGRATION__CONFIG__WEBHOOK_SECRET = "s",
      OCEAN__LIVE_EVENTS__JOURNAL_DIR = "/dev/null/journal",   -- under a file: never a folder
    } }
  end)

  teardown(function()
    nh.stop_all()
    ehelp.stop_all()
  end)

  it("answers health 503 with the journal's error, and webhooks 503", function()
    local code, h
    assert(nh.wait_for(function()
      code, h = ng:json("GET", "/integration/health")
      return type(h) == "table" and h.ready
    end, 30), "never ready:\n" .. ng:error_log())
    assert.are.equal(503, code)
    assert.is_false(h.ok)
    assert.truthy(tostring(h.error):find("/dev/null/journal", 1, true), tostring(h.error))
    local wcode = ng:http("POST", "/integration/items", { body = '{"item":{"id":"x"}}',
      headers = { ["Content-Type"] = "application/json", ["X-Secret"] = "s" } })
    assert.are.equal(503, wcode)
    assert.truthy(ng:error_log():find("live events are off in worker", 1, true))
  end)
end)
