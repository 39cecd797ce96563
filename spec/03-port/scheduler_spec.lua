-- ocean.scheduler: tasks on an engine's loop, standalone. Every wait of a
-- task yields to the scheduler; the slow server (the fake API's /slow,
-- which counts the requests it holds) tells what ran at the same time.
local core = require "ocean.core"
local engine = require "ocean.engine"
local log = require "ocean.log"
local runtime = require "ocean.runtime"
local scheduler = require "ocean.scheduler"
local ehelp = require "spec.helpers.emulator"
local fake = require "spec.helpers.fake_api"

describe("ocean.scheduler", function()
  local api, eng

  setup(function() api = fake.start() end)
  teardown(function()
    fake.stop_all()
    ehelp.stop_all()
  end)
  before_each(function()
    api.call("DELETE", "/_slow")
    eng = engine.new()
    eng:get_loop():set_concurrency(20)
  end)
  after_each(function() eng:close() end)

  local function slow(ms, id)
    local res = assert(eng:http().get(("%s/slow?ms=%d&id=%s"):format(api.url, ms, tostring(id))))
    assert.are.equal(200, res.status)
    return res:json().id
  end

  local function counts()
    local _, c = api.call("GET", "/_slow")
    return c
  end

  -- a resync driver: resumes the generator co to its end, its pages into
  -- pages
  local function drive(co, pages)
    while true do
      local ok, v = scheduler.resume(co)
      assert(ok, v)
      pages[#pages + 1] = v
      if coroutine.status(co) == "dead" then return end
    end
  end

  local function run_all(tasks)
    eng:await(function()
      for _, t in ipairs(tasks) do if not t:done() then return false end end
      return true
    end)
  end

  it("runs the waits of many tasks at the same time", function()
    local tasks = {}
    for i = 1, 6 do tasks[i] = eng:spawn(function() return slow(300, i) end) end
    run_all(tasks)
    for i, t in ipairs(tasks) do
      assert.are.same({ true, tostring(i) }, { t:result() })
    end
    local c = counts()
    assert.are.same({ 6, 6, 0 }, { c.served, c.max_in_flight, c.in_flight })
  end)

  it("runs the other tasks while the main thread waits (nested)", function()
    local t = eng:spawn(function() return slow(300, "task") end)
    assert.are.equal("main", slow(300, "main"))
    run_all { t }
    assert.are.same({ true, "task" }, { t:result() })
    assert.are.equal(2, counts().max_in_flight)
  end)

  it("passes the waits of an adopted coroutine up and gives its driver only its own yields", function()
    local pages = {}
    local driver = eng:spawn(function()
      local co = eng.scheduler:adopt(coroutine.create(function()
        coroutine.yield({ slow(300, "p1") })
        coroutine.yield({ slow(300, "p2") })
        return "end"
      end))
      drive(co, pages)
    end)
    local other = eng:spawn(function() return slow(500, "other") end)
    run_all { driver, other }
    assert.are.same({ true }, { driver:result() })
    assert.are.same({ { "p1" }, { "p2" }, "end" }, pages)
    assert.are.equal(2, counts().max_in_flight)
  end)

  it("waits nested inside a call that cannot yield, and the others go on", function()
    local sorted
    local t = eng:spawn(function()
      local list = { 3, 1, 2 }
      table.sort(list, function(a, b)
        assert.is_false(coroutine.isyieldable())
        slow(50, "cmp")
        return a < b
      end)
      sorted = list
    end)
    local other = eng:spawn(function() return slow(300, "other") end)
    run_all { t, other }
    assert.are.same({ 1, 2, 3 }, sorted)
    assert.are.same({ true, "other" }, { other:result() })
  end)

  it("leaves a coroutine nobody adopted to wait nested, so its yields stay its own", function()
    local got
    local t = eng:spawn(function()
      local gen = coroutine.wrap(function()
        coroutine.yield(slow(100, "a"))
        coroutine.yield(slow(100, "b"))
      end)
      got = { gen(), gen() }
    end)
    run_all { t }
    assert.are.same({ "a", "b" }, got)
  end)

  it("gives the others a turn on a plain coroutine.yield", function()
    local order = {}
    local a = eng:spawn(function()
      for i = 1, 3 do order[#order + 1] = "a" .. i; coroutine.yield() end
    end)
    local b = eng:spawn(function()
      for i = 1, 3 do order[#order + 1] = "b" .. i; coroutine.yield() end
    end)
    run_all { a, b }
    assert.are.same({ "a1", "b1", "a2", "b2", "a3", "b3" }, order)
  end)

  it("passes sleep(0) in an adopted coroutine up as a turn, after a loop wait, not as a page", function()
    local pages, order, waits = {}, {}, 0
    local old_hook = eng.scheduler.between_waits
    eng.scheduler.between_waits = function() waits = waits + 1 end
    local driver = eng:spawn(function()
      local co = eng.scheduler:adopt(coroutine.create(function()
        for i = 1, 3 do
          order[#order + 1] = "gen" .. i
          local w = waits
          eng:sleep(0)
          assert(waits > w, "sleep(0) came back before a loop wait")
        end
        coroutine.yield({ "page" })
        return "end"
      end))
      drive(co, pages)
    end)
    local side = eng:spawn(function()
      for i = 1, 3 do order[#order + 1] = "side" .. i; coroutine.yield() end
    end)
    run_all { driver, side }
    eng.scheduler.between_waits = old_hook
    assert.are.same({ true }, { driver:result() })
    assert.are.same({ { "page" }, "end" }, pages)
    -- each step of the generator let the side task run first
    local at = {}
    for i, v in ipairs(order) do at[v] = i end
    assert.are.equal(6, #order)
    assert.is_true(at.side1 < at.gen2 and at.side2 < at.gen3, table.concat(order, " "))
  end)

  it("gives the loop one wait for sleep(0) outside a task", function()
    local waits = 0
    local old_hook = eng.scheduler.between_waits
    eng.scheduler.between_waits = function() waits = waits + 1 end
    local gen = coroutine.wrap(function()     -- a generator driven by the main thread
      for _ = 1, 3 do eng:sleep(0) end
      coroutine.yield("page")
    end)
    local page = gen()
    eng.scheduler.between_waits = old_hook
    assert.are.same({ "page", 3 }, { page, waits })
  end)

  it("times a wait out, and sleeps without holding up the others", function()
    local got
    local t = eng:spawn(function()
      got = { eng:await(function() return false end, 100) }
      eng:sleep(0.2)
      return "slept"
    end)
    local t0 = core.monotonic_ms()
    local other = eng:spawn(function() return slow(200, "x") end)
    run_all { t, other }
    assert.are.same({ nil, "timeout" }, got)
    assert.are.same({ true, "slept" }, { t:result() })
    assert.is_true(core.monotonic_ms() - t0 >= 300)
  end)

  it("cancels a waiting task: its wait raises CANCELLED, its cleanups run, its request stops", function()
    local cleaned, caught
    local t = eng:spawn(function()
      local _, err = pcall(slow, 2000, "long")
      caught = err
      cleaned = true
      error(err, 0)
    end, { quiet = true })
    eng:await(function() return counts().in_flight == 1 end)
    assert.is_true(t:cancel())
    run_all { t }
    assert.are.equal(runtime.CANCELLED, caught)
    assert.is_true(cleaned)
    assert.are.same({ false, runtime.CANCELLED }, { t:result() })
    assert.are.equal("cancelled", tostring(caught))
    assert.is_false(t:cancel())
    -- the transfer was cancelled: the loop has nothing on the wire
    assert.are.equal(0, eng:get_loop():stats().active)
  end)

  it("raises a wait's failing check in the waiting task, not in the scheduler", function()
    local STOP = setmetatable({}, { __tostring = function() return "stop" end })
    local flag = false
    local t = eng:spawn(function()
      local ok, err = pcall(eng.await, eng, function()
        if flag then error(STOP) end
        return false
      end)
      return ok, err
    end)
    local other = eng:spawn(function() slow(100, "o"); flag = true end)
    run_all { t, other }
    assert.are.same({ true, false, STOP }, { t:result() })
  end)

  it("logs a task's error unless it is quiet", function()
    local lines = {}
    local old = log.set_sink(function(level, msg) lines[#lines + 1] = level .. ": " .. msg end)
    local loud = eng:spawn(function() error("boom", 0) end, { name = "loud task" })
    local quiet = eng:spawn(function() error("hush", 0) end, { quiet = true })
    run_all { loud, quiet }
    log.set_sink(old)
    assert.are.same({ false, "boom" }, { loud:result() })
    assert.are.same({ false, "hush" }, { quiet:result() })
    local text = table.concat(lines, "\n")
    assert.truthy(text:find("loud task failed: boom", 1, true))
    assert.falsy(text:find("hush", 1, true))
  end)

  it("names the live tasks for the log once each, a group by its count, and a failure by its own name", function()
    local lines = {}
    local old = log.set_sink(function(level, msg) lines[#lines + 1] = level .. ": " .. msg end)
    local cond, tasks = {}, {}
    for i = 1, 3 do
      tasks[#tasks + 1] = eng:spawn(function()
        eng:wait_signal(cond)
        if i == 2 then error("apply failed", 0) end
      end, { name = "live event " .. i, group = "live event" })
    end
    tasks[#tasks + 1] = eng:spawn(function() eng:wait_signal(cond) end, { name = "request" })
    tasks[#tasks + 1] = eng:spawn(function() eng:wait_signal(cond) end, { name = "request" })
    tasks[#tasks + 1] = eng:spawn(function() eng:wait_signal(cond) end, { name = "the consumer" })
    eng:sleep(0)
    assert.are.same({ "live event (3)", "request (2)", "the consumer" }, eng.scheduler:names())
    eng:signal(cond)
    run_all(tasks)
    log.set_sink(old)
    assert.are.same({}, eng.scheduler:names())
    assert.truthy(table.concat(lines, "\n"):find("live event 2 failed: apply failed", 1, true))
  end)

  it("wakes the tasks waiting on a condition at its signal, without polling them", function()
    local cond, got = {}, {}
    local tasks = {}
    for i = 1, 3 do
      tasks[i] = eng:spawn(function() got[i] = { eng:wait_signal(cond) } end)
    end
    eng:sleep(0.05)                 -- every task is parked on cond
    for _, t in ipairs(tasks) do
      assert.is_false(t:done())
      assert.is_nil(eng.scheduler.waiting[t])   -- not in the polled set
    end
    local signaller = eng:spawn(function() eng:signal(cond, "go") end)
    run_all(tasks)
    assert.is_true(signaller:done())
    assert.are.same({ { "go" }, { "go" }, { "go" } }, got)
    -- a signal nobody waits for is counted, not kept for the next waiter
    eng:signal(cond)
    local late = eng:spawn(function() return eng:wait_signal(cond, 100) end)
    run_all { late }
    assert.are.same({ true, nil, "timeout" }, { late:result() })
  end)

  it("times out and cancels a wait on a condition, and waits on one nested", function()
    local cond = {}
    local timed = eng:spawn(function() return eng:wait_signal(cond, 50) end)
    local cancelled = eng:spawn(function() return eng:wait_signal(cond) end, { quiet = true })
    run_all { timed }
    assert.are.same({ true, nil, "timeout" }, { timed:result() })
    assert.is_true(cancelled:cancel())
    run_all { cancelled }
    assert.are.same({ false, runtime.CANCELLED }, { cancelled:result() })
    -- the main thread (no task) waits nested: the task that signals runs
    eng:spawn(function() eng:sleep(0.05); eng:signal(cond, 7) end)
    assert.are.equal(7, eng:wait_signal(cond, 5000))
    eng:signal(cond)                -- nobody parked: nothing left behind
    assert.is_nil(eng.scheduler.parked[cond])
  end)

  it("runs an eager task at once until its first wait", function()
    local steps = {}
    local t = eng:spawn(function()
      steps[#steps + 1] = "started"
      eng:sleep(0.01)
      steps[#steps + 1] = "resumed"
    end, { eager = true })
    assert.are.same({ "started" }, steps)
    local quick = eng:spawn(function() return "done" end, { eager = true })
    assert.are.same({ true, "done" }, { quick:result() })
    run_all { t }
    assert.are.same({ "started", "resumed" }, steps)
  end)

  it("returns from a pump after SLICE_MS of work and runs the rest on the next", function()
    local ran, tasks = 0, {}
    for i = 1, 64 do
      tasks[i] = eng:spawn(function()
        local t0 = core.monotonic_ms()
        while core.monotonic_ms() - t0 < 2 do end   -- 2 ms of work each
        ran = ran + 1
      end)
    end
    local n = eng.scheduler:pump()
    assert.is_true(n >= 1 and n < 64, "one pump ran " .. n .. " of 64")
    assert.are.equal(n, ran)
    assert.are.equal(0, eng.scheduler:timeout(1000))   -- the rest: no wait
    run_all(tasks)
    assert.are.equal(64, ran)
  end)

  it("calls the step hook between task steps every POLL_MS, never from inside a task", function()
    local old = scheduler.POLL_MS
    local calls, in_sort, while_sorting = 0, false, 0
    eng:set_step_hook(function()
      calls = calls + 1
      if in_sort then while_sorting = while_sorting + 1 end
      assert.is_nil(eng.scheduler:current())
    end)
    local ok, err = pcall(function()
      scheduler.POLL_MS = 0
      local tasks = {}
      for i = 1, 5 do tasks[i] = eng:spawn(function() end) end
      eng.scheduler:pump()
      assert.are.equal(5, calls)            -- after each of the 5 steps
      run_all(tasks)
      -- a task that waits nested (inside table.sort's comparator) pumps
      -- the others from inside itself: no hook there
      local nested = eng:spawn(function()
        local list = { 2, 1 }
        table.sort(list, function(a, b)
          in_sort = true
          eng:sleep(0.05)
          in_sort = false
          return a < b
        end)
      end)
      local other = eng:spawn(function()
        for _ = 1, 20 do coroutine.yield() end
      end)
      run_all { nested, other }
      assert.are.equal(0, while_sorting)
      -- every POLL_MS only
      scheduler.POLL_MS = 3600 * 1000
      calls = 0
      for i = 1, 5 do tasks[i] = eng:spawn(function() end) end
      eng.scheduler:pump()
      assert.are.equal(0, calls)
      run_all(tasks)
    end)
    scheduler.POLL_MS = old
    eng:set_step_hook(nil)
    assert(ok, err)
  end)

  it("refuses what is not a function", function()
    assert.has_error(function() eng:spawn(42) end, "spawn: expected a function, got number")
  end)
end)
