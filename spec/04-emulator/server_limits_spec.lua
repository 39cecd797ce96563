-- The HTTP server under idle, slow and many connections (http_guard.c):
-- the header and body timeouts, the per-client and total limits, their
-- counters and log lines. The server runs in this process; the
-- connections are held by spec/helpers/slowclients.c, and curl asks for
-- the health route in the background while the spec turns the loop.
local core = require "ocean.core"
local json = require "ocean.json"
local server = require "ocean.server"
local helpers = require "spec.helpers.emulator"
local slow = require "spec.helpers.slowclients"

local q, read_file = helpers.shell_quote, helpers.read_file

local dir
local seq = 0

-- GET url with curl in the background: h.done(), then h.status (0: no
-- answer within 10 s) and h.body.
local function bg_get(url)
  seq = seq + 1
  local base = ("%s/g%d"):format(dir, seq)
  local h = {}
  -- (curl never runs under a sanitizer the suite may run with)
  os.execute(("(env -u LD_PRELOAD curl -s -m 10 -o %s -w '%%{http_code}' %s > %s 2>/dev/null;"
    .. " echo $? > %s) &")
    :format(q(base .. ".body"), q(url), q(base .. ".status"), q(base .. ".exit")))
  function h.done()
    local e = read_file(base .. ".exit")
    if not e or not e:find("\n") then return false end
    h.status = tonumber(read_file(base .. ".status") or "") or 0
    h.body = read_file(base .. ".body") or ""
    return true
  end
  return h
end

