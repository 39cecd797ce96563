-- The live session inside nginx (spec/fixtures/live-session): concurrent webhook
-- requests coalesce into shared bulk upserts, each request gets its own
-- result, and mapping a large body or resync page never stalls the worker
-- (a concurrent request is answered meanwhile).
local ehelp = require "spec.helpers.emulator"
local nh = require "spec.helpers.nginx"
local json = require "ocean.json"

local q, sh, read_file = ehelp.shell_quote, ehelp.sh, ehelp.read_file
local FIXTURE = ehelp.root() .. "/spec/fixtures/live-session"

local count = require("spec.helpers.ocean").count

local function ready(ng)
  return nh.wait_for(function()
    local _, h = ng:json("GET", "/integration/health")
    return type(h) == "table" and h.ready
  end, 30)
end

-- n POST requests at once (curl --parallel); bodies[i] is sent to path
-- and answered into a file. Returns the decoded answers, in order.
local function parallel(ng, path, bodies)
  local dir = ehelp.tmpdir()
  local lines = {}
  for i, b in ipairs(bodies) do
    local f = assert(io.open(("%s/req%d"):format(dir, i), "wb"))
    f:write(b)
    f:close()
    if i > 1 then lines[#lines + 1] = "next" end
    lines[#lines + 1] = ('url = "%s%s"'):format(ng.url, path)
    lines[#lines + 1] = 'request = "POST"'
    lines[#lines + 1] = ('data-binary = "@%s/req%d"'):format(dir, i)
    lines[#lines + 1] = ('output = "%s/ans%d"'):format(dir, i)
    lines[#lines + 1] = 'max-time = 60'
  end
  local cfg = assert(io.open(dir .. "/all.cfg", "wb"))
  cfg:write(table.concat(lines, "\n"), "\n")
  cfg:close()
  sh(("curl -s --parallel --parallel-immediate --parallel-max %d -K %s 2>&1"):format(#bodies,
    q(dir .. "/all.cfg")))
  local out = {}
  for i = 1, #bodies do
    local text = read_file(("%s/ans%d"):format(dir, i)) or ""
    out[i] = json.decode(text) or text
  end
  os.execute("rm -rf " .. q(dir))
  return out
end

-- GET /integration/probe again and again while busy() is true: what each
-- answer said ({pauses =, in_page =}, see the fixture).
local function probe_while(ng, busy)
  local seen = {}
  while busy() do
    local code, p = ng:json("GET", "/integration/probe")
    assert.are.equal(200, code)
    seen[#seen + 1] = p
  end
  return seen
end

-- The distinct pause counts among the answers that pred accepts.
local function distinct_pauses(seen, pred)
  local set, n = {}, 0
  for _, p in ipairs(seen) do
    if pred(p) and not set[p.pauses] then
      set[p.pauses] = true
      n = n + 1
    end
  end
  return n
end

describe("the live session in nginx #nginx", function()
  local emu
  setup(function() emu = ehelp.start { quiet = true } end)
  teardown(function()
    nh.stop_all()
    ehelp.stop_all()
  end)

  it("coalesces concurrent webhook requests; each gets its own result", function()
    local ng = nh.start { emu = emu, workers = 1, integration = FIXTURE }
    assert(ready(ng), ng:error_log())
    emu.clear_requests()
    local bodies = {}
    for i = 1, 400 do
      bodies[i] = json.encode { id = "i" .. i, name = "Item " .. i, n = i == 77 and "seventy" or i }
    end
    local answers = parallel(ng, "/integration/item", bodies)
    for i, a in ipairs(answers) do
      assert(type(a) == "table", i .. ": " .. tostring(a))
      if i == 77 then                -- n is not a number: Port's 422 reaches this caller only
        assert.is_false(a.ok)
        assert.are.same({ 0, 1 }, { a.created, a.failed })
        assert.are.same({ "item", "i77", 422 },
          { a.failures[1].blueprint, a.failures[1].identifier, a.failures[1].status })
      else
        assert(a.ok and a.created == 1 and a.failed == 0, i .. ": " .. json.encode(a))
      end
    end
    local bulks = count(emu, "POST", "^/v1/blueprints/item/entities/bulk$")
    assert.is_true(bulks <= 40, bulks .. " bulk upserts for 400 webhooks")
    assert.are.equal(399, #emu.entities("item"))
    ng:stop()
  end)

  -- Mapping is sliced (ops.MAP_BUDGET_MS of C work, then the worker
  -- yields): requests answered while the page is registered see the
  -- worker's pause count grow. Mapping in one go would pause never, so
  -- every answer would show the count of before or after the page.
  it("answers other requests between the slices of a 50 000-object body's mapping", function()
    local ng = nh.start { emu = emu, workers = 1, integration = FIXTURE }
    assert(ready(ng), ng:error_log())
    local _, before = ng:json("GET", "/integration/probe")
    local objs = {}
    for i = 1, 50000 do
      objs[i] = ('{"n":%d,"name":"Obj%d","tags":["a","b"],"pad":"%s"}'):format(i, i, ("x"):rep(20))
    end
    local big = "[" .. table.concat(objs, ",") .. "]"
    local done = ng:background("POST", "/integration/page", big)
    local seen = probe_while(ng, function() return done() == nil end)
    local code = done()
    assert.are.equal(200, code, ng:error_log())
    local _, after = ng:json("GET", "/integration/probe")
    assert.is_true(after.pauses - before.pauses >= 10, json.encode { before, after })
    local between = distinct_pauses(seen, function(p)
      return p.in_page == 1 and p.pauses > before.pauses and p.pauses < after.pauses
    end)
    assert.is_true(between >= 3, ("%d probes, %d between two slices (pauses %d -> %d)")
      :format(#seen, between, before.pauses, after.pauses))
    assert.are.equal(10, #emu.entities("group"))
    ng:stop()
  end)

  it("answers other requests between the slices of a resync's 50 000-object page", function()
    local ng = nh.start { emu = emu, workers = 1, integration = FIXTURE,
                          env = { OCEAN__INTEGRATION__CONFIG__PAGE = "50000" } }
    assert(ready(ng), ng:error_log())
    emu.clear_requests()
    local _, before = ng:json("GET", "/integration/probe")
    local status = ng:json("POST", "/integration/resync")
    assert.are.equal(202, status)
    local function finished()
      local _, h = ng:json("GET", "/integration/health")
      return type(h) == "table" and type(h.last_resync) == "table" and h.last_resync.status
    end
    -- wait until the resync runs (its "running" state reached Port)
    assert(nh.wait_for(function() return count(emu, "PATCH", "/resync%-state$") >= 1 end, 20))
    local seen = probe_while(ng, function() return not finished() end)
    local _, h = ng:json("GET", "/integration/health")
    -- the earlier spec's groups are owned and not in this resync: deleting
    -- them all is over entityDeletionThreshold, so the deletion is
    -- skipped, which --once says as "completed with failures" (exit 3)
    assert.are.same({ "completed with failures", 0 }, { h.last_resync.status, h.last_resync.failed },
      json.encode(h))
    assert.truthy(ng:error_log():find("deletion skipped", 1, true))
    local _, after = ng:json("GET", "/integration/probe")
    assert.is_true(after.pauses - before.pauses >= 10, json.encode { before, after })
    local between = distinct_pauses(seen, function(p)
      return p.pauses > before.pauses and p.pauses < after.pauses
    end)
    assert.is_true(between >= 3, ("%d probes, %d between two slices (pauses %d -> %d)")
      :format(#seen, between, before.pauses, after.pauses))
    ng:stop()
  end)
end)
