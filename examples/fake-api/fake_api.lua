#!/usr/bin/env lua5.4
-- A small fake third-party API for the fake-api example and the specs:
-- teams and users as JSON, users paged with Link headers (as GitHub does),
-- webhooks sent to the integration when a user changes, and a control API
-- to inject faults (429 with Retry-After, 5xx, delays) and read the request
-- log. Runs on lua-ocean's own HTTP server (lua/ocean/server.lua).
--
--   lua5.4 examples/fake-api/fake_api.lua [--port N] [--host ADDR]
--       [--port-file FILE] [--webhook URL] [--webhook-secret S] [--exit-with PID] [--quiet]
--
-- API
--   GET  /teams                        every team (one list, no paging)
--   GET  /teams/:id, /users/:login     one object (404 when unknown)
--   GET  /users?page=N&per_page=M      users, M per page (default 10, at
--                                      most 100); Link: rel="next"/"last"
--                                      (absolute URLs; ?relative=true makes
--                                      them relative), X-Total-Count
--   GET  /user-cursor?cursor=C&limit=M {"items": [...], "next_cursor": C|null}
--   POST /users {login, name, ...}     add or replace a user; PATCH
--                                      /users/:login merges; DELETE removes.
--                                      Each sends {"action": "created" |
--                                      "updated" | "deleted", "user": {...}}
--                                      to --webhook (when given), with
--                                      X-Webhook-Secret: S (--webhook-secret)
--   *    /echo                         {method, path, query, headers, body}
--   GET  /slow?ms=N[&id=X]             answers {"ok":true,"id":X} after N ms
--   GET  /text                         a body that is not JSON
-- Control (never faulted, not logged)
--   POST   /_faults {"rules": [{method=, path= (Lua pattern), query= (plain
--          substring of the raw query), status=, retry_after=, body=,
--          delay_ms=, drop=, count=}]}; first matching rule fires; DELETE
--          /_faults clears them
--   GET    /_requests -> {"requests": [{method, path, query, at_ms}]};
--          DELETE clears the log
--   GET    /_slow -> {"in_flight", "max_in_flight", "served"}: /slow's
--          requests between arrival and answer; DELETE resets the counts
--   POST   /_webhook {"url": URL | null [, "secret": S]}: where webhooks go
--          (as --webhook) and the secret they carry (as --webhook-secret)
--   POST   /_reset (data, faults and log as at start), POST /_shutdown
local function dirname(p) return (p:match("^(.*)/[^/]*$")) or "." end
local root = dirname(dirname(dirname(arg and arg[0] or "examples/fake-api/fake_api.lua")))
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/build/" .. (rawget(_G, "jit") and "luajit" or "lua5.4")
  .. "/?.so;" .. package.cpath

local core = require "ocean.core"
local json = require "ocean.json"
local server = require "ocean.server"

local format = string.format

