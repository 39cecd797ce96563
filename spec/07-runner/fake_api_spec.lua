-- examples/fake-api end to end: `ocean sail` pages through the fake
-- third-party API with ocean.http, and applies its webhooks through a
-- webhook processor (answered once journaled, applied in the background).
local json = require "ocean.json"
local ehelp = require "spec.helpers.emulator"
local fake = require "spec.helpers.fake_api"
local sail = require "spec.helpers.sail"

local EXAMPLE = ehelp.root() .. "/examples/fake-api"
local ID = "my-fake-api-integration"
local DS = "port-ocean/fake-api/0.1.0/" .. ID .. "/exporter"

local function by_id(list)
  local out = {}
  for _, e in ipairs(list) do out[e.identifier] = e end
  return out
end

local function count(list)
  local n = 0
  for _ in pairs(list) do n = n + 1 end
  return n
end

local function bulk_upserts(emu)
  local n = 0
  for _, r in ipairs(emu.requests()) do
    if r.method == "POST" and r.path:find("/entities/bulk$") then n = n + 1 end
  end
  return n
end

describe("examples/fake-api", function()
  local emu, api, env, jdir

  setup(function()
    emu = ehelp.start { quiet = true }
    jdir = ehelp.tmpdir()
  end)
  teardown(function()
    sail.stop_all()
    fake.stop_all()
    ehelp.stop_all()
    os.execute("rm -rf " .. ehelp.shell_quote(jdir))
  end)

  local function start_api(opts)
    if api then api.stop() end
    api = fake.start(opts)
    env = {
      OCEAN__PORT__BASE_URL = emu.url,
      OCEAN__PORT__CLIENT_ID = emu.client_id,
      OCEAN__PORT__CLIENT_SECRET = emu.client_secret,
      OCEAN__INTEGRATION__CONFIG__API_URL = api.url,
      OCEAN__LIVE_EVENTS__JOURNAL_DIR = jdir,         -- not in the example's folder
    }
  end

  local function user(login)
    return by_id(emu.entities("fakeApiUser"))[login]
  end

  it("resyncs the teams (one request) and the users (five pages)", function()
    start_api()
    local r = sail.run({ "sail", EXAMPLE, "--once" }, env)
    assert.are.equal(0, r.rc, r.err)
    assert.are.equal("resync completed: created 50, updated 0, unchanged 0, deleted 0, failed 0\n"
      .. "  kind team                      5 objects ->      5 entities: created 5, updated 0, unchanged 0\n"
      .. "  kind user                     50 objects ->     45 entities: created 45, updated 0, unchanged 0\n",
      r.out)
    local teams, users = by_id(emu.entities("fakeApiTeam")), by_id(emu.entities("fakeApiUser"))
    assert.are.same({ 5, 45 }, { count(teams), count(users) })
    assert.are.same({ "Payments", "Checkout, billing and refunds", DS },
      { teams.payments.title, teams.payments.properties.description, teams.payments.datasource })
    local u = users["linus.garcia"]
    assert.are.same({ "Linus Garcia", { email = "linus.garcia@example.com", role = "admin",
      joinedAt = "2023-02-14T09:00:00Z" }, { team = "data" }, DS },
      { u.title, u.properties, u.relations, u.datasource })
    assert.is_nil(users["john.smith"])            -- inactive: filtered by the selector
    local queries = {}
    for _, req in ipairs(api.requests()) do queries[#queries + 1] = req.path .. "?" .. req.query end
    assert.are.same({ "/teams?", "/users?per_page=10", "/users?page=2&per_page=10",
      "/users?page=3&per_page=10", "/users?page=4&per_page=10", "/users?page=5&per_page=10" },
      queries)

    emu.clear_requests()
    r = sail.run({ "sail", EXAMPLE, "--once" }, env)
    assert.are.equal(0, r.rc, r.err)
    assert.are.equal("resync completed: created 0, updated 0, unchanged 50, deleted 0, failed 0\n",
      r.out:match("^[^\n]*\n"))
    assert.are.equal(0, bulk_upserts(emu))
  end)

  it("fails the kind and deletes nothing when a page cannot be read", function()
    api.call("DELETE", "/users/ada.smith")        -- gone from the API
    api.faults { { path = "^/users$", query = "page=3", status = 500 } }
    local r = sail.run({ "sail", EXAMPLE, "--once" }, env)
    api.faults()
    assert.are.equal(1, r.rc)
    assert.are.equal("resync failed: created 0, updated 0, unchanged 23, deleted 0, failed 0\n"
      .. "  kind team                      5 objects ->      5 entities: created 0, updated 0, unchanged 5\n"
      .. "  kind user                     20 objects ->     18 entities: created 0, updated 0, unchanged 18 [failed]\n"
      .. "  deletion skipped (27 candidates): 1 error(s) during the resync: the state is incomplete "
      .. "(failed: kind 'user')\n"
      .. "  error: resync function for kind 'user' failed: " .. EXAMPLE .. "/main.lua:N: GET "
      .. api.url .. '/users?page=3&per_page=10: HTTP 500 {"message":"injected fault"}\n',
      (r.out:gsub("main%.lua:%d+:", "main.lua:N:")))
    assert.is_table(by_id(emu.entities("fakeApiUser"))["ada.smith"])
  end)

  it("applies the API's webhooks, and a resync agrees with them", function()
    local port = sail.free_port()
    start_api { webhook = ("http://127.0.0.1:%d/integration/webhook"):format(port) }
    api.call("POST", "/_webhook", { url = ("http://127.0.0.1:%d/integration/webhook"):format(port),
                                    secret = "fake-api-secret" })
    env.OCEAN__EVENT_LISTENER__TYPE = "WEBHOOKS_ONLY"
    env.OCEAN__INTEGRATION__CONFIG__WEBHOOK_SECRET = "fake-api-secret"
    local p = sail.start({ "sail", EXAMPLE, "--port", tostring(port), "--host", "127.0.0.1" },
      env, { port = port })
    p:wait_ready()

    local new = { login = "new.user", name = "New User", email = "new.user@example.com",
                  team = "mobile", role = "member", active = true, joined_at = "2024-01-02T09:00:00Z" }
    local status, body = api.call("POST", "/users", new)
    assert.are.same({ 201, { ok = true, status = 200 } }, { status, body.webhook })
    local e = sail.eventually(function() return user("new.user") end, 10, "new.user in Port")
    assert.are.same({ "New User", { team = "mobile" }, DS }, { e.title, e.relations, e.datasource })

    status, body = api.call("PATCH", "/users/new.user", { role = "admin" })
    assert.are.same({ 200, { ok = true, status = 200 } }, { status, body.webhook })
    sail.eventually(function() return user("new.user").properties.role == "admin" end, 10, "the role")

    -- deactivated: the user read again fails the selector, so it is deleted
    status, body = api.call("PATCH", "/users/alan.smith", { active = false })
    assert.are.same({ 200, true }, { status, body.webhook.ok })
    sail.eventually(function() return not user("alan.smith") end, 10, "alan.smith deleted")

    status, body = api.call("DELETE", "/users/grace.smith")
    assert.are.same({ 200, true }, { status, body.webhook.ok })
    sail.eventually(function() return not user("grace.smith") end, 10, "grace.smith deleted")

    -- an event read from the API at apply time: the webhook's copy is stale
    local s2, text = p:http("POST", "/integration/webhook", { body = { action = "updated",
      user = { login = "linus.garcia", name = "Stale Name" } },
      headers = { ["Content-Type"] = "application/json", ["X-Webhook-Secret"] = "fake-api-secret" } })
    assert.are.same({ 200, { status = "ok" } }, { s2, json.decode(text) })

    -- a forged sender, a payload the processor refuses, then invalid JSON
    s2, text = p:http("POST", "/integration/webhook", { body = { action = "deleted", user = { login = "ada.smith" } },
      headers = { ["Content-Type"] = "application/json", ["X-Webhook-Secret"] = "guess" } })
    assert.are.same({ 401, { status = "error", message = "authentication failed" } }, { s2, json.decode(text) })
    s2, text = p:http("POST", "/integration/webhook", { body = { action = "created" },
      headers = { ["Content-Type"] = "application/json", ["X-Webhook-Secret"] = "fake-api-secret" } })
    assert.are.same({ 400, { status = "error", message = "invalid payload" } }, { s2, json.decode(text) })
    s2 = p:http("POST", "/integration/webhook", { body = "{",
      headers = { ["Content-Type"] = "application/json" } })
    assert.are.equal(400, s2)
    local le = sail.eventually(function()
      local _, t = p:http("GET", "/integration/health")
      local x = json.decode(t).live_events
      return x.applied == 5 and x.pending == 0 and x
    end, 10, "every event applied")
    assert.are.same({ 5, 0, 0 }, { le.received, le.failed, le.dead })
    assert.are.equal("Linus Garcia", user("linus.garcia").title)
    assert.is_table(user("ada.smith"))

    -- a resync then finds Port equal to the API (a fresh one: ada.smith,
    -- deleted from the previous one, is back)
    emu.clear_requests()
    assert.are.equal(202, (p:http("POST", "/integration/resync")))
    local h = sail.eventually(function()
      local _, t = p:http("GET", "/integration/health")
      local x = json.decode(t)
      return x.resyncs == 1 and x
    end, 15, "the resync")
    assert.are.same({ status = "completed", created = 0, updated = 0, unchanged = 49, deleted = 0,
                      failed = 0 }, h.last_resync)
    local users = by_id(emu.entities("fakeApiUser"))
    assert.are.equal(44, count(users))
    assert.is_table(users["ada.smith"])
    assert.is_table(users["new.user"])
    assert.are.equal(0, bulk_upserts(emu))
    assert.are.equal(0, (p:stop()))
  end)
end)
