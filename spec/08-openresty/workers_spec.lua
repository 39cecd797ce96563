-- Two nginx workers, many concurrent resync requests: the lock in the
-- shared dict lets exactly one resync run at a time, the newest request
-- wins, and the superseded ones abort (reported) or never start.
local json = require "ocean.json"
local ehelp = require "spec.helpers.emulator"
local nh = require "spec.helpers.nginx"

local CATALOG = 40

-- The resync-state statuses Port received, in order.
local function states(emu)
  local out = {}
  for _, r in ipairs(emu.requests { bodies = true }) do
    if r.method == "PATCH" and r.path:find("/resync%-state$") and type(r.body) == "table" then
      out[#out + 1] = r.body.status
    end
  end
  return out
end

describe("ocean.openresty with two nginx workers #nginx #slow", function()
  local emu, ng

  setup(function()
    emu = ehelp.start { quiet = true }
    ng = nh.start { emu = emu, workers = 2, lock_ttl = 3 }
    assert.are.equal(2, #ng:worker_pids())
    -- ready: bootstrapped (one worker did it) and the mapping compiled
    nh.wait_ready(ng)
  end)

  teardown(function()
    nh.stop_all()
    ehelp.stop_all()
  end)

  it("never runs two resyncs at once, whatever worker gets each request", function()
    emu.clear_requests()
    emu.faults { { path = "^/v1/", delay_ms = 300 } }   -- resyncs last long enough to overlap
    local gens, pids = {}, {}
    for round = 1, 3 do
      local urls = {}
      for i = 1, 6 do urls[i] = ehelp.shell_quote(ng.url .. "/integration/resync") end
      local out = ehelp.sh("curl -s -Z --parallel-immediate --max-time 10 -X POST "
        .. table.concat(urls, " ") .. " 2>/dev/null")
      local n = 0
      for body in out:gmatch("%b{}") do
        local b = json.decode(body)
        assert.is_true(b.ok)
        gens[#gens + 1] = b.generation
        pids[b.pid] = true
        n = n + 1
      end
      assert.are.equal(6, n, "round " .. round .. ": " .. out)
      ehelp.sleep(0.7)
    end
    table.sort(gens)
    local newest = gens[#gens]
    -- every request got its own generation
    for i = 2, #gens do assert.are_not.equal(gens[i - 1], gens[i]) end
    local last = nh.wait_for(function()
      local _, h = ng:json("GET", "/integration/health")
      local l = type(h) == "table" and h.last_resync
      return type(l) == "table" and l.generation == newest and h.running == false and l
    end, 90)
    assert.is_table(last, "the newest resync did not finish:\n" .. ng:error_log())
    assert.are.equal("completed", last.status)
    emu.clear_faults()
    -- Port's view: "running" is always followed by its end before the next one
    local seen = states(emu)
    local open, runs = false, 0
    for i, st in ipairs(seen) do
      if st == "running" then
        assert(not open, ("two resyncs running at once (state %d of %s)")
          :format(i, table.concat(seen, ", ")))
        open, runs = true, runs + 1
      else
        open = false
      end
    end
    assert.are.equal("completed", seen[#seen])
    assert(runs >= 1 and runs <= #gens, table.concat(seen, ", "))
    -- the superseded runs that had started were reported aborted
    local aborted = 0
    for _, st in ipairs(seen) do if st == "aborted" then aborted = aborted + 1 end end
    assert(aborted >= 1, table.concat(seen, ", "))
    assert.are.equal(CATALOG, #emu.entities("service"))
    local n = 0
    for _ in pairs(pids) do n = n + 1 end
    if n < 2 then
      io.stderr:write("\n[workers_spec: every request went to one worker this time]\n")
    end
  end)
  it("frees the lock of a worker killed during a resync once its TTL runs out", function()
    emu.clear_requests()
    emu.faults { { path = "^/v1/", delay_ms = 1000 } }
    local _, b = ng:json("POST", "/integration/resync")
    local owner = nh.wait_for(function()
      local _, h = ng:json("GET", "/integration/health")
      return type(h) == "table" and type(h.running) == "string"
        and h.running:match("^(%d+):" .. b.generation .. "$")
    end, 20)
    assert(owner, "the resync did not start:\n" .. ng:error_log())
    owner = tonumber(owner)
    os.execute("kill -KILL " .. owner)
    assert.truthy(nh.wait_for(function() return not ehelp.alive(owner) end, 10))
    -- nginx replaces the worker; the dead worker's lock stays until its
    -- TTL runs out (a new resync waits for that, not for lock_wait: 300 s)
    assert.truthy(nh.wait_for(function() return #ng:worker_pids() == 2 end, 10))
    emu.clear_faults()
    local st, b2 = ng:json("POST", "/integration/resync")
    assert.are.equal(202, st)
    local last = nh.wait_for(function()
      local _, x = ng:json("GET", "/integration/health")
      local l = type(x) == "table" and x.last_resync
      return type(l) == "table" and l.generation == b2.generation and x.running == false and l
    end, 30)
    assert.is_table(last, "the resync after the crash did not finish:\n" .. ng:error_log())
    assert.are.equal("completed", last.status)
    assert.are.equal(CATALOG, #emu.entities("service"))
  end)
end)
