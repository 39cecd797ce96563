-- spec/helpers/emulator.lua: start and drive a Port emulator from specs.
--
--   local helpers = require "spec.helpers.emulator"
--   local emu = helpers.start{ page_limit = 3 }     -- waits until ready
--   local status, body = emu.api("POST", "/v1/blueprints", { identifier = "x" })
--   emu.faults{ { method = "POST", path = "/bulk$", status = 429, count = 1 } }
--   emu.stop()                                      -- or helpers.stop_all()
--
-- The emulator is `lua5.4 bin/ocean port-emulator` of this checkout
-- (OCEAN_ROOT, else the current directory), a subprocess listening on an
-- ephemeral port, started with --exit-with <this process> so that it
-- exits by itself if the spec process dies. The helper talks HTTP with the
-- curl command line. OCEAN_EMULATOR_VALGRIND=1 runs the emulator under
-- valgrind (its report goes to <tmpdir>/valgrind.log, see emu.valgrind_log).
local json = require "ocean.json"

local format, concat = string.format, table.concat
local io_open, os_execute, os_getenv, os_remove = io.open, os.execute, os.getenv, os.remove

local _M = {}

local running = {}

_M.CLIENT_ID = "emulator-client-id"
_M.CLIENT_SECRET = "emulator-client-secret"

