-- Port's own faults during a resync (issue 10, findings A1..A8 of the
-- fail-fix trial): Port going down mid-resync stops the run promptly,
-- a listing whose cursor repeats ends with a clear error, deletions Port
-- did not do are counted (and the exit status says so), a deletion whose
-- answer was lost counts as done when the retry finds the entity gone,
-- Retry-After is read as RFC 9110 says, and a token refresh is said.
-- Against the emulator; the log is captured through ocean.log's sink.
local ehelp = require "spec.helpers.emulator"
local oh = require "spec.helpers.ocean"
local json = require "ocean.json"
local log = require "ocean.log"
local sail = require "ocean.sail"

local BLUEPRINTS = {
  { identifier = "team", title = "Team", schema = { properties = {} } },
  { identifier = "service", title = "Service", schema = { properties = {} } },
}

local function resource(kind)
  return { kind = kind, selector = { query = "true" },
    port = { entity = { mappings = { identifier = ".id", title = ".name",
                                     blueprint = '"' .. kind .. '"' } } } }
end

local function list(prefix, n)
  local out = {}
  for i = 1, n do out[i] = { id = prefix .. "-" .. i, name = prefix .. " " .. i } end
  return out
end

local function capture(level, fn)
  local lines, old = {}, log.level()
  log.set_sink(function(lv, line) lines[#lines + 1] = lv .. " " .. line end)
  log.set_level(level)
  local ok, err = pcall(fn)
  log.set_sink(nil)
  log.set_level(old)
  assert(ok, err)
  return lines
end

local function grep(lines, pattern, plain)
  local out = {}
  for _, l in ipairs(lines) do
    if l:find(pattern, 1, plain ~= false) then out[#out + 1] = l end
  end
  return out
end

describe("Port's faults during a resync", function()
  local emu, ocean, data

  setup(function() emu = ehelp.start() end)
  teardown(function() ehelp.stop_all() end)

  -- settings: a function changing the settings
  local function start(settings)
    emu.reset()
    emu.faults()
    local _
    _, ocean = oh.setup(emu, { blueprints = BLUEPRINTS, mapping = {
      deleteDependentEntities = true, resources = json.array { resource "team", resource "service" } } })
    if settings then
      local s = oh.settings(emu)
      settings(s)
      assert(ocean.init { settings = s })
    end
    data = { team = list("team", 2), service = list("svc", 10) }
    ocean.on_resync("team", function() return data.team end)
    ocean.on_resync("service", function() return data.service end)
  end

  local function count(bp)
    return #emu.entities(bp)
  end

  local function requests(pattern)
    local n = 0
    for _, r in ipairs(emu.requests()) do
      if r.path:find(pattern) then n = n + 1 end
    end
    return n
  end

  it("stops the resync promptly once Port is unreachable: no second round, nothing deleted",
    function()
      start(function(s) s.port.retry = { max_attempts = 3, base_delay_ms = 5,
                                         max_total_wait_ms = 400 } end)
      assert.is_true(ocean.sync_raw_all().ok)
      data.service = list("svc", 400)                    -- 20 batches
      table.remove(data.service, 1)                      -- svc-1 would be deleted
      emu.clear_requests()
      -- no answer at all (as when Port is down): the connection is closed
      emu.faults { { method = "POST", path = "/service/entities/bulk$", drop = true } }
      local s
      local lines = capture("INFO", function() s = ocean.sync_raw_all() end)
      emu.faults()
      assert.are.same({ false, "failed", 0 }, { s.ok, s.outcome, s.deleted })
      local e = table.concat(s.errors, "\n")
      assert.truthy(e:find("resync failed: Port is unreachable: POST /v1/blueprints/service/"
        .. "entities/bulk gave up after 3 attempts", 1, true) and e:find("Empty reply from server",
        1, true), e)
      assert.truthy(e:find("nothing was deleted", 1, true), e)
      -- at most the 20 batches' own 3 attempts (those already in flight
      -- when the first gave up; later ones fail at once), and no second
      -- round: the end-of-resync retry of failed upserts did not run
      local n = requests("/service/entities/bulk$")
      assert.is_true(n >= 3 and n <= 60, tostring(n))
      assert.are.equal(0, #grep(lines, "retried %d+ failed upserts", false))
      assert.are.equal(10, count("service"))             -- svc-1 stays
    end)

  it("does not take a 5xx after the retries for Port down: those entities are rejections",
    function()
      start(function(s) s.port.retry = { max_attempts = 2, base_delay_ms = 5 } end)
      emu.faults { { method = "POST", path = "/service/entities/bulk$", status = 503 } }
      local s = ocean.sync_raw_all()
      emu.faults()
      assert.are.same({ true, "partial", 10 }, { s.ok, s.outcome, s.failed })
      assert.is_nil(ocean.engine().core_port:unreachable())
    end)

  it("fails the owned listing when Port repeats a cursor; deletion skipped, counts 'unknown'",
    function()
      start()
      assert.is_true(ocean.sync_raw_all().ok)
      table.remove(data.service, 1)
      emu.clear_requests()
      emu.faults { { method = "POST", path = "datasource%-entities", status = 200,
                     body = { ok = true, entities = json.array {}, next = "loop" } } }
      local s
      local lines = capture("INFO", function() s = ocean.sync_raw_all() end)
      emu.faults()
      assert.are.equal(2, requests("datasource%-entities"))   -- first page, "loop", then stop
      assert.are.same({ 0, 11, 0 }, { s.created, s.unknown, s.deleted })
      assert.are.equal(1, #grep(lines, "WARNING deletion skipped: could not read the entities "
        .. "this integration owns: Port POST /v1/blueprints/entities/datasource-entities failed: "
        .. "Port returned the same next cursor twice ('loop', after 2 pages)"))
      assert.are.equal(10, count("service"))
    end)

  it("counts deletions Port did not do: outcome partial, exit status 3, each one said", function()
    start()
    assert.is_true(ocean.sync_raw_all().ok)
    for _ = 1, 3 do table.remove(data.service) end
    emu.faults { { method = "POST", path = "/bulk/entities/delete$", status = 500 } }
    local s
    local lines = capture("INFO", function() s = ocean.sync_raw_all() end)
    emu.faults()
    assert.are.same({ true, "partial", 0, 3, 0 }, { s.ok, s.outcome, s.deleted, s.delete_failed,
                                                    s.failed })
    assert.are.equal(3, sail.exit_status(s))
    assert.are.equal(3, #grep(lines, "^WARNING could not delete service/svc%-%d+: Port POST "
      .. "/v1/blueprints/service/bulk/entities/delete failed: 500", false))
    assert.are.equal(1, #grep(lines, "deleted 0 (3 could not be deleted), failed 0"))
    assert.are.equal(10, count("service"))
  end)

  it("names Port's reason for each id it refused to delete", function()
    start()
    assert.is_true(ocean.sync_raw_all().ok)
    table.remove(data.service)
    emu.faults { { method = "POST", path = "/bulk/entities/delete$", status = 207,
      body = { ok = true, deletedEntities = json.array {}, errors = { { identifier = "svc-10",
        statusCode = 409, error = "has_dependents", message = "svc-10 has dependents" } } } } }
    local s
    local lines = capture("INFO", function() s = ocean.sync_raw_all() end)
    emu.faults()
    assert.are.same({ 0, 1, "partial" }, { s.deleted, s.delete_failed, s.outcome })
    assert.are.equal(1, #grep(lines, "WARNING could not delete service/svc-10: Port POST "
      .. "/v1/blueprints/service/bulk/entities/delete failed: 409 has_dependents: svc-10 has "
      .. "dependents"))
  end)

  it("counts as deleted what a retried deletion finds already gone (the answer was lost)",
    function()
      start(function(s) s.client_timeout = 1 end)
      assert.is_true(ocean.sync_raw_all().ok)
      for _ = 1, 4 do table.remove(data.service) end
      -- Port deletes, but answers after the client gave up waiting: the
      -- retry then finds the 4 entities gone (404 each)
      emu.faults { { method = "POST", path = "/bulk/entities/delete$", delay_ms = 1500,
                     count = 1 } }
      local s
      local lines = capture("INFO", function() s = ocean.sync_raw_all() end)
      emu.faults()
      assert.are.equal(1, #grep(lines, "WARNING retrying Port POST /v1/blueprints/service/bulk/"
        .. "entities/delete in", true))
      assert.are.same({ true, "completed", 4, 0 }, { s.ok, s.outcome, s.deleted, s.delete_failed })
      assert.are.equal(0, #grep(lines, "could not delete"))
      assert.are.equal(6, count("service"))
    end)

  it("gives up at once on a Retry-After beyond the retry budget, and says why", function()
    start()
    emu.clear_requests()
    emu.faults { { method = "POST", path = "/team/entities/bulk$", status = 429,
                   retry_after = "100000" } }
    local s
    local lines = capture("INFO", function() s = ocean.sync_raw_all() end)
    emu.faults()
    assert.are.equal(0, #grep(lines, "retrying Port POST /v1/blueprints/team/"))
    -- once for the batch, once for the end-of-resync retry of failed upserts
    assert.are.equal(2, #grep(lines, "WARNING gave up on Port POST /v1/blueprints/team/entities/"
      .. "bulk after 1 attempts (0 ms of waiting): HTTP 429; it asked to wait 27.8 h "
      .. "(Retry-After), more than the retry budget allows"))
    assert.are.equal(2, requests("/team/entities/bulk$"))
    assert.are.same({ 2, "partial" }, { s.failed, s.outcome })
  end)

  it("counts upserts in progress lines once Port answered them, the rest as queued", function()
    start(function(s) s.log.progress_interval = 0.1 end)
    emu.faults { { method = "POST", path = "/service/entities/bulk$", delay_ms = 600, count = 1 } }
    ocean.reset()
    ocean.on_resync("team", function() return data.team end)
    ocean.on_resync("service", function()
      coroutine.yield(list("svc", 20))                       -- one full batch, answered late
      ocean.engine():await(function() return nil end, 350)   -- a slow second page
      coroutine.yield({ { id = "svc-21", name = "S 21" } })
    end)
    local s
    local lines = capture("INFO", function() s = ocean.sync_raw_all() end)
    emu.faults()
    assert.is_true(s.ok, json.encode(s.errors))
    local progress = grep(lines, "^INFO kind 'service': 20 objects read, 20 entities, 0 upserts "
      .. "answered by Port %(20 queued%), 0 failed", false)
    assert.is_true(#progress >= 1, table.concat(lines, "\n"))
    for _, l in ipairs(grep(lines, "upserts answered by Port")) do
      local answered, queued = l:match("(%d+) upserts answered by Port %((%d+) queued%)")
      assert.is_true(tonumber(answered) + tonumber(queued) <= 21, l)
    end
  end)

  it("says when it logs in again after a 401, and the run goes on", function()
    start()
    emu.faults { { method = "POST", path = "/service/entities/bulk$", status = 401, count = 1 } }
    local s
    local lines = capture("INFO", function() s = ocean.sync_raw_all() end)
    emu.faults()
    assert.are.same({ true, 10 }, { s.ok, s.created - 2 })
    assert.are.same({ "INFO Port token expired or revoked (Port POST /v1/blueprints/service/"
      .. "entities/bulk answered 401): logging in again" }, grep(lines, "401"))
  end)
end)
