-- The C HTTP server (core.server_start) and its routing layer
-- (ocean.server), driven from this process; clients are curl (and bash's
-- /dev/tcp for malformed requests) running in the background while the
-- spec turns the server loop.
local core = require "ocean.core"
local json = require "ocean.json"
local server = require "ocean.server"
local helpers = require "spec.helpers.emulator"

local q, read_file = helpers.shell_quote, helpers.read_file

local dir
local seq = 0

-- Run `curl <args> URL` in the background. Returns a handle:
-- h.done(), h.status (number, 0: no answer), h.body, h.headers, h.exit.
local function curl(args, url)
  seq = seq + 1
  local base = ("%s/c%d"):format(dir, seq)
  local h = { base = base }
  os.execute(("(curl -s -o %s -D %s -w '%%{http_code}' %s %s > %s 2>/dev/null; echo $? > %s) &")
    :format(q(base .. ".body"), q(base .. ".head"), args, q(url), q(base .. ".status"),
      q(base .. ".exit")))
  function h.done()
    if h.exit then return true end
    local e = read_file(base .. ".exit")
    if not e or not e:find("\n") then return false end
    h.exit = tonumber(e)
    h.status = tonumber(read_file(base .. ".status") or "") or 0
    h.body = read_file(base .. ".body") or ""
    h.headers = {}
    for line in (read_file(base .. ".head") or ""):gmatch("[^\r\n]+") do
      local k, v = line:match("^([^:]+):%s*(.*)$")
      if k then h.headers[k:lower()] = v end
    end
    return true
  end
  return h
end

-- A raw request over bash's /dev/tcp; h.body is everything read back.
local function raw(port, bytes)
  seq = seq + 1
  local base = ("%s/r%d"):format(dir, seq)
  local h = {}
  os.execute(("(printf %s | timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/%d; cat >&3; cat <&3'"
    .. " > %s 2>/dev/null; echo $? > %s) &")
    :format(q(bytes), port, q(base .. ".out"), q(base .. ".exit")))
  function h.done()
    local e = read_file(base .. ".exit")
    if not e or not e:find("\n") then return false end
    h.body = read_file(base .. ".out") or ""
    return true
  end
  return h
end

-- Turn the loop until every handle is done (at most `limit` seconds).
-- Returns the monotonic time at which each handle finished.
local function serve_until(step, handles, limit)
  local t0 = core.monotonic_ms()
  local finished, left = {}, #handles
  while left > 0 do
    step(10)
    for i, h in ipairs(handles) do
      if not finished[i] and h.done() then
        finished[i] = core.monotonic_ms()
        left = left - 1
      end
    end
    if core.monotonic_ms() - t0 > (limit or 10) * 1000 then
      error("clients did not finish in time")
    end
  end
  return finished
end

setup(function() dir = helpers.tmpdir() end)
teardown(function() os.execute("rm -rf " .. q(dir)) end)

