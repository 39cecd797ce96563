-- A running `ocean sail` (listener WEBHOOKS_ONLY): the integration's routes
-- under /integration, POST /integration/resync, and a graceful SIGTERM.
local json = require "ocean.json"
local ehelp = require "spec.helpers.emulator"
local nh = require "spec.helpers.nginx"
local sail = require "spec.helpers.sail"

local ITEMS = ehelp.root() .. "/spec/fixtures/items"
local ID = "spec-items"
local DS = "port-ocean/items/0.3.0/" .. ID .. "/exporter"
local JSON_CT = { ["Content-Type"] = "application/json" }

local function write(path, value)
  local f = assert(io.open(path, "w"))
  f:write((assert(json.encode(value))))
  f:close()
end

local function by_id(list)
  local out = {}
  for _, e in ipairs(list) do out[e.identifier] = e end
  return out
end

describe("ocean sail (WEBHOOKS_ONLY)", function()
  local emu, p, dir

  local function call(method, path, body, headers)
    local status, text, h = p:http(method, path, { body = body, headers = headers or JSON_CT })
    local v = json.decode(text)
    if v == nil then v = text end
    return status, v, h
  end

  local function health()
    local status, body = call("GET", "/integration/health")
    assert.are.equal(200, status)
    return body
  end

  setup(function()
    emu = ehelp.start { quiet = true }
    dir = ehelp.tmpdir()
    write(dir .. "/items.json", { { id = "a", name = "A", size = 1 }, { id = "b", name = "B", size = 2 },
                                  { id = "c", name = "C", enabled = false } })
    local port = sail.free_port()
    p = sail.start({ "sail", ITEMS, "--port", tostring(port), "--host", "127.0.0.1" }, {
      OCEAN__PORT__BASE_URL = emu.url,
      OCEAN__PORT__CLIENT_ID = emu.client_id,
      OCEAN__PORT__CLIENT_SECRET = emu.client_secret,
      OCEAN__INTEGRATION__IDENTIFIER = ID,
      OCEAN__INTEGRATION__CONFIG__ITEMS_FILE = dir .. "/items.json",
      OCEAN__EVENT_LISTENER__TYPE = "WEBHOOKS_ONLY",
    }, { port = port })
    p:wait_ready()
  end)

  teardown(function()
    sail.stop_all()
    ehelp.stop_all()
    os.execute("rm -rf " .. ehelp.shell_quote(dir))
  end)

  it("serves its health after the bootstrap, and does not resync by itself", function()
    local h = health()
    -- the server's limits and counters (spec/07-runner/load_spec.lua)
    assert.are.same({ 4096, 1 }, { h.http.max_connections, h.http.connections })
    h.http = nil
    assert.are.same({ ok = true, listener = "WEBHOOKS_ONLY", running = false, resyncs = 0,
                      last_resync = json.null }, h)
    local status, body = emu.api("GET", "/v1/integration/" .. ID)
    assert.are.equal(200, status)
    assert.are.equal("specItem", body.integration.config.resources[1].port.entity.mappings.blueprint
      :match('"(.*)"'))
    assert.are.equal(200, (emu.api("GET", "/v1/blueprints/specItem")))
    assert.are.same({}, emu.entities())
  end)

  it("lands a webhook's entity in Port, and deletes it on request", function()
    local status, body = call("POST", "/integration/items", { id = "w1", name = "Webhook one", size = 3 })
    assert.are.same({ 200, { ok = true, created = 1, updated = 0 } }, { status, body })
    local e = by_id(emu.entities("specItem")).w1
    assert.are.same({ "Webhook one", 3, DS }, { e.title, e.properties.size, e.datasource })
    status, body = call("POST", "/integration/items", { id = "w1", name = "Webhook one", size = 4 })
    assert.are.same({ 200, { ok = true, created = 0, updated = 1 } }, { status, body })
    assert.are.equal(4, by_id(emu.entities("specItem")).w1.properties.size)
    status, body = call("DELETE", "/integration/items/w1")
    assert.are.same({ 200, { ok = true, deleted = 1 } }, { status, body })
    assert.is_nil(by_id(emu.entities("specItem")).w1)
  end)

  -- OCEAN__HTTP__MAX_BODY_BYTES: 25 MiB by default (GitHub's largest
  -- webhook; a 413 is not retried by such senders). ocean.server's own
  -- default, 1 MiB, refused these.
  it("takes a 3 MiB webhook body by default", function()
    local body = json.encode { id = "big", name = "Big", size = 1, pad = ("x"):rep(3 * 1024 * 1024) }
    local status, answer = call("POST", "/integration/items", body)
    assert.are.same({ 200, { ok = true, created = 1, updated = 0 } }, { status, answer })
    assert.are.equal("Big", by_id(emu.entities("specItem")).big.title)
    assert.are.equal(200, (call("DELETE", "/integration/items/big")))
  end)

  it("answers 400 to a body that is not JSON, before the handler runs", function()
    emu.clear_requests()
    local status, body = call("POST", "/integration/items", '{"id": "w2", ')
    assert.are.equal(400, status)
    assert.are.same({ false, "invalid_json" }, { body.ok, body.error })
    assert.matches("^the request body is not valid JSON: ", body.message)
    assert.are.same({}, emu.requests())
  end)

  it("answers 500 when a handler fails, and keeps serving", function()
    local status, body = call("POST", "/integration/boom", { x = 1 })
    assert.are.same({ 500, { ok = false, error = "internal_error", message = "the route handler failed" } },
      { status, body })
    status, body = call("GET", "/integration/items/x%20y/echo?a=1&b=two", nil,
      { ["X-Spec"] = "yes" })
    assert.are.same({ 200, { id = "x y", query = { a = "1", b = "two" }, header = "yes" } },
      { status, body })
    assert.are.equal(200, (call("GET", "/integration/health")))
  end)

  it("answers HEAD /integration/health as GET, without a body (a probe may use HEAD)", function()
    local status, h, rest = ehelp.raw_http(p.url, "HEAD", "/integration/health")
    assert.are.same({ 200, "application/json", "" }, { status, h["content-type"], rest })
    status, h = ehelp.raw_http(p.url, "HEAD", "/integration/resync")
    assert.are.same({ 405, "POST" }, { status, h.allow })
  end)

  it("answers pipelined requests on one connection in order, each at once", function()
    -- five requests in one write: the four after the first are parsed from
    -- what the first read buffered. They were each answered only at the
    -- listener's next 1 s wake (and its loop spun meanwhile).
    local paths = {}
    for i = 1, 5 do paths[i] = "/integration/items/p" .. i .. "/echo" end
    local t0 = nh.now()
    local status, _, _, raw = ehelp.raw_http(p.url, "GET", paths)
    local took = nh.now() - t0
    assert.are.equal(200, status)
    local ids = {}
    for id in raw:gmatch('"id":"(p%d)"') do ids[#ids + 1] = id end
    assert.are.same({ "p1", "p2", "p3", "p4", "p5" }, ids)
    assert.is_true(took < 2.5, ("five pipelined answers took %.2f s"):format(took))
  end)

  it("refuses a head whose body length reads two ways (400, connection closed: no smuggling)", function()
    local smuggled = "GET /integration/health HTTP/1.1\r\nHost: x\r\n\r\n"
    local function send(framing)
      return ehelp.raw_send(p.url, "POST /integration/boom HTTP/1.1\r\nHost: x\r\n" .. framing
        .. "Content-Type: application/json\r\n\r\n0\r\n\r\n" .. smuggled)
    end
    -- lengths read two ways: the body is read, then one 400 and a close.
    -- Closing on bytes the client sent after can still reset the
    -- connection under the answer (more often on a loaded machine): at
    -- most ten tries to read it; never is a second answer served
    for _, framing in ipairs {
      "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
      "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
      "Content-Length: 5\r\nContent-Length: 50\r\n",
    } do
      local raw
      for _ = 1, 10 do
        raw = send(framing)
        if raw ~= "" then break end
      end
      assert.truthy(raw:match("^HTTP/1%.1 400 "), raw)
      assert.truthy(raw:find('"error":"bad_request"', 1, true), raw)
      local _, answers = raw:gsub("HTTP/1%.1 %d%d%d ", "")
      assert.are.equal(1, answers, raw)
    end
    -- lengths we do not read at all (a blank in the name, a coding other
    -- than chunked): 400 at once, and the close often resets it; never a
    -- second answer (before, the smuggled request was served, or nothing
    -- came back until the idle timeout)
    for _, framing in ipairs {
      "Content-Length : 4\r\n",
      "Content-Length\t: 4\r\n",
      "Transfer-Encoding: gzip\r\nContent-Length: 4\r\n",
      "Transfer-Encoding: identity, chunked\r\n",
      "Transfer-Encoding: chunked, gzip\r\n",
    } do
      local t0 = nh.now()
      local raw = send(framing)
      assert.is_true(nh.now() - t0 < 5, "no answer nor close: " .. framing)
      assert.truthy(raw == "" or raw:match("^HTTP/1%.1 400 "), raw)
      local _, answers = raw:gsub("HTTP/1%.1 %d%d%d ", "")
      assert.is_true(answers <= 1, raw)
    end
    -- the same length twice is one length
    local raw = ehelp.raw_send(p.url, "POST /integration/items/a/echo HTTP/1.1\r\nHost: x\r\n"
      .. "Content-Length: 2\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
    assert.falsy(raw:match("^HTTP/1%.1 400 "), raw)
  end)

  it("answers 404 to an unknown route and 405 to a wrong method", function()
    local status, body = call("GET", "/integration/nope")
    assert.are.same({ 404, "not_found" }, { status, body.error })
    local h
    status, body, h = call("GET", "/integration/items")
    assert.are.same({ 405, "method_not_allowed", "POST" }, { status, body.error, h.allow })
  end)

  it("runs a resync on POST /integration/resync", function()
    local status, body = call("POST", "/integration/resync")
    assert.are.same({ 202, { ok = true, aborted_running = false } }, { status, body })
    local h = sail.eventually(function()
      local x = health()
      return x.resyncs == 1 and x
    end, 10, "the resync")
    assert.are.same({ status = "completed", created = 2, updated = 0, unchanged = 0, deleted = 0,
                      failed = 0 }, h.last_resync)
    local ents = by_id(emu.entities("specItem"))
    assert.are.same({ "A", 1, "B", 2 }, { ents.a.title, ents.a.properties.size,
                                          ents.b.title, ents.b.properties.size })
    assert.is_nil(ents.c)
  end)

  -- the health answer's word for a resync whose entities Port rejected is
  -- the one --once prints (and exits 3 for), never "completed"
  it("says 'completed with failures' in last_resync when Port rejected entities, as --once does", function()
    write(dir .. "/items.json", { { id = "a", name = "A", size = 1 }, { id = "b", name = "B", size = 2 },
                                  { id = "bad", name = "Bad", size = "big" } })
    assert.are.equal(202, (call("POST", "/integration/resync")))
    local h = sail.eventually(function()
      local x = health()
      return x.resyncs == 2 and not x.running and x
    end, 10, "the resync")
    assert.are.same({ status = "completed with failures", created = 0, updated = 0, unchanged = 2,
                      deleted = 0, failed = 1 }, h.last_resync)
    local r = sail.run({ "sail", ITEMS, "--once" }, {
      OCEAN__PORT__BASE_URL = emu.url, OCEAN__PORT__CLIENT_ID = emu.client_id,
      OCEAN__PORT__CLIENT_SECRET = emu.client_secret, OCEAN__INTEGRATION__IDENTIFIER = ID,
      OCEAN__INTEGRATION__CONFIG__ITEMS_FILE = dir .. "/items.json" })
    assert.are.equal(3, r.rc, r.err)
    assert.are.equal("resync completed with failures: created 0, updated 0, unchanged 2, deleted 0, "
      .. "failed 1\n", r.out:match("^[^\n]*\n"))
    assert.is_nil(by_id(emu.entities("specItem")).bad)
  end)

  it("serves webhooks during a resync, and aborts it for a new one on POST /integration/resync", function()
    write(dir .. "/items.json", { { id = "a", name = "A2", size = 1 } })
    -- the first resync hangs on the owned-entity listing
    emu.faults { { path = "datasource%-entities", delay_ms = 4000, count = 1 } }
    assert.are.equal(202, (call("POST", "/integration/resync")))
    sail.eventually(function() return health().running end, 10, "the resync to start")
    -- webhooks are served while it runs
    local status, body = call("POST", "/integration/items", { id = "during", name = "D" })
    assert.are.same({ 200, { ok = true, created = 1, updated = 0 } }, { status, body })
    assert.is_table(by_id(emu.entities("specItem")).during)
    assert.is_true(health().running)
    status, body = call("POST", "/integration/resync")
    assert.are.same({ 202, { ok = true, aborted_running = true } }, { status, body })
    local h = sail.eventually(function()
      local x = health()
      return x.resyncs == 4 and not x.running and x
    end, 10, "the second resync")
    emu.faults()
    assert.are.same({ status = "completed", created = 0, updated = 1, unchanged = 0, deleted = 2,
                      failed = 0 }, h.last_resync)
    local ents = by_id(emu.entities("specItem"))
    assert.are.same({ "A2" }, { ents.a.title })
    assert.is_nil(ents.b)
    assert.is_nil(ents.during)
    local _, err = p:output()
    assert.truthy(err:find("resync requested over HTTP (aborting the running one)", 1, true))
  end)

  it("stops gracefully on SIGTERM (exit 0), reporting a running resync aborted", function()
    emu.faults { { path = "datasource%-entities", delay_ms = 10000 } }
    assert.are.equal(202, (call("POST", "/integration/resync")))
    sail.eventually(function() return health().running end, 10, "the resync to start")
    local t0 = os.time()
    local rc, _, err = p:stop("TERM")
    emu.faults()
    assert.are.equal(0, rc)
    assert.is_true(os.time() - t0 <= 3)
    local _, body = emu.api("GET", "/v1/integration/" .. ID)
    assert.are.equal("aborted", body.integration.resyncState.status)
    assert.truthy(err:find("SIGTERM received: stopping (aborting the running resync)", 1, true))
    assert.truthy(err:find("aborted: nothing was deleted", 1, true))
    assert.truthy(err:find("the handler broke on purpose", 1, true))    -- the 500 above, logged
    assert.are.equal(1, #emu.entities("specItem"))
  end)
end)

describe("ocean sail --once", function()
  local emu, dir
  setup(function()
    emu = ehelp.start { quiet = true }
    dir = ehelp.tmpdir()
    write(dir .. "/items.json", { { id = "a", name = "A" } })
  end)
  teardown(function()
    sail.stop_all()
    ehelp.stop_all()
    os.execute("rm -rf " .. ehelp.shell_quote(dir))
  end)

  it("aborts its resync on SIGTERM, reports it aborted, and exits 1", function()
    emu.faults { { path = "datasource%-entities", delay_ms = 10000 } }
    local p = sail.start({ "sail", ITEMS, "--once" }, {
      OCEAN__PORT__BASE_URL = emu.url,
      OCEAN__PORT__CLIENT_ID = emu.client_id,
      OCEAN__PORT__CLIENT_SECRET = emu.client_secret,
      OCEAN__INTEGRATION__IDENTIFIER = "spec-once",
      OCEAN__INTEGRATION__CONFIG__ITEMS_FILE = dir .. "/items.json",
    })
    local function state()
      local status, body = emu.api("GET", "/v1/integration/spec-once")
      return status == 200 and type(body.integration.resyncState) == "table"
        and body.integration.resyncState.status
    end
    sail.eventually(function() return state() == "running" end, 10, "the resync to start")
    local rc, out, err = p:stop("TERM")
    emu.faults()
    assert.are.equal(1, rc)
    assert.are.equal("resync aborted: created 0, updated 0, unchanged 0, deleted 0, failed 0\n",
      out:match("^[^\n]*\n"))
    assert.are.equal("aborted", state())
    assert.truthy(err:find("SIGTERM received: stopping (aborting the running resync)", 1, true))
    assert.are.same({}, emu.entities())
  end)
end)
