-- fuzz/run.lua: `make fuzz`. First every builtin with every kind of input
-- and arguments (fuzz/sweep.lua, once per libjq version), then seeded random
-- jq-like expressions over random JSON (fuzz/gen.lua) through the mapping
-- engine, under Lua 5.4 and LuaJIT against libjq 1.6 and 1.7.1, until
-- FUZZ_SECONDS (default 600) have passed in all. Each
-- stretch of cases runs in its own process (fuzz/worker.lua): a crash
-- (death by a signal) or a hang (a stretch past its wall-clock bound; each
-- item has a 0.3 s budget) is a finding; the crashing expression is then
-- isolated. Appends a record to bench/results/fuzz.md; exits 1 on a
-- finding. FUZZ_SWEEP=0 leaves the sweep out (it takes ~15 min or more
-- on a loaded 2-core machine and counts towards FUZZ_SECONDS).
--
--   FUZZ_SECONDS=600 FUZZ_SEED=1 [FUZZ_SWEEP=0] lua5.4 fuzz/run.lua
local concat = table.concat

local SECONDS = tonumber(os.getenv("FUZZ_SECONDS")) or 600
local SEED = tonumber(os.getenv("FUZZ_SEED")) or os.time()
local GROUPS = 30                       -- per stretch
local STRETCH_LIMIT = 240               -- s: far above 30 groups x 3 items x 0.3 s
local ROOT = os.getenv("OCEAN_ROOT") or "."
local VARIANTS = {
  { name = "lua5.4 (libjq 1.6)", rt = "lua5.4", build = "build" },
  { name = "luajit (libjq 1.6)", rt = "luajit", build = "build" },
  { name = "lua5.4 (libjq 1.7.1)", rt = "lua5.4", build = "build/jq17" },
  { name = "luajit (libjq 1.7.1)", rt = "luajit", build = "build/jq17" },
}

