-- ocean.ops: the live-event operations of the seed — register_raw,
-- unregister_raw, update_raw_diff, register, unregister, update_diff —
-- plus Ocean's sync_raw_results, and sync(entities), on an engine
-- (ocean.engine). This file only checks arguments and orchestrates: the
-- mapping, the folding of writes, the coalesced bulk requests, relation
-- order, retries, the ownership check and the deletes are the engine's
-- live session (src/sync/live_session.c, docs/live-events.md).
--
--   ops.submit(eng, name, ...) -> job   (an ocean.Job; its result is the
--     caller's report) — it reads the mapping, maps in slices of
--     MAP_BUDGET_MS with eng:pause() between two, and queues the writes
--   ops.<name>(eng, ...) -> report      submit, then eng:await(job)
--
-- The report: {ok=, created=, updated=, unchanged=, deleted=, not_owned=,
-- kept=, superseded=, failed=, delete_failed=, errors={...},
-- dropped=, dropped_items={...}, item_errors={...} (DROPPED, ITEM_ERRORS),
-- failures={{blueprint=, identifier=, status=, error=, message=}...},
-- batch={...}} (plan: planned=, planned_delete=). Misuse (not a list,
-- not {before=, after=}) raises.
local json = require "ocean.json"
local log = require "ocean.log"
local mapping = require "ocean.mapping"
local metrics = require "ocean.metrics"
local sync = require "ocean.sync"

local type, ipairs, pairs, tostring, pcall, error, next =
  type, ipairs, pairs, tostring, pcall, error, next

local _M = {
  MAP_BUDGET_MS = 5,         -- ms of C work between two pauses (nginx: a ~20 ms bound)
}

-- {==================== arguments ====================

local function check_list(v, what, level)
  if type(v) ~= "table" or v == json.null then
    error(("%s must be a list, got %s"):format(what, type(v)), level + 1)
  end
end

-- raw: one raw object, a list of them, or one JSON text (array / NDJSON).
local function raw_items(raw, level)
  if type(raw) == "string" then return raw end
  if type(raw) == "table" and raw[1] == nil and next(raw) ~= nil and not json.is_array(raw) then
    return { raw }
  end
  check_list(raw, "raw items", level + 1)
  return raw
end

local function check_diff(diff, name, level)
  if type(diff) ~= "table" then error(name .. ": expected {before=, after=}", level + 1) end
  return diff
end

-- }====================

-- {==================== one operation ====================

-- Also their places in the mapping (1-based; app.resource_places: those
-- of a mapping cut down to some of its resources, as ocean.webhook does).
local function resources_of(app, kind)
  local out, places = {}, {}
  local given = type(app.resource_places) == "table" and app.resource_places or {}
  for i, r in ipairs(type(app.resources) == "table" and app.resources or {}) do
    if type(r) == "table" and r.kind == kind then
      out[#out + 1] = r
      places[#out] = given[i] or i
    end
  end
  return out, places
end

-- A resource whose entities are itemsToParse children of the raw item.
local function has_children(r)
  local p = type(r.port) == "table" and r.port or {}
  local e = p.itemsToParse
  if e == nil then e = p.items_to_parse end
  return e ~= nil and e ~= json.null
end

-- The operation on the engine's live session, with the mapping's options.
local function begin(eng, app, opts)
  opts = opts or {}
  local o = sync.app_options(app or {})
  local live = eng:live_session()
  return live, live:begin { plan = opts.plan, merge = o.merge, create_missing = o.create_missing,
                            delete_dependents = o.delete_dependents, event_type = opts.event_type,
                            seq = opts.seq }
end

-- Items the mapping dropped (no identifier or blueprint), per operation
-- Job: {{index=, reason= ("kind 'k': identifier is null"), kind=,
-- mode=, message= (the mapping's reason alone)}...}; _M.await puts them
-- in the report (dropped, dropped_items, ok false): written nowhere,
-- and, as in a resync, they hold back the operation's deletes.
local DROPPED = setmetatable({}, { __mode = "k" })

-- The mapping's item errors (jq raised for the item: identifier,
-- blueprint, selector...), per operation Job: {{kind=, mode=, index=,
-- message=, text= (the operation's error: its report's errors has it),
-- budget= ("time"/"memory" when the mapping's budget stopped the item,
-- else nil)}...}, and one {kind=, mode=, more=n, text=, budget=} for
-- those past the report's cap (budget: when a listed one was a budget
-- hit); _M.await puts them in the report's item_errors, so that a caller
-- (ocean.webhook) can tell them from the operation's other errors.
local ITEM_ERRORS = setmetatable({}, { __mode = "k" })

-- The item errors, dropped entities of one mapping report, said. Returns
-- the errors plus the dropped items (what holds back deletion).
local function report_items(eng, live, job, kind, index, rep, mode)
  if eng.metrics then
    -- items the mapping's time or memory budget stopped, per kind-index
    metrics.feed_budget_hits(eng.metrics, kind .. "-" .. (index - 1),
      metrics.count_budget_hits(rep.errors))
  end
  local item_errors = ITEM_ERRORS[job] or {}
  ITEM_ERRORS[job] = item_errors
  local any_budget
  for _, e in ipairs(rep.errors) do
    local text = ("kind '%s': item %d: %s"):format(kind, e.index, e.message)
    local budget = metrics.budget_of(e.message)
    any_budget = any_budget or budget
    item_errors[#item_errors + 1] = { kind = kind, mode = mode, index = e.index,
                                      message = e.message, text = text, budget = budget }
    live:error(job, text)
  end
  if rep.error_count > #rep.errors then
    local more = rep.error_count - #rep.errors
    local text = ("kind '%s': ... and %d more item errors"):format(kind, more)
    item_errors[#item_errors + 1] = { kind = kind, mode = mode, more = more, text = text,
                                      budget = any_budget }
    live:error(job, text)
  end
  local dropped = DROPPED[job] or {}
  DROPPED[job] = dropped
  for _, d in ipairs(rep.dropped) do
    log.warning("kind '%s': item %d dropped: %s", kind, d.index, d.reason)
    dropped[#dropped + 1] = { index = d.index, reason = ("kind '%s': %s"):format(kind, d.reason),
                              kind = kind, mode = mode, message = d.reason }
  end
  return rep.error_count + #rep.dropped
end

-- Map raws with every resource of kind into the operation, a slice at a
-- time. Returns the number of errors (dropped items included) and of
-- resources.
local function map_kind(eng, live, job, app, kind, raws, mode)
  local resources, places = resources_of(app, kind)
  local errors = 0
  for i, r in ipairs(resources) do
    -- main's mapping options: env access and the per-item time/memory budget
    local ok, m, err = pcall(mapping.cached, r, mapping.options(eng.settings), eng.mapping_cache)
    if not ok or not m then
      -- the compile error names the kind already (mapping.c); a raised
      -- misuse may not
      live:error(job, mapping.with_kind(kind, tostring(ok and err or m)))
      errors = errors + 1
    else
      local acc, o = {}, { mode = mode, child = has_children(r), parse_all = mode == "upsert",
                           budget_ms = _M.MAP_BUDGET_MS }
      while true do
        local done, merr = live:map(job, m, raws, acc, o)
        if done == nil then error("live session: " .. tostring(merr), 0) end
        if done then break end
        eng:pause()
      end
      errors = errors + report_items(eng, live, job, kind, places[i], acc.report, mode)
    end
  end
  return errors, #resources
end

-- Ready-made entities into the operation, a slice at a time.
local function add_entities(eng, live, job, entities, mode)
  local acc = {}
  while not live:add(job, entities, mode, acc, _M.MAP_BUDGET_MS) do eng:pause() end
end

-- Queue the operation's writes (no_delete: drop its deletes) and give its
-- Job.
local function commit(eng, live, job, no_delete)
  local o = { no_delete = no_delete }
  while true do
    local done, err = live:commit(job, o, _M.MAP_BUDGET_MS)
    if done == nil then error("live session: " .. tostring(err), 0) end
    if done then return job end
    eng:pause()
  end
end

-- An operation that could not even start: its Job is done at once.
local function failed(eng, app, opts, err)
  local live, job = begin(eng, app, opts)
  live:error(job, tostring(err))
  return commit(eng, live, job)
end

-- }====================

-- {==================== the operations ====================

local submit = {}

-- Map and upsert; entities that now fail the selector are deleted if this
-- integration owns them and this operation does not upsert them (as
-- Ocean). Mapping errors: the upserts still happen, the deletes do not.
function submit.register_raw(eng, kind, raw, opts)
  local raws = raw_items(raw, 3)
  local app, err = eng:app_config(opts)
  if not app then return failed(eng, nil, opts, err) end
  local live, job = begin(eng, app, opts)
  local errors, n = map_kind(eng, live, job, app, kind, raws, "upsert")
  if n == 0 then log.warning("register_raw: no resource of kind '%s' in the mapping", tostring(kind)) end
  if errors > 0 then
    local ndrop = #(DROPPED[job] or {})
    local why = {}
    if errors > ndrop then
      why[#why + 1] = (errors - ndrop) == 1 and "1 error" or (errors - ndrop) .. " errors"
    end
    if ndrop > 0 then why[#why + 1] = (ndrop == 1 and "1 item" or ndrop .. " items") .. " dropped" end
    log.warning("register_raw: %s: not deleting entities that fail the selector", table.concat(why, ", "))
  end
  return commit(eng, live, job, errors > 0)
end

-- Map and delete what passes, if owned (itemsToParse children only when
-- nothing else relates to them).
function submit.unregister_raw(eng, kind, raw, opts)
  local raws = raw_items(raw, 3)
  local app, err = eng:app_config(opts)
  if not app then return failed(eng, nil, opts, err) end
  local live, job = begin(eng, app, opts)
  map_kind(eng, live, job, app, kind, raws, "delete")
  return commit(eng, live, job)
end

-- Ocean's sync_raw_results: register_raw(updated) and
-- unregister_raw(deleted) as one operation (upserts first). Any mapping
-- error: nothing is deleted.
function submit.sync_raw_results(eng, kind, results, opts)
  check_diff(results, "sync_raw_results", 3)
  local updated = raw_items(results.updated or {}, 3)
  local deleted = raw_items(results.deleted or {}, 3)
  local app, err = eng:app_config(opts)
  if not app then return failed(eng, nil, opts, err) end
  local live, job = begin(eng, app, opts)
  local e1 = map_kind(eng, live, job, app, kind, updated, "upsert")
  local e2 = map_kind(eng, live, job, app, kind, deleted, "delete")
  if e1 + e2 > 0 then log.warning("sync_raw_results: %d error(s), not deleting", e1 + e2) end
  return commit(eng, live, job, e1 + e2 > 0)
end

-- Upsert what is new or changed in `after`, delete (if owned) what
-- `before` had and `after` has not. Errors: nothing is deleted.
function submit.update_raw_diff(eng, kind, diff, opts)
  check_diff(diff, "update_raw_diff", 3)
  local before, after = raw_items(diff.before or {}, 3), raw_items(diff.after or {}, 3)
  local app, err = eng:app_config(opts)
  if not app then return failed(eng, nil, opts, err) end
  local live, job = begin(eng, app, opts)
  local e1 = map_kind(eng, live, job, app, kind, before, "before")
  local e2 = map_kind(eng, live, job, app, kind, after, "after")
  if e1 + e2 > 0 then log.warning("update: %d error(s), not deleting", e1 + e2) end
  return commit(eng, live, job, e1 + e2 > 0)
end

-- Ready-made entities: the mapping only gives the options (Ocean's
-- defaults when it cannot be read).
function submit.update_diff(eng, diff, opts)
  check_diff(diff, "update_diff", 3)
  local before, after = diff.before or {}, diff.after or {}
  check_list(before, "before", 3)
  check_list(after, "after", 3)
  local live, job = begin(eng, (eng:app_config(opts)), opts)
  add_entities(eng, live, job, before, "before")
  add_entities(eng, live, job, after, "after")
  return commit(eng, live, job)
end

function submit.register(eng, entities, opts)
  check_list(entities, "entities", 3)
  local live, job = begin(eng, (eng:app_config(opts)), opts)
  add_entities(eng, live, job, entities, "upsert")
  return commit(eng, live, job)
end

function submit.unregister(eng, entities, opts)
  check_list(entities, "entities", 3)
  local live, job = begin(eng, (eng:app_config(opts)), opts)
  add_entities(eng, live, job, entities, "delete")
  return commit(eng, live, job)
end

_M.names = {}
for name in pairs(submit) do _M.names[#_M.names + 1] = name end
table.sort(_M.names)

-- Submit operation `name` to eng's live session: its Job.
function _M.submit(eng, name, ...)
  local fn = submit[name]
  if not fn then error(("submit: unknown operation '%s'"):format(tostring(name)), 2) end
  return fn(eng, ...)
end

-- The session's own log lines (kept children, failures...), said.
local LOG = { info = log.info, warning = log.warning, debug = log.debug }
local function say(live)
  for _, l in ipairs(live:logs()) do LOG[l.level]("%s", l.message) end
end

-- Wait for an operation's Job: its report (a failed one when the Job
-- could not finish: the engine was closed).
function _M.await(eng, job)
  local rep, why = eng:await(job)
  if eng.live then pcall(say, eng.live) end
  local dropped, item_errors = DROPPED[job] or {}, ITEM_ERRORS[job] or {}
  DROPPED[job], ITEM_ERRORS[job] = nil, nil
  if type(rep) ~= "table" then
    rep = { ok = false, created = 0, updated = 0, deleted = 0, failed = 0,
            errors = { "the live operation did not finish: " .. tostring(why) }, failures = {} }
  end
  rep.dropped, rep.dropped_items = #dropped, json.array(dropped)
  rep.item_errors = json.array(item_errors)
  if #dropped > 0 then rep.ok = false end
  return rep
end

for name, fn in pairs(submit) do
  _M[name] = function(eng, ...)
    return _M.await(eng, fn(eng, ...))
  end
end

-- Make Port's owned entities equal to `entities`: not a live operation
-- (a listing, the threshold, reconciliation), so a sync session of its
-- own (ocean.sync). An entity whose upsert failed is never a deletion
-- candidate.
function _M.sync(eng, entities, opts)
  check_list(entities, "entities", 2)
  return sync.sync_entities(eng, entities, eng:app_config(opts) or {}, opts or {})
end

-- }====================

return _M
