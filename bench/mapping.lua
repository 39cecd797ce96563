-- bench/mapping.lua: parse_items throughput against the jq 1.6 CLI.
--
--   lua5.4|luajit bench/mapping.lua DATA.ndjson [COUNT]
--
-- Maps COUNT GitHub-repository objects (default: all lines of DATA) with
-- a realistic resource (bench/resource.lua) three ways and prints items/s:
--   text    lua-ocean, JSON text in (NDJSON chunks of BATCH items)
--   tables  lua-ocean, Lua tables in (decoded beforehand, untimed)
--   jq      `jq -c -f bench/mapping.jq DATA > /dev/null` (same program)
-- Times are wall clock (date +%s%N around each phase: the phases run
-- seconds, so the fork costs nothing measurable); each phase runs REPEAT
-- times (env BENCH_REPEAT, default 3) and the best run counts, which keeps
-- a busy machine's noise out of the ratios.
local ocean = require "ocean"
local core = require "ocean.core"
local json = require "ocean.json"

local BATCH = 1000
local REPEAT = tonumber(os.getenv("BENCH_REPEAT")) or 3
local data, count = arg[1], tonumber(arg[2])
local here = (arg[0]:match("^(.*)/[^/]*$") or ".")
local resource = dofile(here .. "/resource.lua")

local function now()
  local p = io.popen("date +%s%N")
  local ns = p:read("*l")
  p:close()
  return tonumber(ns) / 1e9
end

-- NDJSON chunks of BATCH lines.
local chunks, lines = {}, 0
do
  local f = assert(io.open(data, "rb"))
  local buf = {}
  for line in f:lines() do
    if count and lines >= count then break end
    lines = lines + 1
    buf[#buf + 1] = line
    if #buf == BATCH then
      chunks[#chunks + 1] = table.concat(buf, "\n")
      buf = {}
    end
  end
  if #buf > 0 then chunks[#chunks + 1] = table.concat(buf, "\n") end
  f:close()
end
count = lines

local function check(r)
  if not r then error("parse_items failed") end
  if #r.errors > 0 then error("item error: " .. r.errors[1].message) end
  return #r.passed
end

-- Compile time of a resource (best of REPEAT, fresh each time).
local function compile_ms(res)
  local best = math.huge
  for _ = 1, REPEAT do
    local t0 = now()
    local m = assert(require("ocean.mapping").compile(res))
    best = math.min(best, (now() - t0) * 1000)
    m:close()
  end
  return best
end

local function best_of(fn)
  local best = math.huge
  for _ = 1, REPEAT do best = math.min(best, fn()) end
  return best
end

local out = {}
local function report(fmt, ...)
  local s = fmt:format(...)
  print(s)
  out[#out + 1] = s
end

local runtime = jit and jit.version or _VERSION
report("runtime: %s; items: %d (%.1f MB of NDJSON); batch: %d",
       runtime, count, #table.concat(chunks, "\n") / 1e6, BATCH)

do
  local small = dofile(here .. "/resource.lua")
  small.port.entity.mappings.properties = nil
  small.port.entity.mappings.relations = nil
  small.port.entity.mappings.title = nil
  local t1 = compile_ms(small)
  local t20 = compile_ms(resource)
  local n20 = 0
  for _ in pairs(resource.port.entity.mappings.properties) do n20 = n20 + 1 end
  report("compile: %.1f ms (identifier+blueprint) vs %.1f ms (%d fields): x%.2f",
         t1, t20, n20 + 5, t20 / t1)
end

-- warm the cache (compile once)
check(ocean.parse_items(resource, chunks[1]))
local compiles = core.mapping_stats().compiles

local passed
local t_text = best_of(function()
  passed = 0
  local t0 = now()
  for i = 1, #chunks do
    passed = passed + check(ocean.parse_items(resource, chunks[i]))
  end
  return now() - t0
end)
report("lua-ocean (JSON text):  %7.0f items/s  (%.2f s, %d passed)",
       count / t_text, t_text, passed)

local t_tables = best_of(function()
  local total = 0
  passed = 0
  for i = 1, #chunks do
    local items = {}
    for line in chunks[i]:gmatch("[^\n]+") do
      items[#items + 1] = json.decode(line)
    end
    local s = now()
    passed = passed + check(ocean.parse_items(resource, items))
    total = total + (now() - s)
  end
  return total
end)
report("lua-ocean (Lua tables): %7.0f items/s  (%.2f s, %d passed)",
       count / t_tables, t_tables, passed)
assert(core.mapping_stats().compiles == compiles, "recompiled during the run")

local jqfile = os.tmpname()
do
  local f = assert(io.open(jqfile, "wb"))
  f:write(table.concat(chunks, "\n"), "\n")
  f:close()
end
local t_jq = best_of(function()
  local t0 = now()
  assert(os.execute("jq -c -f " .. here .. "/mapping.jq " .. jqfile
                    .. " > /dev/null"))
  return now() - t0
end)
os.remove(jqfile)
report("jq 1.6 CLI (jq -c):      %7.0f items/s  (%.2f s)", count / t_jq, t_jq)
report("ratio text/jq: %.2f   tables/jq: %.2f", t_jq / t_text, t_jq / t_tables)

if os.getenv("BENCH_OUT") then
  local f = assert(io.open(os.getenv("BENCH_OUT"), "ab"))
  f:write(table.concat(out, "\n"), "\n\n")
  f:close()
end
