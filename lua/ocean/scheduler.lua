-- ocean.scheduler: coroutines on one engine's event loop, standalone
-- (`ocean sail`, a Lua program). Each HTTP request, the listener with its
-- resyncs, every function ocean.gather runs and the live-event consumer is
-- a task; a task that waits (a Port call, ocean.http, a sleep) yields to
-- the scheduler, which waits on the loop for all of them at once, so that
-- no task ever waits behind another's wait. Inside nginx the engine never
-- uses it: waits yield to nginx there (ocean.runtime).
--
--   local s = scheduler.new { loop = fn, servers = {...}, on_events = fn,
--                             between_waits = fn }
--   local t = s:spawn(fn [, {name=, group=, quiet=, eager=, stop_exempt=}])  -- runs
--     at the next pump (eager: at once, until its first wait: a request
--     starts in the order it arrived, and one that never waits — a health
--     probe — is answered right away; stop_exempt: the engine's stop does
--     not end its waits, nor those of the tasks it spawns: see
--     Engine:await)
--   t:done() -> bool; t:result() -> ok, values... | ok=false, err
--   t:cancel() -> its current or next wait raises scheduler.CANCELLED
--   s:await(check, deadline_ms) -> v | nil, "timeout" | nil, CANCELLED
--   s:wait_signal(cond, deadline_ms) -> v | nil, "timeout" | nil, CANCELLED
--   s:signal(cond [, v])         -- wakes every task waiting on cond (a table)
--   s:sleep(ms)                  -- yields (or runs the others) that long
--
-- await's check is called after every loop wait, for every task waiting
-- on one (~1 us each on Lua 5.4): fine for a Job or a few predicates. A
-- wait on a condition costs nothing until s:signal(cond): a burst of a
-- thousand requests waiting for their journal commit uses that.
--
-- The wait protocol. A task's coroutine that must wait calls s:await: in
-- a coroutine the scheduler manages (a task, or a coroutine a driver
-- adopted with s:adopt) it yields the pair (scheduler.WAIT, record) and
-- is resumed with the value once record.check() gives one. A coroutine
-- of its own that runs such code — a resync generator, whose
-- coroutine.yield(page) must not be mistaken for a wait — is resumed with
-- scheduler.resume(co, ...), which passes WAIT yields up to the scheduler
-- and returns only co's own yields (and its end): the pattern of
-- OpenResty's user coroutines, where ngx.sleep inside a coroutine.wrap
-- yields to nginx, not to the wrapper. Anywhere else — the main thread, a
-- coroutine nobody adopted, a call that cannot yield (inside a C
-- function: table.sort's comparator, string.gsub's callback, a __gc) —
-- s:await runs the loop itself until check() gives a value, resuming the
-- other tasks meanwhile ("nested": the caller's own task waits, the
-- others go on). coroutine.isyieldable() tells the cases apart on Lua 5.4
-- and LuaJIT 2.1 alike; both yield across pcall/xpcall.
--
-- A plain coroutine.yield() in a task (not a WAIT) gives the others a
-- turn: the task is resumed after the next loop wait.
--
-- Errors: a task that raises ends with ok = false and its error; unless
-- spawned quiet (someone collects it: ocean.gather), the error is logged.
-- Cancelling a task makes its wait raise CANCELLED (its pcalls and
-- cleanups run); a task that catches it and waits again gets it again.
local core = require "ocean.core"
local log = require "ocean.log"

local type, select, tostring, setmetatable, error, pcall, pairs =
  type, select, tostring, setmetatable, error, pcall, pairs
local co_create, co_resume, co_yield, co_status, co_running =
  coroutine.create, coroutine.resume, coroutine.yield, coroutine.status, coroutine.running
local co_isyieldable = coroutine.isyieldable
local unpack = table.unpack or unpack
local min = math.min
local now_ms = core.monotonic_ms
local traceback = debug.traceback

local _M = {
  BLOCK_MS = 1000,       -- the longest single loop wait when nothing is due
  SLICE_MS = 10,         -- pump() returns to the loop after this much work
  POLL_MS = 2,           -- between_steps() runs at least this often in pump()
}

