-- The emulator's fault injection and request log.
local core = require "ocean.core"
local json = require "ocean.json"
local helpers = require "spec.helpers.emulator"

local UA = "port-ocean/github/1.2.3/my-gh/exporter"
local BULK = "/v1/blueprints/team/entities/bulk"

local emu

local function bulk(list, opts)
  opts = opts or {}
  opts.user_agent = UA
  return emu.api("POST", BULK .. "?upsert=true&merge=true", { entities = json.array(list) }, opts)
end

local function statuses(n, fn)
  local out = {}
  for i = 1, n do out[i] = (fn(i)) end
  return out
end

setup(function()
  emu = helpers.start{ client_secret = "s3cr3t-value-for-spec" }
end)
teardown(helpers.stop_all)
before_each(function()
  emu.reset()
  assert.are.equal(201, (emu.api("POST", "/v1/blueprints", { identifier = "team" })))
  emu.clear_requests()
end)

describe("emulator faults", function()
  it("answers 429 with Retry-After to the first matching request", function()
    emu.faults{ { method = "POST", path = "/entities/bulk$", status = 429, retry_after = "1", count = 1 } }
    local s1, b1, h1 = bulk({ { identifier = "a" } })
    local s2 = bulk({ { identifier = "a" } })
    assert.are.same({ 429, { ok = false, error = "rate_limited",
      message = "fault injected by the port emulator" }, "1" }, { s1, b1, h1["retry-after"] })
    assert.are.equal(200, s2)
    assert.are.same({ "a" }, { emu.entities("team")[1].identifier })
  end)

  it("fires on every k-th match", function()
    emu.faults{ { path = "^/v1/blueprints/team$", status = 503, every = 2 } }
    assert.are.same({ 200, 503, 200, 503 },
      statuses(4, function() return emu.api("GET", "/v1/blueprints/team") end))
  end)

  it("ignores other methods and paths, and never touches the control API", function()
    emu.faults{ { method = "GET", path = "^/v1/", status = 500 } }
    assert.are.equal(200, (bulk({ { identifier = "a" } })))
    assert.are.equal(500, (emu.api("GET", "/v1/blueprints/team")))
    assert.are.equal(1, #emu.entities())     -- GET /_emulator/entities is not faulted
  end)

  it("sends x-ratelimit-reset and HTTP-date Retry-After values", function()
    emu.faults{ { path = "bulk", status = 429, retry_after_date = 2, ratelimit_reset_in = 3, count = 1 },
                { path = "bulk", status = 429, ratelimit_reset = "1700000000", count = 1 } }
    local now = core.realtime_ms() / 1000
    local _, _, h1 = bulk({ { identifier = "a" } })
    local _, _, h2 = bulk({ { identifier = "a" } })
    assert.truthy(h1["retry-after"]:match("^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT$"),
      h1["retry-after"])
    local reset = tonumber(h1["x-ratelimit-reset"])
    assert.is_true(reset >= math.floor(now + 2) and reset <= math.floor(now + 4))
    assert.are.equal("1700000000", h2["x-ratelimit-reset"])
  end)

  it("drops the connection without an answer", function()
    emu.faults{ { path = "bulk", drop = true, count = 1 } }
    assert.are.equal(0, (bulk({ { identifier = "a" } })))
    assert.are.equal(200, (bulk({ { identifier = "a" } })))
    local log = emu.requests()
    assert.are.same({ json.null, true }, { log[1].status, log[1].dropped })
  end)

  it("answers late without blocking other requests", function()
    emu.faults{ { path = "bulk", delay_ms = 1500, count = 1 } }
    local dir = helpers.tmpdir()
    local t0 = core.monotonic_ms()
    os.execute(("(curl -s -o /dev/null -w '%%{http_code}' -X POST -H %s"
      .. " -H 'Content-Type: application/json'"
      .. " --data-binary '{\"entities\":[{\"identifier\":\"late\"}]}'"
      .. " %s > %s/status; echo done > %s/exit) &")
      :format(helpers.shell_quote("Authorization: Bearer " .. emu.token()),
        helpers.shell_quote(emu.url .. BULK .. "?upsert=true"), dir, dir))
    while #emu.requests() == 0 do helpers.sleep(0.01) end
    local s_other = emu.api("GET", "/v1/blueprints/team")
    local t_other = core.monotonic_ms() - t0
    while not helpers.read_file(dir .. "/exit") do helpers.sleep(0.02) end
    local t_late = core.monotonic_ms() - t0
    local s_late = helpers.read_file(dir .. "/status")
    os.execute("rm -rf " .. helpers.shell_quote(dir))
    assert.are.equal(200, s_other)
    assert.is_true(t_other < 1500, "the other request waited " .. t_other .. " ms")
    assert.are.equal("200", s_late)
    assert.is_true(t_late >= 1500)
    assert.are.equal("late", emu.entities("team")[1].identifier)   -- written at once
  end)

  it("answers 413 to bodies above max_body_bytes", function()
    emu.faults{ { path = "bulk", max_body_bytes = 50 } }
    local big = bulk({ { identifier = "a", title = string.rep("x", 60) } })
    local small = bulk({ { identifier = "b" } })
    assert.are.same({ 413, 200 }, { big, small })
  end)

  it("rejects invalid rules with 422 and keeps the old ones", function()
    emu.faults{ { path = "bulk", status = 503 } }
    local status, body = helpers.http("POST", emu.url .. "/_emulator/faults",
      { body = { rules = json.array{ { path = "[", status = 500 } } } })
    assert.are.equal(422, status)
    assert.are.same({ ok = false, error = "invalid_request",
      message = "rules[0]: invalid value for 'path'" }, json.decode(body))
    local s2, b2 = helpers.http("POST", emu.url .. "/_emulator/faults",
      { body = { rules = json.array{ { path = "x" } } } })
    assert.are.same({ 422, "rules[0] has no effect (status, drop, delay_ms or max_body_bytes)" },
      { s2, json.decode(b2).message })
    assert.are.equal(503, (bulk({ { identifier = "a" } })))
    emu.faults()
    assert.are.equal(200, (bulk({ { identifier = "a" } })))
  end)
end)

describe("emulator request log", function()
  it("records every Port API request", function()
    emu.token(true)
    bulk({ { identifier = "a" }, { identifier = "b" }, { identifier = "c" } })
    emu.api("POST", "/v1/blueprints/team/bulk/entities/delete",
      { entities = json.array{ "a", "b" } }, { user_agent = UA })
    emu.api("GET", "/v1/nowhere")
    local log = emu.requests()
    assert.are.equal(4, #log)
    local shape = {}
    for i, r in ipairs(log) do
      shape[i] = { r.seq, r.method, r.path, r.query, r.status, r.user_agent, r.entities }
      assert.truthy(r.time:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$"))
      assert.truthy(r.trace_id:match("^%x+$"))
    end
    assert.are.same({
      { 1, "POST", "/v1/auth/access_token", "", 200, "curl/7.88.1", nil },
      { 2, "POST", BULK, "upsert=true&merge=true", 200, UA, 3 },
      { 3, "POST", "/v1/blueprints/team/bulk/entities/delete", "", 200, UA, 2 },
      { 4, "GET", "/v1/nowhere", "", 404, "spec", nil },
    }, shape)
    assert.are.equal(#'{"entities":[{"identifier":"a"},{"identifier":"b"},{"identifier":"c"}]}',
      log[2].bytes)
    emu.clear_requests()
    assert.are.same({}, emu.requests())
  end)

  it("never records or prints the client secret or the tokens", function()
    local token = emu.token(true)
    emu.api("POST", "/v1/auth/access_token",
      { clientId = helpers.CLIENT_ID, clientSecret = "wrong-secret-value" }, { token = false })
    bulk({ { identifier = "a" } })
    local log = emu.requests{ bodies = true }
    assert.are.equal(3, #log)
    assert.is_nil(log[1].body)
    assert.is_nil(log[2].body)
    assert.are.same({ entities = { { identifier = "a" } } }, log[3].body)
    local text = json.encode(log)
    local out = emu.output()
    for _, secret in ipairs({ "s3cr3t-value-for-spec", "wrong-secret-value", token }) do
      assert.is_nil(text:find(secret, 1, true))
      assert.is_nil(out:find(secret, 1, true))
    end
    assert.truthy(out:find("POST /v1/auth/access_token -> 401", 1, true))
  end)
end)
