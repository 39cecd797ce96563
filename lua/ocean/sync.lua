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
local otime = require "ocean.time"

local type, pairs, ipairs, tostring = type, pairs, ipairs, tostring
local coroutine_create, coroutine_resume, coroutine_status =
  coroutine.create, coroutine.resume, coroutine.status
local traceback = debug.traceback
local table_concat = table.concat
local iso_at = otime.iso             -- ISO-8601 UTC with ms, as Port writes

local _M = {}

local ABORTED = setmetatable({}, { __tostring = function() return "resync aborted" end })
_M.ABORTED = ABORTED

-- {==================== helpers ====================

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
local function compile_resources(eng, app)
  local compiled = {}
  for i, resource in ipairs(app.resources) do
    local kind = type(resource) == "table" and resource.kind or nil
    local ok, m, err = pcall(mapping.cached, resource, { allow_env = eng.settings.allow_env_jq },
                             eng.mapping_cache)
    if not ok then m, err = nil, tostring(m) end
    compiled[i] = { index = i, kind = tostring(kind), resource = resource, m = m, err = err }
  end
  return compiled
end

-- }====================

-- {==================== running resync functions ====================

-- A batch must be a list of raw objects (tables or JSON texts).
local function check_batch(batch, kind)
  if type(batch) == "string" then return true end
  if type(batch) ~= "table" or batch == json.null then
    return nil, ("a resync function for kind '%s' produced a %s, expected a list of objects")
      :format(kind, type(batch))
  end
  for i = 1, #batch do
    local item = batch[i]
    if type(item) ~= "table" and type(item) ~= "string" then
      return nil, ("a resync function for kind '%s' produced a %s at position %d, expected an object")
        :format(kind, type(item), i)
    end
  end
  return true
end

-- Run fn(kind) as a coroutine; deliver(batch) for every yielded page and
-- for a returned list. Returns true, or nil, err when fn raised.
local function run_resync_fn(fn, kind, deliver, run)
  local co = coroutine_create(function(...) return fn(...) end)
  local ok, res = coroutine_resume(co, kind)
  while true do
    run:check_abort()
    if not ok then
      return nil, ("resync function for kind '%s' failed: %s"):format(kind, tostring(res))
    end
    local dead = coroutine_status(co) == "dead"
    if res ~= nil then
      local good, err = check_batch(res, kind)
      if good then
        deliver(res)
      else
        run:add_error(kind, err)
      end
    end
    if dead then return true end
    ok, res = coroutine_resume(co)
  end
end
_M.run_resync_fn = run_resync_fn

-- }====================

