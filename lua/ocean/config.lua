-- ocean.config: an integration's settings, as Ocean reads them.
--
-- Sources, highest priority first: explicit overrides (a table, e.g. from
-- the OpenResty adapter) -> OCEAN__* environment variables -> config.yaml in
-- the integration folder (camelCase keys; string values may be
-- "{{ from env NAME }}") -> .port/spec.yaml defaults -> built-in defaults.
--
--   config.load{path=, env=, overrides=} -> settings | nil, err
--     env: a table of variables or a function(name) -> value (default os.getenv)
--   settings.port        {client_id, client_secret, base_url, concurrency, verify_tls}
--   settings.integration {identifier, type, version, config = {...}}
--   settings.event_listener {type, interval, resync_on_start}
--   settings.scheduled_resync_interval (minutes | nil), settings.initialize_port_resources,
--   settings.allow_env_jq, settings.entity_deletion_threshold (nil = mapping's),
--   settings.mapping_time_limit (s), settings.mapping_memory_limit (MiB; 0 = none),
--   settings.upsert_batch_max_length, settings.upsert_batch_max_bytes,
--   settings.delete_batch_max, settings.client_timeout, settings.third_party_verify_tls,
--   settings.log_level, settings.http_port, settings.base_url,
--   settings.spec, settings.default_mapping, settings.blueprints, settings.secrets
local yaml = require "ocean.yaml"
local json = require "ocean.json"

local pairs, ipairs, type, tostring, tonumber = pairs, ipairs, type, tostring, tonumber

local _M = {}

local LISTENERS = {
  POLLING = true, ONCE = true, WEBHOOKS_ONLY = true, WEBHOOK = true,
}

-- camelCase / kebab-case -> snake_case (Ocean's key conversion)
local function snake(name)
  name = name:gsub("%-", "_")
  name = name:gsub("(%l)(%u)", "%1_%2"):gsub("(%u)(%u%l)", "%1_%2")
  return name:lower()
end
_M.snake = snake

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a") or f:read("*a")
  f:close()
  return s
end

local function file_exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

-- Substitute "{{ from env NAME }}" in every string of a config.yaml tree.
local function substitute(v, getenv)
  if type(v) == "string" then
    local name = v:match("^%s*{{%s*from%s+env%s+([%w_]+)%s*}}%s*$")
    if name then
      local val = getenv(name)
      if val == nil or val == "" then return nil end
      return val
    end
    return (v:gsub("{{%s*from%s+env%s+([%w_]+)%s*}}", function(n)
      return getenv(n) or ""
    end))
  elseif type(v) == "table" and not json.is_array(v) and v ~= json.null then
    local out = {}
    for k, x in pairs(v) do out[snake(k)] = substitute(x, getenv) end
    return out
  elseif json.is_array(v) then
    local out = json.array {}
    for i, x in ipairs(v) do out[i] = substitute(x, getenv) end
    return out
  end
  if v == json.null then return nil end
  return v
end

-- {==================== value parsing ====================

local function parse_bool(s)
  if type(s) == "boolean" then return s end
  s = tostring(s):lower()
  if s == "true" or s == "1" or s == "yes" or s == "on" then return true end
  if s == "false" or s == "0" or s == "no" or s == "off" then return false end
  return nil
end

local function parse_number(s)
  if type(s) == "number" then return s end
  return tonumber((tostring(s):gsub("^%s+", ""):gsub("%s+$", "")))
end

local parsers = {
  bool = function(v)
    local b = parse_bool(v)
    if b == nil then return nil, "is not a boolean (use true or false)" end
    return b
  end,
  int = function(v)
    local n = parse_number(v)
    if not n or n ~= math.floor(n) then return nil, "is not an integer" end
    return math.tointeger and math.tointeger(n) or n
  end,
  positive = function(v)
    local n = parse_number(v)
    if not n or n <= 0 then return nil, "is not a positive number" end
    return n
  end,
  limit = function(v)
    local n = parse_number(v)
    if not n or n < 0 or n ~= n then return nil, "is not a number >= 0 (0: no limit)" end
    return n
  end,
  ratio = function(v)
    local n = parse_number(v)
    if not n or n < 0 or n > 1 then return nil, "is not a number between 0 and 1" end
    return n
  end,
  url = function(v)
    v = tostring(v)
    if not v:match("^https?://[^/%s]+") then
      return nil, "is not an http(s) URL"
    end
    return (v:gsub("/+$", ""))
  end,
  string = function(v)
    if type(v) == "table" then return nil, "is not a string" end
    return tostring(v)
  end,
  listener = function(v)
    local t = tostring(v):upper()
    if t == "KAFKA" or t == "ACTIONS_ONLY" then
      return nil, "is an Ocean listener lua-ocean does not support (use POLLING, ONCE, WEBHOOKS_ONLY or WEBHOOK)"
    end
    if not LISTENERS[t] then
      return nil, "is not a listener type (use POLLING, ONCE, WEBHOOKS_ONLY or WEBHOOK)"
    end
    return t
  end,
  level = function(v)
    local t = tostring(v):upper()
    if t == "WARN" then t = "WARNING" end
    if t == "CRITICAL" then t = "ERROR" end
    if not ({ DEBUG = 1, INFO = 1, WARNING = 1, ERROR = 1 })[t] then
      return nil, "is not a log level (use DEBUG, INFO, WARNING or ERROR)"
    end
    return t
  end,
}

-- }====================

-- The settings: {dotted path in settings, env var, config.yaml path,
-- parser, default}
local SETTINGS = {
  { "port.client_id", "OCEAN__PORT__CLIENT_ID", "port.client_id", "string" },
  { "port.client_secret", "OCEAN__PORT__CLIENT_SECRET", "port.client_secret", "string" },
  { "port.base_url", "OCEAN__PORT__BASE_URL", "port.base_url", "url", "https://api.getport.io" },
  { "port.concurrency", "OCEAN__PORT__CONCURRENCY", "port.concurrency", "int", 5 },
  { "port.verify_tls", "OCEAN__SSL__PORT__VERIFY", "ssl.port.verify", "bool", true },
  { "integration.identifier", "OCEAN__INTEGRATION__IDENTIFIER",
    "integration.identifier", "string" },
  { "integration.type", "OCEAN__INTEGRATION__TYPE", "integration.type", "string" },
  { "integration.version", "OCEAN__INTEGRATION__VERSION", "integration.version", "string" },
  { "event_listener.type", "OCEAN__EVENT_LISTENER__TYPE",
    "event_listener.type", "listener", "POLLING" },
  { "event_listener.interval", "OCEAN__EVENT_LISTENER__INTERVAL",
    "event_listener.interval", "positive", 60 },
  { "event_listener.resync_on_start", "OCEAN__EVENT_LISTENER__RESYNC_ON_START",
    "event_listener.resync_on_start", "bool", true },
  { "scheduled_resync_interval", "OCEAN__SCHEDULED_RESYNC_INTERVAL",
    "scheduled_resync_interval", "positive" },
  { "initialize_port_resources", "OCEAN__INITIALIZE_PORT_RESOURCES",
    "initialize_port_resources", "bool", true },
  { "allow_env_jq", "OCEAN__ALLOW_ENVIRONMENT_VARIABLES_JQ_ACCESS",
    "allow_environment_variables_jq_access", "bool", false },
  -- the budget of each mapped item (docs/jq.md)
  { "mapping_time_limit", "OCEAN__MAPPING_TIME_LIMIT", "mapping_time_limit", "limit", 5 },
  { "mapping_memory_limit", "OCEAN__MAPPING_MEMORY_LIMIT", "mapping_memory_limit", "limit", 256 },
  { "entity_deletion_threshold", "OCEAN__ENTITY_DELETION_THRESHOLD",
    "entity_deletion_threshold", "ratio" },
  { "upsert_batch_max_length", "OCEAN__UPSERT_ENTITIES_BATCH_MAX_LENGTH",
    "upsert_entities_batch_max_length", "int", 20 },
  { "upsert_batch_max_bytes", "OCEAN__UPSERT_ENTITIES_BATCH_MAX_SIZE_IN_BYTES",
    "upsert_entities_batch_max_size_in_bytes", "int", 1048576 },
  { "delete_batch_max", "OCEAN__DELETE_ENTITIES_MAX_BATCH_SIZE",
    "delete_entities_max_batch_size", "int", 100 },
  { "client_timeout", "OCEAN__CLIENT_TIMEOUT", "client_timeout", "positive", 60 },
  { "third_party_verify_tls", "OCEAN__SSL__THIRD_PARTY__VERIFY",
    "ssl.third_party.verify", "bool", true },
  { "base_url", "OCEAN__BASE_URL", "base_url", "url" },
  { "log_level", "APPLICATION__LOG_LEVEL", "application.log_level", "level", "INFO" },
  { "http_port", "APPLICATION__PORT", "application.port", "int", 8000 },
}
_M.SETTINGS = SETTINGS

local function get_path(t, path)
  for part in path:gmatch("[^.]+") do
    if type(t) ~= "table" then return nil end
    t = t[part]
  end
  return t
end

local function set_path(t, path, v)
  local parts = {}
  for part in path:gmatch("[^.]+") do parts[#parts + 1] = part end
  for i = 1, #parts - 1 do
    t[parts[i]] = t[parts[i]] or {}
    t = t[parts[i]]
  end
  t[parts[#parts]] = v
end

local function make_getenv(env)
  if type(env) == "function" then return env end
  if type(env) == "table" then return function(n) return env[n] end end
  return os.getenv
end

-- The spec's `configurations` -> integration.config, typed and checked.
local function integration_config(spec, yaml_cfg, overrides, getenv, env_names)
  local out, secrets = {}, {}
  local declared = {}
  local yaml_vals = get_path(yaml_cfg, "integration.config") or {}
  local over_vals = get_path(overrides, "integration.config") or {}
  for _, c in ipairs(spec.configurations or {}) do
    local name = snake(c.name)
    declared[name] = true
    local env_name = "OCEAN__INTEGRATION__CONFIG__" .. name:upper()
    local v = over_vals[name]
    if v == nil then v = over_vals[c.name] end
    if v == nil then v = getenv(env_name) end
    if v == nil then v = yaml_vals[name] end
    if v == nil and c.default ~= nil and c.default ~= json.null then v = c.default end
    if v == nil and c.required then
      return nil, ("missing integration setting '%s': set %s (or integration.config.%s in config.yaml)")
        :format(c.name, env_name, c.name)
    end
    if v ~= nil then
      local t = c.type or "string"
      if t == "boolean" then
        local b = parse_bool(v)
        if b == nil then
          return nil, ("invalid %s: %q is not a boolean"):format(env_name, tostring(v))
        end
        v = b
      elseif t == "integer" or t == "number" then
        local n = parse_number(v)
        if not n then
          return nil, ("invalid %s: %q is not a number"):format(env_name, tostring(v))
        end
        v = n
      elseif (t == "object" or t == "array") and type(v) == "string" then
        local d, err = json.decode(v)
        if d == nil then
          return nil, ("invalid %s: expected JSON (%s)"):format(env_name, err)
        end
        v = d
      elseif t == "url" and type(v) == "string" and not v:match("^%a[%w+.-]*://") then
        return nil, ("invalid %s: %q is not a URL"):format(env_name, v)
      end
      if c.sensitive and type(v) == "string" then secrets[#secrets + 1] = v end
      out[name] = v
    end
  end
  -- Values given without a spec entry are passed through too (Ocean
  -- allows extra config); environment variables need no declaration.
  for _, n in ipairs(env_names) do
    local name = n:match("^OCEAN__INTEGRATION__CONFIG__(.+)$")
    if name and not declared[name:lower()] then
      out[name:lower()] = getenv(n)
    end
  end
  for k, v in pairs(yaml_vals) do
    if out[k] == nil and not declared[k] then out[k] = v end
  end
  for k, v in pairs(over_vals) do
    local sk = snake(k)
    if out[sk] == nil and not declared[sk] then out[sk] = v end
  end
  return out, secrets
end

-- Names of the OCEAN__INTEGRATION__CONFIG__* variables in an env table.
-- (With os.getenv the environment can't be listed: settings must then be
-- declared in .port/spec.yaml, as Ocean requires.)
local function env_config_names(env)
  local names = {}
  if type(env) == "table" then
    for k in pairs(env) do
      if type(k) == "string" and k:find("^OCEAN__INTEGRATION__CONFIG__") then
        names[#names + 1] = k
      end
    end
  end
  table.sort(names)
  return names
end

local function load_spec(path)
  local file = path .. "/.port/spec.yaml"
  if not file_exists(file) then return {} end
  local spec, err = yaml.load_file(file)
  if spec == nil then return nil, err end
  if type(spec) ~= "table" then return nil, file .. ": expected a mapping" end
  return spec
end

function _M.load(opts)
  opts = opts or {}
  local path = opts.path or "."
  local getenv = make_getenv(opts.env)
  local overrides = opts.overrides or {}
  local settings = { path = path, port = {}, integration = {}, event_listener = {} }

  local spec, err = load_spec(path)
  if not spec then return nil, err end
  settings.spec = spec

  local yaml_cfg = {}
  local cfg_file = path .. "/config.yaml"
  if file_exists(cfg_file) then
    local raw, yerr = yaml.load_file(cfg_file)
    if raw == nil then return nil, yerr end
    if type(raw) == "table" then yaml_cfg = substitute(raw, getenv) or {} end
  end

  for _, s in ipairs(SETTINGS) do
    local key, env_name, ypath, kind, default = s[1], s[2], s[3], s[4], s[5]
    local v, source = get_path(overrides, key), "the overrides"
    if v == nil then v, source = getenv(env_name), env_name end
    if v == nil or v == "" then v, source = get_path(yaml_cfg, ypath), cfg_file end
    if v ~= nil then
      local parsed, perr = parsers[kind](v)
      if parsed == nil then
        local what = type(v) == "string" and ("%q"):format(v) or tostring(v)
        local from = source == env_name and "" or (" (%s)"):format(source)
        return nil, ("invalid %s%s: %s %s"):format(env_name, from, what, perr)
      end
      v = parsed
    else
      v = default
    end
    set_path(settings, key, v)
  end

  local itype = settings.integration.type or spec.type
  if type(itype) ~= "string" or itype == "" then
    return nil, "missing integration type: set OCEAN__INTEGRATION__TYPE or `type` in .port/spec.yaml"
  end
  settings.integration.type = itype:lower()
  settings.integration.identifier = settings.integration.identifier
    or ("my-%s-integration"):format(settings.integration.type)
  settings.integration.version = settings.integration.version
    or (type(spec.version) == "string" and spec.version) or "0.1.0"

  local icfg, secrets = integration_config(spec, yaml_cfg, overrides, getenv,
    env_config_names(opts.env))
  if not icfg then return nil, secrets end
  settings.integration.config = icfg
  settings.secrets = secrets
  if settings.port.client_secret then
    table.insert(settings.secrets, settings.port.client_secret)
  end

  local mapping_file = path .. "/.port/resources/port-app-config.yml"
  if not file_exists(mapping_file) then
    mapping_file = path .. "/.port/resources/port-app-config.yaml"
  end
  if file_exists(mapping_file) then
    local m, merr = yaml.load_file(mapping_file)
    if m == nil then return nil, merr end
    settings.default_mapping = m
  end
  local bp_file = path .. "/.port/resources/blueprints.json"
  local bp_text = read_file(bp_file)
  if bp_text then
    local bps, berr = json.decode(bp_text)
    if bps == nil then return nil, bp_file .. ": " .. berr end
    settings.blueprints = bps
  end
  return settings
end

-- Settings needed to talk to Port; nil, err naming the first missing one.
function _M.require_port(settings)
  if not settings.port.client_id or settings.port.client_id == "" then
    return nil, "missing Port client id: set OCEAN__PORT__CLIENT_ID (or port.clientId in config.yaml)"
  end
  if not settings.port.client_secret or settings.port.client_secret == "" then
    return nil, "missing Port client secret: set OCEAN__PORT__CLIENT_SECRET (or port.clientSecret in config.yaml)"
  end
  return true
end

return _M
