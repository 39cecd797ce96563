-- spec/helpers/slowclients.lua: many idle or slow TCP connections held by a
-- helper process (spec/helpers/slowclients.c, compiled once per run with
-- cc into a temporary folder).
--
--   local slow = require "spec.helpers.slowclients"
--   local h = slow.start(port, 2000, { sources = "127.0.0.10:20",
--                                      mode = "head", interval = 500 })
--   h:status()   -> {connected=, failed=, open=, closed=, sent=, answered=}
--                   (nil until the first report)
--   h:wait(function(st) return st.connected == 2000 end, seconds)
--   h:stop()     -- SIGTERM; slow.stop_all() in teardown
local ehelp = require "spec.helpers.emulator"

local q, read_file, sh = ehelp.shell_quote, ehelp.read_file, ehelp.sh
local format = string.format

local _M = {}

local binary
local running = {}

-- The compiled helper (compiled at the first call).
function _M.binary()
  if binary then return binary end
  local dir = ehelp.tmpdir()
  local out = dir .. "/slowclients"
  local src = ehelp.root() .. "/spec/helpers/slowclients.c"
  -- (never under a sanitizer the suite may run with: LD_PRELOAD)
  local log = sh(format("env -u LD_PRELOAD cc -O2 -std=c99 -Wall -o %s %s 2>&1; echo rc=$?",
    q(out), q(src)))
  assert(log:match("rc=0"), "cannot compile slowclients.c:\n" .. log)
  binary = out
  return out
end

local H = {}
H.__index = H

-- Start holding `count` connections to 127.0.0.1:port. opts: sources
-- ("A.B.C.D:N"), mode (idle, head, body, keepalive), interval (ms),
-- hold (s, default 120).
function _M.start(port, count, opts)
  opts = opts or {}
  local dir = ehelp.tmpdir()
  local h = setmetatable({ dir = dir, file = dir .. "/status" }, H)
  local args = { "env -u LD_PRELOAD", q(_M.binary()), tostring(port), tostring(count),
                 "--status", q(h.file), "--hold", tostring(opts.hold or 120) }
  if opts.sources then args[#args + 1] = "--sources " .. q(opts.sources) end
  if opts.mode then args[#args + 1] = "--mode " .. q(opts.mode) end
  if opts.interval then args[#args + 1] = "--interval " .. tostring(opts.interval) end
  os.execute(format("%s > %s 2>&1 & echo $! > %s", table.concat(args, " "),
    q(dir .. "/log"), q(dir .. "/pid")))
  h.pid = tonumber(read_file(dir .. "/pid"))
  assert(h.pid, "slowclients did not start")
  running[h] = true
  return h
end

function H:status()
  local line = read_file(self.file)
  if not line then return nil end
  local st = {}
  for k, v in line:gmatch("(%w+)=(%d+)") do st[k] = tonumber(v) end
  return st
end

-- Poll until pred(status) is true; raises after `seconds` (default 20)
-- with the last status. step(): called between polls (e.g. to serve).
function H:wait(pred, seconds, step)
  local deadline = os.time() + (seconds or 20)
  while true do
    local st = self:status()
    if st and pred(st) then return st end
    if os.time() > deadline then
      error("slowclients: timed out; last status: " .. tostring(read_file(self.file)), 2)
    end
    if step then step() else ehelp.sleep(0.05) end
  end
end

function H:stop()
  if not running[self] then return end
  running[self] = nil
  os.execute(format("kill %d 2>/dev/null; sleep 0.1; kill -9 %d 2>/dev/null", self.pid, self.pid))
  os.execute("rm -rf " .. q(self.dir))
end

function _M.stop_all()
  for h in pairs(running) do h:stop() end
end

return _M
