-- ocean.metrics: Prometheus metrics (gauges and counters with labels) kept
-- in a store owned by the caller, rendered in the Prometheus text
-- exposition format 0.0.4. The module holds no state: every value lives in
-- the store of a registry object (the engine owns one; inside nginx the
-- store is a lua_shared_dict, so every worker adds to the same numbers and
-- any worker renders them all).
--
--   local reg = metrics.new { store = metrics.table_store() }   -- or shared_dict_store(ngx.shared.ocean)
--   local g = reg:gauge("object_count", "help text", { "kind", "phase", "object_count_type" })
--   g:set({ kind = "repo-0", phase = "extract", object_count_type = "raw_extracted" }, 120)
--   g:inc({ "repo-0", "extract", "raw_extracted" }, 3)      -- labels by name or in order
--   local c = reg:counter("port_requests_total", "help", { "endpoint", "status" })
--   c:inc({ endpoint = "/v1/blueprints/{blueprint}/entities/bulk", status = "200" })
--   reg:render() -> text;  metrics.CONTENT_TYPE is its Content-Type
--   local ocean_set = metrics.declare_ocean(reg)   -- Ocean's names and labels
--   ocean_set.duration_seconds:inc({ "repo-0", "load" }, 0.25)
--
-- Misuse raises (error(msg, 2)): a bad metric or label name, a label
-- missing or unknown, a negative counter increment, a name declared again
-- with another type, help or labels. Storage failures (a full shared dict)
-- return nil, err from set/inc; render never fails on them.
--
-- The text: one family per name, families in name order, each with
-- `# HELP` (\ and newline escaped) and `# TYPE`, then its samples in the
-- order of their label values; label values escape \, " and newline;
-- values are integers when integral ("42"), else 17 significant digits,
-- "+Inf", "-Inf" or "NaN". A family declared but never set shows only its
-- HELP and TYPE.
--
-- Store interface (a Lua table store and an ngx.shared.DICT adapter are
-- provided; anything with these methods works):
--   store:get(key) -> number | nil
--   store:set(key, value) -> true | nil, err
--   store:incr(key, delta) -> new value | nil, err   (starting from 0, atomic)
--   store:delete(key)
--   store:keys() -> list of keys (any order)
-- A key is a sample's text without its value: `name{l1="v1",l2="v2"}`, so
-- whatever worker wrote it, any worker can render it.
local type, pairs, ipairs, tostring, error, setmetatable = type, pairs, ipairs, tostring, error, setmetatable
local format, concat, sort = string.format, table.concat, table.sort
local huge = math.huge

local _M = {}

_M.CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

-- {==================== Ocean's metrics ====================

-- Ocean's names and labels (port_ocean/helpers/metric/metric.py and its
-- tests), so that dashboards built for Ocean read ours. `kind` is Ocean's
-- "kind-index" (`repository-0`: the resource's kind and its index in the
-- mapping; `__resync__`, `__reconciliation__`, `__runtime__` outside a
-- resource); `phase` is extract, transform, load, resync or delete.
-- Ocean keeps them all as gauges.
_M.KIND_RESYNC, _M.KIND_RECONCILIATION, _M.KIND_RUNTIME =
  "__resync__", "__reconciliation__", "__runtime__"
_M.PHASES = { EXTRACT = "extract", TRANSFORM = "transform", LOAD = "load",
              RESYNC = "resync", DELETE = "delete" }
-- object_count's object_count_type (Ocean's MetricPhase.*Result)
_M.OBJECT_COUNT_TYPES = {
  extract = { "raw_extracted", "failed" },
  transform = { "transformed", "filtered_out", "failed" },
  load = { "loaded", "failed", "skipped" },
  delete = { "deleted" },
}

_M.OCEAN = {
  { "gauge", "object_count", "Objects per kind and phase (extract: raw objects read;"
      .. " transform: entities mapped, filtered out or failed; load: loaded, failed, skipped)",
    { "kind", "phase", "object_count_type" } },
  { "gauge", "upserted_count", "Entities upserted to Port", { "kind", "phase" } },
  { "gauge", "deleted_count", "Entities deleted from Port", { "kind", "phase" } },
  { "gauge", "failed_count", "Entities Port rejected", { "kind", "phase" } },
  { "gauge", "error_count", "Errors (a failing resync function, selector or mapping)",
    { "kind", "phase" } },
  { "gauge", "input_count", "Entities handed to the load phase", { "kind", "phase" } },
  { "gauge", "success", "1 when the kind's phase succeeded, else 0", { "kind", "phase" } },
  { "gauge", "duration_seconds", "Seconds spent per kind and phase", { "kind", "phase" } },
  { "gauge", "http_requests_count", "HTTP requests by endpoint, kind, phase and status",
    { "endpoint", "kind", "phase", "status" } },
  { "gauge", "rate_limit_wait_seconds", "Seconds waited on rate limits (429 Retry-After)",
    { "kind", "phase", "endpoint" } },
}

