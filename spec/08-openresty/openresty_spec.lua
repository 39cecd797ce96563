-- The OpenResty adapter end to end: nginx (examples/openresty, one worker)
-- with the bundled Port emulator as Port. nginx runs as a subprocess, so
-- this spec runs the same under either runtime.
local json = require "ocean.json"
local ehelp = require "spec.helpers.emulator"
local nh = require "spec.helpers.nginx"

local ID = nh.IDENTIFIER
local CATALOG = 40                      -- services in the example's catalog (+1 archived)
local DATASOURCE = "port-ocean/services/1.0.0/" .. ID .. "/exporter"

local function by_id(list)
  local out = {}
  for _, e in ipairs(list) do out[e.identifier] = e end
  return out
end

local function count(list)
  local n = 0
  for _ in pairs(list) do n = n + 1 end
  return n
end

local function webhook(action, service)
  return json.encode { action = action, service = service }
end

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

local function resync_state(emu)
  local status, body = emu.api("GET", "/v1/integration/" .. ID)
  assert(status == 200, "GET integration: " .. tostring(status))
  return body.integration.resyncState or {}
end

-- #slow: left out of valgrind runs (nginx is a subprocess: nothing to check there)
describe("ocean.openresty in nginx (one worker) #nginx #slow", function()
  local emu, ng

  -- the health document of the (only) worker
  local function health()
    local status, body = ng:json("GET", "/integration/health")
    assert.are.equal(200, status)
    return body
  end

  -- wait until the resync of generation gen has finished; its summary
  local function finished(gen, seconds)
    return nh.wait_for(function()
      local h = health()
      local last = h.last_resync
      return type(last) == "table" and last.generation == gen and h.running == false and last
    end, seconds or 30)
  end

  setup(function()
    emu = ehelp.start { quiet = true }
    ng = nh.start { emu = emu, workers = 1 }
    local ready = nh.wait_for(function() return health().ready end, 30)
    assert(ready, "the worker did not get ready:\n" .. ng:error_log())
  end)

  teardown(function()
    nh.stop_all()
    ehelp.stop_all()
  end)

  it("bootstraps the integration and blueprint and compiles the mapping before any request", function()
    local status, body = emu.api("GET", "/v1/integration/" .. ID)
    assert.are.equal(200, status)
    assert.are.equal("services", body.integration.installationAppType)
    assert.are.equal("service", body.integration.config.resources[1].kind)
    assert.are.equal(200, (emu.api("GET", "/v1/blueprints/service")))
    local h = health()
    assert.are.equal(1, h.mapping.resources)
    assert.is_false(h.running)
  end)

  it("answers HEAD /integration/health as GET, without a body", function()
    local status, h, rest = ehelp.raw_http(ng.url, "HEAD", "/integration/health")
    assert.are.same({ 200, "application/json", "" }, { status, h["content-type"], rest })
  end)

  it("lands a webhook's entity in Port, mapped, without compiling jq in the request", function()
    local compiles = health().mapping.compiles
    local status, body = ng:json("POST", "/integration/webhook", json.decode(webhook("upsert",
      { name = "svc-hook", lang = "lua", tier = "frontend", team = "team-x", replicas = 3 })))
    assert.are.equal(200, status)
    assert.are.same({ ok = true, created = 1, updated = 0, deleted = 0, failed = 0, errors = {} }, body)
    local e = by_id(emu.entities("service"))["svc-hook"]
    assert.is_table(e)
    assert.are.equal("SVC-HOOK", e.title)
    assert.are.equal(DATASOURCE, e.datasource)
    assert.are.same({ language = "lua", tier = "frontend", owner = "team-x@example.com",
                      replicas = 3, public = true }, e.properties)
    assert.are.equal(compiles, health().mapping.compiles)
  end)

  it("answers 400 to a body that is not JSON and keeps serving", function()
    local pid = health().pid
    local status = ng:json("POST", "/integration/webhook", nil)
    assert.are.equal(422, status)             -- no body: the handler's own answer
    local body
    status, body = ng:http("POST", "/integration/webhook", { body = '{"action": "upsert", ' })
    assert.are.equal(400, status)
    body = json.decode(body)
    assert.are.equal("invalid_json", body.error)
    assert.are.equal(pid, health().pid)
    status = ng:json("POST", "/integration/webhook", json.decode(webhook("upsert",
      { name = "svc-hook", lang = "c", tier = "backend", team = "team-x", replicas = 1 })))
    assert.are.equal(200, status)
    assert.are.equal("c", by_id(emu.entities("service"))["svc-hook"].properties.language)
    status = ng:json("GET", "/integration/no-such-route")
    assert.are.equal(404, status)
  end)

  it("POST /integration/resync answers 202 at once and syncs the catalog in the background", function()
    local compiles = health().mapping.compiles
    local status, body = ng:json("POST", "/integration/resync")
    assert.are.equal(202, status)
    assert.is_true(body.ok)
    assert.is_false(body.aborted_running)
    local last = finished(body.generation)
    assert.is_table(last, "the resync did not finish:\n" .. ng:error_log())
    -- svc-hook is owned and not in the catalog, but it is all that was
    -- owned before: deleting 100% is above entityDeletionThreshold, so the
    -- deletion was skipped: "completed with failures", as --once says it
    -- (and exits 3); Port's resync state has no such word: "completed"
    assert.are.equal("completed with failures", last.status)
    assert.are.equal(CATALOG, last.created)
    assert.are.equal(0, last.deleted)
    local entities = by_id(emu.entities("service"))
    assert.are.equal(CATALOG + 1, count(entities))
    assert.is_table(entities["svc-hook"])
    assert.is_nil(entities["svc-legacy"])         -- archived: filtered by the selector
    assert.are.same({ language = "c", tier = "backend", owner = "team-1@example.com",
                      replicas = 2, public = false }, entities["svc-01"].properties)
    assert.are.equal(DATASOURCE, entities["svc-01"].datasource)
    assert.are.equal("completed", resync_state(emu).status)
    -- the resync used the programs compiled when the worker started
    assert.are.equal(compiles, health().mapping.compiles)
  end)

  it("answers other requests in under 100 ms while a resync and a webhook wait 2 s for Port", function()
    emu.faults { { path = "^/v1/", delay_ms = 2000 } }
    local status, body = ng:json("POST", "/integration/resync")
    assert.are.equal(202, status)
    local gen = body.generation
    local hook = ng:background("POST", "/integration/webhook", webhook("upsert",
      { name = "svc-slow", lang = "go", tier = "data", team = "team-2", replicas = 1 }))
    -- both are waiting on Port now
    assert.truthy(nh.wait_for(function() return health().running end, 5))
    -- measurements taken while the webhook is still waiting (it takes 2 s)
    local times = {}
    for i = 1, 8 do
      local code, t = ng:timed("GET", "/integration/health")
      assert.are.equal(200, code)
      local code2, t2 = ng:timed("GET", "/integration/no-such-route")
      assert.are.equal(404, code2)
      if hook() then break end
      times[#times + 1], times[#times + 2] = t, t2
      if i % 2 == 0 then ehelp.sleep(0.1) end
    end
    assert(#times >= 6, "too few measurements while the webhook waited: " .. #times)
    assert.truthy(health().running)
    for i, t in ipairs(times) do
      assert(t < 0.1, ("request %d took %.3f s (all: %s)"):format(i, t, table.concat(times, ", ")))
    end
    local code, t = nh.wait_for(hook, 30)
    assert.are.equal(200, code)
    assert(t >= 1.9, "the webhook did not wait for Port: " .. tostring(t))
    emu.clear_faults()
    local last = finished(gen, 60)
    assert.is_table(last, "the resync did not finish:\n" .. ng:error_log())
    assert.are.equal("completed", last.status)
  end)

  it("aborts a running resync on nginx -s reload: aborted, nothing deleted, lock released, old worker gone", function()
    -- an owned entity that is not in the catalog: a deletion candidate
    local status = ng:json("POST", "/integration/webhook", json.decode(webhook("upsert",
      { name = "svc-extra", lang = "go", tier = "data", team = "team-2", replicas = 1 })))
    assert.are.equal(200, status)
    local old = ng:worker_pids()
    assert.are.equal(1, #old)
    emu.clear_requests()
    emu.faults { { path = "^/v1/", delay_ms = 2000 } }
    local _, body = ng:json("POST", "/integration/resync")
    local gen = body.generation
    -- wait until Port heard "running": the run is inside its resync
    assert.truthy(nh.wait_for(function() return states(emu)[1] == "running" end, 20),
      "the resync did not report running")
    ng:reload()
    local gone = nh.wait_for(function() return not ehelp.alive(old[1]) end, 30)
    assert.truthy(gone, "the old worker did not exit:\n" .. ng:error_log())
    emu.clear_faults()
    assert.are.same({ "running", "aborted" }, states(emu))
    assert.are.equal("aborted", resync_state(emu).status)
    for _, r in ipairs(emu.requests()) do
      assert.is_nil(r.path:find("delete"), "the aborted run deleted: " .. r.path)
    end
    assert.is_table(by_id(emu.entities("service"))["svc-extra"])
    local h = nh.wait_for(function() local x = health(); return x.ready and x end, 30)
    assert.is_table(h)
    assert.are_not.equal(old[1], h.pid)
    assert.is_false(h.running)                       -- the lock was released
    assert.are.equal(gen, h.last_resync.generation)
    assert.are.equal("aborted", h.last_resync.status)
    assert.are.equal("the nginx worker is exiting", h.last_resync.abort_reason)
    -- a new resync starts and completes; now it deletes the extra entity
    local st2, b2 = ng:json("POST", "/integration/resync")
    assert.are.equal(202, st2)
    local last = finished(b2.generation, 60)
    assert.is_table(last, "the resync after the reload did not finish:\n" .. ng:error_log())
    assert.are.equal("completed", last.status)
    assert.are.equal(1, last.deleted)
    assert.is_nil(by_id(emu.entities("service"))["svc-extra"])
    assert.are.equal(CATALOG, count(by_id(emu.entities("service"))))
    assert.are.same({ "running", "aborted", "running", "completed" }, states(emu))
  end)

  it("stops cleanly: the worker exits and no process is left", function()
    local pids = ng:worker_pids()
    local master = ng.pid
    local log = ng:stop()
    assert.is_false(ehelp.alive(master))
    for _, pid in ipairs(pids) do assert.is_false(ehelp.alive(pid)) end
    assert.is_nil(log:find("%[alert%]"), log)
    assert.is_nil(log:find("%[emerg%]"), log)
    assert.is_nil(log:find("%[crit%]"), log)
    assert.is_nil(log:find("%[error%]"), log)
  end)
end)

-- The health answer's last_resync says how a resync ended in the words
-- `ocean sail --once` prints: one whose entities Port rejected is
-- "completed with failures" (--once exits 3 for it), never "completed".
describe("ocean.openresty's last_resync #nginx #slow", function()
  local ITEMS = ehelp.root() .. "/spec/fixtures/items"

  after_each(function()
    nh.stop_all()
    ehelp.stop_all()
  end)

  it("says 'completed with failures' when Port rejected entities", function()
    local emu = ehelp.start { quiet = true }
    local dir = ehelp.tmpdir()
    ehelp.write_file(dir .. "/items.json", json.encode {
      { id = "a", name = "A", size = 1 }, { id = "bad", name = "Bad", size = "big" } })
    os.execute(("chmod 755 %s && chmod 644 %s/items.json"):format(ehelp.shell_quote(dir),
      ehelp.shell_quote(dir)))                       -- nginx's workers run as nobody
    local ng = nh.start { emu = emu, workers = 1, integration = ITEMS, identifier = "spec-items-nginx",
                          env = { OCEAN__INTEGRATION__CONFIG__ITEMS_FILE = dir .. "/items.json" } }
    local function health()
      local _, h = ng:json("GET", "/integration/health")
      return type(h) == "table" and h or {}
    end
    assert(nh.wait_for(function() return health().ready end, 30), ng:error_log())
    assert.are.equal(202, (ng:json("POST", "/integration/resync")))
    local last = nh.wait_for(function()
      local h = health()
      return type(h.last_resync) == "table" and h.running == false and h.last_resync
    end, 30)
    assert(last, "the resync did not finish:\n" .. ng:error_log())
    assert.are.same({ "completed with failures", 1, 1 }, { last.status, last.created, last.failed },
      json.encode(last))
    assert.are.same({ "a" }, (function()
      local ids = {}
      for _, e in ipairs(emu.entities("specItem")) do ids[#ids + 1] = e.identifier end
      return ids
    end)())
    os.execute("rm -rf " .. ehelp.shell_quote(dir))
  end)
end)
