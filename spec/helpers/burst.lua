-- spec/helpers/burst.lua: many concurrent HTTP requests from one curl
-- process (curl --parallel), in the background, each one's status and
-- time written as it ends: for the live-event specs and `make bench-live`.
--
--   local burst = require "spec.helpers.burst"
--   local b = burst.start(reqs, { parallel = 100, processes = 1 })
--     reqs: {{method=, url=, body= (string), headers = {name = value}, tag=}...}
--     processes: curl processes sharing the requests (curl 7.88 runs at
--     most 300 transfers at once: 4 x 250 make 1000 concurrent ones)
--   b.results() -> {{status=, seconds=, tag=}...} for the requests ended so far
--   b.done() -> true once curl exited;  b.wait(seconds) -> results
local ehelp = require "spec.helpers.emulator"

local q, read_file = ehelp.shell_quote, ehelp.read_file
local concat, format = table.concat, string.format

local _M = {}

local function esc(s)
  return '"' .. s:gsub("\\", "\\\\"):gsub('"', '\\"'):gsub("\n", "\\n") .. '"'
end

local function config(reqs, opts, first, last, step)
  local lines = {}
  for i = first, last, step do
    local r = reqs[i]
    if #lines > 0 then lines[#lines + 1] = "next" end
    lines[#lines + 1] = "url = " .. esc(r.url)
    lines[#lines + 1] = "request = " .. esc(r.method or "POST")
    lines[#lines + 1] = "output = \"/dev/null\""
    lines[#lines + 1] = "max-time = " .. (opts.timeout or 60)
    lines[#lines + 1] = "write-out = " .. esc("%{http_code} %{time_total} " .. (r.tag or i) .. "\n")
    for k, v in pairs(r.headers or {}) do lines[#lines + 1] = "header = " .. esc(k .. ": " .. v) end
    if r.body then lines[#lines + 1] = "data-binary = " .. esc(r.body) end
  end
  return concat(lines, "\n") .. "\n"
end

function _M.start(reqs, opts)
  opts = opts or {}
  local dir = ehelp.tmpdir()
  local k = opts.processes or 1
  for p = 1, k do
    local cfg = format("%s/reqs-%d.cfg", dir, p)
    local f = assert(io.open(cfg, "w"))
    f:write(config(reqs, opts, p, #reqs, k))
    f:close()
    os.execute(format("(curl -s -Z --parallel-immediate --parallel-max %d -K %s > %s 2>/dev/null;"
      .. " echo $? > %s) </dev/null >/dev/null 2>&1 &", opts.parallel or 100, q(cfg),
      q(format("%s/out-%d", dir, p)), q(format("%s/rc-%d", dir, p))))
  end
  local b = {}
  function b.results()
    local out = {}
    for p = 1, k do
      for line in (read_file(format("%s/out-%d", dir, p)) or ""):gmatch("[^\n]+") do
        local code, t, tag = line:match("^(%d+) ([%d%.]+) (.*)$")
        if code then out[#out + 1] = { status = tonumber(code), seconds = tonumber(t), tag = tag } end
      end
    end
    return out
  end
  function b.done()
    for p = 1, k do
      if read_file(format("%s/rc-%d", dir, p)) == nil then return false end
    end
    return true
  end
  function b.wait(seconds)
    local deadline = os.time() + (seconds or 120)
    while not b.done() and os.time() <= deadline do ehelp.sleep(0.05) end
    return b.results()
  end
  function b.cleanup() os.execute("rm -rf " .. q(dir)) end
  return b
end

return _M
