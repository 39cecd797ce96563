-- The emulator's pure-Lua parts, in process: time stamps, search
-- compilation, fault rules, the store's clock and indexes, the command line.
local json = require "ocean.json"
local util = require "ocean.emulator.util"
local search = require "ocean.emulator.search"
local faults = require "ocean.emulator.faults"
local storemod = require "ocean.emulator.store"
local cli = require "ocean.emulator.cli"

describe("emulator time stamps", function()
  local cases = {
    { "1970-01-01T00:00:00Z", 0 },
    { "1970-01-01T00:00:00.001Z", 1 },
    { "2024-02-29T23:59:59.999Z", 1709251199999 },
    { "2024-03-01T01:00:00+01:00", 1709251200000 },
    { "2024-02-29T19:00:00-05:00", 1709251200000 },
    { "2024-03-01T00:00:00.000250+00:00", 1709251200000.25 },
    { "2024-03-01 00:00:00", 1709251200000 },
    { "2024-03-01", 1709251200000 },
    { "1969-12-31T23:59:59Z", -1000 },
  }
  for _, c in ipairs(cases) do
    it("parses " .. c[1], function()
      assert.are.equal(c[2], util.parse_iso(c[1]))
    end)
  end
  for _, bad in ipairs({ "yesterday", "2024-13-01", "2024-01-01T25:00:00Z",
                         "2024-01-01T00:00:00+5", "2024-01-01Tnoon", 42 }) do
    it("refuses " .. tostring(bad), function()
      assert.is_nil(util.parse_iso(bad))
    end)
  end
  it("formats milliseconds as ISO-8601 UTC", function()
    assert.are.equal("2024-02-29T23:59:59.999Z", util.iso(1709251199999))
    assert.are.equal("1970-01-01T00:00:00.000Z", util.iso(0))
  end)
  it("formats HTTP dates", function()
    assert.are.equal("Fri, 01 Mar 2024 00:00:00 GMT", util.http_date(1709251200))
  end)
end)

describe("emulator search compilation", function()
  local R = function(p, op, v) return { property = p, operator = op, value = v } end
  local bad = {
    { { combinator = "xor", rules = json.array{} }, "query: combinator must be 'and' or 'or'" },
    { { rules = json.array{ R("$title", "like", "x") } }, "query.rules[0]: unknown operator 'like'" },
    { { rules = json.array{ R("$identifier", "in", "x") } },
      "query.rules[0]: operator 'in' needs an array value" },
    { { rules = json.array{ { combinator = "or", rules = json.array{ R(7, "=", 1) } } } },
      "query.rules[0].rules[0]: 'property' must be a string" },
    { { rules = { a = 1 } }, "query: 'rules' must be an array" },
  }
  for _, c in ipairs(bad) do
    it("refuses: " .. c[2], function()
      assert.are.same({ nil, c[2] }, { search.compile(c[1]) })
    end)
  end

  it("projects included fields", function()
    local v = { identifier = "a", title = "A", properties = { x = 1, y = 2 }, relations = { r = "b" } }
    assert.are.same({ identifier = "a", properties = { y = 2 }, relations = {} },
      search.project(v, { "identifier", "properties.y", "relations.zz" }))
    assert.are.equal(v, search.project(v, {}))
  end)
end)

