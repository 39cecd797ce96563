-- ocean.emulator.search: Port's entity search queries.
--
-- A query is {combinator = "and"|"or", rules = {...}}; a rule is either a
-- nested query or {property = P, operator = OP, value = V}. P is one of
-- $identifier $blueprint $datasource $title $team $icon $createdAt
-- $updatedAt $createdBy $updatedBy, or a property name. Operators: = !=
-- in notIn contains doesNotContains containsAny beginsWith
-- doesNotBeginsWith endsWith doesNotEndsWith isEmpty isNotEmpty > >= < <=;
-- and the relation operator {operator = "relatedTo", blueprint = B,
-- value = id | {ids}}: entities related to one of those, either way
-- (`required` is ignored, `direction` refused).
-- A query without rules matches every entity.
--
-- search.run narrows the candidates with the top-level `and` rules on
-- $blueprint (=) and $identifier (= or in) before evaluating the rest.
local json = require "ocean.json"
local util = require "ocean.emulator.util"

local type, pairs, ipairs, tostring, next = type, pairs, ipairs, tostring, next
local format, find, sort = string.format, string.find, table.sort
local null = json.null

local _M = {}

local META = {
  ["$identifier"] = "identifier", ["$blueprint"] = "blueprint",
  ["$datasource"] = "datasource", ["$title"] = "title", ["$team"] = "team",
  ["$icon"] = "icon", ["$createdAt"] = "createdAt",
  ["$updatedAt"] = "updatedAt", ["$createdBy"] = "createdBy",
  ["$updatedBy"] = "updatedBy",
}

local function getter(prop)
  local field = META[prop]
  if field then
    return function(e)
      local v = e[field]
      if v == null then return nil end
      return v
    end
  end
  return function(e)
    local v = e.properties and e.properties[prop]
    if v == null then return nil end
    return v
  end
end

