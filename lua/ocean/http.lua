-- ocean.http: HTTP for integration code (third-party APIs), on the
-- engine's event loop: while a resync function waits for a page, the
-- engine's Port writes keep going, and inside nginx the worker is never
-- blocked.
--
--   http.request{method=, url=, query=, headers=, body=, json=, timeout=,
--                retry=, verify_tls=, follow_redirects=, exact_numbers=}
--     -> res | nil, err
--     res = {status=, ok=(2xx), headers={lower-case}, body=, json=fn,
--            attempts=, url=}
--     json=<table>: sent as JSON (Content-Type set); timeout: seconds
--     (default OCEAN__CLIENT_TIMEOUT, 60); retry: false or 0 (no retries),
--     n (n retries, the default policy), or options of the loop
--     (statuses, max_attempts, base_delay_ms, max_total_wait_ms...);
--     by default 429, 408, 502, 503, 504 and connection errors are retried
--     honouring Retry-After: 4 sends at most, at most 60 s of waiting.
--     exact_numbers: res:json() keeps numbers a Lua number cannot hold
--     exactly (12345678901234567890) as exact numbers (json.decode).
--   http.get/post/put/patch/delete(url [, opts]) -> res | nil, err
--   http.get_json(url [, opts]) -> decoded body | nil, err (non-2xx is err)
--   http.paginate(url [, opts]) -> iterator of pages (decoded JSON bodies,
--     or opts.items(body, res); nil counts as an empty page; with
--     opts.text the body's JSON text itself, which the engine maps with
--     every number exactly as written: for APIs whose body is the list,
--     no opts.items then); next page
--     from opts.next(body, res, url) (a URL, or a table of request options
--     to change, or nil to stop), else the Link header's rel="next";
--     relative URLs are resolved against the page's. The other opts are
--     those of http.request (query applies to the first page only: next
--     URLs carry their own). An HTTP failure raises (the resync function
--     fails, and nothing is deleted). Fits the generator style:
--       for page in ocean.http.paginate(url) do coroutine.yield(page) end
--
-- Errors name the function and the option (http.get_json: opts.retry
-- must be ...); URLs in errors lose their credentials (log.redact_url:
-- user:****@, ?token=****).
--
-- These functions run on the default engine (require("ocean").engine());
-- http.new(engine) gives the same functions on another engine (its loop,
-- its settings: OCEAN__CLIENT_TIMEOUT, third-party TLS verification).
local json = require "ocean.json"
local log = require "ocean.log"

local type, pairs, ipairs, tostring, error = type, pairs, ipairs, tostring, error
local setmetatable = setmetatable
local format = string.format

local _M = {}

local EXACT = { exact_numbers = true }

local function escape(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c)
    return format("%%%02X", c:byte())
  end))
end
_M.escape = escape

