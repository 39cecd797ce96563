-- spec/helpers/fake_api.lua: the fake third-party API of
-- examples/fake-api (fake_api.lua) as a subprocess for specs.
--
--   local fake = require "spec.helpers.fake_api"
--   local api = fake.start{ webhook = "http://127.0.0.1:9/integration/webhook" }
--   api.url                                  -- http://127.0.0.1:<port>
--   api.faults{ { path = "^/users$", query = "page=3", status = 500 } }
--   api.requests()                           -- {{method, path, query, at_ms}...}
--   api.call("POST", "/users", { login = "x" })  -> status, decoded body
--   api.stop()                               -- or fake.stop_all()
--
-- It always runs under lua5.4 (like the emulator), with --exit-with this
-- process, so it never outlives the spec run.
local ehelp = require "spec.helpers.emulator"
local json = require "ocean.json"

local q, read_file = ehelp.shell_quote, ehelp.read_file

local _M = {}

local running = {}

local function my_pid()
  local s = read_file("/proc/self/stat")
  return s and s:match("^(%d+)")
end

local function control(api, method, path, body)
  local status, text = ehelp.http(method, api.url .. path, { body = body })
  if status ~= 200 then
    error(("fake API %s %s: HTTP %d %s"):format(method, path, status, text), 3)
  end
  return json.decode(text)
end

function _M.start(opts)
  opts = opts or {}
  local dir = ehelp.tmpdir()
  local args = { "exec env -u LUA_PATH -u LUA_CPATH lua5.4",
    q(ehelp.root() .. "/examples/fake-api/fake_api.lua"), "--quiet",
    "--port 0 --port-file", q(dir .. "/port") }
  if opts.webhook then args[#args + 1] = "--webhook " .. q(opts.webhook) end
  local pid = my_pid()
  if pid then args[#args + 1] = "--exit-with " .. pid end
  local cmd = "(" .. table.concat(args, " ") .. ") > " .. q(dir .. "/output.log")
    .. " 2>&1 & echo $!"
  local api = { dir = dir, pid = assert(tonumber(ehelp.sh(cmd))) }
  running[api] = true
  local deadline = os.time() + 10
  while not api.port do
    api.port = tonumber(read_file(dir .. "/port") or "")
    if not api.port then
      if not ehelp.alive(api.pid) or os.time() > deadline then
        local out = read_file(dir .. "/output.log") or ""
        _M.stop(api)
        error("the fake API did not start:\n" .. out, 2)
      end
      ehelp.sleep(0.02)
    end
  end
  api.url = "http://127.0.0.1:" .. api.port
  function api.faults(rules)
    if rules == nil then return control(api, "DELETE", "/_faults") end
    return control(api, "POST", "/_faults", { rules = json.array(rules) })
  end
  function api.requests() return control(api, "GET", "/_requests").requests end
  function api.clear_requests() return control(api, "DELETE", "/_requests") end
  function api.reset() return control(api, "POST", "/_reset") end
  function api.call(method, path, body)
    local status, text = ehelp.http(method, api.url .. path, { body = body })
    return status, json.decode(text) or text
  end
  function api.output() return read_file(dir .. "/output.log") or "" end
  function api.stop() return _M.stop(api) end
  return api
end

function _M.stop(api)
  if not running[api] then return end
  running[api] = nil
  if api.url and ehelp.alive(api.pid) then
    ehelp.http("POST", api.url .. "/_shutdown", { timeout = 5 })
    local deadline = os.time() + 5
    while ehelp.alive(api.pid) and os.time() <= deadline do ehelp.sleep(0.02) end
  end
  if ehelp.alive(api.pid) then os.execute("kill -KILL " .. api.pid .. " 2>/dev/null") end
  os.execute("rm -rf " .. q(api.dir))
end

function _M.stop_all()
  for api in pairs(running) do _M.stop(api) end
end

return _M
