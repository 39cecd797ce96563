-- `ocean sail --once` tells the truth (issue 10): the README's own
-- integration, run against the fake API and the emulator, fails a kind on
-- a 401 and deletes nothing (exit 1); entities Port rejects are listed and
-- exit 3; retries are logged while Port is unreachable at start; a
-- running kind says its progress.
local ehelp = require "spec.helpers.emulator"
local fake = require "spec.helpers.fake_api"
local sail = require "spec.helpers.sail"

local q, read_file = ehelp.shell_quote, ehelp.read_file
local EXAMPLE = ehelp.root() .. "/examples/fake-api"

-- The README's main.lua: the first ```lua block of "Writing an integration".
local function readme_main()
  local text = assert(read_file(ehelp.root() .. "/README.md"))
  local section = assert(text:match("\n## Writing an integration\n(.-)\n## "))
  return assert(section:match("```lua\n(.-)```"))
end

-- An integration folder: the fake-api example's .port, with main.lua.
local function folder(main)
  local dir = ehelp.tmpdir()
  os.execute(("cp -r %s %s"):format(q(EXAMPLE .. "/.port"), q(dir .. "/.port")))
  local f = assert(io.open(dir .. "/main.lua", "w"))
  f:write(main)
  f:close()
  return dir
end

local function by_id(list)
  local out = {}
  for _, e in ipairs(list) do out[e.identifier] = e end
  return out
end

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

