-- ocean.runtime.give_way inside a real nginx worker: work that has made the
-- worker's loop iteration long yields (its ngx.now() moves on), and a
-- request that arrives while a long piece of work gives way between its
-- slices is served in the middle of it, by the same (only) worker.
local json = require "ocean.json"
local ehelp = require "spec.helpers.emulator"
local nh = require "spec.helpers.nginx"

-- routes of the spec's own, added to the example integration
local ROUTES = [[

local runtime = require "ocean.runtime"
local core = require "ocean.core"
local hog = { started = false, running = false }

local function busy(ms)               -- CPU work that never yields
  local t = core.monotonic_ms()
  while core.monotonic_ms() - t < ms do end
end

ocean.router.get("/late", function()
  local before = ngx.now()
  busy(30)                            -- this iteration has now run 30 ms
  local slept = runtime.give_way()
  return { slept = slept, moved = ngx.now() > before }
end)

ocean.router.post("/hog", function()
  hog.started, hog.running = true, true
  local yields = 0
  for _ = 1, 100 do                   -- 2 s of work in 20 ms slices
    busy(20)
    yields = yields + runtime.give_way()
  end
  hog.running = false
  return { yields = yields }
end)

ocean.router.get("/probe", function()
  return { started = hog.started, running = hog.running }
end)
]]

describe("ocean.runtime.give_way in nginx #nginx", function()
  local emu, ng, dir

  setup(function()
    emu = ehelp.start { quiet = true }
    dir = nh.integration { append = { ["main.lua"] = ROUTES } }
    ng = nh.start { emu = emu, workers = 1, integration = dir }
    nh.wait_ready(ng)
  end)

  teardown(function()
    nh.stop_all()
    ehelp.stop_all()
    os.execute("rm -rf " .. ehelp.shell_quote(dir))
  end)

  it("yields once the loop iteration has run longer than its slice", function()
    local code, body = ng:json("GET", "/integration/late")
    assert.are.equal(200, code, ng:error_log())
    assert.is_true(body.slept >= 1, json.encode(body))
    assert.is_true(body.moved, "ngx.now() did not move: the worker did not yield")
  end)

  it("lets the one worker serve a request in the middle of long work", function()
    local done = ng:background("POST", "/integration/hog", "{}")
    local during = 0
    for _ = 1, 200 do
      local code, p = ng:json("GET", "/integration/probe")
      assert.are.equal(200, code)
      if p.running then during = during + 1 end
      if p.started and not p.running then break end
      if during >= 3 then break end
      ehelp.sleep(0.02)
    end
    local code = nh.wait_for(done, 30)
    assert.are.equal(200, code)
    -- served while the hog's 2 s of work were still going on: the worker
    -- gave way between its slices (without, every probe waits for its end)
    assert.is_true(during >= 1, "no probe was served while the hog ran")
  end)
end)
