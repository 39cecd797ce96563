-- ocean.runtime: the one place that knows how Lua waits for the event
-- loop (ocean.core's Loop).
--
--   runtime.await(loop, job_or_fn [, opts]) -> value | nil, err
--     job: an ocean.Job (loop:request(), a Port client's or a sync
--       session's): waits until job:done(), then returns job:result().
--     fn: called between waits until it returns a non-nil value.
--     opts.timeout_ms: give up after this long (nil, "timeout").
--     opts.scheduler: the engine's ocean.scheduler (standalone): the wait
--       yields to it when the caller runs in one of its tasks, else runs
--       it nested (see ocean.scheduler);
--     opts.servers: C servers (ocean.core Server) waited on with the loop;
--     opts.between_waits(): run after each blocking wait (the runner
--     serves its HTTP requests there); opts.on_events(events): the
--     signals the loop read (loop:watch_signals()); opts.is_cancelled():
--     inside nginx, true when the running light thread was cancelled
--     (ocean.gather).
--   runtime.sleep(loop, seconds [, opts]) -> true: wait that long without
--     holding anyone up (0: a turn for the others).
--   An engine (ocean.engine) passes its own: engine:await(job_or_fn),
--   engine:sleep(seconds).
--   A cancelled wait (ocean.gather cancels the functions still running
--   when one fails) raises runtime.CANCELLED, after cancelling its Job.
--   runtime.pause(loop [, opts]): let the rest run for a moment between
--     two slices of long work (nginx: yields; standalone: one loop turn;
--     an engine with a scheduler yields to it instead: Engine:pause).
--   runtime.give_way() -> n: inside nginx, yields while the worker's
--     current loop iteration has run SLICE_MS (see below); called before a
--     request's work, before a live event's, and after each wait.
--
-- Standalone (lua5.4, luajit), with a scheduler: in a task, the wait
-- yields and the scheduler waits on the loop for every task at once;
-- elsewhere (the main thread, an unmanaged coroutine, inside a C call)
-- the scheduler runs nested until the wait is over. Without one: blocks
-- in loop:wait(), at most runtime.BLOCK_MS at a time, then runs
-- opts.between_waits if given.
--
-- Inside nginx (a yieldable phase: rewrite, access, content, timer, ...):
-- loop:wait(0) never blocks; between two, ngx.sleep() yields the worker
-- for an adaptive step that starts at STEP_MIN_MS after progress, doubles
-- up to STEP_MAX_MS while idle, and is cut to loop:next_timeout() when a
-- timer (a retry) is due sooner. In a phase that cannot yield (init,
-- init_worker, set, log...) it falls back to blocking waits. Once the
-- worker is exiting, a wait that goes on EXIT_GRACE_MS longer raises.
-- This module keeps no state but the time the worker started exiting.
local type, pcall, error, tostring, getmetatable, pairs =
  type, pcall, error, tostring, getmetatable, pairs
local min = math.min
local os_time = os.time

local core = require "ocean.core"
local scheduler = require "ocean.scheduler"

local _M = {
  BLOCK_MS = 1000,
  STEP_MIN_MS = 1,
  STEP_MAX_MS = 20,
  EXIT_GRACE_MS = 10000,
  SLEEP_SLICE_S = 1,       -- nginx: the longest ngx.sleep of one ocean.sleep slice
  SLICE_MS = 5,            -- give_way: the work one loop iteration may do
  GIVE_WAY_MAX_MS = 1000,  -- give_way: the longest it defers one piece of work
}

local CANCELLED = scheduler.CANCELLED
_M.CANCELLED = CANCELLED

local YIELDABLE = {
  rewrite = true, server_rewrite = true, access = true, content = true,
  timer = true, ssl_cert = true, ssl_session_fetch = true,
  ssl_client_hello = true, preread = true,
}

-- true when running in an nginx phase where ngx.sleep may yield.
function _M.in_nginx()
  local ngx = _G.ngx
  if type(ngx) ~= "table" or type(ngx.sleep) ~= "function"
     or type(ngx.get_phase) ~= "function" then
    return false
  end
  local ok, phase = pcall(ngx.get_phase)
  return ok and YIELDABLE[phase] == true
end

local now_ms = core.monotonic_ms or function() return os_time() * 1000 end

local JOB_MT = core.job_mt

local function checker(what)
  if type(what) == "function" then return what end
  if getmetatable(what) == JOB_MT then
    return function() if what:done() then return true end end, what
  end
  error("runtime.await: expected an ocean.Job or a function, got "
        .. type(what), 3)
end

-- A worker that exits (nginx -s reload / quit) waits for its running
-- timers and requests: after EXIT_GRACE_MS, a wait raises instead, so that
-- no Port retry loop keeps an old worker alive for minutes.
-- The start of that error's message (ocean.router answers a route it
-- cut short 503, not 500).
_M.EXIT_ERROR = "the nginx worker is exiting: gave up waiting"

-- true inside an nginx worker that is exiting (nginx -s quit / reload).
function _M.worker_exiting()
  local ngx = _G.ngx
  local w = type(ngx) == "table" and ngx.worker
  return (w and w.exiting and w.exiting()) and true or false
end

local exiting_since
local function check_exit()
  if not _M.worker_exiting() then return end
  local t = now_ms()
  exiting_since = exiting_since or t
  if t - exiting_since > _M.EXIT_GRACE_MS then
    error(_M.EXIT_ERROR .. " after " .. _M.EXIT_GRACE_MS .. " ms", 0)
  end
end

local NO_OPTS = {}

local function wait_nginx(loop, check, deadline, o)
  local ngx = _G.ngx
  local step = _M.STEP_MIN_MS
  local cancelled = o.is_cancelled
  while true do
    check_exit()
    if cancelled and cancelled() then return nil, CANCELLED end
    local events, n = loop:wait(0)
    if events and o.on_events then o.on_events(events) end
    local v = check()
    if v ~= nil then _M.give_way() return v end
    if deadline and now_ms() >= deadline then return nil, "timeout" end
    if n and n > 0 then step = _M.STEP_MIN_MS end
    local s, nt = step, loop:next_timeout()
    if nt >= 0 and nt < s then s = nt end
    -- ngx.sleep(0) is a warning per call without OpenResty's patches
    if s < _M.STEP_MIN_MS then s = _M.STEP_MIN_MS end
    ngx.sleep(s / 1000)
    step = min(step * 2, _M.STEP_MAX_MS)
  end
end

local function wait_blocking(loop, check, deadline, o)
  while true do
    local t = _M.BLOCK_MS
    if deadline then
      t = min(t, deadline - now_ms())
      if t < 0 then t = 0 end
    end
    local events = loop:wait(t, o.servers)
    if events and o.on_events then o.on_events(events) end
    if o.between_waits then o.between_waits() end
    local v = check()
    if v ~= nil then return v end
    if deadline and now_ms() >= deadline then return nil, "timeout" end
  end
end

-- Let the rest of the program run for a moment, between two slices of
-- long work: inside nginx, yield the worker for STEP_MIN_MS; standalone,
-- one turn of the loop without blocking (opts as await's), then
-- opts.between_waits.
function _M.pause(loop, opts)
  opts = opts or NO_OPTS
  if _M.in_nginx() then
    check_exit()
    _G.ngx.sleep(_M.STEP_MIN_MS / 1000)
    _M.give_way()
    return
  end
  local events = loop:wait(0, opts.servers)
  if events and opts.on_events then opts.on_events(events) end
  if opts.between_waits then opts.between_waits() end
end

-- Give way to the rest of the nginx worker when its current event-loop
-- iteration has already run SLICE_MS (5 ms): sleep 1 ms, again while the
-- iteration it wakes in has run that long, for at most GIVE_WAY_MAX_MS
-- (1 000 ms) in all, so that a burst's work is spread over iterations and
-- nginx reads new connections (a health probe) between them. nginx updates
-- its cached clock (ngx.now()) once per iteration, after the epoll wait,
-- and lua-ocean never calls ngx.update_time(): ngx.now() is when the
-- iteration began, and core.now() (the same gettimeofday clock) is now.
-- Other Lua code calling ngx.update_time() only makes it give way later.
-- Returns how many times it slept (0: not late, not in a phase that may
-- yield, standalone, or the worker is exiting).
-- Standalone the scheduler slices its own work (ocean.scheduler SLICE_MS).
local core_now = core.now
function _M.give_way()
  if not _M.in_nginx() then return 0 end
  local ngx = _G.ngx
  if type(ngx.now) ~= "function" then return 0 end   -- a stand-in without a clock
  local slept, t0 = 0, nil
  while (core_now() - ngx.now()) * 1000 > _M.SLICE_MS do
    if _M.worker_exiting() then break end
    local t = now_ms()
    t0 = t0 or t
    if t - t0 >= _M.GIVE_WAY_MAX_MS then break end
    ngx.sleep(0.001)
    slept = slept + 1
  end
  return slept
end

function _M.await(loop, what, opts)
  if type(loop) ~= "userdata" and type(loop) ~= "table" then
    error("runtime.await: expected a loop, got " .. tostring(loop), 2)
  end
  local check, job = checker(what)
  local v, err = check()
  if v == nil then
    opts = opts or NO_OPTS
    local deadline = opts.timeout_ms and now_ms() + opts.timeout_ms
    if _M.in_nginx() then
      v, err = wait_nginx(loop, check, deadline, opts)
    elseif opts.scheduler then
      v, err = opts.scheduler:await(check, deadline)
    else
      v, err = wait_blocking(loop, check, deadline, opts)
    end
  end
  if err == CANCELLED then
    if job then job:cancel() end
    error(CANCELLED, 0)
  end
  if job and v ~= nil then return job:result() end
  return v, err
end

local function never() return nil end

function _M.sleep(loop, seconds, opts)
  if type(seconds) ~= "number" or seconds < 0 or seconds ~= seconds then
    error("sleep: expected a number of seconds >= 0, got " .. tostring(seconds), 2)
  end
  opts = opts or NO_OPTS
  if _M.in_nginx() then
    local c = opts.is_cancelled
    if c and c() then error(CANCELLED, 0) end
    -- in slices of at most SLEEP_SLICE_S, so that a worker that exits
    -- gives up as its other waits do (EXIT_GRACE_MS), not at the end of
    -- a long sleep; ngx.sleep(0) warns without OpenResty's patches: 1 ms
    -- at least
    local deadline = now_ms() + seconds * 1000
    repeat
      check_exit()
      local left = (deadline - now_ms()) / 1000
      _G.ngx.sleep(left < 0.001 and 0.001 or min(left, _M.SLEEP_SLICE_S))
      if c and c() then error(CANCELLED, 0) end
    until now_ms() >= deadline
    return true
  end
  if opts.scheduler and not opts.timeout_ms then
    local _, err = opts.scheduler:sleep(seconds * 1000)
    if err == CANCELLED then error(CANCELLED, 0) end
    return true
  end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.timeout_ms = seconds * 1000
  _M.await(loop, never, o)
  return true
end

return _M
