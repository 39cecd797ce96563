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
--   selector.check_field_specs(fields)  misuse raises (error level 3)
--   selector.check(fields, resource) -> copy with defaults | nil, err
--     err names the field: "selector.jql: required, missing";
--     "selector.apiQueryParams.status[2]: expected a string, got a number"
--   selector.json_schema(kinds) -> a JSON Schema (draft-07) table of the
--     whole port app config; kinds: {[kind] = fields | false}
--   selector.main(args)  the `ocean port-app-config` command
local json = require "ocean.json"

local type, pairs, ipairs, tostring, error = type, pairs, ipairs, tostring, error
local format = string.format
local math_type = math.type

local _M = {}

local TYPES = { string = true, number = true, integer = true, boolean = true,
                object = true, array = true }
local SPEC_KEYS = { type = true, required = true, default = true, description = true,
                    enum = true, items = true, properties = true }

-- {==================== declarations ====================

local function check_spec(spec, path)
  if type(spec) ~= "table" then
    error(format("selector_schema: %s: expected a table {type = ...}", path), 4)
  end
  for k in pairs(spec) do
    if not SPEC_KEYS[k] then
      error(format("selector_schema: %s: unknown key '%s'", path, tostring(k)), 4)
    end
  end
  if not TYPES[spec.type] then
    error(format("selector_schema: %s: type must be string, number, integer, boolean, object "
      .. "or array, got %s", path, tostring(spec.type)), 4)
  end
  if spec.enum ~= nil and (type(spec.enum) ~= "table" or spec.enum[1] == nil) then
    error(format("selector_schema: %s: enum must be a non-empty list", path), 4)
  end
  if spec.items ~= nil then check_spec(spec.items, path .. "[]") end
  if spec.properties ~= nil then
    if type(spec.properties) ~= "table" then
      error(format("selector_schema: %s: properties must be a table of fields", path), 4)
    end
    for k, v in pairs(spec.properties) do check_spec(v, path .. "." .. tostring(k)) end
  end
end

function _M.check_field_specs(fields)
  if type(fields) ~= "table" then
    error("selector_schema: expected a table of fields {name = {type = ...}}", 3)
  end
  for name, spec in pairs(fields) do
    if type(name) ~= "string" then error("selector_schema: field names must be strings", 3) end
    if name == "query" then error("selector_schema: 'query' is the selector's own jq query", 3) end
    check_spec(spec, "selector." .. name)
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
  if t == "array" then return is_list(v) end
  return is_object(v)
end

local check_value

-- The fields are checked in name order, so that the error said for a
-- value that breaks several is always the same one.
local function check_object(spec, v, path)
  local props, names = spec.properties or {}, {}
  for name in pairs(props) do names[#names + 1] = name end
  table.sort(names, function(a, b) return tostring(a) < tostring(b) end)
  for _, name in ipairs(names) do
    local sub = props[name]
    local x = v[name]
    if x == nil or x == json.null then
      if sub.default ~= nil then
        v[name] = sub.default
      elseif sub.required then
        return nil, format("%s.%s: required, missing", path, name)
      end
    else
      local ok, err = check_value(sub, x, path .. "." .. name)
      if not ok then return nil, err end
    end
  end
  return true
end

function check_value(spec, v, path)
  if not matches(spec, v) then
    return nil, format("%s: expected %s %s, got %s", path,
      (spec.type == "integer" or spec.type == "array" or spec.type == "object") and "an" or "a",
      spec.type, describe(v))
  end
  if spec.enum then
    local found = false
    for _, e in ipairs(spec.enum) do if e == v then found = true end end
    if not found then
      local shown = {}
      for i, e in ipairs(spec.enum) do shown[i] = json.encode(e) end
      return nil, format("%s: %s is not one of %s", path, json.encode(v), table.concat(shown, ", "))
    end
  end
  if spec.type == "array" and spec.items then
    for i, x in ipairs(v) do
      local ok, err = check_value(spec.items, x, format("%s[%d]", path, i))
      if not ok then return nil, err end
    end
  elseif spec.type == "object" and spec.properties then
    return check_object(spec, v, path)
  end
  return true
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
  local ok, err = check_object({ properties = fields }, sel, "selector")
  if not ok then return nil, err end
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
function _M.json_schema(kinds, title)
  local names = {}
  for k in pairs(kinds) do names[#names + 1] = k end
  table.sort(names)
  local any = json.array {}
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
    io.stderr:write("ocean port-app-config: ", tostring(err), "\n")
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
  io.stdout:write(assert(json.encode(_M.json_schema(kinds, title))), "\n")
  return 0
end

-- }====================

return _M
