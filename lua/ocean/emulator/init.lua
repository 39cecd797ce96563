-- ocean.emulator: an emulation of Port's REST API, as Ocean uses it, for
-- running and testing integrations without a Port account.
--
--   local emulator = require "ocean.emulator"
--   local emu = assert(emulator.new{port = 0})
--   print(emu:url())
--   emu:run()                  -- or emu:step(timeout_ms) in your own loop
--
-- Options: host, port, data (persistence file), client_id, client_secret,
-- token_ttl (seconds), page_limit (datasource-entities page size cap),
-- max_body (bytes), quiet (no access log), out (access log stream), and
-- the server's limits (ocean.server.new: max_connections,
-- max_connections_per_client, header_timeout, body_timeout).
--
-- Every request gets an x-trace-id header. /v1 requests pass the fault
-- rules, then need a valid bearer token (but the token call itself), and
-- are recorded in the request log; /_emulator/ requests (the control API)
-- do neither.
local json = require "ocean.json"
local server = require "ocean.server"
local util = require "ocean.emulator.util"
local storemod = require "ocean.emulator.store"
local faultsmod = require "ocean.emulator.faults"
local api = require "ocean.emulator.api"
local control = require "ocean.emulator.control"

local type, pairs, setmetatable, pcall = type, pairs, setmetatable, pcall
local format = string.format
local null = json.null

local _M = {
  DEFAULTS = {
    host = "127.0.0.1", port = 5555,
    client_id = "emulator-client-id", client_secret = "emulator-client-secret",
    token_ttl = 3600, page_limit = 5000, max_body = 16 * 1024 * 1024,
  },
}

local Emulator = {}
Emulator.__index = Emulator

local AUTH_PATH = "/v1/auth/access_token"
local LOG_LIMIT = 20000

-- {==================== tokens ====================

-- A new access token for client_id: the token response body.
function Emulator:issue_token(client_id)
  local now = util.now_ms()
  if self.ntokens > 1000 then              -- forget the expired ones
    for t, info in pairs(self.tokens) do
      if info.expires <= now then
        self.tokens[t] = nil
        self.ntokens = self.ntokens - 1
      end
    end
  end
  local token = "emu_" .. util.random_hex(24)
  local ttl = self.opts.token_ttl
  self.tokens[token] = { expires = now + ttl * 1000, client_id = client_id }
  self.ntokens = self.ntokens + 1
  return { accessToken = token, expiresIn = ttl, tokenType = "Bearer" }
end

local function unauthorized(message)
  return server.json(401, { ok = false, error = "unauthorized", message = message })
end

-- nil when req carries a valid token (req.ctx.actor set), else a 401.
function Emulator:authorize(req)
  local h = req.headers.authorization
  local token = h and h:match("^[Bb]earer%s+(%S+)%s*$")
  local info = token and self.tokens[token]
  if not info then
    return unauthorized("a valid 'Authorization: Bearer <token>' header is required")
  end
  if info.expires <= util.now_ms() then
    self.tokens[token] = nil
    self.ntokens = self.ntokens - 1
    return unauthorized("the access token has expired")
  end
  req.ctx.actor = info.client_id
  return nil
end

function Emulator.actor(_, req)
  return req.ctx.actor or "unknown"
end

-- }====================