local function sh(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  return out
end

local function now() return tonumber(sh("date +%s.%N")) end

-- Run a fuzz script; returns its output and its exit status (124:
-- timeout, 128 + n: signal n).
local function script(v, name, args, limit)
  local env = ("LUA_PATH=%q LUA_CPATH=%q"):format(ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;;",
    ROOT .. "/" .. v.build .. "/" .. v.rt .. "/?.so;;")
  local out = sh(("cd %q && %s timeout -k 5 %d %s fuzz/%s.lua %s 2>&1; echo \"rc=$?\""):format(
    ROOT, env, limit or STRETCH_LIMIT, v.rt, name, concat(args, " ")))
  local rc = tonumber(out:match("rc=(%d+)%s*$"))
  return out, rc
end

local function worker(v, args) return script(v, "worker", args) end

-- The expression of a crashed group that crashes alone (or the group).
local function isolate(v, seed, group)
  for i = 1, 8 do
    local out, rc = worker(v, { seed, group, group, i })
    if rc ~= 0 then
      return out:match("expr ([^\n]*)") or "?", out:match("item ([^\n]*)") or "?", rc
    end
  end
  return "(the group as a whole)", "?", -1
end

local start = now()
local total = { stretches = 0, exprs = 0, evals = 0 }
local per = {}
local findings = {}
local stretch = 0

-- The sweep: libjq 1.6 under Lua 5.4, 1.7.1 under LuaJIT. A crash: the
-- last group is gone through one expression at a time, and the sweep goes on.
local swept = {}
local SWEEP = os.getenv("FUZZ_SWEEP") ~= "0"
if not SWEEP then swept[1] = "- sweep: left out (FUZZ_SWEEP=0)" end
for _, v in ipairs(SWEEP and { VARIANTS[1], VARIANTS[4] } or {}) do
  local at, n = 1, 0
  while true do
    local out, rc = script(v, "sweep", { at }, 3600)
    local stats = tonumber(out:match("stats (%d+) of"))
    if rc == 0 and stats then
      n = n + stats
      break
    end
    local last = tonumber(out:match(".*at (%d+)")) or at
    local before = #findings
    for i = last, last + 9 do
      local one, orc = script(v, "sweep", { i, i }, 60)
      if orc ~= 0 then
        local e = sh(("cd %q && SWEEP_PRINT=1 LUA_PATH=%q LUA_CPATH=%q %s fuzz/sweep.lua %d %d"):format(
          ROOT, ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;;",
          ROOT .. "/" .. v.build .. "/" .. v.rt .. "/?.so;;", v.rt, i, i))
        findings[#findings + 1] = ("- %s, sweep: exit status %s\n  expression: `%s`\n  output tail: %s")
          :format(v.name, tostring(orc), (e:gsub("^%d+\t", ""):gsub("\n$", "")),
                  (one:sub(-200):gsub("\n", " | ")))
        io.stderr:write("FINDING: ", findings[#findings], "\n")
      end
    end
    if #findings == before then
      findings[#findings + 1] = ("- %s, sweep: exit status %s at expressions %d-%d, not alone: %s")
        :format(v.name, tostring(rc), last, last + 9, (out:sub(-200):gsub("\n", " | ")))
    end
    n = n + (last - at) + 10
    at = last + 10
  end
  swept[#swept + 1] = ("- sweep, %s: %d builtin calls"):format(v.name, n)
  io.stderr:write(("[%4.0f s] %s\n"):format(now() - start, swept[#swept]))
end
while now() - start < SECONDS do
  for _, v in ipairs(VARIANTS) do
    if now() - start >= SECONDS then break end
    stretch = stretch + 1
    local seed = SEED * 1000 + stretch
    local t0 = now()
    local out, rc = worker(v, { seed, GROUPS })
    local exprs, evals = out:match("stats (%d+) (%d+)")
    per[v.name] = per[v.name] or { stretches = 0, exprs = 0, evals = 0 }
    local p = per[v.name]
    p.stretches = p.stretches + 1
    total.stretches = total.stretches + 1
    if rc == 0 and exprs then
      p.exprs, p.evals = p.exprs + exprs, p.evals + evals
      total.exprs, total.evals = total.exprs + exprs, total.evals + evals
    else
      local last = tonumber(out:match(".*group (%d+)")) or 1
      local kind = rc == 124 and "hang (stretch past its bound)" or ("exit status " .. tostring(rc))
      local expr, item = isolate(v, seed, last)
      findings[#findings + 1] = ("- %s, seed %d group %d: %s\n  expression: `%s`\n  item: `%s`\n  output tail: %s")
        :format(v.name, seed, last, kind, expr, item, (out:sub(-300):gsub("\n", " | ")))
      io.stderr:write("FINDING: ", findings[#findings], "\n")
    end
    io.stderr:write(("[%4.0f s] %s: stretch %d, %s expressions (%.1f s)\n"):format(
      now() - start, v.name, stretch, tostring(exprs or "?"), now() - t0))
  end
end

local elapsed = now() - start
local lines = {
  ("## %s, seed %d"):format(os.date("!%Y-%m-%dT%H:%MZ"), SEED), "",
  ("%.0f s; %d stretches of %d groups (8 expressions x 3 items each); %d expressions generated, "
   .. "%d expression-item evaluations that compiled."):format(elapsed, total.stretches, GROUPS,
    total.exprs, total.evals), "",
}
for _, line in ipairs(swept) do lines[#lines + 1] = line end
for _, v in ipairs(VARIANTS) do
  local p = per[v.name]
  if p then
    lines[#lines + 1] = ("- %s: %d stretches, %d expressions, %d evaluations"):format(
      v.name, p.stretches, p.exprs, p.evals)
  end
end
lines[#lines + 1] = ""
lines[#lines + 1] = #findings == 0 and "No crash, no hang." or ("Findings:\n\n" .. concat(findings, "\n"))
lines[#lines + 1] = ""
local record = concat(lines, "\n")
print(record)
local f = io.open(ROOT .. "/bench/results/fuzz.md", "a")
if f then
  f:write(record, "\n")
  f:close()
end
os.exit(#findings == 0 and 0 or 1)
