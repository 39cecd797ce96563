-- ocean.router: route matching and router.dispatch's answers (the runner
-- and the OpenResty adapter serve them under /integration).
local json = require "ocean.json"
local log = require "ocean.log"
local routermod = require "ocean.router"

describe("ocean.router", function()
  local logged, router

  before_each(function()
    router = routermod.new()
    logged = {}
    log.set_sink(function(level, line) logged[#logged + 1] = level .. " " .. line end)
  end)
  after_each(function() log.set_sink(nil) end)

  local function dispatch(method, path, body, headers)
    local status, text, h = router:dispatch { method = method, path = path,
      raw_body = body, headers = headers or {}, query = {} }
    local v = text ~= "" and json.decode(text) or nil
    return status, v == nil and text or v, h
  end

  it("matches :name segments and a final *rest, with or without a trailing slash", function()
    local seen
    router.get("/repos/:owner/:name", function(req) seen = req.params return {} end)
    router.get("/files/*path", function(req) seen = req.params return {} end)
    assert.are.equal(200, (dispatch("GET", "/repos/acme/api")))
    assert.are.same({ owner = "acme", name = "api" }, seen)
    assert.are.equal(200, (dispatch("GET", "/repos/acme/api/")))
    assert.are.equal(200, (dispatch("GET", "/files/a/b.txt")))
    assert.are.same({ path = "a/b.txt" }, seen)
    assert.are.equal(404, (dispatch("GET", "/repos/acme")))
    assert.are.equal(404, (dispatch("GET", "/repos/acme/api/x")))
  end)

  it("escapes the literal parts of a path", function()
    router.post("/a.b-c", function() return {} end)
    assert.are.equal(200, (dispatch("POST", "/a.b-c")))
    assert.are.equal(404, (dispatch("POST", "/aXb-c")))
  end)

  it("answers 404 to no route and 405 (with Allow) to another method", function()
    router.post("/hook", function() return {} end)
    router.put("/hook", function() return {} end)
    local status, body = dispatch("GET", "/nope")
    assert.are.same({ 404, { ok = false, error = "not_found", message = "no route for GET /nope" } },
      { status, body })
    local h
    status, body, h = dispatch("GET", "/hook")
    assert.are.same({ 405, "method_not_allowed", "POST, PUT", "application/json" },
      { status, body.error, h.allow, h["content-type"] })
  end)

  it("runs the GET route for HEAD unless HEAD has its own, and allows HEAD where GET is", function()
    local seen = {}
    router.get("/health", function(req) seen[#seen + 1] = req.method return { ok = true } end)
    router.get("/both", function() return { via = "get" } end)
    router:route("HEAD", "/both", function() return 204 end)
    router.post("/hook", function() return {} end)
    local status, body = dispatch("HEAD", "/health")
    assert.are.same({ 200, { ok = true }, { "HEAD" } }, { status, body, seen })
    assert.are.equal(204, (dispatch("HEAD", "/both")))
    local s1, _, h1 = dispatch("DELETE", "/health")
    assert.are.same({ 405, "GET, HEAD" }, { s1, h1.allow })
    local s2, _, h2 = dispatch("HEAD", "/hook")
    assert.are.same({ 405, "POST" }, { s2, h2.allow })
    -- GET and HEAD routes of their own on one path, and two GET routes
    -- matching it: each method is named once
    router.get("/items/:id", function() return {} end)
    router.get("/items/:name", function() return {} end)
    local s3, _, h3 = dispatch("DELETE", "/both")
    assert.are.same({ 405, "GET, HEAD" }, { s3, h3.allow })
    local s4, _, h4 = dispatch("POST", "/items/7")
    assert.are.same({ 405, "GET, HEAD" }, { s4, h4.allow })
  end)

  it("answers 503 with Retry-After to a route an exiting nginx worker's grace cut short", function()
    router.post("/register", function()
      error("the nginx worker is exiting: gave up waiting after 10000 ms", 0)
    end)
    local status, body, h = dispatch("POST", "/register", "{}")
    assert.are.same({ 503, "shutting_down", "5" }, { status, body.error, h["retry-after"] or h["Retry-After"] })
    assert.are.same({ "WARNING route POST /register cut short: the nginx worker is exiting: gave up "
      .. "waiting after 10000 ms; answered 503" }, logged)
  end)

  it("parses a JSON body, and answers 400 to one that is not JSON", function()
    local got
    router.post("/hook", function(req) got = { req.body, req.raw_body } return {} end)
    assert.are.equal(200, (dispatch("POST", "/hook", '{"a":[1,null]}')))
    assert.are.same({ { a = { 1, json.null } }, '{"a":[1,null]}' }, got)
    got = nil
    local status, body = dispatch("POST", "/hook", "a=1", { ["content-type"] = "application/x-www-form-urlencoded" })
    assert.are.same({ 400, false, "invalid_json" }, { status, body.ok, body.error })
    assert.is_nil(got)
    assert.matches("^WARNING POST /hook refused %(400%): the body is not valid JSON: ", logged[1])
    assert.are.equal(200, (dispatch("POST", "/hook", "")))
    assert.are.same({ nil, "" }, got)
  end)

  local answers = {
    { "a table: 200 JSON", function() return { ok = true } end,
      200, { ok = true }, "application/json" },
    { "status and table", function() return 201, { id = 1 }, { ["X-Id"] = "1" } end,
      201, { id = 1 }, "application/json", { ["x-id"] = "1" } },
    { "status and string", function() return 202, "queued", { ["Content-Type"] = "text/plain" } end,
      202, "queued", "text/plain" },
    { "nothing: 204", function() end, 204, "", nil },
    { "an invalid status: 500", function() return 99, "x" end,
      500, { ok = false, error = "internal_error" }, "application/json" },
    { "an error: 500", function() error("kaput") end,
      500, { ok = false, error = "internal_error", message = "the route handler failed" },
      "application/json" },
  }
  for _, c in ipairs(answers) do
    it("answers a handler returning " .. c[1], function()
      router.post("/x", c[2])
      local status, body, h = dispatch("POST", "/x")
      assert.are.same({ c[3], c[4], c[5] }, { status, body, h["content-type"] })
      for k, v in pairs(c[6] or {}) do assert.are.equal(v, h[k]) end
    end)
  end

  it("logs a failing handler's error with the route", function()
    router.post("/x", function() error("kaput") end)
    dispatch("POST", "/x")
    assert.are.equal(1, #logged)
    assert.truthy(logged[1]:find("^ERROR route POST /x failed: .*kaput"))
  end)

  it("raises on misuse", function()
    assert.has_error(function() router.post("hook", function() end) end,
      "route path must start with '/', got hook")
    assert.has_error(function() router.get("/hook", "nope") end,
      "router.get: expected a function")
  end)
end)
