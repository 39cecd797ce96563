-- ocean.ops: the live-event operations of the seed — register_raw,
-- unregister_raw, update_raw_diff, register, unregister, update_diff —
-- and sync(entities), on an engine (ocean.engine).
--
-- Safety, beyond Ocean: nothing is deleted that this integration does not
-- own at Port (one search per 50 entities checks ownership first, also
-- for unregister/unregister_raw, which Ocean deletes blindly); entities
-- with search identifiers are never deleted; an upsert that failed never
-- makes anything else a deletion candidate. Upserts go relation targets
-- first, deletions sources first, each level in bulk requests.
-- Every operation takes opts.plan: compute and report, write nothing.
--
-- Each returns a report: {ok=, created=, updated=, failed=, deleted=,
-- not_owned=, delete_failed=, dropped=, dropped_items={{index=, reason=}},
-- errors={...}, ...}; misuse (not a list) raises. An item the mapping
-- dropped (no identifier or blueprint) is written nowhere: it is counted
-- in `dropped`, makes ok false and, as in a resync, holds back deletion.
local core = require "ocean.core"
local json = require "ocean.json"
local log = require "ocean.log"
local mapping = require "ocean.mapping"
local sync = require "ocean.sync"

local type, pairs, ipairs, tostring = type, pairs, ipairs, tostring

local _M = {}

local SEARCH_CHUNK = 50

-- {==================== an operation ====================

-- What every step of one operation needs: the engine, the call's options
-- (plan, event type) and the mapping's options (merge, create_missing,
-- delete_dependents).
local function new_op(eng, opts, app)
  opts = opts or {}
  return { eng = eng, port = eng.port, plan = opts.plan,
           event = { type = opts.event_type or "http_request" },
           o = sync.app_options(app or {}) }
end

-- }====================

