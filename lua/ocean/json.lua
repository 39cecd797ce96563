-- ocean.json: JSON for integration code, with a null that survives round
-- trips and arrays that stay arrays when empty.
--
--   json.encode(v) -> text | nil, err    (object keys sorted)
--   json.decode(text [, opts]) -> v | nil, err
--                                        (arrays carry json.array_mt; opts:
--                                        {max_depth = 200, exact_numbers = false},
--                                        or max_depth alone)
--   json.null                            (JSON null; also ocean.null)
--   json.array(t) -> t                   (mark t as an array, e.g. empty)
--   json.is_array(t) -> bool
--   json.equal(a, b) -> bool             (key order and null members don't count)
--   json.number(text) -> exact number    (raises on text that is not one JSON number)
--   json.is_number(v) -> bool            (a Lua number or an exact number)
--
-- Numbers (docs/numbers.md): a JSON number decodes to a Lua number, which
-- holds integers exactly up to 2^63 on Lua 5.4 and 2^53 on LuaJIT, and
-- doubles otherwise (12345678901234567890 becomes 1.2345678901234567e19).
-- With exact_numbers, a number a Lua number cannot hold exactly becomes an
-- exact number instead: a userdata whose tostring() is its JSON text,
-- written back verbatim by json.encode and passed to jq and Port
-- unchanged; it compares (==, <, <=) by decimal value with other exact
-- numbers and (Lua 5.4) with Lua numbers, and does no arithmetic.
local core = require "ocean.core"

local setmetatable, getmetatable = setmetatable, getmetatable
local type, error, tostring = type, error, tostring

local _M = {
  null = core.null,
  array_mt = core.json_array_mt,
  number_mt = core.json_number_mt,
}

function _M.encode(v)
  return core.json_encode(v)
end

function _M.decode(text, opts)
  if type(text) ~= "string" then
    error("json.decode: expected a string, got " .. type(text), 2)
  end
  if type(opts) == "table" then
    return core.json_decode(text, opts.max_depth, opts.exact_numbers)
  end
  return core.json_decode(text, opts)
end

function _M.number(text)
  local n, err = core.json_number(text)
  if not n then
    error("json.number: " .. err .. ": " .. tostring(text):sub(1, 40), 2)
  end
  return n
end

function _M.is_number(v)
  return type(v) == "number" or getmetatable(v) == core.json_number_mt
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
