-- Live events in a real `ocean sail` (spec/fixtures/live: a webhook
-- processor on /items): the whole flow over HTTP, and durability: a burst
-- of webhooks, `ocean sail` SIGKILLed in the middle of it, a restart, and
-- every event answered 2xx is in Port once the journal is replayed.
local json = require "ocean.json"
local journal = require "ocean.journal"
local burst = require "spec.helpers.burst"
local ehelp = require "spec.helpers.emulator"
local sail = require "spec.helpers.sail"
local signed = require "spec.helpers.signed"

local LIVE = ehelp.root() .. "/spec/fixtures/live"
local SECRET = "hush-hush-webhook-secret"

describe("ocean sail with a webhook processor", function()
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

  local function start(journal_dir, extra, no_wait)
    local env = sail.emulator_env(emu, {
      OCEAN__INTEGRATION__IDENTIFIER = "spec-live",
      OCEAN__INTEGRATION__CONFIG__WEBHOOK_SECRET = SECRET,
      OCEAN__EVENT_LISTENER__TYPE = "WEBHOOKS_ONLY",
      OCEAN__LIVE_EVENTS__JOURNAL_DIR = journal_dir,
      OCEAN__HTTP__MAX_CONNECTIONS_PER_CLIENT = "0",
    })
    for k, v in pairs(extra or {}) do env[k] = v end
    return sail.serve(LIVE, env, { no_wait = no_wait })
  end

  local function hook(p, body, secret)
    local status, text = p:http("POST", "/integration/items", { body = body,
      headers = { ["X-Secret"] = secret or SECRET } })
    return status, json.decode(text) or text
  end

  local function health(p)
    local status, text = p:http("GET", "/integration/health")
    assert.are.equal(200, status)
    return json.decode(text)
  end

  -- until the emulator has received a bulk upsert
  local function bulk_sent()
    sail.eventually(function()
      for _, r in ipairs(emu.requests()) do
        if r.method == "POST" and r.path:match("/entities/bulk$") then return true end
      end
    end, 10, "the bulk upsert sent")
  end

  local function ids()
    local out = {}
    for _, e in ipairs(emu.entities("specItem")) do out[e.identifier] = e end
    return out
  end

  it("answers ok, 401 and 400 over HTTP, applies in the background, and keeps plain routes", function()
    local p = start(dir .. "/flow")
    local status, body = hook(p, { item = { id = "f1", name = "Flow", size = 1 } })
    assert.are.same({ 200, { status = "ok" } }, { status, body })
    status, body = hook(p, { item = { id = "f2" } }, "wrong")
    assert.are.same({ 401, { status = "error", message = "authentication failed" } }, { status, body })
    status, body = hook(p, { item = { name = "no id" } })
    assert.are.same({ 400, { status = "error", message = "invalid payload" } }, { status, body })
    -- bodies no processor should have to guard against
    for _, text in ipairs { "null", "5", '"x"', "true" } do
      status, body = p:http("POST", "/integration/items", { body = text,
        headers = { ["X-Secret"] = SECRET, ["Content-Type"] = "application/json" } })
      assert.are.same({ 400, { status = "error", message = "the webhook body must be a JSON object or array" } },
        { status, json.decode(body) }, text)
    end
    status, body = p:http("POST", "/integration/items", { headers = { ["X-Secret"] = SECRET } })
    assert.are.same({ 400, { status = "error", message = "the webhook has no body" } },
      { status, json.decode(body) })
    sail.eventually(function() return ids().f1 end, 10, "the event applied")
    assert.is_nil(ids().f2)
    status, body = p:http("GET", "/integration/ping")
    assert.are.same({ 200, '{"pong":true}' }, { status, body })
    local le = health(p).live_events
    assert.are.same({ 1, 1, 0, 0 }, { le.received, le.applied, le.pending, le.dead })
    hook(p, { action = "deleted", item = { id = "f1" } })
    sail.eventually(function() return not ids().f1 end, 10, "the deletion")
    -- a processor that checks a GitHub-style signature over the raw body
    signed.check(p, SECRET, "g1")
    sail.eventually(function() return ids().g1 end, 10, "the signed event applied")
    local rc, _, err = p:stop("TERM")
    assert.are.equal(0, rc)
    assert.truthy(err:find("event 1 (POST /items) applied in", 1, true))
    assert.truthy(err:find("webhook POST /items refused: the body is JSON null, not an object or array (400)",
      1, true), err)
    assert.truthy(err:find("webhook POST /items refused: it has no body (400)", 1, true), err)
    assert.falsy(err:find(SECRET, 1, true))
  end)

  it("waits a moment for its journal held by another handle (ocean journal reading it)", function()
    local jd = ehelp.tmpdir()
    local held = assert(journal.open(jd .. "/spec-live.sqlite3"))
    local p = start(jd, nil, true)
    ehelp.sleep(0.8)                   -- ocean sail is waiting for it meanwhile
    held:close()
    p:wait_ready()
    assert.truthy(health(p).live_events, "live events are not on")
    p:stop()
  end)

  it("reads and compiles the mapping at start, before the first event", function()
    local p = start(ehelp.tmpdir(), { APPLICATION__LOG_LEVEL = "DEBUG" })
    sail.eventually(function()
      return select(2, p:output()):find("live events: 1 resource%(s%) of the mapping compiled in")
    end, 30, "the warm-up's line")
    -- the first event finds it compiled: no compile in its own work
    local status = hook(p, json.encode { action = "upsert", item = { id = "w1", name = "W", size = 1 } })
    assert.are.equal(200, status)
    sail.eventually(function() return ids().w1 end, 30, "w1 applied")
    p:stop()
  end)

  it("on SIGTERM gives the event being applied its grace period, says what it waits for, refuses new ones",
    function()
    emu.reset()
    local p = start(dir .. "/term", { APPLICATION__LOG_LEVEL = "INFO" })
    -- Port holds each bulk upsert 2 s: the event is being applied at the
    -- signal, and a plain route's request is waiting for its write
    emu.faults { { method = "POST", path = "/entities/bulk$", delay_ms = 2000 } }
    local reg = p:background("POST", "/integration/register",
      json.encode { id = "r1", name = "Registered", size = 5 })
    assert.are.equal(200, (hook(p, { item = { id = "t1", name = "Term", size = 3 } })))
    bulk_sent()
    p:signal("TERM")
    sail.eventually(function() return select(2, p:output()):find("SIGTERM received", 1, true) end,
      10, "the signal read")
    -- a webhook that comes during the grace is refused, to be sent again
    local status, body = hook(p, { item = { id = "t2", name = "Late", size = 4 } })
    assert.are.same({ 503, { status = "error", message = "ocean sail is shutting down" } },
      { status, body })
    -- the request under way is answered, not cut
    assert.are.equal(200, (sail.eventually(function() return reg() end, 20, "the route's answer")))
    assert.are.equal(0, p:wait(20))
    local rc, _, err = p:stop()
    emu.faults()
    assert.are.equal(0, rc, err)
    assert.matches("waiting up to 5 s for %d task%(s%) to finish: [^\n]*the live%-event consumer", err)
    assert.is_nil(ids().t2)
    assert.truthy(err:find("1 request(s) that came during the stop were answered 503", 1, true), err)
    assert.truthy(err:find("event 1 (POST /items) applied in", 1, true), err)
    assert.falsy(err:find("did not finish", 1, true), err)
    assert.are.equal("Term", ids().t1.title)
    assert.are.equal("Registered", ids().r1.title)
  end)

  it("says on SIGTERM what it waits for, then that it all finished, then 'stopped'", function()
    emu.reset()
    local p = start(dir .. "/cleanstop", { APPLICATION__LOG_LEVEL = "INFO" })
    -- the event's bulk upsert is held 2 s: applying it is still going on
    -- at the signal, and ends within the 5 s grace
    emu.faults { { method = "POST", path = "/entities/bulk$", delay_ms = 2000, count = 1 } }
    assert.are.equal(200, (hook(p, { item = { id = "c1", name = "Clean", size = 3 } })))
    bulk_sent()
    p:signal("TERM")
    assert.are.equal(0, p:wait(30))
    local rc, _, err = p:stop()
    emu.faults()
    assert.are.equal(0, rc, err)
    local w = err:find("waiting up to 5 s for 2 task(s) to finish: live event, the live-event consumer\n",
      1, true)
    local f = err:find("the 2 task(s) finished\n", 1, true)
    assert.truthy(w, err)
    assert.truthy(f, err)
    assert.is_true(w < f, err)
    assert.is_nil(err:find("did not finish", 1, true), err)
    assert.matches("INFO%s+stopped\n$", err)
    local _, n = err:gsub("INFO%s+stopped\n", "")
    assert.are.equal(1, n, err)
    assert.is_table(ids().c1)
  end)

  it("gives back the claim of an event a SIGTERM cut short: not an attempt, applied at the next start",
    function()
    emu.reset()
    -- one attempt allowed: a stop that counted as one would make the event
    -- a dead letter ("abandoned") at the next start
    local extra = { APPLICATION__LOG_LEVEL = "INFO", OCEAN__LIVE_EVENTS__MAX_ATTEMPTS = "1" }
    local p = start(dir .. "/giveback", extra)
    -- Port holds the bulk upserts past the 5 s grace: the apply is cut
    -- short, and so is a plain route's request writing to Port
    emu.faults { { method = "POST", path = "/entities/bulk$", delay_ms = 8000 } }
    assert.are.equal(200, (hook(p, { item = { id = "g1", name = "Given back", size = 7 } })))
    bulk_sent()
    local reg = p:background("POST", "/integration/register",
      json.encode { id = "r9", name = "Cut short", size = 9 })
    ehelp.sleep(1)        -- its write waits behind the held batch (batches go one at a time)
    p:signal("TERM")
    assert.are.equal(0, p:wait(30))
    -- the request the stop cut short is answered 503, not an empty reply
    assert.are.equal(503, (sail.eventually(function() return reg() end, 20, "the route's answer")))
    local rc, _, err = p:stop()
    emu.faults()
    assert.are.equal(0, rc, err)
    assert.truthy(err:find("did not finish within 5 s", 1, true), err)
    -- the stop's lines in the order things happen; the list of what did not
    -- finish is the waiting line's (both were cut short); "stopped" last
    -- (the consumer ends at the stop: it is waited for, and finishes)
    local waiting = err:match("waiting up to 5 s for 3 task%(s%) to finish: ([^\n]*)\n")
    assert.are.equal("live event, request, the live-event consumer", waiting, err)
    local did_not = err:match("2 task%(s%) did not finish within 5 s, stopping anyway: ([^\n]*)\n")
    assert.are.equal("live event, request", did_not, err)
    assert.is_true(err:find("waiting up to 5 s", 1, true) < err:find("did not finish within", 1, true))
    assert.matches("INFO%s+stopped\n$", err)
    assert.is_nil(err:find("task(s) finished", 1, true), err)
    assert.truthy(err:find("1 request(s) still being handled were answered 503", 1, true), err)
    assert.truthy(err:find("1 event(s) stay in the journal for the next start (1 of them were being "
      .. "applied: given back, not counted as attempts)", 1, true), err)
    emu.reset()
    p = start(dir .. "/giveback", extra)
    sail.eventually(function() return ids().g1 end, 20, "the event applied after the restart")
    local le = health(p).live_events
    assert.are.same({ 0, 0 }, { le.dead, le.pending })
    local _, _, err2 = p:stop()
    assert.truthy(err2:find("1 event(s) pending from before this start, 0 dead letter(s)", 1, true), err2)
    assert.truthy(err2:find("event 1 %(POST /items%) applied in %d+ ms %(attempt 1%)"), err2)
  end)

  it("gives the claim back on a second signal too; a SIGKILL counts it, and the dead letter is an ERROR",
    function()
    emu.reset()
    local extra = { APPLICATION__LOG_LEVEL = "INFO", OCEAN__LIVE_EVENTS__MAX_ATTEMPTS = "1" }
    local function cut(jdir, id, how)
      local p = start(jdir, extra)
      emu.faults { { method = "POST", path = "/entities/bulk$", delay_ms = 8000 } }
      assert.are.equal(200, (hook(p, { item = { id = id, name = "Cut", size = 1 } })))
      bulk_sent()
      if how == "twice" then
        p:signal("TERM")
        sail.eventually(function() return select(2, p:output()):find("SIGTERM received", 1, true) end,
          10, "the first signal read")
        p:signal("TERM")
        assert.are.equal(1, p:wait(20))
      else
        p:signal("KILL")
        p:wait(20)
      end
      local _, _, err = p:stop()
      emu.faults()
      emu.clear_requests()
      return err
    end
    local err = cut(dir .. "/twice", "s1", "twice")
    assert.truthy(err:find("SIGTERM received again: exiting now", 1, true), err)
    assert.truthy(err:find("(1 of them were being applied: given back, not counted as attempts)", 1, true),
      err)
    local p = start(dir .. "/twice", extra)
    sail.eventually(function() return ids().s1 end, 20, "the event applied after the restart")
    assert.are.equal(0, health(p).live_events.dead)
    p:stop()

    cut(dir .. "/killed", "k1", "kill")
    p = start(dir .. "/killed", extra)
    sail.eventually(function() return health(p).live_events.dead == 1 end, 20, "the dead letter")
    local _, _, err2 = p:stop()
    assert.matches("ERROR%s+live events: 1 event%(s%) in [^\n]+ became dead letters: claimed 1 times and "
      .. "never done or failed", err2)
  end)

  it("keeps the events' order per entity when an older one is retried after a newer one", function()
    emu.reset()
    local p = start(dir .. "/order", { APPLICATION__LOG_LEVEL = "INFO" })
    local function applied(n)
      sail.eventually(function()
        local _, err = p:output()
        return select(2, err:gsub("%) applied in", "")) >= n
      end, 30, n .. " event(s) applied")
    end
    local function logged(pattern, what)
      sail.eventually(function() return select(2, p:output()):find(pattern) end, 30, what)
    end
    -- 1, 2: X and Y created. 3: X deleted, but Port fails deletes: retried
    -- after its backoff. 4: X upserted again, applied meanwhile. Port
    -- mends: the retry of 3 must not delete X. Then the other way round:
    -- 5: Y's upsert fails; 6: Y deleted; the retry of 5 must not bring Y
    -- back.
    assert.are.equal(200, (hook(p, { item = { id = "X", name = "X one", size = 1 } })))
    assert.are.equal(200, (hook(p, { item = { id = "Y", name = "Y one", size = 1 } })))
    applied(2)
    emu.faults { { path = "delete", status = 500 }, { method = "DELETE", status = 500 } }
    assert.are.equal(200, (hook(p, { action = "deleted", item = { id = "X" } })))
    logged("event 3 %(POST /items%) failed", "the delete failed")
    assert.are.equal(200, (hook(p, { item = { id = "X", name = "X two", size = 2 } })))
    logged("event 4 %(POST /items%) applied", "X upserted again")
    emu.faults { { method = "POST", path = "/entities/bulk$", status = 500 } }
    logged("event 3 %(POST /items%) applied", "the delete retried")
    assert.are.equal(200, (hook(p, { item = { id = "Y", name = "Y two", size = 2 } })))
    logged("event 5 %(POST /items%) failed", "Y's upsert failed")
    assert.are.equal(200, (hook(p, { action = "deleted", item = { id = "Y" } })))
    logged("event 6 %(POST /items%) applied", "Y deleted")
    emu.faults()
    applied(6)
    local _, _, err = p:stop()
    assert.are.equal("X two", ids().X and ids().X.title, err)
    assert.is_nil(ids().Y, err)
    assert.matches("event 3 %(POST /items%) applied in %d+ ms %(attempt %d%): created 0, updated 0, "
      .. "deleted 0, 1 left as a newer event wrote them %(superseded%)", err)
    assert.matches("event 5 %(POST /items%) applied in %d+ ms %(attempt %d%): created 0, updated 0, "
      .. "deleted 0, 1 left as a newer event wrote them %(superseded%)", err)
  end)

  it("applies every event answered 2xx after a SIGKILL in the middle of a burst and a restart", function()
    emu.reset()
    local jdir = dir .. "/kill"
    local p = start(jdir)
    -- Port is slow: events are journaled and answered long before applied
    emu.faults { { method = "POST", path = "/entities/bulk$", delay_ms = 1500 } }
    local reqs = {}
    for i = 1, 2000 do
      reqs[i] = { url = p.url .. "/integration/items", tag = "k" .. i,
        headers = { ["Content-Type"] = "application/json", ["X-Secret"] = SECRET },
        body = json.encode { item = { id = "k" .. i, name = "Kill " .. i, size = i } } }
    end
    local b = burst.start(reqs, { parallel = 50 })
    sail.eventually(function() return #b.results() >= 100 end, 30, "100 answers")
    p:stop("KILL")
    local results = b.wait(60)
    b.cleanup()
    emu.faults()
    local answered, failed = {}, 0
    for _, r in ipairs(results) do
      if r.status == 200 then answered[#answered + 1] = r.tag else failed = failed + 1 end
    end
    assert.is_true(#answered >= 100, #answered .. " answered")
    assert.is_true(failed > 0, "the kill came after the burst")    -- it was mid-burst
    local before = 0
    for _ in pairs(ids()) do before = before + 1 end
    assert.is_true(before < #answered, "everything was applied before the kill")
    io.stderr:write(("\n[kill mid-burst: %d answered 2xx, %d not, %d applied before the kill]\n")
      :format(#answered, failed, before))
    -- restart: the journal is replayed
    local p2 = start(jdir)
    sail.eventually(function()
      local got = ids()
      for _, tag in ipairs(answered) do if not got[tag] then return false end end
      return health(p2).live_events.pending == 0
    end, 60, "every answered event applied")
    local got = ids()
    for _, tag in ipairs(answered) do
      local n = tonumber(tag:sub(2))
      assert.are.same({ "Kill " .. n, n }, { got[tag].title, got[tag].properties.size })
    end
    -- exactly once in effect: nothing but the burst's items, each once
    local count = 0
    for id in pairs(got) do
      count = count + 1
      assert.matches("^k%d+$", id)
    end
    assert.is_true(count >= #answered and count <= 2000)
    assert.are.equal(0, health(p2).live_events.dead)
    local _, _, err = p2:stop("TERM")
    assert.truthy(err:find("event(s) pending from before this start", 1, true))
  end)
end)
