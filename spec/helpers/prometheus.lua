-- spec/helpers/prometheus.lua: a strict parser of the Prometheus text
-- exposition format 0.0.4, to check what ocean.metrics renders.
--
--   local prom = require "spec.helpers.prometheus"
--   local r = prom.parse(text)   -- raises "line N: why" on anything malformed
--   r.order        family names in the order they appear
--   r.families[name] = {name, help, type, samples = {{name, labels = {k = v}, value, timestamp}}}
--   prom.value(r, name, labels) -> the sample's value (labels compared exactly) | nil
--
-- Checked: metric and label name syntax; label values' escapes (\\ \" \n
-- only) and quoting; HELP's escapes (\\ \n); at most one HELP and one TYPE
-- per family, TYPE before the family's samples; a family's lines all
-- together (a name never comes back after another family); no sample twice
-- (same name and labels); a label at most once per sample; values and
-- timestamps are numbers (or +Inf, -Inf, NaN); the text ends with a newline.
local _M = {}

local TYPES = { counter = true, gauge = true, histogram = true, summary = true, untyped = true }
local SUFFIXES = { histogram = { "_bucket", "_sum", "_count" }, summary = { "_sum", "_count" } }

local function fail(n, fmt, ...)
  error(("line %d: " .. fmt):format(n, ...), 0)
end

local function parse_number(s)
  if s == "+Inf" or s == "Inf" then return math.huge end
  if s == "-Inf" then return -math.huge end
  if s == "NaN" then return 0 / 0 end
  if not s:match("^[-+]?%d*%.?%d+[eE][-+]?%d+$") and not s:match("^[-+]?%d+%.?%d*$")
     and not s:match("^[-+]?%d*%.%d+$") then
    return nil
  end
  return tonumber(s)
end

local function unescape(s, n, allowed)
  return (s:gsub("\\(.)", function(c)
    local r = allowed[c]
    if not r then fail(n, "invalid escape \\%s", c) end
    return r
  end))
end

local LABEL_ESC = { ["\\"] = "\\", ['"'] = '"', n = "\n" }
local HELP_ESC = { ["\\"] = "\\", n = "\n" }

