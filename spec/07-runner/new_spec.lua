-- `ocean new [PATH]` (issue 13, deliverable 2): the scaffold is written,
-- `ocean sail PATH --once` syncs it into the emulator right away, and the
-- scaffold's own busted spec passes (on the runtime the suite runs on).
local ehelp = require "spec.helpers.emulator"
local sail = require "spec.helpers.sail"
local yaml = require "ocean.yaml"
local json = require "ocean.json"

local q, read_file, sh = ehelp.shell_quote, ehelp.read_file, ehelp.sh

local FILES = { ".port/spec.yaml", ".port/resources/port-app-config.yml",
                ".port/resources/blueprints.json", "config.yaml", "main.lua",
                "README.md", "spec/integration_spec.lua" }

local function ocean_cmd()
  return sail.runtime() .. " " .. q(ehelp.root() .. "/bin/ocean")
end

describe("ocean new", function()
  local tmp
  before_each(function() tmp = ehelp.tmpdir() end)
  after_each(function() os.execute("rm -rf " .. q(tmp)) end)
  teardown(function()
    sail.stop_all()
    ehelp.stop_all()
  end)

  it("scaffolds an integration that syncs into the emulator at once, and whose spec passes", function()
    local dir = tmp .. "/acme"
    local r = sail.run({ "new", dir, "--name", "Acme Things" })
    assert.are.equal(0, r.rc, r.err)
    assert.are.equal("created " .. dir .. ': integration "Acme Things" (type acme-things),'
      .. " kind item -> blueprint acme-things-item\n", r.out:match("^[^\n]*\n"))
    for _, f in ipairs(FILES) do
      assert.truthy(read_file(dir .. "/" .. f), f .. " is missing")
    end
    local spec = assert(yaml.load(read_file(dir .. "/.port/spec.yaml")))
    assert.are.equal("acme-things", spec.type)
    assert.are.equal("item", spec.features[1].resources[1].kind)

    -- ocean sail PATH --once, right after scaffolding
    local emu = ehelp.start { quiet = true }
    r = sail.run({ "sail", dir, "--once" }, { OCEAN__PORT__BASE_URL = emu.url,
      OCEAN__PORT__CLIENT_ID = emu.client_id, OCEAN__PORT__CLIENT_SECRET = emu.client_secret })
    assert.are.equal(0, r.rc, r.out .. r.err)
    local entities = emu.entities("acme-things-item")
    assert.are.equal(25, #entities)
    local status, integ = emu.api("GET", "/v1/integration/my-acme-things-integration")
    assert.are.equal(200, status)
    assert.are.equal("acme-things", integ.integration.installationAppType)
    assert.are.equal('"acme-things-item"',
      integ.integration.config.resources[1].port.entity.mappings.blueprint)
    assert.truthy(entities[1].datasource:find("^port%-ocean/acme%-things/"), entities[1].datasource)
    emu.stop()

    -- the scaffold's own spec (it starts its own emulator), from a clean
    -- environment: no LUA_PATH/LUA_CPATH, lua-ocean found through `ocean path`
    local build = os.getenv("OCEAN_CORE_BUILD")
    local out = sh(("cd %s && env -i PATH=%s HOME=%s %s OCEAN_CMD=%s busted --lua=%s -o utfTerminal spec 2>&1;"
      .. " echo \"rc=$?\""):format(q(dir), q(os.getenv("PATH")), q(os.getenv("HOME") or "/tmp"),
      build and ("OCEAN_CORE_BUILD=" .. q(build)) or "", q(ocean_cmd()), sail.runtime()))
    assert.truthy(out:find("3 successes / 0 failures / 0 errors", 1, true), out)
    assert.truthy(out:find("rc=0\n$"), out)
    -- and the generated Lua is lint-clean
    out = sh(("cd %s && luacheck --no-color --std=max+busted main.lua spec 2>&1; echo \"rc=$?\""):format(q(dir)))
    assert.truthy(out:find("Total: 0 warnings / 0 errors in 2 files", 1, true), out)
  end)

  it("asks its questions on a terminal, re-asking after an invalid answer", function()
    local dir = tmp .. "/widgets"
    local answers = tmp .. "/answers"
    local f = assert(io.open(answers, "w"))
    f:write("Widget Works\nBad Type\n\nCounts widgets\nwidget\n\n")
    f:close()
    local out = sh(("SHELL=/bin/sh script -qec %s /dev/null < %s 2>&1; echo \"rc=$?\""):format(
      q(ocean_cmd() .. " new " .. q(dir)), q(answers)))
    assert.truthy(out:find("rc=0", 1, true), out)
    assert.truthy(out:find("Integration name [Widgets]: ", 1, true), out)
    assert.truthy(out:find("type must be lower case letters, digits and -", 1, true), out)
    assert.truthy(out:find("Blueprint of its entities [widget-works-widget]: ", 1, true), out)
    local spec = assert(yaml.load(read_file(dir .. "/.port/spec.yaml")))
    assert.are.equal("widget-works", spec.type)
    assert.are.equal("Counts widgets", spec.description)
    local bps = assert(json.decode(read_file(dir .. "/.port/resources/blueprints.json")))
    assert.are.equal("widget-works-widget", bps[1].identifier)
    assert.are.equal("Widget Works", bps[1].title)
    assert.truthy(read_file(dir .. "/main.lua"):find('local KIND = "widget"', 1, true))
  end)

  it("takes flags and defaults without a terminal, and asks nothing", function()
    local dir = tmp .. "/x"
    local r = sail.run({ "new", dir, "--type", "billing", "--kind", "invoice",
      "--blueprint", "billingInvoice", "--description", "Invoices from Billing Co" })
    assert.are.equal(0, r.rc, r.err)
    assert.is_nil(r.out:find("[", 1, true))
    local spec = assert(yaml.load(read_file(dir .. "/.port/spec.yaml")))
    assert.are.same({ "billing", "Invoices from Billing Co" }, { spec.type, spec.description })
    local mapping = assert(yaml.load(read_file(dir .. "/.port/resources/port-app-config.yml")))
    assert.are.equal("invoice", mapping.resources[1].kind)
    assert.are.equal('"billingInvoice"', mapping.resources[1].port.entity.mappings.blueprint)
    assert.are.equal("my-billing-integration",
      assert(yaml.load(read_file(dir .. "/config.yaml"))).integration.identifier)
  end)

  it("writes ./TYPE when no PATH is given", function()
    local out = sh(("cd %s && %s new --name 'Zed Co' < /dev/null 2>&1; echo \"rc=$?\""):format(
      q(tmp), ocean_cmd()))
    assert.truthy(out:find("rc=0", 1, true), out)
    assert.truthy(read_file(tmp .. "/zed-co/main.lua"))
  end)

  it("never overwrites a file unless --force", function()
    local dir = tmp .. "/keep"
    os.execute("mkdir -p " .. q(dir))
    local f = assert(io.open(dir .. "/main.lua", "w"))
    f:write("-- mine\n")
    f:close()
    local r = sail.run({ "new", dir })
    assert.are.same({ 1, "", "ocean new: " .. dir .. " already has main.lua (--force overwrites them)\n" },
      { r.rc, r.out, r.err })
    assert.are.equal("-- mine\n", read_file(dir .. "/main.lua"))
    assert.is_nil(read_file(dir .. "/config.yaml"))
    r = sail.run({ "new", dir, "--force" })
    assert.are.equal(0, r.rc, r.err)
    assert.truthy(read_file(dir .. "/main.lua"):find("ocean.on_resync", 1, true))
  end)

  local bad = {        -- @ is a fresh folder
    { { "@", "--type", "Bad Type" }, 'ocean new: --type "Bad Type": must be lower case letters, digits and -'
        .. " (it goes in the User-Agent)\n" },
    { { "@", "--blueprint", "a b" }, 'ocean new: --blueprint "a b": must be letters, digits and @_=-\n' },
    { { "@", "--kind=" }, 'ocean new: --kind "": must be letters, digits, _ . and -\n' },
    { { "@", "--type" }, "ocean new: --type needs a value\n(see ocean new --help)\n" },
    { { "@", "--colour", "red" }, "ocean new: unknown option --colour\n(see ocean new --help)\n" },
    { { "@", "b" }, "ocean new: more than one PATH given\n(see ocean new --help)\n" },
  }
  for _, case in ipairs(bad) do
    it("refuses " .. table.concat(case[1], " ") .. " with exit status 2, naming it", function()
      local args = { "new" }
      for _, a in ipairs(case[1]) do args[#args + 1] = a == "@" and (tmp .. "/never") or a end
      local r = sail.run(args)
      assert.are.same({ 2, "", case[2] }, { r.rc, r.out, r.err })
      assert.is_nil(read_file(tmp .. "/never/main.lua"))
    end)
  end
end)