-- {==================== shell and files ====================

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
_M.shell_quote = q

local function read_file(path)
  local f = io_open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end
_M.read_file = read_file

local function write_file(path, s)
  local f = assert(io_open(path, "wb"))
  f:write(s)
  f:close()
end
_M.write_file = write_file

local function sh(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  p:close()
  return out
end
_M.sh = sh

function _M.tmpdir()
  return (sh("mktemp -d /tmp/ocean-spec.XXXXXX"):gsub("%s+$", ""))
end

function _M.sleep(s)
  os_execute("sleep " .. s)
end

function _M.root()
  local r = os_getenv("OCEAN_ROOT")
  if r and r ~= "" then return r end
  return (sh("pwd"):gsub("%s+$", ""))
end

local function my_pid()
  local s = read_file("/proc/self/stat")
  return s and s:match("^(%d+)")
end

local function alive(pid)
  local s = read_file("/proc/" .. pid .. "/stat")
  return s ~= nil and not s:match("^%d+ %b() [ZX]")
end
_M.alive = alive

-- }====================

-- {==================== curl ====================

-- One HTTP request with curl. opts: body (string, or a table sent as
-- JSON), headers ({name = value}), timeout (s). Returns status (number,
-- 0 when no answer), body text, headers ({lower-case name = value}).
function _M.http(method, url, opts)
  opts = opts or {}
  local dir = _M.scratch or _M.tmpdir()
  _M.scratch = dir
  local bodyf, headf, reqf = dir .. "/body", dir .. "/head", dir .. "/req"
  local args = { "curl -s -g -X", q(method), "-o", q(bodyf), "-D", q(headf),
                 "-w '%{http_code}'", "--max-time", tostring(opts.timeout or 30) }
  for k, v in pairs(opts.headers or {}) do
    args[#args + 1] = "-H " .. q(k .. ": " .. v)
  end
  local body = opts.body
  if type(body) == "table" then
    body = assert(json.encode(body))
    args[#args + 1] = "-H 'Content-Type: application/json'"
  end
  if body then
    write_file(reqf, body)
    args[#args + 1] = "--data-binary @" .. q(reqf)
  end
  args[#args + 1] = q(url)
  os_remove(bodyf)
  os_remove(headf)
  local status = tonumber(sh(concat(args, " ") .. " 2>/dev/null")) or 0
  local headers = {}
  for line in (read_file(headf) or ""):gmatch("[^\r\n]+") do
    local k, v = line:match("^([^:]+):%s*(.*)$")
    if k then headers[k:lower()] = v end
  end
  return status, read_file(bodyf) or "", headers
end

-- Bytes sent as they are, in one write, on a new connection to url
-- (http://host:port) through bash's /dev/tcp; everything the server sent
-- back until it closed (or seconds passed).
function _M.raw_send(url, bytes, seconds)
  local host, port = url:match("^http://([^:/]+):(%d+)")
  local script = ("exec 3<>/dev/tcp/%s/%s && printf '%%s' %s >&3 && timeout %d cat <&3")
    :format(host, port, q(bytes), seconds or 10)
  return sh("bash -c " .. q(script))
end

-- Requests sent as raw HTTP/1.1 bytes (raw_send), all in one write on one
-- connection (pipelined; the last says Connection: close): for what curl
-- hides (a HEAD answer's missing body, pipelining). paths: one path or a
-- list. Returns the first answer's status (0: no answer), headers
-- (lower-case names) and the bytes after its header block, then the raw
-- text of everything sent back.
function _M.raw_http(url, method, paths, seconds)
  local host = url:match("^http://([^:/]+)")
  if type(paths) ~= "table" then paths = { paths } end
  local reqs = {}
  for i, path in ipairs(paths) do
    reqs[i] = ("%s %s HTTP/1.1\r\nHost: %s\r\n%s\r\n"):format(method, path, host,
      i == #paths and "Connection: close\r\n" or "")
  end
  local raw = _M.raw_send(url, concat(reqs), seconds)
  local head, rest = raw:match("^(.-\r\n)\r\n(.*)$")
  local headers = {}
  for k, v in (head or ""):gmatch("\n([^:\r\n]+):%s*([^\r\n]*)") do headers[k:lower()] = v end
  return tonumber((head or ""):match("^HTTP/1%.%d (%d%d%d)")) or 0, headers, rest, raw
end

-- Many requests over one curl process (keep-alive): reqs is a list of
-- {method, url, body (string or table), headers}. Returns the statuses.
function _M.http_many(reqs)
  local dir = _M.scratch or _M.tmpdir()
  _M.scratch = dir
  local lines = {}
  local function esc(s)
    return '"' .. s:gsub("\\", "\\\\"):gsub('"', '\\"'):gsub("\n", "\\n") .. '"'
  end
  for i, r in ipairs(reqs) do
    if i > 1 then lines[#lines + 1] = "next" end
    lines[#lines + 1] = "url = " .. esc(r[2])
    lines[#lines + 1] = "request = " .. esc(r[1])
    lines[#lines + 1] = "output = \"/dev/null\""
    lines[#lines + 1] = "write-out = \"%{http_code}\\n\""
    lines[#lines + 1] = "silent"
    for k, v in pairs(r[4] or {}) do
      lines[#lines + 1] = "header = " .. esc(k .. ": " .. v)
    end
    local body = r[3]
    if type(body) == "table" then
      body = assert(json.encode(body))
      lines[#lines + 1] = "header = \"Content-Type: application/json\""
    end
    if body then lines[#lines + 1] = "data-binary = " .. esc(body) end
  end
  write_file(dir .. "/many.cfg", concat(lines, "\n") .. "\n")
  local out = sh("curl -K " .. q(dir .. "/many.cfg") .. " 2>/dev/null")
  local statuses = {}
  for s in out:gmatch("%d+") do statuses[#statuses + 1] = tonumber(s) end
  return statuses
end

-- }====================

-- {==================== the emulator process ====================

local Emu = {}

local function decode(text)
  if text == "" then return nil end
  return json.decode(text)
end

local function control(emu, method, path, body)
  local status, text = _M.http(method, emu.url .. path, { body = body })
  if status ~= 200 then
    error(format("emulator %s %s: HTTP %d %s", method, path, status, text), 3)
  end
  return decode(text)
end

local function build(emu)
  function emu.reset() control(emu, "POST", "/_emulator/reset") emu._token = nil end
  function emu.requests(opts)
    local path = "/_emulator/requests" .. (opts and opts.bodies and "?bodies=true" or "")
    return control(emu, "GET", path).requests
  end
  function emu.clear_requests() control(emu, "DELETE", "/_emulator/requests") end
  -- The bulk upsert requests in the log (POST .../entities/bulk), oldest first.
  function emu.bulk_upserts()
    local out = {}
    for _, r in ipairs(emu.requests()) do
      if r.method == "POST" and r.path:match("/entities/bulk$") then out[#out + 1] = r end
    end
    return out
  end
  function emu.faults(rules)
    if rules == nil then return control(emu, "DELETE", "/_emulator/faults") end
    return control(emu, "POST", "/_emulator/faults", { rules = json.array(rules) })
  end
  function emu.clear_faults() control(emu, "DELETE", "/_emulator/faults") end
  function emu.entities(bp)
    local path = "/_emulator/entities" .. (bp and ("?blueprint=" .. bp) or "")
    return control(emu, "GET", path).entities
  end
  function emu.seed(list) return control(emu, "POST", "/_emulator/entities", { entities = list }) end
  function emu.resync_request(id)
    return control(emu, "POST", "/_emulator/resync-request", { integration = id }).request
  end
  function emu.token(fresh)
    if fresh or not emu._token then
      local status, text = _M.http("POST", emu.url .. "/v1/auth/access_token", {
        body = { clientId = emu.client_id, clientSecret = emu.client_secret } })
      assert(status == 200, "emulator token: HTTP " .. status .. " " .. text)
      emu._token = json.decode(text).accessToken
    end
    return emu._token
  end
  -- An authenticated Port API call: status, decoded body (or text), headers.
  -- opts: user_agent, headers, token (false: none).
  function emu.api(method, path, body, opts)
    opts = opts or {}
    local headers = { ["User-Agent"] = opts.user_agent or "spec" }
    for k, v in pairs(opts.headers or {}) do headers[k] = v end
    if opts.token ~= false then
      headers.Authorization = "Bearer " .. (opts.token or emu.token())
    end
    local status, text, h = _M.http(method, emu.url .. path, { body = body,
      headers = headers, timeout = opts.timeout })
    local v = decode(text)
    if v == nil then v = text end
    return status, v, h
  end
  function emu.output()
    return emu.final_output or read_file(emu.dir .. "/output.log") or ""
  end
  function emu.stop() return Emu.stop(emu) end
  -- Send a signal and wait (up to 5 s) until the process is gone.
  function emu.kill(signal)
    os_execute(format("kill -%s %d 2>/dev/null", signal or "TERM", emu.pid))
    local deadline = os.time() + 5
    while alive(emu.pid) and os.time() <= deadline do _M.sleep(0.02) end
    return not alive(emu.pid)
  end
  return emu
end

local function command(emu, opts)
  local root = _M.root()
  local args = { "exec env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4" }
  if os_getenv("OCEAN_EMULATOR_VALGRIND") then
    emu.valgrind_log = emu.dir .. "/valgrind.log"
    args[#args + 1] = "valgrind --quiet --leak-check=full --show-leak-kinds=definite"
      .. " --errors-for-leak-kinds=definite"
      .. " --suppressions=" .. q(root .. "/scripts/valgrind.supp")
      .. " --log-file=" .. q(emu.valgrind_log)
  end
  args[#args + 1] = "lua5.4 " .. q(root .. "/bin/ocean") .. " port-emulator"
  args[#args + 1] = "--listen 127.0.0.1:0 --port-file " .. q(emu.dir .. "/port")
  local pid = my_pid()
  if pid then args[#args + 1] = "--exit-with " .. pid end
  local flags = { data = "--data", page_limit = "--page-limit",
                  token_ttl = "--token-ttl", client_id = "--client-id",
                  client_secret = "--client-secret", max_body = "--max-body" }
  for k, flag in pairs(flags) do
    if opts[k] then args[#args + 1] = flag .. " " .. q(opts[k]) end
  end
  if opts.quiet then args[#args + 1] = "--quiet" end
  for _, a in ipairs(opts.args or {}) do args[#args + 1] = q(a) end
  return "(" .. concat(args, " ") .. ") > " .. q(emu.dir .. "/output.log")
    .. " 2>&1 & echo $!"
end

-- Start an emulator and wait until it listens. opts: data, page_limit,
-- token_ttl, client_id, client_secret, max_body, quiet, args (extra
-- arguments), timeout (s to wait, default 10; 60 under valgrind).
function _M.start(opts)
  opts = opts or {}
  local emu = { dir = _M.tmpdir(), client_id = opts.client_id or _M.CLIENT_ID,
                client_secret = opts.client_secret or _M.CLIENT_SECRET }
  emu.pid = assert(tonumber(sh(command(emu, opts))), "could not start the emulator")
  running[emu] = true
  local limit = opts.timeout or (os_getenv("OCEAN_EMULATOR_VALGRIND") and 60 or 10)
  local deadline, port = os.time() + limit, nil
  while not port do
    port = tonumber(read_file(emu.dir .. "/port") or "")
    if not port then
      if not alive(emu.pid) then
        local out = read_file(emu.dir .. "/output.log") or ""
        Emu.stop(emu)
        error("the port emulator exited before it was ready:\n" .. out, 2)
      end
      if os.time() > deadline then
        local out = read_file(emu.dir .. "/output.log") or ""
        Emu.stop(emu)
        error(format("the port emulator was not ready after %d s:\n%s", limit, out), 2)
      end
      _M.sleep(0.02)
    end
  end
  emu.port = port
  emu.url = "http://127.0.0.1:" .. port
  return build(emu)
end

-- Stop the emulator (POST /_emulator/shutdown; SIGTERM, then SIGKILL if
-- it lingers) and remove its files. Returns its output (stdout and
-- stderr). Idempotent. emu.kill(signal) sends a signal instead.
function Emu.stop(emu)
  if not running[emu] then return emu.final_output end
  running[emu] = nil
  local grace = emu.valgrind_log and 30 or 5
  if emu.url and alive(emu.pid) then      -- a clean exit first
    _M.http("POST", emu.url .. "/_emulator/shutdown", { timeout = grace })
    local deadline = os.time() + grace
    while alive(emu.pid) and os.time() <= deadline do _M.sleep(0.02) end
  end
  if alive(emu.pid) then
    os_execute("kill -TERM " .. emu.pid .. " 2>/dev/null")
    local deadline = os.time() + grace
    while alive(emu.pid) and os.time() <= deadline do _M.sleep(0.02) end
  end
  if alive(emu.pid) then os_execute("kill -KILL " .. emu.pid .. " 2>/dev/null") end
  emu.final_output = read_file(emu.dir .. "/output.log") or ""
  if emu.valgrind_log then
    emu.valgrind_report = read_file(emu.valgrind_log) or ""
    if emu.valgrind_report ~= "" then
      io.stderr:write("\n[emulator valgrind report]\n", emu.valgrind_report, "\n")
    end
  end
  os_execute("rm -rf " .. q(emu.dir))
  return emu.final_output
end

-- Stop every emulator this process started (for teardown / finally).
function _M.stop_all()
  for emu in pairs(running) do Emu.stop(emu) end
  if _M.scratch then
    os_execute("rm -rf " .. q(_M.scratch))
    _M.scratch = nil
  end
end

-- }====================

return _M