local function start(opts)
  local logged = {}
  opts.log = function(level, msg) logged[#logged + 1] = level .. ": " .. msg end
  local srv = assert(server.new(opts))
  srv:get("/integration/health", function() return 200, { ok = true } end)
  return srv, logged
end

-- Serve until pred() is true (at most `seconds`).
local function serve_until(srv, pred, seconds, what)
  local t0 = core.monotonic_ms()
  while not pred() do
    srv:step(10)
    if core.monotonic_ms() - t0 > (seconds or 10) * 1000 then
      error("timed out waiting for " .. (what or "a condition"), 2)
    end
  end
end

-- The connections the log lines of one kind report, summed (the server
-- says what its limits did in batches, at most every 10 s, and at close):
-- every line must be of that kind.
local function reported(logged, pattern)
  local n = 0
  for _, line in ipairs(logged) do
    local k = line:match(pattern)
    assert(k, "unexpected log line: " .. line)
    n = n + tonumber(k)
  end
  return n
end

-- Health over a fresh connection, answered while the server is loaded.
local function health(srv)
  local h = bg_get(srv:url() .. "/integration/health")
  serve_until(srv, h.done, 12, "the health answer")
  return h.status, json.decode(h.body)
end

describe("the HTTP server under load", function()
  local srv, clients

  setup(function()
    dir = helpers.tmpdir()
    slow.binary()
  end)

  after_each(function()
    if clients then clients:stop() end
    clients = nil
    if srv then srv:close() end
    srv = nil
  end)

  teardown(function()
    slow.stop_all()
    os.execute("rm -rf " .. q(dir))
  end)

  it("reports its limits: the defaults, and what it was given", function()
    srv = start {}
    local st = srv:stats()
    assert.are.same({ 4096, 4096, 256, 10, 60, 0, 0, 0, 0, 0, 0 },
      { st.max_connections, st.max_connections_requested, st.max_connections_per_client,
        st.header_timeout, st.body_timeout, st.connections, st.header_timeouts,
        st.body_timeouts, st.refused_per_client, st.evicted, st.clients })
    srv:close()
    srv = start { max_connections = 50, max_connections_per_client = 0, header_timeout = 3,
                  body_timeout = 7 }
    st = srv:stats()
    assert.are.same({ 50, 0, 3, 7 }, { st.max_connections, st.max_connections_per_client,
                                       st.header_timeout, st.body_timeout })
  end)

  it("takes the limits from the emulator's options too", function()
    local emu = assert(require("ocean.emulator").new { port = 0, quiet = true, max_connections = 77,
      max_connections_per_client = 7, header_timeout = 3, body_timeout = 4 })
    local st = emu.srv:stats()
    emu:close()
    assert.are.same({ 77, 7, 3, 4 }, { st.max_connections, st.max_connections_per_client,
                                       st.header_timeout, st.body_timeout })
  end)

  it("rejects limits out of range, naming the option", function()
    for _, case in ipairs {
      { { max_connections = 0 }, "'max_connections' must be an integer in 1..1000000" },
      { { max_connections_per_client = -1 },
        "'max_connections_per_client' must be an integer in 0..1000000" },
      { { header_timeout = 0 }, "'header_timeout' must be an integer in 1..86400" },
      { { body_timeout = 1.5 }, "'body_timeout' must be an integer in 1..86400" },
    } do
      local ok, err = pcall(core.server_start, case[1])
      assert.is_false(ok)
      assert.matches(case[2], err, 1, true)
    end
  end)

  it("closes a slowloris at the header timeout although it keeps sending", function()
    srv = start { header_timeout = 1 }
    clients = slow.start(srv:port(), 20, { mode = "head", interval = 100 })
    local t0 = core.monotonic_ms()
    serve_until(srv, function()
      local st = clients:status()
      return st and st.closed == 20
    end, 10, "the slow heads to be closed")
    local took = core.monotonic_ms() - t0
    local st, cs = srv:stats(), clients:status()
    assert.are.same({ 20, 0, 0 }, { st.header_timeouts, st.connections, st.waiting_head })
    assert.is_true(cs.sent >= 100, "the clients kept sending: " .. cs.sent)
    assert.is_true(took >= 900, "closed too early: " .. took .. " ms")
  end)

  it("closes a slow body at the body timeout", function()
    local logged
    srv, logged = start { body_timeout = 1 }
    clients = slow.start(srv:port(), 5, { mode = "body", interval = 100 })
    serve_until(srv, function()
      local st = clients:status()
      return st and st.closed == 5
    end, 10, "the slow bodies to be closed")
    local st = srv:stats()
    assert.are.same({ 5, 0 }, { st.body_timeouts, st.header_timeouts })
    srv:close()                       -- says the rest
    assert.are.equal(5, reported(logged,
      "^warning: closed (%d+) connection%(s%) whose body did not arrive within 1 s %(body timeout%)$"))
  end)

  it("gives a kept-alive connection the header timeout again after its answer", function()
    srv = start { header_timeout = 1 }
    clients = slow.start(srv:port(), 3, { mode = "keepalive" })
    serve_until(srv, function()
      local st = clients:status()
      return st and st.answered == 3
    end, 10, "the answers")
    assert.are.equal(3, srv:stats().connections)
    serve_until(srv, function() return clients:status().closed == 3 end, 10, "the idle close")
    assert.are.equal(3, srv:stats().header_timeouts)
  end)

  it("refuses connections over the per-client limit, and counts them", function()
    local logged
    srv, logged = start { max_connections_per_client = 5, header_timeout = 60 }
    clients = slow.start(srv:port(), 12, { sources = "127.0.0.20:1" })
    serve_until(srv, function()
      local st = clients:status()
      return st and st.connected == 12 and st.closed == 7
    end, 10, "the refusals")
    local other = slow.start(srv:port(), 5, { sources = "127.0.0.21:1" })
    serve_until(srv, function()
      local st = other:status()
      return st and st.connected == 5
    end, 10, "the other client")
    serve_until(srv, function() return srv:stats().connections == 10 end, 5, "10 connections")
    local st = srv:stats()
    assert.are.same({ 10, 2, 7 }, { st.connections, st.clients, st.refused_per_client })
    assert.are.equal(0, other:status().closed)
    other:stop()
    local status = health(srv)
    assert.are.equal(200, status)
    srv:close()
    assert.are.equal(7, reported(logged,
      "^warning: refused (%d+) connection%(s%) from clients already holding 5 %(per%-client limit%)$"))
  end)

  it("at the total limit, closes the connections that waited longest for a head", function()
    srv = start { max_connections = 20, max_connections_per_client = 0, header_timeout = 60 }
    clients = slow.start(srv:port(), 10, { sources = "127.0.0.30:2" })
    serve_until(srv, function() return srv:stats().connections == 10 end, 10, "10 connections")
    local t0 = core.monotonic_ms()
    serve_until(srv, function() return core.monotonic_ms() - t0 > 1200 end, 5)
    local younger = slow.start(srv:port(), 10, { sources = "127.0.0.32:2" })
    -- the 20th connection fills the server: an older one makes room
    serve_until(srv, function()
      local st = srv:stats()
      return st.connections + st.evicted == 20 and st.evicted >= 1
    end, 10, "the younger connections")
    local status = health(srv)
    assert.are.equal(200, status)
    local st = srv:stats()
    assert.is_true(st.evicted >= 1, "evicted " .. st.evicted)
    assert.is_true(st.connections <= 20)
    -- the evicted were the older clients' connections
    serve_until(srv, function() return clients:status().closed == srv:stats().evicted end, 5,
      "the older clients to see the evictions")
    assert.are.equal(0, younger:status().closed)
    younger:stop()
  end)

  it("at the total limit, closes the slow bodies once no head waits, oldest first", function()
    srv = start { max_connections = 10, max_connections_per_client = 0, header_timeout = 10,
                  body_timeout = 60 }
    -- ten heads complete, bodies trickling: the server is full, and no
    -- connection waits for a head (which would be evicted first)
    clients = slow.start(srv:port(), 10, { sources = "127.0.0.50:10", mode = "body",
                                           interval = 100 })
    serve_until(srv, function() return srv:stats().connections == 10 end, 10, "10 connections")
    -- older than 1 s (well before the header timeout, 10 s): a slow body
    -- may now be evicted, so that a probe waits about a second at most
    local t0 = core.monotonic_ms()
    serve_until(srv, function() return core.monotonic_ms() - t0 > 1500 end, 5)
    local status = health(srv)
    assert.are.equal(200, status)
    local st = srv:stats()
    assert.is_true(st.evicted >= 1, "evicted " .. st.evicted)
    assert.are.same({ 0, 0 }, { st.body_timeouts, st.header_timeouts })
  end)

  it("never evicts a connection whose request is being handled", function()
    srv = start { max_connections = 4, max_connections_per_client = 0, header_timeout = 60 }
    -- answered 3 s later: meanwhile the server is full of idle connections
    srv:get("/slow", function() return { status = 200, body = "done", delay_ms = 3000 } end)
    local busy = bg_get(srv:url() .. "/slow")
    serve_until(srv, function() return srv:pending() == 1 end, 10, "the slow request")
    clients = slow.start(srv:port(), 8, { sources = "127.0.0.40:8" })
    serve_until(srv, function() return srv:stats().evicted >= 3 end, 10, "evictions")
    serve_until(srv, busy.done, 10, "the slow request's answer")
    assert.are.same({ 200, "done" }, { busy.status, busy.body })
  end)
end)
