-- fuzz/gen.lua: seeded random jq-like expressions and JSON items, for the
-- mapping engine's fuzz run (fuzz/run.lua). The same seed gives the same
-- cases under Lua 5.4 and LuaJIT (Park-Miller, exact in doubles).
--
--   local gen = require "gen"
--   local g = gen.new(seed)
--   g:expr() -> string      g:item() -> JSON text
--
-- The grammar leans on what has hurt libjq before: path expressions,
-- regexes with empty matches, huge counts and indexes, slices with nan,
-- deep and shared values, catches around generators, assignments, dates,
-- formats, and internal builtins called with the wrong types.
local concat, floor = table.concat, math.floor

local _M = {}
local G = {}
G.__index = G

function _M.new(seed)
  local x = floor(seed) % 2147483647
  if x <= 0 then x = x + 2147483646 end
  return setmetatable({ x = x, vars = {}, depth = 0 }, G)
end

-- 1..n
function G:int(n)
  self.x = self.x * 16807 % 2147483647
  return self.x % n + 1
end

function G:pick(list) return list[self:int(#list)] end
function G:chance(p) return self:int(1000) <= p * 1000 end

local NUMBERS = { "0", "1", "-1", "2", "3", "10", "2.5", "-0.5", "1e9", "1e300", "-1e300",
  "2147483647", "4294967296", "1e-300", "0.1", "100", "nan", "infinite", "-infinite",
  "1e1000", "9007199254740993", "5e-324", "255", "65", "1114112", "-0" }
local STRINGS = { '""', '"a"', '"ab"', '"é"', '"x y"', '"a,b,,c"', '"\\u0000"', '"Billing Service"',
  '"[^a-z0-9]*"', '""', '"(a|a)*b"', '"^"', '"$"', '"(?<n>[a-z])"', '"\\\\d+"', '"x*"', '"."',
  '"g"', '"gi"', '"n"', '"xgn"', '"%Y-%m-%dT%H:%M:%SZ"', '"%c"', '"2024-05-01T12:00:00Z"',
  '"ME======"', '"aGVsbG8="', '"true"', '"123"', '" padded "', '"team-"', '"\\n\\t"', '"ü"' }
local KEYS = { "a", "b", "c", "name", "tags", "xs", "o", "n", "s", "id" }

-- nullary filters
local F0 = { "length", "keys", "keys_unsorted", "values", "type", "not", "tostring",
  "tonumber", "tojson", "fromjson", "ascii_downcase", "ascii_upcase", "explode", "implode",
  "reverse", "sort", "unique", "min", "max", "add", "any", "all", "flatten", "floor", "sqrt",
  "fabs", "round", "ceil", "abs", "significand", "frexp", "modf", "logb", "gamma", "trunc",
  "isnan", "isinfinite", "isnormal", "paths", "tostream", "to_entries", "from_entries",
  "@text", "@json", "@html", "@uri", "@csv", "@tsv", "@sh", "@base64", "@base64d", "@base32d",
  "todate", "fromdate", "gmtime", "mktime", "utf8bytelength", "first", "last", "toarray",
  "trim", "ltrim", "rtrim", "objects", "arrays", "strings", "numbers", "scalars", "iterables",
  "recurse", "have_decnum", "transpose", "combinations", "input_line_number", "env", "builtins",
  "now", "tostring", "halt_error", "input", "inputs", "debug", "stderr", "localtime",
  "todateiso8601", "fromdateiso8601", "toboolean", "getpath([])", "leaf_paths", "splits(\"\")",
  "ascii", "@base32", "input_filename", "$__loc__", "error", "empty", "null", "..", "[]", "{}" }
-- filters with one argument
local F1 = { "map", "select", "sort_by", "group_by", "unique_by", "min_by", "max_by",
  "with_entries", "walk", "recurse", "any", "all", "path", "paths", "del", "contains", "inside",
  "has", "in", "index", "rindex", "indices", "startswith", "endswith", "ltrimstr", "rtrimstr",
  "split", "splits", "join", "test", "match", "capture", "scan", "range", "first", "last",
  "isempty", "error", "getpath", "delpaths", "pick", "repeat", "flatten", "strftime",
  "strptime", "fromstream", "truncate_stream", "debug", "halt_error", "add", "trimstr",
  "map_values", "limit(1; ", "ltrimstr", "IN", "INDEX", "splits", "getpath", "_strindices",
  "_sort_by_impl", "_group_by_impl", "_min_by_impl", "_max_by_impl", "tojson" }
-- filters with two arguments
local F2 = { "test", "match", "split", "splits", "sub", "gsub", "capture", "scan", "range",
  "limit", "nth", "until", "while", "setpath", "ldexp", "scalb", "pow", "drem", "skip",
  "_match_impl", "sub", "gsub", "_plus", "_minus", "_multiply", "_divide", "_mod",
  "_equal", "_less", "_assign", "_modify", "getpath", "INDEX", "IN" }
local BIN = { " + ", " - ", " * ", " / ", " % ", " == ", " != ", " < ", " <= ", " > ",
  " and ", " or ", " // ", " | ", ", " }

function G:literal()
  local k = self:int(6)
  if k <= 2 then return self:pick(NUMBERS) end
  if k <= 4 then return self:pick(STRINGS) end
  if k == 5 then return self:pick({ "null", "true", "false", "[]", "{}", "[1, 2, 3]",
    "{\"a\": 1}", "[[1], [2, [3]]]", "[\"a\", \"b\"]", "[-1]", "[null]", "[1e9]",
    "[\"a\", 1e9]", "[[\"a\"], 1]", "[nan]" }) end
  return "$__loc__"
end

function G:path()
  local parts = { "." }
  for i = 1, self:int(3) do
    local k = self:int(9)
    if k <= 3 then parts[#parts + 1] = (i == 1 and "" or ".") .. self:pick(KEYS)
    elseif k == 4 then parts[#parts + 1] = "[" .. self:pick({ "0", "-1", "1", "1e9", "nan", "\"a\"" }) .. "]"
    elseif k == 5 then parts[#parts + 1] = "[]"
    elseif k == 6 then parts[#parts + 1] = "[" .. self:pick({ "1", "", "nan", "-1", "1e300" }) .. ":"
      .. self:pick({ "2", "", "nan", "-1" }) .. "]"
    elseif k == 7 then parts[#parts + 1] = (i == 1 and "" or ".") .. self:pick(KEYS) .. "?"
    elseif k == 8 then parts[#parts + 1] = "[]?"
    else parts[#parts + 1] = ".[" .. self:pick({ "0", "\"a\"" }) .. "]" end
  end
  local p = concat(parts):gsub("^%.%.", "."):gsub("^%.%[", ".[")
  if p:sub(1, 2) == ".." and p ~= ".." then p = p:sub(2) end
  return p
end

function G:var()
  if #self.vars > 0 and self:chance(0.7) then return self:pick(self.vars) end
  return self:pick({ "$__loc__", "$ENV" })
end

function G:bind(name, fn)
  self.vars[#self.vars + 1] = name
  local s = fn()
  self.vars[#self.vars] = nil
  return s
end

function G:term()
  local d = self.depth
  if d > 3 then
    local k = self:int(3)
    if k == 1 then return self:literal() end
    if k == 2 then return self:path() end
    return self:var()
  end
  self.depth = d + 1
  local k = self:int(26)
  local s
  if k <= 3 then s = self:path()
  elseif k <= 5 then s = self:literal()
  elseif k == 6 then s = self:var()
  elseif k <= 9 then s = self:expr() .. " | " .. self:pick(F0)
  elseif k <= 12 then
    local f = self:pick(F1)
    s = f:sub(-2) == "; " and (f .. self:expr() .. ")") or (f .. "(" .. self:expr() .. ")")
  elseif k <= 14 then s = self:pick(F2) .. "(" .. self:expr() .. "; " .. self:expr() .. ")"
  elseif k == 15 then s = "sub(" .. self:expr() .. "; " .. self:expr() .. "; " .. self:expr() .. ")"
  elseif k == 16 then
    s = self:pick({ "if ", "if " }) .. self:expr() .. " then " .. self:expr()
      .. (self:chance(0.5) and (" else " .. self:expr()) or "")
      .. (self:chance(0.3) and (" elif " .. self:expr() .. " then " .. self:expr()) or "") .. " end"
    s = s:gsub(" else (.-) elif ", " elif ")
  elseif k == 17 then
    local v = "$v" .. d
    s = "reduce " .. self:term() .. " as " .. v .. " (" .. self:expr() .. "; "
      .. self:bind(v, function() return self:expr() end) .. ")"
  elseif k == 18 then
    local v = "$v" .. d
    s = "[foreach " .. self:term() .. " as " .. v .. " (" .. self:expr() .. "; "
      .. self:bind(v, function() return self:expr() .. "; " .. self:expr() end) .. ")]"
  elseif k == 19 then
    s = self:chance(0.5) and ("try " .. self:term() .. " catch " .. self:term())
        or ("(" .. self:expr() .. ")?")
  elseif k == 20 then
    local l = "$l" .. d
    s = "label " .. l .. " | " .. self:expr() .. " | if " .. self:expr() .. " then ., break "
      .. l .. " else . end"
  elseif k == 21 then
    local v = "$v" .. d
    s = self:term() .. " as " .. v .. " | " .. self:bind(v, function() return self:expr() end)
  elseif k == 22 then
    local a, b = "$a" .. d, "$b" .. d
    s = self:term() .. " as [" .. a .. "] ?// " .. a .. " | "
      .. self:bind(a, function() return self:expr() end)
    if self:chance(0.3) then
      s = self:term() .. " as [" .. a .. ", " .. b .. "] | "
        .. self:bind(a, function() return self:bind(b, function() return self:expr() end) end)
    end
  elseif k == 23 then
    local forms = { { "[", "]" }, { "{a: ", "}" }, { "\"x\\(", ")\"" }, { "@json \"v=\\(", ")\"" } }
    local f = self:pick(forms)
    if self:chance(0.2) then
      s = "{(" .. self:term() .. "): " .. self:expr() .. "}"
    else
      s = f[1] .. self:expr() .. f[2]
    end
  elseif k == 24 then
    s = self:path() .. self:pick({ " = ", " |= ", " += ", " //= ", " *= " }) .. self:expr()
  elseif k == 25 then
    s = "def f" .. d .. ": " .. self:expr() .. "; " .. self:expr() .. " | f" .. d
  else
    local forms = { { "first(", ")" }, { "limit(2; ", ")" }, { "isempty(", ")" }, { "[", "]" },
                    { "last(", ")" }, { "nth(1; ", ")" }, { "[limit(0; ", ")]" } }
    local f = self:pick(forms)
    s = f[1] .. self:expr() .. f[2]
  end
  self.depth = d
  return "(" .. s .. ")"
end

function G:expr()
  local s = self:term()
  if self.depth < 3 and self:chance(0.3) then
    s = s .. self:pick(BIN) .. self:term()
  end
  return s
end

-- {{ JSON items }}

function G:json_value(depth)
  local k = self:int(depth > 3 and 5 or 8)
  if k == 1 then return "null" end
  if k == 2 then return self:pick({ "true", "false" }) end
  if k == 3 then return self:pick({ "0", "1", "-1", "2.5", "1e300", "12345678901234567890",
                                     "-0", "0.1", "3", "100" }) end
  if k <= 5 then return self:pick(STRINGS) end
  if k == 6 then
    local parts = {}
    for i = 1, self:int(4) - 1 do parts[i] = self:json_value(depth + 1) end
    return "[" .. concat(parts, ",") .. "]"
  end
  local parts = {}
  for i = 1, self:int(4) do
    parts[i] = ("%q:%s"):format(self:pick(KEYS), self:json_value(depth + 1))
  end
  return "{" .. concat(parts, ",") .. "}"
end

function G:item()
  local parts = { '"id":"i' .. self:int(1000) .. '"' }
  for _, k in ipairs(KEYS) do
    if k ~= "id" and self:chance(0.6) then
      parts[#parts + 1] = ("%q:%s"):format(k, self:json_value(1))
    end
  end
  return "{" .. concat(parts, ",") .. "}"
end

return _M