-- {==================== the data ====================

local TEAMS = {
  { id = "platform", name = "Platform", description = "Shared infrastructure and tooling" },
  { id = "payments", name = "Payments", description = "Checkout, billing and refunds" },
  { id = "mobile", name = "Mobile", description = "The iOS and Android apps" },
  { id = "data", name = "Data", description = "Pipelines, warehouse and reporting" },
  { id = "security", name = "Security", description = "AppSec, IAM and incident response" },
}
local FIRST = { "Ada", "Alan", "Grace", "Linus", "Margaret", "Dennis", "Barbara", "Ken",
                "Frances", "John" }
local LAST = { "Smith", "Garcia", "Chen", "Okafor", "Novak" }

-- 50 users: every 10th is inactive, every 7th an admin.
local function initial_users()
  local users = {}
  for i = 1, #FIRST * #LAST do
    local first = FIRST[(i - 1) % #FIRST + 1]
    local last = LAST[math.floor((i - 1) / #FIRST) + 1]
    local login = (first .. "." .. last):lower()
    users[i] = {
      login = login, name = first .. " " .. last, email = login .. "@example.com",
      team = TEAMS[(i - 1) % #TEAMS + 1].id, role = i % 7 == 0 and "admin" or "member",
      active = i % 10 ~= 0,
      joined_at = format("2023-%02d-%02dT09:00:00Z", (i - 1) % 12 + 1, (i - 1) % 28 + 1),
    }
  end
  return users
end

local state

local function reset()
  state = { users = initial_users(), faults = {}, log = {},
            slow = { in_flight = 0, max_in_flight = 0, served = 0 } }
end

local function find_user(login)
  for i, u in ipairs(state.users) do
    if u.login == login then return u, i end
  end
end

local function find_team(id)
  for _, t in ipairs(TEAMS) do
    if t.id == id then return t end
  end
end

-- }====================

-- {==================== options ====================

local USAGE = [[
usage: lua5.4 examples/fake-api/fake_api.lua [--port N] [--host ADDR]
         [--port-file FILE] [--webhook URL] [--webhook-secret S] [--exit-with PID] [--quiet]
]]

local function parse_args(args)
  local o = { host = "127.0.0.1", port = 8080 }
  local i = 1
  while i <= #args do
    local a, v = args[i], args[i + 1]
    if a == "--quiet" then
      o.quiet = true
    elseif a == "--help" then
      o.help = true
    elseif a == "--port" or a == "--host" or a == "--port-file" or a == "--webhook"
        or a == "--webhook-secret" or a == "--exit-with" then
      if v == nil then return nil, a .. " needs a value" end
      o[a:sub(3):gsub("%-", "_")] = v
      i = i + 1
    else
      return nil, "unknown option " .. a
    end
    i = i + 1
  end
  o.port = tonumber(o.port)
  if not o.port then return nil, "--port needs a number" end
  return o
end

-- }====================

-- {==================== webhooks ====================

local opts

local function deliver(action, user)
  if not opts.webhook then return json.null end
  local http = require "ocean.http"
  local headers = opts.webhook_secret and { ["X-Webhook-Secret"] = opts.webhook_secret } or nil
  local res, err = http.post(opts.webhook, { json = { action = action, user = user },
    headers = headers, timeout = 30, retry = false })
  if not res then
    io.stderr:write("fake-api: webhook failed: ", err, "\n")
    return { ok = false, error = err }
  end
  return { ok = res.ok, status = res.status }
end

-- }====================

-- {==================== routes ====================

local function not_found(what)
  return 404, { message = what .. " not found" }
end

local function url_for(req, path)
  return format("http://%s%s", req.headers.host or "127.0.0.1", path)
end

local function positive(v, default, max)
  local n = tonumber(v)
  if not n or n < 1 or n ~= math.floor(n) then return default end
  return max and math.min(n, max) or n
end

local function page_links(req, page, per_page, last)
  local function link(p, rel)
    local path = format("/users?page=%d&per_page=%d", p, per_page)
    if req.query.relative == "true" then
      path = path .. "&relative=true"
    else
      path = url_for(req, path)
    end
    return format('<%s>; rel="%s"', path, rel)
  end
  local links = {}
  if page < last then links[#links + 1] = link(page + 1, "next") end
  if page > 1 then links[#links + 1] = link(page - 1, "prev") end
  links[#links + 1] = link(1, "first")
  links[#links + 1] = link(last, "last")
  return table.concat(links, ", ")
end

local function add_routes(srv)
  srv:get("/teams", function() return 200, json.array(TEAMS) end)
  srv:get("/teams/:id", function(req)
    local t = find_team(req.params.id)
    if not t then return not_found("team") end
    return 200, t
  end)
  srv:get("/users", function(req)
    local per_page = positive(req.query.per_page, 10, 100)
    local page = positive(req.query.page, 1)
    local total = #state.users
    local last = math.max(1, math.ceil(total / per_page))
    local items = json.array {}
    for i = (page - 1) * per_page + 1, math.min(page * per_page, total) do
      items[#items + 1] = state.users[i]
    end
    return server.json(200, items, { link = page_links(req, page, per_page, last),
      ["x-total-count"] = tostring(total) })
  end)
  srv:get("/users/:login", function(req)
    local u = find_user(req.params.login)
    if not u then return not_found("user") end
    return 200, u
  end)
  srv:get("/user-cursor", function(req)
    local limit = positive(req.query.limit, 10, 100)
    local from = positive(req.query.cursor, 1)
    local items = json.array {}
    for i = from, math.min(from + limit - 1, #state.users) do
      items[#items + 1] = state.users[i]
    end
    local nxt = from + limit <= #state.users and tostring(from + limit) or json.null
    return 200, { items = items, next_cursor = nxt }
  end)
  srv:post("/users", function(req)
    -- numbers kept as sent (12345678901234567890), as a real API does;
    -- req:json() answers 400 for a body that is not JSON
    local u = json.decode(req.body or "", { exact_numbers = true }) or req:json()
    if type(u) ~= "table" or type(u.login) ~= "string" or u.login == "" then
      return 422, { message = "a user needs a login" }
    end
    local old, i = find_user(u.login)
    if old then state.users[i] = u else state.users[#state.users + 1] = u end
    local action = old and "updated" or "created"
    return old and 200 or 201, { user = u, webhook = deliver(action, u) }
  end)
  srv:patch("/users/:login", function(req)
    local u = find_user(req.params.login)
    if not u then return not_found("user") end
    local patch = req:json()
    if type(patch) ~= "table" then return 422, { message = "expected an object" } end
    for k, v in pairs(patch) do u[k] = v end
    return 200, { user = u, webhook = deliver("updated", u) }
  end)
  srv:delete("/users/:login", function(req)
    local u, i = find_user(req.params.login)
    if not u then return not_found("user") end
    table.remove(state.users, i)
    return 200, { user = u, webhook = deliver("deleted", u) }
  end)
  srv:route("*", "/echo", function(req)
    return 200, { method = req.method, path = req.path, query = req.query,
                  headers = req.headers, body = req.body or "" }
  end)
  srv:get("/text", function()
    return 200, "plain text, not JSON", { ["content-type"] = "text/plain" }
  end)
  -- counted from the request's arrival to its answer's departure
  srv:get("/slow", function(req)
    local c = state.slow
    c.in_flight = c.in_flight + 1
    if c.in_flight > c.max_in_flight then c.max_in_flight = c.in_flight end
    local res = server.json(200, { ok = true, id = req.query.id })
    res.delay_ms = positive(req.query.ms, 1000)
    res.on_sent = function()
      c.in_flight = c.in_flight - 1
      c.served = c.served + 1
    end
    return res
  end)
end

local function add_control(srv, stop)
  srv:post("/_faults", function(req)
    local body = req:json()
    if type(body) ~= "table" or type(body.rules) ~= "table" then
      return 400, { message = "expected {\"rules\": [...]}" }
    end
    state.faults = body.rules
    return 200, { ok = true }
  end)
  srv:delete("/_faults", function() state.faults = {} return 200, { ok = true } end)
  srv:get("/_requests", function() return 200, { requests = json.array(state.log) } end)
  srv:delete("/_requests", function() state.log = {} return 200, { ok = true } end)
  srv:get("/_slow", function() return 200, state.slow end)
  srv:delete("/_slow", function()
    state.slow = { in_flight = 0, max_in_flight = 0, served = 0 }
    return 200, { ok = true }
  end)
  srv:post("/_webhook", function(req)
    local body = req:json()
    if type(body) ~= "table" or (body.url ~= json.null and type(body.url) ~= "string") then
      return 400, { message = "expected {\"url\": URL or null}" }
    end
    opts.webhook = body.url ~= json.null and body.url or nil
    if type(body.secret) == "string" then opts.webhook_secret = body.secret end
    return 200, { ok = true }
  end)
  srv:post("/_reset", function() reset() return 200, { ok = true } end)
  srv:post("/_shutdown", function() stop.now = true return 200, { ok = true } end)
end

-- The first fault rule matching req (its count, when given, goes down).
local function fault_for(req)
  for _, r in ipairs(state.faults) do
    if (r.method == nil or r.method == req.method)
        and (r.path == nil or req.path:find(r.path) ~= nil)
        and (r.query == nil or (req.raw_query or ""):find(r.query, 1, true) ~= nil)
        and (r.count == nil or r.count > 0) then
      if r.count then r.count = r.count - 1 end
      return r
    end
  end
end

local function before(req)
  if req.path:sub(1, 2) == "/_" then return nil end
  state.log[#state.log + 1] = { method = req.method, path = req.path,
    query = req.raw_query or "", at_ms = core.monotonic_ms() }
  local r = fault_for(req)
  if not r then return nil end
  if r.drop then return { drop = true } end
  local headers = {}
  if r.retry_after then headers["retry-after"] = tostring(r.retry_after) end
  local res = server.json(r.status or 503, r.body or { message = "injected fault" }, headers)
  if r.delay_ms then res.delay_ms = r.delay_ms end
  return res
end

-- }====================

local function write_port_file(path, port)
  local f = assert(io.open(path .. ".tmp", "w"))
  f:write(port, "\n")
  f:close()
  assert(os.rename(path .. ".tmp", path))
end

local function alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if not f then return false end
  local s = f:read("l") or ""
  f:close()
  return not s:match("^%d+ %b() [ZX]")
end

local function main(args)
  local err
  opts, err = parse_args(args)
  if not opts then
    io.stderr:write("fake-api: ", err, "\n", USAGE)
    return 2
  end
  if opts.help then
    io.stdout:write(USAGE)
    return 0
  end
  reset()
  local stop = {}
  local srv, serr = server.new { host = opts.host, port = opts.port }
  if not srv then
    io.stderr:write("fake-api: ", serr, "\n")
    return 1
  end
  srv:before(before)
  if not opts.quiet then
    srv:after(function(req, res)
      if req.path:sub(1, 2) ~= "/_" then
        io.stdout:write(format("%s %s %s\n", req.method, req.path, tostring(res.status or "-")))
      end
    end)
  end
  add_control(srv, stop)
  add_routes(srv)
  io.stdout:setvbuf("line")
  io.stdout:write("fake-api listening on ", srv:url(), "\n")
  if opts.port_file then write_port_file(opts.port_file, srv:port()) end
  local exit_with = tonumber(opts.exit_with)
  local last_check = 0
  srv:serve { idle_ms = 250, stop = function()
    if stop.now then return true end          -- deferred answers are dropped
    if exit_with and os.time() ~= last_check then
      last_check = os.time()
      return not alive(exit_with)
    end
    return false
  end }
  srv:close()
  return 0
end

os.exit(main(arg))
