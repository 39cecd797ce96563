-- The live-events benchmark (`make bench-live`; never part of `make test`):
-- N webhooks of one object each (default 1 000), all sent at once (curl
-- --parallel, 4 processes x 250 connections), to `ocean sail` under Lua
-- 5.4 and LuaJIT and to nginx (one worker unless BENCH_WORKERS), against the bundled Port
-- emulator without and with a 500 ms delay on every bulk upsert. The
-- integration is spec/fixtures/live (one webhook processor). Reported:
--   * the webhook answers: how many 2xx, p50 / p99 (curl's time_total);
--   * GET /integration/health during the burst: p99 and how many probes
--     (50 a second, each on a new connection, timed by curl);
--   * events per second: N / (the first send .. the last event applied);
--   * Port requests, from the emulator's request log: bulk upserts,
--     searches, deletes, others;
--   * a SIGKILL in the middle of a burst (ocean sail: killed, then
--     started again; nginx: its worker killed, the master starts another):
--     events answered 2xx, and how many of them are missing from Port once
--     the journal is replayed (lost: must be 0).
-- Figures go to bench/results/live.txt (and stdout).
-- Each row pools BENCH_BURSTS bursts (3) on one running target: the
-- percentiles are over all their answers and probes; events/s is the
-- slowest burst's, the Port requests the most any one burst made.
--   BENCH_N=200 lua5.4 bench/live.lua        a shorter run
--   BENCH_ONLY="lua5.4 nginx"                some runtimes
--   BENCH_DELAYS="0 500"                     bulk-upsert delays (ms)
--   BENCH_BURSTS=5  BENCH_WORKERS=2          bursts per row; nginx workers (1)
--   BENCH_KILL=0                             leave out the SIGKILL runs
--   BENCH_CONCURRENCY=300                    OCEAN__LIVE_EVENTS__CONCURRENCY
package.path = "./?.lua;" .. package.path
local json = require "ocean.json"
local burst = require "spec.helpers.burst"
local ehelp = require "spec.helpers.emulator"
local nh = require "spec.helpers.nginx"
local sail = require "spec.helpers.sail"

local format = string.format
local q, sh = ehelp.shell_quote, ehelp.sh

local N = tonumber(os.getenv("BENCH_N") or "") or 1000
local ONLY = os.getenv("BENCH_ONLY") or "lua5.4 luajit nginx"
local DELAYS = os.getenv("BENCH_DELAYS") or "0 500"
local BURSTS = tonumber(os.getenv("BENCH_BURSTS") or "") or 3
local KILL = os.getenv("BENCH_KILL") ~= "0"
local WORKERS = tonumber(os.getenv("BENCH_WORKERS") or "") or 1
local OUT = os.getenv("BENCH_OUT") or "bench/results/live.txt"
local LIVE = ehelp.root() .. "/spec/fixtures/live"
local SECRET = "bench-secret"

local out = assert(io.open(OUT, "w"))
local function say(fmt, ...)
  local line = format(fmt, ...)
  io.stdout:write(line, "\n")
  io.stdout:flush()
  out:write(line, "\n")
  out:flush()
end

local now = nh.now

local function pct(list, p)
  if #list == 0 then return 0 end
  table.sort(list)
  return list[math.max(1, math.ceil(#list * p))]
end

-- {==================== the integration under test ====================

local emu = ehelp.start { quiet = true }
local work = ehelp.tmpdir()
os.execute("chmod 777 " .. q(work))

local function env(jdir)
  return {
    OCEAN__PORT__BASE_URL = emu.url,
    OCEAN__PORT__CLIENT_ID = emu.client_id,
    OCEAN__PORT__CLIENT_SECRET = emu.client_secret,
    OCEAN__INTEGRATION__CONFIG__WEBHOOK_SECRET = SECRET,
    OCEAN__EVENT_LISTENER__TYPE = "WEBHOOKS_ONLY",
    OCEAN__LIVE_EVENTS__JOURNAL_DIR = jdir,
    OCEAN__HTTP__MAX_CONNECTIONS_PER_CLIENT = "0",      -- one client sends them all
    APPLICATION__LOG_LEVEL = "WARNING",
    OCEAN__LIVE_EVENTS__CONCURRENCY = os.getenv("BENCH_CONCURRENCY"),
  }
end

-- A running target: {url=, health() -> table, kill(), restart(), stop()}.
local function start_sail(rt, jdir)
  sail.runtime = function() return rt end
  local port = sail.free_port()
  local args = { "sail", LIVE, "--port", tostring(port), "--host", "127.0.0.1" }
  local p = sail.start(args, env(jdir), { port = port, limit = 3600 })
  p:wait_ready(30)
  local t = { url = p.url }
  function t.health()
    local _, text = p:http("GET", "/integration/health", { timeout = 5 })
    return json.decode(text) or {}
  end
  function t.kill() p:stop("KILL", 1) end
  function t.restart()
    p = sail.start(args, env(jdir), { port = port, limit = 3600 })
    p:wait_ready(30)
  end
  function t.stop() p:stop("TERM", 20) end
  return t
end

local function start_nginx(jdir)
  local e = env(jdir)
  e.APPLICATION__LOG_LEVEL = "WARNING"
  local ng = nh.start { emu = emu, workers = WORKERS, integration = LIVE, identifier = "bench-live",
                        env = e }
  local t = { url = ng.url }
  function t.health()
    local _, h = ng:json("GET", "/integration/health")
    return type(h) == "table" and h or {}
  end
  local function ready()
    assert(nh.wait_for(function() return t.health().ready and t.health().live_events end, 60),
      "nginx not ready:\n" .. ng:error_log():sub(-2000))
  end
  ready()
  function t.kill() for _, pid in ipairs(ng:worker_pids()) do os.execute("kill -KILL " .. pid) end end
  function t.restart() ready() end        -- the master starts a new worker
  function t.stop() ng:stop() end
  return t
end

-- }====================

-- {==================== one burst ====================

local function requests(url, tag)
  local reqs = {}
  for i = 1, N do
    reqs[i] = { url = url .. "/integration/items", tag = tag .. i,
      headers = { ["Content-Type"] = "application/json", ["X-Secret"] = SECRET },
      body = json.encode { item = { id = tag .. i, name = "Bench " .. i, size = i } } }
  end
  return reqs
end

local function port_requests()
  local c = { bulk = 0, search = 0, delete = 0, other = 0, all = 0 }
  for _, r in ipairs(emu.requests()) do
    c.all = c.all + 1
    if r.method == "POST" and r.path:match("/entities/bulk$") then c.bulk = c.bulk + 1
    elseif r.path:match("search") then c.search = c.search + 1
    elseif r.method == "DELETE" or r.path:match("bulk/delete") then c.delete = c.delete + 1
    else c.other = c.other + 1 end
  end
  return c
end

-- Health probes while fn() says the burst runs: one curl sends GET
-- /integration/health PROBE_RATE times a second, each on a new connection
-- (Connection: close, as a Kubernetes probe does), one after the other; a
-- probe that fails or takes over 5 s counts as 5 000 ms. Returns the
-- times (ms).
local PROBE_RATE = 50
local function probe(url, running)
  local file = os.tmpname()
  local urls = q(url .. "/integration/health?probe=[1-" .. PROBE_RATE * 600 .. "]")
  local pid = tonumber(sh(("curl -s -o /dev/null --rate %d/s --max-time 5 -H 'Connection: close'"
    .. " -w '%%{stderr}%%{http_code} %%{time_total}\\n' %s 2> %s > /dev/null & echo $!")
    :format(PROBE_RATE, urls, q(file))))
  while running() do ehelp.sleep(0.05) end
  os.execute("kill " .. pid .. " 2>/dev/null")   -- -w goes to stderr: unbuffered
  local times = {}
  for line in io.lines(file) do
    local code, t = line:match("^(%d+) ([%d%.]+)")
    if code then times[#times + 1] = code == "200" and tonumber(t) * 1000 or 5000 end
  end
  os.remove(file)
  return times
end

-- Every event of this burst is in Port (the emulator's catalog): read
-- from the emulator, so that it holds for any number of nginx workers
-- (each counts only what it answered).
local function applied_all(tag)
  local n = 0
  for _, e in ipairs(emu.entities("specItem")) do
    if e.identifier:sub(1, #tag) == tag then n = n + 1 end
  end
  return n >= N
end

-- One burst: its answers' times (ms), health probe times (ms), 2xx
-- count, events per second and the Port requests it caused.
local function burst_once(name, t, delay, k)
  emu.faults()
  if delay > 0 then
    emu.faults { { method = "POST", path = "/entities/bulk$", delay_ms = delay } }
  end
  emu.clear_requests()
  local tag = format("%s-%d-%d-", name, delay, k)
  local t0 = now()
  local b = burst.start(requests(t.url, tag), { parallel = 250, processes = 4, timeout = 120 })
  local health = probe(t.url, function() return not b.done() end)
  local results = b.results()
  b.cleanup()
  local answers, ok = {}, 0
  for _, r in ipairs(results) do
    answers[#answers + 1] = r.seconds * 1000
    if r.status >= 200 and r.status < 300 then ok = ok + 1 end
  end
  local done = nh.wait_for(function() return applied_all(tag) end, 900, 0.2)
  local t1 = now()
  emu.faults()
  return { answers = answers, health = health, ok = ok, rate = N / (t1 - t0),
           port = port_requests(), done = done }
end

-- BURSTS bursts on one running target, pooled: answer and probe
-- percentiles over all of them, the lowest events/s and the most Port
-- requests of any one burst.
local function run(name, t, delay)
  local answers, health, ok, rate, c, done = {}, {}, 0, math.huge, {}, true
  for k = 1, BURSTS do
    local r = burst_once(name, t, delay, k)
    for _, v in ipairs(r.answers) do answers[#answers + 1] = v end
    for _, v in ipairs(r.health) do health[#health + 1] = v end
    ok = ok + r.ok
    rate = math.min(rate, r.rate)
    for key, v in pairs(r.port) do c[key] = math.max(c[key] or 0, v) end
    done = done and r.done
  end
  say("%-7s %5d ms  %5d/%-5d %8.1f %8.1f  %8.1f (%3d)  %8.1f  %6d %6d %6d %6d%s", name, delay, ok,
    N * BURSTS, pct(answers, 0.5), pct(answers, 0.99), pct(health, 0.99), #health, rate, c.bulk,
    c.search, c.delete, c.other, done and "" or "  (not all applied after 900 s)")
end

-- SIGKILL in the middle of a burst, then start again: events answered 2xx
-- that never reach Port are lost. The kill comes once a quarter of the
-- webhooks are answered (the rest are still being sent), with every bulk
-- upsert held `delay` ms, so that most answered events are still in the
-- journal only.
local function kill_run(name, t, delay)
  emu.faults { { method = "POST", path = "/entities/bulk$", delay_ms = delay } }
  local tag = name .. "-kill-"
  local b = burst.start(requests(t.url, tag), { parallel = 250, processes = 4, timeout = 120 })
  local function ok_count(results)
    local n = 0
    for _, r in ipairs(results) do if r.status >= 200 and r.status < 300 then n = n + 1 end end
    return n
  end
  nh.wait_for(function() return b.done() or ok_count(b.results()) >= N / 4 end, 60, 0.01)
  local mid = not b.done()
  local at_kill = ok_count(b.results())
  t.kill()
  local in_port = 0
  for _, e in ipairs(emu.entities("specItem")) do
    if e.identifier:sub(1, #tag) == tag then in_port = in_port + 1 end
  end
  local results = b.wait(120)
  b.cleanup()
  emu.faults()
  t.restart()
  local answered = {}
  for _, r in ipairs(results) do
    if r.status >= 200 and r.status < 300 then answered[#answered + 1] = r.tag end
  end
  local function missing()
    local have = {}
    for _, e in ipairs(emu.entities("specItem")) do have[e.identifier] = true end
    local n = 0
    for _, id in ipairs(answered) do if not have[id] then n = n + 1 end end
    return n
  end
  nh.wait_for(function() return missing() == 0 end, 900, 1)
  local lost = missing()
  say("%-7s kill %s: %d answered 2xx at the kill, %d of them in Port; %d of %d answered 2xx in "
    .. "all; lost after the restart: %d", name, mid and "mid-burst" or "AFTER the burst (not mid-burst)",
    at_kill, in_port, #answered, N, lost)
end

-- }====================

say("# lua-ocean live-events benchmark, %s", os.date("!%Y-%m-%dT%H:%MZ"))
say("# %s, %s CPUs, load %s; commit %s", (sh("grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'")
  :gsub("%s+$", "")), (sh("nproc"):gsub("%s+$", "")),
  (sh("cut -d' ' -f1-3 /proc/loadavg"):gsub("%s+$", "")),
  (sh("git rev-parse --short HEAD 2>/dev/null"):gsub("%s+$", "")))
say("# N = %d webhooks of one object each, sent at once (4 curl x 250 connections), %d bursts per"
  .. " row, pooled; nginx: %d worker(s)", N, BURSTS, WORKERS)
say("# delay: every bulk upsert held that long by the emulator; times in ms")
say("")
say("%-7s %8s  %-11s %8s %8s  %14s  %8s  %6s %6s %6s %6s", "runtime", "delay", "2xx", "hook p50",
  "hook p99", "health p99 (n)", "events/s", "bulk", "search", "delete", "other")
for target in ONLY:gmatch("%S+") do
  for d in DELAYS:gmatch("%d+") do
    local jdir = format("%s/%s-%s", work, target, d)
    os.execute("mkdir -p " .. q(jdir) .. " && chmod 777 " .. q(jdir))
    local t = target == "nginx" and start_nginx(jdir) or start_sail(target, jdir)
    local ok, err = pcall(run, target, t, tonumber(d))
    if not ok then say("%-7s %5s ms  failed: %s", target, d, tostring(err)) end
    t.stop()
  end
end
say("")
for target in (KILL and ONLY or ""):gmatch("%S+") do
  local jdir = format("%s/%s-kill", work, target)
  os.execute("mkdir -p " .. q(jdir) .. " && chmod 777 " .. q(jdir))
  local t = target == "nginx" and start_nginx(jdir) or start_sail(target, jdir)
  local ok, err = pcall(kill_run, target, t, 500)
  if not ok then say("%-7s kill: failed: %s", target, tostring(err)) end
  t.stop()
end
out:close()
sail.stop_all()
nh.stop_all()
ehelp.stop_all()
os.execute("rm -rf " .. q(work))
