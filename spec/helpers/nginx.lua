-- spec/helpers/nginx.lua: run the OpenResty example (examples/openresty)
-- as an nginx subprocess against an emulator, from specs.
--
--   local nh = require "spec.helpers.nginx"
--   local ng = nh.start{ emu = emu, workers = 1, env = {...} }  -- answers health
--   local status, body = ng.json("GET", "/integration/health")
--   local code, seconds = ng.timed("GET", "/integration/health")
--   ng.reload()  ng.worker_pids()  ng.error_log()
--   ng.stop()                               -- or nh.stop_all() in teardown
--   local dir = nh.integration { append = { ["main.lua"] = routes } }
--                               -- a copy of the example integration, to add to
--
-- nginx listens on a free loopback port: a random one is tried, and
-- another when nginx reports it in use. It is started with --exit-with
-- <this process>, so it quits by itself if the spec process dies.
local json = require "ocean.json"
local ehelp = require "spec.helpers.emulator"

local format, concat = string.format, table.concat
local q, sh, read_file, alive = ehelp.shell_quote, ehelp.sh, ehelp.read_file, ehelp.alive

local unpack = table.unpack or unpack

local _M = { IDENTIFIER = "spec-openresty" }

local running = {}

local function my_pid()
  local s = read_file("/proc/self/stat")
  return s and s:match("^(%d+)")
end

local function now()
  return tonumber((sh("date +%s.%N"):gsub("%s+$", ""))) or os.time()
end
_M.now = now

-- Poll fn() until it returns a true value or `seconds` pass; returns its
-- last values (nil/false on timeout).
function _M.wait_for(fn, seconds, step)
  local deadline = now() + (seconds or 20)
  while true do
    local r = { n = 0 }
    local function keep(...) r.n = select("#", ...); for i = 1, r.n do r[i] = select(i, ...) end end
    keep(fn())
    if r[1] or now() > deadline then return unpack(r, 1, r.n) end
    ehelp.sleep(step or 0.1)
  end
end

local Ng = {}
Ng.__index = Ng

function Ng:http(method, path, opts)
  return ehelp.http(method, self.url .. path, opts)
end

-- status, decoded JSON body (or the text)
function Ng:json(method, path, body)
  local status, text = self:http(method, path, { body = body })
  local v = text ~= "" and json.decode(text) or nil
  if v == nil then v = text end
  return status, v
end

