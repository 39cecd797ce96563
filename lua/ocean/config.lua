-- ocean.config: an integration's settings, as Ocean reads them.
--
-- Sources, highest priority first: explicit overrides (a table, e.g. from
-- the OpenResty adapter) -> OCEAN__* environment variables (a field's own,
-- then the JSON object of a nested group) -> config.yaml in
-- the integration folder (camelCase keys; string values may be
-- "{{ from env NAME }}") -> .port/spec.yaml defaults -> built-in defaults.
--
--   config.load{path=, env=, overrides=} -> settings | nil, err
--     env: a table of variables or a function(name) -> value (default os.getenv)
--   settings.port        {client_id, client_secret, base_url, concurrency, verify_tls}
--   settings.integration {identifier, type, version, config = {...}}
--   settings.event_listener {type, interval, resync_on_start}
--   settings.scheduled_resync_interval (minutes | nil), settings.initialize_port_resources,
--   settings.metrics {enabled}  (OCEAN__METRICS__ENABLED: GET /metrics, ocean.metrics)
--   settings.allow_env_jq, settings.entity_deletion_threshold (nil = mapping's),
--   settings.mapping_time_limit (s), settings.mapping_memory_limit (MiB; 0 = none),
--   settings.upsert_batch_max_length, settings.upsert_batch_max_bytes,
--   settings.delete_batch_max, settings.client_timeout, settings.third_party_verify_tls,
--   settings.log_level, settings.http_port, settings.base_url,
--   settings.http {max_connections, max_connections_per_client,
--                  header_timeout, body_timeout, max_body (bytes, 25 MiB)}
--                  (the server's limits; nil: ocean.server's defaults)
--   settings.live_events {journal_dir (nil: the integration folder's
--                  .ocean/journal; see ocean.journal), concurrency (events
--                  applied at once, 100), max_attempts (5), window_ms (the
--                  live session's batch window, 1..1000, default 50)}
--   settings.log {progress_interval (s between a running kind's progress
--                  lines, 10), item_errors (per kind and kind of problem,
--                  the item errors logged one by one before "... and N
--                  more", 10)}
--   settings.spec, settings.default_mapping, settings.blueprints,
--   settings.secrets  (strings to mask: sensitive values, stripped, non-blank)
--   settings.warnings (said at WARNING by load unless the level is ERROR:
--                      undeclared OCEAN__INTEGRATION__CONFIG__* names and
--                      config.yaml integration.config keys, with the
--                      closest declared name; OCEAN__* names it does not
--                      read, with the closest one it reads)
-- A nested group may also be one variable holding a JSON object, as in
-- Ocean (OCEAN__PORT='{"client_id": ...}'): see "nested settings as JSON".
--   config.decamelize(name) -> humps.decamelize(name) (see below)
local yaml = require "ocean.yaml"
local json = require "ocean.json"
local log = require "ocean.log"

local pairs, ipairs, type, tostring, tonumber = pairs, ipairs, type, tostring, tonumber

local _M = {}

local LISTENERS = {
  POLLING = true, ONCE = true, WEBHOOKS_ONLY = true, WEBHOOK = true,
}

-- {==================== key names (humps.decamelize) ====================

-- Ocean converts setting names with pyhumps 3.8.0's `decamelize` (the
-- version its lock file pins), and so must we: a spec.yaml configuration
-- `bitbucketIsVersion8Point7OrOlder` is read from
-- OCEAN__INTEGRATION__CONFIG__BITBUCKET_IS_VERSION8_POINT7_OR_OLDER and
-- exposed as `bitbucket_is_version8_point7_or_older`. The steps are
-- humps' own, on ASCII (bytes above 127 are left as they are):
--   1. whitespace is removed; a name that is then all upper case (at least
--      one A-Z, no a-z) or all digits is returned as given ("ID" stays "ID");
--   2. acronyms are title-cased: each maximal run of [A-Z0-9] loses its
--      last character unless it ends the name, and what is left becomes
--      "Xxx" ("HTTPServer" -> "HttpServer", "userID" -> "userId");
--   3. the name is split before each upper-case letter (a run of - and _
--      in front of it goes with it) and joined with "_", in lower case.
-- So digits never start a word: "version8Point" -> "version8_point",
-- "S3Bucket" -> "s3_bucket"; hyphens are kept ("x-api-key").

local function title_run(run)
  return (run:gsub("(%a)(%a*)", function(a, b) return a:upper() .. b:lower() end))
end

local function fix_abbreviations(s)
  local out, pos, n = {}, 1, #s
  while true do
    local a, b = s:find("[A-Z0-9]+", pos)
    if not a then break end
    out[#out + 1] = s:sub(pos, a - 1)
    if b == n then
      out[#out + 1] = title_run(s:sub(a, b))
    elseif b > a then
      out[#out + 1] = title_run(s:sub(a, b - 1)) .. s:sub(b, b)
    else
      out[#out + 1] = s:sub(a, b)
    end
    pos = b + 1
  end
  out[#out + 1] = s:sub(pos)
  return table.concat(out)
end

local function separate_words(s)
  local words, pos, n = {}, 1, #s
  while pos <= n do
    local a, b = s:find("[_%-]*[A-Z]", pos)
    if not a then
      words[#words + 1] = s:sub(pos)
      break
    end
    words[#words + 1] = s:sub(pos, a - 1)
    local nxt = s:find("[A-Z]", b + 1) or n + 1
    words[#words + 1] = s:sub(a, nxt - 1)
    pos = nxt
  end
  local kept = {}
  for _, w in ipairs(words) do
    if w ~= "" then kept[#kept + 1] = w end
  end
  return table.concat(kept, "_")
end

-- decamelize(name) -> name as humps.decamelize gives it (see above).
local function decamelize(name)
  local s = tostring(name):gsub("%s+", "")
  if (s:find("[A-Z]") and not s:find("[a-z]")) or s:match("^%d+$") then
    return name
  end
  return (separate_words(fix_abbreviations(s)):lower())
end
_M.decamelize = decamelize

-- }====================

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

-- Substitute "{{ from env NAME }}" in every string of a config.yaml tree
-- (keys are left alone: see normalize_keys).
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
  elseif json.is_array(v) then
    local out = json.array {}
    for i, x in ipairs(v) do out[i] = substitute(x, getenv) end
    return out
  elseif type(v) == "table" and v ~= json.null then
    local out = {}
    for k, x in pairs(v) do out[k] = substitute(x, getenv) end
    return out
  end
  if v == json.null then return nil end
  return v
end

-- config.yaml's keys as Ocean reads them: decamelized at every level of
-- its settings model, but under integration.config only the setting
-- names are; their values (an object-typed setting's keys, e.g. GitLab's
-- tokenMapping whose keys are tokens) stay verbatim.
local function normalize_keys(t, path)
  if type(t) ~= "table" or json.is_array(t) or t == json.null then return t end
  local out = {}
  for k, v in pairs(t) do
    local nk = type(k) == "string" and decamelize(k) or k
    local sub = path and (path .. "." .. tostring(nk)) or tostring(nk)
    if path == "integration.config" then
      out[nk] = v
    else
      out[nk] = normalize_keys(v, sub)
    end
  end
  return out
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

-- A whole number in min..1000000 (the HTTP server's limits).
local function parse_count(v, min)
  local n = parse_number(v)
  if not n or n ~= math.floor(n) or n < min or n > 1000000 then
    return nil, ("is not a whole number between %d and 1000000"):format(min)
  end
  return math.tointeger and math.tointeger(n) or n
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
  count = function(v) return parse_count(v, 0) end,
  count1 = function(v) return parse_count(v, 1) end,
  window = function(v)             -- the live session's batch window, ms
    local n = parse_number(v)
    if not n or n ~= math.floor(n) or n < 1 or n > 1000 then
      return nil, "is not a whole number of milliseconds between 1 and 1000"
    end
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
    return log.parse_level(v)
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
  { "metrics.enabled", "OCEAN__METRICS__ENABLED", "metrics.enabled", "bool", false },
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
  { "http.max_connections", "OCEAN__HTTP__MAX_CONNECTIONS", "http.max_connections", "count1" },
  { "http.max_connections_per_client", "OCEAN__HTTP__MAX_CONNECTIONS_PER_CLIENT",
    "http.max_connections_per_client", "count" },
  { "http.header_timeout", "OCEAN__HTTP__HEADER_TIMEOUT", "http.header_timeout", "count1" },
  { "http.body_timeout", "OCEAN__HTTP__BODY_TIMEOUT", "http.body_timeout", "count1" },
  -- GitHub's largest webhook (25 MB), as the nginx recipe's client_max_body_size
  { "http.max_body", "OCEAN__HTTP__MAX_BODY_BYTES", "http.max_body_bytes", "count1", 26214400 },
  { "live_events.journal_dir", "OCEAN__LIVE_EVENTS__JOURNAL_DIR", "live_events.journal_dir",
    "string" },
  { "live_events.concurrency", "OCEAN__LIVE_EVENTS__CONCURRENCY", "live_events.concurrency",
    "count1", 100 },
  { "live_events.max_attempts", "OCEAN__LIVE_EVENTS__MAX_ATTEMPTS", "live_events.max_attempts",
    "count1", 5 },
  { "live_events.window_ms", "OCEAN__LIVE_EVENTS__WINDOW_MS", "live_events.window_ms",
    "window", 50 },
  { "live_events.stall_seconds", "OCEAN__LIVE_EVENTS__STALL_SECONDS",
    "live_events.stall_seconds", "count1", 30 },
  { "log.progress_interval", "OCEAN__LOG__PROGRESS_INTERVAL", "log.progress_interval",
    "positive", 10 },
  { "log.item_errors", "OCEAN__LOG__ITEM_ERRORS", "log.item_errors", "count", 10 },
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

-- {==================== the integration's own settings ====================

local CONFIG_PREFIX = "OCEAN__INTEGRATION__CONFIG__"
local CONFIG_TYPES = { string = true, integer = true, number = true, boolean = true,
                       object = true, array = true, url = true }

-- A sensitive value as the strings to mask: a string stripped of
-- surrounding whitespace (Ocean strips before masking; a blank one masks
-- nothing), numbers as text, and every key and string inside an object or
-- array (a tokenMapping's keys are tokens).
local function secret_strings(v, out)
  if type(v) == "string" then
    local s = v:match("^%s*(.-)%s*$")
    if s ~= "" then out[#out + 1] = s end
  elseif type(v) == "number" then
    out[#out + 1] = tostring(v)
  elseif type(v) == "table" and v ~= json.null then
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(x, y) return tostring(x) < tostring(y) end)
    for _, k in ipairs(keys) do
      if type(k) == "string" then secret_strings(k, out) end
      secret_strings(v[k], out)
    end
  end
  return out
end

-- Restricted Damerau-Levenshtein distance (a transposition costs 1).
local function edit_distance(a, b)
  local prev2, prev = nil, {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      local d = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
      if prev2 and i > 1 and j > 1 and a:byte(i) == b:byte(j - 1)
         and a:byte(i - 1) == b:byte(j) then
        d = math.min(d, prev2[j - 2] + 1)
      end
      cur[j] = d
    end
    prev2, prev = prev, cur
  end
  return prev[#b]
end
_M.edit_distance = edit_distance

-- The known name closest to `name` (case-insensitive), when it is close
-- enough to be a typo: at most 2 edits, or a third of the name's length.
local function closest(name, known)
  local best, best_d
  local lname = name:lower()
  for _, k in ipairs(known) do
    local d = edit_distance(lname, k:lower())
    if d <= math.max(2, math.floor(#k / 3)) and (not best_d or d < best_d
       or (d == best_d and k < best)) then
      best, best_d = k, d
    end
  end
  return best
end
_M.closest = closest

-- One warning for a setting given but not declared in .port/spec.yaml.
local function unknown_setting(given, known, as_name, where)
  local suggestion = closest(given, known)
  local msg = ("unknown integration setting %s%s: .port/spec.yaml declares no such configuration")
    :format(as_name(given), where)
  if suggestion then
    return msg .. ("; did you mean %s?"):format(as_name(suggestion))
  elseif #known > 0 then
    local names = {}
    for i = 1, math.min(#known, 8) do names[i] = as_name(known[i]) end
    return msg .. (" (it declares %s%s)"):format(table.concat(names, ", "),
      #known > 8 and ", ..." or "")
  end
  return msg .. " (it declares none)"
end

-- One configuration's value, typed as the spec says. Returns the value |
-- nil, err (the message names env_name).
local function typed(c, v, env_name)
  local t = c.type or "string"
  if t == "boolean" then
    local b = parse_bool(v)
    if b == nil then return nil, ("invalid %s: %q is not a boolean"):format(env_name, tostring(v)) end
    return b
  elseif t == "integer" or t == "number" then
    local n = parse_number(v)
    if not n then return nil, ("invalid %s: %q is not a number"):format(env_name, tostring(v)) end
    if t == "integer" then
      if n ~= math.floor(n) then
        return nil, ("invalid %s: %q is not an integer"):format(env_name, tostring(v))
      end
      n = math.tointeger and math.tointeger(n) or n
    end
    return n
  elseif t == "object" or t == "array" then
    if type(v) == "string" then
      local d, err = json.decode(v)
      if d == nil then return nil, ("invalid %s: expected JSON (%s)"):format(env_name, err) end
      v = d
    end
    local is_arr = json.is_array(v) or (type(v) == "table" and next(v) == nil and t == "array")
    if type(v) ~= "table" or v == json.null or (t == "array") ~= is_arr then
      return nil, ("invalid %s: expected a JSON %s"):format(env_name, t)
    end
    if t == "array" and not json.is_array(v) then v = json.array(v) end
    return v
  elseif t == "url" then
    if type(v) ~= "string" then return nil, ("invalid %s: not a URL"):format(env_name) end
    if v ~= "/" then v = v:gsub("/+$", "") end        -- as Ocean's NoTrailingSlashUrl
    if not v:match("^%a[%w+.-]*://[^/%s]") then
      return nil, ("invalid %s: %q is not a URL"):format(env_name, v)
    end
    return v
  end
  if type(v) == "table" then return nil, ("invalid %s: expected a string"):format(env_name) end
  return tostring(v)
end

-- The spec's `configurations` -> integration.config, typed and checked.
-- Returns config, secrets, warnings | nil, err.
local function integration_config(spec, yaml_cfg, overrides, getenv, given_names, json_vals)
  local out, secrets, warnings = {}, {}, {}
  local declared, known = {}, {}
  local yaml_vals = get_path(yaml_cfg, "integration.config") or {}
  local over_vals = get_path(overrides, "integration.config") or {}
  local confs = spec.configurations or {}
  if type(confs) ~= "table" or (next(confs) ~= nil and not json.is_array(confs)) then
    return nil, ".port/spec.yaml: `configurations` must be a list"
  end
  for i, c in ipairs(confs) do
    if type(c) ~= "table" or type(c.name) ~= "string" or c.name == "" then
      return nil, (".port/spec.yaml: configurations[%d] needs a `name`"):format(i)
    end
    local ctype = c.type == nil and "string" or c.type
    if not CONFIG_TYPES[ctype] then
      return nil, (".port/spec.yaml: configuration '%s' has unknown type '%s'"
        .. " (use string, integer, boolean, object, array or url)"):format(c.name, tostring(ctype))
    end
    local name = decamelize(c.name)
    declared[name] = true
    known[#known + 1] = name
    local env_name = CONFIG_PREFIX .. name:upper()
    local v = over_vals[name]
    if v == nil then v = over_vals[c.name] end
    if v == nil then v = getenv(env_name) end
    if v == nil then v = json_vals[name] end
    if v == nil then v = yaml_vals[name] end
    if v == nil and c.default ~= nil and c.default ~= json.null then v = c.default end
    if v == nil and c.required then
      return nil, ("missing integration setting '%s': set %s (or integration.config.%s in config.yaml)")
        :format(c.name, env_name, c.name)
    end
    if v ~= nil then
      local tv, err = typed(c, v, env_name)
      if tv == nil then return nil, err end
      if c.sensitive then secret_strings(tv, secrets) end
      out[name] = tv
    end
  end
  table.sort(known)
  -- Values given without a spec entry are passed through (as before), but
  -- said: most often they are a typo of a declared name.
  for _, n in ipairs(given_names) do
    local name = n:sub(#CONFIG_PREFIX + 1)
    if not declared[name:lower()] then
      local upper_known = {}
      for i, k in ipairs(known) do upper_known[i] = k:upper() end
      warnings[#warnings + 1] = unknown_setting(name, upper_known,
        function(x) return CONFIG_PREFIX .. x end, "")
      out[name:lower()] = getenv(n)
    end
  end
  local json_names = {}
  for k in pairs(json_vals) do json_names[#json_names + 1] = tostring(k) end
  table.sort(json_names)
  for _, k in ipairs(json_names) do
    if not declared[k] then
      warnings[#warnings + 1] = unknown_setting(k, known, function(x)
        return x end, " in OCEAN__INTEGRATION__CONFIG's JSON")
      if out[k] == nil then out[k] = json_vals[k] end
    end
  end
  local yaml_names = {}
  for k in pairs(yaml_vals) do yaml_names[#yaml_names + 1] = tostring(k) end
  table.sort(yaml_names)
  for _, k in ipairs(yaml_names) do
    if not declared[k] then
      warnings[#warnings + 1] = unknown_setting(k, known, function(x)
        return x end, " in config.yaml's integration.config")
      if out[k] == nil then out[k] = yaml_vals[k] end
    end
  end
  for k, v in pairs(over_vals) do
    local sk = decamelize(k)
    if out[sk] == nil and not declared[sk] then out[sk] = v end
  end
  return out, secrets, warnings
end

-- Names of the variables starting with `prefix` (and longer): those of an
-- env table, or of the process's environment (/proc/self/environ:
-- os.getenv can't list it; elsewhere the list is empty and typos go
-- unreported).
local function env_names(env, prefix)
  local names = {}
  local function consider(k)
    if type(k) == "string" and k:sub(1, #prefix) == prefix and #k > #prefix then
      names[#names + 1] = k
    end
  end
  if type(env) == "table" then
    for k in pairs(env) do consider(k) end
  elseif env == nil then
    local text = read_file("/proc/self/environ") or ""
    for entry in text:gmatch("[^%z]+") do consider(entry:match("^([^=]*)=")) end
  end
  table.sort(names)
  return names
end

-- }====================

-- {==================== nested settings as JSON ====================

-- Ocean (pydantic's BaseSettings, env_nested_delimiter "__") also takes a
-- nested model as one variable holding a JSON object:
-- OCEAN__EVENT_LISTENER='{"type": "ONCE"}', OCEAN__PORT='{"client_id": ...}',
-- OCEAN__INTEGRATION='{"identifier": ..., "config": {...}}',
-- OCEAN__INTEGRATION__CONFIG='{"apiToken": ...}'. As in pydantic, the
-- variable of the field itself wins (its __ form), then the nearest JSON
-- parent (OCEAN__SSL__PORT before OCEAN__SSL). Keys are decamelized as in
-- config.yaml; integration.config's values stay verbatim.

-- "OCEAN__SSL__THIRD_PARTY__VERIFY" -> { "SSL", "THIRD_PARTY", "VERIFY" }
-- (split on "__"; a single "_" belongs to the name).
local function segments(env_name)
  local segs, rest = {}, env_name:sub(8)
  while true do
    local i = rest:find("__", 1, true)
    if not i then segs[#segs + 1] = rest return segs end
    segs[#segs + 1] = rest:sub(1, i - 1)
    rest = rest:sub(i + 2)
  end
end

-- The parents of every OCEAN__* setting: OCEAN__PORT, OCEAN__SSL__PORT...
local JSON_PARENTS = {}
for _, st in ipairs(SETTINGS) do
  if st[2]:sub(1, 7) == "OCEAN__" then
    local segs = segments(st[2])
    for i = 1, #segs - 1 do
      JSON_PARENTS["OCEAN__" .. table.concat(segs, "__", 1, i)] = true
    end
  end
end
JSON_PARENTS["OCEAN__INTEGRATION__CONFIG"] = true

-- The decoded, key-normalized object of parent variable `name` (cached in
-- `cache`): the object | false (unset) | nil, err.
local function json_parent(getenv, cache, name)
  local c = cache[name]
  if c ~= nil then return c end
  local raw = getenv(name)
  if raw == nil or raw == "" then
    cache[name] = false
    return false
  end
  local v, err = json.decode(raw)
  if type(v) ~= "table" or v == json.null or json.is_array(v) then
    return nil, ("invalid %s: expected a JSON object (Ocean's form of its nested settings)%s")
      :format(name, err and (": " .. tostring(err)) or "")
  end
  local path = name:sub(8):lower():gsub("__", ".")
  -- the object's own keys are setting names: normalized as its children
  local wrapped = normalize_keys({ [path:match("[^.]+$")] = v }, path:match("^(.*)%.[^.]+$"))
  v = wrapped[path:match("[^.]+$")]
  cache[name] = v
  return v
end

-- The value of setting `env_name` from the nearest JSON parent that holds
-- it: value, parent's name | nil | nil, nil, err.
local function from_json_parents(getenv, cache, env_name)
  if env_name:sub(1, 7) ~= "OCEAN__" then return nil end
  local segs = segments(env_name)
  for depth = #segs - 1, 1, -1 do
    local parent = "OCEAN__" .. table.concat(segs, "__", 1, depth)
    local obj, err = json_parent(getenv, cache, parent)
    if obj == nil then return nil, nil, err end
    local v = obj
    for i = depth + 1, #segs do
      if type(v) ~= "table" or v == json.null then v = nil break end
      v = v[segs[i]:lower()]
    end
    if v ~= nil and v ~= json.null then return v, parent end
  end
  return nil
end

-- One warning per OCEAN__* variable lua-ocean does not read (integration
-- settings are checked against .port/spec.yaml apart), with the closest
-- name it does read.
local function unknown_top_level(env)
  local known, is_known = {}, {}
  for _, st in ipairs(SETTINGS) do
    if st[2]:sub(1, 7) == "OCEAN__" then known[#known + 1] = st[2] end
  end
  for name in pairs(JSON_PARENTS) do known[#known + 1] = name end
  table.sort(known)
  for _, k in ipairs(known) do is_known[k] = true end
  local out = {}
  for _, n in ipairs(env_names(env, "OCEAN__")) do
    if not is_known[n] and n:sub(1, #CONFIG_PREFIX) ~= CONFIG_PREFIX then
      local suggestion = closest(n, known)
      out[#out + 1] = ("unknown setting %s: lua-ocean reads no such variable%s"):format(n,
        suggestion and ("; did you mean %s?"):format(suggestion) or "")
    end
  end
  return out
end

-- }====================

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
    if type(raw) == "table" then yaml_cfg = normalize_keys(substitute(raw, getenv) or {}) end
  end

  local json_cache = {}
  for _, s in ipairs(SETTINGS) do
    local key, env_name, ypath, kind, default = s[1], s[2], s[3], s[4], s[5]
    local v, source = get_path(overrides, key), "the overrides"
    if v == nil then v, source = getenv(env_name), env_name end
    if v == nil or v == "" then
      local jv, parent, jerr = from_json_parents(getenv, json_cache, env_name)
      if jerr then return nil, jerr end
      v, source = jv, parent
    end
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

  -- integration.config given as JSON: OCEAN__INTEGRATION's "config", then
  -- OCEAN__INTEGRATION__CONFIG (nearer, wins)
  local json_icfg = {}
  for _, name in ipairs { "OCEAN__INTEGRATION", "OCEAN__INTEGRATION__CONFIG" } do
    local obj, jerr = json_parent(getenv, json_cache, name)
    if obj == nil then return nil, jerr end
    if obj and name == "OCEAN__INTEGRATION" then obj = obj.config end
    if type(obj) == "table" and obj ~= json.null and not json.is_array(obj) then
      for k, v in pairs(obj) do json_icfg[k] = v end
    end
  end
  local icfg, secrets, warnings = integration_config(spec, yaml_cfg, overrides, getenv,
    env_names(opts.env, CONFIG_PREFIX), json_icfg)
  if not icfg then return nil, secrets end
  for _, w in ipairs(unknown_top_level(opts.env)) do warnings[#warnings + 1] = w end
  settings.integration.config = icfg
  settings.secrets = secrets
  if settings.port.client_secret then
    secret_strings(settings.port.client_secret, settings.secrets)
  end
  -- Said now, before anything else can fail on the setting's absence.
  settings.warnings = warnings
  if log.LEVELS[settings.log_level] <= log.LEVELS.WARNING then
    for _, w in ipairs(warnings) do log.warning("%s", w) end
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
