local config = require "ocean.config"

local function tmpdir()
  local p = assert(io.popen("mktemp -d"))
  local d = p:read("l")
  p:close()
  return d
end

local function write(path, text)
  os.execute(("mkdir -p %q"):format(path:match("^(.*)/")))
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local SPEC = [[
type: dpkg
version: 1.2.3
configurations:
  - name: statusFile
    type: string
    required: true
  - name: includeArch
    type: boolean
    default: false
  - name: apiToken
    type: string
    sensitive: true
  - name: maxPages
    type: integer
]]

describe("ocean.config", function()
  local dir
  before_each(function()
    dir = tmpdir()
    write(dir .. "/.port/spec.yaml", SPEC)
  end)
  after_each(function() os.execute(("rm -rf %q"):format(dir)) end)

  it("reads Ocean's environment variables and types integration settings", function()
    local s = assert(config.load { path = dir, env = {
      OCEAN__PORT__CLIENT_ID = "id", OCEAN__PORT__CLIENT_SECRET = "sec",
      OCEAN__PORT__BASE_URL = "http://127.0.0.1:5555/",
      OCEAN__INTEGRATION__CONFIG__STATUS_FILE = "/var/lib/dpkg/status",
      OCEAN__INTEGRATION__CONFIG__INCLUDE_ARCH = "true",
      OCEAN__INTEGRATION__CONFIG__MAX_PAGES = "7",
      OCEAN__INTEGRATION__CONFIG__API_TOKEN = "tok-123456",
      OCEAN__EVENT_LISTENER__TYPE = "once",
      OCEAN__SCHEDULED_RESYNC_INTERVAL = "15",
      OCEAN__INITIALIZE_PORT_RESOURCES = "false",
    } })
    assert.are.equal("id", s.port.client_id)
    assert.are.equal("http://127.0.0.1:5555", s.port.base_url)
    assert.are.equal("dpkg", s.integration.type)
    assert.are.equal("my-dpkg-integration", s.integration.identifier)
    assert.are.equal("1.2.3", s.integration.version)
    assert.are.same({ status_file = "/var/lib/dpkg/status", include_arch = true,
                      max_pages = 7, api_token = "tok-123456" }, s.integration.config)
    assert.are.equal("ONCE", s.event_listener.type)
    assert.are.equal(15, s.scheduled_resync_interval)
    assert.is_false(s.initialize_port_resources)
    assert.is_false(s.allow_env_jq)
    assert.are.same({ "tok-123456", "sec" }, s.secrets)
  end)

  it("falls back to config.yaml with {{ from env NAME }} and applies defaults", function()
    write(dir .. "/config.yaml", [[
port:
  clientId: "{{ from env MY_ID }}"
  clientSecret: "{{ from env MY_SECRET }}"
integration:
  identifier: local-dpkg
  config:
    statusFile: /tmp/status
eventListener:
  type: WEBHOOKS_ONLY
]])
    local s = assert(config.load { path = dir, env = { MY_ID = "yid", MY_SECRET = "ysecret" } })
    assert.are.equal("yid", s.port.client_id)
    assert.are.equal("ysecret", s.port.client_secret)
    assert.are.equal("local-dpkg", s.integration.identifier)
    assert.are.equal("/tmp/status", s.integration.config.status_file)
    assert.is_false(s.integration.config.include_arch)
    assert.are.equal("WEBHOOKS_ONLY", s.event_listener.type)
    assert.are.equal("https://api.getport.io", s.port.base_url)
    assert.are.equal(5, s.port.concurrency)
    assert.are.equal(60, s.event_listener.interval)
    assert.are.equal(20, s.upsert_batch_max_length)
  end)

  it("prefers environment variables over config.yaml, and overrides over both", function()
    write(dir .. "/config.yaml", "integration:\n  identifier: from-yaml\n  config:\n    statusFile: y\n")
    local s = assert(config.load { path = dir, env = { OCEAN__INTEGRATION__IDENTIFIER = "from-env",
      OCEAN__INTEGRATION__CONFIG__STATUS_FILE = "e" } })
    assert.are.equal("from-env", s.integration.identifier)
    assert.are.equal("e", s.integration.config.status_file)
    s = assert(config.load { path = dir, env = { OCEAN__INTEGRATION__IDENTIFIER = "from-env" },
      overrides = { integration = { identifier = "over", config = { statusFile = "o" } } } })
    assert.are.equal("over", s.integration.identifier)
    assert.are.equal("o", s.integration.config.status_file)
  end)

  it("stops with one message naming a missing required setting", function()
    local s, err = config.load { path = dir, env = {} }
    assert.is_nil(s)
    assert.are.equal("missing integration setting 'statusFile': set "
      .. "OCEAN__INTEGRATION__CONFIG__STATUS_FILE (or integration.config.statusFile in config.yaml)", err)
  end)

  local invalid = {
    { "OCEAN__SCHEDULED_RESYNC_INTERVAL", "soon",
      'invalid OCEAN__SCHEDULED_RESYNC_INTERVAL: "soon" is not a positive number' },
    { "OCEAN__EVENT_LISTENER__TYPE", "KAFKA",
      'invalid OCEAN__EVENT_LISTENER__TYPE: "KAFKA" is an Ocean listener lua-ocean does not support'
        .. " (use POLLING, ONCE, WEBHOOKS_ONLY or WEBHOOK)" },
    { "OCEAN__PORT__BASE_URL", "api.getport.io",
      'invalid OCEAN__PORT__BASE_URL: "api.getport.io" is not an http(s) URL' },
    { "OCEAN__ENTITY_DELETION_THRESHOLD", "1.5",
      'invalid OCEAN__ENTITY_DELETION_THRESHOLD: "1.5" is not a number between 0 and 1' },
    { "OCEAN__INTEGRATION__CONFIG__INCLUDE_ARCH", "maybe",
      'invalid OCEAN__INTEGRATION__CONFIG__INCLUDE_ARCH: "maybe" is not a boolean' },
  }
  for _, case in ipairs(invalid) do
    it("rejects " .. case[1] .. "=" .. case[2] .. " with a message naming it", function()
      local env = { OCEAN__INTEGRATION__CONFIG__STATUS_FILE = "x", [case[1]] = case[2] }
      local s, err = config.load { path = dir, env = env }
      assert.is_nil(s)
      assert.are.equal(case[3], err)
    end)
  end

  it("reports a broken YAML file with its name", function()
    write(dir .. "/config.yaml", "port: [1, 2\n")
    local s, err = config.load { path = dir, env = { OCEAN__INTEGRATION__CONFIG__STATUS_FILE = "x" } }
    assert.is_nil(s)
    assert.truthy(err:find("invalid YAML: " .. dir .. "/config.yaml", 1, true), err)
  end)

  it("loads the default mapping and blueprints", function()
    write(dir .. "/.port/resources/port-app-config.yml", [[
deleteDependentEntities: true
resources:
  - kind: package
    selector:
      query: true
    port:
      entity:
        mappings:
          identifier: .name
          blueprint: '"package"'
          properties:
            tags: '[]'
]])
    write(dir .. "/.port/resources/blueprints.json", '[{"identifier":"package","schema":{"properties":{}}}]')
    local s = assert(config.load { path = dir, env = { OCEAN__INTEGRATION__CONFIG__STATUS_FILE = "x" } })
    local r = s.default_mapping.resources[1]
    assert.are.equal(true, r.selector.query)      -- YAML scalars are not mangled
    assert.are.equal('"package"', r.port.entity.mappings.blueprint)
    assert.are.equal("package", s.blueprints[1].identifier)
  end)

  it("requires Port credentials only when asked", function()
    local s = assert(config.load { path = dir, env = { OCEAN__INTEGRATION__CONFIG__STATUS_FILE = "x" } })
    local ok, err = config.require_port(s)
    assert.is_nil(ok)
    assert.are.equal("missing Port client id: set OCEAN__PORT__CLIENT_ID (or port.clientId in config.yaml)", err)
  end)
end)
