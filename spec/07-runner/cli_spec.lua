-- The `ocean` command: --version, help, and how `ocean sail` refuses to
-- start (bad arguments, missing settings, wrong credentials).
local core = require "ocean.core"
local ehelp = require "spec.helpers.emulator"
local sail = require "spec.helpers.sail"

local ITEMS = ehelp.root() .. "/spec/fixtures/items"
local DPKG = ehelp.root() .. "/examples/dpkg"

teardown(function()
  sail.stop_all()
  ehelp.stop_all()
end)

describe("ocean", function()
  it("prints its version with --version", function()
    local r = sail.run({ "--version" })
    assert.are.same({ 0, "ocean " .. core.version .. "\n", "" }, { r.rc, r.out, r.err })
  end)

  it("prints its usage with --help, and with no command (exit 2)", function()
    local r = sail.run({ "--help" })
    assert.are.equal(0, r.rc)
    assert.are.equal("usage: ocean <command> [options]\n", r.out:match("^[^\n]*\n"))
    assert.truthy(r.out:find("\n  sail [PATH]", 1, true))
    r = sail.run({})
    assert.are.equal(2, r.rc)
    assert.are.equal("usage: ocean <command> [options]\n", r.out:match("^[^\n]*\n"))
  end)

  it("rejects an unknown command", function()
    local r = sail.run({ "sale" })
    assert.are.equal(2, r.rc)
    assert.are.equal("ocean: unknown command 'sale'\n", r.err:match("^[^\n]*\n"))
  end)
end)