-- {labels} starting at position i of line: labels table, position after '}'.
local function parse_labels(line, i, n)
  local labels, seen = {}, {}
  i = i + 1                                   -- after '{'
  while true do
    i = line:find("[^ \t]", i) or #line + 1
    if line:sub(i, i) == "}" then return labels, i + 1 end
    local name = line:match("^[%a_][%w_]*", i)
    if not name then fail(n, "expected a label name at column %d", i) end
    if seen[name] then fail(n, "label %s twice", name) end
    seen[name] = true
    i = i + #name
    i = line:find("[^ \t]", i) or #line + 1
    if line:sub(i, i) ~= "=" then fail(n, "expected '=' after label %s", name) end
    i = line:find("[^ \t]", i + 1) or #line + 1
    if line:sub(i, i) ~= '"' then fail(n, "label %s: value must be quoted", name) end
    local j, raw = i + 1, {}
    while true do
      local c = line:sub(j, j)
      if c == "" then fail(n, "label %s: unterminated value", name) end
      if c == '"' then break end
      if c == "\\" then
        raw[#raw + 1] = line:sub(j, j + 1)
        j = j + 2
      else
        raw[#raw + 1] = c
        j = j + 1
      end
    end
    labels[name] = unescape(table.concat(raw), n, LABEL_ESC)
    i = line:find("[^ \t]", j + 1) or #line + 1
    local c = line:sub(i, i)
    if c == "," then
      i = i + 1
    elseif c ~= "}" then
      fail(n, "expected ',' or '}' after label %s", name)
    end
  end
end

local function label_key(labels)
  local keys = {}
  for k in pairs(labels) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = k .. "\0" .. labels[k] end
  return table.concat(parts, "\1")
end

-- The family a sample name belongs to, given the families declared so far.
local function family_of(r, name)
  for t, suffixes in pairs(SUFFIXES) do
    for _, suf in ipairs(suffixes) do
      local base = name:sub(-#suf) == suf and name:sub(1, -#suf - 1)
      if base and r.families[base] and r.families[base].type == t then return base end
    end
  end
  return name
end

function _M.parse(text)
  if type(text) ~= "string" then error("parse: expected a string", 2) end
  if text ~= "" and text:sub(-1) ~= "\n" then fail(select(2, text:gsub("\n", "")) + 1, "no final newline") end
  local r = { order = {}, families = {} }
  local current, closed, seen_samples = nil, {}, {}
  local function enter(name, n)
    if current == name then return r.families[name] end
    if closed[name] then fail(n, "family %s appears again after another family", name) end
    if current then closed[current] = true end
    current = name
    local fam = r.families[name]
    if not fam then
      fam = { name = name, samples = {} }
      r.families[name] = fam
      r.order[#r.order + 1] = name
    end
    return fam
  end
  local n = 0
  for line in text:gmatch("([^\n]*)\n") do
    n = n + 1
    if line:sub(1, 1) == "#" then
      local kw, name, rest = line:match("^#%s+(%u+)%s+(%S+)%s?(.*)$")
      if kw == "HELP" or kw == "TYPE" then
        if not name:match("^[%a_:][%w_:]*$") then fail(n, "invalid metric name %s", name) end
        local fam = enter(name, n)
        if #fam.samples > 0 then fail(n, "%s %s after its samples", kw, name) end
        if kw == "HELP" then
          if fam.help then fail(n, "second HELP for %s", name) end
          fam.help = unescape(rest, n, HELP_ESC)
        else
          if fam.type then fail(n, "second TYPE for %s", name) end
          if not TYPES[rest] then fail(n, "unknown type %q for %s", rest, name) end
          fam.type = rest
        end
      end                                     -- other comments are ignored
    elseif not line:match("^%s*$") then       -- blank lines are allowed
      local name = line:match("^[%a_:][%w_:]*")
      if not name then fail(n, "expected a metric name") end
      local i = #name + 1
      local labels = {}
      if line:sub(i, i) == "{" then labels, i = parse_labels(line, i, n) end
      local rest = line:sub(i)
      if not rest:match("^[ \t]") then fail(n, "expected a space before the value") end
      local fields = {}
      for f in rest:gmatch("%S+") do fields[#fields + 1] = f end
      if #fields < 1 or #fields > 2 then fail(n, "expected a value and an optional timestamp") end
      local value = parse_number(fields[1])
      if value == nil then fail(n, "invalid value %q", fields[1]) end
      local ts = fields[2] and tonumber(fields[2])
      if fields[2] and (not ts or not fields[2]:match("^-?%d+$")) then
        fail(n, "invalid timestamp %q", fields[2])
      end
      local fam = enter(family_of(r, name), n)
      local key = name .. "\2" .. label_key(labels)
      if seen_samples[key] then fail(n, "sample %s with these labels twice", name) end
      seen_samples[key] = true
      local t = fam.type or "untyped"
      local fits = name == fam.name
      if t == "histogram" then
        fits = name ~= fam.name
      elseif t == "summary" then
        fits = name ~= fam.name or labels.quantile ~= nil
      end
      if not fits then fail(n, "sample %s in family %s", name, fam.name) end
      fam.samples[#fam.samples + 1] = { name = name, labels = labels, value = value, timestamp = ts }
    end
  end
  return r
end

-- The value of the sample `name` with exactly these labels, or nil.
function _M.value(r, name, labels)
  labels = labels or {}
  local want = label_key(labels)
  for _, fam in pairs(r.families) do
    for _, s in ipairs(fam.samples) do
      if s.name == name and label_key(s.labels) == want then return s.value end
    end
  end
  return nil
end

return _M