describe("core.server_start", function()
  local s
  after_each(function() if s then s:close() end s = nil end)

  it("listens on an ephemeral port and queues complete requests", function()
    s = assert(core.server_start{ port = 0 })
    local port = s:port()
    assert.is_true(port > 0)
    local h = curl("-X POST -H 'X-Mixed-Case: v1' --data-binary 'hello'",
      ("http://127.0.0.1:%d/a%%20b/c?x=1&y=%%20z"):format(port))
    local got
    serve_until(function(t)
      s:wait(t)
      local r = s:next()
      if r then
        got = r
        assert.is_true(s:respond(r.id, 201, { ["X-Reply"] = "yes" }, "done"))
      end
    end, { h })
    assert.are.equal("POST", got.method)
    assert.are.equal("/a b/c", got.path)
    assert.are.equal("x=1&y=%20z", got.query)
    assert.are.equal("hello", got.body)
    assert.are.equal("v1", got.headers["x-mixed-case"])
    assert.are.equal("127.0.0.1:" .. port, got.headers.host)
    assert.truthy(got.remote:match("^127%.0%.0%.1:%d+$"))
    assert.are.equal(201, h.status)
    assert.are.equal("done", h.body)
    assert.are.equal("yes", h.headers["x-reply"])
  end)

  it("takes a large body sent with Expect: 100-continue", function()
    local big = dir .. "/big.bin"
    local f = assert(io.open(big, "wb"))
    f:write(string.rep("0123456789", 200000))
    f:close()
    s = assert(core.server_start{ max_body = 2000000 })
    local ok = curl("-X POST --data-binary @" .. q(big), ("http://127.0.0.1:%d/big"):format(s:port()))
    local got
    serve_until(function(t)
      s:wait(t)
      local r = s:next()
      if r then
        got = r
        s:respond(r.id, 200, nil, tostring(#r.body))
      end
    end, { ok })
    assert.are.equal("100-continue", got.headers.expect)
    assert.are.equal("2000000", ok.body)
    s:close()
    s = assert(core.server_start{ max_body = 1999999 })
    local refused = curl("-X POST --data-binary @" .. q(big), ("http://127.0.0.1:%d/big"):format(s:port()))
    serve_until(function(t)
      s:wait(t)
      assert.is_nil(s:next())
    end, { refused })
    assert.are.equal(413, refused.status)
  end)

  it("reports a port in use as nil and a message", function()
    s = assert(core.server_start{ port = 0 })
    local s2, err = core.server_start{ port = s:port() }
    assert.is_nil(s2)
    assert.are.equal(("cannot listen on 127.0.0.1:%d: Address already in use")
      :format(s:port()), err)
  end)

  it("rejects bad options", function()
    assert.has_error(function() core.server_start{ port = 70000 } end,
      "server_start: 'port' must be an integer in 0..65535")
    assert.has_error(function() core.server_start{ max_body = 0 } end,
      "server_start: 'max_body' must be an integer in 1..2147483647")
    local s2, err = core.server_start{ host = "no such host name." }
    assert.is_nil(s2)
    assert.truthy(err:find("cannot resolve listen address 'no such host name.'", 1, true))
  end)

  it("answers unknown ids with nil, err and refuses invalid headers", function()
    s = assert(core.server_start{})
    assert.are.same({ nil, "unknown request id" }, { s:respond(42, 200) })
    assert.are.same({ nil, "unknown request id" }, { s:drop(42) })
    local h = curl("", ("http://127.0.0.1:%d/x"):format(s:port()))
    serve_until(function(t)
      s:wait(t)
      local r = s:next()
      if r then
        assert.has_error(function() s:respond(r.id, 200, { ["bad name"] = "v" }) end,
          "respond: invalid header name 'bad name'")
        assert.has_error(function() s:respond(r.id, 200, { x = "a\r\nb: c" }) end,
          "respond: invalid value for header 'x'")
        assert.has_error(function() s:respond(r.id, 42) end)
        assert.is_true(s:respond(r.id, 200, { ["Content-Length"] = "99", Empty = "" }, "ok"))
      end
    end, { h })
    assert.are.equal(200, h.status)
    assert.are.equal("ok", h.body)
  end)

  it("closes idempotently and refuses to be used once closed", function()
    s = assert(core.server_start{})
    s:close()
    s:close()
    assert.has_error(function() s:port() end, "attempt to use a closed server")
    assert.are.equal("ocean.Server (closed)", tostring(s))
  end)

  it("is closed by the garbage collector", function()
    local function make()
      local s2 = assert(core.server_start{})
      return s2:port()
    end
    local port = make()
    collectgarbage()
    collectgarbage()
    s = assert(core.server_start{ port = port })
  end)

  it("stops cleanly with requests queued and handed out", function()
    s = assert(core.server_start{})
    local port = s:port()
    local a = curl("", ("http://127.0.0.1:%d/a"):format(port))
    local b = curl("", ("http://127.0.0.1:%d/b"):format(port))
    local n, t0 = 0, core.monotonic_ms()
    while n < 2 and core.monotonic_ms() - t0 < 5000 do
      n = s:wait(10)
    end
    assert.are.equal(2, n)
    assert.truthy(s:next())     -- one handed out, one still queued
    s:close()
    s = nil
    serve_until(function() helpers.sleep(0.01) end, { a, b })
    assert.are.equal(0, a.status)
    assert.are.equal(0, b.status)
  end)

  it("survives a client that gives up while its request is queued", function()
    s = assert(core.server_start{})
    local port = s:port()
    local gone = curl("--max-time 0.3", ("http://127.0.0.1:%d/slow"):format(port))
    local r
    serve_until(function(t)
      s:wait(t)
      r = r or s:next()
    end, { gone })
    assert.are.equal(28, gone.exit)    -- curl: operation timed out
    assert.is_true(s:respond(r.id, 200, nil, "too late"))
    local again = curl("", ("http://127.0.0.1:%d/next"):format(port))
    serve_until(function(t)
      s:wait(t)
      local r2 = s:next()
      if r2 then s:respond(r2.id, 200, nil, "fine") end
    end, { again })
    assert.are.equal("fine", again.body)
  end)
end)

describe("ocean.server", function()
  local srv, logged

  before_each(function()
    logged = {}
    srv = assert(server.new{ max_body = 1000,
      log = function(level, msg) logged[#logged + 1] = level .. ": " .. msg end })
    srv:route("GET", "/v1/blueprints/:bp/entities/*id", function(req)
      return 200, { params = req.params, query = req.query }
    end)
    srv:route("POST", "/echo", function(req)
      return 200, { got = req:json() }
    end)
    srv:route("GET", "/boom", function() error("kaboom") end)
    srv:route("GET", "/teapot", function()
      error(server.http_error(418, { ok = false, error = "teapot" }))
    end)
    srv:route("GET", "/slow", function()
      return { status = 200, body = "slow", delay_ms = 300, headers = {} }
    end)
    srv:route("GET", "/fast", function() return 200, "fast" end)
    srv:route("GET", "/drop", function() return { drop = true } end)
    srv:route("*", "/any", function(req) return 200, req.method end)
  end)
  after_each(function() srv:close() end)

  local function url(path) return srv:url() .. path end
  local function step(t) srv:step(t) end

  it("matches named and rest parameters and parses the query", function()
    local h = curl("-g", url("/v1/blueprints/svc/entities/a%2Fb%20c?x=1&x=2&y=%20z&flag&p=a+b"))
    serve_until(step, { h })
    assert.are.equal(200, h.status)
    assert.are.equal("application/json", h.headers["content-type"])
    assert.are.same({ params = { bp = "svc", id = "a/b c" },
      query = { x = { "1", "2" }, y = " z", flag = "", p = "a b" } }, json.decode(h.body))
  end)

  it("answers invalid JSON with 400", function()
    local h = curl("-X POST --data-binary '{\"a\":'", url("/echo"))
    local ok = curl("-X POST --data-binary '{\"a\":[]}'", url("/echo"))
    serve_until(step, { h, ok })
    assert.are.equal(400, h.status)
    assert.are.same({ ok = false, error = "invalid_json",
      message = "invalid JSON body: invalid JSON at line 1, column 6: value expected (at end of input)" },
      json.decode(h.body))
    assert.are.equal('{"got":{"a":[]}}', ok.body)
  end)

  it("answers 413 to bodies over max_body, announced or chunked, and keeps serving", function()
    local big = string.rep("x", 1001)
    local announced = curl("-X POST --data-binary " .. q(big), url("/echo"))
    local chunked = curl("-X POST -H 'Transfer-Encoding: chunked' --data-binary " .. q(big),
      url("/echo"))
    local fits = curl("-X POST --data-binary " .. q('"' .. string.rep("x", 998) .. '"'), url("/echo"))
    local fits_chunked = curl("-X POST -H 'Transfer-Encoding: chunked' --data-binary '[1,2]'",
      url("/echo"))
    serve_until(step, { announced, chunked, fits, fits_chunked })
    assert.are.equal(413, announced.status)
    assert.are.equal(413, chunked.status)
    assert.are.same({ ok = false, error = "payload_too_large", message = "request body too large" },
      json.decode(chunked.body))
    assert.are.equal(200, fits.status)
    assert.are.equal('{"got":[1,2]}', fits_chunked.body)
  end)

  it("answers 404 to unknown paths and 405 to other methods", function()
    local nf = curl("", url("/nope"))
    local na = curl("-X DELETE", url("/echo"))
    serve_until(step, { nf, na })
    assert.are.equal(404, nf.status)
    assert.are.same({ ok = false, error = "not_found", message = "no route for GET /nope" },
      json.decode(nf.body))
    assert.are.equal(405, na.status)
    assert.are.equal("POST", na.headers.allow)
  end)

  it("turns a handler error into a logged 500 and keeps serving", function()
    local boom = curl("", url("/boom"))
    serve_until(step, { boom })
    local after = curl("", url("/fast"))
    serve_until(step, { after })
    assert.are.equal(500, boom.status)
    assert.are.same({ ok = false, error = "internal_error", message = "internal server error" },
      json.decode(boom.body))
    assert.are.equal(1, #logged)
    assert.truthy(logged[1]:find("^error: GET /boom: handler failed: .*kaboom"))
    assert.are.equal("fast", after.body)
  end)

  it("answers a raised http_error with its status and body", function()
    local h = curl("", url("/teapot"))
    serve_until(step, { h })
    assert.are.equal(418, h.status)
    assert.are.equal('{"error":"teapot","ok":false}', h.body)
  end)

  it("routes any method to a '*' route", function()
    local h = curl("-X PATCH", url("/any"))
    serve_until(step, { h })
    assert.are.equal("PATCH", h.body)
  end)

  -- libmicrohttpd 0.9.75 closes a line that is no request line at all
  -- without an answer; the rest get a 4xx/5xx status line.
  local malformed = {
    { "GARBAGE\r\n\r\n", "" },
    { "GET / HTTP/9.9\r\nHost: x\r\n\r\n", "HTTP/1.1 505 HTTP Version Not Supported" },
    { "GET / HTTP/1.1\r\nBroken header line\r\n\r\n", "HTTP/1.1 400 Bad Request" },
    { "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n", "HTTP/1.1 400 Bad Request" },
  }
  for _, c in ipairs(malformed) do
    it(("answers %q with %q and keeps serving"):format(c[1], c[2]), function()
      local bad = raw(srv:port(), c[1])
      serve_until(step, { bad })
      assert.are.equal(c[2], bad.body:match("^[^\r\n]*"))
      local after = curl("", url("/fast"))
      serve_until(step, { after })
      assert.are.equal("fast", after.body)
    end)
  end

  it("answers a delayed request late without holding the others", function()
    local slow = curl("", url("/slow"))
    local t_start = core.monotonic_ms()
    while srv:pending() == 0 and core.monotonic_ms() - t_start < 5000 do srv:step(10) end
    local fast = curl("", url("/fast"))
    local at = serve_until(step, { slow, fast })
    assert.are.equal("slow", slow.body)
    assert.are.equal("fast", fast.body)
    assert.is_true(at[2] < at[1])
    assert.is_true(at[1] - t_start >= 300)
  end)

  it("drops a connection without an answer", function()
    local h = curl("", url("/drop"))
    serve_until(step, { h })
    assert.are.equal(0, h.status)
    assert.are.equal(52, h.exit)        -- curl: empty reply from server
  end)

  it("serves several requests on one keep-alive connection", function()
    local h = curl(q(url("/fast")), url("/fast"))
    serve_until(step, { h })
    assert.are.equal(0, h.exit)
  end)
end)

describe("ocean.server with spawn", function()
  local srv, started, old_slice

  before_each(function()
    started = {}
    old_slice = server.SLICE_MS
    srv = assert(server.new{ spawn = function(fn) fn() end })
    srv:route("GET", "/work/:n", function(req)
      started[#started + 1] = req.params.n
      return 200, req.params.n
    end)
    srv:route("GET", "/health", function()
      started[#started + 1] = "health"
      return 200, "ok"
    end, { priority = true })
  end)
  after_each(function()
    server.SLICE_MS = old_slice
    srv:close()
  end)

  -- GET /work/1../work/n, one at a time, so the C server queues them in
  -- this order: their handles
  local function queue_work(n)
    local handles = {}
    for i = 1, n do
      handles[i] = curl("", srv:url() .. "/work/" .. i)
      local t0 = core.monotonic_ms()
      while srv.c:wait(10) < i and core.monotonic_ms() - t0 < 5000 do end
    end
    return handles
  end

  it("starts a priority route's requests first and the others over several calls, oldest first",
    function()
    local handles = queue_work(20)
    handles[21] = curl("", srv:url() .. "/health")
    local t0 = core.monotonic_ms()
    while srv.c:wait(10) < 21 and core.monotonic_ms() - t0 < 5000 do end
    assert.are.equal(21, srv.c:wait(0))
    server.SLICE_MS = -1            -- every slice is over: 3 at a time
    local calls = 0
    repeat
      srv:process()
      calls = calls + 1
    until not srv:busy() or calls > 20
    assert.is_false(srv:busy())
    assert.is_true(calls >= 3, "calls: " .. calls)
    local want = { "health" }
    for i = 1, 20 do want[#want + 1] = tostring(i) end
    assert.are.same(want, started)
    serve_until(function(t) srv:step(t) end, handles)
    for i = 1, 20 do assert.are.equal(tostring(i), handles[i].body) end
    assert.are.equal("ok", handles[21].body)
  end)

  it("poll_priority runs the C server, starts the priority requests it completed, leaves the others",
    function()
    local handles = queue_work(3)
    handles[4] = curl("", srv:url() .. "/health")
    -- only poll_priority from here: it reads the probe itself
    local t0 = core.monotonic_ms()
    while #started == 0 and core.monotonic_ms() - t0 < 5000 do srv:poll_priority() end
    assert.are.same({ "health" }, started)
    assert.is_true(srv:busy())            -- the 3 others wait for process()
    t0 = core.monotonic_ms()
    while not handles[4].done() and core.monotonic_ms() - t0 < 5000 do srv:poll_priority() end
    assert.are.equal("ok", handles[4].body)
    assert.are.same({ "health" }, started)
    serve_until(function(t) srv:step(t) end, handles)
    assert.are.same({ "health", "1", "2", "3" }, started)
  end)

  it("refuse_waiting answers the requests not started and those still in the C server", function()
    local handles = queue_work(5)
    server.SLICE_MS = -1                  -- 3 start, 2 wait in the Lua queue
    srv:process()
    assert.are.same({ "1", "2", "3" }, started)
    handles[6] = curl("", srv:url() .. "/work/6")
    local t0 = core.monotonic_ms()
    while srv.c:wait(10) < 1 and core.monotonic_ms() - t0 < 5000 do end
    assert.are.equal(3, srv:refuse_waiting(503, { status = "error", message = "shutting down" }))
    serve_until(function(t) srv:step(t) end, handles)
    assert.are.same({ "1", "2", "3" }, started)
    for i = 4, 6 do
      assert.are.equal(503, handles[i].status)
      assert.are.same({ status = "error", message = "shutting down" }, json.decode(handles[i].body))
      assert.are.equal("5", handles[i].headers["retry-after"])
    end
    assert.are.equal(0, srv:refuse_waiting(503, {}))
  end)

  it("poll_priority does nothing without spawn or once closed", function()
    local plain = assert(server.new{})
    assert.are.equal(0, plain:poll_priority())
    plain:close()
    srv:close()
    assert.are.equal(0, srv:poll_priority())
  end)
end)

describe("ocean.server.parse_query", function()
  local cases = {
    { "", {} },
    { "a=1", { a = "1" } },
    { "a=1&a=2&a=3", { a = { "1", "2", "3" } } },
    { "k%20x=v%26w&e=", { ["k x"] = "v&w", e = "" } },
    { "plus=a+b&&=x", { plus = "a b", [""] = "x" } },
  }
  for _, c in ipairs(cases) do
    it("parses '" .. c[1] .. "'", function()
      assert.are.same(c[2], server.parse_query(c[1]))
    end)
  end
end)
