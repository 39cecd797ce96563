-- ocean.server: the HTTP transport over the C server (core.server_start):
-- it takes requests off libmicrohttpd, hands each to a router
-- (ocean.router: the one place that matches routes and shapes answers)
-- and sends the answers back, later when the router asked for a delay.
--
--   local server = require "ocean.server"
--   local srv = assert(server.new{host = "127.0.0.1", port = 0})
--   srv.router:route("POST", "/v1/blueprints/:bp/entities/bulk", function(req)
--     local body = req:json()            -- invalid JSON: the client gets 400
--     return 200, { ok = true, bp = req.params.bp }
--   end)
--   srv:serve()                           -- or srv:step(timeout_ms) in a loop
--
-- server.new{router = r} serves a router of one's own (the runner serves
-- the engine's integration router); the default is an "api" router (exact
-- paths, raw bodies: the emulator's). opts.prefix: only paths under it
-- reach the router, with the prefix removed (the runner's /integration);
-- others get opts.outside(req)'s response when it gives one (the
-- runner's GET /metrics), else the router's 404. srv:route/get/post/.../
-- before/after are the router's. Responses may carry drop = true (close
-- without an answer), delay_ms = N (answer N ms later, without blocking
-- others) and on_sent = fn (called once the answer went out).
-- server.new{spawn = fn}: each request is answered in fn(handler), a
-- coroutine of its own (`ocean sail` passes its engine's scheduler), so
-- a handler that waits holds up no other request; without it, requests
-- are answered one after the other in process(). With spawn, process()
-- starts requests for at most SLICE_MS, oldest first (the rest wait for
-- the next call; srv:busy() says so), but those of a route added with
-- {priority = true} (the health probe) before any other.
local core = require "ocean.core"
local router = require "ocean.router"

local ipairs, error, setmetatable, pcall, tostring = ipairs, error, setmetatable, pcall, tostring
local sort, remove = table.sort, table.remove
local format = string.format
local now_ms = core.monotonic_ms

local _M = {
  SLICE_MS = 10,
  POLL_MS = 2,          -- while starting requests, priority ones are looked for this often
  CLOSE_FLUSH_MS = 1000, -- close() sends the answers already given for at most this long
  -- the router's response makers, for handlers written against the server
  response = router.response, json = router.json, http_error = router.http_error,
  is_http_error = router.is_http_error, parse_query = router.parse_query,
}

local Server = {}
Server.__index = Server

-- Routes and hooks go to the router (opts: as router:route's).
function Server:route(method, pattern, handler, opts)
  self.router:route(method, pattern, handler, opts)
  return self
end

for _, m in ipairs({ "get", "post", "put", "patch", "delete" }) do
  Server[m] = function(self, pattern, handler)
    return self:route(m:upper(), pattern, handler)
  end
end

function Server:before(fn)
  self.router:before(fn)
  return self
end

function Server:after(fn)
  self.router:after(fn)
  return self
end

-- {==================== the loop ====================

local function send_now(self, id, res)
  if not self.c then return nil end      -- closed while the handler ran
  local ok, err
  if res.drop then
    ok, err = self.c:drop(id)
  else
    ok, err = self.c:respond(id, res.status, res.headers, res.body)
  end
  if res.on_sent then
    local cok, cerr = pcall(res.on_sent)
    if not cok then self.log("error", "on_sent failed: " .. tostring(cerr)) end
  end
  return ok, err
end

-- The answer of a request the server closed on before its handler ended.
local CUT_SHORT = router.json(503, { status = "error",
  message = "the server stopped before this request was answered; what it started may have "
    .. "happened" }, { ["Retry-After"] = "5" })

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

-- The router's answer to one request taken off the C server.
local function answer(self, raw)
  local req = router.request(raw)
  local prefix = self.prefix
  if prefix then
    if req.path:sub(1, #prefix + 1) ~= prefix .. "/" then
      local res = self.outside and self.outside(req)
      return req, res or router.not_found(req)
    end
    req.path = req.path:sub(#prefix + 1)
  end
  return req, self.router:handle(req)
end

-- Wait up to timeout_ms (nil: until something happens) for requests,
-- answer every queued one, send the deferred answers that are due.
-- Returns the number of requests handled.
function Server:step(timeout_ms)
  if not self.c then error("server is closed", 2) end
  local t, due = timeout_ms, next_due(self)
  if due and (t == nil or t < 0 or due < t) then t = due end
  if #self.queue > 0 then t = 0 end          -- requests not started yet
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
  local n, spawn = 0, self.spawn
  if not spawn then
    while true do
      local raw = self.c:next()
      if not raw then break end
      n = n + 1
      send(self, answer(self, raw))
    end
  else
    n = self:start_requests(spawn)
  end
  flush_deferred(self)
  report_limits(self)
  return n
end

local function is_priority(self, raw)
  local path, prefix = raw.path or "", self.prefix
  if prefix then
    if path:sub(1, #prefix + 1) ~= prefix .. "/" then return false end
    path = path:sub(#prefix + 1)
  end
  local r = self.router:match(raw.method, path)
  return r ~= nil and r.priority == true
end

local function start(self, spawn, raw)
  self.running[raw.id] = true
  spawn(function()
    local req, res = answer(self, raw)
    self.running[raw.id] = nil
    send(self, req, res)
  end)
end

-- Take every request the C server has queued: the priority ones start at
-- once, the others join self.queue. Returns how many started.
local function take(self, spawn)
  local queue, n = self.queue, 0
  while true do
    local raw = self.c:next()
    if not raw then break end
    if is_priority(self, raw) then
      n = n + 1
      start(self, spawn, raw)
    else
      queue[#queue + 1] = raw
    end
  end
  return n
end

-- With spawn: the priority requests at once, the others oldest first for
-- at most SLICE_MS.
function Server:start_requests(spawn)
  local n = take(self, spawn)
  local queue = self.queue
  local t0, i = now_ms(), 1
  local polled = t0
  while i <= #queue do
    start(self, spawn, queue[i])
    n = n + 1
    i = i + 1
    if i % 4 == 0 then
      local t = now_ms()
      if t - t0 > _M.SLICE_MS then break end
      if t - polled >= _M.POLL_MS then         -- a probe that came meanwhile
        polled = t
        n = n + self:poll_priority()
      end
    end
  end
  local rest = {}
  for k = i, #queue do rest[#rest + 1] = queue[k] end
  self.queue = rest
  return n
end

-- Between two steps of other work (with spawn; the scheduler calls it
-- every scheduler.POLL_MS while tasks run): the C server runs without
-- waiting — it accepts, reads, and writes the answers already given — and
-- the priority requests it completed start at once; the others wait in
-- self.queue for the next process(). So a health probe is answered within
-- a few milliseconds of work however long the loop turn, instead of a
-- whole turn later (docs/live-events.md, "The health probe during a burst").
-- Returns how many started.
function Server:poll_priority()
  if not (self.c and self.spawn) then return 0 end
  self.c:wait(0)
  local n = take(self, self.spawn)
  if n > 0 then self.c:wait(0) end       -- their answers go out now
  return n
end

-- Answer every request taken off the server and not started yet, and
-- every one the C server has queued, with `status` and the JSON `body`
-- (the runner, once stopping: 503, so that senders retry elsewhere or
-- later, instead of a connection closed unanswered). Returns how many.
function Server:refuse_waiting(status, body)
  if not self.c then return 0 end
  local n = 0
  local res = router.json(status, body, { ["Retry-After"] = "5" })
  local function refuse(raw)
    n = n + 1
    send_now(self, raw.id, res)
  end
  for _, raw in ipairs(self.queue) do refuse(raw) end
  self.queue = {}
  self.c:wait(0)
  while true do
    local raw = self.c:next()
    if not raw then break end
    refuse(raw)
  end
  return n
end

-- Requests taken off the server and not started yet (see SLICE_MS).
function Server:busy()
  return #self.queue > 0
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

-- Stop listening. The answers already given are sent first, for at most
-- CLOSE_FLUSH_MS (a client that does not read its answer is not waited for
-- longer); then every connection is closed, and queued and deferred
-- requests are dropped (the runner refuses queued ones with 503 first).
-- Idempotent.
function Server:close()
  if self.c then
    report_limits(self, true)
    -- requests whose handlers have not answered (a stop cut them short):
    -- 503 rather than a connection closed without a word
    local cut = 0
    for id in pairs(self.running) do
      cut = cut + 1
      send_now(self, id, CUT_SHORT)
    end
    self.running = {}
    if cut > 0 then
      self.log("warning", ("%d request(s) still being handled were answered 503: the server "
        .. "closed before their handlers finished (what they had sent on may have happened)"):format(cut))
    end
    local t0 = now_ms()
    while self.c:stats().unsent > 0 and now_ms() - t0 < _M.CLOSE_FLUSH_MS do self.c:wait(10) end
    self.c:close()
    self.c = nil
  end
  self.deferred, self.queue = {}, {}
end
Server.__close = Server.close

-- }====================

local function default_log(level, msg)
  io.stderr:write("[", level, "] ", msg, "\n")
end

-- A server listening on opts.host (default 127.0.0.1) : opts.port
-- (default 0: ephemeral). opts.max_body (bytes, default 1 MiB),
-- opts.log (function(level, message)), opts.router, opts.prefix,
-- opts.spawn (see the top), opts.outside (function(req) -> response |
-- nil, for paths outside the prefix), and the
-- limits that keep it answering under load (nil: the default):
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
  local log = opts.log or default_log
  local self = setmetatable({
    c = c, host = host, deferred = {}, log = log, prefix = opts.prefix, spawn = opts.spawn,
    outside = opts.outside, queue = {}, running = {},
    router = opts.router or router.new { kind = "api", log = log },
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

return _M
