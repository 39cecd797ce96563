-- Measurements behind docs/openresty.md: the OpenResty example (one
-- worker) against the bundled emulator.
--
--   lua5.4 examples/openresty/measure.lua      (from the repository root, after make)
--
-- 1. CPU of the nginx worker: idle; while 1, 50 and 200 webhooks wait on a
--    Port that answers in 30 s; while a resync waits too.
-- 2. Latency of other requests (GET /integration/health) while they wait.
-- 3. Webhook round trip with Port answering at once, against the same
--    bulk upsert sent to the emulator directly.
package.path = "lua/?.lua;lua/?/init.lua;./?.lua;" .. package.path
package.cpath = "build/lua5.4/?.so;" .. package.cpath
local json = require "ocean.json"
local ehelp = require "spec.helpers.emulator"
local nh = require "spec.helpers.nginx"

local function cpu_ticks(pid)
  local s = ehelp.read_file("/proc/" .. pid .. "/stat")
  local rest = s:match("^%d+ %b() (.*)$")
  local f = {}
  for x in rest:gmatch("%S+") do f[#f + 1] = x end
  return tonumber(f[12]) + tonumber(f[13])          -- utime + stime (fields 14, 15)
end

local HZ = tonumber((ehelp.sh("getconf CLK_TCK"):gsub("%s+", ""))) or 100

-- CPU share of pid over `seconds`, in percent of one core.
local function cpu_share(pid, seconds)
  local c0, t0 = cpu_ticks(pid), nh.now()
  ehelp.sleep(seconds)
  local c1, t1 = cpu_ticks(pid), nh.now()
  return (c1 - c0) / HZ / (t1 - t0) * 100
end

local function percentile(list, p)
  local s = {}
  for i, v in ipairs(list) do s[i] = v end
  table.sort(s)
  return s[math.max(1, math.ceil(#s * p))]
end

-- n sequential requests over one keep-alive connection: times in ms.
local function timings(url, n, method, body)
  local dir = ehelp.tmpdir()
  local lines = {}
  for i = 1, n do
    if i > 1 then lines[#lines + 1] = "next" end
    lines[#lines + 1] = ('url = "%s"'):format(url)
    lines[#lines + 1] = ('request = "%s"'):format(method or "GET")
    lines[#lines + 1] = 'output = "/dev/null"'
    lines[#lines + 1] = 'write-out = "%{time_total}\\n"'
    lines[#lines + 1] = "silent"
    if body then
      local b = type(body) == "function" and body(i) or body
      lines[#lines + 1] = 'header = "Content-Type: application/json"'
      lines[#lines + 1] = "data-binary = " .. ('%q'):format(b)
    end
  end
  local f = assert(io.open(dir .. "/cfg", "w"))
  f:write(table.concat(lines, "\n"), "\n")
  f:close()
  local out = ehelp.sh("curl -K " .. dir .. "/cfg 2>/dev/null")
  os.execute("rm -rf " .. dir)
  local t = {}
  for x in out:gmatch("[%d%.]+") do t[#t + 1] = tonumber(x) * 1000 end
  return t
end

local function summary(t)
  return ("p50 %.2f ms, p99 %.2f ms, max %.2f ms (n=%d)")
    :format(percentile(t, 0.5), percentile(t, 0.99), percentile(t, 1), #t)
end

local function service(i)
  return json.encode { action = "upsert", service = {
    name = ("svc-m%03d"):format(i), lang = "lua", tier = "backend", team = "team-m", replicas = i % 5 } }
end

local emu = ehelp.start { quiet = true }
local ok, err = pcall(function()
  local ng = nh.start { emu = emu, workers = 1, env = { APPLICATION__LOG_LEVEL = "WARNING" } }
  assert(nh.wait_for(function() local _, h = ng:json("GET", "/integration/health"); return h.ready end, 30))
  local wpid = ng:worker_pids()[1]
  print(("nginx worker %d, CPU measured over 10 s windows (%% of one core)"):format(wpid))
  print(("idle:                                 %5.2f %%"):format(cpu_share(wpid, 10)))

  emu.faults { { path = "^/v1/", delay_ms = 30000 } }
  local pending = {}
  local function start_hooks(n)
    for _ = 1, n do
      pending[#pending + 1] = ng:background("POST", "/integration/webhook", service(#pending + 1))
    end
    ehelp.sleep(1)
  end
  start_hooks(1)
  print(("1 webhook waiting on Port:            %5.2f %%"):format(cpu_share(wpid, 10)))
  start_hooks(49)
  print(("50 webhooks waiting on Port:          %5.2f %%"):format(cpu_share(wpid, 10)))
  ng:json("POST", "/integration/resync")
  ehelp.sleep(1)
  print(("50 webhooks + a resync waiting:       %5.2f %%"):format(cpu_share(wpid, 8)))
  print("GET /integration/health meanwhile:    " .. summary(timings(ng.url .. "/integration/health", 300)))
  start_hooks(150)
  print(("200 webhooks + a resync waiting:      %5.2f %%"):format(cpu_share(wpid, 8)))
  print("GET /integration/health meanwhile:    " .. summary(timings(ng.url .. "/integration/health", 300)))

  emu.clear_faults()
  assert(nh.wait_for(function()
    for _, p in ipairs(pending) do if not p() then return false end end
    return true
  end, 120), "the waiting webhooks did not finish")
  nh.wait_for(function() local _, h = ng:json("GET", "/integration/health"); return h.running == false end, 60)
  -- handlers whose client gave up still wait for the upserts already sent
  -- (held 30 s by the emulator): let them end
  ehelp.sleep(31)
  print(("idle again:                           %5.2f %%"):format(cpu_share(wpid, 5)))

  -- round trips with Port answering at once
  local n = 200
  local via = timings(ng.url .. "/integration/webhook", n, "POST", function(i) return service(1000 + i) end)
  print("webhook through nginx (map + upsert): " .. summary(via))
  local token = emu.token()
  local direct = {}
  do
    local dir = ehelp.tmpdir()
    local lines = {}
    for i = 1, n do
      if i > 1 then lines[#lines + 1] = "next" end
      local body = json.encode { entities = { { identifier = ("svc-d%03d"):format(i), blueprint = "service",
        title = "D", properties = { language = "lua" } } } }
      lines[#lines + 1] = ('url = "%s/v1/blueprints/service/entities/bulk?upsert=true&merge=true"'):format(emu.url)
      lines[#lines + 1] = 'request = "POST"'
      lines[#lines + 1] = 'output = "/dev/null"'
      lines[#lines + 1] = 'write-out = "%{time_total}\\n"'
      lines[#lines + 1] = "silent"
      lines[#lines + 1] = 'header = "Content-Type: application/json"'
      lines[#lines + 1] = 'header = "Authorization: Bearer ' .. token .. '"'
      lines[#lines + 1] = "data-binary = " .. ('%q'):format(body)
    end
    local f = assert(io.open(dir .. "/cfg", "w"))
    f:write(table.concat(lines, "\n"), "\n")
    f:close()
    for x in ehelp.sh("curl -K " .. dir .. "/cfg 2>/dev/null"):gmatch("[%d%.]+") do
      direct[#direct + 1] = tonumber(x) * 1000
    end
    os.execute("rm -rf " .. dir)
  end
  print("the same upsert sent to Port directly: " .. summary(direct))
  print(("jq compiles in the worker after %d webhooks: %d (at start: the mapping's resources)")
    :format(n + 200, select(2, ng:json("GET", "/integration/health")).mapping.compiles))
end)
nh.stop_all()
ehelp.stop_all()
if not ok then io.stderr:write(tostring(err), "\n") os.exit(1) end
