-- ocean.emulator.cli: `ocean port-emulator [options]`.
local emulator = require "ocean.emulator"

local tonumber, format = tonumber, string.format

local _M = {}

local D = emulator.DEFAULTS

_M.USAGE = format([[
usage: ocean port-emulator [options]

Serve an emulation of Port's REST API (the part Ocean uses: auth,
integrations, blueprints, entities, search, owned-entity listing) plus a
test control API under /_emulator/.

options:
  --listen HOST:PORT      where to listen (default %s:%d; port 0: any free port)
  --data FILE             keep the catalog in FILE (snapshot) and FILE.journal
  --client-id ID          the accepted client id (default %s)
  --client-secret SECRET  the accepted client secret (default %s)
  --token-ttl SECONDS     access token lifetime (default %d)
  --page-limit N          most entities per datasource-entities page (default %d)
  --max-body BYTES        largest request body accepted (default %d)
  --port-file FILE        write the port number to FILE once listening
  --exit-with PID         exit when process PID is gone (test harnesses)
  --quiet                 no access log on stdout
  --help                  this text
]], D.host, D.port, D.client_id, D.client_secret, D.token_ttl, D.page_limit,
  D.max_body)

local VALUED = {
  ["--listen"] = "listen", ["--data"] = "data", ["--client-id"] = "client_id",
  ["--client-secret"] = "client_secret", ["--token-ttl"] = "token_ttl",
  ["--page-limit"] = "page_limit", ["--max-body"] = "max_body",
  ["--port-file"] = "port_file", ["--exit-with"] = "exit_with",
}
local NUMERIC = { token_ttl = 1, page_limit = 1, max_body = 1, exit_with = 1 }

-- "HOST:PORT", "[V6]:PORT", ":PORT" or "PORT" -> host, port.
local function parse_listen(s)
  local host, port = s:match("^%[([^%]]+)%]:(%d+)$")
  if not host then host, port = s:match("^([^:]*):(%d+)$") end
  if not host then port = s:match("^(%d+)$") end
  port = tonumber(port)
  if not port or port > 65535 then return nil end
  if host == nil or host == "" then host = D.host end
  return host, port
end

-- The options table, or nil, err.
function _M.parse(args)
  local o = {}
  local i = 1
  while i <= #args do
    local a = args[i]
    local name, inline = a:match("^(%-%-[%w-]+)=(.*)$")
    name = name or a
    if name == "--help" or name == "-h" then
      o.help = true
    elseif name == "--quiet" then
      o.quiet = true
    elseif VALUED[name] then
      local v = inline
      if v == nil then
        i = i + 1
        v = args[i]
      end
      if v == nil then return nil, name .. " needs a value" end
      local key = VALUED[name]
      if NUMERIC[key] then
        local n = tonumber(v)
        if not n or n < 1 or n ~= math.floor(n) then
          return nil, name .. " needs a positive integer"
        end
        v = n
      end
      o[key] = v
    else
      return nil, "unknown option '" .. a .. "'"
    end
    i = i + 1
  end
  if o.listen then
    o.host, o.port = parse_listen(o.listen)
    if not o.host then return nil, "--listen wants HOST:PORT, got '" .. o.listen .. "'" end
  end
  return o
end

-- Write the port number atomically (a watcher never reads half a file).
local function write_port_file(path, port)
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "w")
  if not f then return nil, err end
  f:write(port, "\n")
  f:close()
  return os.rename(tmp, path)
end

local function process_alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if not f then return false end
  local stat = f:read("l") or ""
  f:close()
  return not stat:match("^%d+ %b() [ZX]")
end

function _M.main(args)
  local o, err = _M.parse(args)
  if not o then
    io.stderr:write("ocean port-emulator: ", err, "\n(see ocean port-emulator --help)\n")
    return 2
  end
  if o.help then
    io.stdout:write(_M.USAGE)
    return 0
  end
  local emu, eerr = emulator.new(o)
  if not emu then
    io.stderr:write("ocean port-emulator: ", eerr, "\n")
    return 1
  end
  io.stdout:setvbuf("line")
  io.stdout:write(format("port-emulator listening on http://%s:%d\n",
    o.host and o.host:find(":", 1, true) and "[" .. o.host .. "]" or (o.host or D.host),
    emu:port()))
  if o.port_file then
    local ok, perr = write_port_file(o.port_file, emu:port())
    if not ok then
      io.stderr:write("ocean port-emulator: --port-file: ", tostring(perr), "\n")
      emu:close()
      return 1
    end
  end
  local last_check = 0
  emu:run{ stop = function()
    if not o.exit_with then return false end
    local now = os.time()
    if now == last_check then return false end
    last_check = now
    return not process_alive(o.exit_with)
  end }
  emu:close()
  return 0
end

return _M