-- {==================== a run ====================

local Run = {}
Run.__index = Run

local function new_run(eng, kind_of_event, opts)
  local r = setmetatable({
    eng = eng, id = uuid(), t0 = eng.clock(), plan = opts.plan and true or false,
    event = kind_of_event, errors = {}, kinds = {}, aborted = false,
  }, Run)
  r.started = iso_at(r.t0)
  return r
end

function Run:check_abort()
  if self.aborted or (self.eng:should_abort(self)) then
    self.aborted = true
    error(ABORTED, 0)
  end
end

function Run:add_error(kind, msg)
  self.errors[#self.errors + 1] = kind and ("kind '%s': %s"):format(kind, msg) or msg
  log.error("%s", self.errors[#self.errors])
end

-- Wait for a Job of the session; a run asked to stop raises ABORTED
-- (before the session can take its next step).
function Run:await(job)
  local v = self.eng:await(function()
    self:check_abort()
    return job:done() or nil
  end)
  return v and job:result()
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

local function new_kind_stats(run, kind, raw)
  local stats = { kind = kind, batches = 0, raw = raw or 0, entities = 0, filtered = 0,
                  errors = 0, dropped = 0, misconfigured = {} }
  run.kinds[#run.kinds + 1] = stats
  return stats
end

-- C work between two pauses while a page is mapped (inside nginx a page
-- of 50 000 objects must not stall the worker: ~20 ms at most).
_M.MAP_BUDGET_MS = 5

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
  if rep.error_count > 0 then
    stats.errors = stats.errors + rep.error_count
    for _, e in ipairs(rep.errors) do
      run:add_error(c.kind, ("item %d: %s"):format(e.index, e.message))
    end
    if rep.error_count > #rep.errors then
      run:add_error(c.kind, ("... and %d more item errors"):format(rep.error_count - #rep.errors))
    end
  end
  if rep.dropped_count > 0 then
    stats.dropped = stats.dropped + rep.dropped_count
    for _, d in ipairs(rep.dropped) do
      log.warning("kind '%s': item %d dropped: %s", c.kind, d.index, d.reason)
    end
  end
  for path, expr in pairs(rep.misconfigured) do
    stats.misconfigured[path] = expr
  end
end

-- Send what is left and wait for the answers.
local function drain(run)
  local job, err = run.session:drain()
  if not job then return run:add_error(nil, err) end
  run:await(job)
end

local function log_misconfigured(stats)
  if not next(stats.misconfigured) then return end
  local parts = {}
  for path, expr in pairs(stats.misconfigured) do parts[#parts + 1] = ("%s (%s)"):format(path, expr) end
  table.sort(parts)
  log.warning("kind '%s': fields that came out null (misconfigured?): %s", stats.kind,
    table_concat(parts, ", "))
end

local function kind_done(run, stats, before, t0)
  local after = run.session:stats()
  stats.created = after.created - before.created
  stats.updated = after.updated - before.updated
  stats.unchanged = after.unchanged - before.unchanged
  stats.failed_entities = after.failed - before.failed
  stats.seconds = run.eng.clock() - t0
  local rate = stats.seconds > 0 and stats.raw / stats.seconds or 0
  log.info("kind '%s': %d batches, %d objects -> %d entities (%d filtered); created %d, "
    .. "updated %d, unchanged %d, failed %d (%.0f objects/s)%s", stats.kind, stats.batches,
    stats.raw, stats.entities, stats.filtered, stats.created, stats.updated, stats.unchanged,
    stats.failed_entities, rate, run.plan and " [plan]" or "")
end

-- Step 5 for one kind: its resync functions, batch by batch.
local function process_kind(run, c)
  local kind = c.kind
  local stats = new_kind_stats(run, kind)
  local t0, before = run.eng.clock(), run.session:stats()
  if not c.m then
    run:add_error(nil, c.err)        -- the message names the kind
    stats.failed = true
    return stats
  end
  local fns = run.eng:resync_functions(kind)
  if #fns == 0 then
    run:add_error(kind, ("no resync function is registered for kind '%s'"):format(kind))
    stats.failed = true
    return stats
  end
  local errors_before = #run.errors
  for _, fn in ipairs(fns) do
    local ok, err = run_resync_fn(fn, kind, function(batch)
      feed_batch(run, c, stats, batch)
    end, run)
    if not ok then run:add_error(nil, err) end
  end
  log_misconfigured(stats)
  drain(run)
  kind_done(run, stats, before, t0)
  stats.failed = #run.errors > errors_before
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

-- What the end of the session did, in the log.
local function log_end(rep)
  local d = rep.deletion
  if rep.retried > 0 then
    log.info("retried %d failed upserts in relation order (%d levels): %d succeeded",
      rep.retried, rep.retry_levels, rep.retry_ok)
  end
  if d.skipped and d.candidates > 0 then
    log.warning("not deleting %d entities: %s", d.candidates, table_concat(d.reasons, "; "))
  elseif d.candidates > 0 then
    if rep.confirmed < d.candidates then
      log.info("%d deletion candidates changed since the resync started; they stay",
        d.candidates - rep.confirmed)
    end
    if rep.protected_targets > 0 then
      log.info("%d deletion candidates are relation targets of synced entities; they stay",
        rep.protected_targets)
    end
  end
  for _, e in ipairs(rep.failed_deletes) do
    log.warning("could not delete %s/%s: %s", e.blueprint, e.identifier, e.message or "?")
  end
end

-- Step 6: retry, decide, confirm, delete (the session's phases).
local function finish(run, threshold)
  local blocked = {}
  for _, k in ipairs(run.kinds) do
    if k.dropped > 0 then
      blocked[#blocked + 1] = ("kind '%s': %d entities had no identifier or blueprint")
        :format(k.kind, k.dropped)
    end
  end
  local job, err = run.session:finish { threshold = threshold, before = started_bound(run),
                                        errors = #run.errors, blocked = blocked }
  if not job then return run:add_error(nil, err) end
  local rep = run:await(job)
  for _, e in ipairs(rep.errors) do run:add_error(nil, e) end
  run.deletion = rep.deletion
  log_end(rep)
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
  local integ, err = eng.port:update_resync_state(eng.settings.integration.identifier, body)
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

local function summarize(run)
  local session = run.session
  local st = session and session:stats() or {}
  local s = {
    ok = #run.errors == 0 and not run.aborted,
    aborted = run.aborted or nil,
    plan = run.plan or nil,
    resync_id = run.id,
    created = st.created or 0, updated = st.updated or 0,
    unchanged = st.unchanged or 0, failed = st.failed or 0,
    deleted = run.deletion and run.deletion.deleted or 0,
    errors = run.errors, kinds = run.kinds, deletion = run.deletion,
    requests = { upserts = st.upsert_requests or 0, deletes = st.delete_requests or 0 },
  }
  if session then
    s.failures = session:failures()
    if run.plan then
      local p = session:planned()
      s.planned = { create = p.create, update = p.update,
                    delete = run.deletion and run.deletion.planned or {} }
    end
  end
  return s
end

-- Run body(run) protected: an abort or an unexpected error is recorded,
-- never raised; the session (run.session) is closed at the end.
local function guarded(run, body)
  local eng = run.eng
  eng:begin_run(run)
  local ok, err = xpcall(body, function(e)
    if e == ABORTED then return e end
    return traceback(tostring(e), 2)
  end)
  if not ok then
    if err == ABORTED then
      run.aborted = true
      log.warning("%s %s aborted: nothing was deleted", run.event, run.id)
      if run.event == "resync" then pcall(report_state, run, "aborted") end
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
  log.info("%s %s %s: created %d, updated %d, unchanged %d, deleted %d, failed %d%s",
    run.event, run.id, summary.ok and "completed" or (run.aborted and "aborted" or "failed"),
    summary.created, summary.updated, summary.unchanged, summary.deleted, summary.failed,
    #summary.errors > 0 and (" (" .. #summary.errors .. " errors)") or "")
  return summary
end

-- }====================

-- {==================== the operations ====================

-- Steps 1 and 2: the mapping, "running" and the start hooks. nil when the
-- run cannot go on (recorded, and reported to Port).
local function start_resync(run, opts)
  local app, err = _M.fetch_app_config(run.eng, opts)
  if app then
    run.running_state = report_state(run, "running")
    local ok, herr = run_hooks(run.eng.registry.on_resync_start, "on_resync_start")
    if ok then return app end
    err = herr
  end
  run:add_error(nil, err)
  report_state(run, "failed")
end

local function complete(run)
  if #run.errors == 0 then
    local ok, err = run_hooks(run.eng.registry.on_resync_complete, "on_resync_complete")
    if not ok then run:add_error(nil, err) end
  end
  report_state(run, #run.errors == 0 and "completed" or "failed")
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
    local compiled = compile_resources(eng, app)                   -- 3
    local slots = {}
    for i, c in ipairs(compiled) do slots[i] = c.m or false end
    open_session(run, app_options(app), slots, "resync")           -- 4
    for _, c in ipairs(compiled) do process_kind(run, c) end       -- 5
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
    local stats = new_kind_stats(run, "(entities)", #entities)
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
    finish(run, threshold_of(eng, app))
  end)
end

-- }====================

return _M
