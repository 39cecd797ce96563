-- The journals of nginx workers that are gone (<base>-<pid>.sqlite3 beside
-- this worker's own): adopted once, retired when only dead letters stay
-- (said once, not at every look), and looked into again, quietly, so that
-- events an operator requeued with `ocean journal` are applied without a
-- reload.
local engine = require "ocean.engine"
local event_queue = require "ocean.event_queue"
local journal = require "ocean.journal"
local log = require "ocean.log"
local ehelp = require "spec.helpers.emulator"

describe("ocean.event_queue adopting orphaned journals", function()
  local dir, q, lines, saved, eng

  before_each(function()
    dir = ehelp.tmpdir()
    lines = {}
    log.set_sink(function(level, line) lines[#lines + 1] = level .. " " .. line end)
    saved = event_queue.RECHECK_EVERY
    eng = engine.new()            -- unconfigured: the queue only signals on it
  end)

  after_each(function()
    if q then q.j:close() end
    q = nil
    eng:close()
    event_queue.RECHECK_EVERY = saved
    log.set_sink(nil)
    os.execute("rm -rf " .. ehelp.shell_quote(dir))
  end)

  local function count(pattern)
    local n = 0
    for _, l in ipairs(lines) do if l:find(pattern) then n = n + 1 end end
    return n
  end

  -- a gone worker's journal holding one dead letter
  local function orphan_with_dead_letter(path)
    local j = assert(journal.open(path, { max_attempts = 1 }))
    local id = assert(j:append { path = "/items", headers = {}, body = "{}", received_at = 1 })
    assert.are.equal(1, #assert(j:claim(1)))
    assert(j:fail(id, "Port answered 422"))
    assert.are.equal(1, j:stats().dead)
    j:close()
    return id
  end

  it("says a dead-letter journal once, then finds the events requeued in it", function()
    local orphan = dir .. "/spec-live-111.sqlite3"
    local id = orphan_with_dead_letter(orphan)
    q = assert(event_queue.open(eng, { path = dir .. "/spec-live-222.sqlite3", adopt = true,
                                      base = "spec-live" }))
    assert.are.equal(1, q:adopt_orphans())
    assert.are.equal(1, count("adopted the live%-event journal .*spec%-live%-111"))
    assert.are.equal(1, count("1 dead letter%(s%) stay in it"))
    assert.are.same({}, q.orphans)                        -- retired: closed, kept
    assert.truthy(io.open(orphan, "rb")):close()
    -- later looks: nothing said, nothing opened, before the recheck is due
    assert.are.equal(0, q:adopt_orphans())
    assert.are.equal(1, count("adopted the live%-event journal"))
    -- the operator requeues it (the file is not held: `ocean journal` can)
    local j = assert(journal.open(orphan, { max_attempts = 1 }))
    assert(j:requeue(id))
    j:close()
    event_queue.RECHECK_EVERY = 0
    assert.are.equal(1, q:adopt_orphans())
    assert.are.equal(1, count("1 event%(s%) requeued since it was retired: applying them"))
    assert.are.equal(1, count("adopted the live%-event journal"))   -- not again
    assert.are.equal(1, #q.orphans)                                 -- to be applied
    local evs = assert(q.orphans[1].j:claim(5))
    assert.are.same({ id }, { evs[1].id })
    q.orphans[1].j:close()
  end)

  it("rechecks a dead-letter journal quietly when nothing was requeued", function()
    orphan_with_dead_letter(dir .. "/spec-live-333.sqlite3")
    q = assert(event_queue.open(eng, { path = dir .. "/spec-live-444.sqlite3", adopt = true,
                                      base = "spec-live" }))
    q:adopt_orphans()
    event_queue.RECHECK_EVERY = 0
    for _ = 1, 3 do q:adopt_orphans() end
    assert.are.equal(1, count("adopted the live%-event journal"))
    assert.are.equal(1, count("dead letter%(s%) stay in it"))
    assert.are.equal(0, count("requeued since"))
    assert.are.same({}, q.orphans)
  end)
end)