describe("ocean sail --once tells the truth", function()
  local emu, api, env, dir

  setup(function()
    emu = ehelp.start { quiet = true }
    api = fake.start()
    dir = folder(readme_main())
    env = {
      OCEAN__PORT__BASE_URL = emu.url,
      OCEAN__PORT__CLIENT_ID = emu.client_id,
      OCEAN__PORT__CLIENT_SECRET = emu.client_secret,
      OCEAN__INTEGRATION__IDENTIFIER = "readme-integration",
      OCEAN__INTEGRATION__CONFIG__API_URL = api.url,
    }
  end)
  teardown(function()
    sail.stop_all()
    fake.stop_all()
    ehelp.stop_all()
    os.execute("rm -rf " .. q(dir))
  end)

  it("runs the README's integration: exit 0, the catalog written", function()
    local r = sail.run({ "sail", dir, "--once" }, env)
    assert.are.equal(0, r.rc, r.err)
    assert.are.equal("resync completed: created 50, updated 0, unchanged 0, deleted 0, failed 0\n",
      r.out:match("^[^\n]*\n"))
    assert.are.same({ 5, 45 }, { count(by_id(emu.entities("fakeApiTeam"))),
                                 count(by_id(emu.entities("fakeApiUser"))) })
  end)

  it("fails the kind on a 401 from the API with the README's get_json, and deletes nothing",
    function()
      api.call("DELETE", "/users/ada.smith")      -- gone at the source
      api.faults { { path = "^/teams$", status = 401, body = { message = "token expired" } } }
      local r = sail.run({ "sail", dir, "--once" }, env)
      api.faults()
      assert.are.equal(1, r.rc, r.err)
      assert.truthy(r.out:find("^resync failed: created 0, updated 0, unchanged 44, deleted 0, "
        .. "failed 0\n"), r.out)
      assert.truthy(r.out:find("\n  error: kind 'team': ", 1, true) == nil)
      assert.truthy(r.out:find("\n  error: resync function for kind 'team' returned nil, GET "
        .. api.url .. '/teams: HTTP 401 {"message":"token expired"}\n', 1, true), r.out)
      assert.truthy(r.out:find("\n  deletion skipped (6 candidates): 1 error(s) during the resync",
        1, true), r.out)
      assert.truthy(r.err:find("WARNING deletion skipped: 1 error(s) during the resync: the state is "
        .. "incomplete (failed: kind 'team') (6 deletion candidates stay)", 1, true), r.err)
      -- the five teams and ada.smith are still there
      assert.are.equal(5, count(by_id(emu.entities("fakeApiTeam"))))
      assert.is_table(by_id(emu.entities("fakeApiUser"))["ada.smith"])
      local _, body = emu.api("GET", "/v1/integration/readme-integration")
      assert.are.equal("failed", body.integration.resyncState.status)
    end)

  it("lists the entities Port rejected and exits 3", function()
    api.reset()
    api.call("POST", "/users", { login = "bad.date", name = "Bad Date", email = "bad.date@example.com",
      role = "member", team = "data", active = true, joined_at = 20240102 })
    local r = sail.run({ "sail", dir, "--once" }, env)
    assert.are.equal(3, r.rc, r.err)
    local first = r.out:match("^[^\n]*\n")
    assert.truthy(first:find("^resync completed with failures: created %d+, updated 0, unchanged "
      .. "%d+, deleted 0, failed 1\n$"), first)
    assert.truthy(r.out:find("\n  rejected fakeApiUser/bad.date (kind 'user'): 422 "
      .. "invalid_property_type: ", 1, true), r.out)
    assert.truthy(r.err:find("WARNING kind 'user': Port rejected 1 entity\n", 1, true), r.err)
    assert.truthy(r.err:find("WARNING kind 'user': 1 rejected with 422 invalid_property_type (", 1,
      true), r.err)
    local _, body = emu.api("GET", "/v1/integration/readme-integration")
    assert.are.equal("completed", body.integration.resyncState.status)
    api.reset()
  end)

  it("says the same in plan mode: a kind that fails exits 1, naming the error", function()
    api.faults { { path = "^/teams$", status = 401, body = { message = "token expired" } } }
    local r = sail.run({ "sail", dir, "--once", "--plan" }, env)
    api.faults()
    assert.are.equal(1, r.rc, r.err)
    assert.truthy(r.out:find("^plan failed %(incomplete%): would create 0, update 0, delete 0; 45 "
      .. "unchanged\n"), r.out)
    assert.truthy(r.err:find("INFO    resync [%x-]+ plan failed: would create 0, update 0, delete 0; "
      .. "unchanged 45, failed 0 %(1 errors%)\n"), r.err)
    assert.is_nil(r.err:find(" failed: created ", 1, true), r.err)
    assert.truthy(r.out:find("\n  error: resync function for kind 'team' returned nil, GET "
      .. api.url .. '/teams: HTTP 401 {"message":"token expired"}\n', 1, true), r.out)
  end)

  it("logs each retry while Port is unreachable at start", function()
    local port = sail.free_port()            -- nothing listens there
    local env2 = {}
    for k, v in pairs(env) do env2[k] = v end
    env2.OCEAN__PORT__BASE_URL = "http://127.0.0.1:" .. port
    local p = sail.start({ "sail", dir, "--once" }, env2)
    local err = sail.eventually(function()
      local _, e = p:output()
      return select(2, e:gsub("WARNING retrying Port POST /v1/auth/access_token", "")) >= 3 and e
    end, 15, "three retry lines")
    p:stop("KILL")
    -- 300 ms, then 600 ms, +- 10 % (jitter)
    local w2 = tonumber(err:match("WARNING retrying Port POST /v1/auth/access_token in (%d+) ms "
      .. "%(attempt 2 of at most 11, within 120%.0 s of waiting%): "))
    local w3 = tonumber(err:match("WARNING retrying Port POST /v1/auth/access_token in (%d+) ms "
      .. "%(attempt 3 of at most 11, within 120%.0 s of waiting%): "))
    assert.is_true(w2 >= 270 and w2 <= 330, err)
    assert.is_true(w3 >= 540 and w3 <= 660, err)
    assert.truthy(err:find("Couldn't connect to server", 1, true), err)
  end)

  it("says when each kind starts and its progress while it runs", function()
    local slow = folder([[
local ocean = require "ocean"
local url = ocean.integration_config.api_url
ocean.on_resync("team", function() return ocean.http.get_json(url .. "/teams") end)
ocean.on_resync("user", function()
  for page in ocean.http.paginate(url .. "/users", { query = { per_page = 10 } }) do
    assert(ocean.http.get(url .. "/slow?ms=150"))
    coroutine.yield(page)
  end
end)
]])
    local env2 = {}
    for k, v in pairs(env) do env2[k] = v end
    env2.OCEAN__LOG__PROGRESS_INTERVAL = "0.2"
    local r = sail.run({ "sail", slow, "--once" }, env2)
    os.execute("rm -rf " .. q(slow))
    assert.are.equal(0, r.rc, r.err)
    assert.truthy(r.err:find("INFO    kind 'team' started (resource 1 of 2, selector: true)\n", 1,
      true), r.err)
    assert.truthy(r.err:find("INFO    kind 'user' started (resource 2 of 2, selector: .active)\n",
      1, true), r.err)
    local n = 0
    for _ in r.err:gmatch("INFO    kind 'user': %d+ objects read, %d+ entities, %d+ upserts "
      .. "answered by Port %(%d+ queued%), 0 failed, %d+ objects/s %(%d+ s%)\n") do n = n + 1 end
    assert.is_true(n >= 2, r.err)
  end)
end)
