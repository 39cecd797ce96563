-- fuzz/worker.lua: evaluates one stretch of generated cases with the
-- mapping engine (run by fuzz/run.lua, one process per stretch, so that a
-- crash is seen as the process's death).
--
--   <runtime> fuzz/worker.lua SEED GROUPS [GROUP INDEX]
--
-- A group: FIELDS expressions in one resource, mapped over ITEMS items
-- (each expression alone when the group does not compile). Prints
-- "group N" before each group, then "stats <expressions> <evaluations>".
-- With GROUP and INDEX: only that expression of that group (isolating a
-- crash).
package.path = "fuzz/?.lua;" .. package.path
local gen = require "gen"
local mapping = require "ocean.mapping"

local FIELDS, ITEMS = 8, 3
local OPTS = { time_limit = 0.3, memory_limit = 128 }
local seed, groups = tonumber(arg[1]), tonumber(arg[2])
local only_group, only_index = tonumber(arg[3]), tonumber(arg[4])

local function resource(fields)
  local props = {}
  for i, e in ipairs(fields) do props["e" .. i] = e end
  return { kind = "fuzz", selector = { query = "true" },
           port = { entity = { mappings = { identifier = ".id", blueprint = '"b"', properties = props } } } }
end

local exprs, evals = 0, 0

local function run(fields, items)
  local m = mapping.compile(resource(fields), OPTS)
  if m then
    local r = m:parse(items)
    evals = evals + #fields * #items
    assert(#r.passed + #r.errors + #r.dropped == #items, "every item is accounted for")
    m:close()
    return
  end
  if #fields == 1 then return end
  for _, e in ipairs(fields) do run({ e }, items) end
end

local g = gen.new(seed)
for n = 1, groups do
  local fields, items = {}, {}
  for i = 1, FIELDS do fields[i] = g:expr() end
  for i = 1, ITEMS do items[i] = g:item() end
  if not only_group or only_group == n then
    if only_index then fields = { fields[only_index] } end
    io.write("group ", n, "\n")
    io.flush()
    exprs = exprs + #fields
    run(fields, items)
    if only_group then
      for _, e in ipairs(fields) do io.write("expr ", e, "\n") end
      for _, it in ipairs(items) do io.write("item ", it, "\n") end
    end
  end
end
io.write("stats ", exprs, " ", evals, "\n")
