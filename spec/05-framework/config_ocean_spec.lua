-- Configuration as Ocean reads it (issue 10, deliverable 8): humps'
-- decamelize, object values verbatim, url without a trailing slash,
-- sensitive values stripped for masking, unknown settings warned about,
-- and --log-level errors naming the flag.
local config = require "ocean.config"
local log = require "ocean.log"
local json = require "ocean.json"
local ehelp = require "spec.helpers.emulator"
local sail = require "spec.helpers.sail"

local q = ehelp.shell_quote

local function write(path, text)
  os.execute(("mkdir -p %q"):format(path:match("^(.*)/")))
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

-- Expected values produced by pyhumps 3.8.0 (the version Ocean's lock
-- file pins): `python3 -c 'import humps; print(humps.decamelize(S))'`.
local HUMPS = {
  { "bitbucketIsVersion8Point7OrOlder", "bitbucket_is_version8_point7_or_older" },
  { "APIToken", "api_token" },
  { "apiToken", "api_token" },
  { "ID", "ID" },
  { "userID", "user_id" },
  { "getHTTPResponse", "get_http_response" },
  { "HTTPServer", "http_server" },
  { "S3Bucket", "s3_bucket" },
  { "myS3Bucket", "my_s3_bucket" },
  { "v8Engine", "v8_engine" },
  { "version8", "version8" },
  { "already_snake", "already_snake" },
  { "kebab-case", "kebab-case" },
  { "x-api-key", "x-api-key" },
  { "my__Var", "my___var" },
  { "some_Value", "some__value" },
  { "Hello World", "hello_world" },
  { "API TOKEN", "API TOKEN" },
  { "", "" },
  { "123", "123" },
  { "a1B2c3", "a1_b2c3" },
  { "ABC123def", "abc123def" },
  { "abc123DEF", "abc123_def" },
  { "A", "A" },
  { "aB", "a_b" },
  { "AbC", "ab_c" },
  { "gitlabURL", "gitlab_url" },
  { "URLPath", "url_path" },
  { "oAuth2Token", "o_auth2_token" },
  { "OAuth2Token", "o_auth2_token" },
  { "page2ndSize", "page2nd_size" },
  { "IsAB8CDx", "is_ab8_c_dx" },
  { "_private", "_private" },
  { "Leading", "leading" },
  { "snake_CASE_x", "snake__cas_e_x" },
  { "a-B", "a_-b" },
  { "jiraAPIv2Url", "jira_ap_iv2_url" },
  { "tokenMapping", "token_mapping" },
  { "appHost", "app_host" },
  { "isVersion10OrNewer", "is_version10_or_newer" },
  { "k8sNamespace", "k8s_namespace" },
  { "ec2InstanceIDs", "ec2_instance_i_ds" },
}

describe("config.decamelize", function()
  for _, case in ipairs(HUMPS) do
    it(("gives %q for %q, as humps does"):format(case[2], case[1]), function()
      assert.are.equal(case[2], config.decamelize(case[1]))
    end)
  end
end)

local SPEC = [[
type: things
configurations:
  - name: bitbucketIsVersion8Point7OrOlder
    type: boolean
    default: false
  - name: apiToken
    type: string
    sensitive: true
  - name: tokenMapping
    type: object
    sensitive: true
  - name: labelMap
    type: object
    default:
      camelKey: 1
      "Upper Key": {innerCamel: true}
  - name: jiraUrl
    type: url
    default: "https://jira.example.com/"
  - name: pageSize
    type: integer
  - name: repos
    type: array
]]