-- One request with curl's own timing: status, time_total (s).
function Ng:timed(method, path, body)
  local args = { "curl -s -o /dev/null -w '%{http_code} %{time_total}' --max-time 10 -X", q(method) }
  if body then args[#args + 1] = "--data-binary " .. q(body) end
  args[#args + 1] = q(self.url .. path)
  local out = sh(concat(args, " ") .. " 2>/dev/null")
  local code, t = out:match("^(%d+) ([%d%.]+)")
  return tonumber(code), tonumber(t)
end

-- Start a request in the background; returns a function that gives
-- status, time_total once it ended (nil while it runs).
function Ng:background(method, path, body)
  self.nbg = (self.nbg or 0) + 1
  local out = format("%s/bg-%d.out", self.dir, self.nbg)
  local bodyf = out .. ".body"
  local f = assert(io.open(bodyf, "wb"))
  f:write(body or "")
  f:close()
  os.execute(format("(curl -s -o /dev/null -w '%%{http_code} %%{time_total}' --max-time 30 -X %s"
    .. " --data-binary @%s %s > %s.tmp 2>/dev/null; mv %s.tmp %s) </dev/null >/dev/null 2>&1 &",
    q(method), q(bodyf), q(self.url .. path), q(out), q(out), q(out)))
  return function()
    local text = read_file(out)
    if not text then return nil end
    local code, t = text:match("^(%d+) ([%d%.]+)")
    return tonumber(code), tonumber(t)
  end
end

function Ng:nginx(args)
  return sh(format("nginx -p %s -c conf/nginx.conf %s 2>&1", q(self.prefix), args))
end

function Ng:reload()
  return self:nginx("-s reload")
end

-- The pids of the master's children (its workers), sorted.
function Ng:worker_pids()
  local pids = {}
  for pid in sh("ps -o pid= --ppid " .. self.pid):gmatch("%d+") do
    pids[#pids + 1] = tonumber(pid)
  end
  table.sort(pids)
  return pids
end

function Ng:error_log()
  return read_file(self.prefix .. "/logs/error.log") or ""
end

-- Quit gracefully (then TERM, then KILL), remove the prefix. Idempotent.
function Ng:stop()
  if not running[self] then return self.final_log end
  running[self] = nil
  if alive(self.pid) then
    self:nginx("-s quit")
    _M.wait_for(function() return not alive(self.pid) end, 20)
  end
  if alive(self.pid) then
    os.execute("kill -TERM " .. self.pid .. " 2>/dev/null")
    _M.wait_for(function() return not alive(self.pid) end, 5)
  end
  if alive(self.pid) then os.execute("kill -KILL " .. self.pid .. " 2>/dev/null") end
  if self.watchdog then          -- it notices within a second
    _M.wait_for(function() return not alive(self.watchdog) end, 5)
    if alive(self.watchdog) then os.execute("kill -TERM " .. self.watchdog .. " 2>/dev/null") end
  end
  self.final_log = self:error_log()
  if os.getenv("OCEAN_SPEC_KEEP_NGINX") then
    io.stderr:write("\n[nginx prefix kept: ", self.prefix, "]\n")
  else
    os.execute("rm -rf " .. q(self.dir))
  end
  return self.final_log
end

local function env_args(opts)
  local emu = opts.emu
  local env = {
    OCEAN__PORT__BASE_URL = emu.url,
    OCEAN__PORT__CLIENT_ID = emu.client_id,
    OCEAN__PORT__CLIENT_SECRET = emu.client_secret,
    OCEAN__INTEGRATION__IDENTIFIER = opts.identifier or _M.IDENTIFIER,
    OCEAN__EVENT_LISTENER__TYPE = "WEBHOOKS_ONLY",
    APPLICATION__LOG_LEVEL = "INFO",
  }
  for k, v in pairs(opts.env or {}) do env[k] = v end
  local out = {}
  for k, v in pairs(env) do out[#out + 1] = k .. "=" .. q(v) end
  table.sort(out)
  return concat(out, " ")
end

-- Start nginx with the example config. opts: emu (required), workers,
-- env (extra OCEAN__* variables), integration (folder), lock_ttl (s), tries.
function _M.start(opts)
  local root = ehelp.root()
  local dir = ehelp.tmpdir()
  os.execute("chmod 755 " .. q(dir))
  math.randomseed(os.time() + tonumber(my_pid() or 0))
  local last
  for _ = 1, opts.tries or 10 do
    local port = math.random(20000, 59999)
    local prefix = dir .. "/nginx"
    os.execute("rm -rf " .. q(prefix))
    local cmd = { "env", env_args(opts), q(root .. "/examples/openresty/start"),
      "--prefix", q(prefix), "--listen", "127.0.0.1:" .. port,
      "--workers", tostring(opts.workers or 1), "--log-level", "info" }
    if opts.integration then cmd[#cmd + 1] = "--integration " .. q(opts.integration) end
    if opts.lock_ttl then cmd[#cmd + 1] = "--lock-ttl " .. tostring(opts.lock_ttl) end
    local me = my_pid()
    if me then cmd[#cmd + 1] = "--exit-with " .. me end
    local out = sh(concat(cmd, " ") .. " 2>&1")
    local pid = tonumber(out:match("pid=(%d+)"))
    if pid then
      local ng = setmetatable({ dir = dir, prefix = prefix, pid = pid, port = port,
                                watchdog = tonumber(out:match("watchdog=(%d+)")),
                                url = "http://127.0.0.1:" .. port }, Ng)
      running[ng] = true
      return ng
    end
    last = out
    if not out:find("Address already in use", 1, true) then break end
  end
  os.execute("rm -rf " .. q(dir))
  error("nginx did not start:\n" .. tostring(last), 2)
end

-- A copy of the example integration (examples/openresty/integration) in a
-- new temporary folder that nginx's workers can read, with text added:
-- changes.append = {relative path = text to append}, changes.write =
-- {relative path = the file's new text}. Returns the folder (the caller
-- removes it); raises when a step fails.
function _M.integration(changes)
  changes = changes or {}
  local dir = ehelp.tmpdir()
  local example = ehelp.root() .. "/examples/openresty/integration"
  local out = sh(format("cp -r %s/. %s/ 2>&1 && chmod -R a+rX %s 2>&1", q(example), q(dir), q(dir)))
  if out ~= "" then error("copying " .. example .. " to " .. dir .. ": " .. out, 2) end
  for mode, files in pairs { a = changes.append or {}, w = changes.write or {} } do
    for path, text in pairs(files) do
      local f = assert(io.open(dir .. "/" .. path, mode))
      f:write(text)
      f:close()
    end
  end
  return dir
end

-- Wait until the health route says ready (bootstrapped, mapping compiled);
-- raises with the error log after `seconds` (30). Returns ng.
function _M.wait_ready(ng, seconds)
  local ok = _M.wait_for(function()
    local _, h = ng:json("GET", "/integration/health")
    return type(h) == "table" and h.ready
  end, seconds or 30)
  if not ok then error("nginx is not ready:\n" .. ng:error_log(), 2) end
  return ng
end

function _M.stop_all()
  for ng in pairs(running) do ng:stop() end
end

return _M
