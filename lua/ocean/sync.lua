-- ocean.sync: the full resync and sync(entities), over the C sync
-- session (src/sync/sync.h), which owns the order of the phases.
--
-- A full resync (sync_raw_all) is six steps:
--   1. read the mapping from Port (fresh);
--   2. say "running" to Port and run the on_resync_start hooks;
--   3. compile every resource (one jq program each, from the engine's
--      cache);
--   4. open the session: it reads the owned entities meanwhile;
--   5. per kind, run the resync functions: each returns a list or yields
--      pages, and each page is mapped and offered; only what changed is
--      upserted, coalesced across pages into full bulk requests while the
--      next page is fetched;
--   6. finish: the session retries the failed upserts once in relation
--      order, then decides on deletion with the safety rules (no deletion
--      when anything failed, when the owned entities could not be read,
--      above entityDeletionThreshold, or for entities changed since the
--      resync started) and deletes.
-- Every wait checks whether the run must stop (an abort): the session only
-- moves to its next phase when the run polls it, so an aborted run never
-- lets a new phase's writes out, and nothing is deleted.
local core = require "ocean.core"
local json = require "ocean.json"
local log = require "ocean.log"
local mapping = require "ocean.mapping"
local metrics = require "ocean.metrics"
local otime = require "ocean.time"
local report = require "ocean.report"
local scheduler = require "ocean.scheduler"
local selector = require "ocean.selector"

local type, pairs, ipairs, tostring, select = type, pairs, ipairs, tostring, select
local setmetatable, getmetatable = setmetatable, getmetatable
local coroutine_create, coroutine_status = coroutine.create, coroutine.status
-- a generator's coroutine.yield(page) is a page; the waits of the code it
-- runs (ocean.http, ocean.gather) pass through to the engine's scheduler
local coroutine_resume = scheduler.resume
local traceback = debug.traceback
local iso_at = otime.iso             -- ISO-8601 UTC with ms, as Port writes

local _M = {}

local ABORTED = setmetatable({}, { __tostring = function() return "resync aborted" end })
_M.ABORTED = ABORTED

