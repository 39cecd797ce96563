-- ocean.emulator.entities: validating and writing entities (Port's
-- upsert and delete semantics) on top of the store.
--
-- upsert(ctx, raw, index) -> result | nil, failure
--   ctx = {store, blueprint, bpdef, merge, upsert, create_missing,
--          validation_only, datasource, actor, ts_ms, ts_iso}
--   result = {identifier, index, created, entity}
--   failure = {identifier, index, statusCode, error, message}
-- delete(store, bp, ids, delete_dependents) -> deleted, failures
local util = require "ocean.emulator.util"
local search = require "ocean.emulator.search"
local storemod = require "ocean.emulator.store"

local type, pairs, ipairs, tostring, next = type, pairs, ipairs, tostring, next
local format = string.format
local null = util.null
local is_array, is_object = util.is_array, util.is_object

local _M = {}

-- Port's identifier alphabet: letters, digits and @_.+:\/=-
local IDENT = "^[%w@_%.%+:\\/=%-]+$"

-- The keys of t in byte order (so that errors and created entities do
-- not depend on hash order).
local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

local function fail(status, code, message, identifier)
  return { statusCode = status, error = code, message = message,
           identifier = identifier }
end
_M.fail = fail

-- {==================== identifiers ====================

local function shown(id)
  if type(id) == "string" or util.json_type(id) == "number" then return tostring(id) end
  return "unknown"
end

-- The identifier of raw entity `raw`: a string, or a search query that
-- must match exactly one entity of the blueprint.
local function resolve_identifier(ctx, raw_id)
  if type(raw_id) == "string" then
    if raw_id == "" or not raw_id:match(IDENT) then
      return nil, fail(422, "invalid_identifier", format(
        "identifier '%s' must be a non-empty string of letters, digits and @_.+:\\/=-",
        raw_id), raw_id)
    end
    return raw_id
  end
  if is_object(raw_id) and raw_id.rules ~= nil then
    local found, err = search.run(ctx.store, raw_id, { blueprint = ctx.blueprint })
    if not found then
      return nil, fail(422, "invalid_search_query", err, "unknown")
    end
    if #found == 0 then
      return nil, fail(404, "not_found",
        "no entity matches the search identifier", "unknown")
    end
    if #found > 1 then
      return nil, fail(422, "ambiguous_search_identifier", format(
        "the search identifier matches %d entities", #found), "unknown")
    end
    return found[1].identifier
  end
  return nil, fail(422, "invalid_identifier",
    "identifier must be a non-empty string or a search query", shown(raw_id))
end

-- }====================

-- {==================== fields ====================

local SCHEMA_TYPES = { string = true, number = true, boolean = true,
                       object = true, array = true }

local function check_properties(ctx, props, id)
  if props == nil or props == null then return {} end
  if not is_object(props) then
    return nil, fail(422, "invalid_properties", "properties must be an object", id)
  end
  local schema = ctx.bpdef.schema
  local defs = is_object(schema) and is_object(schema.properties) and schema.properties or {}
  for _, name in ipairs(sorted_keys(props)) do
    local v, def = props[name], defs[name]
    local want = is_object(def) and def.type
    if v ~= null and SCHEMA_TYPES[want] then
      local got = util.json_type(v)
      if got ~= want then
        return nil, fail(422, "invalid_property_type", format(
          "property '%s' must be of type %s, got %s", name, want, got), id)
      end
    end
  end
  return props
end

local function check_meta(raw, id)
  if raw.title ~= nil and raw.title ~= null and type(raw.title) ~= "string" then
    return fail(422, "invalid_title", "title must be a string", id)
  end
  if raw.icon ~= nil and raw.icon ~= null and type(raw.icon) ~= "string" then
    return fail(422, "invalid_icon", "icon must be a string", id)
  end
  return nil
end

-- Port's teams are entities of its system blueprint `_team` (users and
-- teams as blueprints); a team search query is resolved there, as a
-- search relation is in its target blueprint.
local TEAM_BLUEPRINT = "_team"
_M.TEAM_BLUEPRINT = TEAM_BLUEPRINT

local function is_query(v)
  return is_object(v) and v.rules ~= nil
end

-- The identifiers of the teams a search query matches (at least one).
local function team_query(ctx, q, id)
  local found, err = search.run(ctx.store, q, { blueprint = TEAM_BLUEPRINT })
  if not found then
    return nil, fail(422, "invalid_search_query", "team: " .. err, id)
  end
  if #found == 0 then
    return nil, fail(404, "not_found", "no team matches the team search query", id)
  end
  local ids = {}
  for i, e in ipairs(found) do ids[i] = e.identifier end
  return ids
end

-- An entity's `team` as Port stores it: a string or a list of strings as
-- given; a search query `{combinator, rules}` (alone or as an element of
-- the list) becomes the identifiers of the `_team` entities it matches,
-- in the list (each team once, in order). Returns the value (nil: not
-- sent) | nil, failure.
local function resolve_team(ctx, team, id)
  if team == nil or team == null or type(team) == "string" then return team end
  local bad = fail(422, "invalid_team",
    "team must be a string, a list of strings or a search query", id)
  if is_query(team) then
    local ids, err = team_query(ctx, team, id)
    if not ids then return nil, err end
    return util.array(ids)
  end
  if not is_array(team) and not (type(team) == "table" and next(team) == nil) then
    return nil, bad
  end
  local out, seen = {}, {}
  local function add(t)
    if not seen[t] then
      seen[t] = true
      out[#out + 1] = t
    end
  end
  for _, t in ipairs(team) do
    if type(t) == "string" then
      add(t)
    elseif is_query(t) then
      local ids, err = team_query(ctx, t, id)
      if not ids then return nil, err end
      for _, x in ipairs(ids) do add(x) end
    else
      return nil, bad
    end
  end
  return util.array(out)
end

-- }====================

-- {==================== relations ====================

-- The identifiers a relation value designates in blueprint `target`
-- (a list), noting targets to create in ctx.missing.
local function resolve_target(ctx, target, v, id, self_id)
  if type(v) == "string" then
    if ctx.store:get(target, v) or (target == ctx.blueprint and v == self_id) then
      return { v }
    end
    if ctx.create_missing then
      if not ctx.store.blueprints[target] then
        return nil, fail(404, "blueprint_not_found", format(
          "blueprint '%s' of related entity '%s' not found", target, v), id)
      end
      ctx.missing[#ctx.missing + 1] = { target, v }
      return { v }
    end
    return nil, fail(404, "not_found", format(
      "related entity '%s' of blueprint '%s' not found", v, target), id)
  end
  if is_object(v) and v.rules ~= nil then
    local found, err = search.run(ctx.store, v, { blueprint = target })
    if not found then return nil, fail(422, "invalid_search_query", err, id) end
    if #found == 0 then
      return nil, fail(404, "not_found", format(
        "no entity of blueprint '%s' matches the relation's search query", target), id)
    end
    local ids = {}
    for i, e in ipairs(found) do ids[i] = e.identifier end
    return ids
  end
  return nil, fail(422, "invalid_relation",
    "a relation value must be an identifier or a search query", id)
end

local function resolve_relation(ctx, name, def, v, id)
  if v == null then return null end
  if def.many then
    if not is_array(v) and not (type(v) == "table" and next(v) == nil) then
      return nil, fail(422, "invalid_relation", format(
        "relation '%s' is many: its value must be an array", name), id)
    end
    local out = {}
    for _, item in ipairs(v) do
      local ids, err = resolve_target(ctx, def.target, item, id, id)
      if not ids then return nil, err end
      for _, x in ipairs(ids) do out[#out + 1] = x end
    end
    return util.array(out)
  end
  if is_array(v) then
    return nil, fail(422, "invalid_relation", format(
      "relation '%s' is single: its value must not be an array", name), id)
  end
  local ids, err = resolve_target(ctx, def.target, v, id, id)
  if not ids then return nil, err end
  if #ids > 1 then
    return nil, fail(422, "invalid_relation", format(
      "relation '%s' is single but its search query matches %d entities",
      name, #ids), id)
  end
  return ids[1]
end

local function check_relations(ctx, rels, id)
  if rels == nil or rels == null then return {} end
  if not is_object(rels) then
    return nil, fail(422, "invalid_relations", "relations must be an object", id)
  end
  local defs = is_object(ctx.bpdef.relations) and ctx.bpdef.relations or {}
  local out = {}
  for _, name in ipairs(sorted_keys(rels)) do
    local v, def = rels[name], defs[name]
    if not is_object(def) or type(def.target) ~= "string" then
      return nil, fail(422, "relation_not_found", format(
        "relation '%s' is not defined in blueprint '%s'", name, ctx.blueprint), id)
    end
    local r, err = resolve_relation(ctx, name, def, v, id)
    if r == nil then return nil, err end
    out[name] = r
  end
  return out
end

-- }====================

-- {==================== building and writing ====================

local function build(ctx, raw, id, props, rels, existing, team)
  local e
  if existing and ctx.merge then
    e = { title = existing.title, icon = existing.icon, team = existing.team,
          properties = util.copy(existing.properties or {}),
          relations = util.copy(existing.relations or {}) }
    for k, v in pairs(props) do e.properties[k] = v end
    for k, v in pairs(rels) do e.relations[k] = v end
  else
    e = { properties = props, relations = rels }
  end
  e.identifier, e.blueprint = id, ctx.blueprint
  for _, f in ipairs({ "title", "icon" }) do
    if raw[f] ~= nil then e[f] = raw[f] end
  end
  if raw.team ~= nil then e.team = team end
  return e
end

local function check_required(ctx, e)
  local schema = ctx.bpdef.schema
  local req = is_object(schema) and schema.required
  for _, name in ipairs(is_array(req) and req or {}) do
    local v = e.properties[name]
    if v == nil or v == null then
      return fail(422, "missing_required_property", format(
        "required property '%s' is missing", name), e.identifier)
    end
  end
  local defs = is_object(ctx.bpdef.relations) and ctx.bpdef.relations or {}
  for _, name in ipairs(sorted_keys(defs)) do
    local def, v = defs[name], e.relations[name]
    if is_object(def) and def.required and (v == nil or v == null) then
      return fail(422, "missing_required_relation", format(
        "required relation '%s' is missing", name), e.identifier)
    end
  end
  return nil
end

local function stamp(ctx, e, existing)
  e.datasource = ctx.datasource
  e.createdAt = existing and existing.createdAt or ctx.ts_iso
  e.createdBy = existing and existing.createdBy or ctx.actor
  e.updatedAt, e.updatedBy, e._ts = ctx.ts_iso, ctx.actor, ctx.ts_ms
  return e
end

local function create_missing(ctx)
  for _, m in ipairs(ctx.missing) do
    local bp, id = m[1], m[2]
    if not ctx.store:get(bp, id) then
      ctx.store:put(stamp(ctx, { identifier = id, blueprint = bp,
        properties = {}, relations = {} }, nil))
    end
  end
end

-- Validate raw entity `raw` (index: 0-based position in the request) and
-- write it unless ctx.validation_only.
function _M.upsert(ctx, raw, index)
  local function failed(f)
    f.index = index
    return nil, f
  end
  if not is_object(raw) then
    return failed(fail(422, "invalid_entity", "an entity must be an object", "unknown"))
  end
  local id, err = resolve_identifier(ctx, raw.identifier)
  if not id then return failed(err) end
  if raw.blueprint ~= nil and raw.blueprint ~= ctx.blueprint then
    return failed(fail(422, "blueprint_mismatch", format(
      "entity blueprint '%s' differs from '%s'", tostring(raw.blueprint),
      ctx.blueprint), id))
  end
  local merr = check_meta(raw, id)
  if merr then return failed(merr) end
  local team, terr = resolve_team(ctx, raw.team, id)
  if terr then return failed(terr) end
  local props, perr = check_properties(ctx, raw.properties, id)
  if not props then return failed(perr) end
  ctx.missing = {}
  local rels, rerr = check_relations(ctx, raw.relations, id)
  if not rels then return failed(rerr) end
  local existing = ctx.store:get(ctx.blueprint, id)
  if existing and not ctx.upsert then
    return failed(fail(409, "entity_exists", format(
      "entity '%s' already exists (upsert=false)", id), id))
  end
  local e = build(ctx, raw, id, props, rels, existing, team)
  local rqerr = check_required(ctx, e)
  if rqerr then return failed(rqerr) end
  if not ctx.validation_only then
    create_missing(ctx)
    ctx.store:put(stamp(ctx, e, existing))
  end
  return { identifier = id, index = index, created = existing == nil, entity = e }
end

-- }====================

-- {==================== deleting ====================

-- Delete identifiers `ids` of blueprint bp. With delete_dependents, every
-- entity whose relations point at a deleted one goes too (recursively);
-- without, an entity that keeps a dependent outside the deleted set is
-- refused. Returns the deleted identifiers (of bp, request order) and
-- the failures.
function _M.delete(store, bp, ids, delete_dependents)
  local failures, doomed, order = {}, {}, {}
  for _, id in ipairs(ids) do
    local e = store:get(bp, id)
    if not e then
      failures[#failures + 1] = fail(404, "not_found", format(
        "entity '%s' of blueprint '%s' not found", id, bp), id)
    elseif not doomed[e] then
      doomed[e] = true
      order[#order + 1] = e
    end
  end
  local victims = {}                      -- deletion order
  for k, e in ipairs(order) do victims[k] = e end
  if delete_dependents then
    local i = 1
    while victims[i] do
      for _, d in ipairs(store:dependents(victims[i])) do
        if not doomed[d] then
          doomed[d] = true
          victims[#victims + 1] = d
        end
      end
      i = i + 1
    end
  else
    local changed = true
    while changed do
      changed = false
      for _, e in ipairs(order) do
        for _, d in ipairs(doomed[e] and store:dependents(e) or {}) do
          if not doomed[d] then
            doomed[e] = nil
            changed = true
            failures[#failures + 1] = fail(409, "has_dependents", format(
              "entity '%s' has dependent entities (e.g. '%s' of blueprint '%s')",
              e.identifier, d.identifier, d.blueprint), e.identifier)
            break
          end
        end
      end
    end
  end
  local deleted = {}
  for _, e in ipairs(order) do
    if doomed[e] then deleted[#deleted + 1] = e.identifier end
  end
  for _, e in ipairs(victims) do
    if doomed[e] then store:delete(e.blueprint, e.identifier) end
  end
  return deleted, failures
end

-- }====================

_M.key = storemod.key
return _M
