-- ocean.sync: every sync operation of the seed, orchestrated over the C
-- engine (mapping, sync session, Port client).
--
-- Full resync (sync_raw_all): mapping read fresh from Port; resources in
-- order; each resync function either returns a list or is a generator
-- (coroutine.yield(batch) per page); each batch is mapped and offered to
-- the session, which upserts only what changed, coalescing pages into
-- full bulk requests while the next page is fetched. Then: one retry of
-- the failed upserts in relation order, and reconciliation with the
-- safety rules (no deletion when anything failed, when the owned
-- entities could not be read, above entityDeletionThreshold, or for
-- entities changed since the resync started).
local core = require "ocean.core"
local json = require "ocean.json"
local log = require "ocean.log"
local mapping = require "ocean.mapping"

local type, pairs, ipairs, tostring = type, pairs, ipairs, tostring
local coroutine_create, coroutine_resume, coroutine_status =
  coroutine.create, coroutine.resume, coroutine.status
local traceback = debug.traceback
local table_concat = table.concat
local math_floor = math.floor

local _M = {}

local ABORTED = setmetatable({}, { __tostring = function() return "resync aborted" end })
_M.ABORTED = ABORTED

-- {==================== registry ====================

local registry = {
  kinds = {},             -- kind -> list of functions
  all = {},               -- functions for every kind
  on_start = {},
  on_resync_start = {},
  on_resync_complete = {},
}
_M.registry = registry

function _M.reset_registry()
  registry.kinds, registry.all = {}, {}
  registry.on_start, registry.on_resync_start, registry.on_resync_complete = {}, {}, {}
end

function _M.resync_functions(kind)
  local fns = {}
  for _, fn in ipairs(registry.kinds[kind] or {}) do fns[#fns + 1] = fn end
  for _, fn in ipairs(registry.all) do fns[#fns + 1] = fn end
  return fns
end

-- }====================

-- {==================== helpers ====================

-- ISO-8601 UTC with milliseconds, as Port writes its timestamps.
local function iso_at(t)
  local s = math_floor(t)
  return os.date("!%Y-%m-%dT%H:%M:%S", s) .. (".%03dZ"):format(math_floor((t - s) * 1000))
end

local function iso_now(ctx)
  return iso_at(ctx.clock())
end
_M.iso_now = iso_now

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

local function threshold_of(ctx, app)
  local t = ctx.settings.entity_deletion_threshold
  if t == nil then t = app.entityDeletionThreshold end
  if t == nil or t == json.null then t = 0.9 end
  return tonumber(t) or 0.9
end
_M.threshold_of = threshold_of

-- Wait until pred() is true; a run asked to abort raises ABORTED.
local function await_run(ctx, run, pred)
  return ctx.await(function()
    run:check_abort()
    return pred()
  end)
end

-- Wait for the session's jobs, then return its stats.
local function drain(ctx, run, session)
  await_run(ctx, run, function() return session:outstanding() == 0 end)
  return session:stats()
end

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
function _M.fetch_app_config(ctx, opts)
  if opts and opts.app_config then return opts.app_config end
  local integ, err = ctx.port:get_integration(ctx.settings.integration.identifier)
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
-- which would block an nginx worker).
local function compile_resources(ctx, app)
  local compiled = {}
  for i, resource in ipairs(app.resources) do
    local kind = type(resource) == "table" and resource.kind or nil
    local ok, m, err = pcall(mapping.cached, resource, mapping.options(ctx.settings))
    if not ok then m, err = nil, tostring(m) end
    compiled[i] = { kind = tostring(kind), resource = resource, m = m, err = err }
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

local function new_run(ctx, kind_of_event)
  local r = setmetatable({
    ctx = ctx, id = uuid(), t0 = ctx.clock(),
    event = kind_of_event, errors = {}, kinds = {}, aborted = false,
    block_reasons = {},
  }, Run)
  r.started = iso_at(r.t0)
  return r
end

function Run:check_abort()
  if self.aborted or (self.ctx.should_abort and self.ctx.should_abort(self)) then
    self.aborted = true
    error(ABORTED, 0)
  end
end

function Run:add_error(kind, msg)
  self.errors[#self.errors + 1] = kind and ("kind '%s': %s"):format(kind, msg) or msg
  log.error("%s", self.errors[#self.errors])
end

function Run:block(reason)
  self.block_reasons[#self.block_reasons + 1] = reason
end

-- }====================

-- {==================== full resync ====================

local function report_state(ctx, run, status, extra)
  if run.plan or not ctx.port then return end
  local body = { status = status, intervalInMinuets = ctx.settings.scheduled_resync_interval or json.null,
                 nextResync = json.null }
  if status == "running" then
    body.lastResyncStart = run.started
    body.lastResyncEnd = json.null
  else
    body.lastResyncEnd = iso_now(ctx)
  end
  for k, v in pairs(extra or {}) do body[k] = v end
  local integ, err = ctx.port:update_resync_state(ctx.settings.integration.identifier, body)
  if not integ then
    log.warning("could not report the resync state '%s' to Port: %s", status, tostring(err))
  end
  return integ
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

local function run_hooks(list, name, ...)
  for _, fn in ipairs(list) do
    local ok, err = pcall(fn, ...)
    if not ok then return nil, ("%s hook failed: %s"):format(name, tostring(err)) end
  end
  return true
end

-- Map and offer one batch of a kind; returns nothing, records errors.
local function feed_batch(ctx, run, session, c, slot, batch, stats)
  -- backpressure: don't let more than the session's bound pile up
  if session:busy() then
    await_run(ctx, run, function() return not session:busy() end)
  end
  local rep = session:feed(c.m, slot, batch)
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

local function process_kind(ctx, run, session, c, slot)
  local kind = c.kind
  local stats = { kind = kind, batches = 0, raw = 0, entities = 0, filtered = 0,
                  errors = 0, dropped = 0, misconfigured = {} }
  run.kinds[#run.kinds + 1] = stats
  local t0 = ctx.clock()
  local before = session:stats()
  if not c.m then
    run:add_error(nil, c.err)        -- the message names the kind
    stats.failed = true
    return stats
  end
  local fns = _M.resync_functions(kind)
  if #fns == 0 then
    run:add_error(kind, ("no resync function is registered for kind '%s'"):format(kind))
    stats.failed = true
    return stats
  end
  local errors_before = #run.errors
  for _, fn in ipairs(fns) do
    local ok, err = run_resync_fn(fn, kind, function(batch)
      -- the owned listing must be complete before the first comparison
      if session:owned_state() == "pending" then
        await_run(ctx, run, function() return session:owned_state() ~= "pending" end)
      end
      feed_batch(ctx, run, session, c, slot, batch, stats)
    end, run)
    if not ok then run:add_error(nil, err) end
  end
  if next(stats.misconfigured) then
    local parts = {}
    for path, expr in pairs(stats.misconfigured) do parts[#parts + 1] = ("%s (%s)"):format(path, expr) end
    table.sort(parts)
    log.warning("kind '%s': fields that came out null (misconfigured?): %s", kind, table_concat(parts, ", "))
  end
  session:flush()
  local after = drain(ctx, run, session)
  stats.created = after.created - before.created
  stats.updated = after.updated - before.updated
  stats.unchanged = after.unchanged - before.unchanged
  stats.failed_entities = after.failed - before.failed
  stats.seconds = ctx.clock() - t0
  stats.failed = #run.errors > errors_before
  local rate = stats.seconds > 0 and stats.raw / stats.seconds or 0
  log.info("kind '%s': %d batches, %d objects -> %d entities (%d filtered); created %d, "
    .. "updated %d, unchanged %d, failed %d (%.0f objects/s)%s", kind, stats.batches,
    stats.raw, stats.entities, stats.filtered, stats.created, stats.updated, stats.unchanged,
    stats.failed_entities, rate, run.plan and " [plan]" or "")
  return stats
end

-- Retry the failed upserts once, relation targets first.
local function retry_failures(ctx, run, session)
  local levels, err = session:retry_prepare()
  if not levels then run:add_error(nil, err) return end
  if levels == 0 then return end
  log.info("retrying %d failed upserts in relation order (%d levels)",
    session:stats().retried, levels)
  for level = 1, levels do
    local ok, lerr = session:retry_level(level)
    if not ok then run:add_error(nil, lerr) return end
    drain(ctx, run, session)
  end
end

-- Decide, confirm and delete. Fills run.deletion.
local function reconcile(ctx, run, session, threshold)
  local st = session:stats()
  local count, sample = session:candidates(run.plan and nil or 20)
  local d = { candidates = count, owned = st.owned, threshold = threshold, deleted = 0,
              skipped = false, reasons = {} }
  run.deletion = d
  if #run.errors > 0 then
    run:block(("%d error(s) during the resync: the state is incomplete"):format(#run.errors))
  end
  for _, k in ipairs(run.kinds) do
    if k.dropped > 0 then
      run:block(("kind '%s': %d entities had no identifier or blueprint"):format(k.kind, k.dropped))
    end
  end
  local ostate, oerr = session:owned_state()
  if ostate ~= "ready" then
    run:block(oerr or "the entities this integration owns could not be read")
  end
  if count == 0 then
    d.reasons = run.block_reasons
    d.skipped = #run.block_reasons > 0
    return
  end
  local ratio = st.owned > 0 and count / st.owned or 1
  d.ratio = ratio
  if threshold <= 0 then
    run:block("entityDeletionThreshold is 0: this integration never deletes")
  elseif ratio > threshold then
    run:block(("deleting %d of %d owned entities (%.0f%%) is above entityDeletionThreshold (%.0f%%)")
      :format(count, st.owned, ratio * 100, threshold * 100))
  end
  d.reasons = run.block_reasons
  if #run.block_reasons > 0 then
    d.skipped = true
    log.warning("not deleting %d entities: %s", count, table_concat(run.block_reasons, "; "))
    if run.plan then d.would_delete = sample end
    return
  end
  -- confirm against Port: only what nobody changed since the start
  local ok, err = session:confirm(started_bound(run))
  if not ok then
    d.skipped = true
    run:block(err)
    return
  end
  await_run(ctx, run, function() return session:confirm_state() ~= "pending" end)
  local cstate, cerr = session:confirm_state()
  if cstate ~= "ready" then
    d.skipped = true
    run:block(cerr)
    log.warning("not deleting: %s", cerr)
    return
  end
  local levels, perr = session:delete_prepare()
  if not levels then
    d.skipped = true
    run:block(perr)
    return
  end
  local st2 = session:stats()
  if st2.confirmed < count then
    log.info("%d deletion candidates changed since the resync started; they stay",
      count - st2.confirmed)
  end
  if st2.protected_targets > 0 then
    log.info("%d deletion candidates are relation targets of synced entities; they stay",
      st2.protected_targets)
  end
  if run.plan then
    d.planned = session:doomed()
    d.deleted = #d.planned
    return
  end
  for level = 1, levels do
    local lok, lerr = session:delete_level(level)
    if not lok then run:add_error(nil, lerr) break end
    drain(ctx, run, session)
  end
  local doomed = session:doomed()
  for _, e in ipairs(doomed) do
    if e.outcome == "failed" then
      log.warning("could not delete %s/%s: %s", e.blueprint, e.identifier, e.message or "?")
    end
  end
  d.deleted = session:stats().deleted
end

local function summarize(run, session)
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

local function new_session(ctx, run, o, event_type)
  return core.sync_new(ctx.core_port, {
    merge = o.merge, create_missing = o.create_missing,
    delete_dependents = o.delete_dependents, plan = run.plan,
    event_type = event_type, resync_id = event_type == "resync" and run.id or nil,
    batch_max = ctx.settings.upsert_batch_max_length,
    batch_max_bytes = ctx.settings.upsert_batch_max_bytes,
  })
end

-- Run body(run) protected: an abort or an unexpected error is recorded,
-- never raised; the session (run.session) is closed at the end.
local function guarded(ctx, run, body)
  if ctx.begin_run then ctx.begin_run(run) end
  local ok, err = xpcall(body, function(e)
    if e == ABORTED then return e end
    return traceback(tostring(e), 2)
  end)
  if not ok then
    if err == ABORTED then
      run.aborted = true
      log.warning("%s %s aborted: nothing was deleted", run.event, run.id)
      if run.event == "resync" then pcall(report_state, ctx, run, "aborted") end
    else
      run:add_error(nil, run.event .. " failed: " .. tostring(err))
      if run.event == "resync" then pcall(report_state, ctx, run, "failed") end
    end
  end
  local summary = summarize(run, run.session)
  if run.session then run.session:close() end
  if ctx.end_run then ctx.end_run(run) end
  log.info("%s %s %s: created %d, updated %d, unchanged %d, deleted %d, failed %d%s",
    run.event, run.id, summary.ok and "completed" or (run.aborted and "aborted" or "failed"),
    summary.created, summary.updated, summary.unchanged, summary.deleted, summary.failed,
    #summary.errors > 0 and (" (" .. #summary.errors .. " errors)") or "")
  return summary
end

-- The full resync. opts: {plan=bool, app_config=table (skip the fetch)}.
-- Returns the summary (never raises for expected failures).
function _M.sync_raw_all(ctx, opts)
  opts = opts or {}
  local run = new_run(ctx, "resync")
  run.plan = opts.plan and true or false
  return guarded(ctx, run, function()
    log.info("resync %s started%s", run.id, run.plan and " (plan: nothing is written)" or "")
    local app, aerr = _M.fetch_app_config(ctx, opts)
    if not app then
      run:add_error(nil, aerr)
      report_state(ctx, run, "failed")
      return
    end
    run.running_state = report_state(ctx, run, "running")
    local hok, herr = run_hooks(registry.on_resync_start, "on_resync_start")
    if not hok then
      run:add_error(nil, herr)
      report_state(ctx, run, "failed")
      return
    end
    local session = new_session(ctx, run, app_options(app), "resync")
    run.session = session
    local compiled = compile_resources(ctx, app)
    local slots = {}
    for i, c in ipairs(compiled) do
      if c.m then slots[i] = session:add_slot(c.m) end
    end
    local lok, lerr = session:list_owned()
    if not lok then run:block(lerr) end
    for i, c in ipairs(compiled) do
      process_kind(ctx, run, session, c, slots[i])
    end
    retry_failures(ctx, run, session)
    reconcile(ctx, run, session, threshold_of(ctx, app))
    if #run.errors == 0 then
      local cok, cerr = run_hooks(registry.on_resync_complete, "on_resync_complete")
      if not cok then run:add_error(nil, cerr) end
    end
    report_state(ctx, run, #run.errors == 0 and "completed" or "failed")
  end)
end

-- sync(entities): make the owned entities equal to a ready-made list,
-- with the same change detection, retry and deletion rules.
function _M.sync_entities(ctx, entities, signature, o, threshold, opts)
  local run = new_run(ctx, "sync")
  run.plan = opts.plan and true or false
  return guarded(ctx, run, function()
    local session = new_session(ctx, run, o, opts.event_type or "http_request")
    run.session = session
    local slot = session:add_slot(signature)
    local lok, lerr = session:list_owned()
    if not lok then run:block(lerr) end
    await_run(ctx, run, function() return session:owned_state() ~= "pending" end)
    local stats = { kind = "(entities)", batches = 1, raw = #entities, entities = 0,
                    filtered = 0, errors = 0, dropped = 0, misconfigured = {} }
    run.kinds[1] = stats
    for i, e in ipairs(entities) do
      if type(e) ~= "table" or e.identifier == nil or e.blueprint == nil then
        run:add_error(nil, ("entity %d has no identifier or blueprint"):format(i))
      else
        if session:busy() then
          await_run(ctx, run, function() return not session:busy() end)
        end
        local ok, err = session:offer(slot, e)
        if not ok then run:add_error(nil, err) end
        stats.entities = stats.entities + 1
      end
    end
    session:flush()
    drain(ctx, run, session)
    retry_failures(ctx, run, session)
    reconcile(ctx, run, session, threshold)
  end)
end

-- }====================

return _M