-- {==================== helpers ====================

-- A copy of a decoded JSON value (the resource config handed to resync
-- functions: theirs to change, never the cached mapping's).
local function deep_copy(v)
  if type(v) ~= "table" or v == json.null then return v end
  local c = {}
  for k, x in pairs(v) do c[k] = deep_copy(x) end
  return setmetatable(c, getmetatable(v))
end

local function iso_now(eng)
  return iso_at(eng.clock())
end

-- 16 random bytes from /dev/urandom; math.random only as a fallback
-- (LuaJIT never seeds it: every process would draw the same resync ids).
local function random_bytes()
  local f = io.open("/dev/urandom", "rb")
  if f then
    local s = f:read(16)
    f:close()
    if s and #s == 16 then return { s:byte(1, 16) } end
  end
  local r = {}
  for i = 1, 16 do r[i] = math.random(0, 255) end
  return r
end

local function uuid()
  local r = random_bytes()
  r[7] = r[7] % 16 + 64
  r[9] = r[9] % 64 + 128
  return ("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x")
    :format((table.unpack or unpack)(r))
end
_M.uuid = uuid

local function app_options(app)
  local function flag(v, default)
    if v == nil or v == json.null then return default end
    return v and true or false
  end
  return {
    merge = flag(app.enableMergeEntity, true),
    create_missing = flag(app.createMissingRelatedEntities, true),
    delete_dependents = flag(app.deleteDependentEntities, true),
  }
end
_M.app_options = app_options

local function threshold_of(eng, app)
  local t = eng.settings.entity_deletion_threshold
  if t == nil then t = app.entityDeletionThreshold end
  if t == nil or t == json.null then t = 0.9 end
  return tonumber(t) or 0.9
end
_M.threshold_of = threshold_of

-- }====================

-- {==================== the port app config ====================

local function validate_app_config(app)
  if type(app) ~= "table" or app == json.null then
    return nil, "the integration's mapping (port app config) is empty"
  end
  local resources = app.resources
  if resources == nil or resources == json.null then
    return nil, "the port app config has no `resources` list"
  end
  if type(resources) ~= "table" then
    return nil, "the port app config's `resources` must be a list"
  end
  local t = app.entityDeletionThreshold
  if t ~= nil and t ~= json.null and (type(t) ~= "number" or t < 0 or t > 1) then
    return nil, "entityDeletionThreshold must be a number between 0 and 1"
  end
  return true
end
_M.validate_app_config = validate_app_config

-- Fetch the mapping from Port (fresh), or use opts.app_config.
function _M.fetch_app_config(eng, opts)
  if opts and opts.app_config then return opts.app_config end
  local integ, err = eng.port:get_integration(eng.settings.integration.identifier)
  if not integ then
    return nil, "could not read the integration's mapping from Port: " .. tostring(err)
  end
  local app = integ.config
  local ok, verr = validate_app_config(app)
  if not ok then return nil, verr end
  return app
end

-- Compile every resource; a resource that fails is reported, not fatal.
-- The programs come from the content cache the live events use too: an
-- unchanged mapping is not compiled again (~20 ms of jq_compile each,
-- which would block an nginx worker). One entry per resource, in order:
-- {index=, kind=, resource=, m= | err=}.
local function kind_of(resource)
  return tostring(type(resource) == "table" and resource.kind or nil)
end

local function compile_resources(eng, app)
  local compiled, per_kind = {}, {}
  for _, resource in ipairs(app.resources) do
    local kind = kind_of(resource)
    per_kind[kind] = (per_kind[kind] or 0) + 1
  end
  for i, resource in ipairs(app.resources) do
    local kind = kind_of(resource)
    -- "kind 'x'", or "kind 'x' #i" (i: its place in the mapping) when the
    -- mapping has several resources of that kind: in every line about it
    local label = report.label(kind, i, per_kind[kind])
    local ok, m, err = pcall(mapping.cached, resource, mapping.options(eng.settings),
                             eng.mapping_cache)
    if not ok then m, err = nil, tostring(m) end
    if err and label ~= ("kind '%s'"):format(kind) then
      local prefix = ("kind '%s'"):format(kind)
      if err:sub(1, #prefix) == prefix then err = label .. err:sub(#prefix + 1) end
    end
    -- the declared selector fields (ocean.selector_schema), defaults set
    local config, serr = deep_copy(resource), nil
    if type(config) == "table" then config, serr = selector.check(eng.registry.selectors[kind], config) end
    if serr then m, err = nil, ("%s: %s"):format(label, serr) end
    compiled[i] = { index = i, kind = kind, resource = resource, m = m, err = err, label = label,
                    config = config or deep_copy(resource) }
  end
  return compiled
end

-- }====================

-- {==================== running resync functions ====================

local function pack(...) return { n = select("#", ...), ... } end

-- Why v is not a batch (a list of raw objects: tables or JSON texts, or
-- one JSON text); nil when it is one.
local function batch_problem(v)
  local t = type(v)
  if t == "string" then return nil end
  if v == json.null then return "null" end
  if t ~= "table" then return report.describe(v) end
  local n, count = #v, 0
  for _ in pairs(v) do count = count + 1 end
  if count > n then
    local keys, nkeys = {}, 0
    for k in pairs(v) do
      if type(k) ~= "number" or k < 1 or k > n or k % 1 ~= 0 then
        nkeys = nkeys + 1
        keys[#keys + 1] = tostring(k)
      end
    end
    table.sort(keys)
    local names = report.some(keys, 5, nkeys)
    if n == 0 then
      return ("an object with keys %s: return its list of objects"):format(names)
    end
    return ("a table with %d list items and the keys %s: return a list of objects only")
      :format(n, names)
  end
  for i = 1, n do
    local it = type(v[i])
    if it ~= "table" and it ~= "string" then
      return ("a list whose item %d is %s: expected objects"):format(i, report.describe(v[i]))
    end
  end
  return nil
end
_M.batch_problem = batch_problem

-- What one resume of a resync function gave (r: packed coroutine.resume
-- results after the status), as a batch, or nil, why. how: "returned" or
-- "yielded". A resume that gave no value gives no batch (a generator's
-- end, or a bare yield).
-- The contract: one value (a list of objects: one page), or nil, err;
-- anything beyond (a second page in the same yield, `return list, extra`)
-- is refused whole (nothing of it is offered): a value silently dropped
-- would read as entities gone at the source, and be deleted.
local function take(r, how)
  if r.n < 2 then return nil end
  local v = r[2]
  if v == nil then
    if r.n >= 3 and r[3] ~= nil then
      if r.n > 3 then
        return nil, ("%s %d values (nil, %s, ...): give nil, err or one list of objects")
          :format(how, r.n - 1, report.render(r[3]))
      end
      return nil, ("%s nil, %s"):format(how, report.render(r[3]))
    end
    return nil, how .. " nil: return a list of objects ({} when there are none)"
  end
  if r.n > 2 then
    local many = true
    for i = 3, r.n do many = many and type(r[i]) == "table" and r[i] ~= json.null end
    if how == "yielded" and many then
      return nil, ("yielded %d pages in one yield: yield one page at a time; nothing of "
        .. "them was synced"):format(r.n - 1)
    end
    return nil, ("%s %d values (%s, then %s): %s one list of objects; nothing of them was "
      .. "synced"):format(how, r.n - 1, report.describe(v), report.describe(r[3]),
      how == "yielded" and "yield" or "return")
  end
  local problem = batch_problem(v)
  if problem then return nil, how .. " " .. problem end
  return v
end

-- Run fn(kind, resource) as a coroutine; deliver(batch) for every
-- yielded page and for a returned list; fail(why) for anything else it
-- gave (nil, err; an object page; ...), which fails the kind: a
-- generator goes on (as Ocean's), a function is over. A function that
-- neither yields a page nor returns a value fails too: a forgotten
-- `return` must not read as an empty source (whose entities would be
-- deleted); `return {}` says "none". Returns true, or nil, err when fn
-- raised. The coroutine is adopted by the running task: its waits yield
-- to the scheduler (scheduler.resume passes them up), not to this loop.
local function run_resync_fn(fn, kind, resource, deliver, fail, run, name)
  name = name or ("kind '%s'"):format(kind)
  local co = run.eng.scheduler:adopt(coroutine_create(function(...) return fn(...) end))
  local r = pack(coroutine_resume(co, kind, resource))
  local gave = false
  while true do
    run:check_abort()
    if not r[1] then
      return nil, ("resync function for %s failed: %s"):format(name, report.render(r[2]))
    end
    local dead = coroutine_status(co) == "dead"
    local batch, why = take(r, dead and "returned" or "yielded")
    gave = gave or r.n >= 2
    if batch then
      deliver(batch)
    elseif why then
      fail(("resync function for %s %s"):format(name, why))
    end
    if dead then
      if not gave then
        fail(("resync function for %s returned nothing and yielded no page: return a "
          .. "list of objects ({} when there are none)"):format(name))
      end
      return true
    end
    r = pack(coroutine_resume(co))
  end
end
_M.run_resync_fn = run_resync_fn

-- }====================

-- {==================== a run ====================

local Run = {}
Run.__index = Run

local function new_run(eng, kind_of_event, opts)
  local s = eng.settings or {}
  local l = s.log or {}
  local r = setmetatable({
    eng = eng, id = uuid(), t0 = eng.clock(), plan = opts.plan and true or false,
    event = kind_of_event, errors = {}, error_count = 0, kinds = {}, aborted = false,
    held = {}, progress_interval = l.progress_interval or 10,
    item_errors = l.item_errors or 10,
  }, Run)
  r.started = iso_at(r.t0)
  return r
end

-- Port known to be unreachable (a retried request got no answer until
-- its retry budget ran out: the core port's unreachable()) stops the run
-- as failed, nothing deleted, rather than sending every later request
-- into another round of retries.
local PORT_DOWN = {}

function Run:check_abort()
  if self.aborted or (self.eng:should_abort(self)) then
    self.aborted = true
    error(ABORTED, 0)
  end
  local cp = self.eng.core_port
  local down = cp and cp:unreachable()
  if down then error(setmetatable({ message = down }, PORT_DOWN), 0) end
end

-- An error of the run (it blocks deletion): counted, kept for the
-- summary and logged; `logged` false: counted and kept, not logged (a
-- capped item error says it itself).
function Run:add_error(label, msg, logged)
  self.error_count = self.error_count + 1
  self.errors[#self.errors + 1] = label and (label .. ": " .. msg) or msg
  if logged ~= false then log.error("%s", self.errors[#self.errors]) end
end

-- An error that is counted (and blocks deletion) but not kept one by one.
function Run:count_error(n)
  self.error_count = self.error_count + n
end

-- Between two waits: the running kind's progress line, at most every
-- progress_interval seconds (at the first wait after it is due). Upserts
-- are counted when Port answered them (answered), apart from those handed
-- to the Port client and not answered yet (queued: waiting for a slot, on
-- the wire or waiting to retry).
function Run:tick()
  local k = self.current
  if not k or not self.session then return end
  local now = self.eng.clock()
  if now - k.said_at < self.progress_interval then return end
  k.said_at = now
  local st = self.session:stats()
  local a0 = k.at_start.entities_sent - (k.at_start.in_flight or 0)
  report.progress(k.label, k, { answered = st.entities_sent - (st.in_flight or 0) - a0,
    queued = st.in_flight or 0, failed = st.failed - k.at_start.failed }, now - k.t0)
end

-- Wait for a Job of the session; a run asked to stop raises ABORTED
-- (before the session can take its next step).
function Run:await(job)
  local v = self.eng:await(function()
    self:check_abort()
    return job:done() or nil
  end)
  if v == nil then              -- the engine is stopping (engine:await)
    self.aborted = true
    error(ABORTED, 0)
  end
  return job:result()
end

-- }====================

-- {==================== the session ====================

local function open_session(run, o, slots, event_type)
  local eng = run.eng
  run.session = core.sync_new(eng.core_port, {
    slots = slots, merge = o.merge, create_missing = o.create_missing,
    delete_dependents = o.delete_dependents, plan = run.plan,
    event_type = event_type, resync_id = event_type == "resync" and run.id or nil,
    batch_max = eng.settings.upsert_batch_max_length,
    batch_max_bytes = eng.settings.upsert_batch_max_bytes,
  })
  return run.session
end

-- The stats of one resource (c: a compiled resource, or a stand-in for
-- sync(entities)).
local function new_kind_stats(run, c, raw)
  local now = run.eng.clock()
  local stats = { kind = c.kind, index = c.index, label = c.label, batches = 0, raw = raw or 0,
                  entities = 0, filtered = 0, errors = 0, dropped = 0, items_errors = 0,
                  misconfigured = {}, created = 0, updated = 0, unknown = 0, unchanged = 0,
                  failed_entities = 0, t0 = now, said_at = now, status = "running",
                  notes = report.notes(run.item_errors, c.label),
                  run_errors_at_start = run.error_count, run_errlist_at_start = #run.errors }
  if run.session then stats.at_start = run.session:stats() end
  run.kinds[#run.kinds + 1] = stats
  return stats
end

-- C work between two pauses while a page is mapped (inside nginx a page
-- of 50 000 objects must not stall the worker: ~20 ms at most).
_M.MAP_BUDGET_MS = 5

-- The problems a feed reported, noted per resource (capped) and counted.
local function note_feed(run, c, stats, rep, batch)
  local notes = stats.notes
  if rep.error_count > 0 then
    stats.errors = stats.errors + rep.error_count
    for _, e in ipairs(rep.errors) do
      -- index 0: the page itself (a JSON text that is not a list)
      local msg = e.index > 0 and ("item %d: %s"):format(e.index, e.message)
        or ("page %d: %s"):format(stats.batches, e.message)
      if notes:add("item errors", "error", ("%s: %s"):format(c.label, msg)) then
        run:add_error(c.label, msg, false)
      else
        run:count_error(1)
      end
    end
    notes:skip("item errors", rep.error_count - #rep.errors)
    -- items the mapping's time or memory budget stopped (the engine's metrics)
    stats.budget_hits = metrics.count_budget_hits(rep.errors, stats.budget_hits)
    run:count_error(rep.error_count - #rep.errors)
  end
  if rep.dropped_count > 0 then
    stats.dropped = stats.dropped + rep.dropped_count
    for _, d in ipairs(rep.dropped) do
      notes:add("dropped entities", "warning",
        ("%s: item %d dropped: %s"):format(c.label, d.index, d.reason))
    end
    notes:skip("dropped entities", rep.dropped_count - #rep.dropped)
  end
  if rep.items_error_count > 0 then
    stats.items_errors = stats.items_errors + rep.items_error_count
    for _, e in ipairs(rep.items_errors) do
      notes:add("items whose itemsToParse failed", "warning", function()
        return ("%s: %s: %s; its children are unknown, so deletion is held back for this "
          .. "resource's blueprints"):format(c.label, report.where(stats.batches, batch, e.index),
          e.message)
      end)
    end
    notes:skip("items whose itemsToParse failed", rep.items_error_count - #rep.items_errors)
  end
end

-- Map and offer one batch of a kind (c: a compiled resource), a slice of
-- at most MAP_BUDGET_MS at a time, letting the rest run in between.
local function feed_batch(run, c, stats, batch)
  local session = run.session
  run:await(session:ready())      -- the owned listing, then backpressure
  local acc = { budget_ms = _M.MAP_BUDGET_MS }
  local rep, err = session:feed(c.index, batch, acc)
  while rep == false do
    run.eng:pause()
    run:check_abort()
    rep, err = session:feed(c.index, batch, acc)
  end
  if not rep then error("sync: " .. err, 0) end   -- a submit failed: stop
  stats.batches = stats.batches + 1
  stats.raw = stats.raw + rep.items
  stats.entities = stats.entities + rep.entities
  stats.filtered = stats.filtered + rep.filtered
  note_feed(run, c, stats, rep, batch)
  for path, expr in pairs(rep.misconfigured) do
    stats.misconfigured[path] = expr
  end
  run:tick()
end

-- Send what is left and wait for the answers.
local function drain(run)
  local job, err = run.session:drain()
  if not job then return run:add_error(nil, err) end
  run:await(job)
end

-- The counts of a resource, from the session (exact also after the retry
-- and when the run stopped half-way).
local function read_counts(run, stats)
  if not run.session or not stats.index then return end
  local t = run.session:tag_stats(stats.index)
  stats.created, stats.updated, stats.unknown = t.created, t.updated, t.unknown
  stats.unchanged, stats.failed_entities = t.unchanged, t.failed
end

local function kind_done(run, stats, status)
  stats.status = status
  -- every error of the resource, whatever raised it (its items' mapping,
  -- its selector, its resync function, a missing function): the run's
  -- errors counted while it ran (stats.errors: its items' alone)
  stats.error_count = run.error_count - stats.run_errors_at_start
  stats.first_error = run.errors[stats.run_errlist_at_start + 1]
  stats.seconds = run.eng.clock() - stats.t0
  read_counts(run, stats)
  if run.current == stats then run.current = nil end
  for _, line in ipairs(stats.notes:done(stats.errors > 0 and "error" or "warning")) do
    if stats.errors > 0 then run.errors[#run.errors + 1] = line end
  end
  local rate = stats.seconds > 0 and stats.raw / stats.seconds or 0
  local unknown = stats.unknown > 0 and (", upserted %d (created or updated: unknown)")
    :format(stats.unknown) or ""
  log.info("%s: %d batches, %d objects -> %d entities (%d filtered); created %d, "
    .. "updated %d%s, unchanged %d, failed %d (%.0f objects/s)%s%s", stats.label, stats.batches,
    stats.raw, stats.entities, stats.filtered, stats.created, stats.updated, unknown,
    stats.unchanged, stats.failed_entities, rate, run.plan and " [plan]" or "",
    status ~= "completed" and (" [" .. status .. "]") or "")
end

-- The blueprint a resource's mapping writes when it is a literal
-- ('"service"'); nil when it is computed per entity.
local function constant_blueprint(resource)
  local p = type(resource) == "table" and resource.port
  local e = type(p) == "table" and p.entity
  local m = type(e) == "table" and e.mappings
  local bp = type(m) == "table" and m.blueprint
  if type(bp) ~= "string" then return nil end
  local v = bp:match('^%s*"([^"\\]*)"%s*$') or bp:match("^%s*'([^'\\]*)'%s*$")
  return v ~= "" and v or nil
end

-- A resource some of whose items could not be expanded (itemsToParse):
-- the entities they would have given are unknown, so the owned entities
-- of its blueprint must not be deleted (all deletion when the blueprint is
-- computed per entity).
local function hold_back(run, c, stats)
  if stats.items_errors == 0 then return end
  local why = ("%s: itemsToParse failed for %d %s"):format(c.label, stats.items_errors,
    stats.items_errors == 1 and "item" or "items")
  local bp = constant_blueprint(c.resource)
  if bp then
    run.held[#run.held + 1] = { blueprint = bp, why = why }
  else
    run.blocked_all = run.blocked_all or {}
    run.blocked_all[#run.blocked_all + 1] = why .. ", and its blueprint is computed per entity"
  end
end

-- Ocean's event for the functions of one resource (ocean.event).
local function resource_event(run, c)
  return { type = "resync", resync_id = run.id, kind = c.kind, resource_index = c.index,
           resource_config = c.config, port_app_config = run.app }
end

-- Step 5 for one kind: its resync functions, batch by batch.
local function process_kind(run, c)
  local kind = c.kind
  local stats = new_kind_stats(run, c)
  run.current = stats
  local sel = type(c.resource) == "table" and type(c.resource.selector) == "table"
    and c.resource.selector.query
  log.info("%s started (resource %d of %d%s)", c.label, c.index, run.nresources,
    type(sel) == "string" and (", selector: " .. sel) or "")
  if not c.m then
    run:add_error(nil, c.err)        -- the message names the kind
    kind_done(run, stats, "failed")
    return stats
  end
  local fns = run.eng:resync_functions(kind)
  if #fns == 0 then
    run:add_error(c.label, ("no resync function is registered for kind '%s'"):format(kind))
    kind_done(run, stats, "failed")
    return stats
  end
  local errors_before = run.error_count
  local event = resource_event(run, c)
  for _, fn in ipairs(fns) do
    local ok, err = run.eng:with_event(event, run_resync_fn, fn, kind, c.config, function(batch)
      feed_batch(run, c, stats, batch)
    end, function(why) run:add_error(nil, why) end, run, c.label)
    if not ok then run:add_error(nil, err) end
  end
  report.misconfigured(stats)
  drain(run)
  hold_back(run, c, stats)
  kind_done(run, stats, run.error_count > errors_before and "failed" or "completed")
  return stats
end

-- The bound for "updated since the run started" in Port's own clock: the
-- time Port stamped on the "running" state; without it, our clock minus a
-- margin for skew (an entity written just before the start then stays
-- until the next resync: the safe side).
local SKEW_MARGIN = 2
local function started_bound(run)
  -- plan: nothing is written, so nothing can race the prediction; sync():
  -- the list given is the whole truth (Ocean lists without a bound too)
  if run.plan or run.event ~= "resync" then return nil end
  local st = type(run.running_state) == "table" and run.running_state.resyncState
  if type(st) == "table" and type(st.updatedAt) == "string" then return st.updatedAt end
  return iso_at(run.t0 - SKEW_MARGIN)
end

-- Step 6: retry, decide, confirm, delete (the session's phases).
local function finish(run, threshold)
  local blocked, explained = {}, 0
  for _, k in ipairs(run.kinds) do
    -- a failed resource is the reason, named by its first error (its
    -- selector, its resync function... each names its kind); the session
    -- counts only the errors no resource explains
    if (k.error_count or 0) > 0 and k.first_error then
      local more = k.error_count - 1
      blocked[#blocked + 1] = k.first_error .. (more > 0 and (" (and %d more error%s)")
        :format(more, more == 1 and "" or "s") or "")
      explained = explained + k.error_count
    end
    if k.dropped > 0 then
      blocked[#blocked + 1] = ("%s: %d entities had no identifier or blueprint")
        :format(k.label, k.dropped)
    end
  end
  for _, why in ipairs(run.blocked_all or {}) do blocked[#blocked + 1] = why end
  local held = {}
  for _, h in ipairs(run.held) do held[#held + 1] = h.blueprint end
  local job, err = run.session:finish { threshold = threshold, before = started_bound(run),
                                        errors = run.error_count - explained, blocked = blocked,
                                        held = held }
  if not job then return run:add_error(nil, err) end
  local rep = run:await(job)
  for _, e in ipairs(rep.errors) do run:add_error(nil, e) end
  run.deletion = rep.deletion
  report.session_end(rep, run.held)
end

-- }====================

-- {==================== a guarded run ====================

local function report_state(run, status, extra)
  local eng = run.eng
  if run.plan or not eng.port then return end
  local body = { status = status, intervalInMinuets = eng.settings.scheduled_resync_interval or json.null,
                 nextResync = json.null }
  if status == "running" then
    body.lastResyncStart = run.started
    body.lastResyncEnd = json.null
  else
    body.lastResyncEnd = iso_now(eng)
  end
  for k, v in pairs(extra or {}) do body[k] = v end
  -- the final state reaches Port also when the runner is stopping
  local integ, err = eng:despite_stop(eng.port.update_resync_state, eng.port,
    eng.settings.integration.identifier, body)
  if not integ then
    log.warning("could not report the resync state '%s' to Port: %s", status, tostring(err))
  end
  return integ
end

local function run_hooks(list, name, ...)
  for _, fn in ipairs(list) do
    local ok, err = pcall(fn, ...)
    if not ok then return nil, ("%s hook failed: %s"):format(name, tostring(err)) end
  end
  return true
end

-- The failures with the resource each came from (`kind`, `label`).
local function label_failures(run, failures)
  local by_index = {}
  for _, k in ipairs(run.kinds) do
    if k.index then by_index[k.index] = k end
  end
  for _, f in ipairs(failures) do
    local k = by_index[f.tag]
    f.kind = k and k.kind or nil
    f.label = k and k.label or "entities"
  end
  return failures
end

-- completed | partial (completed, but the catalog is not as the source
-- has it: Port rejected entities, items could not be expanded, entities
-- were dropped for want of an identifier or blueprint, or deletion was
-- skipped (the threshold...), so stale entities stay; or some stale entities could not be
-- deleted) | failed | aborted.
local function outcome_of(s)
  if s.aborted then return "aborted" end
  if not s.ok then return "failed" end
  if s.failed > 0 or s.items_errors > 0 or (s.dropped or 0) > 0
     or (s.delete_failed or 0) > 0
     or (s.deletion and s.deletion.skipped) then
    return "partial"
  end
  return "completed"
end
_M.outcome_of = outcome_of

local function summarize(run)
  local session = run.session
  local st = session and session:stats() or {}
  local s = {
    ok = run.error_count == 0 and not run.aborted,
    aborted = run.aborted or nil,
    plan = run.plan or nil,
    resync_id = run.id,
    created = st.created or 0, updated = st.updated or 0, unknown = st.unknown or 0,
    unchanged = st.unchanged or 0, failed = st.failed or 0,
    deleted = run.deletion and run.deletion.deleted or 0,
    delete_failed = not run.plan and st.delete_failed or 0,
    filtered = 0, items_errors = 0, dropped = 0,
    errors = run.errors, error_count = run.error_count, kinds = run.kinds,
    deletion = run.deletion, held = run.held[1] and run.held or nil,
    requests = { upserts = st.upsert_requests or 0, deletes = st.delete_requests or 0 },
    failures = {},
  }
  for _, k in ipairs(run.kinds) do
    read_counts(run, k)
    s.filtered = s.filtered + k.filtered
    s.items_errors = s.items_errors + k.items_errors
    s.dropped = s.dropped + k.dropped
  end
  if session then
    s.failures = label_failures(run, session:failures())
    if run.plan then
      local p = session:planned()
      s.planned = { create = p.create, update = p.update,
                    delete = run.deletion and run.deletion.planned or {} }
    end
  end
  s.outcome = outcome_of(s)
  return s
end

-- Run body(run) protected: an abort or an unexpected error is recorded,
-- never raised; the session (run.session) is closed at the end.
local function guarded(run, body)
  local eng = run.eng
  eng:begin_run(run)
  local ok, err = xpcall(body, function(e)
    if e == ABORTED or getmetatable(e) == PORT_DOWN then return e end
    return traceback(tostring(e), 2)
  end)
  if not ok then
    if run.current then kind_done(run, run.current, err == ABORTED and "aborted" or "failed") end
    if err == ABORTED then
      run.aborted = true
      log.warning("%s %s aborted: nothing was deleted", run.event, run.id)
      if run.event == "resync" then pcall(report_state, run, "aborted") end
    elseif getmetatable(err) == PORT_DOWN then
      run:add_error(nil, ("%s failed: %s; it stops here and nothing was deleted")
        :format(run.event, err.message))
    else
      run:add_error(nil, run.event .. " failed: " .. tostring(err))
      if run.event == "resync" then pcall(report_state, run, "failed") end
    end
  end
  local summary = summarize(run)
  -- the live session keeps what the run knew of the owned entities
  if run.session and not run.aborted and not run.plan then pcall(eng.adopt_owned, eng, run.session) end
  if run.session then run.session:close() end
  eng:end_run(run)
  report.failures(summary.failures)
  if run.plan then
    -- a plan writes nothing: it says what the resync would do
    log.info("%s %s plan %s: would create %d, update %d, delete %d; unchanged %d, failed %d%s",
      run.event, run.id, summary.outcome == "partial" and "completed" or summary.outcome,
      summary.created, summary.updated, summary.deleted, summary.unchanged, summary.failed,
      summary.error_count > 0 and (" (" .. summary.error_count .. " errors)") or "")
    return summary
  end
  log.info("%s %s %s: created %d, updated %d%s, unchanged %d, deleted %d%s, failed %d%s", run.event,
    run.id, summary.outcome == "partial" and "completed" or summary.outcome, summary.created,
    summary.updated, summary.unknown > 0 and (", upserted %d (created or updated: unknown)")
      :format(summary.unknown) or "",
    summary.unchanged, summary.deleted,
    summary.delete_failed > 0 and (" (%d could not be deleted)"):format(summary.delete_failed) or "",
    summary.failed,
    summary.error_count > 0 and (" (%d error%s)"):format(summary.error_count,
      summary.error_count == 1 and "" or "s") or "")
  return summary
end

-- }====================

-- {==================== the operations ====================

-- Steps 1 and 2: the mapping, "running" and the start hooks. nil when the
-- run cannot go on (recorded, and reported to Port). The mapping read is
-- the one live events use from now on (ocean.engine's app-config cache),
-- so that a webhook after the resync maps as it did.
local function start_resync(run, opts)
  local app, err = _M.fetch_app_config(run.eng, opts)
  if app then
    if not run.plan then run.eng:set_app_config(app) end
    run.running_state = report_state(run, "running")
    local ok, herr = run_hooks(run.eng.registry.on_resync_start, "on_resync_start")
    if ok then return app end
    err = herr
  end
  run:add_error(nil, err)
  report_state(run, "failed")
end

local function complete(run)
  if run.error_count == 0 then
    local ok, err = run_hooks(run.eng.registry.on_resync_complete, "on_resync_complete")
    if not ok then run:add_error(nil, err) end
  end
  report_state(run, run.error_count == 0 and "completed" or "failed")
end

-- The full resync. opts: {plan=bool, app_config=table (skip the fetch)}.
-- Returns the summary (never raises for expected failures).
function _M.sync_raw_all(eng, opts)
  opts = opts or {}
  local run = new_run(eng, "resync", opts)
  return guarded(run, function()
    log.info("resync %s started%s", run.id, run.plan and " (plan: nothing is written)" or "")
    local app = start_resync(run, opts)                            -- 1, 2
    if not app then return end
    run.app = app
    local compiled = compile_resources(eng, app)                   -- 3
    run.nresources = #compiled
    local slots = {}
    for i, c in ipairs(compiled) do slots[i] = c.m or false end
    open_session(run, app_options(app), slots, "resync")           -- 4
    for _, c in ipairs(compiled) do process_kind(run, c) end       -- 5
    run.current = nil
    finish(run, threshold_of(eng, app))                            -- 6
    complete(run)
  end)
end

-- What a list of ready-made entities writes, as a mapping signature.
local function signature_of(entities)
  local sig = { title = false, icon = false, team = false,
                properties = json.array {}, relations = json.array {} }
  local props, rels = {}, {}
  for _, e in ipairs(entities) do
    if e.title ~= nil then sig.title = true end
    if e.icon ~= nil then sig.icon = true end
    if e.team ~= nil then sig.team = true end
    for k in pairs(type(e.properties) == "table" and e.properties or {}) do props[k] = true end
    for k in pairs(type(e.relations) == "table" and e.relations or {}) do rels[k] = true end
  end
  for k in pairs(props) do sig.properties[#sig.properties + 1] = k end
  for k in pairs(rels) do sig.relations[#sig.relations + 1] = k end
  table.sort(sig.properties)
  table.sort(sig.relations)
  return sig
end

local OFFER_STEP = 20

-- sync(entities): make the owned entities equal to a ready-made list,
-- with the same change detection, retry and deletion rules. app: the
-- mapping (its options and threshold), or {}.
function _M.sync_entities(eng, entities, app, opts)
  local run = new_run(eng, "sync", opts)
  return guarded(run, function()
    local session = open_session(run, app_options(app), { signature_of(entities) },
      opts.event_type or "http_request")
    local stats = new_kind_stats(run, { kind = "(entities)", index = 1, label = "entities" },
      #entities)
    stats.batches = 1
    for i, e in ipairs(entities) do
      if type(e) ~= "table" or e.identifier == nil or e.blueprint == nil then
        run:add_error(nil, ("entity %d has no identifier or blueprint"):format(i))
      else
        -- the owned listing first, then backpressure every bulk's worth
        if stats.entities % OFFER_STEP == 0 then run:await(session:ready()) end
        local ok, err = session:offer(1, e)
        if not ok then run:add_error(nil, err) end
        stats.entities = stats.entities + 1
      end
    end
    drain(run)
    stats.status = "completed"
    finish(run, threshold_of(eng, app))
  end)
end

-- }====================

return _M
