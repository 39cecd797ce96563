-- ocean.server: HTTP routing over the C server (core.server_start).
--
--   local server = require "ocean.server"
--   local srv = assert(server.new{host = "127.0.0.1", port = 0})
--   srv:route("POST", "/v1/blueprints/:bp/entities/bulk", function(req)
--     local body = req:json()            -- invalid JSON: the client gets 400
--     return 200, { ok = true, bp = req.params.bp }
--   end)
--   srv:serve()                           -- or srv:step(timeout_ms) in a loop
--
-- Route patterns are matched against the percent-decoded path, segment by
-- segment: a literal segment matches itself, `:name` one non-empty segment
-- (req.params.name), and a final `*name` the non-empty rest of the path,
-- slashes included. Routes are tried in the order they were added; a path
-- that matches only routes of other methods gets 405, no match at all 404.
--
-- A handler gets a request and returns either a response table
-- ({status=, headers=, body=}; server.json / server.response build them)
-- or `status, body, headers` where a table body is sent as JSON. Raising
-- server.http_error(...) answers with that error; any other error is
-- logged and answered 500, and the server keeps serving.
--
-- Requests: req.id, method, path, raw_query, query (parsed: repeated keys
-- give a list), headers (lower-case names), body, remote, params, ctx (a
-- table for hooks and handlers), req:json(), req:header(name),
-- req:query_list(name), req:query_bool(name, default).
--
-- Responses may also carry `drop = true` (close the connection without an
-- answer) or `delay_ms = N` (answer N ms later, without blocking others).
local core = require "ocean.core"
local json = require "ocean.json"

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local setmetatable, getmetatable = setmetatable, getmetatable
local error, xpcall, pcall = error, xpcall, pcall
local concat, insert, sort, remove = table.concat, table.insert, table.sort, table.remove
local char, format = string.char, string.format
local traceback = debug.traceback
local now_ms = core.monotonic_ms

local _M = {}

local Server = {}
Server.__index = Server

local Request = {}
Request.__index = Request

local HttpError = {}
HttpError.__index = HttpError
HttpError.__tostring = function(e)
  return format("HTTP %d: %s", e.status, tostring(e.body))
end

-- {==================== responses ====================

-- A response table. body: a string (sent as is) or nil.
function _M.response(status, body, headers)
  return { status = status, body = body or "", headers = headers or {} }
end

-- A JSON response: value is encoded (an encoding error raises).
function _M.json(status, value, headers)
  local body, err = json.encode(value)
  if not body then error("server.json: " .. err, 2) end
  local h = { ["content-type"] = "application/json" }
  if headers then
    for k, v in pairs(headers) do h[k:lower()] = v end
  end
  return { status = status, body = body, headers = h }
end

-- An error to raise from a handler: the client gets `status` with `body`
-- (a table is sent as JSON; a string becomes {"ok":false,"error":...}).
function _M.http_error(status, body, headers)
  if type(body) ~= "table" then
    body = { ok = false, error = body or "error" }
  end
  return setmetatable({ status = status, body = body, headers = headers },
    HttpError)
end

function _M.is_http_error(e)
  return getmetatable(e) == HttpError
end

local function from_http_error(e)
  return _M.json(e.status, e.body, e.headers)
end

-- Turn a handler's results into a response table.
local function normalize(first, body, headers)
  if type(first) == "table" and (first.status or first.drop) then return first end
  if first == nil then return _M.response(204) end
  if type(first) ~= "number" then
    error("handler returned " .. type(first) .. " (want a status or a response)")
  end
  if type(body) == "table" then return _M.json(first, body, headers) end
  local h = {}
  if headers then
    for k, v in pairs(headers) do h[k:lower()] = v end
  end
  return _M.response(first, body ~= nil and tostring(body) or "", h)
end

-- }====================

