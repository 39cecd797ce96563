-- ocean.yaml: YAML for configuration files, on libyaml's event parser
-- (Debian's lua-yaml), with JSON's data model: sequences are ocean.json
-- arrays (so [] stays an array), null is ocean.null, and only unquoted
-- scalars are typed (YAML 1.2 core schema: true/false, null/~, integers,
-- floats); a quoted "true" stays a string.
--
--   yaml.load(text [, source_name]) -> value | nil, err
local json = require "ocean.json"

local tonumber, pcall, error, type = tonumber, pcall, error, type

local _M = {}

local function yaml_parser()
  -- lua-yaml's C part sets a global named `yaml`; keep it off _G
  local had = rawget(_G, "yaml")
  local ok, mod = pcall(require, "yaml")
  if rawget(_G, "yaml") ~= had then rawset(_G, "yaml", had) end
  if not ok then
    return nil, "YAML support needs Debian's lua-yaml package: " .. tostring(mod)
  end
  return mod.parser
end

local NULLS = { ["~"] = true, null = true, Null = true, NULL = true, [""] = true }
local TRUES = { ["true"] = true, True = true, TRUE = true }
local FALSES = { ["false"] = true, False = true, FALSE = true }

local function plain_scalar(s)
  if NULLS[s] then return json.null end
  if TRUES[s] then return true end
  if FALSES[s] then return false end
  if s:match("^[-+]?%d+$") then
    return math.tointeger and math.tointeger(tonumber(s)) or tonumber(s)
  end
  if s:match("^0x%x+$") or s:match("^0o[0-7]+$") then
    return s:sub(2, 2) == "x" and tonumber(s:sub(3), 16) or tonumber(s:sub(3), 8)
  end
  if s:match("^[-+]?%d*%.?%d+[eE][-+]?%d+$") or s:match("^[-+]?%d+%.%d*$")
     or s:match("^[-+]?%d*%.%d+$") then
    return tonumber(s)
  end
  if s == ".inf" or s == "+.inf" then return math.huge end
  if s == "-.inf" then return -math.huge end
  return s
end

local function scalar(ev)
  local tag = ev.tag
  if tag == "tag:yaml.org,2002:str" then return ev.value end
  if tag == "tag:yaml.org,2002:int" or tag == "tag:yaml.org,2002:float" then
    return tonumber(ev.value)
  end
  if ev.style == "PLAIN" then return plain_scalar(ev.value) end
  return ev.value
end

local function where(ev, source)
  local m = ev.start_mark
  if m and m.line then
    return ("%s:%d:%d"):format(source, m.line + 1, (m.column or 0) + 1)
  end
  return source
end

-- Build one document from the event stream.
local function build(next_event, source)
  local anchors = {}
  local function value(ev)
    local v
    if ev.type == "SCALAR" then
      v = scalar(ev)
    elseif ev.type == "ALIAS" then
      v = anchors[ev.anchor]
      if v == nil then
        error(("%s: unknown alias *%s"):format(where(ev, source), ev.anchor), 0)
      end
      return v
    elseif ev.type == "SEQUENCE_START" then
      v = json.array {}
      if ev.anchor then anchors[ev.anchor] = v end
      while true do
        local e = next_event()
        if e.type == "SEQUENCE_END" then break end
        v[#v + 1] = value(e)
      end
      return v
    elseif ev.type == "MAPPING_START" then
      v = {}
      if ev.anchor then anchors[ev.anchor] = v end
      while true do
        local k = next_event()
        if k.type == "MAPPING_END" then break end
        local key = value(k)
        if type(key) ~= "string" then
          if type(key) == "number" or type(key) == "boolean" then
            key = tostring(key)
          else
            error(("%s: mapping keys must be scalars"):format(where(k, source)), 0)
          end
        end
        v[key] = value(next_event())
      end
      return v
    else
      error(("%s: unexpected YAML event %s"):format(where(ev, source), ev.type), 0)
    end
    if ev.anchor then anchors[ev.anchor] = v end
    return v
  end
  local doc = json.null
  local ev = next_event()
  while ev and ev.type ~= "STREAM_END" do
    if ev.type == "DOCUMENT_START" then
      local e = next_event()
      if e.type ~= "DOCUMENT_END" then
        doc = value(e)
        local after = next_event()
        if after.type ~= "DOCUMENT_END" then
          error(("%s: more than one value in the document")
            :format(where(after, source)), 0)
        end
      end
      return doc                -- only the first document
    end
    ev = next_event()
  end
  return doc
end

function _M.load(text, source)
  source = source or "<yaml>"
  if type(text) ~= "string" then
    error("yaml.load: expected a string", 2)
  end
  local parser, perr = yaml_parser()
  if not parser then return nil, perr end
  local ok, res = pcall(function()
    local it = parser(text)
    return build(function()
      local ev = it()
      if ev == nil then error(source .. ": unexpected end of YAML", 0) end
      return ev
    end, source)
  end)
  if not ok then
    local msg = tostring(res):gsub("^.-:%d+: ", "")
    if not msg:find(source, 1, true) then msg = source .. ": " .. msg end
    return nil, "invalid YAML: " .. msg
  end
  return res
end

-- Read and parse a file. nil, err when it can't be read or parsed.
function _M.load_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local text = f:read("a") or f:read("*a")
  f:close()
  return _M.load(text, path)
end

return _M
