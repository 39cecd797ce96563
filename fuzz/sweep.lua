-- fuzz/sweep.lua: every builtin of the libjq in use (`builtins`), with
-- every kind of input and arguments (seeded samples for two and three
-- arguments), through the mapping engine: libjq's asserts sit behind
-- builtins given the wrong types. Run by fuzz/run.lua before the random
-- phase, in a process of its own.
--
--   <runtime> fuzz/sweep.lua [FROM [TO]]   (expression numbers)
-- Prints "at N" before each group of expressions, "stats <n>" at the end.
package.path = "fuzz/?.lua;" .. package.path
local mapping = require "ocean.mapping"
local gen = require "gen"

local VALUES = { "null", "-1", "0.5", "1e10", "nan", "\"\"", "\"aé\"", "\"[^a]*\"", "[]",
                 "[1, \"a\"]", "{}", "{\"a\": 1}", "true", "[[1], [\"b\"]]", "-1e300" }
local OPTS = { time_limit = 0.3, memory_limit = 64 }
local from, to = tonumber(arg[1]) or 1, tonumber(arg[2]) or math.huge

local function builtins()
  local m = assert(mapping.compile({ kind = "k", selector = { query = "true" }, port = { entity = {
    mappings = { identifier = ".id", blueprint = '"b"', properties = { b = "builtins" } } } } },
    { native = false }))
  local list = m:parse({ { id = "x" } }).passed[1].properties.b
  m:close()
  table.sort(list)
  return list
end

local function expressions()
  local out, g = {}, gen.new(42)
  for _, b in ipairs(builtins()) do
    local name, arity = b:match("^(.-)/(%d+)$")
    arity = tonumber(arity)
    local skip = name == "input" or name == "inputs" or name:match("^halt") or name == "debug"
                 or name == "stderr" or name == "repeat" or name == "until" or name == "while"
                 or name == "recurse" and arity > 0 or name == "range" and arity > 1
    if not skip then
      for _, v in ipairs(VALUES) do
        if arity == 0 then
          out[#out + 1] = v .. " | " .. name
        else
          local n = arity == 1 and #VALUES or 12
          for k = 1, n do
            local args = {}
            for a = 1, arity do
              args[a] = arity == 1 and VALUES[k] or g:pick(VALUES)
            end
            out[#out + 1] = v .. " | " .. name .. "(" .. table.concat(args, "; ") .. ")"
          end
        end
      end
    end
  end
  return out
end

local function resource(list)
  local props = {}
  for i, e in ipairs(list) do props["e" .. i] = e end
  return { kind = "sweep", selector = { query = "true" },
           port = { entity = { mappings = { identifier = ".id", blueprint = '"b"', properties = props } } } }
end

local function run(list)
  local m = mapping.compile(resource(list), OPTS)
  if not m then
    if #list > 1 then for _, e in ipairs(list) do run({ e }) end end
    return
  end
  local r = m:parse({ { id = "x" } })
  m:close()
  if r.errors[1] and #list > 1 then         -- a breach stops the item: try each alone
    for _, e in ipairs(list) do run({ e }) end
  end
end

local exprs = expressions()
if os.getenv("SWEEP_PRINT") then
  for i = from, math.min(to, #exprs) do print(i, exprs[i]) end
  os.exit(0)
end
local done = 0
for i = from, math.min(to, #exprs), 10 do
  io.write("at ", i, "\n")
  io.flush()
  local group = {}
  for k = i, math.min(i + 9, to, #exprs) do group[#group + 1] = exprs[k] end
  run(group)
  done = done + #group
end
io.write("stats ", done, " of ", #exprs, "\n")
