-- ocean.gather and ocean.map: run an integration's work concurrently, at
-- most `concurrency` functions at a time (Ocean's asyncio.gather with a
-- semaphore). Standalone, each function is a task of the engine's
-- scheduler (ocean.scheduler); inside nginx, a light thread
-- (ngx.thread.spawn). Usable anywhere an integration's code runs: a
-- resync function or generator, a route handler, a webhook processor.
--
--   local results = ocean.gather({ f1, f2, f3 } [, { concurrency = 10 }])
--     results[i]: the first value fns[i]() returned (results.n = #fns,
--     read through the metatable: pairs and json see a plain list, so
--     ocean.map's results can be yielded as a resync page)
--   local details = ocean.map(items, function(item, i) ... end,
--                             { concurrency = 10 })
--     the same with fn(items[i], i); results in the order of items
--
-- Bound: concurrency (default: all at once) functions run at a time; the
-- next starts when one ends, in the order given. Functions wait with the
-- engine (ocean.http, Port calls, ocean.sleep): their HTTP requests are
-- also bounded by the loop's own concurrency (OCEAN__PORT__CONCURRENCY,
-- default 5, shared with Port's requests), so the requests in flight are
-- at most the smaller of the two.
--
-- Errors: when a function raises, no further function starts, the running
-- ones are cancelled — their current or next wait raises runtime.CANCELLED
-- ("cancelled"), so their pcalls and cleanups run — and once they have
-- ended, gather raises that first error as it was raised (a string or a
-- table, unchanged). With opts.return_errors = true nothing is cancelled
-- and gather never raises: it returns results, errors (errors[i]: what
-- fns[i] raised; a sparse table: test next(errors), not #errors). A
-- function that returns normally while cancelled counts as done. If
-- gather itself is cancelled (it runs inside another gather that failed),
-- it cancels its functions and raises at once.
local runtime = require "ocean.runtime"
local log = require "ocean.log"

local type, error, pcall, select, pairs, ipairs, tostring, setmetatable =
  type, error, pcall, select, pairs, ipairs, tostring, setmetatable
local floor = math.floor
local unpack = table.unpack or unpack

local CANCELLED = runtime.CANCELLED

local _M = {}

local function pack(...) return { n = select("#", ...), ... } end

local function check_opts(fns, opts, what)
  if type(fns) ~= "table" then error(what .. ": expected a list, got " .. type(fns), 3) end
  if opts ~= nil and type(opts) ~= "table" then
    error(what .. ": options must be a table, got " .. type(opts), 3)
  end
  opts = opts or {}
  local c = opts.concurrency
  if c ~= nil and (type(c) ~= "number" or c < 1 or c ~= floor(c)) then
    error(what .. ": concurrency must be a whole number >= 1, got " .. tostring(c), 3)
  end
  return opts, c
end

-- The collector both ways share: starts, results, the first error.
local function new_run(n, conc, return_errors)
  return { n = n, conc = conc or (n > 0 and n or 1), next = 1, running = 0,
           results = setmetatable({}, { __index = { n = n } }), errors = {},
           return_errors = return_errors }
end

-- One function ended (ok, first value or error): record it; true when
-- the others must be cancelled.
local function record(r, i, ok, v)
  r.running = r.running - 1
  if ok then
    r.results[i] = v
  elseif r.return_errors then
    r.errors[i] = v
  elseif r.failed == nil and v ~= CANCELLED then
    r.failed, r.error = i, v
    log.debug("ocean.gather: function %d of %d failed: %s (cancelling the others)", i, r.n,
      tostring(v))
    return true
  end
  return false
end

local function more(r)
  return r.failed == nil and r.running < r.conc and r.next <= r.n
end

local function outcome(r)
  if r.failed then error(r.error, 0) end
  if r.return_errors then return r.results, r.errors end
  return r.results
end

-- The loop both ways share: start(i) starts function i; ended() waits
-- until some have ended and returns them as {i, ok, value} triples;
-- cancel() cancels the running ones. An error (gather itself cancelled)
-- cancels them and goes up.
local function drive(r, start, ended, cancel)
  local ok, err = pcall(function()
    while true do
      while more(r) do
        local i = r.next
        r.next = i + 1
        r.running = r.running + 1
        start(i)
      end
      if r.running == 0 then return end
      for _, e in ipairs(ended()) do
        if record(r, e[1], e[2], e[3]) then cancel() end
      end
    end
  end)
  if not ok then
    cancel()
    error(err, 0)
  end
  return outcome(r)
end

-- {==================== standalone: tasks ====================

local function gather_tasks(eng, fns, r)
  local sched = eng.scheduler
  local running, finished, cond = {}, {}, {}
  local function on_done(t)
    running[t] = nil
    local v
    if t.ok then v = t.values[1] else v = t.err end
    finished[#finished + 1] = { t.index, t.ok, v }
    eng:signal(cond)
  end
  return drive(r, function(i)
    local t = sched:spawn(fns[i], { name = "ocean.gather function " .. i, quiet = true })
    t.index = i
    running[t] = true
    t:on_done(on_done)
  end, function()
    while #finished == 0 do eng:wait_signal(cond) end
    local list = finished
    finished = {}
    return list
  end, function()
    for t in pairs(running) do t:cancel() end
  end)
end

-- }====================

-- {==================== nginx: light threads ====================

local function gather_threads(eng, fns, r)
  local ngx = _G.ngx
  local spawn, wait = ngx.thread.spawn, ngx.thread.wait
  -- the running threads (a dense list for ngx.thread.wait), the slot of
  -- each, and the thread of each function's index
  local threads, slot_of, thread_of = {}, {}, {}
  local function body(i)
    return i, pack(pcall(fns[i]))
  end
  local function remove(i)
    local th = thread_of[i]
    local k, last = slot_of[th], threads[#threads]
    threads[k], slot_of[last] = last, k
    threads[#threads] = nil
    slot_of[th], thread_of[i] = nil, nil
  end
  return drive(r, function(i)
    local th, serr = spawn(body, i)
    if not th then error("ocean.gather: cannot start a light thread: " .. tostring(serr), 0) end
    threads[#threads + 1] = th
    slot_of[th], thread_of[i] = #threads, th
  end, function()
    if eng.is_cancelled() then error(CANCELLED, 0) end
    local ok, i, res = wait(unpack(threads, 1, #threads))
    if not ok then error("ocean.gather: a light thread failed: " .. tostring(i), 0) end
    remove(i)
    return { { i, res[1], res[2] } }
  end, function()
    for k = 1, #threads do eng.cancelled[threads[k]] = true end
  end)
end

-- }====================

function _M.gather(eng, fns, opts)
  local o, conc = check_opts(fns, opts, "ocean.gather")
  for i = 1, #fns do
    if type(fns[i]) ~= "function" then
      error(("ocean.gather: item %d is a %s, expected a function"):format(i, type(fns[i])), 2)
    end
  end
  local r = new_run(#fns, conc, o.return_errors)
  if runtime.in_nginx() then return gather_threads(eng, fns, r) end
  return gather_tasks(eng, fns, r)
end

function _M.map(eng, items, fn, opts)
  local o = check_opts(items, opts, "ocean.map")
  if type(fn) ~= "function" then error("ocean.map: expected a function, got " .. type(fn), 2) end
  local fns = {}
  for i = 1, #items do
    local item = items[i]
    fns[i] = function() return fn(item, i) end
  end
  return _M.gather(eng, fns, o)
end

return _M
