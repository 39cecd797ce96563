-- ocean.selector: the shape an integration declares for the custom fields
-- of a kind's selector (Ocean's custom ResourceConfig / Selector classes:
-- Jira's `jql`, GitHub's repository filters, PagerDuty's
-- `apiQueryParams`), checked whenever a resync reads the mapping, and the
-- port app config's JSON Schema (`ocean port-app-config schema [PATH]`).
--
--   ocean.selector_schema("issue", {
--     jql = { type = "string", required = true, description = "JQL filter" },
--     includeArchived = { type = "boolean", default = false },
--     apiQueryParams = { type = "object", properties = {
--       status = { type = "array", items = { type = "string" } } } },
--     state = { type = "string", enum = { "open", "closed" } },
--   })
--
-- A field: type (string, number, integer, boolean, object, array), and
-- optionally required, default, description, enum (a list of allowed
-- values), items (an array's element, a field), properties (an object's
-- fields). `query` is always there (a jq expression, a string). Fields
-- not declared pass through unchecked, as Ocean keeps them.
--
--   selector.check_field_specs(fields, kind)  misuse raises a usage error
--     naming the kind and the field (a wrong type, a default that is not
--     of the field's type or enum), at the caller's caller
--   selector.is_usage_error(e)  whether e was such an error (shown
--     without a traceback by ocean.integration.load)
--   selector.check(fields, resource) -> copy with defaults | nil, err
--     err names every field that is wrong, "; "-separated:
--     "selector.jql: required, missing";
--     "selector.apiQueryParams.status[2]: expected a string, got a number"
--   selector.json_schema(kinds, title, catch_all) -> a JSON Schema
--     (draft-07) table of the whole port app config; kinds: {[kind] =
--     fields | false}; catch_all (or no kind): any kind is valid too
--   selector.main(args)  the `ocean port-app-config` command
local json = require "ocean.json"

local type, pairs, ipairs, tostring, error, next = type, pairs, ipairs, tostring, error, next
local format = string.format
local math_type = math.type

local _M = {}

local TYPES = { string = true, number = true, integer = true, boolean = true,
                object = true, array = true }
local SPEC_KEYS = { type = true, required = true, default = true, description = true,
                    enum = true, items = true, properties = true }

-- {==================== declarations ====================

-- Misuse of the declaration is a usage error: raised as a plain message
-- with the caller's place ("main.lua:3: selector_schema: kind 'book':
-- ..."), remembered so that a loader (ocean.integration.load) shows it
-- without a Lua traceback, which says nothing more about a wrong
-- declaration.
local usage_msgs, usage_count = {}, 0

-- info: debug.getinfo of the place to name (nil: none).
local function raise(msg, info)
  if info and info.currentline and info.currentline > 0 then
    local src = info.source and info.source:match("^@(.*)") or info.short_src
    msg = format("%s:%d: %s", src, info.currentline, msg)
  end
  if usage_count > 100 then usage_msgs, usage_count = {}, 0 end
  usage_msgs[msg], usage_count = true, usage_count + 1
  error(msg, 0)
end
_M.raise = raise

-- Whether e is a usage error raised by raise().
function _M.is_usage_error(e)
  return type(e) == "string" and usage_msgs[e] == true
end

local check_value

local function check_spec(spec, path, fail)
  if type(spec) ~= "table" then
    return fail(format("%s: expected a table {type = ...}", path))
  end
  for k in pairs(spec) do
    if not SPEC_KEYS[k] then
      return fail(format("%s: unknown key '%s'", path, tostring(k)))
    end
  end
  if not TYPES[spec.type] then
    return fail(format("%s: type must be string, number, integer, boolean, object "
      .. "or array, got %s", path, tostring(spec.type)))
  end
  if spec.enum ~= nil and (type(spec.enum) ~= "table" or spec.enum[1] == nil) then
    return fail(format("%s: enum must be a non-empty list", path))
  end
  if spec.items ~= nil then check_spec(spec.items, path .. "[]", fail) end
  if spec.properties ~= nil then
    if type(spec.properties) ~= "table" then
      return fail(format("%s: properties must be a table of fields", path))
    end
    for k, v in pairs(spec.properties) do check_spec(v, path .. "." .. tostring(k), fail) end
  end
  -- a default must be a value the field accepts (its type, its enum)
  if spec.default ~= nil then
    local errs = {}
    check_value(spec, spec.default, path .. " (default)", errs)
    if errs[1] then return fail(errs[1]) end
  end
end

-- fields: {name = spec}; kind: for the messages. Misuse raises a usage
-- error naming the kind and the field, at the place of the caller's
-- caller (level: 3 from ocean.selector_schema).
function _M.check_field_specs(fields, kind)
  local what = kind and format("selector_schema: kind '%s': ", tostring(kind)) or "selector_schema: "
  local caller = debug.getinfo(3, "Sl")     -- main.lua (ocean.selector_schema tail-calls)
  local function fail(msg) raise(what .. msg, caller) end
  if type(fields) ~= "table" then
    fail("expected a table of fields {name = {type = ...}}")
  end
  local names = {}
  for name in pairs(fields) do
    if type(name) ~= "string" then fail("field names must be strings") end
    names[#names + 1] = name
  end
  table.sort(names)
  for _, name in ipairs(names) do
    if name == "query" then fail("'query' is the selector's own jq query") end
    check_spec(fields[name], "selector." .. name, fail)
  end
end

-- }====================

-- {==================== checking a mapping ====================

-- A list: marked as a JSON array, or a non-empty sequence. An object: any
-- other table (an empty unmarked one too, as YAML's and JSON's {}).
local function is_list(v)
  if type(v) ~= "table" or v == json.null then return false end
  if json.is_array(v) then return true end
  local n = 0
  for _ in pairs(v) do n = n + 1 end
  return n > 0 and n == #v
end

local function is_object(v)
  return type(v) == "table" and v ~= json.null and not is_list(v)
end

local function describe(v)
  if v == json.null then return "null" end
  if is_list(v) then return "an array" end
  if is_object(v) then return "an object" end
  if json.is_number(v) then return "a number" end
  return "a " .. type(v)
end

local function matches(spec, v)
  local t = spec.type
  if t == "string" then return type(v) == "string" end
  if t == "boolean" then return type(v) == "boolean" end
  if t == "number" then return json.is_number(v) end
  if t == "integer" then
    return type(v) == "number" and (math_type and math_type(v) == "integer" or v % 1 == 0)
  end
  -- an empty table unmarked is either: an empty array here
  if t == "array" then return is_list(v) or (type(v) == "table" and next(v) == nil) end
  return is_object(v)
end

-- Every problem is added to errs (a list of messages naming the field),
-- in the fields' name order: a mapping with two wrong fields hears of
-- both at once. Defaults are set only where the value was missing (v is
-- a copy).
local function check_object(spec, v, path, errs)
  local names = {}
  for name in pairs(spec.properties or {}) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local sub = spec.properties[name]
    local x = v[name]
    if x == nil or x == json.null then
      if sub.default ~= nil then
        v[name] = sub.default
      elseif sub.required then
        errs[#errs + 1] = format("%s.%s: required, missing", path, name)
      end
    else
      check_value(sub, x, path .. "." .. name, errs)
    end
  end
end

function check_value(spec, v, path, errs)
  if not matches(spec, v) then
    errs[#errs + 1] = format("%s: expected %s %s, got %s", path,
      (spec.type == "integer" or spec.type == "array" or spec.type == "object") and "an" or "a",
      spec.type, describe(v))
    return
  end
  if spec.enum then
    local found = false
    for _, e in ipairs(spec.enum) do if e == v then found = true end end
    if not found then
      local shown = {}
      for i, e in ipairs(spec.enum) do shown[i] = json.encode(e) end
      errs[#errs + 1] = format("%s: %s is not one of %s", path, json.encode(v),
        table.concat(shown, ", "))
      return
    end
  end
  if spec.type == "array" and spec.items then
    for i, x in ipairs(v) do
      check_value(spec.items, x, format("%s[%d]", path, i), errs)
    end
  elseif spec.type == "object" and spec.properties then
    check_object(spec, v, path, errs)
  end
end

-- resource: one entry of the mapping's resources (a copy: defaults are
-- set in it). Returns it, or nil, err naming the field.
function _M.check(fields, resource)
  if not fields then return resource end
  local sel = resource.selector
  if sel == nil or sel == json.null then
    sel = {}
    resource.selector = sel
  end
  if type(sel) ~= "table" then
    return nil, "selector: expected an object, got " .. describe(sel)
  end
  local errs = {}
  check_object({ properties = fields }, sel, "selector", errs)
  if errs[1] then return nil, table.concat(errs, "; ") end
  return resource
end

-- }====================

-- {==================== JSON Schema ====================

local function field_schema(spec)
  local s = { type = spec.type, description = spec.description, default = spec.default }
  if spec.enum then s.enum = json.array(spec.enum) end
  if spec.items then s.items = field_schema(spec.items) end
  if spec.properties then
    s.properties = {}
    local req = {}
    for name, sub in pairs(spec.properties) do
      s.properties[name] = field_schema(sub)
      if sub.required then req[#req + 1] = name end
    end
    table.sort(req)
    if req[1] then s.required = json.array(req) end
  end
  return s
end

local JQ = { type = "string", description = "a jq expression" }
local JQ_OR_QUERY = { description = "a jq expression, or a search query {combinator, rules}",
                      type = json.array { "string", "object" } }

local PORT = {
  type = "object",
  properties = {
    itemsToParse = JQ, itemsToParseName = { type = "string" },
    itemsToParseTopLevelTransform = { type = "boolean" },
    entity = { type = "object", required = json.array { "mappings" }, properties = {
      mappings = { type = "object", required = json.array { "identifier", "blueprint" },
        properties = {
          identifier = JQ_OR_QUERY, title = JQ, blueprint = JQ, icon = JQ, team = JQ_OR_QUERY,
          properties = { type = "object", additionalProperties = JQ },
          relations = { type = "object", additionalProperties = JQ_OR_QUERY },
        } } } },
  },
  required = json.array { "entity" },
}

-- kinds: {[kind] = fields | false}, every kind the integration knows.
-- catch_all: a resync function registered for every kind (then, or with
-- no kind at all, a resource of any kind is valid too).
function _M.json_schema(kinds, title, catch_all)
  local names = {}
  for k in pairs(kinds) do names[#names + 1] = k end
  table.sort(names)
  local any = json.array {}
  if catch_all or #names == 0 then
    -- a resync function for every kind: any kind, its selector's query
    any[#any + 1] = { type = "object", required = json.array { "kind", "selector", "port" },
      properties = { kind = { type = "string" },
        selector = { type = "object", required = json.array { "query" },
          properties = { query = { type = "string",
            description = "a jq expression giving true or false" } } },
        port = { ["$ref"] = "#/definitions/port" } } }
  end
  for _, kind in ipairs(names) do
    local sel = field_schema { type = "object", properties = kinds[kind] or {} }
    sel.properties.query = { type = "string", description = "a jq expression giving true or false" }
    local req = { "query" }
    for _, r in ipairs(sel.required or {}) do req[#req + 1] = r end
    table.sort(req)
    sel.required = json.array(req)
    any[#any + 1] = { type = "object", required = json.array { "kind", "selector", "port" },
      properties = { kind = { const = kind }, selector = sel, port = { ["$ref"] = "#/definitions/port" } } }
  end
  return {
    ["$schema"] = "http://json-schema.org/draft-07/schema#",
    title = title or "port app config",
    type = "object",
    definitions = { port = PORT },
    properties = {
      deleteDependentEntities = { type = "boolean" },
      createMissingRelatedEntities = { type = "boolean" },
      enableMergeEntity = { type = "boolean" },
      entityDeletionThreshold = { type = "number", minimum = 0, maximum = 1 },
      resources = { type = "array", items = { anyOf = any } },
    },
    required = json.array { "resources" },
  }
end

-- }====================

-- {==================== the command ====================

local USAGE = [[
usage: ocean port-app-config schema [PATH]

Print the JSON Schema (draft-07) of the integration's port app config (its
mapping): for every kind the integration in PATH (default .) registers or
declares, the selector's fields as main.lua declares them with
ocean.selector_schema(kind, fields), and the port.entity.mappings every
resource has. Exit status: 0, 1 when main.lua cannot be loaded, 2 on a
usage error.
]]

function _M.main(args)
  if args[1] == "--help" or args[1] == "-h" or args[1] == nil then
    io[args[1] and "stdout" or "stderr"]:write(USAGE)
    return args[1] and 0 or 2
  end
  if args[1] ~= "schema" or #args > 2 then
    io.stderr:write("ocean port-app-config: unknown arguments\n\n", USAGE)
    return 2
  end
  local path = args[2] or "."
  local ok, err = require("ocean.integration").load(path)
  if not ok then
    io.stderr:write("ocean port-app-config: ", require("ocean.log").mask(err), "\n")
    return 1
  end
  local reg = require("ocean").engine().registry
  local kinds = {}
  for kind in pairs(reg.kinds) do kinds[kind] = false end
  for kind, fields in pairs(reg.selectors or {}) do kinds[kind] = fields end
  local spec = io.open(path .. "/.port/spec.yaml", "r")
  local title
  if spec then
    local t = spec:read("a")
    spec:close()
    local typ = t:match("\ntype:%s*([%w%-_]+)") or t:match("^type:%s*([%w%-_]+)")
    if typ then title = "port app config of " .. typ end
  end
  io.stdout:write(assert(json.encode(_M.json_schema(kinds, title, reg.all and reg.all[1] ~= nil))),
    "\n")
  return 0
end

-- }====================

return _M
