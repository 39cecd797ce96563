-- Run by stream_spec.lua in a fresh process, so that its resident memory
-- measures this resync alone: a 200 000-object resync from a generator
-- against the emulator at arg[1]; prints "created peak_growth_mb".
local url, total, page_size = arg[1], tonumber(arg[2]), tonumber(arg[3])
local ocean = require "ocean"
local config = require "ocean.config"
local json = require "ocean.json"

local function rss_mb()
  local f = io.open("/proc/self/status")
  local text = f:read("a") or f:read("*a")
  f:close()
  return tonumber(text:match("VmRSS:%s*(%d+)")) / 1024
end

local dir = os.tmpname()
os.remove(dir)
os.execute("mkdir -p " .. dir .. "/.port")
local f = assert(io.open(dir .. "/.port/spec.yaml", "w"))
f:write("type: spec\nversion: 1.0.0\n")
f:close()
local settings = assert(config.load { path = dir, env = {
  OCEAN__PORT__BASE_URL = url, OCEAN__PORT__CLIENT_ID = "emulator-client-id",
  OCEAN__PORT__CLIENT_SECRET = "emulator-client-secret",
  OCEAN__INTEGRATION__IDENTIFIER = "spec-integration", APPLICATION__LOG_LEVEL = "ERROR" } })
os.execute("rm -rf " .. dir)
assert(ocean.init { settings = settings })

local pad = ("x"):rep(1000)
collectgarbage()
local base, peak = rss_mb(), 0
ocean.on_resync("item", function()
  for p = 0, total / page_size - 1 do
    local page = {}
    for i = 1, page_size do
      local n = p * page_size + i
      page[i] = { id = "i" .. n, n = n, payload = pad .. n }   -- ~1 KB, unique
    end
    coroutine.yield(page)
    local r = rss_mb()
    if r > peak then peak = r end
  end
end)
local s = ocean.sync_raw_all()
if not s.ok then
  io.stderr:write(json.encode(s.errors), "\n")
  os.exit(1)
end
print(("%d %.1f %.1f"):format(s.created, peak - base, base))