-- {==================== operators ====================

-- An exact number (json.number: beyond what a Lua number holds).
local function exact(v)
  return type(v) == "userdata" and json.is_number(v)
end

local function scalar_eq(a, b)
  if exact(a) or exact(b) then
    return json.is_number(a) and json.is_number(b) and json.equal(a, b)
  end
  if type(a) == "table" or type(b) == "table" then
    return type(a) == "table" and type(b) == "table" and json.equal(a, b)
  end
  return a == b
end

-- v = r; a list value (team) equals r when one element does.
local function eq(v, r)
  if util.is_array(v) and not util.is_array(r) then
    for _, x in ipairs(v) do
      if scalar_eq(x, r) then return true end
    end
    return false
  end
  return scalar_eq(v, r)
end

local function any_in(v, list)
  if util.is_array(v) then
    for _, x in ipairs(v) do
      if any_in(x, list) then return true end
    end
    return false
  end
  for _, r in ipairs(list) do
    if scalar_eq(v, r) then return true end
  end
  return false
end

local function contains(v, r)
  if type(v) == "string" and type(r) == "string" then
    return find(v, r, 1, true) ~= nil
  end
  if util.is_array(v) then
    for _, x in ipairs(v) do
      if scalar_eq(x, r) then return true end
    end
  end
  return false
end

local function is_empty(v)
  return v == nil or v == "" or (type(v) == "table" and next(v) == nil)
end

-- Two numbers (exact ones compared by decimal value) or two strings.
local function cmp_args(v, r)
  if exact(v) or exact(r) then
    if not (json.is_number(v) and json.is_number(r)) then return false end
    if type(v) == "number" then v = json.number(json.encode(v)) end
    if type(r) == "number" then r = json.number(json.encode(r)) end
    return true, v, r
  end
  return (type(v) == "number" and type(r) == "number")
      or (type(v) == "string" and type(r) == "string"), v, r
end

local function compare(op)
  return function(v, r)
    local ok, a, b = cmp_args(v, r)
    if not ok then return false end
    if op == ">" then return a > b end
    if op == ">=" then return a >= b end
    if op == "<" then return a < b end
    return a <= b
  end
end

local OPS = {
  ["="] = eq,
  ["!="] = function(v, r) return not eq(v, r) end,
  ["in"] = function(v, r) return any_in(v, r) end,
  ["notIn"] = function(v, r) return not any_in(v, r) end,
  ["contains"] = contains,
  ["doesNotContains"] = function(v, r) return not contains(v, r) end,
  ["containsAny"] = function(v, r)
    for _, x in ipairs(r) do
      if contains(v, x) then return true end
    end
    return false
  end,
  ["beginsWith"] = function(v, r)
    return type(v) == "string" and v:sub(1, #r) == r
  end,
  ["doesNotBeginsWith"] = function(v, r)
    return not (type(v) == "string" and v:sub(1, #r) == r)
  end,
  ["endsWith"] = function(v, r)
    return type(v) == "string" and #v >= #r and v:sub(-#r) == r
  end,
  ["doesNotEndsWith"] = function(v, r)
    return not (type(v) == "string" and #v >= #r and v:sub(-#r) == r)
  end,
  ["isEmpty"] = function(v) return is_empty(v) end,
  ["isNotEmpty"] = function(v) return not is_empty(v) end,
  [">"] = compare(">"),
  [">="] = compare(">="),
  ["<"] = compare("<"),
  ["<="] = compare("<="),
}

-- The type each operator needs for `value` ("list", "string" or nil).
local VALUE_KIND = {
  ["in"] = "list", ["notIn"] = "list", ["containsAny"] = "list",
  ["beginsWith"] = "string", ["doesNotBeginsWith"] = "string",
  ["endsWith"] = "string", ["doesNotEndsWith"] = "string",
}

-- }====================

-- {==================== compiling ====================

local compile_query

-- The identifiers a relation value names (a string, or a list of them).
local function each_target(v, fn)
  if type(v) == "string" then return fn(v) end
  if type(v) == "table" and v ~= null then
    for _, x in ipairs(v) do
      if type(x) == "string" and fn(x) then return true end
    end
  end
end

-- relatedTo: entities with a relation to one of the entities `value`
-- (identifiers of blueprint `blueprint`), in either direction (they point
-- at it, or it points at them). Relations match by identifier.
local function compile_related(rule, path, store)
  local value, bp = rule.value, rule.blueprint
  if type(bp) ~= "string" then
    return nil, path .. ": relatedTo needs a 'blueprint'"
  end
  if rule.direction ~= nil then
    return nil, path .. ": relatedTo's 'direction' is not supported by the emulator"
  end
  local ids = {}
  if type(value) == "string" then
    ids[value] = true
  elseif util.is_array(value) then
    for _, v in ipairs(value) do ids[tostring(v)] = true end
  else
    return nil, path .. ": relatedTo needs an identifier or a list of them as 'value'"
  end
  local function points_at_target(e)
    for _, v in pairs(type(e.relations) == "table" and e.relations or {}) do
      if each_target(v, function(id) return ids[id] end) then return true end
    end
  end
  return function(e)
    if e.blueprint == bp and ids[e.identifier] then return false end
    if points_at_target(e) then return true end
    for id in pairs(ids) do
      local t = store and store:get(bp, id)
      if t then
        for _, v in pairs(type(t.relations) == "table" and t.relations or {}) do
          if each_target(v, function(x) return x == e.identifier end) then return true end
        end
      end
    end
    return false
  end
end

local function compile_rule(rule, path, store)
  if not util.is_object(rule) then
    return nil, path .. ": a rule must be an object"
  end
  if rule.combinator ~= nil or rule.rules ~= nil then
    return compile_query(rule, path, store)
  end
  if rule.operator == "relatedTo" then
    return compile_related(rule, path, store)
  end
  local prop, op, value = rule.property, rule.operator, rule.value
  if type(prop) ~= "string" then
    return nil, path .. ": 'property' must be a string"
  end
  local fn = OPS[op]
  if not fn then
    return nil, format("%s: unknown operator '%s'", path, tostring(op))
  end
  local kind = VALUE_KIND[op]
  if kind == "list" and not util.is_array(value) then
    return nil, format("%s: operator '%s' needs an array value", path, op)
  end
  if kind == "string" and type(value) ~= "string" then
    return nil, format("%s: operator '%s' needs a string value", path, op)
  end
  if value == null then value = nil end
  local get = getter(prop)
  return function(e) return fn(get(e), value) end
end

function compile_query(q, path, store)
  path = path or "query"
  if not util.is_object(q) then return nil, path .. " must be an object" end
  local comb = q.combinator or "and"
  if comb ~= "and" and comb ~= "or" then
    return nil, format("%s: combinator must be 'and' or 'or'", path)
  end
  local rules = q.rules
  if rules == nil then rules = {} end
  if type(rules) ~= "table" or (next(rules) ~= nil and not util.is_array(rules)) then
    return nil, path .. ": 'rules' must be an array"
  end
  local preds = {}
  for i, r in ipairs(rules) do
    local p, err = compile_rule(r, format("%s.rules[%d]", path, i - 1), store)
    if not p then return nil, err end
    preds[i] = p
  end
  local n = #preds
  if n == 0 then return function() return true end end
  if comb == "and" then
    return function(e)
      for i = 1, n do
        if not preds[i](e) then return false end
      end
      return true
    end
  end
  return function(e)
    for i = 1, n do
      if preds[i](e) then return true end
    end
    return false
  end
end

-- Compile a query into a predicate on entities; nil, err when invalid.
-- store: needed by relatedTo rules.
function _M.compile(q, store)
  return compile_query(q, "query", store)
end

-- Narrowing hints from the top-level `and` rules.
local function hints(q)
  local bp, ids
  if (q.combinator or "and") ~= "and" or not util.is_array(q.rules) then
    return nil, nil
  end
  for _, r in ipairs(q.rules) do
    if r.property == "$blueprint" and r.operator == "=" and type(r.value) == "string" then
      bp = r.value
    elseif r.property == "$identifier" and r.operator == "=" and type(r.value) == "string" then
      ids = { r.value }
    elseif r.property == "$identifier" and r.operator == "in" and util.is_array(r.value) then
      ids = r.value
    end
  end
  return bp, ids
end

-- }====================

local function by_oid(a, b) return a._oid < b._oid end

local function candidates(store, bp, ids)
  if ids then
    local out, seen = {}, {}
    local bps = {}
    if bp then
      bps[1] = bp
    else
      for b in pairs(store.by_bp) do bps[#bps + 1] = b end
    end
    for _, b in ipairs(bps) do
      for _, id in ipairs(ids) do
        local e = type(id) == "string" and store:get(b, id)
        if e and not seen[e] then
          seen[e] = true
          out[#out + 1] = e
        end
      end
    end
    sort(out, by_oid)
    return out
  end
  return store:entities(bp)
end

-- The entities (internal form, creation order) matching query q.
-- opts.blueprint restricts the search to one blueprint.
-- Returns the list, or nil, err for an invalid query.
function _M.run(store, q, opts)
  local pred, err = _M.compile(q, store)
  if not pred then return nil, err end
  local bp, ids = hints(q)
  local only = opts and opts.blueprint
  if only then
    if bp and bp ~= only then return {} end
    bp = only
  end
  local out = {}
  for _, e in ipairs(candidates(store, bp, ids)) do
    if pred(e) then out[#out + 1] = e end
  end
  return out
end

-- Project an entity view onto the `include` fields ("identifier",
-- "properties.x", "relations.y"...). include empty: the whole view.
function _M.project(v, include)
  if not include or #include == 0 then return v end
  local out = {}
  for _, f in ipairs(include) do
    local top, sub = f:match("^([^.]+)%.(.+)$")
    if top == "properties" or top == "relations" then
      out[top] = out[top] or {}
      local src = v[top]
      if src then out[top][sub] = src[sub] end
    elseif not top then
      out[f] = v[f]
    end
  end
  return out
end

return _M