describe("ocean.config reads settings as Ocean does", function()
  local dir
  local function load(env, extra)
    local opts = { path = dir, env = env or {} }
    for k, v in pairs(extra or {}) do opts[k] = v end
    return config.load(opts)
  end
  local lines
  before_each(function()
    dir = ehelp.tmpdir()
    write(dir .. "/.port/spec.yaml", SPEC)
    lines = {}
    log.set_sink(function(level, line) lines[#lines + 1] = level .. " " .. line end)
    log.set_level("INFO")
  end)
  after_each(function()
    log.set_sink(nil)
    os.execute("rm -rf " .. q(dir))
  end)

  it("finds a camelCase setting with digits under humps' env name", function()
    local s = assert(load { OCEAN__INTEGRATION__CONFIG__BITBUCKET_IS_VERSION8_POINT7_OR_OLDER = "true" })
    assert.is_true(s.integration.config.bitbucket_is_version8_point7_or_older)
    assert.is_nil(s.integration.config.bitbucket_is_version8point7_or_older)
    assert.are.same({}, s.warnings)
    assert.are.same({}, lines)
  end)

  it("reads config.yaml's setting names decamelized, digits included", function()
    write(dir .. "/config.yaml", "integration:\n  config:\n    bitbucketIsVersion8Point7OrOlder: true\n")
    local s = assert(load())
    assert.is_true(s.integration.config.bitbucket_is_version8_point7_or_older)
  end)

  it("keeps an object setting's keys verbatim from config.yaml", function()
    write(dir .. "/config.yaml", [[
integration:
  config:
    tokenMapping:
      glpat-AbCdEf123456: ["group/*"]
      otherToken: {someKey: x}
eventListener:
  type: ONCE
]])
    local s = assert(load())
    assert.are.same({ ["glpat-AbCdEf123456"] = { "group/*" }, otherToken = { someKey = "x" } },
      s.integration.config.token_mapping)
    assert.are.equal("ONCE", s.event_listener.type)      -- model keys still decamelized
  end)

  it("keeps an object setting's keys verbatim from an env JSON value", function()
    local s = assert(load { OCEAN__INTEGRATION__CONFIG__TOKEN_MAPPING =
      '{"glpat-XyZ987654":["a/*"],"camelCase":{"innerKey":1}}' })
    assert.are.same({ ["glpat-XyZ987654"] = { "a/*" }, camelCase = { innerKey = 1 } },
      s.integration.config.token_mapping)
  end)

  it("keeps an object default's keys verbatim from .port/spec.yaml", function()
    local s = assert(load())
    assert.are.same({ camelKey = 1, ["Upper Key"] = { innerCamel = true } }, s.integration.config.label_map)
  end)

  it("keeps an object's keys verbatim from the overrides", function()
    local s = assert(load({}, { overrides = { integration = { config = {
      labelMap = { someCamel = { deeperCamel = 2 } } } } } }))
    assert.are.same({ someCamel = { deeperCamel = 2 } }, s.integration.config.label_map)
  end)

  local urls = {
    { "env", "https://jira.example.com/", "https://jira.example.com" },
    { "env", "https://jira.example.com/rest//", "https://jira.example.com/rest" },
    { "env", "http://127.0.0.1:8080", "http://127.0.0.1:8080" },
    { "yaml", "https://yaml.example.com/", "https://yaml.example.com" },
    { "default", nil, "https://jira.example.com" },
  }
  for _, case in ipairs(urls) do
    it(("drops the trailing slash of a url setting (%s %s)"):format(case[1], tostring(case[2])), function()
      local env = {}
      if case[1] == "env" then env.OCEAN__INTEGRATION__CONFIG__JIRA_URL = case[2] end
      if case[1] == "yaml" then
        write(dir .. "/config.yaml", "integration:\n  config:\n    jiraUrl: " .. case[2] .. "\n")
      end
      local s = assert(load(env))
      assert.are.equal(case[3], s.integration.config.jira_url)
    end)
  end

  local invalid = {
    { "OCEAN__INTEGRATION__CONFIG__JIRA_URL", "jira.example.com",
      'invalid OCEAN__INTEGRATION__CONFIG__JIRA_URL: "jira.example.com" is not a URL' },
    { "OCEAN__INTEGRATION__CONFIG__PAGE_SIZE", "7.5",
      'invalid OCEAN__INTEGRATION__CONFIG__PAGE_SIZE: "7.5" is not an integer' },
    { "OCEAN__INTEGRATION__CONFIG__PAGE_SIZE", "many",
      'invalid OCEAN__INTEGRATION__CONFIG__PAGE_SIZE: "many" is not a number' },
    { "OCEAN__INTEGRATION__CONFIG__TOKEN_MAPPING", "[1, 2]",
      "invalid OCEAN__INTEGRATION__CONFIG__TOKEN_MAPPING: expected a JSON object" },
    { "OCEAN__INTEGRATION__CONFIG__REPOS", '{"a": 1}',
      "invalid OCEAN__INTEGRATION__CONFIG__REPOS: expected a JSON array" },
    { "OCEAN__INTEGRATION__CONFIG__REPOS", "[1, 2",
      "invalid OCEAN__INTEGRATION__CONFIG__REPOS: expected JSON (" },
  }
  for _, case in ipairs(invalid) do
    it(("rejects %s=%s naming it"):format(case[1], case[2]), function()
      local s, err = load { [case[1]] = case[2] }
      assert.is_nil(s)
      assert.are.equal(case[3], err:sub(1, #case[3]))
    end)
  end

  it("accepts an integer setting and an empty array", function()
    local s = assert(load { OCEAN__INTEGRATION__CONFIG__PAGE_SIZE = " 50 ",
                            OCEAN__INTEGRATION__CONFIG__REPOS = "[]" })
    assert.are.equal(50, s.integration.config.page_size)
    assert.are.equal("[]", json.encode(s.integration.config.repos))
  end)

  it("refuses a configuration type Ocean doesn't know, naming it", function()
    write(dir .. "/.port/spec.yaml", "type: t\nconfigurations:\n  - name: fooBar\n    type: str\n")
    local s, err = load()
    assert.is_nil(s)
    assert.are.equal(".port/spec.yaml: configuration 'fooBar' has unknown type 'str'"
      .. " (use string, integer, boolean, object, array or url)", err)
  end)

  describe("sensitive values", function()
    it("are registered stripped, so a token read with its newline is masked", function()
      local s = assert(load { OCEAN__INTEGRATION__CONFIG__API_TOKEN = "  tok-abcdef-123\n" })
      assert.are.equal("  tok-abcdef-123\n", s.integration.config.api_token)   -- the value as given
      assert.are.same({ "tok-abcdef-123" }, s.secrets)
      for _, v in ipairs(s.secrets) do log.add_secret(v) end
      log.info("calling with token %s now", "tok-abcdef-123")
      assert.are.same({ "INFO calling with token **** now" }, lines)
    end)

    it("that are blank are not registered, so spaces stay spaces", function()
      local s = assert(load { OCEAN__INTEGRATION__CONFIG__API_TOKEN = "    " })
      assert.are.same({}, s.secrets)
      log.add_secret("    ")
      log.add_secret("\n\t \n")
      log.info("a    b")
      assert.are.same({ "INFO a    b" }, lines)
    end)

    it("that are objects register their keys and strings (a tokenMapping's keys are tokens)", function()
      local s = assert(load { OCEAN__INTEGRATION__CONFIG__TOKEN_MAPPING = '{"glpat-111111111":["grp/*"]}',
                              OCEAN__PORT__CLIENT_SECRET = " port-secret-1 " })
      assert.are.same({ "glpat-111111111", "grp/*", "port-secret-1" }, s.secrets)
    end)

    it("are stripped by log.add_secret itself too", function()
      log.add_secret("\tsecret-from-file\n")
      log.error("failed with secret-from-file")
      assert.are.same({ "ERROR failed with ****" }, lines)
    end)
  end)

  describe("unknown OCEAN__INTEGRATION__CONFIG__* names", function()
    it("get a WARNING suggesting the closest declared name", function()
      local s = assert(load { OCEAN__INTEGRATION__CONFIG__API_TOKN = "x1234",
                              OCEAN__INTEGRATION__CONFIG__PAGESIZE = "3" })
      local want = {
        "unknown integration setting OCEAN__INTEGRATION__CONFIG__API_TOKN: .port/spec.yaml declares"
          .. " no such configuration; did you mean OCEAN__INTEGRATION__CONFIG__API_TOKEN?",
        "unknown integration setting OCEAN__INTEGRATION__CONFIG__PAGESIZE: .port/spec.yaml declares"
          .. " no such configuration; did you mean OCEAN__INTEGRATION__CONFIG__PAGE_SIZE?",
      }
      assert.are.same(want, s.warnings)
      assert.are.same({ "WARNING " .. want[1], "WARNING " .. want[2] }, lines)
      assert.is_nil(s.integration.config.api_token)
    end)

    it("suggest the humps name for the digit-splitting mistake", function()
      local s = assert(load { OCEAN__INTEGRATION__CONFIG__BITBUCKET_IS_VERSION_8_POINT_7_OR_OLDER = "true" })
      assert.are.equal("unknown integration setting"
        .. " OCEAN__INTEGRATION__CONFIG__BITBUCKET_IS_VERSION_8_POINT_7_OR_OLDER:"
        .. " .port/spec.yaml declares no such configuration; did you mean"
        .. " OCEAN__INTEGRATION__CONFIG__BITBUCKET_IS_VERSION8_POINT7_OR_OLDER?", s.warnings[1])
      assert.is_false(s.integration.config.bitbucket_is_version8_point7_or_older)
    end)

    it("list the declared names when none is close", function()
      local s = assert(load { OCEAN__INTEGRATION__CONFIG__SOMETHING_ELSE_ENTIRELY = "1" })
      assert.are.equal("unknown integration setting OCEAN__INTEGRATION__CONFIG__SOMETHING_ELSE_ENTIRELY:"
        .. " .port/spec.yaml declares no such configuration (it declares"
        .. " OCEAN__INTEGRATION__CONFIG__API_TOKEN, OCEAN__INTEGRATION__CONFIG__BITBUCKET_IS_VERSION8_POINT7_OR_OLDER,"
        .. " OCEAN__INTEGRATION__CONFIG__JIRA_URL, OCEAN__INTEGRATION__CONFIG__LABEL_MAP,"
        .. " OCEAN__INTEGRATION__CONFIG__PAGE_SIZE, OCEAN__INTEGRATION__CONFIG__REPOS,"
        .. " OCEAN__INTEGRATION__CONFIG__TOKEN_MAPPING)", s.warnings[1])
    end)

    it("in config.yaml get the same WARNING", function()
      write(dir .. "/config.yaml", "integration:\n  config:\n    jiraUri: https://x.example.com\n"
        .. "    jiraURL: https://y.example.com/\n")       -- humps: jira_url, the declared name
      local s = assert(load())
      assert.are.equal("https://y.example.com", s.integration.config.jira_url)
      assert.are.same({ "unknown integration setting jira_uri in config.yaml's integration.config:"
        .. " .port/spec.yaml declares no such configuration; did you mean jira_url?" }, s.warnings)
    end)

    it("are not said when the log level is ERROR", function()
      local s = assert(load { OCEAN__INTEGRATION__CONFIG__API_TOKN = "x1234", APPLICATION__LOG_LEVEL = "error" })
      assert.are.equal(1, #s.warnings)
      assert.are.same({}, lines)
    end)

    it("are found in the process environment too", function()
      local script = ehelp.tmpdir()
      write(script .. "/load.lua", ("local c = require 'ocean.config'\n"
        .. "assert(c.load { path = %q })\n"):format(dir))
      local out = ehelp.sh(("cd %s && env OCEAN__INTEGRATION__CONFIG__APITOKEN=abcd %s %s 2>&1"):format(
        q(ehelp.root()), sail.runtime(), q(script .. "/load.lua")))
      os.execute("rm -rf " .. q(script))
      assert.truthy(out:find("WARNING unknown integration setting OCEAN__INTEGRATION__CONFIG__APITOKEN:"
        .. " .port/spec.yaml declares no such configuration; did you mean"
        .. " OCEAN__INTEGRATION__CONFIG__API_TOKEN?", 1, true), out)
    end)
  end)

  describe("log levels", function()
    it("name the variable when APPLICATION__LOG_LEVEL is wrong", function()
      local s, err = load { APPLICATION__LOG_LEVEL = "LOUD" }
      assert.is_nil(s)
      assert.are.equal('invalid APPLICATION__LOG_LEVEL: "LOUD" is not a log level'
        .. " (use DEBUG, INFO, WARNING or ERROR)", err)
    end)

    it("accept Ocean's CRITICAL and WARN", function()
      assert.are.equal("ERROR", (assert(load { APPLICATION__LOG_LEVEL = "critical" })).log_level)
      assert.are.equal("WARNING", (assert(load { APPLICATION__LOG_LEVEL = "Warn" })).log_level)
    end)

    it("name the flag when --log-level is wrong", function()
      assert.are.same({ nil, "--log-level: 'LOUD' is not a log level (use DEBUG, INFO, WARNING or ERROR)" },
        { log.check_level("LOUD", "--log-level") })
      local r = sail.run({ "sail", ehelp.root() .. "/examples/dpkg", "--once", "--log-level", "LOUD" })
      assert.are.equal(2, r.rc)
      assert.truthy(r.err:find("ocean sail: --log-level: 'LOUD' is not a log level"
        .. " (use DEBUG, INFO, WARNING or ERROR)", 1, true), r.err)
    end)
  end)
end)
