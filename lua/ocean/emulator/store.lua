-- ocean.emulator.store: the emulated Port organisation — blueprints,
-- entities, integrations, resync requests — with the indexes the API
-- needs, and its persistence.
--
-- Entities are Lua tables keyed by (blueprint, identifier):
--   {identifier, blueprint, title, icon, team, properties, relations,
--    datasource, createdAt, createdBy, updatedAt, updatedBy,
--    _ts (updatedAt in ms), _oid (creation order), _targets (relation
--    target keys "bp\0id")}
-- Indexes: by blueprint (by_bp[bp][id]), by datasource (by_ds[ds] = set
-- of entities) and by relation target (refs[key] = set of entities whose
-- relations point at key), so no request scans the whole catalog.
--
-- Persistence (when a data file is given): every mutation appends one
-- JSON line to <data>.journal; Store:commit() writes them (before the
-- response that acknowledges them is sent), and Store:snapshot() rewrites
-- <data> atomically (temp file + rename) and empties the journal. Loading
-- reads the snapshot, then replays the journal. A killed emulator (even
-- SIGKILL) therefore loses nothing it acknowledged.
local json = require "ocean.json"
local util = require "ocean.emulator.util"

local pairs, ipairs, type, next, tostring = pairs, ipairs, type, next, tostring
local setmetatable, sort, concat = setmetatable, table.sort, table.concat
local io_open, os_rename, os_remove = io.open, os.rename, os.remove
local null = json.null

local _M = {}

local Store = {}
Store.__index = Store

local FORMAT = "ocean-port-emulator/1"
local JOURNAL_MAX = 8 * 1024 * 1024      -- bytes before a snapshot is forced
local IDLE_SNAPSHOT_MS = 250

local function key(bp, id)
  return bp .. "\0" .. id
end
_M.key = key

