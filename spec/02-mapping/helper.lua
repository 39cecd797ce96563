-- Shared by the spec/02-mapping specs: resource builders and a compact
-- view of parse_items results.
local ocean = require "ocean"
local json = require "ocean.json"

local H = {}

H.ocean = ocean
H.json = json
H.null = ocean.null

-- A resource of kind `kind` (default "k") with the given mappings.
function H.resource(mappings, opts)
  opts = opts or {}
  local port = { entity = { mappings = mappings } }
  for k, v in pairs(opts.port or {}) do port[k] = v end
  return {
    kind = opts.kind or "k",
    selector = { query = opts.selector or "true" },
    port = port,
  }
end

-- Mappings with identifier and blueprint and the given extra fields.
function H.with(fields)
  local m = { identifier = ".id", blueprint = '"bp"' }
  for k, v in pairs(fields or {}) do m[k] = v end
  return m
end

-- parse_items that must not fail.
function H.parse(resource, items, opts)
  local r, err = ocean.parse_items(resource, items, opts)
  assert(r, err)
  return r
end

-- The value of one mapped field for one raw item.
function H.field(expr, item, opts)
  local r = H.parse(H.resource(H.with({ properties = { x = expr } })),
                    { item or { id = "i" } }, opts)
  assert(#r.passed == 1, "expected one entity, got " .. #r.passed
         .. (r.errors[1] and (": " .. r.errors[1].message) or ""))
  return r.passed[1].properties.x, r.misconfigured["properties.x"] ~= nil
end

-- Canonical JSON of a value (key order does not matter).
function H.canon(v)
  return json.canonical(v)
end

return H
