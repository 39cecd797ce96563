-- Ocean's JSON form of nested settings (pydantic's BaseSettings): a nested
-- model given as one variable holding a JSON object (OCEAN__EVENT_LISTENER,
-- OCEAN__PORT, OCEAN__SSL, OCEAN__INTEGRATION, OCEAN__INTEGRATION__CONFIG),
-- the __ form of a field winning over it; and unknown OCEAN__* names
-- warned about with the closest known name.
local config = require "ocean.config"
local json = require "ocean.json"
local ehelp = require "spec.helpers.emulator"
local sail = require "spec.helpers.sail"

local ITEMS = ehelp.root() .. "/spec/fixtures/items"

local function write(path, text)
  os.execute(("mkdir -p %q"):format(path:match("^(.*)/")))
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

describe("settings given as Ocean's nested JSON", function()
  local dir
  setup(function()
    dir = ehelp.tmpdir()
    write(dir .. "/.port/spec.yaml", [[
type: jsonish
configurations:
  - name: apiUrl
    type: url
  - name: tokenMapping
    type: object
  - name: apiToken
    sensitive: true
  - name: pageSize
    type: integer
]])
  end)
  teardown(function()
    os.execute("rm -rf " .. ehelp.shell_quote(dir))
    sail.stop_all()
    ehelp.stop_all()
  end)

  local function load(env)
    return config.load { path = dir, env = env, overrides = { log_level = "ERROR" } }
  end

  it("reads every nested model from one JSON variable, keys decamelized", function()
    local s = assert(load {
      OCEAN__EVENT_LISTENER = '{"type": "ONCE", "resync_on_start": false}',
      OCEAN__PORT = '{"client_id": "cid", "clientSecret": "csecret", "base_url": "http://p.example/"}',
      OCEAN__SSL = '{"third_party": {"verify": false}}',
      OCEAN__METRICS = '{"enabled": true}',
      OCEAN__INTEGRATION = '{"identifier": "from-json", "config": {"pageSize": 7}}',
    })
    assert.are.same({ "ONCE", false }, { s.event_listener.type, s.event_listener.resync_on_start })
    assert.are.same({ "cid", "csecret", "http://p.example" },
      { s.port.client_id, s.port.client_secret, s.port.base_url })
    assert.is_false(s.third_party_verify_tls)
    assert.is_true(s.port.verify_tls)            -- OCEAN__SSL's port part is absent: the default
    assert.is_true(s.metrics.enabled)
    assert.are.equal("from-json", s.integration.identifier)
    assert.are.equal(7, s.integration.config.page_size)
    assert.are.same({}, s.warnings)
    -- the sensitive value from the JSON is masked like any other
    local masked = false
    for _, v in ipairs(s.secrets) do masked = masked or v == "csecret" end
    assert.is_true(masked)
  end)

  it("lets the field's own __ variable win, then the nearest JSON parent", function()
    local s = assert(load {
      OCEAN__EVENT_LISTENER = '{"type": "ONCE", "interval": 9}',
      OCEAN__EVENT_LISTENER__TYPE = "WEBHOOKS_ONLY",
      OCEAN__SSL = '{"port": {"verify": true}, "third_party": {"verify": true}}',
      OCEAN__SSL__THIRD_PARTY = '{"verify": false}',
      OCEAN__INTEGRATION = '{"config": {"apiUrl": "http://a.example/", "pageSize": 1}}',
      OCEAN__INTEGRATION__CONFIG = '{"apiUrl": "http://b.example/", "tokenMapping": {"glpat-AbC": ["g/*"]}}',
      OCEAN__INTEGRATION__CONFIG__PAGE_SIZE = "3",
    })
    assert.are.same({ "WEBHOOKS_ONLY", 9 }, { s.event_listener.type, s.event_listener.interval })
    assert.is_false(s.third_party_verify_tls)
    assert.is_true(s.port.verify_tls)
    assert.are.equal("http://b.example", s.integration.config.api_url)
    assert.are.equal(3, s.integration.config.page_size)
    -- an object setting's inner keys stay verbatim (a token is a key)
    assert.are.same({ ["glpat-AbC"] = { "g/*" } }, s.integration.config.token_mapping)
  end)

  it("refuses a JSON variable that is not an object, naming it", function()
    for _, bad in ipairs { "[1, 2]", "ONCE", '"x"' } do
      local s, err = load { OCEAN__EVENT_LISTENER = bad }
      assert.is_nil(s)
      assert.matches("^invalid OCEAN__EVENT_LISTENER: expected a JSON object", err)
    end
  end)

  it("warns about an unknown OCEAN__* name with the closest known one", function()
    local s = assert(load {
      OCEAN__METRICS__ENABLE = "true",
      OCEAN__EVENT_LISTENR__TYPE = "ONCE",
      OCEAN__SOMETHING_ELSE_ENTIRELY = "1",
      OCEAN__PORT__CLIENT_ID = "known",
    })
    table.sort(s.warnings)
    assert.are.same({
      "unknown setting OCEAN__EVENT_LISTENR__TYPE: lua-ocean reads no such variable;"
        .. " did you mean OCEAN__EVENT_LISTENER__TYPE?",
      "unknown setting OCEAN__METRICS__ENABLE: lua-ocean reads no such variable;"
        .. " did you mean OCEAN__METRICS__ENABLED?",
      "unknown setting OCEAN__SOMETHING_ELSE_ENTIRELY: lua-ocean reads no such variable",
    }, s.warnings)
    assert.is_false(s.metrics.enabled)
  end)

  it("runs ocean sail as ONCE from OCEAN__EVENT_LISTENER's JSON, secrets masked", function()
    local emu = ehelp.start { quiet = true }
    local items = ehelp.tmpdir() .. "/items.json"
    write(items, json.encode { { id = "j1", name = "J one" } })
    local r = sail.run({ "sail", ITEMS }, {
      OCEAN__EVENT_LISTENER = '{"type": "ONCE"}',
      OCEAN__PORT = json.encode { client_id = emu.client_id, client_secret = emu.client_secret,
                                  base_url = emu.url },
      OCEAN__INTEGRATION = '{"identifier": "spec-json"}',
      OCEAN__INTEGRATION__CONFIG__ITEMS_FILE = items,
      OCEAN__LOG__PROGRES_INTERVAL = "5",
    }, { limit = 60 })
    assert.are.equal(0, r.rc, r.out .. r.err)
    assert.matches("resync completed: created 1", r.out)
    assert.are.equal(1, #emu.entities("specItem"))
    assert.matches("unknown setting OCEAN__LOG__PROGRES_INTERVAL: lua%-ocean reads no such variable;"
      .. " did you mean OCEAN__LOG__PROGRESS_INTERVAL%?", r.err)
    -- a wrong secret given in the JSON fails, and is never printed
    r = sail.run({ "sail", ITEMS, "--once" }, {
      OCEAN__PORT = json.encode { client_id = emu.client_id, client_secret = "wrong-json-secret-42",
                                  base_url = emu.url },
      OCEAN__INTEGRATION__IDENTIFIER = "spec-json",
      OCEAN__INTEGRATION__CONFIG__ITEMS_FILE = items,
    }, { limit = 60 })
    assert.are.equal(1, r.rc)
    assert.matches("invalid Port credentials", r.out .. r.err)
    assert.is_nil((r.out .. r.err):find("wrong-json-secret-42", 1, true))
    emu.stop()
  end)
end)