-- {==================== helpers ====================

local function key_of(e)
  return core.entity_key(e)
end

local function is_search_identifier(e)
  return type(e.identifier) == "table" and e.identifier ~= json.null
end

local function resources_of(app, kind)
  local out = {}
  for _, r in ipairs(app.resources) do
    if type(r) == "table" and r.kind == kind then out[#out + 1] = r end
  end
  return out
end

-- Split entities into relation levels (targets first) grouped by
-- blueprint: { {bp = {entities...}, ...}, ... } in level order.
local function levels_of(entities, reverse)
  if #entities == 0 then return {} end
  local order, level = core.relation_order(entities)
  local max = 0
  for i = 1, #level do if level[i] > max then max = level[i] end end
  local levels = {}
  for i = 1, #order do
    local lv = reverse and (max - level[i] + 1) or level[i]
    local e = entities[order[i]]
    levels[lv] = levels[lv] or { order = {}, by_bp = {} }
    local L = levels[lv]
    local bp = tostring(e.blueprint)
    if not L.by_bp[bp] then
      L.by_bp[bp] = {}
      L.order[#L.order + 1] = bp
    end
    table.insert(L.by_bp[bp], e)
  end
  local out = {}
  for i = 1, max do if levels[i] then out[#out + 1] = levels[i] end end
  return out
end

-- Each blueprint's list of each level, in order.
local function each_bulk(levels, fn)
  for _, L in ipairs(levels) do
    for _, bp in ipairs(L.order) do fn(bp, L.by_bp[bp]) end
  end
end

-- Upsert entities (relation targets first). Returns a report:
-- {created=, updated=, failed=, entities = {ok entities}, failures = {...}}
local function upsert_all(op, entities)
  local rep = { created = 0, updated = 0, failed = 0, entities = {}, failures = {}, requests = 0 }
  if op.plan then
    rep.planned = {}
    for _, e in ipairs(entities) do rep.planned[#rep.planned + 1] = e end
    return rep
  end
  local o = op.o
  each_bulk(levels_of(entities), function(bp, list)
    -- a bulk call always reports per entity (docs/errors.md)
    local res = op.port:upsert_entities(bp, list, {
      merge = o.merge, create_missing_related_entities = o.create_missing,
      event_type = op.event.type })
    rep.requests = rep.requests + (res.requests or 0)
    for i, r in ipairs(res.results) do
      local e = list[i]
      if r.ok then
        if r.created then rep.created = rep.created + 1 else rep.updated = rep.updated + 1 end
        rep.entities[#rep.entities + 1] = e
      else
        rep.failed = rep.failed + 1
        rep.failures[#rep.failures + 1] = { blueprint = bp, identifier = e.identifier,
          status = r.status, message = r.message or r.error }
      end
    end
  end)
  for _, f in ipairs(rep.failures) do
    log.warning("upsert of %s/%s failed: %s", f.blueprint, tostring(f.identifier), tostring(f.message))
  end
  return rep
end

-- The subset of entities (with stable keys) that this integration owns at
-- Port: search by identifier and blueprint, 50 at a time; the Port client
-- adds the ownership rules. Returns set key -> Port entity, or nil, err.
local function owned_subset(op, entities)
  local owned = {}
  local keyed = {}
  for _, e in ipairs(entities) do
    if not is_search_identifier(e) and key_of(e) then keyed[#keyed + 1] = e end
  end
  for i = 1, #keyed, SEARCH_CHUNK do
    local groups = json.array {}
    for k = i, math.min(i + SEARCH_CHUNK - 1, #keyed) do
      local e = keyed[k]
      groups[#groups + 1] = { combinator = "and", rules = json.array {
        { property = "$identifier", operator = "=", value = tostring(e.identifier) },
        { property = "$blueprint", operator = "=", value = e.blueprint } } }
    end
    local found, err = op.port:search({ combinator = "and", rules = json.array {
      { combinator = "or", rules = groups } } }, { "identifier", "blueprint", "relations" })
    if not found then return nil, err end
    for _, pe in ipairs(found) do
      local k = key_of(pe)
      if k then owned[k] = pe end
    end
  end
  return owned
end

-- Port's copies of the entities this integration owns (their relations
-- order the deletes); the others are counted and logged.
local function doomed_of(entities, owned, rep)
  local doomed, seen = {}, {}
  for _, e in ipairs(entities) do
    local k = not is_search_identifier(e) and key_of(e)
    if k and owned[k] and not seen[k] then
      seen[k] = true
      doomed[#doomed + 1] = owned[k]
    elseif not (k and seen[k]) then
      rep.not_owned = rep.not_owned + 1
      log.info("not deleting %s/%s: this integration does not own it at Port",
        tostring(e.blueprint), type(e.identifier) == "table" and "(search identifier)"
          or tostring(e.identifier))
    end
  end
  return doomed
end

-- Delete entities this integration owns (sources first). Entities it
-- doesn't own, and search identifiers, are skipped with a log line.
local function delete_owned(op, entities, rep)
  rep.deleted = rep.deleted or 0
  rep.not_owned = rep.not_owned or 0
  rep.delete_failed = rep.delete_failed or 0
  if #entities == 0 then return rep end
  local owned, err = owned_subset(op, entities)
  if not owned then
    rep.errors = rep.errors or {}
    rep.errors[#rep.errors + 1] = "could not check ownership before deleting: " .. tostring(err)
    log.warning("not deleting %d entities: %s", #entities, rep.errors[#rep.errors])
    return rep
  end
  local doomed = doomed_of(entities, owned, rep)
  if op.plan then
    rep.planned_delete = doomed
    return rep
  end
  -- sources before targets, also with delete_dependents: a target deleted
  -- first would take its dependents along and their own deletes would
  -- come back "not deleted"
  each_bulk(levels_of(doomed, true), function(bp, list)
    local ids = {}
    for _, e in ipairs(list) do ids[#ids + 1] = tostring(e.identifier) end
    local res = op.port:delete_entities(bp, ids, {
      delete_dependents = op.o.delete_dependents, event_type = op.event.type })
    for i, r in ipairs(res.results) do
      if r.deleted then rep.deleted = rep.deleted + 1
      else
        rep.delete_failed = rep.delete_failed + 1
        log.warning("could not delete %s/%s: %s", bp, ids[i], tostring(r.message or "not deleted"))
      end
    end
  end)
  return rep
end

-- Map raw items with every resource of a kind. Returns
-- {passed = {...}, failed = {...}, errors = {...}} (errors as strings).
local function map_kind(op, app, kind, raws, parse_all)
  local out = { passed = {}, failed = {}, errors = {}, resources = 0, dropped = {} }
  local resources = resources_of(app, kind)
  out.resources = #resources
  for _, r in ipairs(resources) do
    local ok, res, err = pcall(op.eng.parse_items, op.eng, r, raws,
      mapping.options(op.eng.settings, { parse_all = parse_all, exact_numbers = true }))
    if not ok then res, err = nil, tostring(res) end
    if not res then
      out.errors[#out.errors + 1] = ("kind '%s': %s"):format(kind, tostring(err))
    else
      for _, e in ipairs(res.errors) do
        out.errors[#out.errors + 1] = ("kind '%s': item %d: %s"):format(kind, e.index, e.message)
      end
      for _, d in ipairs(res.dropped or {}) do
        log.warning("kind '%s': item %d dropped: %s", kind, d.index, d.reason)
        out.dropped[#out.dropped + 1] = { index = d.index, reason = ("kind '%s': %s"):format(kind, d.reason) }
      end
      for _, e in ipairs(res.passed) do out.passed[#out.passed + 1] = e end
      for _, e in ipairs(res.failed) do out.failed[#out.failed + 1] = e end
    end
  end
  return out
end

-- "1 error", "3 errors"
local function plural(n, word)
  return ("%d %s%s"):format(n, word, n == 1 and "" or "s")
end

local function check_list(v, what, level)
  if type(v) ~= "table" or v == json.null then
    error(("%s must be a list, got %s"):format(what, type(v)), level + 1)
  end
end

-- raw: one raw object or a list of them.
local function as_list(raw)
  if type(raw) == "table" and raw[1] == nil and next(raw) ~= nil and not json.is_array(raw) then
    return { raw }
  end
  return raw
end

local function finish(rep, errors, dropped)
  rep.errors = rep.errors or {}
  for _, e in ipairs(errors or {}) do rep.errors[#rep.errors + 1] = e end
  rep.dropped_items = json.array(dropped or {})
  rep.dropped = #rep.dropped_items
  rep.ok = #rep.errors == 0 and (rep.failed or 0) == 0 and (rep.delete_failed or 0) == 0
    and rep.dropped == 0
  return rep
end

-- }====================

-- {==================== raw operations ====================

-- The operation and the raw items mapped with every resource of the
-- kind; nil, err when the mapping can't be read.
local function map_raw(eng, kind, raw, opts, parse_all)
  local raws = as_list(raw)
  check_list(raws, "raw items", 3)
  local app, err = eng:app_config(opts)
  if not app then return nil, err end
  local op = new_op(eng, opts, app)
  return op, map_kind(op, app, kind, raws, parse_all)
end

-- Map and upsert; entities that now fail the selector are deleted if this
-- integration owns them (as Ocean). Errors: upserts of what passed still
-- happen, deletion does not.
function _M.register_raw(eng, kind, raw, opts)
  local op, m = map_raw(eng, kind, raw, opts, true)
  if not op then return finish({}, { m }) end
  if m.resources == 0 then
    log.warning("register_raw: no resource of kind '%s' in the mapping", tostring(kind))
  end
  local rep = upsert_all(op, m.passed)
  if #m.errors == 0 and #m.dropped == 0 then
    local upserted = {}
    for _, e in ipairs(m.passed) do
      local k = key_of(e)
      if k then upserted[k] = true end
    end
    local gone = {}
    for _, e in ipairs(m.failed) do
      local k = key_of(e)
      if k and not upserted[k] then gone[#gone + 1] = e end
    end
    delete_owned(op, gone, rep)
  else
    local why = {}
    if #m.errors > 0 then why[#why + 1] = plural(#m.errors, "error") end
    if #m.dropped > 0 then why[#why + 1] = plural(#m.dropped, "item") .. " dropped" end
    log.warning("register_raw: %s: not deleting entities that fail the selector", table.concat(why, ", "))
  end
  return finish(rep, m.errors, m.dropped)
end

-- Map and delete (only what this integration owns).
function _M.unregister_raw(eng, kind, raw, opts)
  local op, m = map_raw(eng, kind, raw, opts, false)
  if not op then return finish({}, { m }) end
  local rep = { created = 0, updated = 0, failed = 0 }
  delete_owned(op, m.passed, rep)
  return finish(rep, m.errors, m.dropped)
end

-- Apply the difference between two entity lists: upsert what is new or
-- changed in `after`, delete (if owned) what `before` had and `after`
-- doesn't. Nothing outside the two lists is touched.
local function apply_diff(op, before, after, errors, dropped)
  dropped = dropped or {}
  local before_by = {}
  for _, e in ipairs(before) do
    local k = key_of(e)
    if k then before_by[k] = e end
  end
  local after_keys, changed = {}, {}
  for _, e in ipairs(after) do
    local k = key_of(e)
    if k then after_keys[k] = true end
    local prev = k and before_by[k]
    if not prev or core.content_hash(prev) ~= core.content_hash(e) then
      changed[#changed + 1] = e
    end
  end
  local rep = upsert_all(op, changed)
  rep.unchanged = #after - #changed
  local gone = {}
  for k, e in pairs(before_by) do
    if not after_keys[k] then gone[#gone + 1] = e end
  end
  table.sort(gone, function(a, b) return key_of(a) < key_of(b) end)
  if #errors == 0 and #dropped == 0 then
    delete_owned(op, gone, rep)
  elseif #gone > 0 then
    local why = {}
    if #errors > 0 then why[#why + 1] = plural(#errors, "error") end
    if #dropped > 0 then why[#why + 1] = plural(#dropped, "item") .. " dropped" end
    log.warning("update: %s: not deleting %s", table.concat(why, ", "),
      #gone == 1 and "1 entity" or (#gone .. " entities"))
  end
  return finish(rep, errors, dropped)
end

local function check_diff(diff, name)
  if type(diff) ~= "table" then error(name .. ": expected {before=, after=}", 3) end
  local before, after = diff.before or {}, diff.after or {}
  check_list(before, "before", 3)
  check_list(after, "after", 3)
  return before, after
end

function _M.update_raw_diff(eng, kind, diff, opts)
  local before, after = check_diff(diff, "update_raw_diff")
  local app, err = eng:app_config(opts)
  if not app then return finish({}, { err }) end
  local op = new_op(eng, opts, app)
  local mb = map_kind(op, app, kind, before, false)
  local ma = map_kind(op, app, kind, after, false)
  local errors = {}
  for _, e in ipairs(mb.errors) do errors[#errors + 1] = e end
  for _, e in ipairs(ma.errors) do errors[#errors + 1] = e end
  local dropped = {}
  for _, d in ipairs(mb.dropped) do dropped[#dropped + 1] = d end
  for _, d in ipairs(ma.dropped) do dropped[#dropped + 1] = d end
  return apply_diff(op, mb.passed, ma.passed, errors, dropped)
end

-- }====================

-- {==================== entity operations ====================

-- The operation with the mapping's options, or Ocean's defaults when the
-- mapping can't be read (ready-made entities need no mapping).
local function entity_op(eng, opts)
  return new_op(eng, opts, (eng:app_config(opts)))
end

function _M.update_diff(eng, diff, opts)
  local before, after = check_diff(diff, "update_diff")
  return apply_diff(entity_op(eng, opts), before, after, {})
end

function _M.register(eng, entities, opts)
  check_list(entities, "entities", 2)
  return finish(upsert_all(entity_op(eng, opts), entities))
end

function _M.unregister(eng, entities, opts)
  check_list(entities, "entities", 2)
  return finish(delete_owned(entity_op(eng, opts), entities, { created = 0, updated = 0, failed = 0 }))
end

-- Make Port's owned entities equal to `entities`: upsert what differs,
-- delete owned entities not in the list (with the threshold and the
-- confirmation of a full resync). An entity whose upsert failed is never
-- a deletion candidate.
function _M.sync(eng, entities, opts)
  check_list(entities, "entities", 2)
  return sync.sync_entities(eng, entities, eng:app_config(opts) or {}, opts or {})
end

-- }====================

return _M