-- {==================== entity views ====================

-- The public JSON form of an entity (what the API returns).
function _M.view(e)
  return {
    identifier = e.identifier, blueprint = e.blueprint, title = e.title,
    icon = e.icon, team = e.team, properties = e.properties,
    relations = e.relations, datasource = e.datasource,
    createdAt = e.createdAt, createdBy = e.createdBy,
    updatedAt = e.updatedAt, updatedBy = e.updatedBy,
  }
end
local view = _M.view

-- The relation target keys of entity e under blueprint definition bpdef.
local function targets_of(e, bpdef)
  local out = {}
  local defs = bpdef and bpdef.relations
  if type(defs) ~= "table" or type(e.relations) ~= "table" then return out end
  for name, value in pairs(e.relations) do
    local def = defs[name]
    local target = type(def) == "table" and def.target
    if type(target) == "string" then
      if type(value) == "string" then
        out[#out + 1] = key(target, value)
      elseif type(value) == "table" then
        for _, v in ipairs(value) do
          if type(v) == "string" then out[#out + 1] = key(target, v) end
        end
      end
    end
  end
  return out
end

-- }====================

-- {==================== indexes ====================

local function set_add(index, k, e)
  local set = index[k]
  if not set then
    set = {}
    index[k] = set
  end
  set[e] = true
end

local function set_del(index, k, e)
  local set = index[k]
  if set then
    set[e] = nil
    if next(set) == nil then index[k] = nil end
  end
end

function Store:_index(e)
  set_add(self.by_ds, e.datasource or "", e)
  e._targets = targets_of(e, self.blueprints[e.blueprint])
  for _, k in ipairs(e._targets) do set_add(self.refs, k, e) end
end

function Store:_unindex(e)
  set_del(self.by_ds, e.datasource or "", e)
  for _, k in ipairs(e._targets or {}) do set_del(self.refs, k, e) end
end

-- }====================

function Store:clear()
  self.blueprints = {}
  self.integrations = {}
  self.resync_requests = {}
  self.by_bp = {}
  self.by_ds = {}
  self.refs = {}
  self.count = 0
  self.oid = 0
end

-- {==================== clock ====================

-- The time stamp of a write: now, but strictly after the previous write
-- (one per request, so `before` filters are exact). Returns ms, iso.
function Store:write_time()
  local ms = util.now_ms()
  if ms <= self.last_ms then ms = self.last_ms + 1 end
  self.last_ms = ms
  return ms, util.iso(ms)
end

-- }====================

-- {==================== entities ====================

function Store:get(bp, id)
  local m = self.by_bp[bp]
  return m and m[id]
end

-- Insert or replace an entity (a table in the internal form).
function Store:put(e)
  local m = self.by_bp[e.blueprint]
  if not m then
    m = {}
    self.by_bp[e.blueprint] = m
  end
  local old = m[e.identifier]
  if old then
    self:_unindex(old)
    e._oid = old._oid
  else
    self.oid = self.oid + 1
    e._oid = self.oid
    self.count = self.count + 1
  end
  e._ts = e._ts or util.parse_iso(e.updatedAt) or 0
  if e._ts > self.last_ms then self.last_ms = e._ts end
  m[e.identifier] = e
  self:_index(e)
  if self.path then self:_journal{ op = "entity", entity = view(e) } end
  return e
end

function Store:delete(bp, id)
  local m = self.by_bp[bp]
  local e = m and m[id]
  if not e then return nil end
  m[id] = nil
  if next(m) == nil then self.by_bp[bp] = nil end
  self:_unindex(e)
  self.count = self.count - 1
  self:_journal{ op = "delete", blueprint = bp, identifier = id }
  return e
end

-- Entities whose relations point at e (a list, creation order).
function Store:dependents(e)
  local set = self.refs[key(e.blueprint, e.identifier)]
  local out = {}
  if set then
    for src in pairs(set) do out[#out + 1] = src end
    sort(out, function(a, b) return a._oid < b._oid end)
  end
  return out
end

local function by_oid(a, b) return a._oid < b._oid end

-- Every entity of blueprint bp (or of all blueprints), creation order.
function Store:entities(bp)
  local out = {}
  local function add(m)
    for _, e in pairs(m) do out[#out + 1] = e end
  end
  if bp then
    if self.by_bp[bp] then add(self.by_bp[bp]) end
  else
    for _, m in pairs(self.by_bp) do add(m) end
  end
  sort(out, by_oid)
  return out
end

-- Entities whose datasource starts with prefix and ends with suffix,
-- creation order.
function Store:by_datasource(prefix, suffix)
  local out = {}
  for ds, set in pairs(self.by_ds) do
    if (prefix == "" or ds:sub(1, #prefix) == prefix)
       and (suffix == "" or (#ds >= #suffix and ds:sub(-#suffix) == suffix)) then
      for e in pairs(set) do out[#out + 1] = e end
    end
  end
  sort(out, by_oid)
  return out
end

-- }====================

-- {==================== blueprints, integrations ====================

function Store:put_blueprint(bp)
  self.blueprints[bp.identifier] = bp
  -- relation targets may have changed: reindex this blueprint's entities
  for _, e in pairs(self.by_bp[bp.identifier] or {}) do
    self:_unindex(e)
    self:_index(e)
  end
  self:_journal{ op = "blueprint", blueprint = bp }
end

function Store:delete_blueprint(id)
  self.blueprints[id] = nil
  self:_journal{ op = "delete_blueprint", identifier = id }
end

function Store:put_integration(it)
  self.integrations[it.identifier] = it
  self:_journal{ op = "integration", integration = it }
end

function Store:delete_integration(id)
  self.integrations[id] = nil
  self.resync_requests[id] = nil
  self:_journal{ op = "delete_integration", identifier = id }
end

function Store:put_resync_request(integration, req)
  self.resync_requests[integration] = req
  self:_journal{ op = "resync_request", integration = integration,
    request = req }
end

function Store:reset()
  self:clear()
  self:_journal{ op = "reset" }
end

-- }====================

-- {==================== persistence ====================

function Store:_journal(rec)
  if self.path and not self.replaying then
    self.jbuf[#self.jbuf + 1] = assert(json.encode(rec))
  end
end

-- Write the mutations made since the last commit to the journal.
-- Returns true, or nil, err.
function Store:commit()
  if #self.jbuf == 0 then return true end
  local text = concat(self.jbuf, "\n") .. "\n"
  self.jbuf = {}
  if not self.jf then
    local f, err = io_open(self.path .. ".journal", "ab")
    if not f then return nil, err end
    self.jf = f
  end
  local ok, err = self.jf:write(text)
  if ok then ok, err = self.jf:flush() end
  if not ok then return nil, "journal: " .. tostring(err) end
  self.jbytes = self.jbytes + #text
  self.last_commit = util.monotonic_ms()
  return true
end

local function snapshot_table(self)
  local ents = {}
  for i, e in ipairs(self:entities()) do ents[i] = view(e) end
  return {
    format = FORMAT, clock = self.last_ms,
    blueprints = self.blueprints, integrations = self.integrations,
    resyncRequests = self.resync_requests, entities = json.array(ents),
  }
end

-- Rewrite the data file atomically and empty the journal.
function Store:snapshot()
  if not self.path then return true end
  local ok, err = self:commit()
  if not ok then return nil, err end
  local text, eerr = json.encode(snapshot_table(self))
  if not text then return nil, eerr end
  local tmp = self.path .. ".tmp"
  local f, oerr = io_open(tmp, "wb")
  if not f then return nil, oerr end
  ok, err = f:write(text)
  f:close()
  if not ok then
    os_remove(tmp)
    return nil, err
  end
  ok, err = os_rename(tmp, self.path)
  if not ok then return nil, err end
  if self.jf then self.jf:close() end
  self.jf = io_open(self.path .. ".journal", "wb")   -- truncate
  self.jbytes = 0
  return true
end

-- Snapshot when the journal is large, or when idle after writes.
function Store:maybe_snapshot(idle)
  if not self.path or self.jbytes == 0 then return true end
  if self.jbytes > JOURNAL_MAX
     or (idle and util.monotonic_ms() - self.last_commit >= IDLE_SNAPSHOT_MS) then
    return self:snapshot()
  end
  return true
end

local function entity_from_view(v)
  local e = {}
  for k, val in pairs(v) do e[k] = val end
  e.properties = e.properties or {}
  e.relations = e.relations or {}
  return e
end

local function apply(self, rec)
  local op = rec.op
  if op == "entity" then
    self:put(entity_from_view(rec.entity))
  elseif op == "delete" then
    self:delete(rec.blueprint, rec.identifier)
  elseif op == "blueprint" then
    self:put_blueprint(rec.blueprint)
  elseif op == "delete_blueprint" then
    self:delete_blueprint(rec.identifier)
  elseif op == "integration" then
    self:put_integration(rec.integration)
  elseif op == "delete_integration" then
    self:delete_integration(rec.identifier)
  elseif op == "resync_request" then
    self:put_resync_request(rec.integration, rec.request)
  elseif op == "reset" then
    self:clear()
  end
end

local function read_file(path)
  local f = io_open(path, "rb")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  return text
end

local function load_snapshot(self, text)
  local snap, err = util.decode(text)
  if snap == nil then return nil, "not an emulator data file: " .. err end
  if type(snap) ~= "table" or snap.format ~= FORMAT then
    return nil, 'not an emulator data file (no "format": "' .. FORMAT .. '")'
  end
  if type(snap.clock) == "number" and snap.clock > self.last_ms then
    self.last_ms = snap.clock
  end
  for _, bp in pairs(snap.blueprints or {}) do self:put_blueprint(bp) end
  for _, it in pairs(snap.integrations or {}) do self:put_integration(it) end
  for id, r in pairs(snap.resyncRequests or {}) do
    self:put_resync_request(id, r)
  end
  for _, v in ipairs(snap.entities or {}) do self:put(entity_from_view(v)) end
  return true
end

-- Replay the journal; a torn last line (killed mid-write) is ignored.
local function replay(self, text)
  local n = 0
  for line in text:gmatch("[^\n]+") do
    local rec = util.decode(line)
    if type(rec) ~= "table" then break end
    apply(self, rec)
    n = n + 1
  end
  return n
end

-- Load <path> and replay <path>.journal. Returns true, or nil, err.
function Store:load()
  if not self.path then return true end
  self.replaying = true
  local text = read_file(self.path)
  local ok, err = true, nil
  if text and text ~= "" then ok, err = load_snapshot(self, text) end
  if ok then
    local jtext = read_file(self.path .. ".journal")
    if jtext then replay(self, jtext) end
  end
  self.replaying = false
  if not ok then return nil, self.path .. ": " .. err end
  return self:snapshot()
end

function Store:close()
  if self.jf then
    self.jf:close()
    self.jf = nil
  end
end

-- }====================

-- A store; opts.data: the data file (nil: in memory only).
function _M.new(opts)
  local s = setmetatable({
    path = opts and opts.data, jbuf = {}, jbytes = 0, last_commit = 0,
    last_ms = 0,
  }, Store)
  s:clear()
  return s
end

_M.null = null
return _M