describe("emulator fault rules", function()
  local function req(method, path, body)
    return { method = method, path = path, body = body or "" }
  end

  it("fires for the first N matches, then stops", function()
    local f = faults.new()
    assert.is_true(f:set(json.array{ { method = "post", path = "bulk$", status = 429, count = 2 } }))
    local fired = {}
    for i = 1, 4 do fired[i] = f:match(req("POST", "/x/bulk")) ~= nil end
    assert.are.same({ true, true, false, false }, fired)
    assert.is_nil(f:match(req("GET", "/x/bulk")))
  end)

  it("combines every and count", function()
    local f = faults.new()
    f:set(json.array{ { path = "x", status = 503, every = 2, count = 2 } })
    local fired = {}
    for i = 1, 8 do fired[i] = f:match(req("GET", "/x")) ~= nil end
    assert.are.same({ false, true, false, true, false, false, false, false }, fired)
  end)

  it("matches max_body_bytes on larger bodies only, with 413 by default", function()
    local f = faults.new()
    f:set(json.array{ { max_body_bytes = 3 } })
    assert.is_nil(f:match(req("POST", "/a", "abc")))
    local r = f:match(req("POST", "/a", "abcd"))
    assert.are.equal(413, r.status)
  end)

  local bad = {
    { { { path = "x" } }, "rules[0] has no effect (status, drop, delay_ms or max_body_bytes)" },
    { { { status = 42 } }, "rules[0]: invalid value for 'status'" },
    { { { status = 500, colour = "red" } }, "rules[0]: unknown field 'colour'" },
    { { { status = 500, count = 0 } }, "rules[0]: invalid value for 'count'" },
    { { { status = 500, path = "%" } }, "rules[0]: invalid value for 'path'" },
  }
  for _, c in ipairs(bad) do
    it("refuses: " .. c[2], function()
      assert.are.same({ nil, c[2] }, { faults.new():set(json.array(c[1])) })
    end)
  end

  it("builds the answer's headers", function()
    local status, body, headers = faults.answer({ status = 429, retry_after = 2,
      ratelimit_reset = "1700000000", headers = { ["X-Extra"] = "1" } })
    assert.are.same({ 429, { ok = false, error = "rate_limited",
      message = "fault injected by the port emulator" },
      { ["retry-after"] = "2", ["x-ratelimit-reset"] = "1700000000", ["x-extra"] = "1" } },
      { status, body, headers })
  end)
end)

describe("emulator store", function()
  it("gives every write a strictly later time stamp", function()
    local s = storemod.new()
    local last = -1
    for _ = 1, 50 do
      local ms, iso = s:write_time()
      assert.is_true(ms > last)
      assert.are.equal(util.iso(ms), iso)
      last = ms
    end
  end)

  it("indexes relations so that dependents are found without a scan", function()
    local s = storemod.new()
    s:put_blueprint{ identifier = "team", relations = {} }
    s:put_blueprint{ identifier = "svc", relations = { owner = { target = "team" } } }
    s:put{ identifier = "t", blueprint = "team", properties = {}, relations = {} }
    s:put{ identifier = "a", blueprint = "svc", properties = {}, relations = { owner = "t" } }
    s:put{ identifier = "b", blueprint = "svc", properties = {}, relations = { owner = "t" } }
    local t = s:get("team", "t")
    local function deps() local o = {} for i, e in ipairs(s:dependents(t)) do o[i] = e.identifier end return o end
    assert.are.same({ "a", "b" }, deps())
    s:put{ identifier = "a", blueprint = "svc", properties = {}, relations = {} }
    assert.are.same({ "b" }, deps())
    s:delete("svc", "b")
    assert.are.same({}, deps())
    assert.are.equal(2, s.count)
  end)

  it("lists by datasource prefix and suffix in creation order", function()
    local s = storemod.new()
    local function put(id, ds) s:put{ identifier = id, blueprint = "b", datasource = ds,
      properties = {}, relations = {} } end
    put("1", "port-ocean/gh/1/me/exporter")
    put("2", "port-ocean/gh/2/other/exporter")
    put("3", "port-ocean/gh/3/me/exporter")
    put("4", "port-ocean/jira/1/me/exporter")
    local got = {}
    for i, e in ipairs(s:by_datasource("port-ocean/gh/", "/me/exporter")) do got[i] = e.identifier end
    assert.are.same({ "1", "3" }, got)
  end)
end)

describe("emulator command line parsing", function()
  it("reads every option", function()
    assert.are.same({ listen = "[::1]:0", host = "::1", port = 0, data = "d.json",
      client_id = "id", client_secret = "s", token_ttl = 60, page_limit = 7,
      max_body = 1000, port_file = "p", exit_with = 1, quiet = true },
      cli.parse{ "--listen", "[::1]:0", "--data=d.json", "--client-id", "id",
        "--client-secret", "s", "--token-ttl", "60", "--page-limit", "7",
        "--max-body", "1000", "--port-file", "p", "--exit-with", "1", "--quiet" })
  end)
  it("accepts :PORT and PORT", function()
    assert.are.same({ "127.0.0.1", 8080 }, { cli.parse{ "--listen", ":8080" }.host,
      cli.parse{ "--listen", ":8080" }.port })
    assert.are.equal(9, cli.parse{ "--listen=9" }.port)
  end)
end)