local WAIT = setmetatable({}, { __tostring = function() return "ocean.scheduler.WAIT" end })
_M.WAIT = WAIT
local CANCELLED = setmetatable({}, { __tostring = function() return "cancelled" end })
_M.CANCELLED = CANCELLED
-- A wait's check raised: the error is raised again in the waiting task
-- (a resync's check raises when the run must stop).
local RAISED = setmetatable({}, { __tostring = function() return "ocean.scheduler.RAISED" end })

local function pack(...) return { n = select("#", ...), ... } end

-- {==================== tasks ====================

local Task = {}
Task.__index = Task

function Task:done()
  return self.state == "dead"
end

-- ok, values... once done (ok = false: the error); nil, "pending" before.
function Task:result()
  if self.state ~= "dead" then return nil, "pending" end
  if not self.ok then return false, self.err end
  return true, unpack(self.values, 1, self.values.n)
end

-- Cancel: the task's current (or next) wait raises CANCELLED. true when
-- the task was still running.
function Task:cancel()
  if self.state == "dead" then return false end
  self.cancelled = true
  local s = self.sched
  if self.state == "waiting" then
    s.waiting[self] = nil
    local cond = self.wait.cond
    if cond and s.parked[cond] then s.parked[cond][self] = nil end
    self.wait = nil
    self.resume_with = pack(nil, CANCELLED)
    s.ready[#s.ready + 1] = self
    self.state = "ready"
  end
  return true
end

-- fn(task) when the task ends (at once if it has).
function Task:on_done(fn)
  if self.state == "dead" then return fn(self) end
  local l = self.watchers or {}
  l[#l + 1] = fn
  self.watchers = l
end

-- }====================

local Scheduler = {}
Scheduler.__index = Scheduler

local step_task

-- opts.loop: function returning the loop (the engine makes its loop on
-- demand); opts.servers: a list (kept, read at each wait) of C servers
-- waited on with the loop; opts.on_events(events): the signals the loop
-- read; opts.between_waits(): after each loop wait (the runner serves its
-- HTTP server and reads signals there); opts.between_steps(): in pump(),
-- between two task steps once POLL_MS have passed since the last call,
-- only when pump() runs outside any task (the runner answers its health
-- probe there). Neither may wait.
function _M.new(opts)
  return setmetatable({
    loop = opts.loop, servers = opts.servers or {}, on_events = opts.on_events,
    between_waits = opts.between_waits, between_steps = opts.between_steps,
    ready = {}, later = {}, waiting = {}, count = 0, blocks = 0,
    live = {},                                      -- task -> true until it ends
    parked = setmetatable({}, { __mode = "k" }),    -- cond -> {task = true}
    managed = setmetatable({}, { __mode = "k" }),   -- coroutine -> task
  }, Scheduler)
end

-- The task the running coroutine belongs to, or nil.
function Scheduler:current()
  local co = co_running()
  return co and self.managed[co] or nil
end

-- Can the running code wait by yielding to this scheduler?
function Scheduler:can_yield()
  local co = co_running()
  return co ~= nil and self.managed[co] ~= nil and co_isyieldable()
end

-- co (a coroutine the running task will resume with scheduler.resume)
-- waits through the task: it is managed as part of it. Outside a task,
-- co's waits stay nested. Returns co.
function Scheduler:adopt(co)
  local t = self:current()
  if t then self.managed[co] = t end
  return co
end

-- Live tasks.
function Scheduler:size()
  return self.count
end

-- The names of the live tasks, sorted, each once with a count when
-- several share it ("request (3)"; tasks spawned with a group count under
-- it: "live event (40)"): for the log.
-- It reads the strong set of live tasks, not `managed` (weak: a task
-- parked on a condition only its own stack holds can leave it while it
-- still counts in size(), and a list from it missed such tasks).
function Scheduler:names()
  local n = {}
  for t in pairs(self.live) do
    local g = t.group or t.name
    n[g] = (n[g] or 0) + 1
  end
  local out = {}
  for name, c in pairs(n) do out[#out + 1] = c > 1 and ("%s (%d)"):format(name, c) or name end
  table.sort(out)
  return out
end

function Scheduler:spawn(fn, opts)
  if type(fn) ~= "function" then error("spawn: expected a function, got " .. type(fn), 2) end
  opts = opts or {}
  local parent = self:current()
  local t = setmetatable({ sched = self, name = opts.name or "task", group = opts.group,
                           quiet = opts.quiet,
                           state = "ready", co = co_create(fn), args = opts.args,
                           stop_exempt = opts.stop_exempt or (parent ~= nil and parent.stop_exempt) },
                         Task)
  self.managed[t.co] = t
  self.live[t] = true
  self.count = self.count + 1
  if opts.eager then
    step_task(self, t)
  else
    self.ready[#self.ready + 1] = t
  end
  return t
end

local function finish(self, t, ok, r)
  t.state = "dead"
  self.count = self.count - 1
  self.managed[t.co] = nil
  self.live[t] = nil
  t.ok = ok
  if ok then
    t.values = { n = r.n - 1, unpack(r, 2, r.n) }
  else
    t.err = r[2]
    if not t.quiet and r[2] ~= CANCELLED then
      log.error("%s failed: %s", t.name, traceback(t.co, tostring(r[2])))
    end
  end
  local w = t.watchers
  t.watchers = nil
  for i = 1, w and #w or 0 do
    local wok, werr = pcall(w[i], t)
    if not wok then log.error("%s: a completion callback failed: %s", t.name, tostring(werr)) end
  end
end

-- Resume task t with its pending values; file it by what it yielded.
function step_task(self, t)
  local args = t.resume_with
  t.resume_with = nil
  t.state = "running"
  local r
  if args then
    r = pack(co_resume(t.co, unpack(args, 1, args.n)))
  else
    local a = t.args
    t.args = nil
    r = pack(co_resume(t.co, unpack(a or {}, 1, a and a.n or 0)))
  end
  if not r[1] or co_status(t.co) == "dead" then return finish(self, t, r[1], r) end
  if r[2] == WAIT then
    local rec = r[3]
    if t.cancelled then                        -- cancelled while running
      t.resume_with = pack(nil, CANCELLED)
      t.state = "ready"
      self.ready[#self.ready + 1] = t
      return
    end
    t.wait = rec
    t.state = "waiting"
    if rec.cond then                           -- woken by signal(); polled
      local p = self.parked[rec.cond]          -- only for its deadline
      if not p then
        p = {}
        self.parked[rec.cond] = p
      end
      p[t] = true
      if rec.deadline then self.waiting[t] = true end
    else
      self.waiting[t] = true
    end
    return
  end
  -- a plain yield: another turn after the next loop wait
  t.state = "ready"
  self.later[#self.later + 1] = t
end

-- Move the waiting tasks whose wait is over to the ready list. Returns
-- how many.
local function poll(self)
  local n, t_now = 0, nil
  for t in pairs(self.waiting) do
    local rec = t.wait
    local ok, v, err
    if rec.turn ~= self.blocks then          -- sleep(0): after a loop wait
      ok, v, err = pcall(rec.check)
      if not ok then
        v, err = RAISED, v
      elseif v == nil and rec.deadline then
        t_now = t_now or now_ms()
        if t_now >= rec.deadline then err = "timeout" else err = nil end
      end
    end
    if v ~= nil or err then
      self.waiting[t] = nil
      if rec.cond and self.parked[rec.cond] then self.parked[rec.cond][t] = nil end
      t.wait = nil
      if v == RAISED then
        t.resume_with = pack(RAISED, err)
      else
        t.resume_with = v ~= nil and pack(v) or pack(nil, err)
      end
      t.state = "ready"
      self.ready[#self.ready + 1] = t
      n = n + 1
    end
  end
  return n
end

-- Run every task that can run, until none can without a loop wait, or
-- SLICE_MS have passed (the rest stay ready: the loop and the servers get
-- their turn, then they run). Tasks that are not suspended (the one whose
-- code called a nested wait, and the coroutines above it) are left for
-- later. Returns how many resumes ran.
function Scheduler:pump()
  local ran, t0 = 0, now_ms()
  local between, polled = self.between_steps, t0
  if between and self:current() then between = nil end   -- nested in a task
  while true do
    if #self.ready == 0 and poll(self) == 0 then return ran end
    local batch = self.ready
    self.ready = {}
    local skipped
    for i = 1, #batch do
      local t = batch[i]
      if i % 16 == 0 and now_ms() - t0 > _M.SLICE_MS then   -- the rest: next time
        local rest = {}
        for k = i, #batch do rest[#rest + 1] = batch[k] end
        for k = 1, #self.ready do rest[#rest + 1] = self.ready[k] end
        self.ready = rest
        break
      end
      if co_status(t.co) == "suspended" then
        ran = ran + 1
        step_task(self, t)
        if between then
          local t1 = now_ms()
          if t1 - polled >= _M.POLL_MS then
            polled = t1
            between()
          end
        end
      else
        skipped = skipped or {}
        skipped[#skipped + 1] = t
      end
    end
    if skipped then
      for i = 1, #skipped do self.later[#self.later + 1] = skipped[i] end
      if #self.ready == 0 then return ran end
    end
    if now_ms() - t0 > _M.SLICE_MS then return ran end
  end
end

-- ms until the first waiting task's deadline (capped at limit), 0 when a
-- task wants another turn.
function Scheduler:timeout(limit)
  if #self.later > 0 or #self.ready > 0 or self.poked then return 0 end
  local t = limit or _M.BLOCK_MS
  local now
  for task in pairs(self.waiting) do
    local d = task.wait.deadline
    if d then
      now = now or now_ms()
      t = min(t, d - now)
    end
  end
  return t > 0 and t or 0
end

-- One loop wait (up to ms), then the events and the between-waits hook;
-- the tasks that asked for another turn are ready again.
function Scheduler:block(ms)
  self.poked = false
  self.blocks = self.blocks + 1
  local servers = self.servers
  local events = self.loop():wait(ms, servers[1] and servers or nil)
  if events and self.on_events then self.on_events(events) end
  if self.between_waits then self.between_waits() end
  local later = self.later
  if #later > 0 then
    self.later = {}
    for i = 1, #later do self.ready[#self.ready + 1] = later[i] end
  end
end

-- The next loop wait must not block (the between-waits hook left work
-- for the next turn).
function Scheduler:poke()
  self.poked = true
end

-- Drive the loop and the tasks until check() gives a value (returned), or
-- nil, "timeout" at deadline (monotonic ms).
-- There is always one loop wait at least (a deadline already passed:
-- sleep(0) outside a task still gives the loop, the servers and the
-- signals a turn).
function Scheduler:run_until(check, deadline)
  local waited = false
  while true do
    self:pump()
    local v = check()
    if v ~= nil then return v end
    local limit = _M.BLOCK_MS
    if deadline then
      limit = deadline - now_ms()
      if limit <= 0 then
        if waited then return nil, "timeout" end
        limit = 0
      end
      limit = min(limit, _M.BLOCK_MS)
    end
    self:block(self:timeout(limit))
    waited = true
  end
end

-- Wait until check() gives a value: yields when the running code belongs
-- to a task and may yield, runs the loop nested otherwise. Returns the
-- value, or nil, "timeout" | nil, CANCELLED (the caller raises: see
-- ocean.runtime). When check() raises, await raises that error, in the
-- waiting code (the scheduler calls the checks of waiting tasks itself,
-- protected).
function Scheduler:await(check, deadline)
  if not self:can_yield() then
    local t = self:current()
    if t and t.cancelled then return nil, CANCELLED end
    return self:run_until(check, deadline)
  end
  local t = self.managed[co_running()]
  if t.cancelled then return nil, CANCELLED end
  local v, err = co_yield(WAIT, { check = check, deadline = deadline, sched = self })
  if v == RAISED then error(err, 0) end
  return v, err
end

local function never() return nil end

-- Wait for the next s:signal(cond): the value signalled (true when none),
-- or nil, "timeout" at deadline | nil, CANCELLED. Outside a task (nested)
-- it runs the loop until a signal comes.
function Scheduler:wait_signal(cond, deadline)
  local seen = cond.signals or 0
  if not self:can_yield() then
    local t = self:current()
    if t and t.cancelled then return nil, CANCELLED end
    return self:run_until(function()
      if (cond.signals or 0) > seen then return cond.value end
    end, deadline)
  end
  local t = self.managed[co_running()]
  if t.cancelled then return nil, CANCELLED end
  local v, err = co_yield(WAIT, { check = never, cond = cond, deadline = deadline, sched = self })
  if v == RAISED then error(err, 0) end
  return v, err
end

-- Wake every task waiting on cond with v (default true).
function Scheduler:signal(cond, v)
  if v == nil then v = true end
  cond.signals = (cond.signals or 0) + 1
  cond.value = v
  local p = self.parked[cond]
  if not p then return end
  self.parked[cond] = nil
  for t in pairs(p) do
    self.waiting[t] = nil
    t.wait = nil
    t.resume_with = pack(v)
    t.state = "ready"
    self.ready[#self.ready + 1] = t
  end
end

-- Wait ms milliseconds (0: a turn for the others).
function Scheduler:sleep(ms)
  if ms <= 0 and self:can_yield() then
    local co = co_running()
    local t = self.managed[co]
    if t.co == co then
      co_yield()                 -- the task's own: a plain yield is a turn
    else
      -- an adopted coroutine (a resync generator): a plain yield would go
      -- to its driver as a page; this wait passes up through the task and
      -- ends after the next loop wait (poll: rec.turn)
      if t.cancelled then return nil, CANCELLED end
      local v, err = co_yield(WAIT, { check = never, deadline = now_ms(), turn = self.blocks,
                                      sched = self })
      if v == RAISED then error(err, 0) end
    end
    if t.cancelled then return nil, CANCELLED end
    return true
  end
  local _, err = self:await(never, now_ms() + ms)
  if err == CANCELLED then return nil, CANCELLED end
  return true
end

-- }====================

-- Resume co as coroutine.resume does, passing the waits of the code it
-- runs up to the scheduler of the running task (see the header): returns
-- only co's own yields, and its end.
function _M.resume(co, ...)
  local r = pack(co_resume(co, ...))
  while r[1] and r[2] == WAIT and co_status(co) == "suspended" do
    local rec = r[3]
    local s = rec.sched
    local v
    if s:can_yield() then
      v = pack(co_yield(WAIT, rec))
    else                 -- the driver itself cannot yield: wait nested
      v = pack(s:run_until(rec.check, rec.deadline))
    end
    r = pack(co_resume(co, unpack(v, 1, v.n)))
  end
  return unpack(r, 1, r.n)
end

return _M
