-- ocean.port: a Port client with synchronous-looking methods over the C
-- client (ocean.core port_new); each call waits through ocean.runtime, so
-- inside nginx it yields instead of blocking.
--
--   local port = assert(require("ocean.port").new{
--     base_url =, client_id =, client_secret =, integration_type =,
--     integration_identifier =, integration_version =,
--     loop = (an ocean.core loop to share) | concurrency = 5,
--     await = function(job) (how to wait: an engine's await, so that
--       its servers are served meanwhile; default ocean.runtime's),
--     verify_tls = true, timeout_ms =, retry = {base_delay_ms=,
--     max_total_wait_ms=, ...}, bulk_max_entities=, bulk_max_bytes=,
--     delete_batch=, list_limit=, auth_failure_ttl_ms= })
--   (nil, err when its own loop cannot be made; bad options raise)
--
-- Failures return nil, err: err is a table {status=, message=, code=,
-- body=, trace_id=, method=, path=} whose tostring is the message. The
-- bulk calls (upsert_entities, delete_entities) always return their
-- report, whose per-entity results carry the failures (and report.error
-- the request's, if any). Misuse (wrong argument types, missing
-- configuration) raises. See docs/errors.md.
--
-- Entity options (opts): upsert, merge, create_missing_related_entities,
-- validation_only (upserts), delete_dependents (deletes; default true as
-- Ocean's port app config), event_type and resync_id (Ocean's
-- ocean_info_* query parameters).
local core = require "ocean.core"
local runtime = require "ocean.runtime"

local type, error, setmetatable, pcall, tostring, ipairs =
  type, error, setmetatable, pcall, tostring, ipairs
local format = string.format

local _M = {}

local Port = {}
Port.__index = Port

local CFG_KEYS = {
  "base_url", "client_id", "client_secret", "integration_type",
  "integration_identifier", "integration_version", "verify_tls", "timeout_ms",
  "retry", "bulk_max_entities", "bulk_max_bytes", "delete_batch",
  "list_limit", "auth_failure_ttl_ms",
}

-- Percent-encode a path segment (everything but RFC 3986 unreserved).
local function esc(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c)
    return format("%%%02X", c:byte())
  end))
end
_M.escape = esc

function _M.new(opts)
  if type(opts) ~= "table" then
    error("ocean.port.new: expected a table of options", 2)
  end
  local cfg = {}
  for _, k in ipairs(CFG_KEYS) do cfg[k] = opts[k] end
  local loop = opts.loop
  local own = loop == nil
  if own then
    local ok, l, lerr = pcall(core.loop_new, { concurrency = opts.concurrency })
    if not ok then error("ocean.port.new: " .. tostring(l), 2) end
    if not l then return nil, "ocean.port.new: " .. lerr end
    loop = l
  end
  local ok, p = pcall(core.port_new, loop, cfg)
  if not ok then
    if own then loop:close() end
    error("ocean.port.new: " .. tostring(p), 2)
  end
  return setmetatable({ loop = loop, core = p, own_loop = own, await = opts.await }, Port)
end

-- The job's result, or a result carrying the error when the job could
-- not finish (the client was closed while it waited).
local function await(self, job)
  local r, why
  if self.await then r, why = self.await(job) else r, why = runtime.await(self.loop, job) end
  if r then return r end
  local msg = why == "stopped" and "Port call stopped: the integration is stopping"
    or "Port call " .. tostring(why) .. " (the client was closed)"
  return { status = 0, results = {}, error = setmetatable({ status = 0,
    message = msg }, core.port_error_mt) }
end

-- Start a job with core method `name`. Its misuse errors (bad entities,
-- bad query...) are raised without this file's position, which would
-- only mislead.
local function start(self, name, ...)
  local ok, job = pcall(self.core[name], self.core, ...)
  if not ok then
    error((tostring(job):gsub("^[^\n]-:%d+: ", "")), 0)
  end
  return job
end

local function run(self, name, ...)
  return await(self, start(self, name, ...))
end

