-- The live session (src/sync/live_session.c): coalescing, per-caller
-- results, order on one entity, ownership, itemsToParse children, the
-- ownership index, and the resync's own folding of shared children, end
-- to end against the emulator (docs/live-events.md).
local ehelp = require "spec.helpers.emulator"
local oh = require "spec.helpers.ocean"
local core = require "ocean.core"
local json = require "ocean.json"
local log = require "ocean.log"

local BLUEPRINTS = {
  { identifier = "team", title = "Team", schema = { properties = {} } },
  { identifier = "user", title = "User",
    schema = { properties = { email = { type = "string" }, active = { type = "boolean" } } },
    relations = { team = { target = "team", many = false, required = false } } },
  { identifier = "label", title = "Label", schema = { properties = {} } },
  { identifier = "ticket", title = "Ticket", schema = { properties = { title = { type = "string" } } },
    relations = { labels = { target = "label", many = true, required = false } } },
}

local USER = { kind = "user", selector = { query = ".active" },
  port = { entity = { mappings = { identifier = ".login", title = ".name",
    blueprint = '"user"', properties = { email = ".email", active = ".active" },
    relations = { team = ".team" } } } } }
local TICKET = { kind = "ticket", selector = { query = "true" },
  port = { entity = { mappings = { identifier = ".id", title = ".title", blueprint = '"ticket"',
    properties = { title = ".title" }, relations = { labels = ".labels" } } } } }
local LABEL = { kind = "ticket", selector = { query = "true" },
  port = { itemsToParse = ".labels",
    entity = { mappings = { identifier = ".item", title = ".item", blueprint = '"label"' } } } }

local MAPPING = {
  createMissingRelatedEntities = true,
  deleteDependentEntities = true,
  resources = json.array { USER, TICKET, LABEL },
}

local function user(login, extra)
  local u = { login = login, name = "User " .. login, email = login .. "@x.io",
              active = true, team = "core" }
  for k, v in pairs(extra or {}) do u[k] = v end
  return u
end

local function ticket(id, labels)
  return { id = id, title = "Ticket " .. id, labels = json.array(labels) }
end

local OTHER = "port-ocean/other/1.0.0/someone-else/exporter"

