-- The C sync session's phases (core.sync_new), driven directly against
-- the emulator: the order lives in the session, and nothing advances
-- unless its Job is polled.
local core = require "ocean.core"
local json = require "ocean.json"
local mapping = require "ocean.mapping"
local runtime = require "ocean.runtime"
local ehelp = require "spec.helpers.emulator"

local RESOURCE = { kind = "item", selector = { query = "true" },
  port = { entity = { mappings = { identifier = ".id", blueprint = '"item"', title = ".t" } } } }

describe("a sync session", function()
  local emu, loop, port, m

  setup(function()
    emu = ehelp.start { quiet = true }
    m = assert(mapping.compile(RESOURCE))
  end)
  teardown(function() ehelp.stop_all() end)
  before_each(function()
    emu.reset()
    assert.are.equal(201, (emu.api("POST", "/v1/blueprints",
      { identifier = "item", title = "Item", schema = { properties = {} } })))
    loop = core.loop_new()
    port = core.port_new(loop, { base_url = emu.url, client_id = emu.client_id,
      client_secret = emu.client_secret, integration_type = "spec",
      integration_identifier = "session-spec", integration_version = "1.0.0" })
  end)
  after_each(function()
    port:close()
    loop:close()
  end)

  local function await(job) return runtime.await(loop, job) end

  local function session(opts)
    opts = opts or {}
    opts.slots = opts.slots or { m }
    return core.sync_new(port, opts)
  end

  local function ids()
    local out = {}
    for _, e in ipairs(emu.entities("item")) do out[#out + 1] = e.identifier end
    table.sort(out)
    return out
  end

  local function deletes()
    local n = 0
    for _, r in ipairs(emu.requests()) do
      if r.path:find("/bulk/entities/delete$") then n = n + 1 end
    end
    return n
  end

  -- One session that writes items: {id, t} pairs.
  local function sync(items, finish, opts)
    local s = session(opts)
    assert.is_true(await(s:ready()))
    if #items > 0 then assert(s:feed(1, items)) end
    await(assert(s:drain()))
    local rep = await(assert(s:finish(finish or { threshold = 0.9 })))
    s:close()
    return rep
  end

  it("walks its phases in order: listing, feeding, finishing ... done", function()
    local s = session()
    assert.are.equal("listing", s:state())
    assert.is_true(await(s:ready()))
    assert.are.equal("feeding", s:state())
    local fed = assert(s:feed(1, { { id = "a", t = "A" }, { id = "b", t = "B" }, { t = "no id" } }))
    assert.are.same({ 3, 2, 1 }, { fed.items, fed.entities, fed.dropped_count })
    assert.is_true(await(assert(s:drain())))
    local job = assert(s:finish { threshold = 0.9 })
    assert.are.equal("finishing", s:state())
    local rep = await(job)
    assert.are.equal("done", s:state())
    assert.are.equal("done", rep.state)
    assert.are.same({ candidates = 0, owned = 0, threshold = 0.9, deleted = 0, skipped = false,
                      reasons = {} }, rep.deletion)
    assert.are.equal(2, s:stats().created)
    assert.are.equal(rep, job:result())             -- the same report every time
    assert.are.same({ "a", "b" }, ids())
  end)

  it("deletes what the run did not produce, once confirmed", function()
    sync { { id = "a", t = "A" }, { id = "b", t = "B" } }
    local rep = sync { { id = "a", t = "A" } }
    assert.are.same({ 1, 2, 1, false }, { rep.deletion.candidates, rep.deletion.owned,
                                          rep.deletion.deleted, rep.deletion.skipped })
    assert.are.equal(0.5, rep.deletion.ratio)
    assert.are.equal(1, rep.confirmed)
    assert.are.same({ "a" }, ids())
  end)

  it("takes no new phase while nobody polls it, so a caller that stops deletes nothing", function()
    sync { { id = "a", t = "A" }, { id = "b", t = "B" } }
    emu.clear_requests()
    local s = session()
    await(s:ready())
    assert(s:feed(1, { { id = "a", t = "A" } }))
    await(assert(s:drain()))
    local job = assert(s:finish { threshold = 0.9 })
    for _ = 1, 20 do loop:wait(10) end             -- the loop runs, the Job is not polled
    assert.are.equal("finishing", s:state())
    s:close()                                        -- as an aborted run does
    assert.is_true(job:done())
    assert.are.same({ nil, "cancelled" }, { job:result() })
    assert.are.equal(0, deletes())
    assert.are.same({ "a", "b" }, ids())
  end)

  local rules = {
    { "the caller's errors, then its own reasons",
      { threshold = 0.9, errors = 2, blocked = { "kind 'item': 1 entities had no identifier or blueprint" } },
      { "2 errors during the resync: the state is incomplete",
        "kind 'item': 1 entities had no identifier or blueprint" } },
    { "a threshold of 0", { threshold = 0 },
      { "entityDeletionThreshold is 0: this integration never deletes" } },
    { "a share above the threshold", { threshold = 0.4 },
      { "deleting 1 of 2 owned entities (50%) is above entityDeletionThreshold (40%)" } },
  }
  for _, c in ipairs(rules) do
    it("skips deletion for " .. c[1] .. ", and says why", function()
      sync { { id = "a", t = "A" }, { id = "b", t = "B" } }
      local rep = sync({ { id = "a", t = "A" } }, c[2])
      assert.is_true(rep.deletion.skipped)
      assert.are.same(c[3], rep.deletion.reasons)
      assert.are.equal(0, rep.deletion.deleted)
      assert.are.same({ "a", "b" }, ids())
    end)
  end

  it("keeps a candidate updated after the bound it was given", function()
    sync { { id = "a", t = "A" }, { id = "b", t = "B" } }
    local rep = sync({ { id = "a", t = "A" } }, { threshold = 0.9, before = "2000-01-01T00:00:00.000Z" })
    assert.are.same({ 1, 0, 0, false }, { rep.deletion.candidates, rep.confirmed,
                                          rep.deletion.deleted, rep.deletion.skipped })
    assert.are.same({ "a", "b" }, ids())
  end)

  it("counts a listing that finish cut short as unreadable owned entities", function()
    sync { { id = "a", t = "A" } }
    emu.faults { { path = "/datasource%-entities$", delay_ms = 500 } }
    local s = session()
    assert.are.equal("listing", s:state())
    local rep = await(assert(s:finish { threshold = 0.9 }))
    emu.clear_faults()
    assert.is_true(rep.deletion.skipped)
    assert.are.same({ "the resync ended before the entities this integration owns were all read" },
      rep.deletion.reasons)
    s:close()
    assert.are.same({ "a" }, ids())
  end)

  it("keeps its order: nothing is offered after finish, and it finishes once", function()
    local s = session()
    await(s:ready())
    local job = assert(s:finish { threshold = 0.9 })
    assert.are.same({ nil, "BUG: sync offer after the session finished" },
      { s:offer(1, { identifier = "x", blueprint = "item" }) })
    assert.are.same({ nil, "BUG: sync offer after the session finished" },
      { s:feed(1, { { id = "x" } }) })
    assert.are.same({ nil, "BUG: the sync session is already finishing" }, { s:finish {} })
    await(job)
    s:close()
    assert.has_error(function() s:state() end, "sync session is closed")
  end)

  it("retries the failed upserts once and reports it", function()
    emu.faults { { method = "POST", path = "/item/entities/bulk$", status = 404, count = 1 } }
    local rep = sync { { id = "a", t = "A" }, { id = "b", t = "B" } }
    assert.are.same({ 2, 2, 1 }, { rep.retried, rep.retry_ok, rep.retry_levels })
    assert.are.same({}, rep.errors)
    assert.are.same({ "a", "b" }, ids())
  end)

  it("plans: what it would delete, and writes nothing", function()
    sync { { id = "a", t = "A" }, { id = "b", t = "B" } }
    emu.clear_requests()
    local rep = sync({ { id = "a", t = "A2" } }, nil, { plan = true })
    assert.are.same({ { blueprint = "item", identifier = "b", outcome = "pending" } },
      rep.deletion.planned)
    assert.are.equal(1, rep.deletion.deleted)
    assert.are.equal(0, deletes())
    local s = session { plan = true }
    await(s:ready())
    s:feed(1, {})
    rep = await(assert(s:finish { threshold = 0.9 }))
    assert.are.equal(2, #rep.deletion.would_delete)   -- skipped: 100 % is above 90 %
    s:close()
    assert.are.same({ "A", "B" }, { emu.entities("item")[1].title, emu.entities("item")[2].title })
  end)

  -- session:feed with acc = {budget_ms = ...}: false until the items are
  -- all mapped; the caller calls again with the same items and acc.
  local function feed_sliced(s, items, budget_ms)
    local acc, calls = { budget_ms = budget_ms }, 1
    local rep, err = s:feed(1, items, acc)
    while rep == false do
      calls = calls + 1
      loop:wait(0)                       -- the rest runs between two slices
      rep, err = s:feed(1, items, acc)
    end
    return assert(rep, err), calls
  end

  -- What a feed report says, without the order-free tables.
  local function summary(rep)
    local errs, drops = {}, {}
    for _, e in ipairs(rep.errors) do errs[#errs + 1] = e.index end
    for _, d in ipairs(rep.dropped) do drops[#drops + 1] = d.index end
    return { items = rep.items, entities = rep.entities, filtered = rep.filtered,
             error_count = rep.error_count, errors = errs,
             dropped_count = rep.dropped_count, dropped = drops }
  end

  -- 600 raw items: tables and JSON texts, one that does not parse (an
  -- item error) and two without an identifier (dropped), far apart.
  local function page()
    local items = {}
    for i = 1, 600 do
      items[i] = i % 2 == 0 and { id = "p" .. i, t = "T" .. i }
                 or ('{"id":"p%d","t":"T%d"}'):format(i, i)
    end
    items[17] = "{not json"
    items[250] = { t = "no id" }
    items[599] = '{"t":"no id either"}'
    return items
  end

  for _, form in ipairs { "a list of tables and JSON texts", "one JSON text" } do
    it("maps a page in time slices when given a budget (" .. form .. "): the same report and entities", function()
      local items = page()
      if form == "one JSON text" then
        for i, v in ipairs(items) do
          if type(v) == "table" then items[i] = json.encode(v) end
        end
        items[17] = '{"id":"p17","t":"T17"}'   -- a bad element would end the stream
        items = "[" .. table.concat(items, ",") .. "]"
      end
      local whole = session()
      await(whole:ready())
      local once = summary(assert(whole:feed(1, items)))
      await(assert(whole:drain()))
      whole:close()
      local first = ids()
      emu.reset()
      assert.are.equal(201, (emu.api("POST", "/v1/blueprints",
        { identifier = "item", title = "Item", schema = { properties = {} } })))
      local s = session()
      await(s:ready())
      local rep, calls = feed_sliced(s, items, 1e-6)
      await(assert(s:drain()))
      s:close()
      -- at least 7 items a slice (the clock is read every 8th): many calls
      assert.is_true(calls >= 10, calls .. " calls")
      assert.is_true(calls <= 100, calls .. " calls")
      assert.are.same(once, summary(rep))
      assert.are.equal(form == "one JSON text" and 598 or 597, rep.entities)
      assert.are.same(first, ids())
      assert.are.equal(rep.entities, #ids())
    end)
  end

  it("maps in one call when the budget is not reached, and a report per acc", function()
    local s = session()
    await(s:ready())
    local rep, calls = feed_sliced(s, { { id = "a", t = "A" }, { id = "b", t = "B" } }, 1000)
    assert.are.same({ 1, 2, 2 }, { calls, rep.items, rep.entities })
    rep, calls = feed_sliced(s, { { id = "c", t = "C" } }, 1000)     -- a new acc: a new report
    assert.are.same({ 1, 1, 1 }, { calls, rep.items, rep.entities })
    await(assert(s:drain()))
    s:close()
    assert.are.same({ "a", "b", "c" }, ids())
  end)

  it("refuses slots it does not have", function()
    local s = session { slots = { false, { title = true, properties = json.array {} } } }
    assert.has_error(function() s:feed(1, {}) end, "bad argument #1 to 'feed' (no such slot)")
    assert.has_error(function() s:feed(2, {}) end)  -- a signature slot maps nothing
    assert.is_true((s:offer(2, { identifier = "x", blueprint = "item", title = "X" })))
    s:close()
  end)
end)
