-- Ocean's `ocean sail` flags (issue 13, deliverable 3): -O/--once,
-- -l/--log-level, -p/--port, -i/--initialize-port-resources and PATH
-- defaulting to ., each through a real `ocean sail` against the emulator.
local ehelp = require "spec.helpers.emulator"
local json = require "ocean.json"
local sail = require "spec.helpers.sail"

local ITEMS = ehelp.root() .. "/spec/fixtures/items"

teardown(function()
  sail.stop_all()
  ehelp.stop_all()
end)

describe("ocean sail flags", function()
  local emu, items_file, n = nil, nil, 0
  setup(function()
    emu = ehelp.start { quiet = true }
    items_file = ehelp.tmpdir() .. "/items.json"
    ehelp.write_file(items_file, json.encode { { id = "a", name = "A", size = 1 },
                                               { id = "b", name = "B", size = 2 } })
  end)
  teardown(function() emu.stop() end)

  -- A fresh integration identifier per case, so that each bootstraps.
  local function env(extra)
    n = n + 1
    local e = {
      OCEAN__PORT__BASE_URL = emu.url,
      OCEAN__PORT__CLIENT_ID = emu.client_id,
      OCEAN__PORT__CLIENT_SECRET = emu.client_secret,
      OCEAN__INTEGRATION__CONFIG__ITEMS_FILE = items_file,
      OCEAN__INTEGRATION__IDENTIFIER = "flags-" .. n,
    }
    for k, v in pairs(extra or {}) do e[k] = v end
    return e
  end

  local function get(path)
    local status, text = ehelp.http("GET", emu.url .. "/v1" .. path,
      { headers = { Authorization = "Bearer " .. emu.token() } })
    return status, text ~= "" and json.decode(text) or nil
  end

  local function blueprint_requests()
    local out = {}
    for _, r in ipairs(emu.requests()) do
      -- blueprint writes, not entity writes
      if (r.path == "/v1/blueprints" or r.path:match("^/v1/blueprints/[^/]+$")) and r.method ~= "GET" then
        out[#out + 1] = r.method .. " " .. r.path
      end
    end
    return out
  end

  before_each(function()
    emu.reset()
    emu.clear_requests()
  end)

  it("-O runs one resync and exits 0, the entities in Port", function()
    local r = sail.run({ "sail", ITEMS, "-O" }, env())
    assert.are.equal(0, r.rc, r.err)
    assert.matches("resync completed: created 2, updated 0", r.out, 1, true)
    local ids = {}
    for _, e in ipairs(emu.entities("specItem")) do ids[#ids + 1] = e.identifier end
    table.sort(ids)
    assert.are.same({ "a", "b" }, ids)
  end)

  it("takes PATH as the current directory when none is given", function()
    local r = sail.run({ "sail", "--once" }, env(), { cwd = ITEMS })
    assert.are.equal(0, r.rc, r.err)
    assert.are.equal(2, #emu.entities("specItem"))
  end)

  it("-l sets the log level: DEBUG lines with -l DEBUG, no INFO with -l WARNING", function()
    local r = sail.run({ "sail", ITEMS, "-O", "-l", "DEBUG" }, env())
    assert.are.equal(0, r.rc, r.err)
    assert.matches("Z DEBUG   Port GET /v1/integration/flags%-%d+ %-> 404", r.err)
    r = sail.run({ "sail", ITEMS, "-O", "--log-level=WARNING" }, env())
    assert.are.equal(0, r.rc, r.err)
    assert.is_nil(r.err:find("Z INFO ", 1, true), r.err)
    assert.is_nil(r.err:find("Z DEBUG ", 1, true), r.err)
  end)

  it("-p sets the HTTP port the routes answer on", function()
    local port = sail.free_port()
    local p = sail.start({ "sail", ITEMS, "-p", tostring(port), "--host", "127.0.0.1" },
      env { OCEAN__EVENT_LISTENER__TYPE = "WEBHOOKS_ONLY" }, { port = port })
    p:wait_ready()
    local status, text = p:http("GET", "/integration/items/x/echo")
    assert.are.equal(200, status)
    assert.are.equal("x", json.decode(text).id)
    local rc, _, err = p:stop()
    assert.are.equal(0, rc)
    assert.matches("listening on http://127.0.0.1:" .. port, err, 1, true)
  end)

  it("-i false creates no blueprint; the default mapping's integration is still created", function()
    local e = env()
    local r = sail.run({ "sail", ITEMS, "-O", "-i", "false" }, e)
    -- the resync fails on the missing blueprint (Port rejects the entities)
    assert.are_not.equal(0, r.rc)
    assert.are.same({}, blueprint_requests())
    assert.are.equal(404, (get("/blueprints/specItem")))
    local status, body = get("/integration/" .. e.OCEAN__INTEGRATION__IDENTIFIER)
    assert.are.equal(200, status)
    assert.are.equal("item", body.integration.config.resources[1].kind)
    assert.matches("resources initialization disabled", r.err, 1, true)
  end)

  it("-i true creates the blueprints even when OCEAN__INITIALIZE_PORT_RESOURCES=false", function()
    local r = sail.run({ "sail", ITEMS, "-O", "--initialize-port-resources", "yes" },
      env { OCEAN__INITIALIZE_PORT_RESOURCES = "false" })
    assert.are.equal(0, r.rc, r.err)
    assert.are.same({ "POST /v1/blueprints" }, blueprint_requests())
    assert.are.equal(200, (get("/blueprints/specItem")))
    assert.are.equal(2, #emu.entities("specItem"))
  end)

  it("without -i, OCEAN__INITIALIZE_PORT_RESOURCES=false decides", function()
    local r = sail.run({ "sail", ITEMS, "-O" }, env { OCEAN__INITIALIZE_PORT_RESOURCES = "false" })
    assert.are_not.equal(0, r.rc)
    assert.are.same({}, blueprint_requests())
  end)

  local bad = {
    { { "-p", "http" }, "-p: not a port number: http" },
    { { "-p" }, "-p needs a value" },
    { { "--port=99999" }, "--port: not a port number: 99999" },
    { { "-i", "maybe" }, "-i: not a boolean: maybe (true or false)" },
    { { "-i" }, "-i needs a value" },
    { { "-l", "LOUD" }, "-l: 'LOUD' is not a log level" },
    { { "--once=yes" }, "--once takes no value" },
    { { "-X" }, "unknown option -X" },
  }
  for _, c in ipairs(bad) do
    it("exits 2 on " .. table.concat(c[1], " ") .. ", naming the flag", function()
      local args = { "sail", ITEMS }
      for _, a in ipairs(c[1]) do args[#args + 1] = a end
      local r = sail.run(args, env())
      assert.are.equal(2, r.rc)
      assert.are.equal("", r.out)
      local first = r.err:match("^[^\n]*")
      assert.are.equal("ocean sail: " .. c[2], first:sub(1, #("ocean sail: " .. c[2])))
    end)
  end

  it("lists Ocean's flags in --help", function()
    local r = sail.run({ "sail", "--help" })
    assert.are.equal(0, r.rc)
    for _, f in ipairs { "-O, --once", "-p, --port N", "-l, --log-level LEVEL",
                         "-i, --initialize-port-resources BOOL", "--host ADDR", "--plan" } do
      assert.truthy(r.out:find(f, 1, true), f)
    end
  end)
end)
