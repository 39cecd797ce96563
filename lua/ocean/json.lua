-- ocean.json: JSON for integration code, with a null that survives round
-- trips and arrays that stay arrays when empty.
--
--   json.encode(v) -> text | nil, err    (object keys sorted)
--   json.decode(text) -> v | nil, err    (arrays carry json.array_mt)
--   json.null                            (JSON null; also ocean.null)
--   json.array(t) -> t                   (mark t as an array, e.g. empty)
--   json.is_array(t) -> bool
--   json.equal(a, b) -> bool             (key order and null members don't count)
local core = require "ocean.core"

local setmetatable, getmetatable = setmetatable, getmetatable
local type = type

local _M = {
  null = core.null,
  array_mt = core.json_array_mt,
}

function _M.encode(v)
  return core.json_encode(v)
end

function _M.decode(text, max_depth)
  if type(text) ~= "string" then
    error("json.decode: expected a string, got " .. type(text), 2)
  end
  return core.json_decode(text, max_depth)
end

function _M.array(t)
  t = t or {}
  if type(t) ~= "table" then
    error("json.array: expected a table, got " .. type(t), 2)
  end
  return setmetatable(t, core.json_array_mt)
end

function _M.is_array(t)
  return type(t) == "table" and getmetatable(t) == core.json_array_mt
end

-- Canonical text: sorted keys, null members dropped, numbers as jq sees
-- them (so 1 and 1.0 are equal).
function _M.canonical(v)
  return core.json_canonical(v)
end

function _M.equal(a, b)
  local ca, err = core.json_canonical(a)
  if not ca then error(err, 2) end
  local cb, err2 = core.json_canonical(b)
  if not cb then error(err2, 2) end
  return ca == cb
end

return _M