describe("ocean sail", function()
  it("prints its usage with --help", function()
    local r = sail.run({ "sail", "--help" })
    assert.are.equal(0, r.rc)
    assert.are.equal("", r.err)
    assert.are.equal(
      "usage: ocean sail [PATH] [-O] [-p N] [-l LEVEL] [-i BOOL] [--host ADDR] [--plan]\n",
      r.out:match("^[^\n]*\n"))
    for _, opt in ipairs { "--once", "--plan", "--port N", "--host ADDR", "--log-level LEVEL",
                           "OCEAN__PORT__CLIENT_SECRET" } do
      assert.truthy(r.out:find(opt, 1, true), opt)
    end
  end)

  local bad = {
    { { "--bogus" }, "unknown option --bogus" },
    { { "--port" }, "--port needs a value" },
    { { "--port", "http" }, "--port: not a port number: http" },
    { { "--port", "70000" }, "--port: not a port number: 70000" },
    { { "a", "b" }, "more than one PATH given" },
  }
  for _, c in ipairs(bad) do
    it("exits 2 on " .. table.concat(c[1], " "), function()
      local args = { "sail" }
      for _, a in ipairs(c[1]) do args[#args + 1] = a end
      local r = sail.run(args)
      assert.are.equal(2, r.rc)
      assert.are.equal("", r.out)
      assert.are.equal("ocean sail: " .. c[2] .. "\n", r.err:match("^[^\n]*\n"))
    end)
  end

  it("exits 1 on a folder that is not an integration", function()
    local r = sail.run({ "sail", "/nonexistent", "--once" })
    assert.are.same({ 1, "",
      "ocean sail: /nonexistent is not an integration folder (it has no main.lua)\n" },
      { r.rc, r.out, r.err })
  end)
end)

describe("ocean sail settings", function()
  local emu
  setup(function() emu = ehelp.start { quiet = true } end)
  teardown(function() emu.stop() end)

  local function env(extra, without)
    local e = {
      OCEAN__PORT__BASE_URL = emu.url,
      OCEAN__PORT__CLIENT_ID = emu.client_id,
      OCEAN__PORT__CLIENT_SECRET = emu.client_secret,
      OCEAN__INTEGRATION__CONFIG__ITEMS_FILE = "/dev/null",
    }
    for k, v in pairs(extra or {}) do e[k] = v end
    for _, k in ipairs(without or {}) do e[k] = nil end
    return e
  end

  -- One line on stderr naming the setting, exit 1, nothing sent to Port.
  local missing = {
    { "OCEAN__PORT__CLIENT_ID",
      "missing Port client id: set OCEAN__PORT__CLIENT_ID (or port.clientId in config.yaml)" },
    { "OCEAN__PORT__CLIENT_SECRET",
      "missing Port client secret: set OCEAN__PORT__CLIENT_SECRET (or port.clientSecret in config.yaml)" },
    { "OCEAN__INTEGRATION__CONFIG__ITEMS_FILE",
      "missing integration setting 'itemsFile': set OCEAN__INTEGRATION__CONFIG__ITEMS_FILE"
        .. " (or integration.config.itemsFile in config.yaml)" },
  }
  for _, c in ipairs(missing) do
    it("stops the start when " .. c[1] .. " is missing, naming it", function()
      emu.clear_requests()
      local r = sail.run({ "sail", ITEMS, "--once" }, env(nil, { c[1] }))
      assert.are.same({ 1, "", "ocean sail: " .. c[2] .. "\n" }, { r.rc, r.out, r.err })
      assert.are.same({}, emu.requests())
    end)
  end

  it("stops the start on an invalid setting, naming it", function()
    local r = sail.run({ "sail", ITEMS }, env { OCEAN__EVENT_LISTENER__TYPE = "KAFKA" })
    assert.are.equal(1, r.rc)
    assert.are.equal("ocean sail: invalid OCEAN__EVENT_LISTENER__TYPE:"
      .. ' "KAFKA" is an Ocean listener lua-ocean does not support'
      .. " (use POLLING, ONCE, WEBHOOKS_ONLY or WEBHOOK)\n", r.err)
  end)

  for _, mode in ipairs { { "--once" }, {} } do
    local name = #mode > 0 and "--once" or "the POLLING listener"
    it("exits 1 within seconds on a wrong client secret (" .. name .. "), never printing it", function()
      local secret = "wrong-secret-7f3a9c"
      local args = { "sail", DPKG, "--port", tostring(sail.free_port()), "--host", "127.0.0.1" }
      for _, a in ipairs(mode) do args[#args + 1] = a end
      local t0 = core.monotonic_ms()
      local r = sail.run(args, env({ OCEAN__PORT__CLIENT_SECRET = secret,
                                     OCEAN__INTEGRATION__CONFIG__STATUS_FILE = "/dev/null" },
                                   { "OCEAN__INTEGRATION__CONFIG__ITEMS_FILE" }))   -- dpkg has none
      local elapsed = core.monotonic_ms() - t0
      assert.are.equal(1, r.rc)
      assert.is_true(elapsed < 5000, ("took %.0f ms"):format(elapsed))
      assert.are.equal("", r.out)
      assert.matches("^ocean sail: cannot read the integration from Port: invalid Port credentials "
        .. "%(client id 'emulator%-client%-id'%): Port answered 401 invalid_credentials: "
        .. "invalid client id or client secret %(trace id %x+%)\n$", r.err)
      assert.is_nil((r.out .. r.err):find(secret, 1, true))
    end)
  end

  -- --help: -O is the same as OCEAN__EVENT_LISTENER__TYPE=ONCE, so --plan
  -- takes either; with another listener it is a usage error, nothing sent
  it("plans with --plan under OCEAN__EVENT_LISTENER__TYPE=ONCE as under -O, writing nothing", function()
    for _, c in ipairs { { { "-O", "--plan" }, {} },
                         { { "--plan" }, { OCEAN__EVENT_LISTENER__TYPE = "ONCE" } } } do
      emu.clear_requests()
      local args = { "sail", ITEMS }
      for _, a in ipairs(c[1]) do args[#args + 1] = a end
      local items = os.tmpname()
      local f = assert(io.open(items, "w"))
      f:write('[{"id": "a", "title": "A"}]')
      f:close()
      c[2].OCEAN__INTEGRATION__CONFIG__ITEMS_FILE = items
      local r = sail.run(args, env(c[2]))
      os.remove(items)
      assert.are.equal(0, r.rc, r.err)
      assert.truthy(r.out:find("\nplan: would create ", 1, true) or r.out:find("^plan: would create "), r.out)
      for _, req in ipairs(emu.requests()) do
        local read = req.method == "GET" or req.path == "/v1/auth/access_token"
          or req.path == "/v1/blueprints/entities/datasource-entities"
        assert.is_true(read, req.method .. " " .. req.path)
      end
    end
  end)

  for _, t in ipairs { "POLLING", "WEBHOOKS_ONLY" } do
    it("exits 2 on --plan with the " .. t .. " listener, naming it, before any Port call", function()
      emu.clear_requests()
      local r = sail.run({ "sail", ITEMS, "--plan" }, env { OCEAN__EVENT_LISTENER__TYPE = t })
      assert.are.same({ 2, "", "ocean sail: --plan needs --once (or OCEAN__EVENT_LISTENER__TYPE=ONCE; "
        .. "the listener is " .. t .. ")\nsee ocean sail --help\n" }, { r.rc, r.out, r.err })
      assert.are.same({}, emu.requests())
    end)
  end

  it("exits 1 when its HTTP port is taken, before writing to Port", function()
    local port = sail.free_port()
    local p = sail.start({ "sail", ITEMS, "--port", tostring(port), "--host", "127.0.0.1" },
      env { OCEAN__EVENT_LISTENER__TYPE = "WEBHOOKS_ONLY",
            OCEAN__INTEGRATION__IDENTIFIER = "port-taken" }, { port = port })
    p:wait_ready()
    emu.clear_requests()
    local r = sail.run({ "sail", ITEMS, "--port", tostring(port), "--host", "127.0.0.1" },
      env { OCEAN__EVENT_LISTENER__TYPE = "WEBHOOKS_ONLY",
            OCEAN__INTEGRATION__IDENTIFIER = "port-taken-2" })
    assert.are.same({ 1, ("ocean sail: cannot listen on 127.0.0.1:%d: Address already in use\n")
      :format(port) }, { r.rc, r.err })
    assert.are.same({}, emu.requests())
    assert.are.equal(0, (p:stop()))
  end)
end)
