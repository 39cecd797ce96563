-- ocean.emulator.api: the Port REST API routes (/v1/...) the emulator
-- serves. Authentication and fault injection run before these handlers
-- (ocean.emulator); each handler only sees authorised requests, with the
-- writer in req.ctx.actor (client id) and req.headers["user-agent"].
local json = require "ocean.json"
local util = require "ocean.emulator.util"
local search = require "ocean.emulator.search"
local storemod = require "ocean.emulator.store"
local entities = require "ocean.emulator.entities"

local type, pairs, ipairs, tonumber, next = type, pairs, ipairs, tonumber, next
local format, floor, min = string.format, math.floor, math.min
local null, array = json.null, json.array
local is_object, is_array = util.is_object, util.is_array
local view = storemod.view

local _M = {}

local MAX_BULK_UPSERT = 20
local MAX_BULK_DELETE = 100

local function ok(status, t)
  t.ok = true
  return status, t
end

local function err(status, code, message)
  return status, { ok = false, error = code, message = message }
end

local function not_found(what)
  return err(404, "not_found", what .. " not found")
end

-- The JSON body, which must be an object (400/422 otherwise).
local body_object = util.body_object

local function list_of(v)
  return is_array(v) or (type(v) == "table" and next(v) == nil)
end

-- {==================== auth ====================

local function access_token(emu, req)
  local b = req:json()
  local o = emu.opts
  if not is_object(b) or b.clientId ~= o.client_id or b.clientSecret ~= o.client_secret then
    return err(401, "invalid_credentials", "invalid client id or client secret")
  end
  return 200, emu:issue_token(b.clientId)
end

-- }====================

-- {==================== integrations ====================

local INTEGRATION_READONLY = { identifier = true, createdAt = true }

local function get_integration(emu, req)
  local it = emu.store.integrations[req.params.id]
  if not it then return not_found("integration") end
  return ok(200, { integration = it })
end

local function create_integration(emu, req)
  local b = body_object(req)
  local id = b.installationId
  if type(id) ~= "string" or id == "" then
    return err(422, "invalid_request", "installationId must be a non-empty string")
  end
  if emu.store.integrations[id] then
    return err(409, "integration_exists", format("integration '%s' already exists", id))
  end
  local _, iso = emu.store:write_time()
  local it = { identifier = id, createdAt = iso, updatedAt = iso }
  for k, v in pairs(b) do
    if not INTEGRATION_READONLY[k] then it[k] = v end
  end
  emu.store:put_integration(it)
  return ok(200, { integration = it })
end

-- PATCH /integration/{id}[/config|/resync-state]: merge(it, body) edits.
local function patch_integration(merge)
  return function(emu, req)
    local it = emu.store.integrations[req.params.id]
    if not it then return not_found("integration") end
    local b = body_object(req)
    local copy = util.copy(it)
    local _, iso = emu.store:write_time()
    local perr = merge(copy, b, iso)
    if perr then return err(422, "invalid_request", perr) end
    copy.updatedAt = iso
    emu.store:put_integration(copy)
    return ok(200, { integration = copy })
  end
end

local function merge_fields(it, b)
  for k, v in pairs(b) do
    if not INTEGRATION_READONLY[k] then it[k] = v end
  end
end

local function merge_config(it, b)
  if b.config == nil then return "the body must have 'config'" end
  it.config = b.config
end

local function merge_resync_state(it, b, iso)
  local st = util.copy(b)
  st.updatedAt = iso
  it.resyncState = st
end

local function delete_integration(emu, req)
  if not emu.store.integrations[req.params.id] then return not_found("integration") end
  emu.store:delete_integration(req.params.id)
  return ok(200, {})
end

-- Ocean reads the organisation's feature flags; the emulator has none.
local function organization()
  return ok(200, { organization = { id = "org_emulator", name = "Port emulator",
                                    featureFlags = array() } })
end

local function resync_request(emu, req)
  if not emu.store.integrations[req.params.id] then return not_found("integration") end
  return ok(200, { request = emu.store.resync_requests[req.params.id] or null })
end

-- }====================

