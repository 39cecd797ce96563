-- spec/helpers/nginx_conf.lua: start nginx with a configuration text of
-- the spec's own (e.g. the one docs/openresty.md shows), as written.
--
--   local nc = require "spec.helpers.nginx_conf"
--   local ng = nc.start(function(port, prefix) return conf_text end, { ready = "/health" })
--   (opts: dirs, env, args, pid_file, error_log; see start)
--   ng.url, ng.prefix, ng.port, ng.pid (the master), ng:error_log(), ng:file(rel)
--   ng:stop()             -- or nc.stop_all() in teardown
--
-- The text goes to <prefix>/conf/nginx.conf and nginx runs as
-- `nginx -p <prefix> -c <prefix>/conf/nginx.conf`, daemon or not, as the
-- text says; the master's pid is read from the pid file the text names
-- (opts.pid_file, relative to the prefix; default "nginx.pid"). nginx is
-- ready when that file names a live process and GET opts.ready answers
-- (any status). A random loopback port is tried, another when it is taken.
-- A watchdog quits nginx if the spec process dies.
local ehelp = require "spec.helpers.emulator"

local format = string.format
local q, sh, read_file, alive = ehelp.shell_quote, ehelp.sh, ehelp.read_file, ehelp.alive

local _M = {}

local running = {}

local function my_pid()
  local s = read_file("/proc/self/stat")
  return s and s:match("^(%d+)")
end

local Ng = {}
Ng.__index = Ng

function Ng:file(rel)
  return read_file(self.prefix .. "/" .. rel)
end

function Ng:error_log()
  return self:file(self.error_log_file) or ""
end

function Ng:http(method, path, opts)
  return ehelp.http(method, self.url .. path, opts)
end

function Ng:nginx(args)
  return sh(format("nginx -p %s %s %s 2>&1", q(self.prefix), self.args, args))
end

local function wait(fn, seconds)
  local deadline = os.time() + seconds
  while not fn() do
    if os.time() > deadline then return false end
    ehelp.sleep(0.05)
  end
  return true
end

-- Quit gracefully, then TERM, then KILL; remove the prefix. Idempotent.
function Ng:stop()
  if not running[self] then return self.final_log end
  running[self] = nil
  if self.pid and alive(self.pid) then
    self:nginx("-s quit")
    if not wait(function() return not alive(self.pid) end, 15) then
      os.execute("kill -TERM " .. self.pid .. " 2>/dev/null")
      if not wait(function() return not alive(self.pid) end, 5) then
        os.execute("kill -KILL " .. self.pid .. " 2>/dev/null")
      end
    end
  end
  if self.watchdog then os.execute("kill " .. self.watchdog .. " 2>/dev/null") end
  self.final_log = self:error_log()
  os.execute("rm -rf " .. q(self.dir))
  return self.final_log
end

local function try(render, opts, dir, port)
  local prefix = dir .. "/prefix"
  os.execute("rm -rf " .. q(prefix) .. " && mkdir -p " .. q(prefix .. "/conf") .. " " .. q(prefix .. "/logs"))
  os.execute("chmod 755 " .. q(dir) .. " " .. q(prefix))
  local f = assert(io.open(prefix .. "/conf/nginx.conf", "w"))
  f:write(render(port, prefix))
  f:close()
  local ng = setmetatable({ dir = dir, prefix = prefix, port = port, url = "http://127.0.0.1:" .. port,
                            error_log_file = opts.error_log or "logs/error.log" }, Ng)
  for _, d in ipairs(opts.dirs or {}) do os.execute("mkdir -p " .. q(prefix .. "/" .. d)) end
  local env = {}
  for k, v in pairs(opts.env or {}) do env[#env + 1] = k .. "=" .. q(v) end
  table.sort(env)
  ng.args = opts.args or ("-c " .. q(prefix .. "/conf/nginx.conf"))
  local started = sh(format("env %s nginx -p %s %s > %s 2>&1 & echo $!", table.concat(env, " "),
    q(prefix), ng.args, q(dir .. "/stderr.log")))
  local launcher = tonumber(started)
  local pid_file = prefix .. "/" .. (opts.pid_file or "nginx.pid")
  local ready = wait(function()
    local pid = tonumber(read_file(pid_file) or "")
    if pid and alive(pid) then
      ng.pid = pid
      local status = ng:http("GET", opts.ready or "/", { timeout = 2 })
      return status ~= 0
    end
    -- a launcher that exited without a pid file: nginx refused to start
    return launcher and not alive(launcher) and not read_file(pid_file)
  end, opts.timeout or 20)
  local status = ng.pid and ng:http("GET", opts.ready or "/", { timeout = 2 }) or 0
  if ready and status ~= 0 then
    running[ng] = true
    local me = my_pid()
    if me then
      ng.watchdog = tonumber(sh(format("(while [ -d /proc/%s ] && [ -d /proc/%d ]; do sleep 1; done;"
        .. " kill -QUIT %d 2>/dev/null) > /dev/null 2>&1 < /dev/null & echo $!", me, ng.pid, ng.pid)))
    end
    return ng
  end
  local why = (read_file(dir .. "/stderr.log") or "") .. (ng:error_log() or "")
  if ng.pid and alive(ng.pid) then os.execute("kill -KILL " .. ng.pid .. " 2>/dev/null") end
  return nil, why
end

-- render(port, prefix) -> the configuration text. opts: ready (path),
-- pid_file, error_log (relative to the prefix), dirs (to create under the
-- prefix first), env (variables for nginx), args (nginx's arguments after
-- -p <prefix>; default "-c <prefix>/conf/nginx.conf"), timeout, tries.
function _M.start(render, opts)
  opts = opts or {}
  local dir = ehelp.tmpdir()
  math.randomseed(os.time() + tonumber(my_pid() or 0))
  local last
  for _ = 1, opts.tries or 8 do
    local ng, why = try(render, opts, dir, math.random(20000, 59999))
    if ng then return ng end
    last = why
    if not why:find("Address already in use", 1, true) then break end
  end
  os.execute("rm -rf " .. q(dir))
  error("nginx did not start:\n" .. tostring(last), 2)
end

function _M.stop_all()
  for ng in pairs(running) do ng:stop() end
end

return _M