-- {==================== requests ====================

local function unescape(s)
  s = s:gsub("+", " ")
  return (s:gsub("%%(%x%x)", function(h) return char(tonumber(h, 16)) end))
end

-- Parse a raw query string: a=1&b=2&b=3 -> {a="1", b={"2","3"}}.
-- A key without "=" has the value "".
function _M.parse_query(q)
  local t = {}
  for pair in (q or ""):gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=(.*)$")
    if not k then k, v = pair, "" end
    k, v = unescape(k), unescape(v)
    local cur = t[k]
    if cur == nil then
      t[k] = v
    elseif type(cur) == "table" then
      cur[#cur + 1] = v
    else
      t[k] = { cur, v }
    end
  end
  return t
end

local function new_request(raw)
  return setmetatable({
    id = raw.id, method = raw.method, path = raw.path,
    raw_query = raw.query, query = _M.parse_query(raw.query),
    headers = raw.headers, body = raw.body, remote = raw.remote,
    params = {}, ctx = {},
  }, Request)
end
_M.new_request = new_request

-- The decoded JSON body. Raises an HTTP 400 error when the body is not
-- JSON (the dispatcher answers it).
function Request:json()
  if self._json ~= nil then return self._json end
  local v, err = json.decode(self.body)
  if v == nil then
    error(_M.http_error(400, { ok = false, error = "invalid_json",
      message = "invalid JSON body: " .. tostring(err) }), 0)
  end
  self._json = v
  return v
end

function Request:header(name)
  return self.headers[name:lower()]
end

-- Every value of a query parameter, as a list (possibly empty).
function Request:query_list(name)
  local v = self.query[name]
  if v == nil then return {} end
  if type(v) == "table" then return v end
  return { v }
end

-- "true"/"false" (any case) as a boolean; absent: default. Anything else
-- raises an HTTP 400 error.
function Request:query_bool(name, default)
  local v = self.query[name]
  if type(v) == "table" then v = v[#v] end
  if v == nil or v == "" then return default end
  v = v:lower()
  if v == "true" then return true end
  if v == "false" then return false end
  error(_M.http_error(400, { ok = false, error = "invalid_query",
    message = format("query parameter '%s' must be true or false", name) }), 0)
end

-- }====================

-- {==================== routes ====================

local function compile(pattern)
  if type(pattern) ~= "string" or pattern:sub(1, 1) ~= "/" then
    error("route pattern must start with '/': " .. tostring(pattern), 3)
  end
  local names, parts = {}, {}
  local segs = {}
  for seg in (pattern .. "/"):gmatch("([^/]*)/") do segs[#segs + 1] = seg end
  for i = 2, #segs do
    local seg = segs[i]
    local kind, name = seg:sub(1, 1), seg:sub(2)
    if kind == ":" and name ~= "" then
      names[#names + 1] = name
      parts[#parts + 1] = "([^/]+)"
    elseif kind == "*" and name ~= "" then
      if i ~= #segs then
        error("'*" .. name .. "' must be the last segment of " .. pattern, 3)
      end
      names[#names + 1] = name
      parts[#parts + 1] = "(.+)"
    else
      parts[#parts + 1] = (seg:gsub("%W", "%%%0"))
    end
  end
  return "^/" .. concat(parts, "/") .. "$", names
end

-- Add a route. method: "GET", "POST"... or "*" for any method.
function Server:route(method, pattern, handler)
  if type(method) ~= "string" then error("route: method must be a string", 2) end
  if type(handler) ~= "function" then error("route: handler must be a function", 2) end
  local lp, names = compile(pattern)
  insert(self.routes, { method = method:upper(), pattern = pattern,
    lp = lp, names = names, handler = handler })
  return self
end

for _, m in ipairs({ "get", "post", "put", "patch", "delete" }) do
  Server[m] = function(self, pattern, handler)
    return self:route(m:upper(), pattern, handler)
  end
end

-- Run fn(req) before routing; a non-nil result is the response.
function Server:before(fn)
  insert(self.before_hooks, fn)
  return self
end

-- Run fn(req, res) after every response is made (it may edit res).
function Server:after(fn)
  insert(self.after_hooks, fn)
  return self
end

-- The route for req (params set on req), or nil and the allowed methods.
local function find_route(self, req)
  local allowed
  for _, r in ipairs(self.routes) do
    local caps = { req.path:match(r.lp) }   -- no captures: the whole match
    if caps[1] ~= nil then
      if r.method == "*" or r.method == req.method then
        for i, name in ipairs(r.names) do req.params[name] = caps[i] end
        return r
      end
      allowed = allowed or {}
      allowed[#allowed + 1] = r.method
    end
  end
  return nil, allowed
end

local function route_and_run(self, req)
  for _, hook in ipairs(self.before_hooks) do
    local res = hook(req)
    if res ~= nil then return normalize(res) end
  end
  local r, allowed = find_route(self, req)
  if not r then
    if allowed then
      return _M.json(405, { ok = false, error = "method_not_allowed",
        message = format("%s is not allowed on %s", req.method, req.path) },
        { allow = concat(allowed, ", ") })
    end
    return _M.json(404, { ok = false, error = "not_found",
      message = format("no route for %s %s", req.method, req.path) })
  end
  req.route = r.pattern
  return normalize(r.handler(req))
end

local function on_error(e)
  if _M.is_http_error(e) then return e end
  return traceback(tostring(e), 2)
end

-- Route req and run its handler: always returns a response table.
function Server:dispatch(req)
  local ok, res = xpcall(route_and_run, on_error, self, req)
  if not ok then
    if _M.is_http_error(res) then
      res = from_http_error(res)
    else
      self.log("error", format("%s %s: handler failed: %s", req.method,
        req.path, tostring(res)))
      res = _M.json(500, { ok = false, error = "internal_error",
        message = "internal server error" })
    end
  end
  for _, hook in ipairs(self.after_hooks) do
    local hok, err = pcall(hook, req, res)
    if not hok then self.log("error", "after hook failed: " .. tostring(err)) end
  end
  return res
end

-- }====================

-- {==================== the loop ====================

local function send_now(self, id, res)
  if res.drop then return self.c:drop(id) end
  return self.c:respond(id, res.status, res.headers, res.body)
end

local function send(self, req, res)
  if res.delay_ms and res.delay_ms > 0 then
    local d = self.deferred
    d[#d + 1] = { due = now_ms() + res.delay_ms, id = req.id, res = res }
    sort(d, function(a, b) return a.due > b.due end)   -- soonest last
    return true
  end
  return send_now(self, req.id, res)
end

local function flush_deferred(self)
  local d, t = self.deferred, now_ms()
  while #d > 0 and d[#d].due <= t do
    local item = remove(d)
    send_now(self, item.id, item.res)
  end
end

-- Milliseconds until the next deferred answer is due (nil: none).
local function next_due(self)
  local d = self.deferred
  if #d == 0 then return nil end
  local left = d[#d].due - now_ms()
  return left > 0 and left or 0
end

-- Wait up to timeout_ms (nil: until something happens) for requests,
-- answer every queued one, send the deferred answers that are due.
-- Returns the number of requests handled.
function Server:step(timeout_ms)
  if not self.c then error("server is closed", 2) end
  local t, due = timeout_ms, next_due(self)
  if due and (t == nil or t < 0 or due < t) then t = due end
  self.c:wait(t)
  return self:process()
end

-- {==================== the connection limits ====================

-- What the limits did: checked every second, reported at once and then at
-- most every 10 s (each closed or refused connection is counted, never
-- silent; one line per interval, not one per connection, which under
-- attack would flood the log).
local CHECK_EVERY_MS, REPORT_EVERY_MS = 1000, 10000
local REPORTS = {
  { "header_timeouts", "closed %d connection(s) that sent no whole request head within %d s (header timeout)",
    "header_timeout" },
  { "body_timeouts", "closed %d connection(s) whose body did not arrive within %d s (body timeout)",
    "body_timeout" },
  { "refused_per_client", "refused %d connection(s) from clients already holding %d (per-client limit)",
    "max_connections_per_client" },
  { "evicted", "closed %d connection(s) waiting for a request head to make room at %d open connections (total limit)",
    "max_connections" },
}

-- The limits in force and the counters since the start (see new), or nil
-- once closed.
function Server:stats()
  return self.c and self.c:stats()
end

-- force: report now whatever the interval (at close).
local function report_limits(self, force)
  local t = now_ms()
  if t < self.next_report and not force then return end
  local st, last, said = self.c:stats(), self.reported, false
  for _, r in ipairs(REPORTS) do
    local key = r[1]
    local delta = st[key] - (last[key] or 0)
    if delta > 0 then
      self.log("warning", format(r[2], delta, st[r[3]]))
      said = true
    end
    last[key] = st[key]
  end
  self.next_report = t + (said and REPORT_EVERY_MS or CHECK_EVERY_MS)
end

-- }====================

-- Answer every queued request and the deferred answers that are due,
-- without waiting (for owners that wait elsewhere, e.g. on the engine's
-- loop with the server as an extra source). Returns the number handled.
function Server:process()
  if not self.c then return 0 end
  local n = 0
  while true do
    local raw = self.c:next()
    if not raw then break end
    n = n + 1
    local req = new_request(raw)
    send(self, req, self:dispatch(req))
  end
  flush_deferred(self)
  report_limits(self)
  return n
end

-- Serve until opts.stop() returns true (default: forever).
-- opts.idle_ms (default 1000): how long one wait may last;
-- opts.on_idle(): called after a wait that handled no request;
-- opts.on_step(n): called after every step.
function Server:serve(opts)
  opts = opts or {}
  local idle = opts.idle_ms or 1000
  while not (opts.stop and opts.stop()) do
    local n = self:step(idle)
    if opts.on_step then opts.on_step(n) end
    if n == 0 and opts.on_idle then opts.on_idle() end
  end
end

function Server:port()
  return self.c and self.c:port()
end

function Server:url()
  local host = self.host
  if host:find(":", 1, true) then host = "[" .. host .. "]" end
  return format("http://%s:%d", host, self:port())
end

-- Requests waiting for a deferred answer.
function Server:pending()
  return #self.deferred
end

-- Stop listening; queued and deferred requests are dropped. Idempotent.
function Server:close()
  if self.c then
    report_limits(self, true)
    self.c:close()
    self.c = nil
  end
  self.deferred = {}
end
Server.__close = Server.close

local function default_log(level, msg)
  io.stderr:write("[", level, "] ", msg, "\n")
end

-- A server listening on opts.host (default 127.0.0.1) : opts.port
-- (default 0: ephemeral). opts.max_body (bytes, default 1 MiB),
-- opts.log (function(level, message)), and the limits that keep it
-- answering under load (nil: the default):
--   max_connections             total open connections (4096; lowered to
--                               what RLIMIT_NOFILE allows, with a warning)
--   max_connections_per_client  per client address (256; 0: no limit)
--   header_timeout              seconds for a whole request head (10)
--   body_timeout                seconds for the body after it (60)
--   connection_timeout          idle seconds, no byte either way (30)
-- Returns nil, err when it cannot listen.
function _M.new(opts)
  opts = opts or {}
  local host = opts.host or "127.0.0.1"
  local c, err = core.server_start{
    host = host, port = opts.port or 0, max_body = opts.max_body,
    max_connections = opts.max_connections,
    max_connections_per_client = opts.max_connections_per_client,
    connection_timeout = opts.connection_timeout,
    header_timeout = opts.header_timeout, body_timeout = opts.body_timeout,
  }
  if not c then return nil, err end
  local self = setmetatable({
    c = c, host = host, routes = {}, before_hooks = {}, after_hooks = {},
    deferred = {}, log = opts.log or default_log,
    reported = {}, next_report = 0,
  }, Server)
  local st = c:stats()
  if st.max_connections < st.max_connections_requested then
    self.log("warning", format("serving at most %d connections, not %d: the process "
      .. "may open too few files (RLIMIT_NOFILE; raise the hard limit, e.g. ulimit -Hn)",
      st.max_connections, st.max_connections_requested))
  end
  return self
end

-- }====================

return _M
