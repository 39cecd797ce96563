-- The timers of the OpenResty adapter, with two workers: a scheduled
-- resync (OCEAN__SCHEDULED_RESYNC_INTERVAL) and the POLLING listener
-- (a resync on start, then one whenever Port's resync request is newer),
-- each acted on by one worker per tick.
local ehelp = require "spec.helpers.emulator"
local nh = require "spec.helpers.nginx"

local ID = nh.IDENTIFIER

local function states(emu)
  local out = {}
  for _, r in ipairs(emu.requests { bodies = true }) do
    if r.method == "PATCH" and r.path:find("/resync%-state$") and type(r.body) == "table" then
      out[#out + 1] = r.body.status
    end
  end
  return out
end

local function count(list, v)
  local n = 0
  for _, x in ipairs(list) do if x == v then n = n + 1 end end
  return n
end

-- "running" is always followed by an end before the next "running"
local function assert_sequential(seen)
  local open = false
  for i, st in ipairs(seen) do
    if st == "running" then
      assert(not open, ("two resyncs at once (state %d of %s)"):format(i, table.concat(seen, ", ")))
      open = true
    else
      open = false
    end
  end
end

local function health(ng)
  local _, h = ng:json("GET", "/integration/health")
  return type(h) == "table" and h or {}
end

describe("ocean.openresty timers #nginx #slow", function()
  after_each(function()
    nh.stop_all()
    ehelp.stop_all()
  end)

  it("resyncs every OCEAN__SCHEDULED_RESYNC_INTERVAL, one worker per tick", function()
    local emu = ehelp.start { quiet = true }
    -- 0.05 minutes: every 3 s
    local ng = nh.start { emu = emu, workers = 2, env = { OCEAN__SCHEDULED_RESYNC_INTERVAL = "0.05" } }
    local t0 = nh.now()
    local done = nh.wait_for(function()
      return count(states(emu), "completed") >= 2
    end, 30)
    local elapsed = nh.now() - t0
    local seen = states(emu)
    assert(done, "fewer than 2 scheduled resyncs: " .. table.concat(seen, ", ") .. "\n" .. ng:error_log())
    assert_sequential(seen)
    -- at most one resync per tick (two workers each have the timer)
    assert(count(seen, "running") <= math.floor(elapsed / 3) + 1,
      ("%d resyncs in %.1f s: %s"):format(count(seen, "running"), elapsed, table.concat(seen, ", ")))
    assert.are.equal(0, count(seen, "aborted"))
    assert.are.equal(40, #emu.entities("service"))
  end)

  it("POLLING: resyncs once on start and again when Port asks", function()
    local emu = ehelp.start { quiet = true }
    local ng = nh.start { emu = emu, workers = 2, env = {
      OCEAN__EVENT_LISTENER__TYPE = "POLLING", OCEAN__EVENT_LISTENER__INTERVAL = "1" } }
    assert(nh.wait_for(function() return health(ng).last_resync ~= nil
      and type(health(ng).last_resync) == "table" end, 30), "no resync on start:\n" .. ng:error_log())
    local first = health(ng).last_resync
    assert.are.equal("completed", first.status)
    ehelp.sleep(2.5)                       -- two polls: Port asked nothing new
    assert.are.same({ "running", "completed" }, states(emu))
    emu.resync_request(ID)
    local second = nh.wait_for(function()
      local l = health(ng).last_resync
      return type(l) == "table" and l.generation > first.generation and health(ng).running == false and l
    end, 20)
    assert(second, "no resync after Port's request:\n" .. ng:error_log())
    assert.are.equal("completed", second.status)
    assert.are.same({ "running", "completed", "running", "completed" }, states(emu))
  end)
end)
