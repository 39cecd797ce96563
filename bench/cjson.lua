-- bench/cjson.lua: Debian's cJSON against the engine's own JSON scanner
-- (src/json/json.c) on the paths that read JSON (issue 12, item 9).
--
--   lua5.4|luajit bench/cjson.lua DATA.ndjson [COUNT]    (make bench-cjson)
--
--   mapping      the bench's mapping (bench/resource.lua) over NDJSON chunks
--                of 1000 GitHub-repository objects, parse then convert only
--                what the mapping reads, entities out as Lua tables; the
--                scanner path is what parse_items and the resync's feed run
--   Port         a page of the owned-entity listing (1000 entities) and a
--                bulk-upsert answer, parsed into jq values (src/port*.c)
--   config       the integration (port-app-config) as Port returns it
--   ocean.json   decode to / encode from Lua tables, one repository object
--                and a page of 100
-- Each phase runs REPEAT times (env BENCH_REPEAT, default 5), the two paths
-- in turn, and the best run counts. Then what each path keeps of inputs the
-- engine guarantees something about.
local core = require "ocean.core"
local json = require "ocean.json"
local mapping = require "ocean.mapping"
local cj = require "cjson_bench"

local REPEAT = tonumber(os.getenv("BENCH_REPEAT")) or 5
local data, count = arg[1], tonumber(arg[2]) or 20000
local here = (arg[0]:match("^(.*)/[^/]*$") or ".")
local resource = dofile(here .. "/resource.lua")
local clock = os.clock

local out = {}
local function report(fmt, ...)
  local s = fmt:format(...)
  print(s)
  out[#out + 1] = s
end

-- NDJSON chunks of 1000 items.
local chunks, lines = {}, {}
for line in io.lines(data) do
  if #lines >= count then break end
  lines[#lines + 1] = line
end
for i = 1, #lines, 1000 do
  chunks[#chunks + 1] = table.concat(lines, "\n", i, math.min(i + 999, #lines))
end

-- Best of REPEAT for each of fa and fb, run in turn (CPU seconds).
local function pair(fa, fb)
  local ba, bb = math.huge, math.huge
  for _ = 1, REPEAT do
    local t0 = clock(); fa(); ba = math.min(ba, clock() - t0)
    t0 = clock(); fb(); bb = math.min(bb, clock() - t0)
  end
  return ba, bb
end

report("runtime: %s; cJSON %s; items: %d; best of %d", jit and jit.version or _VERSION,
       cj.version, #lines, REPEAT)

-- {==================== mapping ====================
do
  local m = assert(mapping.compile(resource))
  local a, b = cj.map(m, chunks[1], "scanner"), cj.map(m, chunks[1], "cjson")
  assert(#a == #b and json.canonical(a) == json.canonical(b), "the two paths disagree")
  local function run(path)
    return function()
      for i = 1, #chunks do cj.map(m, chunks[i], path) end
    end
  end
  local ts, tc = pair(run("scanner"), run("cjson"))
  report("mapping      scanner %7.0f items/s   cJSON %7.0f items/s   cJSON/scanner %.2f",
         #lines / ts, #lines / tc, ts / tc)
  m:close()
end
-- }====================

-- {==================== Port responses and config ====================
local function jv_phase(name, text, reps)
  local ts, tc = pair(function() cj.to_jv(text, "scanner", reps) end,
                      function() cj.to_jv(text, "cjson", reps) end)
  report("%-12s scanner %7.1f MB/s     cJSON %7.1f MB/s     cJSON/scanner %.2f  (%d bytes)",
         name, #text * reps / ts / 1e6, #text * reps / tc / 1e6, ts / tc, #text)
end

do
  local ents = json.array {}
  local mapped = assert(require("ocean").parse_items(resource, chunks[1])).passed
  for i, e in ipairs(mapped) do
    e.createdAt, e.updatedAt = "2024-05-01T12:00:00.123Z", "2024-05-02T08:30:00.456Z"
    e.createdBy, e.updatedBy = "client-id", "client-id"
    e["$datasource"] = "port-ocean/github/1.0.0/my-github/exporter"
    e.team = json.array {}
    ents[i] = e
  end
  local listing = json.encode { ok = true, entities = ents, next = "a1b2c3" }
  jv_phase("Port listing", listing, 20)
  local results = json.array {}
  for i = 1, 20 do
    results[i] = { identifier = mapped[i].identifier, index = i - 1, created = i % 2 == 0 }
  end
  jv_phase("Port bulk", json.encode { ok = true, entities = results, errors = json.array {} }, 20000)
  local resources = json.array {}
  for i = 1, 5 do resources[i] = resource end
  jv_phase("config", json.encode { ok = true, integration = {
    identifier = "my-github", installationAppType = "github", version = "1.0.0",
    config = { deleteDependentEntities = true, createMissingRelatedEntities = false,
               enableMergeEntity = true, resources = resources } } }, 5000)
end
-- }====================

-- {==================== ocean.json ====================
do
  local one = lines[1]
  local page = "[" .. table.concat(lines, ",", 1, 100) .. "]"
  for _, c in ipairs { { "decode 1", one, 3000 }, { "decode 100", page, 30 } } do
    local text, reps = c[2], c[3]
    assert(json.canonical(json.decode(text)) == json.canonical(cj.decode(text)))
    local ts, tc = pair(function() for _ = 1, reps do json.decode(text) end end,
                        function() for _ = 1, reps do cj.decode(text) end end)
    report("%-12s scanner %7.1f MB/s     cJSON %7.1f MB/s     cJSON/scanner %.2f",
           c[1], #text * reps / ts / 1e6, #text * reps / tc / 1e6, ts / tc)
  end
  local v1, v100 = json.decode(one), json.decode(page)
  for _, c in ipairs { { "encode 1", v1, 3000 }, { "encode 100", v100, 30 } } do
    local v, reps = c[2], c[3]
    local text = json.encode(v)
    local ts, tc = pair(function() for _ = 1, reps do json.encode(v) end end,
                        function() for _ = 1, reps do cj.encode(v) end end)
    report("%-12s ours    %7.1f MB/s     cJSON %7.1f MB/s     cJSON/ours %.2f",
           c[1], #text * reps / ts / 1e6, #text * reps / tc / 1e6, ts / tc)
  end
end
-- }====================

-- {==================== guarantees ====================
report("")
report("what each path keeps (scanner: the engine, jq value -> text; cJSON: parse -> print)")
local function deep(n) return ("["):rep(n) .. ("]"):rep(n) end
for _, c in ipairs {
  { "big integer", '[12345678901234567890,9007199254740993]' },
  { "long decimal", '[0.10000000000000000000001]' },
  { "overflow", '[1e400]' },
  { "NUL in a string", '["a\\u0000b"]' },
  { "lone surrogate", '["\\ud800x"]' },
  { "201 levels", deep(201) },
  { "1001 levels", deep(1001) },
  { "bad JSON", '{"a":\n [1, 2,, 3]}' },
} do
  local name, text = c[1], c[2]
  local ours, oerr = core.json_via_jq_text(text)
  local theirs, cerr = cj.check(text)
  local function show(s, e)
    s = s or ("error: " .. tostring(e))
    return #s > 60 and s:sub(1, 57) .. "..." or s
  end
  report("%-16s scanner: %s", name, show(ours, oerr))
  report("%-16s cJSON:   %s", "", show(theirs, cerr))
end
-- }====================

local f = os.getenv("BENCH_OUT")
if f then
  local h = assert(io.open(f, "a"))
  h:write(table.concat(out, "\n"), "\n\n")
  h:close()
end