-- "a=1&b=x%20y" from a table (sorted keys; list values repeat the key).
local function encode_query(q)
  local keys = {}
  for k in pairs(q) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do
    local v = q[k]
    if type(v) == "table" then
      for _, x in ipairs(v) do parts[#parts + 1] = escape(k) .. "=" .. escape(x) end
    elseif v ~= nil then
      parts[#parts + 1] = escape(k) .. "=" .. escape(v)
    end
  end
  return table.concat(parts, "&")
end
_M.encode_query = encode_query

local Response = {}
Response.__index = Response

function Response:json()
  if self._json == nil then
    local v, err = json.decode(self.body or "", self._exact)
    if v == nil then return nil, "response is not JSON: " .. err end
    self._json = v
  end
  return self._json
end

local DEFAULT_RETRY = {
  statuses = { 408, 429, 502, 503, 504 }, max_attempts = 4,
  base_delay_ms = 200, max_delay_ms = 30000, max_total_wait_ms = 60000,
  connection_errors = true, honour_retry_after = true,
}

local Client = {}
Client.__index = Client

-- opts.retry as the loop takes it: nil/true the defaults; false or 0 no
-- retries; n (a whole number) n retries with the default policy; a table
-- the loop's options. nil, why for anything else.
local function retry_of(retry)
  if retry == nil or retry == true then return DEFAULT_RETRY end
  if retry == false or retry == 0 then return false end
  if type(retry) == "number" then
    if retry < 0 or retry % 1 ~= 0 or retry > 100 then
      return nil, ("a whole number of retries from 0 to 100, got %s"):format(tostring(retry))
    end
    local r = {}
    for k, v in pairs(DEFAULT_RETRY) do r[k] = v end
    r.max_attempts = retry + 1
    return r
  end
  if type(retry) == "table" then return retry end
  return nil, ("false, a number of retries or a table of retry options, got a %s")
    :format(type(retry))
end

-- fname: the public function called (http.get_json...), for errors.
local function request(eng, opts, fname)
  fname = fname or "http.request"
  if type(opts) ~= "table" then error(fname .. ": expected a table of options", 3) end
  if type(opts.url) ~= "string" or not opts.url:match("^https?://") then
    error(fname .. ": url must be an http(s) URL, got " .. log.redact_url(tostring(opts.url)), 3)
  end
  local settings = eng.settings
  local url = opts.url
  if opts.query then
    local q = encode_query(opts.query)
    if q ~= "" then url = url .. (url:find("?", 1, true) and "&" or "?") .. q end
  end
  local headers, body = {}, opts.body
  for k, v in pairs(opts.headers or {}) do headers[#headers + 1] = k .. ": " .. tostring(v) end
  if opts.json ~= nil then
    local err
    body, err = json.encode(opts.json)
    if not body then error(fname .. ": opts.json: " .. err, 3) end
    headers[#headers + 1] = "Content-Type: application/json"
  end
  local method = opts.method or (body and "POST" or "GET")
  local timeout = opts.timeout or (settings and settings.client_timeout) or 60
  if type(timeout) ~= "number" or timeout <= 0 then
    error(fname .. ": opts.timeout must be a positive number of seconds", 3)
  end
  local verify = opts.verify_tls
  if verify == nil then verify = not settings or settings.third_party_verify_tls ~= false end
  local retry, rerr = retry_of(opts.retry)
  if retry == nil then error(fname .. ": opts.retry must be " .. rerr, 3) end
  local job = eng:get_loop():request {
    method = method, url = url, headers = headers, body = body,
    timeout_ms = math.floor(timeout * 1000), verify_tls = verify,
    follow_redirects = opts.follow_redirects ~= false,
    retry = retry or nil,
  }
  local r = eng:await(job)
  if r.error and (not r.status or r.status == 0) then
    return nil, format("%s %s failed: %s", method, log.redact_url(url), r.error)
  end
  return setmetatable({
    status = r.status, ok = r.status >= 200 and r.status < 300,
    headers = r.headers or {}, body = r.body or "", attempts = r.attempts,
    url = url, _exact = opts.exact_numbers and EXACT or nil,
  }, Response)
end

-- Every request function, bound to engine eng.
local function bind(c, eng)
  function c.request(opts, fname) return request(eng, opts, fname) end
  for _, m in ipairs { "get", "post", "put", "patch", "delete" } do
    c[m] = function(url, opts, fname)
      if opts ~= nil and type(opts) ~= "table" then
        error(("%s: options must be a table, got a %s"):format(fname or ("http." .. m), type(opts)), 2)
      end
      local o = {}
      for k, v in pairs(opts or {}) do o[k] = v end
      o.method = m:upper()
      o.url = url
      return request(eng, o, fname or ("http." .. m))
    end
  end
  return c
end

local function status_error(res, method, url)
  local snippet = (res.body or ""):sub(1, 200)
  return format("%s %s: HTTP %d %s", method, log.redact_url(url), res.status, snippet)
end

function Client:get_json(url, opts)
  local res, err = self.get(url, opts, "http.get_json")
  if not res then return nil, err end
  if not res.ok then return nil, status_error(res, "GET", url) end
  return res:json()
end

-- The target of the rel="next" link of a Link header (RFC 8288: several
-- links, rel lists like rel="next last", URLs that contain commas).
local function link_next(link)
  if type(link) ~= "string" then return nil end
  for target, params in link:gmatch("<([^>]*)>([^<]*)") do
    local rel = params:match('[Rr][Ee][Ll]%s*=%s*"([^"]*)"')
      or params:match("[Rr][Ee][Ll]%s*=%s*([^;,%s]+)")
    for word in (rel or ""):gmatch("%S+") do
      if word:lower() == "next" then return target end
    end
  end
  return nil
end
_M.link_next = link_next

-- ref (absolute, "//host/x", "/x", "?q" or "x") resolved against base.
local function resolve_url(base, ref)
  if ref:match("^%a[%w+.-]*:") then return ref end
  local scheme, auth, path = base:match("^(%a[%w+.-]*:)//([^/?#]*)([^?#]*)")
  if not scheme then return ref end
  if ref:sub(1, 2) == "//" then return scheme .. ref end
  local origin = scheme .. "//" .. auth
  if ref:sub(1, 1) == "/" then return origin .. ref end
  if path == "" then path = "/" end
  if ref:sub(1, 1) == "?" then return origin .. path .. ref end
  return origin .. path:match("^(.*/)") .. ref
end
_M.resolve_url = resolve_url

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- A request's identity for loop detection: its URL, method, query and
-- body, tables serialized with sorted keys.
local function req_key(v, out)
  local t = type(v)
  if t ~= "table" then
    out[#out + 1] = t:sub(1, 1) .. tostring(v)
    return out
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  out[#out + 1] = "{"
  for _, k in ipairs(keys) do
    out[#out + 1] = k .. "="
    req_key(v[k] ~= nil and v[k] or v[tonumber(k)], out)
    out[#out + 1] = ","
  end
  out[#out + 1] = "}"
  return out
end

local function request_key(req)
  return table.concat(req_key({ req.url, req.method or "GET", req.query or false,
    req.json == nil and false or req.json, req.body or false }, {}))
end

function Client:paginate(url, opts)
  if type(url) ~= "string" then error("http.paginate: expected a URL", 2) end
  opts = opts or {}
  if opts.next ~= nil and type(opts.next) ~= "function" then
    error("http.paginate: opts.next must be a function", 2)
  end
  if opts.text and opts.items then
    error("http.paginate: text pages are whole bodies (no opts.items)", 2)
  end
  local request_fn = self.request
  local next_req = { url = url }
  local seen, pages = {}, 0
  for k, v in pairs(opts) do
    if k ~= "next" and k ~= "items" and k ~= "text" then next_req[k] = v end
  end
  return function()
    if not next_req then return nil end
    local req = next_req
    next_req = nil
    local key = request_key(req)
    if seen[key] then
      error(format("%s %s: page %d asks for a page already read (the pagination loops: the "
        .. "same next URL or cursor again)", req.method or "GET", log.redact_url(req.url), pages + 1), 2)
    end
    seen[key] = true
    pages = pages + 1
    local res, err = request_fn(req, "http.paginate")
    if not res then error(err, 2) end
    local method = req.method or "GET"
    if not res.ok then error(status_error(res, method, res.url), 2) end
    local body, jerr
    if not opts.text or opts.next then
      body, jerr = res:json()
      if body == nil then error(format("%s %s: %s", method, log.redact_url(res.url), jerr), 2) end
    end
    local nxt
    if opts.next then
      nxt = opts.next(body, res, res.url)
    else
      nxt = link_next(res.headers.link)
    end
    if type(nxt) == "string" then
      next_req = copy(req)
      next_req.url, next_req.query = resolve_url(res.url, nxt), nil
    elseif type(nxt) == "table" then
      next_req = copy(req)
      for k, v in pairs(nxt) do next_req[k] = v end
      if nxt.url then next_req.url = resolve_url(res.url, nxt.url) end
    end
    if opts.items then
      local items = opts.items(body, res)
      if items == nil then items = json.array {} end   -- nil would end the for loop
      return items
    end
    if opts.text then return res.body end
    return body
  end
end

-- ocean.http's functions on engine eng.
function _M.new(eng)
  local c = bind(setmetatable({}, Client), eng)
  function c.get_json(url, opts) return Client.get_json(c, url, opts) end
  function c.paginate(url, opts) return Client.paginate(c, url, opts) end
  return c
end

-- The module's own functions: the default engine's client.
local function default_client()
  return require("ocean").engine():http()
end
for _, name in ipairs { "request", "get", "post", "put", "patch", "delete",
                        "get_json", "paginate" } do
  _M[name] = function(...) return default_client()[name](...) end
end

return _M