-- What our engine knows better (issue 13): declared here so that every
-- worker agrees on them; the engine feeds them.
_M.LUA_OCEAN = {
  { "counter", "ocean_port_requests_total", "Port API requests by endpoint and status",
    { "endpoint", "status" } },
  { "counter", "ocean_retries_total", "Requests retried, by target (port, third_party) and reason",
    { "target", "reason" } },
  { "counter", "ocean_retry_wait_seconds_total", "Seconds waited before retries", { "target" } },
  { "counter", "ocean_live_events_total",
    "Live events by state (queued, processed, failed, given_back, unknown_kind)", { "state" } },
  { "gauge", "ocean_journal_depth", "Live events journaled and not yet applied", {} },
  { "counter", "ocean_mapping_budget_hits_total",
    "jq evaluations stopped by the time or memory budget", { "kind", "budget" } },
}

-- }====================

-- {==================== text format ====================

local NAME_RE = "^[%a_:][%w_:]*$"
local LABEL_RE = "^[%a_][%w_]*$"

local function escape_label(v)
  return (v:gsub('[\\"\n]', { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" }))
end

local function escape_help(v)
  return (v:gsub("[\\\n]", { ["\\"] = "\\\\", ["\n"] = "\\n" }))
end

-- A sample value as Prometheus writes it: the shortest text that reads
-- back as the same double (0.1, not 0.10000000000000001).
local function format_value(v)
  if v ~= v then return "NaN" end
  if v == huge then return "+Inf" end
  if v == -huge then return "-Inf" end
  if v == math.floor(v) and v > -2^53 and v < 2^53 then return format("%d", v) end
  for _, f in ipairs { "%.15g", "%.16g" } do
    local s = format(f, v)
    if tonumber(s) == v then return s end
  end
  return format("%.17g", v)
end

-- Seconds to the millisecond (the clocks' own resolution in nginx, whose
-- differences otherwise print as 0.0090000629425048828).
local function ms(s)
  return math.floor((s or 0) * 1000 + 0.5) / 1000
end
_M.format_value = format_value

-- }====================

-- {==================== stores ====================

local TableStore = {}
TableStore.__index = TableStore

function TableStore:get(key) return self.values[key] end
function TableStore:set(key, value) self.values[key] = value return true end
function TableStore:incr(key, delta)
  local v = (self.values[key] or 0) + delta
  self.values[key] = v
  return v
end
function TableStore:delete(key) self.values[key] = nil end
function TableStore:keys()
  local out = {}
  for k in pairs(self.values) do out[#out + 1] = k end
  return out
end

-- A store in a Lua table (one process: `ocean sail`, specs).
function _M.table_store()
  return setmetatable({ values = {} }, TableStore)
end

local DictStore = {}
DictStore.__index = DictStore

function DictStore:get(key)
  return (self.dict:get(self.prefix .. key))
end
function DictStore:set(key, value)
  local ok, err = self.dict:set(self.prefix .. key, value)
  if not ok then return nil, err end
  return true
end
function DictStore:incr(key, delta)
  -- init 0: created atomically when missing (ngx_lua >= 0.10.6)
  return self.dict:incr(self.prefix .. key, delta, 0)
end
function DictStore:delete(key) self.dict:delete(self.prefix .. key) end
function DictStore:keys()
  local out, n = {}, #self.prefix
  -- get_keys(0): every key; it locks the dict while it scans (a scrape)
  for _, k in ipairs(self.dict:get_keys(0)) do
    if k:sub(1, n) == self.prefix then out[#out + 1] = k:sub(n + 1) end
  end
  return out
end

-- A store in an ngx.shared.DICT (shared by nginx's workers), its keys
-- under `prefix` (default "metric:") so that the dict can hold other
-- things (the resync lock...). Size the dict for the metrics too: each
-- sample is one key (~100 bytes with its value and the dict's overhead).
function _M.shared_dict_store(dict, prefix)
  if type(dict) ~= "table" and type(dict) ~= "userdata" then
    error("metrics.shared_dict_store: expected an ngx.shared dict", 2)
  end
  return setmetatable({ dict = dict, prefix = prefix or "metric:" }, DictStore)
end

-- }====================

-- {==================== registry and metrics ====================

local Metric = {}
Metric.__index = Metric

-- The store key of a label set: labels by name ({kind = "x"}) or in
-- declared order ({"x"}).
local function key_of(m, labels, level)
  local names = m.labelnames
  if #names == 0 then
    if labels ~= nil and next(labels) ~= nil then
      error(format("metric %s has no labels", m.name), level)
    end
    return m.name
  end
  if type(labels) ~= "table" then
    error(format("metric %s needs its labels (%s)", m.name, concat(names, ", ")), level)
  end
  local positional = labels[1] ~= nil
  local parts = {}
  for i, n in ipairs(names) do
    local v
    if positional then v = labels[i] else v = labels[n] end
    if v == nil then
      error(format("metric %s: label %s is missing", m.name, n), level)
    end
    parts[i] = n .. '="' .. escape_label(tostring(v)) .. '"'
  end
  if positional then
    if labels[#names + 1] ~= nil then
      error(format("metric %s: %d label values for %d labels", m.name, #labels, #names), level)
    end
  else
    for k in pairs(labels) do
      if not m.labelset[k] then
        error(format("metric %s has no label %s", m.name, tostring(k)), level)
      end
    end
  end
  return m.name .. "{" .. concat(parts, ",") .. "}"
end

local function check_number(m, v, level)
  if type(v) ~= "number" then
    error(format("metric %s: value must be a number, got %s", m.name, type(v)), level)
  end
end

-- gauge:set(labels, value) -> true | nil, err
function Metric:set(labels, value)
  if self.type ~= "gauge" then error(format("metric %s is a counter: use inc", self.name), 2) end
  check_number(self, value, 3)
  return self.store:set(key_of(self, labels, 3), value)
end

-- :inc(labels [, delta = 1]) -> new value | nil, err (a counter's delta >= 0)
function Metric:inc(labels, delta)
  delta = delta == nil and 1 or delta
  check_number(self, delta, 3)
  if self.type == "counter" and (delta < 0 or delta ~= delta) then
    error(format("counter %s: increment must be >= 0, got %s", self.name, tostring(delta)), 2)
  end
  return self.store:incr(key_of(self, labels, 3), delta)
end

-- gauge:dec(labels [, delta = 1])
function Metric:dec(labels, delta)
  if self.type ~= "gauge" then error(format("metric %s is a counter", self.name), 2) end
  delta = delta == nil and 1 or delta
  check_number(self, delta, 3)
  return self.store:incr(key_of(self, labels, 3), -delta)
end

-- :get(labels) -> value | nil (never set)
function Metric:get(labels)
  return self.store:get(key_of(self, labels, 3))
end

-- :clear() -> removes every sample of this metric (e.g. kinds gone from the mapping)
function Metric:clear()
  local prefix = self.name .. "{"
  for _, k in ipairs(self.store:keys()) do
    if k == self.name or k:sub(1, #prefix) == prefix then self.store:delete(k) end
  end
end

local Registry = {}
Registry.__index = Registry

local function declare(reg, mtype, name, help, labelnames, level)
  if type(name) ~= "string" or not name:match(NAME_RE) then
    error(format("invalid metric name %s", tostring(name)), level)
  end
  if type(help) ~= "string" then error(format("metric %s needs a help text", name), level) end
  labelnames = labelnames or {}
  local labelset = {}
  for _, n in ipairs(labelnames) do
    if type(n) ~= "string" or not n:match(LABEL_RE) or n:sub(1, 2) == "__" then
      error(format("metric %s: invalid label name %s", name, tostring(n)), level)
    end
    if labelset[n] then error(format("metric %s: label %s twice", name, n), level) end
    labelset[n] = true
  end
  local old = reg.families[name]
  if old then
    if old.type ~= mtype or old.help ~= help or concat(old.labelnames, ",") ~= concat(labelnames, ",") then
      error(format("metric %s is already declared as a %s with other help or labels", name, old.type), level)
    end
    return old
  end
  local m = setmetatable({ name = name, type = mtype, help = help, labelnames = labelnames,
                           labelset = labelset, store = reg.store }, Metric)
  reg.families[name] = m
  return m
end

function Registry:gauge(name, help, labelnames)
  return declare(self, "gauge", name, help, labelnames, 3)
end

function Registry:counter(name, help, labelnames)
  return declare(self, "counter", name, help, labelnames, 3)
end

-- The families' text, in the Prometheus text exposition format 0.0.4.
function Registry:render()
  local by_family = {}
  for _, key in ipairs(self.store:keys()) do
    local name = key:match("^([^{]+)")
    local fam = name and by_family[name]
    if name and not fam then
      fam = {}
      by_family[name] = fam
    end
    if fam then fam[#fam + 1] = key end
  end
  local names = {}
  for name in pairs(self.families) do names[#names + 1] = name end
  sort(names)
  local out = {}
  for _, name in ipairs(names) do
    local m = self.families[name]
    out[#out + 1] = "# HELP " .. name .. " " .. escape_help(m.help)
    out[#out + 1] = "# TYPE " .. name .. " " .. m.type
    local keys = by_family[name] or {}
    sort(keys)
    for _, key in ipairs(keys) do
      local v = self.store:get(key)
      if type(v) == "number" then out[#out + 1] = key .. " " .. format_value(v) end
    end
  end
  if #out == 0 then return "" end
  return concat(out, "\n") .. "\n"
end

-- A registry over `opts.store` (default: a new table store).
function _M.new(opts)
  opts = opts or {}
  return setmetatable({ store = opts.store or _M.table_store(), families = {} }, Registry)
end

-- Declare a catalogue ({type, name, help, labels} entries, e.g.
-- metrics.OCEAN) in reg: a table of its metrics by name.
function _M.declare(reg, catalogue)
  local out = {}
  for _, d in ipairs(catalogue) do
    out[d[2]] = declare(reg, d[1], d[2], d[3], d[4], 3)
  end
  return out
end

function _M.declare_ocean(reg)
  return _M.declare(reg, _M.OCEAN)
end

-- }====================

-- {==================== what the engine feeds ====================

-- The engine's metrics: Ocean's and ours declared in reg, plus the feeding
-- functions below. Returns {reg =, m = {name = metric}}.
function _M.engine_set(reg)
  local m = _M.declare(reg, _M.OCEAN)
  for name, metric in pairs(_M.declare(reg, _M.LUA_OCEAN)) do m[name] = metric end
  return { reg = reg, m = m }
end

-- Port's API paths as route templates: an identifier never becomes a
-- label value (one series per blueprint or entity would grow without
-- bound). Tried in order; a path none matches is "other".
local PORT_ROUTES = {
  { "^/v1/auth/access_token$", "/v1/auth/access_token" },
  { "^/v1/integration$", "/v1/integration" },
  { "^/v1/integration/[^/]+$", "/v1/integration/{identifier}" },
  { "^/v1/integration/[^/]+/([%w_-]+)$", "/v1/integration/{identifier}/%s" },
  { "^/v1/blueprints/entities/datasource%-entities$", "/v1/blueprints/entities/datasource-entities" },
  { "^/v1/blueprints$", "/v1/blueprints" },
  { "^/v1/blueprints/[^/]+$", "/v1/blueprints/{blueprint}" },
  { "^/v1/blueprints/[^/]+/entities/bulk$", "/v1/blueprints/{blueprint}/entities/bulk" },
  { "^/v1/blueprints/[^/]+/entities/search$", "/v1/blueprints/{blueprint}/entities/search" },
  { "^/v1/blueprints/[^/]+/bulk/entities/delete$", "/v1/blueprints/{blueprint}/bulk/entities/delete" },
  { "^/v1/blueprints/[^/]+/all%-entities$", "/v1/blueprints/{blueprint}/all-entities" },
  { "^/v1/blueprints/[^/]+/entities$", "/v1/blueprints/{blueprint}/entities" },
  { "^/v1/blueprints/[^/]+/entities/.+$", "/v1/blueprints/{blueprint}/entities/{entity}" },
  { "^/v1/entities/search$", "/v1/entities/search" },
  { "^/v1/organization$", "/v1/organization" },
}

-- The route template of a Port API path ("/v1/blueprints/x/entities/bulk"
-- -> "/v1/blueprints/{blueprint}/entities/bulk"; unknown: "other").
function _M.port_endpoint(path)
  path = path:gsub("[?#].*$", "")
  for _, r in ipairs(PORT_ROUTES) do
    local cap = path:match(r[1])
    if cap then
      return type(cap) == "string" and r[2]:find("%s", 1, true) and format(r[2], cap) or r[2]
    end
  end
  return "other"
end

-- A third-party URL as an endpoint label: scheme, host and path (the
-- query, which may carry tokens, and any user:password@ left out).
function _M.url_endpoint(url)
  local scheme, host, path = url:match("^(%a[%w+.-]*://)([^/?#]*)([^?#]*)")
  if not scheme then return "other" end
  host = host:gsub("^[^@]*@", "")
  return scheme .. host .. (path ~= "" and path or "/")
end

local function status_label(ev)
  if ev.status and ev.status > 0 then return tostring(ev.status) end
  return "error"
end

-- One event of the engine's loop (ocean.netlog's "request" and "retry").
-- port_base: Port's base URL (its requests are told apart by it); kind:
-- the running resource's kind-index, or nil outside one.
function _M.feed_net_event(set, ev, port_base, kind)
  local m = set.m
  local url = ev.url or ""
  local is_port = type(port_base) == "string" and port_base ~= "" and url:sub(1, #port_base) == port_base
  local endpoint = is_port and _M.port_endpoint(url:sub(#port_base + 1)) or _M.url_endpoint(url)
  kind = kind or _M.KIND_RUNTIME
  if ev.type == "request" then
    if is_port then
      m.ocean_port_requests_total:inc({ endpoint = endpoint, status = status_label(ev) })
    else
      m.http_requests_count:inc({ endpoint = endpoint, kind = kind, phase = "extract",
                                  status = status_label(ev) })
    end
  elseif ev.type == "retry" then
    local target = is_port and "port" or "third_party"
    local reason = ev.error and "network" or status_label(ev)
    local wait = (ev.delay_ms or 0) / 1000
    m.ocean_retries_total:inc({ target = target, reason = reason })
    m.ocean_retry_wait_seconds_total:inc({ target = target }, wait)
    if ev.status == 429 then
      m.rate_limit_wait_seconds:inc({ kind = kind, phase = is_port and "load" or "extract",
                                      endpoint = endpoint }, wait)
    end
  end
end

-- The per-resync gauges (all of Ocean's but the request counts, which
-- accumulate), cleared when a resync ends so that a kind no longer in
-- the mapping leaves no stale series.
local PER_RESYNC = { "object_count", "upserted_count", "deleted_count", "failed_count",
                     "error_count", "input_count", "success", "duration_seconds" }

-- A finished resync's summary (ocean.sync's) into Ocean's gauges, per
-- kind-index (the resource's kind and its 0-based place in the mapping),
-- __reconciliation__ and __resync__. Our engine maps and upserts a
-- resource's pages as they come, so extract, transform and load overlap:
-- a resource's time is its duration_seconds{phase="resync"}.
function _M.feed_resync(set, s, seconds)
  local m = set.m
  for _, name in ipairs(PER_RESYNC) do m[name]:clear() end
  for _, k in ipairs(s.kinds or {}) do
    local kind = tostring(k.kind) .. "-" .. tostring((k.index or 1) - 1)
    local loaded = (k.created or 0) + (k.updated or 0) + (k.unknown or 0)
    local oc = m.object_count
    oc:set({ kind, "extract", "raw_extracted" }, k.raw or 0)
    oc:set({ kind, "transform", "transformed" }, k.entities or 0)
    oc:set({ kind, "transform", "filtered_out" }, k.filtered or 0)
    oc:set({ kind, "transform", "failed" }, (k.dropped or 0) + (k.items_errors or 0))
    oc:set({ kind, "load", "loaded" }, loaded)
    oc:set({ kind, "load", "failed" }, k.failed_entities or 0)
    oc:set({ kind, "load", "skipped" }, k.unchanged or 0)
    m.input_count:set({ kind, "load" }, k.entities or 0)
    m.upserted_count:set({ kind, "load" }, loaded)
    m.failed_count:set({ kind, "load" }, k.failed_entities or 0)
    local errors = k.error_count or k.errors or 0
    m.error_count:set({ kind, "resync" }, errors)
    m.success:set({ kind, "resync" }, (k.status == "completed" and errors == 0) and 1 or 0)
    m.duration_seconds:set({ kind, "resync" }, ms(k.seconds))
    _M.feed_budget_hits(set, kind, k.budget_hits)
  end
  local rec = _M.KIND_RECONCILIATION
  m.deleted_count:set({ rec, "delete" }, s.deleted or 0)
  m.object_count:set({ rec, "delete", "deleted" }, s.deleted or 0)
  local all = _M.KIND_RESYNC
  m.error_count:set({ all, "resync" }, s.error_count or 0)
  m.success:set({ all, "resync" }, s.ok and 1 or 0)
  m.duration_seconds:set({ all, "resync" }, ms(seconds))
end

-- The budget a mapping error message says was hit: "time" (`exceeded
-- the time limit (1 s)`), "memory" (`exceeded the memory limit (256
-- MiB)`, `would exceed the memory limit`: src/jq/jqbudget.c), else nil.
function _M.budget_of(message)
  if type(message) ~= "string" then return nil end
  if message:find("exceeded the time limit", 1, true) then return "time" end
  if message:find("exceeded the memory limit", 1, true)
    or message:find("would exceed the memory limit", 1, true) then
    return "memory"
  end
  return nil
end

-- Item errors (a feed report's `errors`: {index=, message=}) that the
-- mapping's budget stopped, counted into counts ({time=n, memory=n}, made
-- when nil). Returns counts. Only the errors a report lists are seen (it
-- keeps the first 100 of a page).
function _M.count_budget_hits(errors, counts)
  counts = counts or {}
  for _, e in ipairs(errors or {}) do
    local b = _M.budget_of(e.message)
    if b then counts[b] = (counts[b] or 0) + 1 end
  end
  return counts
end

-- counts ({time=n, memory=n}) into ocean_mapping_budget_hits_total of
-- the kind-index `kind`.
function _M.feed_budget_hits(set, kind, counts)
  for _, budget in ipairs { "time", "memory" } do
    local n = counts and counts[budget] or 0
    if n > 0 then set.m.ocean_mapping_budget_hits_total:inc({ kind = kind, budget = budget }, n) end
  end
end

-- The live-event queue's states (ocean.event_queue's cumulative counts):
-- queued = journaled (answered 2xx), processed = applied, failed = dead
-- letters (an event that failed every attempt; a retried attempt is not
-- a failed event), given_back = claims given back to the journal as the
-- nginx worker exits (applied at the next start, not an attempt),
-- unknown_kind = events whose get_matching_kinds named a kind no
-- resource of the mapping has (applied or not: the other states count
-- them too).
local LIVE_STATES = { { "queued", "received" }, { "processed", "applied" },
                      { "failed", "dead_lettered" }, { "given_back", "given_back" },
                      { "unknown_kind", "unknown_kinds" } }

local function depth_key(worker) return "live_journal_depth_of:" .. worker end

-- One queue's counts into ocean_live_events_total{state} and
-- ocean_journal_depth, as the increase since the last feed of this queue
-- (remembered in q.metrics_fed), so that in nginx, where every worker has
-- its queue and all add into one shared dict, the samples are the sum of
-- the workers'. worker (nginx: the pid) keeps this worker's share of the
-- depth in the store (outside any family, so not rendered) for
-- forget_live_worker. Called at each scrape and by nginx's consumer.
function _M.feed_live(set, q, worker)
  local st = q:stats()
  local fed = q.metrics_fed
  if not fed then
    fed = { depth = 0 }
    for _, s in ipairs(LIVE_STATES) do fed[s[1]] = 0 end
    q.metrics_fed = fed
  end
  local m = set.m
  for _, s in ipairs(LIVE_STATES) do
    local now = st[s[2]] or 0
    if m.ocean_live_events_total:inc({ state = s[1] }, now - fed[s[1]]) then fed[s[1]] = now end
  end
  -- a shared journal (nginx): its depth is the consumer's to count, under
  -- one share that the next consumer takes over (forget_live_worker)
  local depth = st.depth or 0
  if q.shared then
    if not q.consumer then return end
    worker = "shared"
  end
  if m.ocean_journal_depth:inc(nil, depth - fed.depth) then
    fed.depth = depth
    if worker then set.reg.store:set(depth_key(worker), depth) end
  end
end

-- A worker that is gone (nginx: its journal adopted by another, whose
-- feed now counts its events): its share of ocean_journal_depth removed.
function _M.forget_live_worker(set, worker)
  if not worker then return end
  local store = set.reg.store
  local share = store:get(depth_key(worker))
  if share then
    set.m.ocean_journal_depth:dec(nil, share)
    store:delete(depth_key(worker))
  end
end

-- }====================

return _M
