-- spec/helpers/burst.lua: many concurrent HTTP requests from one curl
-- process (curl --parallel), in the background, each one's status and
-- time written as it ends: for the live-event specs and `make bench-live`.
--
--   local burst = require "spec.helpers.burst"
--   local b = burst.start(reqs, { parallel = 100 })
--     reqs: {{method=, url=, body= (string), headers = {name = value}, tag=}...}
--   b.results() -> {{status=, seconds=, tag=}...} for the requests ended so far
--   b.done() -> true once curl exited;  b.wait(seconds) -> results
local ehelp = require "spec.helpers.emulator"

local q, read_file = ehelp.shell_quote, ehelp.read_file
local concat, format = table.concat, string.format

local _M = {}

local function esc(s)
  return '"' .. s:gsub("\\", "\\\\"):gsub('"', '\\"'):gsub("\n", "\\n") .. '"'
end

function _M.start(reqs, opts)
  opts = opts or {}
  local dir = ehelp.tmpdir()
  local lines = {}
  for i, r in ipairs(reqs) do
    if i > 1 then lines[#lines + 1] = "next" end
    lines[#lines + 1] = "url = " .. esc(r.url)
    lines[#lines + 1] = "request = " .. esc(r.method or "POST")
    lines[#lines + 1] = "output = \"/dev/null\""
    lines[#lines + 1] = "max-time = " .. (opts.timeout or 60)
    lines[#lines + 1] = "write-out = " .. esc("%{http_code} %{time_total} " .. (r.tag or i) .. "\n")
    for k, v in pairs(r.headers or {}) do lines[#lines + 1] = "header = " .. esc(k .. ": " .. v) end
    if r.body then lines[#lines + 1] = "data-binary = " .. esc(r.body) end
  end
  local f = assert(io.open(dir .. "/reqs.cfg", "w"))
  f:write(concat(lines, "\n"), "\n")
  f:close()
  os.execute(format("(curl -s -Z --parallel-immediate --parallel-max %d -K %s > %s 2>/dev/null;"
    .. " echo $? > %s) </dev/null >/dev/null 2>&1 &", opts.parallel or 100, q(dir .. "/reqs.cfg"),
    q(dir .. "/out"), q(dir .. "/rc")))
  local b = {}
  function b.results()
    local out = {}
    for line in (read_file(dir .. "/out") or ""):gmatch("[^\n]+") do
      local code, t, tag = line:match("^(%d+) ([%d%.]+) (.*)$")
      if code then out[#out + 1] = { status = tonumber(code), seconds = tonumber(t), tag = tag } end
    end
    return out
  end
  function b.done() return read_file(dir .. "/rc") ~= nil end
  function b.wait(seconds)
    local deadline = os.time() + (seconds or 120)
    while not b.done() and os.time() <= deadline do ehelp.sleep(0.05) end
    return b.results()
  end
  function b.cleanup() os.execute("rm -rf " .. q(dir)) end
  return b
end

return _M
