-- ocean.mapping: parse_items, Ocean's jq entity processor, over the C
-- engine (src/mapping/mapping.c). One resource of the port app config compiles into
-- one jq program, cached here.
--
--   mapping.parse_items(resource, items [, {parse_all=, allow_env=, exact_numbers=,
--                       time_limit=, memory_limit=} [, cache]])
--     -> {passed=, failed=, errors=, dropped=, misconfigured=} | nil, err
--     (exact_numbers: numbers a Lua number cannot hold come out as exact
--     numbers, see ocean.json)
--   mapping.compile(resource [, {allow_env=, time_limit=, memory_limit=,
--                   projection=, native=}]) -> m | nil, err
--   mapping.cached(resource [, {allow_env=, time_limit=, memory_limit=} [, cache]])
--     -> m | nil, err
--     (m:parse(items, parse_all, exact_numbers), m:signature(), m:fields(), m:close())
--   mapping.new_cache() -> cache (cache:info(), cache:clear()); each engine
--     holds one (ocean.parse_items uses the default engine's). Without a
--     cache, parse_items compiles for this call only.
--   mapping.options(settings [, extra]) -> opts from an engine's settings
--
-- The budget of every item (docs/jq.md): time_limit in seconds, memory_limit
-- in MiB (0 = none); when not given, OCEAN__MAPPING_TIME_LIMIT and
-- OCEAN__MAPPING_MEMORY_LIMIT, else 5 s and 256 MiB. An item that breaks
-- it is an item error naming the field and the limit.
--
-- Misuse (a resource without kind, selector.query, identifier or blueprint;
-- items that are neither a list nor a JSON text) raises. An expression that
-- does not compile fails the whole resource with nil, err: a kind with a
-- broken mapping must not sync half of its fields.
--
-- Cache: by resource table (weak keys) and, so that a mutated table
-- recompiles and equal tables share one program, by content (the
-- resource's JSON text with sorted keys, plus allow_env), least recently
-- used first out beyond CACHE_SIZE programs.
local core = require "ocean.core"

local type, error, pairs, setmetatable = type, error, pairs, setmetatable
local getenv = os.getenv
local json_encode = core.json_encode
local mapping_compile = core.mapping_compile

local _M = {}

local CACHE_SIZE = 64

local Cache = {}
Cache.__index = Cache

function _M.new_cache()
  return setmetatable({
    by_table = setmetatable({}, { __mode = "k" }),  -- resource -> entry
    by_content = {},                                -- key -> entry
    tick = 0, count = 0,
  }, Cache)
end

local OPTS = { parse_all = true, allow_env = true, exact_numbers = true,
               time_limit = true, memory_limit = true }
local COMPILE_OPTS = { allow_env = true, projection = true, native = true,
                       time_limit = true, memory_limit = true }
local DEFAULT_TIME_LIMIT, DEFAULT_MEMORY_LIMIT = 5, 256

local function check_opts(opts, level, known)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    error("options must be a table, got " .. type(opts), level + 1)
  end
  for k in pairs(opts) do
    if not (known or OPTS)[k] then
      error("unknown option '" .. tostring(k) .. "'", level + 1)
    end
  end
  return opts
end

local function env_allowed(opts)
  if opts.allow_env ~= nil then return opts.allow_env and true or false end
  return getenv("OCEAN__ALLOW_ENVIRONMENT_VARIABLES_JQ_ACCESS") == "true"
end

-- A limit from opts, else the environment, else the default; a number >= 0.
local function limit(opts, key, env_name, default, level)
  local v = opts[key]
  local from = key
  if v == nil then
    v = getenv(env_name)
    from = env_name
    if v == nil or v == "" then return default end
    v = tonumber(v)
  end
  if type(v) ~= "number" or v < 0 or v ~= v then
    error(("%s must be a number >= 0 (0: no limit), got %s"):format(from, tostring(opts[key] or getenv(env_name))),
          level + 1)
  end
  return v
end

-- {time_limit=, memory_limit=} for the C engine.
local function budget(opts, level)
  return limit(opts, "time_limit", "OCEAN__MAPPING_TIME_LIMIT", DEFAULT_TIME_LIMIT, level + 1),
         limit(opts, "memory_limit", "OCEAN__MAPPING_MEMORY_LIMIT", DEFAULT_MEMORY_LIMIT, level + 1)
end

local function evict(c)
  local oldest, oldest_key
  for key, entry in pairs(c.by_content) do
    if not oldest or entry.tick < oldest.tick then
      oldest, oldest_key = entry, key
    end
  end
  c.by_content[oldest_key] = nil
  c.count = c.count - 1
end

local function compile_now(resource, allow_env, seconds, mib, level)
  local m, cerr, code = mapping_compile(resource, allow_env,
                                        { time_limit = seconds, memory_limit = mib })
  if not m and code == "invalid" then error(cerr, level + 1) end
  return m, cerr
end

-- The compiled mapping for resource, from cache c or compiled now (and
-- kept there; without c, compiled for the caller alone).
local function lookup(c, resource, allow_env, opts, level)
  local seconds, mib = budget(opts, level + 1)
  if not c then return compile_now(resource, allow_env, seconds, mib, level + 1) end
  local text, err = json_encode(resource)
  if not text then error("invalid resource: " .. err, level + 1) end
  local key = ("%s%.17g/%.17g|"):format(allow_env and "E" or "-", seconds, mib) .. text
  local entry = c.by_table[resource]
  if not entry or entry.key ~= key then
    entry = c.by_content[key]
  end
  if not entry then
    local m, cerr = compile_now(resource, allow_env, seconds, mib, level + 1)
    if not m then return nil, cerr end
    entry = { key = key, m = m, tick = 0 }
    if c.count >= CACHE_SIZE then evict(c) end
    c.by_content[key] = entry
    c.count = c.count + 1
  end
  c.tick = c.tick + 1
  entry.tick = c.tick
  c.by_table[resource] = entry
  return entry.m
end

local function check_resource(resource, level)
  if type(resource) ~= "table" then
    error("resource must be a table, got " .. type(resource), level + 1)
  end
end

function _M.parse_items(resource, items, opts, cache)
  check_resource(resource, 2)
  opts = check_opts(opts, 2)
  local it = type(items)
  if it ~= "table" and it ~= "string" then
    error("items must be a list of raw items or a JSON text, got " .. it, 2)
  end
  local m, err = lookup(cache, resource, env_allowed(opts), opts, 2)
  if not m then return nil, err end
  local res, perr = m:parse(items, opts.parse_all, opts.exact_numbers)
  if not cache then m:close() end
  return res, perr
end

-- The program parse_items would use, from the content cache (compiled
-- now if missing): for callers that only hold it while they use it (a
-- resync), so that repeated resyncs and live events share one compile.
-- opts: allow_env.
function _M.cached(resource, opts, cache)
  check_resource(resource, 2)
  opts = check_opts(opts, 2)
  return lookup(cache, resource, env_allowed(opts), opts, 2)
end

-- A compiled mapping of one's own (not cached): for callers that keep it.
-- opts: allow_env; projection = false / native = false turn off the two
-- optimisations (reading only what the expressions use; evaluating simple
-- expressions without jq) - for tests that compare them with plain jq.
function _M.compile(resource, opts)
  check_resource(resource, 2)
  opts = check_opts(opts, 2, COMPILE_OPTS)
  local seconds, mib = budget(opts, 2)
  local m, err, code = mapping_compile(resource, env_allowed(opts), {
    time_limit = seconds, memory_limit = mib,
    projection = opts.projection, native = opts.native })
  if not m then
    if code == "invalid" then error(err, 2) end
    return nil, err
  end
  return m
end

-- Options for the calls above from an engine's settings (ocean.config):
-- allow_env, time_limit, memory_limit; extra's fields are added.
-- msg about a resource of kind, said once with it: "kind 'k': msg"
-- unless msg begins so already (a compile error names its kind:
-- mapping.c).
function _M.with_kind(kind, msg)
  local prefix = ("kind '%s': "):format(tostring(kind))
  if msg:sub(1, #prefix) == prefix then return msg end
  return prefix .. msg
end

function _M.options(settings, extra)
  local o = { allow_env = settings.allow_env_jq, time_limit = settings.mapping_time_limit,
              memory_limit = settings.mapping_memory_limit }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

-- The content cache: programs held and the bound (tests).
function Cache:info()
  return { size = self.count, capacity = CACHE_SIZE }
end

-- Drop every cached program (tests; configuration reloads).
function Cache:clear()
  for k in pairs(self.by_table) do self.by_table[k] = nil end
  self.by_content, self.count = {}, 0
end

return _M
