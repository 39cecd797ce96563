-- ocean.router: the integration's HTTP routes (webhooks...), served under
-- /integration by `ocean sail` and by nginx locations in OpenResty.
--
--   ocean.router.post("/webhook", function(req) ... end)   (get/put/patch/delete too)
--   handler(req): req.body (parsed JSON, or nil when there is none),
--     req.raw_body, req.headers (lower-case), req.query (table),
--     req.params (from :name segments), req.method, req.path
--   returns: a table (answered 200 as JSON), or status [, body [, headers]]
--     (a table body is JSON, a string is sent as is), or nothing (204).
--   A body that is not valid JSON is answered 400 before the handler runs
--   (whatever its Content-Type: curl -d sends JSON as a form); a handler
--   error is logged and answered 500, and so is an invalid status.
--
--   router.dispatch(req) -> status, body_string, headers  (used by the
--   runner and the OpenResty adapter; req.path is relative to /integration)
--
--   ocean.router is the default engine's router; router.new() makes one
--   (each engine holds its own). Its get/post/... are plain functions
--   (ocean.router.post(path, fn)); match and dispatch are methods.
local json = require "ocean.json"
local log = require "ocean.log"

local type, ipairs, pairs, tostring, xpcall, setmetatable =
  type, ipairs, pairs, tostring, xpcall, setmetatable
local math_type = math.type or function(n) return n % 1 == 0 and "integer" or "float" end
local traceback = debug.traceback

local _M = {}

local Router = {}
Router.__index = Router

-- "/a/:id/*rest" -> Lua pattern + capture names
local function compile(path)
  if type(path) ~= "string" or path:sub(1, 1) ~= "/" then
    error("route path must start with '/', got " .. tostring(path), 3)
  end
  local names, parts = {}, {}
  for seg in path:gmatch("[^/]+") do
    if seg:sub(1, 1) == ":" then
      names[#names + 1] = seg:sub(2)
      parts[#parts + 1] = "/([^/]+)"
    elseif seg:sub(1, 1) == "*" then
      names[#names + 1] = seg:sub(2)
      parts[#parts + 1] = "/(.+)"
    else
      parts[#parts + 1] = "/" .. seg:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")
    end
  end
  local lp = "^" .. table.concat(parts) .. "/?$"
  if #parts == 0 then lp = "^/?$" end
  return lp, names
end

local function add(self, method)
  return function(path, fn)
    if type(fn) ~= "function" then
      error(("router.%s: expected a function"):format(method:lower()), 2)
    end
    local lp, names = compile(path)
    self.routes[#self.routes + 1] = { method = method, path = path, lp = lp, names = names, fn = fn }
    return fn
  end
end

function _M.new()
  local self = setmetatable({ routes = {} }, Router)
  for _, m in ipairs { "GET", "POST", "PUT", "PATCH", "DELETE" } do
    self[m:lower()] = add(self, m)
  end
  return self
end

local INTERNAL = '{"ok":false,"error":"internal_error"}'

local function answer(status, value, headers)
  if type(status) ~= "number" or math_type(status) ~= "integer" or status < 100 or status > 599 then
    log.error("a route answered with an invalid HTTP status %s", tostring(status))
    return 500, INTERNAL, { ["content-type"] = "application/json" }
  end
  local h = {}
  for k, v in pairs(headers or {}) do h[tostring(k):lower()] = tostring(v) end
  headers = h
  if type(value) == "table" then
    local body, err = json.encode(value)
    if not body then
      log.error("route answer is not JSON-encodable: %s", err)
      return 500, INTERNAL, { ["content-type"] = "application/json" }
    end
    headers["content-type"] = headers["content-type"] or "application/json"
    return status, body, headers
  end
  if value == nil then return status, "", headers end
  return status, tostring(value), headers
end

local function error_answer(status, code, message)
  return answer(status, { ok = false, error = code, message = message })
end

-- Find the route for method + path: route, params | nil, allowed methods.
function Router:match(method, path)
  local allowed
  for _, r in ipairs(self.routes) do
    local caps = { path:match(r.lp) }
    if caps[1] ~= nil then
      if r.method == method then
        local params = {}
        for i, name in ipairs(r.names) do params[name] = caps[i] end
        return r, params
      end
      allowed = allowed or {}
      allowed[#allowed + 1] = r.method
    end
  end
  return nil, allowed
end

function Router:dispatch(req)
  local r, params = self:match(req.method, req.path)
  if not r then
    if params then
      local status, body, headers = error_answer(405, "method_not_allowed",
        ("%s is not allowed on %s"):format(req.method, req.path))
      headers.allow = table.concat(params, ", ")
      return status, body, headers
    end
    return error_answer(404, "not_found", "no route for " .. req.method .. " " .. req.path)
  end
  req.params = params
  req.headers = req.headers or {}
  req.query = req.query or {}
  req.raw_body = req.raw_body or req.body_text or ""
  req.body = nil
  if req.raw_body ~= "" then
    local v, err = json.decode(req.raw_body)
    if v == nil then
      return error_answer(400, "invalid_json", "the request body is not valid JSON: " .. err)
    end
    req.body = v
  end
  local ok, s, b, h = xpcall(r.fn, traceback, req)
  if not ok then
    log.error("route %s %s failed: %s", req.method, req.path, tostring(s))
    return error_answer(500, "internal_error", "the route handler failed")
  end
  if type(s) == "number" then return answer(s, b, h) end
  if s == nil then return 204, "", {} end
  return answer(200, s)
end

return _M
