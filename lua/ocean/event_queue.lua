-- ocean.event_queue: the durable queue of live events under the webhook
-- processors (ocean.webhook): appends with group commit before the
-- sender's answer, a consumer that applies the events in the background,
-- at most `concurrency` at a time, with retries, backoff and dead letters
-- counted in the journal (ocean.journal, docs/live-events.md).
--
--   local q = assert(event_queue.open(engine, { path = file, concurrency = 100,
--                                               max_attempts = 5 }))
--   engine.event_queue = q          -- the processors' routes append to it
--   q:start()                       -- the consumer (a task, or an nginx timer)
--   local id = q:append{path=, headers=, body=, received_at=} -- on disk
--   q:stats()   q:stop()   q:close()
--
-- Group commit: appends made while a commit is being prepared share it
-- (one transaction, one fsync); each caller waits — yielding — until its
-- batch is on disk. Standalone the commit is a task that runs after the
-- requests taken off the server in the same loop turn; in nginx, a 0 s
-- timer after the current event-loop iteration.
--
-- The consumer claims events oldest first (the journal counts an attempt
-- at each claim) and runs each in a task (standalone) or a timer (nginx):
-- ocean.webhook's process. Applied: done (it leaves the journal). Failed:
-- while attempts remain, the event stays claimed for a backoff of 1, 2,
-- 4 ... s (at most 30 s; the journal's lease, 300 s, is longer) and is
-- then failed in the journal, which makes it pending again; at the last
-- attempt it becomes a dead letter (logged as an ERROR; `ocean.journal`'s
-- dead() lists them, requeue() retries one). A failure retrying cannot
-- fix (ocean.webhook's process says `permanent`) is a dead letter at
-- once. In nginx, an attempt that fails while the worker exits (its
-- waits give up after runtime.EXIT_GRACE_MS, and no retry can be
-- scheduled) is given back to the journal (release: not counted as an
-- attempt), as Queue:close gives back the claims still held. A process that dies with
-- claims held releases them at the next open, so an event answered 2xx
-- is applied after a crash: at least once in delivery, exactly once in
-- effect (applying is idempotent: upserts, and deletes of named entities).
--
-- nginx: one journal that every worker appends to (opts.shared,
-- journal.h's shared mode), and one consumer for all of them: the worker
-- that holds the lock file <journal>-consumer.lock (flock; tried at start
-- and every LOCK_EVERY s by the others). So the events are applied in the
-- order their senders were answered, whichever worker answered them
-- (docs/live-events.md#order-across-workers). The lock goes with its
-- holder: a worker that exits (nginx -s reload, quit) gives it up once
-- its events being applied are settled; one that dies (SIGKILL) loses it
-- at once. A new holder releases the claims its predecessor left
-- (j:release_all) before it claims. The consumer learns of the other
-- workers' appends from the journal's data_version, looked at every
-- SHARED_POLL_S s.
-- opts.adopt = true: the consumer also takes the journals of processes
-- that are gone (same folder, same integration, a pid suffix: the
-- per-worker journals of lua-ocean before the shared one): opening one
-- succeeds only when its owner is dead (the journal is locked while
-- open). It applies their events and removes the file once empty (a file
-- left with dead letters stays, logged). Checked at start and every
-- ADOPT_EVERY seconds.
local core = require "ocean.core"
local journal = require "ocean.journal"
local log = require "ocean.log"
local metrics = require "ocean.metrics"
local webhook = require "ocean.webhook"
local runtime = require "ocean.runtime"

local type, tostring, pcall, ipairs, setmetatable = type, tostring, pcall, ipairs, setmetatable
local min, floor = math.min, math.floor
local now_ms = core.monotonic_ms
local sources                    -- (self) -> the journals, own first
local release_claims             -- (src) -> claims given back
local keep_marks                 -- (self) the live session's latest writers into the journal
local requeue_hint               -- (self, src, id) -> how to send a dead letter again

local _M = {
  CONCURRENCY = 100,       -- events applied at once
  MAX_ATTEMPTS = 5,
  POLL_S = 1,              -- the consumer looks at the journal at least this often
  ADOPT_EVERY = 30,        -- s between two looks for orphaned journals (nginx)
  BUSY_WAIT_MS = 3000,     -- ms a start waits for its journal held by another handle (standalone)
  RECHECK_EVERY = 300,     -- s between two looks into a retired journal kept for its dead
                           -- letters (`ocean journal --requeue` may have made some pending)
  APPEND_TIMEOUT = 30,     -- s an append waits for its commit (nginx)
  LOCK_EVERY = 1,          -- s between two tries for the consumer's lock (nginx, shared)
  MARKS_KEEP_S = 86400,    -- s the journal keeps an entity's latest writer (below)
  SHARED_POLL_S = 0.05,    -- s between two looks for the other workers' appends
  STALL_S = 30,            -- shared: s the oldest event may wait, none being applied, before
                           -- stalled() says no worker applies (OCEAN__LIVE_EVENTS__STALL_SECONDS)
  TIMER_ROOM = 200,        -- nginx: the running timers the events may fill (each is applied
                           -- in one; lua_max_running_timers is 256 by default, and the
                           -- journal's commits, the resyncs and the user's own need the rest)
}

local Queue = {}
Queue.__index = Queue

-- The backoff before the next attempt, after `attempts` (1, 2, 4 ... s,
-- at most 30 s).
function _M.retry_delay(attempts)
  return min(2 ^ (floor(attempts) - 1), 30)
end

local function in_nginx()
  local ngx = _G.ngx
  return type(ngx) == "table" and type(ngx.timer) == "table"
end

-- Open the journal at opts.path and make the queue (not started).
-- opts: concurrency, max_attempts, shared (nginx: every worker appends to
-- the journal at path, one consumer applies), adopt (nginx: orphaned
-- journals of the same folder whose name is <opts.base>-<pid>.sqlite3),
-- worker (nginx: this worker's pid, naming its share of
-- ocean_journal_depth).
-- nil, err when the journal cannot be opened.
function _M.open(eng, opts)
  local max_attempts = opts.max_attempts or _M.MAX_ATTEMPTS
  local jopts = { max_attempts = max_attempts, shared = opts.shared or nil }
  local j, err, code = journal.open(opts.path, jopts)
  -- standalone, a journal held a moment (`ocean journal` reading it) is
  -- waited for, up to BUSY_WAIT_MS, so that it never fails a start; an
  -- nginx worker never blocks its loop on it
  local waited = 0
  while not j and code == "busy" and not in_nginx() and waited < _M.BUSY_WAIT_MS do
    eng:get_loop():wait(100)
    waited = waited + 100
    j, err, code = journal.open(opts.path, jopts)
  end
  if not j then
    if code == "busy" then
      err = err .. " (is another process running this integration with the same journal "
        .. "folder? set OCEAN__LIVE_EVENTS__JOURNAL_DIR)"
    end
    return nil, err
  end
  local q = setmetatable({
    eng = eng, j = j, path = opts.path, own = { j = j, path = opts.path, busy = 0, claims = {} },
    concurrency = opts.concurrency or _M.CONCURRENCY,
    max_attempts = max_attempts, nginx = in_nginx(), adopt = opts.adopt, base = opts.base,
    worker = opts.worker, shared = opts.shared and true or false,
    stall_s = opts.stall_seconds or _M.STALL_S,
    lock_path = opts.shared and opts.path:gsub("%.sqlite3$", "") .. "-consumer.lock" or nil,
    orphans = {}, known = {}, running = 0, launching = 0, backing_off = 0, wake = false,
    wake_cond = {},
    stop_cond = {},
    counts = { received = 0, applied = 0, failed = 0, retried = 0, dead = 0, adopted = 0,
               given_back = 0, unknown_kinds = 0 },
  }, Queue)
  if q.nginx then
    q.sema = require("ngx.semaphore").new(0)
    if q.concurrency > _M.TIMER_ROOM then
      log.warning("live events: OCEAN__LIVE_EVENTS__CONCURRENCY is %d, but in nginx each event is "
        .. "applied in a timer and at most %d run at once (nginx's lua_max_running_timers is 256 "
        .. "by default; the rest is kept for the journal's commits and other timers)",
        q.concurrency, _M.TIMER_ROOM)
    end
  end
  local st = not q.shared and j:stats()   -- shared: said by the consumer
  if st and (st.pending > 0 or st.dead > 0) then
    log.info("live-event journal %s: %d event(s) pending from before this start, %d dead letter(s)",
      opts.path, st.pending, st.dead)
  end
  return q
end

-- {==================== appending (group commit) ====================

local function notify(self)
  self.wake = true
  if self.sema then
    self.sema:post(1)
  else
    self.eng:signal(self.wake_cond)
  end
end

local function commit(self, b)
  if self.batch == b then self.batch = nil end
  local ids, err = self.j:append_batch(b.recs)
  if ids then
    b.ids = ids
    self.counts.received = self.counts.received + #ids
    notify(self)
  else
    b.err = err
  end
  if b.sema then
    b.sema:post(#b.recs)
  else
    self.eng:signal(b)
  end
end

local function commit_soon(self, b)
  if self.nginx then
    b.sema = require("ngx.semaphore").new(0)
    local ok, err = _G.ngx.timer.at(0, function() commit(self, b) end)
    if not ok then
      self.batch = nil
      b.err = "cannot schedule the journal commit: " .. tostring(err)
    end
    return
  end
  -- one turn first: the requests of this loop turn join the batch
  self.eng:spawn(function()
    self.eng:sleep(0)
    commit(self, b)
  end, { name = "the journal commit" })
end

-- Append an event; returns its id once it is on disk, or nil, err.
function Queue:append(rec)
  if not self.j then return nil, "the live-event queue is closed" end
  local b = self.batch
  if not b then
    b = { recs = {} }
    self.batch = b
    commit_soon(self, b)
  end
  local n = #b.recs + 1
  b.recs[n] = rec
  if self.nginx and b.sema then
    if not (b.ids or b.err) then
      local ok, err = b.sema:wait(_M.APPEND_TIMEOUT)
      if not ok then return nil, "the journal commit did not finish: " .. tostring(err) end
      runtime.give_way()       -- a commit wakes its whole batch: answer it over iterations
    end
  elseif not (b.ids or b.err) then
    self.eng:wait_signal(b)
  end
  if b.err then return nil, b.err end
  return b.ids[n]
end

-- }====================

-- {==================== applying ====================

local function remove_files(path)
  for _, suffix in ipairs { "", "-wal", "-shm" } do os.remove(path .. suffix) end
end

-- An orphan's journal once it has nothing pending: closed, and removed
-- unless dead letters stay in it.
local function retire(self, o)
  local st = o.j:stats()
  if not st or st.pending > 0 or o.busy > 0 then return false end
  o.j:close()
  if st.dead > 0 then
    -- kept: looked into again every RECHECK_EVERY s, quietly, for events
    -- an operator requeued
    self.known[o.path] = { since = now_ms() }
    if not o.rechecked then
      log.warning("adopted journal %s: %d dead letter(s) stay in it (`ocean journal` lists and "
        .. "requeues them)", o.path, st.dead)
    end
  else
    remove_files(o.path)
    log.info("adopted journal %s is empty: removed", o.path)
  end
  for i, x in ipairs(self.orphans) do
    if x == o then table.remove(self.orphans, i) break end
  end
  return true
end

local function later(self, seconds, fn)
  if self.nginx then
    local ok, err = _G.ngx.timer.at(seconds, function() fn() end)
    if not ok then return nil, tostring(err) end
    return true
  end
  self.eng:spawn(function()
    local deadline = now_ms() + seconds * 1000
    while not self.stopping and now_ms() < deadline do
      self.eng:wait_signal(self.stop_cond, deadline - now_ms())
    end
    fn()
  end, { name = "a live-event retry" })
  return true
end

-- true when the nginx worker is exiting (nginx -s quit / reload): what
-- fails now may fail because of the exit (runtime's waits give up after
-- their grace), and no retry can be scheduled.
local function worker_exiting(self)
  return self.nginx and runtime.worker_exiting()
end

-- Give the claim of event ev back to its journal: pending again, the
-- claim's attempt taken back (oc_journal_release), so that an apply cut
-- short by the worker's exit never moves it towards the dead letters.
local function give_back(self, src, ev, why)
  if not src.j then return end   -- closed: released at the next open
  local n, err = src.j:release { ev.id }
  if not n then
    log.error("live events: giving back event %d failed (the claim counts as an attempt and is "
      .. "released at the next open): %s", ev.id, tostring(err))
    return
  end
  self.counts.given_back = self.counts.given_back + 1
  log.info("event %d (POST %s) given back to the journal for the next start (not counted as "
    .. "an attempt): %s", ev.id, ev.path, why)
end

-- How the operator sends dead letter id again, from where it is: the
-- next `ocean sail` start applies a requeued event; in nginx, `ocean
-- journal` writes into the shared journal beside the workers, whose
-- consumer sees it at once, and into an adopted journal once it is
-- retired, which a worker looks into every RECHECK_EVERY s.
function requeue_hint(self, src, id)
  if not self.nginx then
    return ("`ocean journal --requeue %d` sends it again at the next start"):format(id)
  end
  local dir, file = tostring(src.path):match("^(.*)/([^/]+)$")
  if self.shared and src == self.own then
    return ("`ocean journal --dir %s --file %s --requeue %d` sends it again: the workers' "
      .. "consumer applies it at once"):format(dir or ".", file or tostring(src.path), id)
  end
  return ("`ocean journal --dir %s --file %s --requeue %d` sends it again: a worker applies it "
    .. "within %d s"):format(dir or ".", file or tostring(src.path), id, _M.RECHECK_EVERY)
end

local function summary_text(s)
  local text = ("created %d, updated %d, deleted %d"):format(s.created or 0, s.updated or 0,
    s.deleted or 0)
  if (s.superseded or 0) > 0 then
    text = text .. (", %d left as a newer event wrote them (superseded)"):format(s.superseded)
  end
  return text
end

-- The latest writers (journal.h): each entity's newest event whose
-- write took effect, as the live session records them, kept in the own
-- journal before an event is marked done, so that the next process to
-- apply events (after a crash; in nginx, a takeover) leaves an older
-- event's write of it out, as this one would have. Best effort: a
-- failure is said, and only weakens that order.
function keep_marks(self)
  local live, j = self.eng.live, self.j
  if not (live and j) then return end
  local marks = live:seqs_changed()
  if #marks == 0 then return end
  local ok, err = j:mark(marks)
  if not ok then
    log.warning("live events: keeping the latest writers of %d entities failed (after a crash "
      .. "an older event may undo a newer one's write of them): %s", #marks / 2, tostring(err))
  end
  -- those past MARKS_KEEP_S go, at most once an hour
  local now = os.time()
  if now >= (self.next_prune or 0) then
    self.next_prune = now + 3600
    j:prune_marks((now - _M.MARKS_KEEP_S) * 1e6)
  end
end

-- The next process to apply: the latest writers the journal kept (pruned
-- past MARKS_KEEP_S) into the live session.
local function load_marks(self)
  local ok, live = pcall(self.eng.live_session, self.eng)
  if not ok or not live then
    log.warning("live events: the live session is not ready, the journal's latest writers are "
      .. "not loaded: %s", tostring(live))
    return
  end
  local since = (os.time() - _M.MARKS_KEEP_S) * 1e6
  local _, perr = self.j:prune_marks(since)
  local marks, err = self.j:marks(since)
  if perr or not marks then
    log.warning("live events: reading the journal's latest writers failed: %s", tostring(perr or err))
    return
  end
  live:note_seqs(marks)
  if #marks > 0 then
    log.info("live events: the latest writers of %d entities loaded from %s", #marks / 2, self.path)
  end
end

-- The end of one event's attempt: done, given back (the nginx worker
-- exits), a dead letter (its last attempt, or a failure retrying cannot
-- fix: `permanent`, see ocean.webhook's process), or retried later.
local function settle(self, src, ev, t0, ok, res, err, permanent)
  local j = src.j
  local ms = now_ms() - t0
  if ok then
    keep_marks(self)
    local dok, derr = j:done(ev.id)
    if dok == nil then
      log.error("event %d was applied but could not be marked done (it will be applied "
        .. "again): %s", ev.id, tostring(derr))
    end
    self.counts.applied = self.counts.applied + 1
    if (res.unknown_kinds or 0) > 0 then self.counts.unknown_kinds = self.counts.unknown_kinds + 1 end
    log.info("event %d (POST %s) applied in %.0f ms (attempt %d): %s", ev.id, ev.path, ms,
      ev.attempts, res.matched == 0 and "nothing matched" or summary_text(res))
    return
  end
  if type(res) == "table" and (res.unknown_kinds or 0) > 0 then
    self.counts.unknown_kinds = self.counts.unknown_kinds + 1
  end
  -- masked as the log masks it: the journal keeps it, and `ocean journal`
  -- shows it (to an operator who may not have the secrets)
  local msg = log.mask(webhook.error_text(err))
  if not permanent and worker_exiting(self) then
    -- cut short by the exit, or failed while it goes on: no retry can be
    -- scheduled any more; the next start applies it
    return give_back(self, src, ev, "the nginx worker is exiting (" .. msg .. ")")
  end
  self.counts.failed = self.counts.failed + 1
  if permanent or ev.attempts >= self.max_attempts then
    j:fail(ev.id, msg, permanent and true or nil)
    self.counts.dead = self.counts.dead + 1
    if permanent then
      log.error("event %d (POST %s) is a dead letter at attempt %d: retrying cannot fix it: %s "
        .. "(%s, after what came since)", ev.id, ev.path, ev.attempts, msg, requeue_hint(self, src, ev.id))
    else
      log.error("event %d (POST %s) is a dead letter after %d attempts: %s (%s, after what came "
        .. "since)", ev.id, ev.path, ev.attempts, msg, requeue_hint(self, src, ev.id))
    end
    return
  end
  local delay = _M.retry_delay(ev.attempts)
  self.backing_off = self.backing_off + 1
  src.busy = src.busy + 1
  local sok, serr = later(self, delay, function()
    self.backing_off = self.backing_off - 1
    src.busy = src.busy - 1
    if src.j and src.j:fail(ev.id, msg) then self.counts.retried = self.counts.retried + 1 end
    notify(self)
  end)
  if not sok then
    self.backing_off = self.backing_off - 1
    src.busy = src.busy - 1
    self.counts.failed = self.counts.failed - 1
    if worker_exiting(self) then
      return give_back(self, src, ev, "failed as the nginx worker began exiting, and no retry "
        .. "can be scheduled (" .. msg .. ")")
    end
    log.error("live events: cannot schedule the retry of event %d (POST %s): %s (it is "
      .. "retried after its lease)", ev.id, ev.path, serr)
    return
  end
  log.warning("event %d (POST %s) failed (attempt %d of %d), retrying in %d s: %s", ev.id,
    ev.path, ev.attempts, self.max_attempts, delay, msg)
end

-- Apply one claimed event (in its own task or timer).
local function apply(self, src, ev)
  runtime.give_way()         -- nginx: after what this loop iteration has run already
  local t0 = now_ms()
  local ok, res, err, summary, permanent = pcall(webhook.process, self.eng, ev)
  src.claims[ev.id] = nil
  if ok and res == nil then ok = false elseif not ok then err = res end
  self.running = self.running - 1
  src.busy = src.busy - 1
  if not ok and res == nil then res = summary end   -- a failed attempt's summary
  local sok, serr = pcall(settle, self, src, ev, t0, ok, res, err, permanent)
  if not sok then log.error("live events: settling event %d failed: %s", ev.id, tostring(serr)) end
  notify(self)
end

local function start_one(self, src, ev)
  self.running = self.running + 1
  src.busy = src.busy + 1
  src.claims[ev.id] = true         -- given back at close unless applied
  if self.nginx then
    self.launching = self.launching + 1
    local ok, err = _G.ngx.timer.at(0, function(premature)
      self.launching = self.launching - 1
      if premature then            -- the worker exits: the claim stays, released later
        self.running = self.running - 1
        src.busy = src.busy - 1
        return
      end
      apply(self, src, ev)
    end)
    if not ok then
      self.launching = self.launching - 1
      self.running = self.running - 1
      src.busy = src.busy - 1
      log.error("live events: cannot start event %d: %s (it is retried after its lease)",
        ev.id, tostring(err))
    end
    return
  end
  -- stop_exempt: a SIGTERM leaves it the runner's grace period to finish
  self.eng:spawn(function() apply(self, src, ev) end,
    { name = "live event " .. ev.id, group = "live event", stop_exempt = true })
end

-- The own journal, then the adopted ones.
function sources(self)
  local list = { self.own }
  for _, o in ipairs(self.orphans) do list[#list + 1] = o end
  return list
end

-- Claim up to the free slots from the own journal, then the orphans'.
-- Returns how many started.
local function claim_some(self)
  local started = 0
  for _, src in ipairs(sources(self)) do
    local free = self.concurrency - self.running
    if self.nginx then
      -- a timer nginx cannot run (past lua_max_running_timers) is dropped
      -- with an alert: its event would stay claimed until its lease, and
      -- a journal commit that cannot run fails its webhooks
      free = min(free, _M.TIMER_ROOM - _G.ngx.timer.running_count() - self.launching)
    end
    if free <= 0 then break end
    if src.j then
      local evs, err = src.j:claim(free)
      local abandoned = src.j:abandoned()
      if abandoned > (src.abandoned or 0) then
        local n = abandoned - (src.abandoned or 0)
        src.abandoned = abandoned
        self.counts.dead = self.counts.dead + n
        log.error("live events: %d event(s) in %s became dead letters: claimed %d times and never "
          .. "done or failed (the process died applying them?); `ocean journal` lists them, "
          .. "--requeue ID sends one again", n, src.path, self.max_attempts)
      end
      if not evs then
        log.error("live events: cannot claim from %s: %s", src.path, tostring(err))
      else
        for _, ev in ipairs(evs) do
          start_one(self, src, ev)
          started = started + 1
        end
        if #evs == 0 and src ~= self.own then retire(self, src) end
      end
    end
  end
  return started
end

-- }====================

-- {==================== orphans (nginx) ====================

-- Look for journals of processes that are gone; adopt those that open.
function Queue:adopt_orphans()
  if not self.adopt then return 0 end
  local dir = self.path:match("^(.*)/[^/]*$") or "."
  local names, err = core.journal_files(dir)
  if not names then
    log.warning("live events: %s", err)
    return 0
  end
  local mine, n, now = self.path:match("[^/]*$"), 0, now_ms()
  local prefix = self.base .. "-"
  for _, name in ipairs(names) do
    local path = dir .. "/" .. name
    local rest = name:sub(1, #prefix) == prefix and name:sub(#prefix + 1)
    local k = self.known[path]
    -- a retired journal of dead letters: again once its recheck is due
    local recheck = type(k) == "table" and now - k.since >= _M.RECHECK_EVERY * 1000
    if rest and rest:match("^%d+%.sqlite3$") and name ~= mine and (not k or recheck) then
      local j, jerr, code = journal.open(path, { max_attempts = self.max_attempts })
      if j then
        local o = { j = j, path = path, busy = 0, claims = {}, rechecked = recheck }
        local st = j:stats() or { pending = 0, dead = 0 }
        self.orphans[#self.orphans + 1] = o
        if not recheck then
          -- its owner's share of ocean_journal_depth: now counted in ours
          if self.eng.metrics then metrics.forget_live_worker(self.eng.metrics, rest:match("^%d+")) end
          self.counts.adopted = self.counts.adopted + 1
          log.warning("adopted the live-event journal %s of a process that is gone: %d pending, "
            .. "%d dead letter(s)", path, st.pending, st.dead)
        elseif st.pending > 0 then
          log.info("live-event journal %s: %d event(s) requeued since it was retired: applying "
            .. "them", path, st.pending)
        end
        n = n + 1
        retire(self, o)
      elseif code == "busy" then
        -- its owner is alive (or `ocean journal` holds it a moment): later
        if recheck then k.since = now - math.max(0, _M.RECHECK_EVERY - _M.ADOPT_EVERY) * 1000 end
      else
        self.known[path] = true
        log.warning("live events: cannot adopt %s: %s", path, tostring(jerr))
      end
    end
  end
  if n > 0 then notify(self) end
  return n
end

-- }====================

-- {==================== the consumer ====================

local function consume_task(self)
  local eng = self.eng
  while not self.stopping do
    self.wake = false
    claim_some(self)
    if not self.stopping and not self.wake then
      eng:wait_signal(self.wake_cond, _M.POLL_S * 1000)
    end
  end
end

-- Shared (nginx): take the consumer's lock if it is free. On taking it,
-- the claims the previous holder left (it died, or exited with some
-- unsettled) are released: pending again. true when this worker is the
-- consumer now.
local function try_consumer(self)
  if self.consumer then return true end
  local fd, err = core.journal_lock(self.lock_path)
  if fd == false then return false end
  if not fd then
    if not self.lock_said then
      self.lock_said = true
      log.error("live events: worker %s cannot apply events: %s", tostring(self.worker),
        tostring(err))
    end
    return false
  end
  self.lock_fd, self.consumer, self.ever_consumer = fd, true, true
  local n, rerr = self.j:release_all()
  if not n then
    log.error("live events: releasing the previous consumer's claims in %s failed (they are "
      .. "claimed again after their lease): %s", self.path, tostring(rerr))
  end
  if self.eng.metrics then metrics.forget_live_worker(self.eng.metrics, "shared") end
  load_marks(self)
  local st = self.j:stats() or { pending = 0, dead = 0 }
  log.info("live events: worker %s applies the events every worker receives (journal %s: %d "
    .. "pending, %d dead letter(s)%s)", tostring(self.worker), self.path, st.pending, st.dead,
    (n or 0) > 0 and (", %d claim(s) of the previous consumer released"):format(n) or "")
  return true
end

-- Shared (nginx): why no worker seems to apply the journal's events, or
-- nil: events pending, none claimed, the oldest waiting stall_s or more
-- (a worker that applies claims within SHARED_POLL_S, and holds claims
-- while it applies or backs off). The consumer's lock held by a process
-- that is not a worker, a lock file the workers cannot open, or workers
-- never ready (the mapping not fetched) look alike from here.
function Queue:stalled()
  if not self.shared or not self.j then return nil end
  local st = self.j:stats()
  if not st or st.pending == 0 or st.claimed > 0 or (st.oldest_age or 0) < self.stall_s then
    return nil
  end
  return ("no worker has applied a live event for %d s (%d pending, none being applied): is "
    .. "the consumer's lock %s held by a process that is not an nginx worker, or unusable "
    .. "(the log says)? Are the workers ready?"):format(math.floor(st.oldest_age), st.pending,
    self.lock_path)
end

-- Shared (nginx): give the consumer's lock up, once this exiting worker's
-- events being applied are settled (so that the next holder never applies
-- one of them at the same time), their claims given back first.
local function give_up_consumer(self)
  if not self.lock_fd then return end
  local fd = self.lock_fd
  if self.own.j then
    self.counts.given_back = self.counts.given_back + (release_claims(self.own) or 0)
  end
  self.lock_fd, self.consumer = nil, false
  core.journal_unlock(fd)
end

local function consume_timer(premature, self)
  if premature then return end
  local ngx = _G.ngx
  local ok, err
  local next_adopt, next_claim, next_lock, next_feed = 0, 0, 0, 0
  local woke = true
  while not self.stopping and not ngx.worker.exiting() do
    local now = ngx.now()
    if self.shared and not self.consumer and now >= next_lock then
      ok, err = pcall(try_consumer, self)
      if not ok then log.error("live events: taking the consumer's lock failed: %s", tostring(err)) end
      next_lock = now + _M.LOCK_EVERY
      if self.consumer then woke, next_adopt = true, 0 end
    end
    if self.consumer or not self.shared then
      local due = woke or now >= next_claim
      if self.shared then
        -- another worker's append (or `ocean journal --requeue`)
        local v = self.j and self.j:version()
        if v and v ~= self.version then due, self.version = true, v end
      end
      if due then
        ok, err = pcall(claim_some, self)
        if not ok then log.error("live events: the consumer failed: %s", tostring(err)) end
        next_claim = now + _M.POLL_S
      end
      if now >= next_adopt then
        ok, err = pcall(self.adopt_orphans, self)
        if not ok then log.error("live events: adopting orphaned journals failed: %s", tostring(err)) end
        next_adopt = now + _M.ADOPT_EVERY
      end
    end
    -- nobody applies (the lock held outside, unusable): said by the others
    if self.shared and not self.consumer and now >= (self.next_stall_check or 0) then
      self.next_stall_check = now + self.stall_s
      local sok, why = pcall(self.stalled, self)
      if sok and why then log.warning("live events: %s", why) end
    end
    -- this worker's share of the live-event metrics (the shared dict sums them)
    if self.eng.metrics and (woke or now >= next_feed) then
      ok, err = pcall(metrics.feed_live, self.eng.metrics, self, self.worker)
      if not ok then log.warning("live events: feeding the metrics failed: %s", tostring(err)) end
      next_feed = now + _M.POLL_S
    end
    woke = self.sema:wait(self.consumer and _M.SHARED_POLL_S
      or self.shared and _M.LOCK_EVERY or _M.POLL_S)
  end
  if self.consumer then
    -- exiting: the lock goes once the events being applied are settled
    -- (the runtime's waits give up after its grace once the worker exits)
    while self.running > 0 and not self.stopping do ngx.sleep(0.05) end
    if self.running == 0 then give_up_consumer(self) end
  end
end

-- Start applying events in the background.
function Queue:start()
  if self.started then return end
  self.started = true
  if self.nginx then
    local ok, err = _G.ngx.timer.at(0, consume_timer, self)
    if not ok then return nil, "cannot start the live-event consumer: " .. tostring(err) end
  else
    self.task = self.eng:spawn(function()
      load_marks(self)
      consume_task(self)
    end, { name = "the live-event consumer" })
  end
  return true
end

-- Stop claiming; the events being applied go on (the runner gives them a
-- grace period), the retries waiting for their backoff end at once.
function Queue:stop()
  self.stopping = true
  notify(self)
  if not self.nginx then self.eng:signal(self.stop_cond) end
end

-- The journal's counts and this queue's: {pending=, claimed=, dead=,
-- oldest_age=, depth=, running=, backing_off=, received=, applied=,
-- failed=, retried=, dead_lettered=, given_back=, unknown_kinds=,
-- adopted=, orphans=}. pending (the
-- own journal's events not done and not dead; claimed ones included),
-- claimed, dead, oldest_age: the own journal; depth: pending plus the
-- adopted journals' pending (what is journaled and not yet applied);
-- received, applied, failed (attempts), retried, dead_lettered,
-- given_back (claims given back to the journal, not counted as attempts:
-- as the nginx worker exits, and by close), consumer (shared: whether
-- this worker applies the events; nil standalone),
-- unknown_kinds (events applied with a kind no resource of the mapping
-- has): this queue's cumulative counts since it was opened.
function Queue:stats()
  local st = self.j and self.j:stats() or {}
  local c = self.counts
  local consumer                 -- nil standalone (`a and false or nil` is nil)
  if self.shared then consumer = self.consumer == true end
  -- shared, a worker that does not apply: the journal's counts are all
  -- the workers', its adopted ones none
  local depth = st.pending or 0
  for _, o in ipairs(self.orphans) do
    local ost = o.j and o.j:stats()
    if ost then depth = depth + ost.pending end
  end
  return { pending = st.pending, claimed = st.claimed, dead = st.dead, depth = depth,
           oldest_age = st.oldest_age, running = self.running, backing_off = self.backing_off,
           received = c.received, applied = c.applied, failed = c.failed, retried = c.retried,
           dead_lettered = c.dead, given_back = c.given_back, unknown_kinds = c.unknown_kinds,
           adopted = c.adopted, orphans = #self.orphans,
           journal = self.path, concurrency = self.concurrency,
           consumer = consumer }
end

-- Give back the claims of the events being applied (a graceful stop cut
-- them short): pending again, their attempts taken back (journal.h,
-- oc_journal_release), so that stopping never moves an event towards the
-- dead letters. Returns how many.
function release_claims(src)
  local ids = {}
  for id in pairs(src.claims) do ids[#ids + 1] = id end
  src.claims = {}
  if #ids == 0 or not src.j then return 0 end
  table.sort(ids)
  local n, err = src.j:release(ids)
  if not n then
    log.error("live events: giving back %d claim(s) in %s failed (they count as attempts and "
      .. "are released at the next open): %s", #ids, src.path, tostring(err))
    return 0
  end
  return n
end

-- Close the journals. The claims of events still being applied are given
-- back first (a crash leaves them to the next open, which counts them as
-- attempts); the log says how many events stay for the next start, and
-- how many of them were given back (here, or as the nginx worker's exit
-- cut their apply short).
function Queue:close()
  self.stopping = true
  local left = 0
  for _, src in ipairs(sources(self)) do
    if src.j then
      self.counts.given_back = self.counts.given_back + release_claims(src)
      local st = src.j:stats()
      left = left + (st and st.pending or 0)
    end
  end
  local released = self.counts.given_back
  -- shared: the journal's pending events are every worker's; a worker that
  -- never applied says nothing of them (the consumer does)
  if self.shared and not self.ever_consumer then left = 0 end
  -- nginx: the last feed of this worker's counts (the given back ones
  -- last in a shared dict that outlives the worker: nginx -s reload)
  if self.nginx and self.eng.metrics then
    local ok, err = pcall(metrics.feed_live, self.eng.metrics, self, self.worker)
    if not ok then log.warning("live events: feeding the metrics failed: %s", tostring(err)) end
  end
  if released > 0 or left > 0 then
    log.info("live events: %d event(s) stay in the journal for %s%s", left,
      self.shared and "the worker that applies next (after a reload, a new one; else at the "
        .. "next start)" or "the next start",
      released > 0 and (" (%d of them were being applied: given back, not counted as "
        .. "attempts)"):format(released) or "")
  end
  for _, o in ipairs(self.orphans) do if o.j then o.j:close() end end
  self.orphans = {}
  if self.j then self.j:close() end
  self.j, self.own.j = nil, nil
  if self.lock_fd then           -- shared: the next worker's turn
    core.journal_unlock(self.lock_fd)
    self.lock_fd, self.consumer = nil, false
  end
end

-- }====================

return _M