describe("the live session", function()
  local emu, ocean, eng
  setup(function() emu = ehelp.start() end)
  teardown(function() ehelp.stop_all() end)
  before_each(function()
    emu.reset()
    local _
    _, ocean = oh.setup(emu, { blueprints = BLUEPRINTS, mapping = MAPPING })
    eng = ocean.engine()
    eng:on_resync(function() return {} end)   -- every kind: nothing, unless said
  end)

  local function by_id(bp)
    local out = {}
    for _, e in ipairs(emu.entities(bp)) do out[e.identifier] = e end
    return out
  end

  local function count(method, pattern) return oh.count(emu, method, pattern) end

  local function await_all(jobs)
    local out = {}
    for i, j in ipairs(jobs) do out[i] = eng:await(j) end
    return out
  end

  -- Capture the log lines said during fn().
  local function logged(fn)
    local lines = {}
    local old_level = log.level()
    log.set_level("DEBUG")
    log.set_sink(function(_, line) lines[#lines + 1] = line end)
    local ok, err = pcall(fn)
    log.set_sink(nil)
    log.set_level(old_level)
    assert(ok, err)
    return table.concat(lines, "\n")
  end

  describe("submit", function()
    it("returns an ocean.Job whose result is the caller's report", function()
      local job = eng:submit("register_raw", "user", user("ann"))
      assert.are.equal(core.job_mt, getmetatable(job))
      assert.is_false(job:done())         -- the batch waits for its window
      local r = eng:await(job)
      assert.is_true(r.ok, json.encode(r.errors))
      assert.are.same({ 1, 0, 0 }, { r.created, r.updated, r.failed })
      assert.are.equal(1, r.batch.operations)
      assert.are.equal(1, r.batch.upsert_requests)
      assert.are.same({ r.created }, { job:result().created })   -- the same every call
      assert.truthy(by_id("user").ann)
    end)

    it("raises on misuse and names unknown operations", function()
      assert.has_error(function() eng:submit("register", 5) end, "entities must be a list, got number")
      assert.has_error(function() eng:submit("frobnicate") end,
        "submit: unknown operation 'frobnicate'")
    end)

    it("gives a Job that is done at once when the mapping cannot be read", function()
      emu.faults { { method = "GET", path = "^/v1/integration", status = 500 } }
      ocean.reset()
      eng = ocean.engine()
      eng.settings.port.retry = nil
      local r = ocean.register_raw("user", user("ann"))
      emu.clear_faults()
      assert.is_false(r.ok)
      assert.matches("mapping", r.errors[1])
      assert.is_nil(by_id("user").ann)
    end)

    it("maps a JSON text (an array or NDJSON) element by element", function()
      local arr, nd = {}, {}
      for i = 1, 45 do arr[i] = json.encode(user("a" .. i)) end
      for i = 1, 5 do nd[i] = json.encode(user("n" .. i)) end
      local r1 = ocean.register_raw("user", "[" .. table.concat(arr, ",\n") .. "]")
      local r2 = ocean.register_raw("user", table.concat(nd, "\n") .. "\n")
      assert.are.same({ true, 45, true, 5 }, { r1.ok, r1.created, r2.ok, r2.created })
      local bad = ocean.register_raw("user", '[{"login": "x", "active": true}, {"login": ')
      assert.is_false(bad.ok)
      assert.matches("invalid JSON at line 1, column %d+", bad.errors[1])
    end)

    it("maps a large input in slices, pausing between two", function()
      local items = {}
      for i = 1, 20000 do items[i] = user("p" .. i) end
      local pauses, pause = 0, eng.pause
      eng.pause = function(self) pauses = pauses + 1; return pause(self) end
      local ops = require "ocean.ops"
      local budget = ops.MAP_BUDGET_MS
      ops.MAP_BUDGET_MS = 2
      local r = ocean.register_raw("user", items, { plan = true })
      ops.MAP_BUDGET_MS = budget
      eng.pause = nil
      assert.is_true(r.ok, json.encode(r.errors))
      assert.are.equal(20000, #r.planned)
      assert.is_true(pauses >= 2, "paused " .. pauses .. " times")
      assert.are.equal(0, count("POST", "/entities/bulk$"))
    end)
  end)

  describe("coalescing", function()
    it("sends 1 000 operations submitted together in at most 60 bulk upserts", function()
      emu.clear_requests()
      local jobs = {}
      for i = 1, 1000 do jobs[i] = eng:submit("register_raw", "user", user("u" .. i)) end
      local reports = await_all(jobs)
      for i, r in ipairs(reports) do
        assert(r.ok and r.created == 1 and r.updated == 0, i .. ": " .. json.encode(r))
      end
      local bulks = count("POST", "/blueprints/user/entities/bulk$")
      assert.is_true(bulks <= 60, bulks .. " bulk upserts")
      assert.are.equal(50, bulks)
      assert.are.equal(1000, #emu.entities("user"))
      local st = eng:live_stats()
      assert.are.equal(1000, st.upserts)
      assert.is_true(st.batches <= 3, st.batches .. " batches")
    end)

    -- A batch goes before its window ends only when every bulk it would
    -- send is full (docs/live-events.md "Coalescing").
    describe("with a 1 s window", function()
      before_each(function()
        local _
        _, ocean = oh.setup(emu, { env = { OCEAN__LIVE_EVENTS__WINDOW_MS = "1000" } })
        eng = ocean.engine()
      end)

      local function bulk_sizes()
        local sizes = {}
        for _, r in ipairs(emu.requests()) do
          if r.method == "POST" and r.path:match("/blueprints/user/entities/bulk$") then
            sizes[#sizes + 1] = r.entities
          end
        end
        return sizes
      end

      it("goes at once when its bulks are full: 40 upserts, 2 bulks", function()
        emu.clear_requests()
        local t0, jobs = core.monotonic_ms(), {}
        for i = 1, 40 do jobs[i] = eng:submit("register_raw", "user", user("f" .. i)) end
        for _, r in ipairs(await_all(jobs)) do assert.is_true(r.ok) end
        -- well before the window (Port answers in a few ms)
        assert.is_true(core.monotonic_ms() - t0 < 900, "waited for the window")
        assert.are.same({ 20, 20 }, bulk_sizes())
      end)

      it("waits with a part-filled bulk behind a batch in flight: 25 + 15 go as 2 bulks", function()
        emu.faults { { method = "POST", path = "/entities/bulk$", delay_ms = 300 } }
        emu.clear_requests()
        local jobs = {}
        -- 20: a full bulk, at once; Port holds it 300 ms
        for i = 1, 20 do jobs[i] = eng:submit("register_raw", "user", user("p" .. i)) end
        -- meanwhile 25 collect in the next batch: once the first is done,
        -- 20 of them could go, and 5 in a bulk of their own
        for i = 21, 45 do jobs[i] = eng:submit("register_raw", "user", user("p" .. i)) end
        eng:await(function() end, 500)
        assert.is_true(jobs[1]:done())
        assert.is_false(jobs[21]:done())
        assert.are.same({ 20 }, bulk_sizes())
        -- 15 more within its window fill its second bulk: it goes
        for i = 46, 60 do jobs[i] = eng:submit("register_raw", "user", user("p" .. i)) end
        for _, r in ipairs(await_all(jobs)) do assert.is_true(r.ok) end
        emu.clear_faults()
        assert.are.same({ 20, 20, 20 }, bulk_sizes())
        assert.are.equal(60, #emu.entities("user"))
      end)

      it("sends a part-filled bulk when the window ends", function()
        emu.clear_requests()
        local t0, jobs = core.monotonic_ms(), {}
        for i = 1, 25 do jobs[i] = eng:submit("register_raw", "user", user("w" .. i)) end
        for _, r in ipairs(await_all(jobs)) do assert.is_true(r.ok) end
        assert.is_true(core.monotonic_ms() - t0 >= 990, "went before its window ended")
        assert.are.same({ 20, 5 }, bulk_sizes())
      end)
    end)

    it("gives each caller its own result; a 207 failure reaches only its caller", function()
      local jobs = {}
      for i = 1, 40 do
        jobs[i] = eng:submit("register_raw", "user", user("v" .. i, i == 17 and { email = 5 } or nil))
      end
      local reports = await_all(jobs)
      for i, r in ipairs(reports) do
        if i == 17 then
          assert.is_false(r.ok)
          assert.are.same({ 0, 1 }, { r.created, r.failed })
          local f = r.failures[1]
          assert.are.same({ "user", "v17", 422 }, { f.blueprint, f.identifier, f.status })
          assert.is_string(f.error)
          assert.is_true(#f.message > 0)
        else
          assert.is_true(r.ok, i .. ": " .. json.encode(r))
          assert.are.same({ 1, 0, 0 }, { r.created, r.failed, #r.failures })
        end
      end
      assert.is_nil(by_id("user").v17)
    end)

    it("sends the same entity twice in a batch once: the last write wins", function()
      emu.clear_requests()
      local a = eng:submit("register_raw", "user", user("ann", { email = "first@x.io" }))
      local b = eng:submit("register_raw", "user", user("ann", { email = "last@x.io" }))
      local ra, rb = eng:await(a), eng:await(b)
      assert.are.same({ 1, 0 }, { ra.superseded, ra.created })
      assert.are.same({ 0, 1 }, { rb.superseded, rb.created })
      assert.are.equal("last@x.io", by_id("user").ann.properties.email)
      local sent = 0
      for _, req in ipairs(emu.requests { bodies = true }) do
        if req.path:match("/entities/bulk$") then sent = sent + #req.body.entities end
      end
      assert.are.equal(1, sent)
    end)

    it("shares the outcome between callers that ask the same thing", function()
      local a = eng:submit("register_raw", "user", user("ann"))
      local b = eng:submit("register_raw", "user", user("ann"))
      local ra, rb = eng:await(a), eng:await(b)
      assert.are.same({ 1, 1 }, { ra.created, rb.created })
      assert.are.equal(1, count("POST", "/entities/bulk$"))
    end)
  end)

  describe("order on one entity", function()
    it("an upsert followed by a delete ends deleted, in one batch", function()
      ocean.register_raw("user", user("ann"))
      local a = eng:submit("register_raw", "user", user("ann", { email = "new@x.io" }))
      local b = eng:submit("unregister_raw", "user", user("ann"))
      local ra, rb = eng:await(a), eng:await(b)
      assert.are.same({ 1, 0 }, { ra.superseded, ra.updated })
      assert.are.equal(1, rb.deleted)
      assert.is_nil(by_id("user").ann)
    end)

    it("a delete followed by an upsert ends upserted, in one batch", function()
      ocean.register_raw("user", user("bob"))
      local a = eng:submit("unregister_raw", "user", user("bob"))
      local b = eng:submit("register_raw", "user", user("bob", { email = "b2@x.io" }))
      local ra, rb = eng:await(a), eng:await(b)
      assert.are.same({ 1, 0 }, { ra.superseded, ra.deleted })
      assert.are.equal(1, rb.updated)
      assert.are.equal("b2@x.io", by_id("user").bob.properties.email)
    end)

    it("a newer event whose write Port refuses leaves no claim: an older one after it is applied", function()
      -- the newer event's write fails (422: email must be a string)
      local rb = eng:await(eng:submit("register_raw", "user", user("dee", { email = 5 }), { seq = 2000 }))
      assert.are.same({ 1, 0 }, { rb.failed, rb.created })
      local ra = eng:await(eng:submit("register_raw", "user", user("dee", { email = "old@x.io" }),
        { seq = 1000 }))
      assert.are.same({ 0, 1 }, { ra.superseded, ra.created })
      assert.are.equal("old@x.io", by_id("user").dee.properties.email)
      -- a newer write that took effect still leaves an older one out
      local rc = eng:await(eng:submit("register_raw", "user", user("dee", { email = "new@x.io" }),
        { seq = 3000 }))
      assert.are.equal(1, rc.updated)
      local rd = eng:await(eng:submit("register_raw", "user", user("dee", { email = "older@x.io" }),
        { seq = 2500 }))
      assert.are.same({ 1, 0 }, { rd.superseded, rd.updated })
      assert.are.equal("new@x.io", by_id("user").dee.properties.email)
    end)

    it("reports the writes that took effect with their event, and takes an earlier process's", function()
      local live = eng:live_session()
      live:seqs_changed()                               -- what earlier specs wrote
      eng:await(eng:submit("register_raw", "user", user("eve"), { seq = 5000 }))
      eng:await(eng:submit("register_raw", "user", user("fay", { email = 5 }), { seq = 5001 }))  -- 422
      eng:await(eng:submit("register_raw", "user", user("gus")))                  -- no event
      assert.are.same({ "user\0eve", 5000 }, live:seqs_changed())
      assert.are.same({}, live:seqs_changed())          -- handed out once
      -- a delete of an entity Port does not hold: its event is the latest
      -- writer all the same (an older upsert after it must not create it)
      local rd = eng:await(eng:submit("unregister_raw", "user", user("ivy"), { seq = 6000 }))
      assert.are.equal(0, rd.deleted)
      assert.are.same({ "user\0ivy", 6000 }, live:seqs_changed())
      -- another process's record: an older event's write is left out
      live:note_seqs { "user\0hal", 9000 }
      local r = eng:await(eng:submit("register_raw", "user", user("hal"), { seq = 8000 }))
      assert.are.same({ 1, 0 }, { r.superseded, r.created })
      assert.is_nil(by_id("user").hal)
      r = eng:await(eng:submit("register_raw", "user", user("hal"), { seq = 9500 }))
      assert.are.equal(1, r.created)
      assert.has_error(function() live:note_seqs { "user\0x", "nope" } end,
        "note_seqs: expected {key, seq, ...}, item 1 is not")
    end)

    it("keeps the order across batches: the next batch waits for the one in flight", function()
      ocean.register_raw("user", user("cid"))
      emu.faults { { method = "POST", path = "/entities/bulk$", delay_ms = 300 } }
      emu.clear_requests()
      local a = eng:submit("register_raw", "user", user("cid", { email = "c2@x.io" }))
      eng:await(function() end, 120)          -- its window is over: in flight
      local b = eng:submit("unregister_raw", "user", user("cid"))
      local ra, rb = eng:await(a), eng:await(b)
      emu.clear_faults()
      assert.are.equal(1, ra.updated)
      assert.are.equal(1, rb.deleted)
      assert.are_not.equal(ra.batch.id, rb.batch.id)
      assert.is_nil(by_id("user").cid)
      local kinds = {}
      for _, r in ipairs(emu.requests()) do
        if r.path:match("/entities/bulk$") then kinds[#kinds + 1] = "upsert"
        elseif r.path:match("/bulk/entities/delete$") then kinds[#kinds + 1] = "delete" end
      end
      assert.are.same({ "upsert", "delete" }, kinds)
    end)
  end)

  describe("order between events (opts.seq, the receive time)", function()
    -- An older event big enough to be mapped in slices is still being
    -- mapped when newer, small events on its entities are mapped,
    -- committed and sent: its writes of those entities, committed after
    -- theirs, must not undo them.
    it("keeps a newer event's delete and upsert when an older, bigger one commits after them", function()
      ocean.register_raw("user", { user("k1"), user("k2") })
      local parts = { json.encode(user("k1", { email = "old@x.io" })),
                      json.encode(user("k2", { email = "old@x.io" })) }
      local filler = json.encode(user("zz", { active = false }))   -- the selector drops it
      for i = 3, 200000 do parts[i] = filler end
      local big = "[" .. table.concat(parts, ",") .. "]"
      local ta = eng:spawn(function()
        return eng:await(eng:submit("register_raw", "user", big, { seq = 1000 }))
      end)
      eng:await(function() return false end, 30)     -- it maps its first slices (k1, k2)
      local jb = eng:submit("unregister_raw", "user", user("k1"), { seq = 2000 })
      local jc = eng:submit("register_raw", "user", user("k2", { email = "new@x.io" }), { seq = 2000 })
      local rb, rc = eng:await(jb), eng:await(jc)
      assert.is_false(ta:done(), "the big event finished before the newer ones: nothing checked")
      eng:await(function() return ta:done() end, 60000)
      local ok, ra = ta:result()
      assert.is_true(ok, tostring(ra))
      assert.are.equal(1, rb.deleted)
      assert.are.equal(1, rc.updated)
      assert.are.same({ 2, 0, 0 }, { ra.superseded, ra.created, ra.updated })
      assert.is_nil(by_id("user").k1)
      assert.are.equal("new@x.io", by_id("user").k2.properties.email)
    end)

    it("sends one operation's targets before the full bulk of sources that point at them", function()
      local _
      _, ocean = oh.setup(emu, { identifier = "spec-targets", mapping = { createMissingRelatedEntities = false,
                                             resources = json.array { USER } } })
      eng = ocean.engine()
      emu.clear_requests()
      local entities = {}
      -- 20 sources first (a full bulk), then the 20 new teams they point at
      for i = 1, 20 do
        entities[i] = { identifier = "s" .. i, blueprint = "user", title = "S" .. i,
                        properties = {}, relations = { team = "t" .. i } }
        entities[20 + i] = { identifier = "t" .. i, blueprint = "team", title = "T" .. i,
                             properties = {}, relations = {} }
      end
      local r = ocean.register(entities)
      assert.is_true(r.ok, json.encode(r))
      assert.are.same({ 40, 0 }, { r.created, r.failed })
      local order = {}
      for _, req in ipairs(emu.requests()) do
        local bp = req.path:match("/blueprints/([^/]+)/entities/bulk$")
        if bp then
          assert.are.equal(200, req.status)
          order[#order + 1] = bp
        end
      end
      assert.are.same({ "team", "user" }, order)
    end)
  end)

  describe("ownership", function()
    it("never deletes another integration's or a person's entity, even coalesced", function()
      ocean.register_raw("user", { user("ann"), user("bob") })
      emu.seed {
        { identifier = "eve", blueprint = "user", title = "Eve", datasource = OTHER,
          properties = {}, relations = {} },
        { identifier = "pat", blueprint = "user", title = "Pat", datasource = "port/ui",
          properties = {}, relations = {} },
      }
      emu.clear_requests()
      local jobs = {
        eng:submit("unregister_raw", "user", user("ann")),
        eng:submit("unregister_raw", "user", user("eve")),
        eng:submit("unregister_raw", "user", user("pat")),
        eng:submit("register_raw", "user", user("bob", { active = false })),
        eng:submit("unregister", { { identifier = "eve", blueprint = "user" },
                                   { identifier = "pat", blueprint = "user" } }),
      }
      local r = await_all(jobs)
      assert.are.same({ 1, 0, 0, 1, 0 }, { r[1].deleted, r[2].deleted, r[3].deleted,
                                           r[4].deleted, r[5].deleted })
      assert.are.same({ 0, 1, 1, 0, 2 }, { r[1].not_owned, r[2].not_owned, r[3].not_owned,
                                           r[4].not_owned, r[5].not_owned })
      local u = by_id("user")
      assert.is_nil(u.ann)
      assert.is_nil(u.bob)
      assert.truthy(u.eve and u.pat)
      assert.are.equal(1, count("POST", "/entities/search$"))   -- one for the batch
    end)

    it("asks Port even when the index says it is ours: a takeover is respected", function()
      eng:on_resync("user", function() return { user("cid"), user("dan") } end)
      assert.is_true(ocean.sync_raw_all().ok)
      assert.are.equal("resync", eng:live_stats().index)
      emu.seed { { identifier = "cid", blueprint = "user", title = "Cid", datasource = "port/ui",
                   properties = {}, relations = {} } }
      local r = ocean.unregister_raw("user", { user("cid"), user("dan") })
      assert.are.same({ 1, 1 }, { r.deleted, r.not_owned })
      assert.truthy(by_id("user").cid)
      assert.is_nil(by_id("user").dan)
    end)

    it("drops register_raw's implicit deletes the index rules out, without a search", function()
      eng:on_resync("user", function() return { user("ann") } end)
      assert.is_true(ocean.sync_raw_all().ok)
      local st = eng:live_stats()
      assert.are.same({ "resync", 1 }, { st.index, st.owned })
      emu.clear_requests()
      local gone = {}
      for i = 1, 30 do gone[i] = user("x" .. i, { active = false }) end
      local text = logged(function()
        local r = ocean.register_raw("user", gone)
        assert.are.same({ true, 30, 0 }, { r.ok, r.not_owned, r.deleted })
      end)
      assert.are.equal(0, count("POST", "/entities/search$"))
      assert.matches("not deleting user/x1 %(it fails the selector%): not among the entities "
        .. "this integration owns", text)
      -- an owned one still goes (after Port confirms it)
      local r = ocean.register_raw("user", user("ann", { active = false }))
      assert.are.equal(1, r.deleted)
      assert.are.equal(1, count("POST", "/entities/search$"))
    end)

    it("asks Port about implicit deletes before any resync (no index yet)", function()
      assert.are.equal("none", eng:live_stats().index)
      emu.clear_requests()
      local gone = {}
      for i = 1, 30 do gone[i] = user("y" .. i, { active = false }) end
      local r = ocean.register_raw("user", gone)
      assert.are.same({ 30, 0 }, { r.not_owned, r.deleted })
      assert.are.equal(1, count("POST", "/entities/search$"))
    end)

    it("keeps the index up to date with every write it makes", function()
      eng:on_resync("user", function() return { user("ann"), user("bob") } end)
      ocean.sync_raw_all()
      assert.are.equal(2, eng:live_stats().owned)
      ocean.register_raw("user", { user("cid"), user("dan") })
      assert.are.equal(4, eng:live_stats().owned)
      ocean.unregister_raw("user", user("ann"))
      assert.are.equal(3, eng:live_stats().owned)
      -- cid is now in the index: its implicit delete is asked about, and goes
      emu.clear_requests()
      assert.are.equal(1, ocean.register_raw("user", user("cid", { active = false })).deleted)
    end)

    it("deletes nothing of a batch whose ownership search failed, and says why", function()
      ocean.register_raw("user", user("ann"))
      emu.faults { { method = "POST", path = "/entities/search$", status = 400 } }
      local r = ocean.unregister_raw("user", user("ann"))
      emu.clear_faults()
      assert.is_false(r.ok)
      assert.are.equal(0, r.deleted)
      assert.matches("could not confirm ownership before deleting", r.errors[1])
      assert.truthy(by_id("user").ann)
    end)
  end)

  describe("itemsToParse children", function()
    before_each(function()
      eng:on_resync("ticket", function()
        return { ticket("t1", { "bug", "ui" }), ticket("t2", { "bug" }) }
      end)
      assert.is_true(ocean.sync_raw_all().ok)
      assert.are.same({ "bug", "ui" }, (function()
        local ids = {}
        for id in pairs(by_id("label")) do ids[#ids + 1] = id end
        table.sort(ids)
        return ids
      end)())
    end)

    it("a shared child survives its parent's deletion, and the log says why", function()
      emu.clear_requests()
      local r
      local text = logged(function() r = ocean.unregister_raw("ticket", ticket("t1", { "bug", "ui" })) end)
      assert.is_true(r.ok, json.encode(r.errors))
      assert.are.same({ 2, 1 }, { r.deleted, r.kept })         -- t1 and ui; bug kept
      local labels, tickets = by_id("label"), by_id("ticket")
      assert.truthy(labels.bug)
      assert.is_nil(labels.ui)
      assert.is_nil(tickets.t1)
      assert.truthy(tickets.t2)                               -- no cascade through bug
      assert.matches("not deleting label/bug %(itemsToParse child of a deleted entity%): "
        .. "ticket/t2 still relates to it; left for the next resync's reconciliation", text)
      assert.are.equal(1, count("POST", "/entities/search$"))
    end)

    it("a child the same batch's upserts still point at stays too", function()
      local a = eng:submit("unregister_raw", "ticket", ticket("t2", { "bug" }))
      local b = eng:submit("register_raw", "ticket", ticket("t3", { "bug" }))
      local ra, rb = eng:await(a), eng:await(b)
      assert.is_true(rb.ok)
      assert.are.equal(1, ra.deleted)
      assert.truthy(by_id("label").bug)
    end)

    it("deletes a child nothing relates to any more", function()
      ocean.unregister_raw("ticket", ticket("t1", { "bug", "ui" }))
      local r = ocean.unregister_raw("ticket", ticket("t2", { "bug" }))
      assert.are.same({ 2, 0 }, { r.deleted, r.kept })
      assert.is_nil(by_id("label").bug)
    end)
  end)

  describe("the resync folds an entity produced several times", function()
    local function kinds_of(s)
      local out = {}
      for _, k in ipairs(s.kinds) do if k.kind == "ticket" then out[#out + 1] = k end end
      return out
    end

    local function totals(s)
      return { s.created, s.updated, s.unknown, s.unchanged, s.failed }
    end

    local function sum_of_kinds(s)
      local t = { 0, 0, 0, 0, 0 }
      for _, k in ipairs(s.kinds) do
        t[1], t[2], t[3] = t[1] + k.created, t[2] + k.updated, t[3] + k.unknown
        t[4], t[5] = t[4] + k.unchanged, t[5] + k.failed_entities
      end
      return t
    end

    local function labels_sent()
      local sent = {}
      for _, req in ipairs(emu.requests { bodies = true }) do
        if req.path == "/v1/blueprints/label/entities/bulk" then
          for _, e in ipairs(req.body.entities) do sent[e.identifier] = (sent[e.identifier] or 0) + 1 end
        end
      end
      return sent
    end

    it("counts and sends 5 labels shared by 24 tickets once each", function()
      local names = { "a", "b", "c", "d", "e" }
      local tickets = {}
      for i = 1, 24 do
        tickets[i] = ticket("t" .. i, { names[(i - 1) % 5 + 1], names[i % 5 + 1], names[(i + 1) % 5 + 1] })
      end
      eng:on_resync("ticket", function() coroutine.yield(tickets) end)
      emu.clear_requests()
      local s = ocean.sync_raw_all()
      assert.is_true(s.ok, json.encode(s.errors))
      assert.are.equal(29, s.created)
      local kinds = kinds_of(s)
      assert.are.same({ 24, 5 }, { kinds[1].entities, kinds[2].entities })
      assert.are.same({ 24, 5 }, { kinds[1].created, kinds[2].created })
      assert.are.same({ a = 1, b = 1, c = 1, d = 1, e = 1 }, labels_sent())
      assert.are.same(totals(s), sum_of_kinds(s))
      -- a second resync: nothing changed, nothing sent, still counted once
      emu.clear_requests()
      s = ocean.sync_raw_all()
      assert.are.same({ 0, 29 }, { s.created, s.unchanged })
      assert.are.same({ 24, 5 }, { kinds_of(s)[1].unchanged, kinds_of(s)[2].unchanged })
      assert.are.equal(0, count("POST", "/entities/bulk$"))
      -- the owned listing fails: all is sent, each label once, and counted
      -- 'unknown' once, in its resource
      emu.faults { { method = "POST", path = "datasource%-entities", status = 500 } }
      emu.clear_requests()
      s = ocean.sync_raw_all()
      emu.faults()
      assert.are.same({ 0, 0, 29, 0 }, { s.created, s.updated, s.unknown, s.unchanged })
      assert.are.same({ 24, 5 }, { kinds_of(s)[1].unknown, kinds_of(s)[2].unknown })
      assert.are.same({ a = 1, b = 1, c = 1, d = 1, e = 1 }, labels_sent())
      assert.are.same(totals(s), sum_of_kinds(s))
    end)

    it("counts an entity two resources produce once, in the first one's counts", function()
      local OTHER_LABELS = { kind = "ticket", selector = { query = "true" },
        port = { itemsToParse = ".labels", entity = { mappings = { identifier = ".item",
          title = ".item", blueprint = '"label"' } } } }
      local app = { createMissingRelatedEntities = true,
        resources = json.array { TICKET, LABEL, OTHER_LABELS } }
      eng:on_resync("ticket", function()
        coroutine.yield { ticket("t1", { "x", "y" }), ticket("t2", { "y" }) }
      end)
      emu.clear_requests()
      local s = ocean.sync_raw_all { app_config = app }
      assert.is_true(s.ok, json.encode(s.errors))
      assert.are.equal(4, s.created)
      local k = kinds_of(s)
      assert.are.same({ 2, 2, 0 }, { k[1].created, k[2].created, k[3].created })
      assert.are.same({ 2, 2, 0 }, { k[1].entities, k[2].entities, k[3].entities })
      assert.are.same(totals(s), sum_of_kinds(s))
      assert.are.same({ x = 1, y = 1 }, labels_sent())
    end)

    it("counts a rejected duplicate once, under its resource, with its reason", function()
      emu.faults { { method = "POST", path = "/v1/blueprints/label/entities/bulk", status = 422,
        body = { ok = false, error = "invalid_request", message = "no labels today" } } }
      eng:on_resync("ticket", function()
        coroutine.yield { ticket("t1", { "x" }), ticket("t2", { "x" }), ticket("t3", { "x" }) }
      end)
      local s = ocean.sync_raw_all()
      emu.faults()
      assert.are.equal(1, s.failed)
      local k = kinds_of(s)
      assert.are.same({ 3, 0 }, { k[1].created, k[1].failed_entities })
      assert.are.same({ 0, 1 }, { k[2].created, k[2].failed_entities })
      assert.are.same(totals(s), sum_of_kinds(s))
      assert.are.equal(1, #s.failures)
      local f = s.failures[1]
      assert.are.same({ "label", "x", 422, k[2].label }, { f.blueprint, f.identifier, f.status, f.label })
      assert.are_not.equal(k[1].label, k[2].label)
    end)

    it("sends the last of differing versions within a bulk", function()
      eng:on_resync("ticket", function()
        coroutine.yield { ticket("t1", { "x" }), { id = "t2", title = "T2", labels = json.array { "x" } } }
      end)
      -- the label's title comes from .item: same content; make it differ by parent
      local app = { resources = json.array { TICKET, { kind = "ticket", selector = { query = "true" },
        port = { itemsToParse = ".labels", entity = { mappings = { identifier = ".item",
          title = ".title", blueprint = '"label"' } } } } } }
      emu.clear_requests()
      local s = ocean.sync_raw_all { app_config = app }
      assert.is_true(s.ok, json.encode(s.errors))
      local titles = {}
      for _, req in ipairs(emu.requests { bodies = true }) do
        if req.path == "/v1/blueprints/label/entities/bulk" then
          for _, e in ipairs(req.body.entities) do titles[#titles + 1] = e.title end
        end
      end
      assert.are.same({ "T2" }, titles)
      assert.are.equal("T2", by_id("label").x.title)
    end)
  end)

  describe("relation order", function()
    it("upserts relation targets before the entities that point at them", function()
      local app = { createMissingRelatedEntities = false, resources = json.array { USER,
        { kind = "team", selector = { query = "true" }, port = { entity = { mappings = {
          identifier = ".id", title = ".id", blueprint = '"team"' } } } } } }
      emu.clear_requests()
      local a = eng:submit("register_raw", "user", user("ann", { team = "t9" }), { app_config = app })
      local b = eng:submit("register_raw", "team", { id = "t9" }, { app_config = app })
      local ra, rb = eng:await(a), eng:await(b)
      assert.is_true(ra.ok and rb.ok, json.encode { ra, rb })
      local order = {}
      for _, r in ipairs(emu.requests()) do
        local bp = r.path:match("^/v1/blueprints/(%w+)/entities/bulk$")
        if bp then order[#order + 1] = bp end
      end
      assert.are.same({ "team", "user" }, order)
    end)
  end)
end)