-- A bulk report with one result per item, also when the job never
-- finished (each item then failed with the job's error).
local function bulk(r, n)
  for i = #r.results + 1, n do
    r.results[i] = { ok = false, status = 0, message = tostring(r.error) }
  end
  return r
end

-- A JSON call: body, status | nil, err.
function Port:call(t)
  if type(t) ~= "table" then error("port:call: expected a table", 2) end
  local r = run(self, "call", t)
  if r.error then return nil, r.error end
  return r.body, r.status
end

local function member(self, t, key)
  local body, err = self:call(t)
  if not body then return nil, err end
  return type(body) == "table" and body[key] or body
end

local function check_id(id, what, level)
  if type(id) ~= "string" or id == "" then
    error(format("port:%s: expected a non-empty string identifier", what), level + 1)
  end
end

local function check_table(t, what, level)
  if type(t) ~= "table" then
    error(format("port:%s: expected a table, got %s", what, type(t)), level + 1)
  end
end

local function event_of(opts)
  if opts and (opts.event_type or opts.resync_id) then
    return { type = opts.event_type, resync_id = opts.resync_id }
  end
  return nil
end

-- The current access token (for tests; never print it).
function Port:token()
  local r = run(self, "token")
  if r.error then return nil, r.error end
  return r.token
end

function Port:get_integration(id)
  check_id(id, "get_integration", 2)
  return member(self, { method = "GET", path = "/integration/" .. esc(id) },
                "integration")
end

function Port:create_integration(body)
  check_table(body, "create_integration", 2)
  return member(self, { method = "POST", path = "/integration", body = body },
                "integration")
end

function Port:patch_integration(id, body)
  check_id(id, "patch_integration", 2)
  check_table(body, "patch_integration", 2)
  return member(self, { method = "PATCH", path = "/integration/" .. esc(id),
                        body = body }, "integration")
end

function Port:update_resync_state(id, body)
  check_id(id, "update_resync_state", 2)
  check_table(body, "update_resync_state", 2)
  return member(self, { method = "PATCH", body = body,
                        path = "/integration/" .. esc(id) .. "/resync-state" },
                "integration")
end

-- The pending resync request, or false when Port has none.
function Port:get_resync_request(id)
  check_id(id, "get_resync_request", 2)
  local req, err = member(self, { method = "GET",
    path = "/integration/" .. esc(id) .. "/resync-request" }, "request")
  if req == nil and err then return nil, err end
  if type(req) ~= "table" then return false end
  return req
end

function Port:create_blueprint(bp)
  check_table(bp, "create_blueprint", 2)
  return member(self, { method = "POST", path = "/blueprints", body = bp },
                "blueprint")
end

function Port:get_blueprint(id)
  check_id(id, "get_blueprint", 2)
  return member(self, { method = "GET", path = "/blueprints/" .. esc(id) },
                "blueprint")
end

-- Bulk upsert: {results = {{ok=, created=, identifier=, status=, error=,
-- message=, unresolved=}...}, requests = n, failed_requests = n, error =}
-- (one result per entity, in the given order).
function Port:upsert_entities(bp, entities, opts)
  check_id(bp, "upsert_entities", 2)
  check_table(entities, "upsert_entities", 2)
  local o = opts or {}
  return bulk(run(self, "upsert", bp, entities, {
    upsert = o.upsert, merge = o.merge,
    create_missing_related_entities = o.create_missing_related_entities,
    validation_only = o.validation_only, event = event_of(o) }), #entities)
end

local function upsert_query(o)
  local function flag(v, def)
    if v == nil then v = def end
    return v and "true" or "false"
  end
  return {
    upsert = flag(o.upsert, true), merge = flag(o.merge, true),
    create_missing_related_entities = flag(o.create_missing_related_entities, true),
    validation_only = flag(o.validation_only, false),
  }
end

-- Single upsert (POST /v1/blueprints/{bp}/entities): Port's entity, or
-- nil, err.
function Port:upsert_entity(entity, opts)
  check_table(entity, "upsert_entity", 2)
  check_id(entity.blueprint, "upsert_entity (entity.blueprint)", 2)
  local o = opts or {}
  return member(self, { method = "POST", body = entity,
    path = "/blueprints/" .. esc(entity.blueprint) .. "/entities",
    query = upsert_query(o), exporter = true, retryable = true,
    event = event_of(o) }, "entity")
end

-- Bulk delete: {results = {{ok=, deleted=, status=, message=}...},
-- requests = n, failed_requests = n, error =}.
function Port:delete_entities(bp, ids, opts)
  check_id(bp, "delete_entities", 2)
  check_table(ids, "delete_entities", 2)
  local o = opts or {}
  local dd = o.delete_dependents
  if dd == nil then dd = true end
  return bulk(run(self, "delete", bp, ids, {
    delete_dependents = dd, event = event_of(o) }), #ids)
end

-- Single delete: true; false, err when Port has no such entity (404);
-- nil, err on failure.
function Port:delete_entity(bp, id, opts)
  check_id(bp, "delete_entity", 2)
  check_id(id, "delete_entity", 2)
  local o = opts or {}
  local dd = o.delete_dependents
  if dd == nil then dd = true end
  local body, err = self:call{ method = "DELETE",
    path = "/blueprints/" .. esc(bp) .. "/entities/" .. esc(id),
    query = { delete_dependents = dd and "true" or "false" },
    exporter = true, event = event_of(o) }
  if body ~= nil then return true end
  if err.status == 404 then return false, err end
  return nil, err
end

-- Every entity this integration owns (Lua tables; fine for tests and
-- small catalogs; the sync engine reads the listing in C).
function Port:list_owned(opts)
  if opts ~= nil then check_table(opts, "list_owned", 2) end
  local r = run(self, "list_owned", opts)
  if r.error then return nil, r.error end
  return r.entities, r.requests
end

-- POST /v1/entities/search (ownership rules appended when the query has
-- rules): the entities, or nil, err. include: list of fields, or nil.
function Port:search(query, include)
  if type(query) ~= "table" and type(query) ~= "string" then
    error("port:search: expected a query table or JSON text", 2)
  end
  if include ~= nil then check_table(include, "search", 2) end
  local r = run(self, "search", query, include)
  if r.error then return nil, r.error end
  return r.body and r.body.entities, r.status
end

function Port:stats()
  local s = self.core:stats()
  local l = self.loop:stats()
  s.peak_active, s.retries = l.peak_active, l.retries
  return s
end

-- Close the client (and its loop when it made one). Idempotent.
function Port:close()
  self.core:close()
  if self.own_loop then self.loop:close() end
end

_M.Port = Port
return _M
