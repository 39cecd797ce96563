-- spec/helpers/sail.lua: `ocean sail` (and other commands of bin/ocean) as
-- subprocesses, under the runtime the suite runs on (OCEAN_TEST_RUNTIME:
-- lua5.4 or luajit; bin/ocean picks the matching build).
--
--   local sail = require "spec.helpers.sail"
--   local r = sail.run({ "sail", "examples/dpkg", "--once" }, env)
--     -- r.rc, r.out, r.err (the process runs to its end, at most 120 s)
--   local p = sail.start({ "sail", path, "--port", sail.free_port() }, env)
--   p.wait_ready()             -- until GET /integration/health answers
--   p.http("POST", "/integration/webhook", { body = {...} }) -> status, text
--   local done = p:background("POST", path, body_text [, headers])
--     done() -> status, seconds (curl's time_total) once answered, or nil
--   local rc, out, err = p.stop()        -- SIGTERM, wait for the exit
--   local env = sail.emulator_env(emu, { OCEAN__INTEGRATION__IDENTIFIER = "x" })
--   local p = sail.serve(path, env)  -- sail on a free loopback port, ready
--   sail.stop_all()            -- teardown: every process still running
--
-- env: the only variables the process sees, besides PATH and HOME (the
-- developer's OCEAN__* settings never leak in). Every process runs under
-- `timeout`, so that none outlives a crashed spec run by long.
local ehelp = require "spec.helpers.emulator"
local core = require "ocean.core"

local q, read_file, sh = ehelp.shell_quote, ehelp.read_file, ehelp.sh
local format, concat = string.format, table.concat

local _M = {}

local running = {}

function _M.runtime()
  local rt = os.getenv("OCEAN_TEST_RUNTIME")
  if rt == nil or rt == "" then rt = rawget(_G, "jit") and "luajit" or "lua5.4" end
  return rt
end

-- A TCP port that was free a moment ago (the server that found it is closed).
function _M.free_port()
  local srv = assert(core.server_start { host = "127.0.0.1", port = 0 })
  local port = srv:port()
  srv:close()
  return port
end

local function command(args, env, dir, limit, cwd)
  local parts = { cwd and ("cd " .. q(cwd) .. " &&") or "",
                  "env -i", "PATH=" .. q(os.getenv("PATH") or "/usr/bin:/bin"),
                  "HOME=" .. q(os.getenv("HOME") or "/tmp") }
  -- the build the suite runs on (build/jq17: against libjq 1.7.1)
  if os.getenv("OCEAN_CORE_BUILD") then
    parts[#parts + 1] = "OCEAN_CORE_BUILD=" .. q(os.getenv("OCEAN_CORE_BUILD"))
  end
  local names = {}
  for k in pairs(env or {}) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do parts[#parts + 1] = k .. "=" .. q(env[k]) end
  parts[#parts + 1] = format("timeout -k 5 %d %s %s", limit, _M.runtime(),
    q(ehelp.root() .. "/bin/ocean"))
  for _, a in ipairs(args) do parts[#parts + 1] = q(a) end
  parts[#parts + 1] = format("> %s 2> %s < /dev/null", q(dir .. "/out"), q(dir .. "/err"))
  return concat(parts, " ")
end

-- Run to the end: {rc=, out=, err=}. opts: limit (s), cwd (the
-- directory it runs in), stdin (text fed to it; default: /dev/null).
function _M.run(args, env, opts)
  opts = opts or {}
  local dir = ehelp.tmpdir()
  local cmd = command(args, env, dir, opts.limit or 120, opts.cwd)
  if opts.stdin then
    ehelp.write_file(dir .. "/in", opts.stdin)
    cmd = cmd:gsub("< /dev/null$", "< " .. q(dir .. "/in"))
  end
  local rc = sh(cmd .. "; echo $?")
  local r = { rc = tonumber(rc), out = read_file(dir .. "/out") or "",
              err = read_file(dir .. "/err") or "" }
  os.execute("rm -rf " .. q(dir))
  return r
end

local Proc = {}
Proc.__index = Proc

-- Start in the background. opts.port: the --port given (for p.url).
function _M.start(args, env, opts)
  opts = opts or {}
  local dir = ehelp.tmpdir()
  local p = setmetatable({ dir = dir, args = args }, Proc)
  os.execute(format("(%s & echo $! > %s; wait $!; echo $? > %s) > /dev/null 2>&1 &",
    command(args, env, dir, opts.limit or 300), q(dir .. "/pid"), q(dir .. "/rc")))
  local deadline = os.time() + 5
  while not p.pid do
    p.pid = tonumber(read_file(dir .. "/pid") or "")
    if not p.pid then
      assert(os.time() <= deadline, "the process did not start")
      ehelp.sleep(0.01)
    end
  end
  running[p] = true
  if opts.port then p.url = "http://127.0.0.1:" .. opts.port end
  return p
end

function Proc:output()
  return read_file(self.dir .. "/out") or "", read_file(self.dir .. "/err") or ""
end

-- The exit status, or nil while it runs.
function Proc:status()
  return tonumber(read_file(self.dir .. "/rc") or "")
end

-- Wait up to `seconds` for the exit: the status, or nil.
function Proc:wait(seconds)
  local deadline = os.time() + (seconds or 10)
  while true do
    local rc = self:status()
    if rc or os.time() > deadline then return rc end
    ehelp.sleep(0.02)
  end
end

function Proc:http(method, path, opts)
  return ehelp.http(method, self.url .. path, opts)
end

-- A request sent by a curl in the background: returns a function that
-- gives status, time_total (s) once it ended, nil while it runs.
function Proc:background(method, path, body, headers)
  self.nbg = (self.nbg or 0) + 1
  local out = format("%s/bg-%d.out", self.dir, self.nbg)
  local f = assert(io.open(out .. ".body", "wb"))
  f:write(body or "")
  f:close()
  local h = {}
  for k, v in pairs(headers or { ["Content-Type"] = "application/json" }) do
    h[#h + 1] = "-H " .. q(k .. ": " .. v)
  end
  local data = body and ("--data-binary @" .. q(out .. ".body")) or ""
  os.execute(format("(curl -s -o /dev/null -w '%%{http_code} %%{time_total}' --max-time 60 -X %s"
    .. " %s %s %s > %s.tmp 2>/dev/null; mv %s.tmp %s) </dev/null >/dev/null 2>&1 &",
    q(method), concat(h, " "), data, q(self.url .. path), q(out), q(out), q(out)))
  return function()
    local text = read_file(out)
    if not text then return nil end
    local code, t = text:match("^(%d+) ([%d%.]+)")
    return tonumber(code), tonumber(t)
  end
end

-- Wait until GET /integration/health answers 200; raises (with the
-- process's output) when it exits first or after `seconds`.
function Proc:wait_ready(seconds)
  local deadline = os.time() + (seconds or 15)
  while true do
    local status = self:http("GET", "/integration/health", { timeout = 2 })
    if status == 200 then return true end
    local rc = self:status()
    if rc or os.time() > deadline then
      local out, err = self:output()
      error(format("ocean sail is not ready (exit status %s):\n%s\n%s", tostring(rc), out, err), 2)
    end
    ehelp.sleep(0.05)
  end
end

-- The settings that point a process at the emulator emu (spec.helpers.
-- emulator: its URL and client credentials), with the variables of `more`
-- on top: a new env table for run, start and serve.
function _M.emulator_env(emu, more)
  local env = {
    OCEAN__PORT__BASE_URL = emu.url,
    OCEAN__PORT__CLIENT_ID = emu.client_id,
    OCEAN__PORT__CLIENT_SECRET = emu.client_secret,
  }
  for k, v in pairs(more or {}) do env[k] = v end
  return env
end

-- `ocean sail PATH` serving on a free loopback port with env, waited for
-- until its health answers (unless opts.no_wait). Returns the process.
function _M.serve(path, env, opts)
  local port = _M.free_port()
  local p = _M.start({ "sail", path, "--port", tostring(port), "--host", "127.0.0.1" }, env,
    { port = port })
  if not (opts and opts.no_wait) then p:wait_ready() end
  return p
end

-- Poll fn() (every 50 ms, up to `seconds`) until it returns a true value.
function _M.eventually(fn, seconds, what)
  local deadline = os.time() + (seconds or 10)
  while true do
    local v = fn()
    if v then return v end
    if os.time() > deadline then error("timed out waiting for " .. (what or "a condition"), 2) end
    ehelp.sleep(0.05)
  end
end

-- The ocean process itself: timeout(1)'s child. A signal sent to timeout
-- reaches the child twice (timeout forwards it to the child, then to its
-- process group), and two signals read apart mean "exit at once" to the
-- runner: which one a loaded machine delivers would decide the spec.
local function target(self)
  local kids = read_file(format("/proc/%d/task/%d/children", self.pid, self.pid))
  return tonumber(kids and kids:match("%d+")) or self.pid
end

function Proc:signal(name)
  os.execute(format("kill -%s %d 2>/dev/null", name or "TERM", target(self)))
end

-- Send a signal (default TERM), wait for the exit (SIGKILL after
-- `seconds`); returns rc, stdout, stderr and removes the files.
function Proc:stop(signal, seconds)
  if not running[self] then return self.rc, self.out, self.err end
  running[self] = nil
  if not self:status() then
    self:signal(signal or "TERM")
    if not self:wait(seconds or 10) then
      -- timeout(1) leads its own process group: take it all down
      os.execute(format("kill -KILL -- -%d 2>/dev/null", self.pid))
      self:wait(5)
    end
  end
  self.rc = self:status()
  self.out, self.err = self:output()
  os.execute("rm -rf " .. q(self.dir))
  return self.rc, self.out, self.err
end

function _M.stop_all()
  for p in pairs(running) do p:stop("TERM", 3) end
end

return _M
