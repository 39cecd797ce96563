-- `ocean port-emulator`: its command line and its persistence (--data).
local json = require "ocean.json"
local helpers = require "spec.helpers.emulator"

local q = helpers.shell_quote
local UA = "port-ocean/github/1.2.3/my-gh/exporter"

-- Run the command; returns exit code, stdout, stderr.
local function run(args)
  local dir = helpers.tmpdir()
  local rc = helpers.sh(("env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 "
    .. "lua5.4 %s port-emulator %s > %s/out 2> %s/err < /dev/null; echo $?")
    :format(q(helpers.root() .. "/bin/ocean"), args, dir, dir))
  local out, err = helpers.read_file(dir .. "/out"), helpers.read_file(dir .. "/err")
  os.execute("rm -rf " .. q(dir))
  return tonumber(rc), out, err
end

teardown(helpers.stop_all)

describe("ocean port-emulator command line", function()
  it("prints its usage with --help", function()
    local rc, out = run("--help")
    assert.are.equal(0, rc)
    assert.are.equal("usage: ocean port-emulator [options]\n", out:match("^[^\n]*\n"))
    assert.truthy(out:find("--page-limit N", 1, true))
  end)

  local bad = {
    { "--bogus", "unknown option '--bogus'" },
    { "--listen nope", "--listen wants HOST:PORT, got 'nope'" },
    { "--listen 127.0.0.1:99999", "--listen wants HOST:PORT, got '127.0.0.1:99999'" },
    { "--token-ttl", "--token-ttl needs a value" },
    { "--page-limit=0", "--page-limit needs a positive integer" },
  }
  for _, c in ipairs(bad) do
    it("exits 2 on " .. c[1], function()
      local rc, out, err = run(c[1])
      assert.are.same({ 2, "", "ocean port-emulator: " .. c[2] .. "\n(see ocean port-emulator --help)\n" },
        { rc, out, err })
    end)
  end

  it("announces where it listens", function()
    local emu = helpers.start{}
    assert.are.equal(("port-emulator listening on http://127.0.0.1:%d\n"):format(emu.port),
      emu.output():match("^[^\n]*\n"))
    emu.stop()
  end)

  it("exits 1 when its port is taken", function()
    local emu = helpers.start{}
    local rc, _, err = run("--listen 127.0.0.1:" .. emu.port)
    emu.stop()
    assert.are.same({ 1, ("ocean port-emulator: cannot listen on 127.0.0.1:%d: Address already in use\n")
      :format(emu.port) }, { rc, err })
  end)

  it("prints no access log with --quiet", function()
    local emu = helpers.start{ quiet = true }
    emu.api("GET", "/v1/blueprints/x")
    local out = emu.stop()
    assert.are.equal(("port-emulator listening on http://127.0.0.1:%d\n"):format(emu.port), out)
  end)
end)

describe("ocean port-emulator --data", function()
  local dir, data

  before_each(function()
    dir = helpers.tmpdir()
    data = dir .. "/catalog.json"
  end)
  after_each(function()
    helpers.stop_all()
    os.execute("rm -rf " .. q(dir))
  end)

  local function populate(emu)
    assert.are.equal(201, (emu.api("POST", "/v1/blueprints", { identifier = "team" })))
    assert.are.equal(200, (emu.api("POST", "/v1/integration", { installationId = "my-gh",
      config = { resources = json.array{} } })))
    assert.are.equal(200, (emu.api("POST", "/v1/blueprints/team/entities/bulk?upsert=true",
      { entities = json.array{ { identifier = "a", properties = { n = 1 } },
                               { identifier = "b" } } }, { user_agent = UA })))
    assert.are.equal(200, (emu.api("POST", "/v1/blueprints/team/bulk/entities/delete",
      { entities = json.array{ "b" } })))
    emu.resync_request("my-gh")
    return emu.entities()
  end

  local function check(before)
    local emu = helpers.start{ data = data }
    assert.are.same(before, emu.entities())
    assert.are.equal(200, (emu.api("GET", "/v1/blueprints/team")))
    local _, it = emu.api("GET", "/v1/integration/my-gh")
    assert.are.same({ resources = {} }, it.integration.config)
    local _, rr = emu.api("GET", "/v1/integration/my-gh/resync-request")
    assert.are.equal("string", type(rr.request.updatedAt))
    return emu
  end

  for _, signal in ipairs({ "KILL", "TERM", "INT" }) do
    it("loses nothing it acknowledged when killed with SIG" .. signal, function()
      local emu = helpers.start{ data = data }
      local before = populate(emu)
      assert.is_true(emu.kill(signal))
      helpers.stop_all()
      check(before)
    end)
  end

  it("writes a snapshot and empties the journal when it stops", function()
    local emu = helpers.start{ data = data }
    local before = populate(emu)
    emu.stop()
    local snap = json.decode(helpers.read_file(data))
    assert.are.equal("ocean-port-emulator/1", snap.format)
    assert.are.same({ "a" }, { snap.entities[1].identifier, snap.entities[2] })
    assert.are.equal("", helpers.read_file(data .. ".journal"))
    check(before)
  end)

  it("keeps time stamps increasing across restarts", function()
    local emu = helpers.start{ data = data }
    local before = populate(emu)
    emu.stop()
    local again = check(before)
    again.api("POST", "/v1/blueprints/team/entities/bulk?upsert=true&merge=true",
      { entities = json.array{ { identifier = "a" } } })
    assert.is_true(again.entities()[1].updatedAt > before[1].updatedAt)
  end)

  it("persists a reset", function()
    local emu = helpers.start{ data = data }
    populate(emu)
    emu.reset()
    emu.kill("KILL")
    helpers.stop_all()
    local again = helpers.start{ data = data }
    assert.are.same({}, again.entities())
    assert.are.equal(404, (again.api("GET", "/v1/blueprints/team")))
  end)

  it("refuses a data file that is not its own", function()
    local f = assert(io.open(data, "w"))
    f:write('{"something":"else"}')
    f:close()
    local ok, err = pcall(helpers.start, { data = data })
    assert.is_false(ok)
    assert.truthy(err:find("the port emulator exited before it was ready:\n"
      .. "ocean port-emulator: " .. data
      .. ': not an emulator data file (no "format": "ocean-port-emulator/1")', 1, true), err)
    assert.are.equal('{"something":"else"}', helpers.read_file(data))
  end)
end)
