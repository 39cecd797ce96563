-- Nothing fails silently (issue 10): every rejected entity is explained
-- (deliverable 2), what the engine decided it says (3), progress and
-- retries are logged and item errors capped (4), counts add up (5), live
-- events map with the mapping the last resync read (6), and one bad item
-- holds back as little as possible (7). Against the emulator; the log is
-- captured through ocean.log's sink.
local ehelp = require "spec.helpers.emulator"
local oh = require "spec.helpers.ocean"
local json = require "ocean.json"
local log = require "ocean.log"

local BLUEPRINTS = {
  { identifier = "team", title = "Team", schema = { properties = {} } },
  { identifier = "service", title = "Service",
    schema = { properties = { stars = { type = "number" }, notes = { type = "string" } } },
    relations = { team = { target = "team", many = false, required = false } } },
  { identifier = "file", title = "File", schema = { properties = { repo = { type = "string" } } },
    relations = { team = { target = "team", many = false, required = true } } },
}

local RESOURCES = {
  team = { kind = "team", selector = { query = "true" },
    port = { entity = { mappings = { identifier = ".id", title = ".name", blueprint = '"team"' } } } },
  service = { kind = "service", selector = { query = "true" },
    port = { entity = { mappings = { identifier = ".id", title = ".name", blueprint = '"service"',
      properties = { stars = ".stars", notes = ".notes" }, relations = { team = ".team" } } } } },
  file = { kind = "repo", selector = { query = "true" },
    port = { itemsToParse = ".files", entity = { mappings = { identifier = ".item.name",
      title = ".item.name", blueprint = '"file"', properties = { repo = ".id" },
      relations = { team = ".team" } } } } },
}