-- {==================== blueprints ====================

-- A normalised blueprint from body b, or nil, message.
local function normalize_blueprint(b)
  if type(b.identifier) ~= "string" or not b.identifier:match("^[%w@_%.%+:\\/=%-]+$") then
    return nil, "identifier must be a non-empty string"
  end
  local schema = b.schema
  if schema == nil or schema == null then schema = {} end
  if not is_object(schema) then return nil, "schema must be an object" end
  schema = util.copy(schema)
  if schema.properties == nil then schema.properties = {} end
  if not is_object(schema.properties) then return nil, "schema.properties must be an object" end
  if schema.required == nil then schema.required = array() end
  if not list_of(schema.required) then return nil, "schema.required must be an array" end
  local rels = b.relations
  if rels == nil or rels == null then rels = {} end
  if not is_object(rels) then return nil, "relations must be an object" end
  for name, def in pairs(rels) do
    if not is_object(def) or type(def.target) ~= "string" then
      return nil, format("relation '%s' needs a target blueprint", name)
    end
  end
  local bp = util.copy(b)
  bp.schema, bp.relations = schema, rels
  return bp
end

local function get_blueprint(emu, req)
  local bp = emu.store.blueprints[req.params.id]
  if not bp then return not_found("blueprint") end
  return ok(200, { blueprint = bp })
end

local function save_blueprint(emu, b, existing)
  local bp, msg = normalize_blueprint(b)
  if not bp then return err(422, "invalid_blueprint", msg) end
  local _, iso = emu.store:write_time()
  bp.createdAt = existing and existing.createdAt or iso
  bp.updatedAt = iso
  emu.store:put_blueprint(bp)
  return ok(existing and 200 or 201, { blueprint = bp })
end

local function create_blueprint(emu, req)
  local b = body_object(req)
  if type(b.identifier) == "string" and emu.store.blueprints[b.identifier] then
    return err(409, "blueprint_exists", format("blueprint '%s' already exists", b.identifier))
  end
  return save_blueprint(emu, b, nil)
end

local function patch_blueprint(emu, req)
  local old = emu.store.blueprints[req.params.id]
  if not old then return not_found("blueprint") end
  local b = util.copy(old)
  for k, v in pairs(body_object(req)) do b[k] = v end
  b.identifier = old.identifier
  return save_blueprint(emu, b, old)
end

local function put_blueprint(emu, req)
  local old = emu.store.blueprints[req.params.id]
  local b = body_object(req)
  b.identifier = req.params.id
  return save_blueprint(emu, b, old)
end

local function delete_blueprint(emu, req)
  local id = req.params.id
  if not emu.store.blueprints[id] then return not_found("blueprint") end
  if emu.store.by_bp[id] then
    return err(409, "has_entities", format("blueprint '%s' still has entities", id))
  end
  emu.store:delete_blueprint(id)
  return ok(200, {})
end

local function delete_all_entities(emu, req)
  local id = req.params.id
  if not emu.store.blueprints[id] then return not_found("blueprint") end
  local ids = {}
  for _, e in ipairs(emu.store:entities(id)) do ids[#ids + 1] = e.identifier end
  entities.delete(emu.store, id, ids, true)
  if req:query_bool("delete_blueprint", false) then emu.store:delete_blueprint(id) end
  return ok(200, {})
end

-- }====================

-- {==================== entity writes ====================

local function write_ctx(emu, req, bp)
  local ms, iso = emu.store:write_time()
  return {
    store = emu.store, blueprint = bp, bpdef = emu.store.blueprints[bp],
    upsert = req:query_bool("upsert", false),
    merge = req:query_bool("merge", false),
    create_missing = req:query_bool("create_missing_related_entities", false),
    validation_only = req:query_bool("validation_only", false),
    datasource = req.headers["user-agent"] or "", actor = emu:actor(req),
    ts_ms = ms, ts_iso = iso,
  }
end

local function bulk_upsert(emu, req)
  local b = body_object(req)
  local list = b.entities
  if not list_of(list) then
    return err(422, "invalid_request", "the body must be {\"entities\": [...]}")
  end
  if #list > MAX_BULK_UPSERT then
    return err(422, "too_many_entities", format(
      "a bulk upsert takes at most %d entities, got %d", MAX_BULK_UPSERT, #list))
  end
  local bp = req.params.bp
  local ctx = write_ctx(emu, req, bp)
  local done, failures = array(), array()
  for i, raw in ipairs(list) do
    local res, f
    if not ctx.bpdef then
      f = entities.fail(404, "blueprint_not_found", format("blueprint '%s' not found", bp),
        is_object(raw) and type(raw.identifier) == "string" and raw.identifier or "unknown")
      f.index = i - 1
    else
      res, f = entities.upsert(ctx, raw, i - 1)
    end
    if res then
      done[#done + 1] = { identifier = res.identifier, index = res.index, created = res.created }
    else
      failures[#failures + 1] = f
    end
  end
  return ok(#failures > 0 and 207 or 200, { entities = done, errors = failures })
end

local function single_upsert(emu, req)
  local raw = body_object(req)
  local bp = req.params.bp
  local ctx = write_ctx(emu, req, bp)
  if not ctx.bpdef then
    return err(404, "blueprint_not_found", format("blueprint '%s' not found", bp))
  end
  local res, f = entities.upsert(ctx, raw, 0)
  if not res then return err(f.statusCode, f.error, f.message) end
  local v = view(res.entity)
  if ctx.validation_only then v.datasource = ctx.datasource end
  return ok(res.created and 201 or 200, { entity = v })
end

local function check_ids(list)
  if not list_of(list) then return "the body must be {\"entities\": [identifiers]}" end
  for i, id in ipairs(list) do
    if type(id) ~= "string" then
      return format("entities[%d] must be an identifier (a string)", i - 1)
    end
  end
  return nil
end

local function bulk_delete(emu, req)
  local b = body_object(req)
  local cerr = check_ids(b.entities)
  if cerr then return err(422, "invalid_request", cerr) end
  if #b.entities > MAX_BULK_DELETE then
    return err(422, "too_many_entities", format(
      "a bulk delete takes at most %d identifiers, got %d", MAX_BULK_DELETE, #b.entities))
  end
  local bp = req.params.bp
  if not emu.store.blueprints[bp] then
    return err(404, "blueprint_not_found", format("blueprint '%s' not found", bp))
  end
  local deleted, failures = entities.delete(emu.store, bp, b.entities,
    req:query_bool("delete_dependents", false))
  return ok(#failures > 0 and 207 or 200,
    { deletedEntities = array(deleted), errors = array(failures) })
end

local function delete_one(emu, req)
  local bp, id = req.params.bp, req.params.id
  if not emu.store:get(bp, id) then return not_found("entity") end
  local deleted, failures = entities.delete(emu.store, bp, { id },
    req:query_bool("delete_dependents", false))
  if #deleted == 0 then
    return err(failures[1].statusCode, failures[1].error, failures[1].message)
  end
  return ok(200, {})
end

-- }====================

-- {==================== entity reads ====================

local function get_entity(emu, req)
  local e = emu.store:get(req.params.bp, req.params.id)
  if not e then return not_found("entity") end
  return ok(200, { entity = view(e) })
end

local function list_entities(emu, req)
  local out = array()
  for i, e in ipairs(emu.store:entities(req.params.bp)) do out[i] = view(e) end
  return ok(200, { entities = out })
end

local function run_search(emu, req, opts)
  local q = body_object(req)
  local found, serr = search.run(emu.store, q, opts)
  if not found then return err(400, "invalid_search_query", serr) end
  local include = req:query_list("include")
  local out = array()
  for i, e in ipairs(found) do out[i] = search.project(view(e), include) end
  return ok(200, { entities = out })
end

local function search_all(emu, req)
  return run_search(emu, req, nil)
end

local function search_blueprint(emu, req)
  return run_search(emu, req, { blueprint = req.params.bp })
end

-- Cursors are opaque to clients: the creation number of the last entity
-- of the previous page, in hex.
local function decode_cursor(c)
  if c == nil or c == null then return 0 end
  return type(c) == "string" and tonumber(c, 16) or nil
end

local function optional_string(b, name)
  local v = b[name]
  if v == nil or v == null then return "" end
  return type(v) == "string" and v or nil
end

local function datasource_entities(emu, req)
  local b = body_object(req)
  local prefix, suffix = optional_string(b, "datasource_prefix"), optional_string(b, "datasource_suffix")
  if not prefix or not suffix then
    return err(422, "invalid_request", "datasource_prefix and datasource_suffix must be strings")
  end
  local max = emu.opts.page_limit
  local limit = b.limit
  if limit == nil or limit == null then limit = max end
  if type(limit) ~= "number" or limit < 1 then
    return err(422, "invalid_request", "limit must be a positive number")
  end
  limit = min(floor(limit), max)
  local from = decode_cursor(b.from)
  if not from then return err(422, "invalid_request", "invalid 'from' cursor") end
  local before
  if b.before ~= nil and b.before ~= null then
    before = util.parse_iso(b.before)
    if not before then
      return err(422, "invalid_request", "'before' must be an ISO-8601 date-time")
    end
  end
  local page, next_cursor = array(), null
  for _, e in ipairs(emu.store:by_datasource(prefix, suffix)) do
    if e._oid > from and (not before or e._ts < before) then
      if #page == limit then
        next_cursor = format("%x", page[#page]._oid)
        break
      end
      page[#page + 1] = e
    end
  end
  for i, e in ipairs(page) do page[i] = view(e) end
  return ok(200, { entities = page, next = next_cursor })
end

-- }====================

-- Install the routes on srv; handlers are called as fn(emu, req).
function _M.install(srv, emu)
  local function r(method, pattern, fn)
    srv:route(method, pattern, function(req) return fn(emu, req) end)
  end
  r("POST", "/v1/auth/access_token", access_token)
  r("GET", "/v1/integration/:id", get_integration)
  r("POST", "/v1/integration", create_integration)
  r("PATCH", "/v1/integration/:id", patch_integration(merge_fields))
  r("PATCH", "/v1/integration/:id/config", patch_integration(merge_config))
  r("PATCH", "/v1/integration/:id/resync-state", patch_integration(merge_resync_state))
  r("GET", "/v1/integration/:id/resync-request", resync_request)
  r("DELETE", "/v1/integration/:id", delete_integration)
  r("GET", "/v1/organization", organization)
  r("POST", "/v1/blueprints/entities/datasource-entities", datasource_entities)
  r("POST", "/v1/entities/search", search_all)
  r("POST", "/v1/blueprints", create_blueprint)
  r("GET", "/v1/blueprints/:id", get_blueprint)
  r("PATCH", "/v1/blueprints/:id", patch_blueprint)
  r("PUT", "/v1/blueprints/:id", put_blueprint)
  r("DELETE", "/v1/blueprints/:id", delete_blueprint)
  r("DELETE", "/v1/blueprints/:id/all-entities", delete_all_entities)
  r("POST", "/v1/blueprints/:bp/entities/bulk", bulk_upsert)
  r("POST", "/v1/blueprints/:bp/entities/search", search_blueprint)
  r("POST", "/v1/blueprints/:bp/entities", single_upsert)
  r("GET", "/v1/blueprints/:bp/entities", list_entities)
  r("POST", "/v1/blueprints/:bp/bulk/entities/delete", bulk_delete)
  r("GET", "/v1/blueprints/:bp/entities/*id", get_entity)
  r("DELETE", "/v1/blueprints/:bp/entities/*id", delete_one)
end

_M.MAX_BULK_UPSERT = MAX_BULK_UPSERT
_M.MAX_BULK_DELETE = MAX_BULK_DELETE
return _M
