-- ocean.router: the one route matcher and the one answer normaliser, for
-- every HTTP surface of lua-ocean: the integration's routes (served under
-- /integration by `ocean sail` and by nginx), the runners' own health and
-- resync routes, and the emulator's Port API. ocean.server and the
-- OpenResty adapter only carry requests to a router and its answers back.
--
--   local r = router.new()                       -- an integration's router
--   r.post("/webhook", function(req) ... end)    -- get/put/patch/delete too
--   r:route("*", "/any/*rest", fn)               -- any method
--   r:dispatch(req) -> status, body_text, headers
--   r:handle(req)   -> {status=, headers=, body= [, drop=, delay_ms=]}
--
-- Patterns match the (percent-decoded) path segment by segment: a literal
-- segment matches itself, `:name` one non-empty segment (req.params.name),
-- a final `*name` the non-empty rest of the path, slashes included. Routes
-- are tried in the order they were added (opts.first: before the others);
-- a path that only routes of other methods match gets 405 with Allow, no
-- match at all 404.
--
-- Two kinds of router (router.new{kind=}):
--   "integration" (default; ocean.router): a trailing slash is optional;
--     a non-empty body must be JSON (400 before the handler otherwise):
--     req.body is the decoded value (nil without a body), req.raw_body the
--     text. A route added with {raw_body = true} is not parsed.
--   "api" (the emulator's Port API): paths are exact; req.body is the
--     text and req:json() decodes it (an HTTP 400 error if it is not JSON);
--     before/after hooks (r:before(fn), r:after(fn)).
--
-- A handler returns a table (200 JSON), or status [, body [, headers]] (a
-- table body is sent as JSON, a string as is), or nothing (204), or a
-- response made by router.response / router.json ("api" handlers may also
-- return plain {status=, headers=, body=} tables, with drop = true to
-- close the connection unanswered or delay_ms = N to answer later).
-- Raising router.http_error(status, body) answers with that error. Any
-- other error, an invalid status or a body that is not JSON-encodable is
-- logged and answered 500; the router never raises while handling.
--
-- Requests (router.request{...} or made by the transports): method, path,
-- query (parsed: repeated keys give a list), raw_query, headers (lower-case
-- names), body / raw_body, remote, params, ctx (a table for hooks and
-- handlers); req:json(), req:header(name), req:query_list(name),
-- req:query_bool(name, default).
local json = require "ocean.json"
local log = require "ocean.log"

local type, ipairs, pairs, tostring, tonumber, error, xpcall, pcall =
  type, ipairs, pairs, tostring, tonumber, error, xpcall, pcall
local setmetatable, getmetatable = setmetatable, getmetatable
local concat, insert = table.concat, table.insert
local char, format = string.char, string.format
local math_type = math.type or function(n) return n % 1 == 0 and "integer" or "float" end
local traceback = debug.traceback

local _M = {}

local Router = {}
Router.__index = Router

local Request = {}
Request.__index = Request

local Response = {}           -- marks the tables router.response/json make

local HttpError = {}
HttpError.__index = HttpError
HttpError.__tostring = function(e)
  return format("HTTP %d: %s", e.status, tostring(e.body))
end

-- {==================== responses ====================

-- A response table. body: a string (sent as is) or nil.
function _M.response(status, body, headers)
  return setmetatable({ status = status, body = body or "", headers = headers or {} }, Response)
end

local function lower_keys(headers)
  local h = {}
  for k, v in pairs(headers or {}) do h[tostring(k):lower()] = tostring(v) end
  return h
end

-- A JSON response: value is encoded (an encoding error raises).
function _M.json(status, value, headers)
  local body, err = json.encode(value)
  if not body then error("router.json: " .. err, 2) end
  local h = lower_keys(headers)
  h["content-type"] = h["content-type"] or "application/json"
  return setmetatable({ status = status, body = body, headers = h }, Response)
end

-- An error to raise from a handler: the client gets `status` with `body`
-- (a table is sent as JSON; a string becomes {"ok":false,"error":...}).
function _M.http_error(status, body, headers)
  if type(body) ~= "table" then
    body = { ok = false, error = body or "error" }
  end
  return setmetatable({ status = status, body = body, headers = headers }, HttpError)
end

function _M.is_http_error(e)
  return getmetatable(e) == HttpError
end

local function error_response(status, code, message, headers)
  return _M.json(status, { ok = false, error = code, message = message }, headers)
end

local function valid_status(s)
  return type(s) == "number" and math_type(s) == "integer" and s >= 100 and s <= 599
end

-- The response for status, body, headers (a table body as JSON), or nil
-- and why not.
local function answer(status, body, headers)
  if not valid_status(status) then
    return nil, "a route answered with an invalid HTTP status " .. tostring(status)
  end
  if type(body) == "table" then
    local text, err = json.encode(body)
    if not text then return nil, "route answer is not JSON-encodable: " .. err end
    local h = lower_keys(headers)
    h["content-type"] = h["content-type"] or "application/json"
    return _M.response(status, text, h)
  end
  return _M.response(status, body ~= nil and tostring(body) or "", lower_keys(headers))
end

-- Is t a response table (rather than a JSON body)?
local function is_response(self, t)
  if getmetatable(t) == Response or t.drop then return true end
  return self.kind == "api" and type(t.status) == "number"
end

-- A handler's results as a response table, or nil and why not.
local function normalize(self, first, body, headers)
  if first == nil then return _M.response(204) end
  if type(first) == "table" and is_response(self, first) then
    if first.drop or valid_status(first.status) then return first end
    return answer(first.status)
  end
  if type(first) == "table" then return answer(200, first) end
  return answer(first, body, headers)
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

-- A request from what a transport read: {method=, path=, query= (a
-- table, or a raw string), headers=, body= (text), remote=, id=}.
function _M.request(raw)
  local q = raw.query
  return setmetatable({
    id = raw.id, method = raw.method, path = raw.path,
    raw_query = type(q) == "string" and q or nil,
    query = type(q) == "table" and q or _M.parse_query(q),
    headers = raw.headers or {}, body = raw.body or "", raw_body = raw.body or "",
    remote = raw.remote, params = {}, ctx = {},
  }, Request)
end

-- The decoded JSON body. Raises an HTTP 400 error when the body is not
-- JSON (the router answers it).
function Request:json()
  if self._json ~= nil then return self._json end
  local v, err = json.decode(self.raw_body or "")
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

-- "/a/:id/*rest" -> Lua pattern + capture names (level: for misuse errors).
local function compile(pattern, strict, level)
  if type(pattern) ~= "string" or pattern:sub(1, 1) ~= "/" then
    error("route path must start with '/', got " .. tostring(pattern), level + 1)
  end
  local names, parts = {}, {}
  local segs = {}
  for seg in pattern:gmatch("[^/]+") do segs[#segs + 1] = seg end
  for i, seg in ipairs(segs) do
    local kind, name = seg:sub(1, 1), seg:sub(2)
    if kind == ":" and name ~= "" then
      names[#names + 1] = name
      parts[#parts + 1] = "/([^/]+)"
    elseif kind == "*" and name ~= "" then
      if i ~= #segs then
        error("'*" .. name .. "' must be the last segment of " .. pattern, level + 1)
      end
      names[#names + 1] = name
      parts[#parts + 1] = "/(.+)"
    else
      parts[#parts + 1] = "/" .. seg:gsub("%W", "%%%0")
    end
  end
  if #parts == 0 then return strict and "^/$" or "^/?$", names end
  return "^" .. concat(parts) .. (strict and "$" or "/?$"), names
end

-- Add a route. method: "GET", "POST"... or "*" (any). opts.first: before
-- the routes added so far; opts.raw_body: no JSON parsing ("integration");
-- opts.priority: a transport that queues requests answers this route's
-- first (ocean.server: the health probe never waits behind a burst).
function Router:route(method, pattern, handler, opts)
  if type(method) ~= "string" then error("route: method must be a string", 2) end
  if type(handler) ~= "function" then
    error(("router.%s: expected a function"):format(method:lower()), 2)
  end
  local lp, names = compile(pattern, self.kind == "api", 2)
  local r = { method = method:upper(), path = pattern, lp = lp, names = names,
              fn = handler, raw_body = opts and opts.raw_body,
              priority = opts and opts.priority }
  insert(self.routes, opts and opts.first and 1 or #self.routes + 1, r)
  return self
end

local function adder(self, method)
  return function(path, fn, opts)
    if type(fn) ~= "function" then
      error(("router.%s: expected a function"):format(method:lower()), 2)
    end
    self:route(method, path, fn, opts)
    return fn
  end
end

-- Run fn(req) before routing; a non-nil result is the response.
function Router:before(fn)
  insert(self.before_hooks, fn)
  return self
end

-- Run fn(req, res) after every response is made (it may edit res).
function Router:after(fn)
  insert(self.after_hooks, fn)
  return self
end

-- Add m to the list of allowed methods once.
local function allow(allowed, m)
  for i = 1, #allowed do if allowed[i] == m then return end end
  allowed[#allowed + 1] = m
end

local function match_method(self, method, path)
  local allowed
  for _, r in ipairs(self.routes) do
    local caps = { path:match(r.lp) }    -- no captures: the whole match
    if caps[1] ~= nil then
      if r.method == "*" or r.method == method then
        local params = {}
        for i, name in ipairs(r.names) do params[name] = caps[i] end
        return r, params
      end
      allowed = allowed or {}
      allow(allowed, r.method)
      if r.method == "GET" then allow(allowed, "HEAD") end
    end
  end
  return nil, allowed
end

-- The route for method + path: route, params | nil, allowed methods.
-- HEAD without a HEAD route of its own runs the GET route (RFC 9110,
-- 9.3.2); the transports send its headers without the body.
function Router:match(method, path)
  local r, params = match_method(self, method, path)
  if not r and method == "HEAD" then
    local g, gparams = match_method(self, "GET", path)
    if g then return g, gparams end
  end
  return r, params
end

-- }====================

-- {==================== handling ====================

-- 404 (no route) or 405 (allowed: the methods that would match).
function _M.not_found(req, allowed)
  if allowed then
    return error_response(405, "method_not_allowed",
      format("%s is not allowed on %s", req.method, req.path), { allow = concat(allowed, ", ") })
  end
  return error_response(404, "not_found", format("no route for %s %s", req.method, req.path))
end

-- "integration" routers decode the body before the handler.
local function parse_body(self, r, req)
  if self.kind == "api" or r.raw_body then return nil end
  req.raw_body = req.raw_body or req.body_text or ""
  req.body = nil
  if req.raw_body == "" then return nil end
  local v, err = json.decode(req.raw_body)
  if v == nil then
    self.log("warning", format("%s %s refused (400): the body is not valid JSON: %s",
      tostring(req.method), tostring(req.path), err))
    return error_response(400, "invalid_json", "the request body is not valid JSON: " .. err)
  end
  req.body = v
end

local function route_and_run(self, req)
  for _, hook in ipairs(self.before_hooks) do
    local res = hook(req)
    if res ~= nil then return normalize(self, res) end
  end
  local r, params = self:match(req.method, req.path)
  if not r then return _M.not_found(req, params) end
  req.params, req.route = params, r.path
  req.headers, req.query = req.headers or {}, req.query or {}
  local bad = parse_body(self, r, req)
  if bad then return bad end
  return normalize(self, r.fn(req))
end

local function on_error(e)
  if _M.is_http_error(e) then return e end
  return traceback(tostring(e), 2)
end

-- ocean.runtime's error when a wait outlives the exiting nginx worker's
-- grace (runtime.EXIT_GRACE_MS)
local EXITING = require("ocean.runtime").EXIT_ERROR

local FAILURE = {
  integration = { "route %s %s failed: %s", "the route handler failed" },
  api = { "%s %s: handler failed: %s", "internal server error" },
}

-- Route req and run its handler: always a response table.
function Router:handle(req)
  local ok, res, why = xpcall(route_and_run, on_error, self, req)
  if ok and not res then
    self.log("error", why)
    res = error_response(500, "internal_error", nil)
  elseif not ok then
    if _M.is_http_error(res) then
      res = _M.json(res.status, res.body, res.headers)
    elseif tostring(res):find(EXITING, 1, true) then
      -- ocean.runtime gave up a wait as the nginx worker exits: the stop's
      -- doing, not the route's (ocean sail answers these 503 too)
      self.log("warning", format("route %s %s cut short: %s; answered 503", tostring(req.method),
        tostring(req.path), tostring(res):match("[^\n]*" .. EXITING .. "[^\n]*")))
      res = error_response(503, "shutting_down", "the nginx worker is exiting: what the route "
        .. "started may have happened; send it again", { ["Retry-After"] = "5" })
    else
      local f = FAILURE[self.kind]
      self.log("error", format(f[1], tostring(req.method), tostring(req.path), tostring(res)))
      res = error_response(500, "internal_error", f[2])
    end
  end
  for _, hook in ipairs(self.after_hooks) do
    local hok, err = pcall(hook, req, res)
    if not hok then self.log("error", "after hook failed: " .. tostring(err)) end
  end
  return res
end

-- handle(req) as status, body text, headers (for the transports).
function Router:dispatch(req)
  local res = self:handle(req)
  return res.status, res.body, res.headers
end

-- }====================

local function default_log(level, msg)
  log[(level == "error" or level == "warning") and level or "info"]("%s", msg)
end

-- A router. opts.kind: "integration" (default) or "api"; opts.log:
-- function(level, message) for handler failures ("error") and refused
-- bodies ("warning") (default: ocean.log).
function _M.new(opts)
  opts = opts or {}
  local kind = opts.kind or "integration"
  if kind ~= "integration" and kind ~= "api" then
    error("router.new: kind must be 'integration' or 'api', got " .. tostring(kind), 2)
  end
  local self = setmetatable({ kind = kind, routes = {}, before_hooks = {}, after_hooks = {},
                              log = opts.log or default_log }, Router)
  for _, m in ipairs { "GET", "POST", "PUT", "PATCH", "DELETE" } do
    self[m:lower()] = adder(self, m)
  end
  return self
end

return _M