local function mapping(kinds, extra)
  local m = { createMissingRelatedEntities = true, deleteDependentEntities = true,
              resources = json.array {} }
  for _, k in ipairs(kinds) do m.resources[#m.resources + 1] = RESOURCES[k] end
  for k, v in pairs(extra or {}) do m[k] = v end
  return m
end

local function teams(n)
  local out = {}
  for i = 1, n do out[i] = { id = "team-" .. i, name = "Team " .. i } end
  return out
end

local function services(n)
  local out = {}
  for i = 1, n do out[i] = { id = "svc-" .. i, name = "S" .. i, stars = i, team = "team-1" } end
  return out
end

-- The log at `level` and above while fn runs: a list of "LEVEL line".
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

local function sum_of_kinds(s)
  local t = { created = 0, updated = 0, unknown = 0, unchanged = 0, failed = 0 }
  for _, k in ipairs(s.kinds) do
    t.created, t.updated = t.created + k.created, t.updated + k.updated
    t.unknown, t.unchanged = t.unknown + k.unknown, t.unchanged + k.unchanged
    t.failed = t.failed + k.failed_entities
  end
  return t
end

local function totals(s)
  return { created = s.created, updated = s.updated, unknown = s.unknown,
           unchanged = s.unchanged, failed = s.failed }
end

describe("nothing fails silently", function()
  local emu, ocean, data

  setup(function() emu = ehelp.start() end)
  teardown(function() ehelp.stop_all() end)

  -- opts: settings changes (a function of the settings), env
  local function start(kinds, extra, opts)
    opts = opts or {}
    emu.reset()
    local _
    _, ocean = oh.setup(emu, { blueprints = BLUEPRINTS, mapping = mapping(kinds, extra) })
    if opts.settings or opts.env then
      local s = oh.settings(emu, { env = opts.env })
      if opts.settings then opts.settings(s) end
      assert(ocean.init { settings = s })
    end
    data = { teams = teams(2), services = services(10), repos = {} }
    ocean.on_resync("team", function() return data.teams end)
    ocean.on_resync("service", function() return data.services end)
    ocean.on_resync("repo", function() return data.repos end)
  end

  local function ids(bp)
    local out = {}
    for _, e in ipairs(emu.entities(bp)) do out[#out + 1] = e.identifier end
    table.sort(out)
    return out
  end

  describe("Port's rejections", function()
    it("are explained per entity in the result, grouped by reason per kind in the log", function()
      start { "team", "service" }
      data.services[4].stars = "many"                       -- 207: 422 per entity
      data.services[5].notes = ("x"):rep(1100 * 1024)       -- over 1 MiB: 413
      emu.faults { { method = "POST", path = "/service/entities/bulk$", max_body_bytes = 1048576 } }
      local s
      local lines = capture("INFO", function() s = ocean.sync_raw_all() end)
      emu.faults()
      assert.is_true(s.ok, json.encode(s.errors))
      assert.are.equal("partial", s.outcome)
      assert.are.same({ 10, 2 }, { s.created, s.failed })
      table.sort(s.failures, function(a, b) return a.identifier < b.identifier end)
      local f4, f5 = s.failures[1], s.failures[2]
      assert.are.same({ "service", "svc-4", 422, "invalid_property_type", "service",
                        "kind 'service'" },
        { f4.blueprint, f4.identifier, f4.status, f4.code, f4.kind, f4.label })
      assert.truthy(f4.message:find("stars", 1, true), f4.message)
      assert.are.same({ "service", "svc-5", 413, "kind 'service'" },
        { f5.blueprint, f5.identifier, f5.status, f5.label })
      assert.are.same({ "WARNING kind 'service': Port rejected 2 entities" },
        grep(lines, "Port rejected"))
      assert.are.equal(1, #grep(lines, "^WARNING kind 'service': 1 rejected with 422 "
        .. "invalid_property_type %(.*stars.*%): service/svc%-4$", false))
      assert.are.equal(1, #grep(lines, "^WARNING kind 'service': 1 rejected with 413 .*: "
        .. "service/svc%-5$", false))
      assert.are.same({ 2, 0 }, { s.kinds[2].failed_entities, s.kinds[1].failed_entities })
      -- a rejected entity is never deleted (it stays as it was at Port)
      assert.are.equal(0, s.deleted)
    end)

    it("explain a 422 for a whole request and a 5xx after the retries", function()
      start({ "team", "service" }, nil, { settings = function(st)
        st.port.retry = { max_attempts = 2, base_delay_ms = 5 }
      end })
      emu.faults { { method = "POST", path = "/team/entities/bulk$", status = 422 },
                   { method = "POST", path = "/service/entities", status = 503 } }
      local s
      local lines = capture("INFO", function() s = ocean.sync_raw_all() end)
      emu.faults()
      assert.are.same({ 0, 12, "partial" }, { s.created, s.failed, s.outcome })
      local by = {}
      for _, f in ipairs(s.failures) do by[f.label] = (by[f.label] or "") .. f.status .. " " end
      assert.are.equal(("422 "):rep(2), by["kind 'team'"])
      assert.are.equal(("503 "):rep(10), by["kind 'service'"])
      assert.are.equal(1, #grep(lines, "^WARNING kind 'team': 2 rejected with 422 .*: team/team%-1, "
        .. "team/team%-2$", false))
      assert.are.equal(1, #grep(lines, "^WARNING kind 'service': 10 rejected with 503 .*: "
        .. "service/svc%-1, service/svc%-2, service/svc%-3, service/svc%-4, service/svc%-5 and 5 "
        .. "more$", false))
      -- every retry said, and the giving up
      assert.truthy(#grep(lines, "^WARNING retrying Port POST /v1/blueprints/service/entities/bulk in "
        .. "%d ms %(attempt 2 of at most 2, within [%d.]+ s of waiting%): HTTP 503$", false) >= 1)
      assert.truthy(#grep(lines, "^WARNING gave up on Port POST /v1/blueprints/service/entities/bulk "
        .. "after 2 attempts %(%d ms of waiting%): HTTP 503$", false) >= 1)
      assert.is_nil(next(grep(emu.entities("service"), "x")))
    end)

    it("are capped in the log: the first identifiers, then how many more", function()
      start { "team", "service" }
      for _, sv in ipairs(data.services) do sv.stars = "lots" end
      local s
      local lines = capture("WARNING", function() s = ocean.sync_raw_all() end)
      assert.are.equal(10, s.failed)
      assert.are.equal(10, #s.failures)
      local l = grep(lines, "rejected with 422")
      assert.are.equal(1, #l)
      assert.are.equal("service/svc-5 and 5 more", l[1]:sub(-#"service/svc-5 and 5 more"))
    end)
  end)

  describe("the deletion decision", function()
    it("says a failed owned listing skipped deletion, naming the status, and counts 'unknown'",
      function()
        start { "team", "service" }
        assert.is_true(ocean.sync_raw_all().ok)
        table.remove(data.services, 1)
        data.services[1].name = "renamed"
        emu.faults { { method = "POST", path = "datasource%-entities", status = 500 } }
        local s
        local lines = capture("INFO", function() s = ocean.sync_raw_all() end)
        emu.faults()
        assert.are.same({ 0, 0, 11, 0 }, { s.created, s.updated, s.unknown, s.unchanged })
        assert.are.same({ 9, 0 }, { s.kinds[2].unknown, s.kinds[2].created })
        assert.are.same({ "svc-1", "svc-10" }, { ids("service")[1], ids("service")[2] })
        local l = grep(lines, "WARNING deletion skipped: could not read the entities this "
          .. "integration owns: Port POST /v1/blueprints/entities/datasource-entities failed: 500")
        assert.are.equal(1, #l)
        assert.are.equal(1, #grep(lines, "kind 'service': 1 batches, 9 objects -> 9 entities (0 "
          .. "filtered); created 0, updated 0, upserted 9 (created or updated: unknown), unchanged 0"))
        assert.are.equal(1, #grep(lines, "created 0, updated 0, upserted 11 (created or updated: "
          .. "unknown), unchanged 0, deleted 0, failed 0"))
      end)

    it("says each reason it skipped deletion on its own line", function()
      start({ "team", "service" }, { entityDeletionThreshold = 0.1 })
      assert.is_true(ocean.sync_raw_all().ok)
      data.services = { data.services[1], { id = "", name = "no id" } }
      local s
      local lines = capture("WARNING", function() s = ocean.sync_raw_all() end)
      assert.are.same({ "kind 'service': 1 entities had no identifier or blueprint",
                        "deleting 9 of 12 owned entities (75%) is above entityDeletionThreshold (10%)" },
                      s.deletion.reasons)
      assert.are.same({
        "WARNING deletion skipped: kind 'service': 1 entities had no identifier or blueprint "
          .. "(9 deletion candidates stay)",
        "WARNING deletion skipped: deleting 9 of 12 owned entities (75%) is above "
          .. "entityDeletionThreshold (10%) (9 deletion candidates stay)" },
        grep(lines, "deletion skipped"))
      ocean.reset()                            -- team: no resync function
      ocean.on_resync("service", function() return { data.services[1] } end)
      lines = capture("WARNING", function() s = ocean.sync_raw_all() end)
      assert.are.same({
        "WARNING deletion skipped: 1 error(s) during the resync: the state is incomplete "
          .. "(failed: kind 'team') (11 deletion candidates stay)",
        "WARNING deletion skipped: deleting 11 of 12 owned entities (92%) is above "
          .. "entityDeletionThreshold (10%) (11 deletion candidates stay)" },
        grep(lines, "deletion skipped"))
      assert.are.same({ false, 0 }, { s.ok, s.deleted })
      assert.are.equal(12, #ids("service") + #ids("team"))
    end)
  end)

  describe("progress and logging", function()
    it("names each resource as it starts, and says progress while a kind runs", function()
      start({ "team", "service" }, nil, { env = { OCEAN__LOG__PROGRESS_INTERVAL = "0.1" } })
      ocean.reset()
      ocean.on_resync("team", function() return data.teams end)
      ocean.on_resync("service", function()
        for p = 1, 4 do
          ocean.engine():await(function() return nil end, 120)   -- a slow page
          coroutine.yield { { id = "p" .. p, name = "P" .. p, stars = p, team = "team-1" } }
        end
      end)
      local s
      local lines = capture("INFO", function() s = ocean.sync_raw_all() end)
      assert.is_true(s.ok, json.encode(s.errors))
      assert.are.same({ "INFO kind 'team' started (resource 1 of 2, selector: true)",
                        "INFO kind 'service' started (resource 2 of 2, selector: true)" },
        grep(lines, " started (resource", true))
      local progress = grep(lines, "^INFO kind 'service': %d+ objects read, %d+ entities, %d+ upserts "
        .. "answered by Port %(%d+ queued%), 0 failed, %d+ objects/s %(%d+ s%)$", false)
      assert.is_true(#progress >= 2, table.concat(lines, "\n"))
    end)

    it("logs every retry at WARNING with what, status, wait and attempt n/N", function()
      start { "team" }
      emu.faults { { method = "POST", path = "/team/entities/bulk$", status = 429, retry_after = "0.05",
                     count = 2 } }
      local s
      local lines = capture("INFO", function() s = ocean.sync_raw_all() end)
      emu.faults()
      assert.is_true(s.ok, json.encode(s.errors))
      assert.are.same({
        "WARNING retrying Port POST /v1/blueprints/team/entities/bulk in 50 ms (attempt 2 of at "
          .. "most 11, within 120.0 s of waiting): HTTP 429",
        "WARNING retrying Port POST /v1/blueprints/team/entities/bulk in 50 ms (attempt 3 of at "
          .. "most 11, within 120.0 s of waiting): HTTP 429",
      }, grep(lines, "retrying"))
      assert.truthy(grep(lines, "INFO Port POST /v1/blueprints/team/entities/bulk: HTTP 200 after 3 "
        .. "attempts")[1])
    end)

    it("logs every Port and third-party request at DEBUG, secrets masked", function()
      start { "team" }
      local fake = require "spec.helpers.fake_api"
      local api = fake.start()
      log.add_secret("s3cr3t-value", ocean.engine().secrets)
      ocean.on_resync("team", function()
        local r = assert(ocean.http.get(api.url .. "/echo?api_key=abc123&page=2"))
        assert(r.status == 200)
        r = assert(ocean.http.get(api.url .. "/echo?page=3&q=s3cr3t-value"))
        assert(r.status == 200)
        return data.teams
      end)
      local lines = capture("DEBUG", function() assert(ocean.sync_raw_all().ok) end)
      fake.stop(api)
      for _, want in ipairs {
        "^DEBUG Port POST /v1/auth/access_token %-> 200 %(%d+ ms%)$",
        "^DEBUG Port GET /v1/integration/spec%-integration %-> 200 %(%d+ ms%)$",
        "^DEBUG Port POST /v1/blueprints/entities/datasource%-entities %-> 200 %(%d+ ms%)$",
        "^DEBUG Port POST /v1/blueprints/team/entities/bulk %-> 200 %(%d+ ms%)$",
        "^DEBUG GET http://127%.0%.0%.1:%d+/echo%?api_key=%*%*%*%*&page=2 %-> 200 %(%d+ ms%)$",
        "^DEBUG GET http://127%.0%.0%.1:%d+/echo%?page=3&q=%*%*%*%* %-> 200 %(%d+ ms%)$",
      } do
        assert.are.equal(1, #grep(lines, want, false), want .. "\n" .. table.concat(lines, "\n"))
      end
      assert.is_nil(table.concat(lines, "\n"):find("abc123", 1, true))
      assert.is_nil(table.concat(lines, "\n"):find(emu.client_secret, 1, true))
    end)

    it("caps item errors per kind: the first N, then '... and M more'", function()
      start({ "team" }, nil, { env = { OCEAN__LOG__ITEM_ERRORS = "3" } })
      local m = mapping { "team" }
      m.resources[1] = { kind = "team", selector = { query = ".active" },
        port = RESOURCES.team.port }
      emu.api("PATCH", "/v1/integration/spec-integration", { config = m })
      local list = {}
      for i = 1, 300 do list[i] = { id = "t" .. i, name = "T", active = i <= 2 or "yes" } end
      ocean.reset()
      ocean.on_resync("team", function() return list end)
      local s
      local lines = capture("INFO", function() s = ocean.sync_raw_all() end)
      assert.is_false(s.ok)
      assert.are.same({ 298, 2 }, { s.error_count, s.created })
      assert.are.equal(4, #s.errors)
      assert.are.equal("kind 'team': item 3: selector must produce a boolean, got \"yes\"", s.errors[1])
      assert.are.equal("kind 'team': ... and 295 more item errors (298 in all)", s.errors[4])
      assert.are.equal(3, #grep(lines, "^ERROR kind 'team': item %d+: selector", false))
      assert.are.same({ "ERROR kind 'team': ... and 295 more item errors (298 in all)" },
        grep(lines, "more item errors"))
      assert.are.equal(1, #grep(lines, "deletion skipped: 298 error(s) during the resync"))
    end)
  end)

  describe("counts", function()
    it("count what the selector filtered", function()
      start { "team", "service" }
      local m = mapping { "team", "service" }
      m.resources[2] = { kind = "service", selector = { query = ".stars > 3" },
        port = RESOURCES.service.port }
      emu.api("PATCH", "/v1/integration/spec-integration", { config = m })
      local s
      local lines = capture("INFO", function() s = ocean.sync_raw_all() end)
      assert.is_true(s.ok, json.encode(s.errors))
      assert.are.same({ 0, 3, 7, 3 }, { s.kinds[1].filtered, s.kinds[2].filtered, s.kinds[2].entities,
                                       s.filtered })
      assert.are.equal(1, #grep(lines, "kind 'service': 1 batches, 10 objects -> 7 entities (3 filtered)"))
    end)

    it("add up when a run is aborted half-way: totals are the sum of the kinds", function()
      start { "team", "service" }
      emu.faults { { method = "POST", path = "/service/entities/bulk$", delay_ms = 200 } }
      ocean.on_resync("service", function()
        for p = 1, 5 do
          local page = {}
          for i = 1, 20 do page[i] = { id = ("s%d-%d"):format(p, i), name = "S", stars = i, team = "team-1" } end
          coroutine.yield(page)
          if p == 3 then ocean.engine():request_abort() end
        end
      end)
      local s
      local lines = capture("INFO", function() s = ocean.sync_raw_all() end)
      emu.faults()
      assert.is_true(s.aborted)
      assert.are.equal("aborted", s.outcome)
      assert.are.same({ "completed", "aborted" }, { s.kinds[1].status, s.kinds[2].status })
      assert.are.same(totals(s), sum_of_kinds(s))
      assert.is_true(s.created >= 2)
      assert.are.equal(1, #grep(lines, "^INFO kind 'service': %d+ batches, %d+ objects %-> %d+ entities "
        .. "%(0 filtered%).*%[aborted%]$", false))
    end)

    it("add up after the end-of-resync retry too", function()
      start({ "service", "team" }, { createMissingRelatedEntities = false })
      local s = ocean.sync_raw_all()
      assert.is_true(s.ok, json.encode(s.errors))
      assert.are.same({ 12, 0 }, { s.created, s.failed })
      assert.are.same(totals(s), sum_of_kinds(s))
      assert.are.same({ 10, 0 }, { s.kinds[1].created, s.kinds[1].failed_entities })
    end)
  end)

  describe("live events", function()
    it("map with the mapping the last resync read, not one cached before it", function()
      start { "team" }
      assert(ocean.register_raw("team", { { id = "team-1", name = "Team 1" } }).ok)  -- caches v1
      local m = mapping { "team" }
      m.resources[1] = { kind = "team", selector = { query = "true" }, port = { entity = { mappings = {
        identifier = ".id", title = '.name + " (v2)"', blueprint = '"team"' } } } }
      emu.api("PATCH", "/v1/integration/spec-integration", { config = m })
      assert(ocean.sync_raw_all().ok)
      local r = ocean.register_raw("team", { { id = "team-1", name = "Team 1" } })
      assert.is_true(r.ok, json.encode(r.errors))
      local titles = {}
      for _, e in ipairs(emu.entities("team")) do titles[e.identifier] = e.title end
      assert.are.same({ ["team-1"] = "Team 1 (v2)", ["team-2"] = "Team 2 (v2)" }, titles)
    end)
  end)

  describe("one bad item", function()
    local function repos()
      return {
        { id = "r1", team = "team-1", files = { { name = "a" }, { name = "b" } } },
        { id = "r2", team = "team-1", files = { { name = "c" } } },
      }
    end

    it("holds back deletion only of its resource's blueprint; null means no children", function()
      start { "team", "file" }
      data.repos = repos()
      local s = ocean.sync_raw_all()
      assert.is_true(s.ok, json.encode(s.errors))
      assert.are.same({ "a", "b", "c" }, ids("file"))
      data.repos[1].files = "oops"             -- r1's children: unknown
      data.repos[2].files = json.null          -- r2: none any more (c is stale)
      data.teams = { data.teams[1], { id = "team-3", name = "Three" } }   -- team-2 goes
      local lines = capture("INFO", function() s = ocean.sync_raw_all() end)
      assert.is_true(s.ok, json.encode(s.errors))
      assert.are.equal("partial", s.outcome)
      assert.are.same({ 1, 1 }, { s.items_errors, s.kinds[2].items_errors })
      assert.are.same({ { blueprint = "file", why = "kind 'repo': itemsToParse failed for 1 item" } },
        s.held)
      assert.are.same({ "a", "b", "c" }, ids("file"))                -- held back
      assert.are.same({ "team-1", "team-3" }, ids("team"))           -- team-2 deleted
      assert.are.equal(1, s.deleted)
      assert.are.same({ "WARNING kind 'repo': item 1 of page 1 (id \"r1\"): itemsToParse must produce "
        .. "an array, got \"oops\"; its children are unknown, so deletion is held back for this "
        .. "resource's blueprints" }, grep(lines, "itemsToParse must"))
      assert.are.same({ "WARNING deletion held back for blueprint 'file' (kind 'repo': itemsToParse "
        .. "failed for 1 item): 3 owned entities not produced by this resync stay" },
        grep(lines, "held back for blueprint"))
      data.repos[1].files = { { name = "a" } }  -- r1 fine again: b and c go
      s = ocean.sync_raw_all()
      assert.are.same({ true, "completed", 2 }, { s.ok, s.outcome, s.deleted })
      assert.are.same({ "a" }, ids("file"))
    end)

    it("keeps the relation targets of the held blueprint's entities (no cascade into them)",
      function()
        start { "team", "file" }
        data.repos = repos()
        assert.is_true(ocean.sync_raw_all().ok)
        data.repos[1].files = 5
        data.teams = { { id = "team-3", name = "Three" } }   -- team-1 and team-2 go
        local s = ocean.sync_raw_all()
        assert.are.same({ "a", "b", "c" }, ids("file"))
        -- team-1 is what a, b, c (held back) point at: deleting it with its
        -- dependents would take them along; it stays. team-2 goes.
        assert.are.same({ "team-1", "team-3" }, ids("team"))
        assert.are.equal(1, s.deleted)
      end)

    it("holds back all deletion when the resource's blueprint is computed per entity", function()
      start { "team", "file" }
      local m = mapping { "team", "file" }
      m.resources[2] = json.decode(json.encode(RESOURCES.file))
      m.resources[2].port.entity.mappings.blueprint = '"fi" + "le"'
      emu.api("PATCH", "/v1/integration/spec-integration", { config = m })
      data.repos = repos()
      assert.is_true(ocean.sync_raw_all().ok)
      data.repos[1].files = "oops"
      data.teams = { data.teams[1] }
      local s = ocean.sync_raw_all()
      assert.are.same({ "kind 'repo': itemsToParse failed for 1 item, and its blueprint is "
        .. "computed per entity" }, s.deletion.reasons)
      assert.are.same({ "team-1", "team-2" }, ids("team"))
    end)
  end)
end)