-- {==================== hooks ====================

local function fault_response(rule)
  if rule.drop then return { drop = true, delay_ms = rule.delay_ms } end
  local status, body, headers = faultsmod.answer(rule)
  local res
  if type(body) == "string" then
    res = server.response(status, body, headers)
  else
    res = server.json(status, body, headers)
  end
  res.delay_ms = rule.delay_ms
  return res
end

function Emulator:before(req)
  local ctx = req.ctx
  ctx.t0 = util.monotonic_ms()
  ctx.time = util.iso(util.now_ms())
  ctx.trace_id = util.trace_id()
  if req.path:sub(1, 11) == "/_emulator/" then
    ctx.control = true
    return nil
  end
  local rule = self.faults:match(req)
  if rule then
    ctx.fault = true
    if rule.drop or rule.status then return fault_response(rule) end
    ctx.delay_ms = rule.delay_ms
  end
  if req.path ~= AUTH_PATH and req.path:sub(1, 4) == "/v1/" then
    return self:authorize(req)
  end
  return nil
end

-- The number of entities in a bulk upsert or delete body (else nil).
local function entity_count(req)
  if req.method ~= "POST" then return nil end
  local p = req.path
  if not (p:find("/entities/bulk$") or p:find("/bulk/entities/delete$")) then
    return nil
  end
  local ok, b = pcall(req.json, req)
  if ok and type(b) == "table" and type(b.entities) == "table" then
    return #b.entities
  end
  return nil
end

function Emulator:record(req, res)
  self.seq = self.seq + 1
  local entry = {
    seq = self.seq, method = req.method, path = req.path,
    query = req.raw_query, status = res.drop and null or res.status,
    dropped = res.drop or nil, user_agent = req.headers["user-agent"] or null,
    entities = entity_count(req), bytes = #req.body, time = req.ctx.time,
    trace_id = req.ctx.trace_id, delay_ms = res.delay_ms,
  }
  if req.path ~= AUTH_PATH and #req.body > 0 then entry._body = req.body end
  local log = self.requests
  log[#log + 1] = entry
  if #log > LOG_LIMIT then
    self.requests = table.move(log, #log - LOG_LIMIT / 2 + 1, #log, 1, {})
  end
end

function Emulator:after(req, res)
  local ctx = req.ctx
  res.headers = res.headers or {}
  res.headers["x-trace-id"] = ctx.trace_id
  if ctx.delay_ms and not res.delay_ms then res.delay_ms = ctx.delay_ms end
  local ok, err = self.store:commit()     -- before anything is acknowledged
  if not ok then self.srv.log("error", "persistence: " .. tostring(err)) end
  if ctx.control then return end
  self:record(req, res)
  if not self.opts.quiet then
    self.out:write(format("%s %s %s -> %s (%.1f ms)\n", ctx.time, req.method,
      req.path, res.drop and "dropped" or tostring(res.status),
      util.monotonic_ms() - ctx.t0))
  end
end

-- }====================

-- {==================== running ====================

function Emulator:reset()
  self.store:reset()
  self.tokens, self.ntokens = {}, 0
  self.requests, self.seq = {}, 0
  self.faults:clear()
end

function Emulator:url()
  return self.srv:url()
end

function Emulator:port()
  return self.srv:port()
end

-- Serve for up to timeout_ms; snapshot the data file when idle.
function Emulator:step(timeout_ms)
  local n = self.srv:step(timeout_ms)
  local ok, err = self.store:maybe_snapshot(n == 0 and self.srv:pending() == 0)
  if not ok then self.srv.log("error", "persistence: " .. tostring(err)) end
  return n
end

-- Serve until opts.stop() returns true (checked at least every 250 ms)
-- or POST /_emulator/shutdown; then let the last answers go out.
function Emulator:run(opts)
  opts = opts or {}
  while not self.stopping and not (opts.stop and opts.stop()) do
    self:step(250)
  end
  local deadline = util.monotonic_ms() + 100
  while util.monotonic_ms() < deadline do self:step(10) end
end

-- Save and stop listening. Idempotent.
function Emulator:close()
  if self.closed then return end
  self.closed = true
  local ok, err = self.store:snapshot()
  if not ok then self.srv.log("error", "persistence: " .. tostring(err)) end
  self.store:close()
  self.srv:close()
end

-- }====================

-- An emulator listening on opts.host:opts.port, or nil, err.
function _M.new(opts)
  local o = {}
  for k, v in pairs(_M.DEFAULTS) do o[k] = v end
  for k, v in pairs(opts or {}) do o[k] = v end
  local store = storemod.new{ data = o.data }
  local ok, err = store:load()
  if not ok then
    store:close()
    return nil, err
  end
  local srv, serr = server.new{ host = o.host, port = o.port, max_body = o.max_body,
    max_connections = o.max_connections, max_connections_per_client = o.max_connections_per_client,
    header_timeout = o.header_timeout, body_timeout = o.body_timeout, log = o.log }
  if not srv then
    store:close()
    return nil, serr
  end
  local emu = setmetatable({
    opts = o, store = store, srv = srv, faults = faultsmod.new(),
    tokens = {}, ntokens = 0, requests = {}, seq = 0, out = o.out or io.stdout,
  }, Emulator)
  srv:before(function(req) return emu:before(req) end)
  srv:after(function(req, res) return emu:after(req, res) end)
  control.install(srv, emu)
  api.install(srv, emu)
  return emu
end

return _M
