-- Live events and ocean.gather inside nginx (two workers, the emulator as
-- Port, spec/fixtures/live): a processor's whole flow with 401 and 400,
-- one journal for both workers and one of them applying, the workers
-- SIGKILLed in the middle of a burst and a new one taking over the
-- journal (every event answered 2xx applied), ocean.map within its bound
-- from a route and from a resync generator (counted by the fake API).
local json = require "ocean.json"
local burst = require "spec.helpers.burst"
local ehelp = require "spec.helpers.emulator"
local fake = require "spec.helpers.fake_api"
local nh = require "spec.helpers.nginx"
local prom = require "spec.helpers.prometheus"
local sail = require "spec.helpers.sail"
local signed = require "spec.helpers.signed"

local LIVE = ehelp.root() .. "/spec/fixtures/live"
local SECRET = "nginx-webhook-secret"

describe("live events in nginx #nginx", function()
  local emu, ng, api, jdir

  setup(function()
    emu = ehelp.start { quiet = true }
    api = fake.start()
    jdir = ehelp.tmpdir()
    -- nginx's workers run as another user (nobody) when the master is root
    os.execute("chmod 777 " .. ehelp.shell_quote(jdir))
    ng = nh.start { emu = emu, workers = 2, integration = LIVE, identifier = "spec-live-nginx", env = {
      OCEAN__INTEGRATION__CONFIG__WEBHOOK_SECRET = SECRET,
      OCEAN__INTEGRATION__CONFIG__ITEMS_API = api.url,
      OCEAN__LIVE_EVENTS__JOURNAL_DIR = jdir,
      OCEAN__PORT__CONCURRENCY = "20",
      OCEAN__METRICS__ENABLED = "true",
    } }
    local ok = nh.wait_for(function()
      local _, h = ng:json("GET", "/integration/health")
      return type(h) == "table" and h.ready and h.live_events
    end, 30)
    assert(ok, "not ready:\n" .. ng:error_log())
  end)

  teardown(function()
    nh.stop_all()
    fake.stop_all()
    ehelp.stop_all()
    os.execute("rm -rf " .. ehelp.shell_quote(jdir))
  end)

  local function hook(body, secret)
    local status, text = ng:http("POST", "/integration/items", { body = body,
      headers = { ["X-Secret"] = secret or SECRET } })
    return status, json.decode(text) or text
  end

  local function ids()
    local out = {}
    for _, e in ipairs(emu.entities("specItem")) do out[e.identifier] = e end
    return out
  end

  -- GET /metrics: the live-event samples, as the workers last fed them
  -- (each at least every second), summed in the shared dict
  local function live_metrics()
    local status, text = ng:http("GET", "/metrics")
    assert.are.equal(200, status)
    local r = prom.parse(text)
    return { queued = prom.value(r, "ocean_live_events_total", { state = "queued" }),
             processed = prom.value(r, "ocean_live_events_total", { state = "processed" }),
             failed = prom.value(r, "ocean_live_events_total", { state = "failed" }),
             given_back = prom.value(r, "ocean_live_events_total", { state = "given_back" }),
             unknown_kind = prom.value(r, "ocean_live_events_total", { state = "unknown_kind" }),
             depth = prom.value(r, "ocean_journal_depth") }
  end

  local function journals()
    local out = {}
    for name in ehelp.sh("ls " .. ehelp.shell_quote(jdir) .. " 2>/dev/null"):gmatch("[^\n]+") do
      if name:match("%.sqlite3$") then out[#out + 1] = name end
    end
    table.sort(out)
    return out
  end

  it("answers ok, 401 and 400, applies in a timer, and keeps one journal that one worker applies", function()
    local status, body = hook { item = { id = "n1", name = "Nginx one", size = 1 } }
    assert.are.same({ 200, { status = "ok" } }, { status, body })
    status, body = hook({ item = { id = "n2" } }, "forged")
    assert.are.same({ 401, { status = "error", message = "authentication failed" } }, { status, body })
    status, body = hook { item = { size = 3 } }
    assert.are.same({ 400, { status = "error", message = "invalid payload" } }, { status, body })
    assert(nh.wait_for(function() return ids().n1 end, 15), "n1 not applied:\n" .. ng:error_log())
    assert.is_nil(ids().n2)
    assert.are.same({ "Nginx one", 1 }, { ids().n1.title, ids().n1.properties.size })
    assert.are.same({ "spec-live-nginx.sqlite3" }, journals())
    -- one event journaled and applied, by whichever worker: the sum
    assert(nh.wait_for(function()
      local m = live_metrics()
      return m.queued == 1 and m.processed == 1 and m.depth == 0
    end, 10), "live metrics: " .. json.encode(live_metrics()))
    assert.are.equal(0, live_metrics().failed)
    assert.are.same({ 0, 0 }, { live_metrics().given_back, live_metrics().unknown_kind })
    local pst, ptext = ng:http("GET", "/integration/ping")
    assert.are.same({ 200, '{"pong":true}' }, { pst, ptext })
    hook { action = "deleted", item = { id = "n1" } }
    assert(nh.wait_for(function() return not ids().n1 end, 15), "n1 not deleted")
    -- ocean.hmac in a worker: a GitHub-style signature over the raw body
    signed.check(ng, SECRET, "n3")
    assert(nh.wait_for(function() return ids().n3 end, 15), "n3 not applied:\n" .. ng:error_log())
    assert.truthy(ng:error_log():find("(POST /items) applied in", 1, true))
    -- two workers, one consumer: said once, in the log
    local _, said = ng:error_log():gsub("applies the events every worker receives", "")
    assert.are.equal(1, said)
    -- and in health: whichever worker answers says whether it applies
    local consumers = {}
    for _ = 1, 10 do
      local _, h = ng:json("GET", "/integration/health")
      assert.is_boolean(h.live_events.consumer, json.encode(h.live_events))
      if h.live_events.consumer then consumers[h.pid] = true end
    end
    assert.is_true(#ng:worker_pids() == 2 and next(consumers, next(consumers)) == nil)
  end)

  it("applies the events on one entity in the order they were answered, whichever worker answered", function()
    -- each pair on new connections (curl), so that nginx hands the two
    -- events of an entity to either worker: the older one's handle_event
    -- is slow (1 s: a slow fetch), so the newer one is applied first; it
    -- must stay the last write (superseded), as must a delete after an
    -- upsert
    local N = 16
    for i = 1, N do
      local function ok(status, body)
        assert.are.equal(200, status, json.encode(body) .. "\n" .. ng:error_log():sub(-2000))
      end
      ok(hook { slow_ms = 1000, item = { id = "o" .. i, name = "Old " .. i, size = 1 } })
      if i % 2 == 0 then
        ok(hook { action = "deleted", item = { id = "o" .. i } })
      else
        ok(hook { item = { id = "o" .. i, name = "New " .. i, size = 2 } })
      end
    end
    -- the odd ones end new, the even ones deleted: wait for every event
    -- (each older one reaches the session after its newer one)
    assert(nh.wait_for(function()
      local n = 0
      for a in ng:error_log():gmatch("%(POST /items%) applied in[^\n]*") do
        if a:find("superseded", 1, true) or a:find("nothing matched", 1, true) then n = n + 1 end
      end
      return n >= N
    end, 30, 0.2), "the older events were not all left superseded:\n" .. ng:error_log():sub(-3000))
    local got = ids()
    for i = 1, N do
      if i % 2 == 0 then
        assert.is_nil(got["o" .. i], "o" .. i .. " came back after its delete")
      else
        assert.are.same({ "New " .. i, 2 }, { got["o" .. i] and got["o" .. i].title,
          got["o" .. i] and got["o" .. i].properties.size }, "o" .. i)
      end
    end
  end)

  it("lets ocean journal requeue a dead letter while the workers run: the consumer applies it", function()
    -- Port refuses the entity (422): a dead letter at once
    emu.faults { { method = "POST", path = "/entities/bulk$", body_has = "Poison", status = 422 } }
    assert.are.equal(200, (hook { item = { id = "p1", name = "Poison", size = 1 } }))
    local id
    assert(nh.wait_for(function()
      id = ng:error_log():match("event (%d+) %(POST /items%) is a dead letter")
      return id
    end, 15), "no dead letter:\n" .. ng:error_log():sub(-2000))
    emu.faults()
    assert.is_nil(ids().p1)
    -- the hint names the command, and says it needs no restart
    assert.truthy(ng:error_log():find("--requeue " .. id .. "` sends it again: the workers' consumer "
      .. "applies it at once", 1, true), ng:error_log():sub(-2000))
    local _, h = ng:json("GET", "/integration/health")
    assert.are.equal(1, h.live_events.dead)
    local listed = sail.run({ "journal", "--dir", jdir })
    assert.are.equal(0, listed.rc, listed.err)
    assert.truthy(listed.out:find("spec-live-nginx.sqlite3: 0 pending, 1 dead letter(s)", 1, true), listed.out)
    local r = sail.run({ "journal", "--dir", jdir, "--requeue", id })
    assert.are.equal(0, r.rc, r.out .. r.err)
    assert(nh.wait_for(function() return ids().p1 end, 10), "the requeued event was not applied:\n"
      .. ng:error_log():sub(-2000))
    _, h = ng:json("GET", "/integration/health")
    assert.are.equal(0, h.live_events.dead)
  end)

  it("applies, after the workers are SIGKILLed mid-burst, every event answered 2xx (another takes over)", function()
    emu.faults { { method = "POST", path = "/entities/bulk$", delay_ms = 1500 } }
    local reqs = {}
    for i = 1, 5000 do
      reqs[i] = { url = ng.url .. "/integration/items", tag = "w" .. i,
        headers = { ["Content-Type"] = "application/json", ["X-Secret"] = SECRET },
        body = json.encode { item = { id = "w" .. i, name = "Worker " .. i, size = i } } }
    end
    local function bulks()
      local n = 0
      for _, r in ipairs(emu.requests()) do
        if r.method == "POST" and r.path:match("/entities/bulk$") then n = n + 1 end
      end
      return n
    end
    local bulks_before = bulks()
    local before_pids = ng:worker_pids()
    local b = burst.start(reqs, { parallel = 50 })
    -- curl buffers its report: kill once the first bulk upsert reached
    -- Port (held 1.5 s there, so what was answered is still pending in a
    -- journal), whatever the machine's load
    assert(nh.wait_for(function() return bulks() > bulks_before end, 30, 0.05),
      "no bulk upsert reached Port")
    local mid = not b.done()
    -- both workers: whichever holds the pending events (nginx may have
    -- given every connection to one) dies with them
    for _, pid in ipairs(before_pids) do os.execute("kill -KILL " .. pid) end
    local results = b.wait(90)
    b.cleanup()
    emu.faults()
    assert.is_true(mid, "the burst ended before the kill")
    local answered, failed = {}, 0
    for _, r in ipairs(results) do
      if r.status == 200 then answered[#answered + 1] = r.tag else failed = failed + 1 end
    end
    io.stderr:write(("\n[nginx workers killed mid-burst: %d answered 2xx, %d not]\n")
      :format(#answered, failed))
    assert.is_true(#answered >= 100)
    -- the master starts new workers, one of which takes the consumer's
    -- lock (the dead one's went with it) and releases its claims
    assert(nh.wait_for(function()
      local got = ids()
      for _, tag in ipairs(answered) do if not got[tag] then return false end end
      return true
    end, 90, 0.5), "answered events missing:\n" .. ng:error_log():sub(-3000))
    local got = ids()
    for _, tag in ipairs(answered) do
      local n = tonumber(tag:sub(2))
      assert.are.same({ "Worker " .. n, n }, { got[tag].title, got[tag].properties.size })
    end
    assert.are.same({ "spec-live-nginx.sqlite3" }, journals())
    local taken = 0
    for n in ng:error_log():gmatch("applies the events every worker receives %(journal [^\n]-: (%d+) pending") do
      taken = taken + tonumber(n)
    end
    assert.is_true(taken > 0, "no pending event at the takeover")
    -- the dead consumer's share of the journal depth goes at the takeover:
    -- the new one counts those events, then applies them
    assert(nh.wait_for(function() return live_metrics().depth == 0 end, 10),
      "journal depth: " .. json.encode(live_metrics()))
    assert.is_true(live_metrics().processed >= 1)
    local new_pids = ng:worker_pids()
    assert.are.equal(2, #new_pids)
    assert.are_not.same(before_pids, new_pids)
  end)

  it("runs ocean.map within its bound in a request, and inside a resync generator", function()
    api.call("DELETE", "/_slow")
    local status, text = ng:http("GET", "/integration/gather?n=60&c=6&url=" .. api.url)
    assert.are.equal(200, status, text)
    local ids_got = json.decode(text).ids
    assert.are.equal(60, #ids_got)
    assert.are.same({ "1", "60" }, { ids_got[1], ids_got[60] })
    local _, c = api.call("GET", "/_slow")
    assert.are.same({ 60, 6, 0 }, { c.served, c.max_in_flight, c.in_flight })
    -- the resync's generator maps pages of 10 with ocean.map, 5 at a time
    api.call("DELETE", "/_slow")
    local st = ng:json("POST", "/integration/resync")
    assert.are.equal(202, st)
    assert(nh.wait_for(function()
      local _, h = ng:json("GET", "/integration/health")
      return type(h) == "table" and type(h.last_resync) == "table" and h.running == false
        and h.last_resync
    end, 30), "resync:\n" .. ng:error_log():sub(-2000))
    -- the earlier specs' entities are owned and not in this resync:
    -- deleting them all is over entityDeletionThreshold, so the deletion
    -- is skipped, which --once says as "completed with failures" (exit 3)
    local _, h = ng:json("GET", "/integration/health")
    assert.are.same({ "completed with failures", 0 }, { h.last_resync.status, h.last_resync.failed },
      json.encode(h.last_resync))
    assert.truthy(ng:error_log():find("deletion skipped", 1, true))
    local got = ids()
    for i = 1, 20 do assert.are.equal("Resynced r" .. i, got["r" .. i].title) end
    _, c = api.call("GET", "/_slow")
    assert.are.same({ 20, 5 }, { c.served, c.max_in_flight })
  end)
end)

describe("requests in one nginx worker #nginx", function()
  local emu, ng, jdir

  setup(function()
    emu = ehelp.start { quiet = true }
    jdir = ehelp.tmpdir()
    os.execute("chmod 777 " .. ehelp.shell_quote(jdir))
    -- the live session's window at its maximum (1 s), so that three
    -- requests started together land in one coalesced batch under load
    ng = nh.start { emu = emu, workers = 1, integration = LIVE, identifier = "spec-live-one", env = {
      OCEAN__INTEGRATION__CONFIG__WEBHOOK_SECRET = SECRET,
      OCEAN__LIVE_EVENTS__JOURNAL_DIR = jdir,
      OCEAN__LIVE_EVENTS__WINDOW_MS = "1000",
    } }
    nh.wait_ready(ng)
  end)

  teardown(function()
    nh.stop_all()
    ehelp.stop_all()
    os.execute("rm -rf " .. ehelp.shell_quote(jdir))
  end)

  it("never wait behind one another's Port call, and health answers at once", function()
    emu.clear_requests()
    emu.faults { { method = "POST", path = "/entities/bulk$", delay_ms = 3000 } }
    local hooks = {}
    for i = 1, 3 do
      hooks[i] = ng:background("POST", "/integration/register",
        json.encode { id = "c" .. i, name = "Concurrent " .. i })
    end
    -- the live session coalesces the three upserts into one bulk request
    assert(nh.wait_for(function() return #emu.bulk_upserts() > 0 end, 10, 0.05), "a bulk upsert in flight")
    local code, seconds = ng:timed("GET", "/integration/health")
    assert.are.equal(200, code)
    assert.is_true(seconds < 1, "health took " .. seconds .. " s")
    for i, done in ipairs(hooks) do
      local status, t = nh.wait_for(done, 20)
      assert.are.equal(200, status)
      -- Port held once (3 s, plus at most the 1 s window), never 6 or 9 s
      assert.is_true(t >= 2.9 and t < 5.5, ("request %d took %.2f s"):format(i, t))
    end
    emu.faults()
    local sent = emu.bulk_upserts()
    assert.are.equal(1, #sent, "one bulk request for the three requests")
    assert.are.equal(3, sent[1].entities)
    assert.are.equal(3, #emu.entities("specItem"))
  end)
end)

describe("a graceful stop of nginx while Port is slow #nginx", function()
  local emu, jdir

  setup(function()
    emu = ehelp.start { quiet = true }
    jdir = ehelp.tmpdir()
    os.execute("chmod 777 " .. ehelp.shell_quote(jdir))
  end)

  teardown(function()
    nh.stop_all()
    ehelp.stop_all()
    os.execute("rm -rf " .. ehelp.shell_quote(jdir))
  end)

  local function start(metrics)
    local ng = nh.start { emu = emu, workers = 1, integration = LIVE, identifier = "spec-live-quit", env = {
      OCEAN__INTEGRATION__CONFIG__WEBHOOK_SECRET = SECRET,
      OCEAN__LIVE_EVENTS__JOURNAL_DIR = jdir,
      OCEAN__LIVE_EVENTS__MAX_ATTEMPTS = "1",   -- one counted attempt would be a dead letter
      OCEAN__METRICS__ENABLED = metrics and "true" or nil,
    } }
    assert(nh.wait_for(function()
      local _, h = ng:json("GET", "/integration/health")
      return type(h) == "table" and h.ready and h.live_events
    end, 30), "not ready:\n" .. ng:error_log())
    return ng
  end

  it("gives the events being applied back to the journal: no attempt counted, applied at the next start", function()
    local ng = start()
    -- held longer than the worker's exit grace (runtime.EXIT_GRACE_MS, 10 s)
    emu.faults { { method = "POST", path = "/entities/bulk$", delay_ms = 15000 } }
    for i = 1, 3 do
      local status, text = ng:http("POST", "/integration/items", { headers = { ["X-Secret"] = SECRET },
        body = json.encode { item = { id = "q" .. i, name = "Quit " .. i, size = i } } })
      assert.are.same({ 200, { status = "ok" } }, { status, json.decode(text) })
    end
    assert(nh.wait_for(function() return #emu.bulk_upserts() > 0 end, 10, 0.05), "no bulk upsert in flight")
    local final = ng:stop()              -- nginx -s quit, waits for the worker
    assert.is_nil(final:find("is a dead letter", 1, true), final)
    assert.is_nil(final:find("cannot schedule", 1, true), final)
    assert.is_nil(final:find("[error]", 1, true), final)
    local given = 0
    for _ in final:gmatch("given back to the journal for the next start %(not counted as an attempt%): "
      .. "the nginx worker is exiting") do given = given + 1 end
    assert.are.equal(3, given, final)
    assert.truthy(final:find("live events: 3 event(s) stay in the journal for the worker that applies "
      .. "next (after a reload, a new one; else at the next start) (3 of them were being applied: given "
      .. "back, not counted as attempts)", 1, true), final)
    -- the journal: three pending events, none claimed, no attempt counted
    local j = assert(require("ocean.journal").open(("%s/spec-live-quit.sqlite3"):format(jdir)))
    local st = j:stats()
    local pending = assert(j:pending())
    j:close()
    assert.are.same({ 3, 0, 0 }, { st.pending, st.claimed, st.dead })
    for _, ev in ipairs(pending) do assert.are.equal(0, ev.attempts) end
    -- the next start applies them, at their one attempt
    emu.faults()
    local ng2 = start()
    assert(nh.wait_for(function() return #emu.entities("specItem") == 3 end, 30),
      "not applied after the restart:\n" .. ng2:error_log())
    local log2 = ng2:error_log()
    assert.truthy(log2:find("applies the events every worker receives (journal " .. jdir
      .. "/spec-live-quit.sqlite3: 3 pending, 0 dead letter(s))", 1, true), log2)
    assert.is_nil(log2:find("is a dead letter", 1, true), log2)
    assert.is_nil(log2:find("became dead letters", 1, true), log2)
    ng2:stop()
  end)

  it("cuts a long ocean.sleep in handle_event short as the worker exits: given back, not waited for", function()
    local ng = start()
    local status = ng:http("POST", "/integration/items", { headers = { ["X-Secret"] = SECRET },
      body = json.encode { slow_ms = 60000, item = { id = "s1", name = "Sleeper", size = 1 } } })
    assert.are.equal(200, status)
    assert(nh.wait_for(function()
      local _, h = ng:json("GET", "/integration/health")
      return type(h) == "table" and h.live_events and h.live_events.running == 1
    end, 10), "not being applied:\n" .. ng:error_log())
    -- a newer event, applied while the older one sleeps
    status = ng:http("POST", "/integration/items", { headers = { ["X-Secret"] = SECRET },
      body = json.encode { item = { id = "s2", name = "Quick", size = 2 } } })
    assert.are.equal(200, status)
    assert(nh.wait_for(function()
      for _, e in ipairs(emu.entities("specItem")) do if e.identifier == "s2" then return true end end
    end, 10), "s2 not applied:\n" .. ng:error_log())
    local t0 = os.time()
    local final = ng:stop()              -- nginx -s quit: the sleep gives up after the grace (10 s)
    assert.is_true(os.time() - t0 < 18, "quit took " .. (os.time() - t0) .. " s")
    assert.truthy(final:find("given back to the journal for the next start (not counted as an attempt): "
      .. "the nginx worker is exiting", 1, true), final)
    assert.is_nil(final:find("is a dead letter", 1, true), final)
    -- pending for the next start, with its attempt given back; dropped
    -- here, so that the next spec's nginx does not sleep on it
    local j = assert(require("ocean.journal").open(jdir .. "/spec-live-quit.sqlite3"))
    local pending = assert(j:pending())
    assert.are.same({ 1, 0 }, { #pending, pending[1].attempts })
    -- the newer event's write is kept for the next process: it leaves the
    -- older one's write of s2 out, whichever applies it
    local marks, kept = assert(j:marks(0)), {}
    for i = 1, #marks, 2 do kept[marks[i]] = true end
    assert.is_true(kept["specItem\0s2"], json.encode(marks))
    assert.is_true(j:done(pending[1].id))
    j:close()
  end)

  it("counts the claims given back at a reload in ocean_live_events_total{state=\"given_back\"}", function()
    local ng = start(true)
    emu.faults { { method = "POST", path = "/entities/bulk$", delay_ms = 15000, count = 1 } }
    for i = 1, 2 do
      local status = ng:http("POST", "/integration/items", { headers = { ["X-Secret"] = SECRET },
        body = json.encode { item = { id = "r" .. i, name = "Reload " .. i, size = i } } })
      assert.are.equal(200, status)
    end
    assert(nh.wait_for(function() return #emu.bulk_upserts() > 0 end, 10, 0.05), "no bulk upsert in flight")
    local function state(name)
      local _, text = ng:http("GET", "/metrics")
      return prom.value(prom.parse(text), "ocean_live_events_total", { state = name })
    end
    assert.are.equal(0, state("given_back"))
    ng:reload()    -- the old worker gives its claims back as it exits; the dict outlives it
    assert(nh.wait_for(function() return state("given_back") == 2 end, 30),
      "given_back: " .. tostring(state("given_back")) .. "\n" .. ng:error_log())
    -- the new worker takes the consumer's lock and applies them
    assert(nh.wait_for(function()
      local n = 0
      for _, e in ipairs(emu.entities("specItem")) do
        if e.identifier == "r1" or e.identifier == "r2" then n = n + 1 end
      end
      return n == 2
    end, 30), "not applied after the reload:\n" .. ng:error_log())
    emu.faults()
    ng:stop()
  end)
end)

describe("events applied at once in nginx, past its running timers #nginx", function()
  local emu, ng, jdir

  setup(function()
    emu = ehelp.start { quiet = true }
    jdir = ehelp.tmpdir()
    os.execute("chmod 777 " .. ehelp.shell_quote(jdir))
    -- more events at once than nginx runs timers (lua_max_running_timers:
    -- 256 by default), each slow: the worker starts at most TIMER_ROOM
    ng = nh.start { emu = emu, workers = 1, integration = LIVE, identifier = "spec-live-timers", env = {
      OCEAN__INTEGRATION__CONFIG__WEBHOOK_SECRET = SECRET,
      OCEAN__LIVE_EVENTS__JOURNAL_DIR = jdir,
      OCEAN__LIVE_EVENTS__CONCURRENCY = "400",
    } }
    nh.wait_ready(ng)
  end)

  teardown(function()
    nh.stop_all()
    ehelp.stop_all()
    os.execute("rm -rf " .. ehelp.shell_quote(jdir))
  end)

  it("starts no more than nginx can run: every webhook answered, every event applied", function()
    local reqs = {}
    for i = 1, 600 do
      reqs[i] = { url = ng.url .. "/integration/items", tag = "t" .. i,
        headers = { ["Content-Type"] = "application/json", ["X-Secret"] = SECRET },
        body = json.encode { slow_ms = 1500, item = { id = "t" .. i, name = "Timer " .. i, size = i } } }
    end
    local results = burst.start(reqs, { parallel = 100 }).wait(120)
    local ok = 0
    for _, r in ipairs(results) do if r.status == 200 then ok = ok + 1 end end
    assert.are.equal(600, ok, ng:error_log():sub(-2000))
    assert(nh.wait_for(function() return #emu.entities("specItem") == 600 end, 60, 0.5),
      "applied: " .. #emu.entities("specItem") .. "\n" .. ng:error_log():sub(-2000))
    local log = ng:error_log()
    assert.is_nil(log:find("lua_max_running_timers are not enough", 1, true), log:sub(-2000))
    assert.is_nil(log:find("not journaled", 1, true))
    assert.truthy(log:find("OCEAN__LIVE_EVENTS__CONCURRENCY is 400, but in nginx each event is applied "
      .. "in a timer and at most 200 run at once", 1, true))
    local _, h = ng:json("GET", "/integration/health")
    assert.are.same({ 0, 0 }, { h.live_events.running, h.live_events.pending })
  end)
end)

describe("a consumer's lock nginx's workers cannot take #nginx", function()
  local emu, jdir
  local core = require "ocean.core"

  setup(function()
    emu = ehelp.start { quiet = true }
    jdir = ehelp.tmpdir()
    os.execute("chmod 777 " .. ehelp.shell_quote(jdir))
  end)

  teardown(function()
    nh.stop_all()
    ehelp.stop_all()
    os.execute("rm -rf " .. ehelp.shell_quote(jdir))
  end)

  it("is said by health (503) and the log once events wait; they are applied once it is free", function()
    -- another process (here: this one) holds the lock before nginx starts
    local lock = jdir .. "/spec-live-stall-consumer.lock"
    local fd = assert(core.journal_lock(lock))
    os.execute("chmod 666 " .. ehelp.shell_quote(lock))
    local ng = nh.start { emu = emu, workers = 1, integration = LIVE, identifier = "spec-live-stall", env = {
      OCEAN__INTEGRATION__CONFIG__WEBHOOK_SECRET = SECRET,
      OCEAN__LIVE_EVENTS__JOURNAL_DIR = jdir,
      OCEAN__LIVE_EVENTS__STALL_SECONDS = "2",
    } }
    nh.wait_ready(ng)
    local status = ng:http("POST", "/integration/items", { headers = { ["X-Secret"] = SECRET },
      body = json.encode { item = { id = "st1", name = "Stalled", size = 1 } } })
    assert.are.equal(200, status)
    local h
    assert(nh.wait_for(function()
      local st
      st, h = ng:json("GET", "/integration/health")
      return st == 503
    end, 15), "health never said it:\n" .. ng:error_log():sub(-2000))
    assert.matches("live events: no worker has applied a live event for %d+ s %(1 pending, none being "
      .. "applied%): is the consumer's lock " .. jdir:gsub("%p", "%%%0") .. "/spec%-live%-stall%-consumer%.lock "
      .. "held by a process that is not an nginx worker", h.error)
    assert.is_false(h.live_events.consumer)
    assert(nh.wait_for(function()
      return ng:error_log():find("[warn]", 1, true) and ng:error_log():find("no worker has applied", 1, true)
    end, 10), ng:error_log():sub(-2000))
    assert.are.equal(0, #emu.entities("specItem"))
    -- freed: a worker takes it within a second and applies the event
    core.journal_unlock(fd)
    assert(nh.wait_for(function() return #emu.entities("specItem") == 1 end, 10),
      "not applied once the lock was free:\n" .. ng:error_log():sub(-2000))
    local st2, h2 = ng:json("GET", "/integration/health")
    assert.are.same({ 200, true }, { st2, h2.live_events.consumer })
    ng:stop()
  end)
end)

describe("a consumer SIGKILLed while an older event is applied #nginx", function()
  local emu, jdir

  setup(function()
    emu = ehelp.start { quiet = true }
    jdir = ehelp.tmpdir()
    os.execute("chmod 777 " .. ehelp.shell_quote(jdir))
  end)

  teardown(function()
    nh.stop_all()
    ehelp.stop_all()
    os.execute("rm -rf " .. ehelp.shell_quote(jdir))
  end)

  it("leaves the newer event's write: the next consumer knows it from the journal", function()
    local ng = nh.start { emu = emu, workers = 1, integration = LIVE, identifier = "spec-live-marks", env = {
      OCEAN__INTEGRATION__CONFIG__WEBHOOK_SECRET = SECRET,
      OCEAN__LIVE_EVENTS__JOURNAL_DIR = jdir,
    } }
    nh.wait_ready(ng)
    local function hook(body)
      return (ng:http("POST", "/integration/items", { headers = { ["X-Secret"] = SECRET },
        body = json.encode(body) }))
    end
    local function title()
      for _, e in ipairs(emu.entities("specItem")) do if e.identifier == "k1" then return e.title end end
    end
    -- the older events' handle_event is slow; the newer ones are applied
    -- first: an upsert of k1, a delete of k2 (which Port does not hold)
    assert.are.equal(200, hook { slow_ms = 5000, item = { id = "k1", name = "Old", size = 1 } })
    assert.are.equal(200, hook { slow_ms = 5000, item = { id = "k2", name = "Old", size = 1 } })
    assert(nh.wait_for(function()
      local _, h = ng:json("GET", "/integration/health")
      return type(h) == "table" and h.live_events and h.live_events.running == 2
    end, 10), "the older events are not being applied:\n" .. ng:error_log())
    assert.are.equal(200, hook { item = { id = "k1", name = "New", size = 2 } })
    assert.are.equal(200, hook { action = "deleted", item = { id = "k2" } })
    assert(nh.wait_for(function() return title() == "New" end, 10), "New not applied:\n" .. ng:error_log())
    assert(nh.wait_for(function()
      return ng:error_log():find("not deleting specItem/k2", 1, true)
    end, 10), "the delete of k2 not applied:\n" .. ng:error_log())
    local pid = ng:worker_pids()[1]
    os.execute("kill -KILL " .. pid)
    -- the master starts another worker: it takes over, releases the older
    -- event's claim and applies it, knowing what the dead one wrote
    assert(nh.wait_for(function()
      local _, h = ng:json("GET", "/integration/health")
      return type(h) == "table" and h.pid ~= pid and h.live_events and h.live_events.pending == 0
    end, 30), "the older event was not applied again:\n" .. ng:error_log():sub(-3000))
    local log = ng:error_log()
    assert.truthy(log:find("the latest writers of 2 entities loaded from", 1, true), log:sub(-3000))
    local _, superseded = log:gsub("1 left as a newer event wrote them %(superseded%)", "")
    assert.are.equal(2, superseded, log:sub(-3000))
    assert.are.equal("New", title())
    for _, e in ipairs(emu.entities("specItem")) do assert.are_not.equal("k2", e.identifier) end
    ng:stop()
  end)
end)
