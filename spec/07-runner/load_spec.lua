-- `ocean sail` keeps answering its health route and webhooks while 2 000
-- idle or slow (slowloris) connections are open, closes the slow ones at
-- the header timeout, and refuses one client's connections over the
-- per-client limit (OCEAN__HTTP__* settings). The connections come from
-- spec/helpers/slowclients.c, spread over loopback source addresses
-- (127.0.0.0/8) so that they are distinct clients.
local json = require "ocean.json"
local ehelp = require "spec.helpers.emulator"
local sail = require "spec.helpers.sail"
local slow = require "spec.helpers.slowclients"

local ITEMS = ehelp.root() .. "/spec/fixtures/items"
local JSON_CT = { ["Content-Type"] = "application/json" }

describe("ocean sail under load", function()
  local emu, dir, clients

  local function start_sail(id, env)
    local port = sail.free_port()
    local all = {
      OCEAN__PORT__BASE_URL = emu.url,
      OCEAN__PORT__CLIENT_ID = emu.client_id,
      OCEAN__PORT__CLIENT_SECRET = emu.client_secret,
      OCEAN__INTEGRATION__IDENTIFIER = id,
      OCEAN__INTEGRATION__CONFIG__ITEMS_FILE = dir .. "/items.json",
      OCEAN__EVENT_LISTENER__TYPE = "WEBHOOKS_ONLY",
    }
    for k, v in pairs(env) do all[k] = v end
    local p = sail.start({ "sail", ITEMS, "--port", tostring(port), "--host", "127.0.0.1" },
      all, { port = port })
    p:wait_ready()
    p.port = port
    return p
  end

  -- GET /integration/health, answered within 3 s: its body.
  local function health(p)
    local status, text = p:http("GET", "/integration/health", { timeout = 3 })
    assert.are.equal(200, status)
    return json.decode(text)
  end

  local function webhook(p, id)
    local status, text = p:http("POST", "/integration/items",
      { body = { id = id, name = "Item " .. id, size = 1 }, headers = JSON_CT, timeout = 5 })
    return status, json.decode(text)
  end

  setup(function()
    slow.binary()
    emu = ehelp.start { quiet = true }
    dir = ehelp.tmpdir()
    local f = assert(io.open(dir .. "/items.json", "w"))
    f:write("[]")
    f:close()
  end)

  after_each(function()
    if clients then clients:stop() end
    clients = nil
    sail.stop_all()
  end)

  teardown(function()
    slow.stop_all()
    ehelp.stop_all()
    os.execute("rm -rf " .. ehelp.shell_quote(dir))
  end)

  it("answers health and webhooks with 2000 idle connections open", function()
    local p = start_sail("load-idle", { OCEAN__HTTP__HEADER_TIMEOUT = "300" })
    clients = slow.start(p.port, 2000, { sources = "127.0.0.10:20" })
    clients:wait(function(st) return st.connected == 2000 end, 20)
    sail.eventually(function() return health(p).http.connections >= 2000 end, 20,
      "2000 connections on the server")
    for _ = 1, 5 do
      local h = health(p)
      assert.is_true(h.http.connections > 2000)
      assert.are.same({ true, 4096, 256, 0 }, { h.ok, h.http.max_connections,
        h.http.max_connections_per_client, h.http.evicted })
    end
    local status, body = webhook(p, "idle-1")
    assert.are.same({ 200, { ok = true, created = 1, updated = 0 } }, { status, body })
    assert.are.equal(1, #emu.entities("specItem"))
    -- none of them was dropped to make that possible
    assert.are.same({ 2000, 0 }, { clients:status().open, clients:status().closed })
  end)

  it("answers while 2000 slowloris connections trickle their heads, then closes them all at the header timeout",
    function()
    local p = start_sail("load-slow", { OCEAN__HTTP__HEADER_TIMEOUT = "6" })
    clients = slow.start(p.port, 2000, { sources = "127.0.0.50:20", mode = "head", interval = 500 })
    clients:wait(function(st) return st.connected == 2000 and st.sent >= 2000 end, 20)
    local h = health(p)
    assert.is_true(h.http.connections > 2000, "connections: " .. h.http.connections)
    local status, body = webhook(p, "slow-1")
    assert.are.same({ 200, { ok = true, created = 1, updated = 0 } }, { status, body })
    -- every one is closed although each keeps sending a byte every 500 ms
    local st = clients:wait(function(s) return s.closed == 2000 end, 30)
    assert.is_true(st.sent >= 4000, "bytes sent: " .. st.sent)
    h = health(p)
    assert.are.same({ 2000, 0, 1 }, { h.http.header_timeouts, h.http.evicted, h.http.connections })
    local _, _, err = p:stop()
    assert.matches("closed %d+ connection%(s%) that sent no whole request head within 6 s %(header timeout%)",
      err)
  end)

  it("refuses one client's connections over OCEAN__HTTP__MAX_CONNECTIONS_PER_CLIENT", function()
    local p = start_sail("load-client", { OCEAN__HTTP__MAX_CONNECTIONS_PER_CLIENT = "100",
                                          OCEAN__HTTP__HEADER_TIMEOUT = "300" })
    clients = slow.start(p.port, 600, { sources = "127.0.0.90:1" })
    clients:wait(function(st) return st.connected == 600 and st.closed == 500 end, 20)
    local h = health(p)
    assert.are.same({ 100, 500 }, { h.http.max_connections_per_client, h.http.refused_per_client })
    assert.are.equal(101, h.http.connections)
    local status = webhook(p, "client-1")
    assert.are.equal(200, status)
    local _, _, err = p:stop()
    -- said in batches (at most every 10 s, and at the stop): 500 in all
    local said = 0
    for n in err:gmatch("refused (%d+) connection%(s%) from clients already holding 100 %(per%-client limit%)") do
      said = said + tonumber(n)
    end
    assert.are.equal(500, said)
  end)

  it("stops at once on an invalid limit, naming the setting", function()
    local r = sail.run({ "sail", ITEMS, "--port", "0" }, {
      OCEAN__PORT__BASE_URL = emu.url, OCEAN__PORT__CLIENT_ID = emu.client_id,
      OCEAN__PORT__CLIENT_SECRET = emu.client_secret,
      OCEAN__INTEGRATION__CONFIG__ITEMS_FILE = dir .. "/items.json",
      OCEAN__HTTP__HEADER_TIMEOUT = "0" })
    assert.are.equal(1, r.rc)
    assert.matches('invalid OCEAN__HTTP__HEADER_TIMEOUT: "0" is not a whole number between 1 and 1000000',
      r.err, 1, true)
  end)
end)
