-- `ocean defaults dock|clean` (issue 13, deliverable 3) against the
-- emulator: the blueprints and the default mapping created, the local
-- mapping pushed with --update-mapping (and then used by `ocean sail`),
-- the blueprints and their entities deleted only when asked for.
local ehelp = require "spec.helpers.emulator"
local json = require "ocean.json"
local sail = require "spec.helpers.sail"

local q = ehelp.shell_quote
local ITEMS = ehelp.root() .. "/spec/fixtures/items"

local BLUEPRINTS = json.encode {
  { identifier = "specGroup", title = "Group", schema = { properties = {} } },
  { identifier = "specItem", title = "Item",
    schema = { properties = { size = { type = "number" } } },
    relations = { group = { target = "specGroup", required = false, many = false } } },
}

local function mapping(query)
  return ([[
createMissingRelatedEntities: true
resources:
  - kind: item
    selector:
      query: '%s'
    port:
      entity:
        mappings:
          identifier: .id
          title: .name
          blueprint: '"specItem"'
          properties:
            size: .size
]]):format(query)
end

teardown(function()
  sail.stop_all()
  ehelp.stop_all()
end)

describe("ocean defaults", function()
  local emu, dir, items_file, n = nil, nil, nil, 0
  setup(function()
    emu = ehelp.start { quiet = true }
    items_file = ehelp.tmpdir() .. "/items.json"
    ehelp.write_file(items_file, json.encode { { id = "a", name = "A", size = 1 },
                                               { id = "b", name = "B", size = 2 } })
  end)
  teardown(function() emu.stop() end)

  local env
  before_each(function()
    emu.reset()
    emu.clear_requests()
    dir = ehelp.tmpdir()
    os.execute(("cp -r %s/. %s"):format(q(ITEMS), q(dir)))
    ehelp.write_file(dir .. "/.port/resources/blueprints.json", BLUEPRINTS)
    ehelp.write_file(dir .. "/.port/resources/port-app-config.yml", mapping(".size > 0"))
    n = n + 1
    env = {
      OCEAN__PORT__BASE_URL = emu.url,
      OCEAN__PORT__CLIENT_ID = emu.client_id,
      OCEAN__PORT__CLIENT_SECRET = emu.client_secret,
      OCEAN__INTEGRATION__CONFIG__ITEMS_FILE = items_file,
      OCEAN__INTEGRATION__IDENTIFIER = "defaults-" .. n,
    }
  end)
  after_each(function() os.execute("rm -rf " .. q(dir)) end)

  local function get(path)
    local status, text = ehelp.http("GET", emu.url .. "/v1" .. path,
      { headers = { Authorization = "Bearer " .. emu.token() } })
    return status, text ~= "" and json.decode(text) or nil
  end

  local function port_mapping()
    local status, body = get("/integration/" .. env.OCEAN__INTEGRATION__IDENTIFIER)
    assert.are.equal(200, status)
    return body.integration.config
  end

  local function deletions()
    local out = {}
    for _, r in ipairs(emu.requests()) do
      if r.method == "DELETE" then out[#out + 1] = r.path end
    end
    return out
  end

  describe("dock", function()
    it("creates the integration with the default mapping, and the blueprints with their relations", function()
      local r = sail.run({ "defaults", "dock", dir }, env)
      assert.are.equal(0, r.rc, r.err)
      assert.are.equal(table.concat({
        "created integration 'defaults-" .. n .. "' with the mapping of port-app-config.yml",
        "created blueprint 'specGroup'",
        "created blueprint 'specItem'", "" }, "\n"), r.out)
      -- said once: on stdout, not again as an INFO line
      assert.is_nil(r.err:find("created blueprint", 1, true), r.err)
      assert.are.equal(".size > 0", port_mapping().resources[1].selector.query)
      local status, body = get("/blueprints/specItem")
      assert.are.equal(200, status)
      assert.are.equal("specGroup", body.blueprint.relations.group.target)
      assert.are.equal(200, (get("/blueprints/specGroup")))
      local _, integ = get("/integration/" .. env.OCEAN__INTEGRATION__IDENTIFIER)
      assert.is_true(integ.integration.arePortResourcesInitialized)
    end)

    it("keeps what exists, and the mapping in Port, without --update-mapping", function()
      assert.are.equal(0, sail.run({ "defaults", "dock", dir }, env).rc)
      ehelp.write_file(dir .. "/.port/resources/port-app-config.yml", mapping(".size > 1"))
      local r = sail.run({ "defaults", "dock", dir }, env)
      assert.are.equal(0, r.rc, r.err)
      assert.matches("its mapping in Port is kept (--update-mapping replaces it", r.out, 1, true)
      assert.matches("blueprint 'specGroup' exists: kept\nblueprint 'specItem' exists: kept\n$", r.out)
      assert.are.equal(".size > 0", port_mapping().resources[1].selector.query)
    end)

    it("pushes a local mapping edit with --update-mapping, and ocean sail resyncs with it", function()
      assert.are.equal(0, sail.run({ "defaults", "dock", dir }, env).rc)
      assert.are.equal(0, sail.run({ "sail", dir, "-O" }, env).rc)
      assert.are.equal(2, #emu.entities("specItem"))
      ehelp.write_file(dir .. "/.port/resources/port-app-config.yml", mapping(".size > 1"))
      local r = sail.run({ "defaults", "dock", dir, "--update-mapping" }, env)
      assert.are.equal(0, r.rc, r.err)
      assert.matches("updated the mapping of integration 'defaults%-%d+' from port%-app%-config.yml\n", r.out)
      assert.are.equal(".size > 1", port_mapping().resources[1].selector.query)
      r = sail.run({ "sail", dir, "-O" }, env)
      assert.are.equal(0, r.rc, r.err)
      local ids = {}
      for _, e in ipairs(emu.entities("specItem")) do ids[#ids + 1] = e.identifier end
      assert.are.same({ "b" }, ids)
    end)

    it("names what failed and never prints the secret", function()
      local bad = {}
      for k, v in pairs(env) do bad[k] = v end
      bad.OCEAN__PORT__CLIENT_SECRET = "not-the-secret-5e1d"
      local r = sail.run({ "defaults", "dock", dir }, bad)
      assert.are.equal(1, r.rc)
      assert.matches("^ocean defaults dock: cannot read integration 'defaults%-%d+' from Port: "
        .. "invalid Port credentials", r.err)
      assert.is_nil((r.out .. r.err):find("not-the-secret-5e1d", 1, true))
      emu.faults { { method = "POST", path = "^/v1/blueprints$", status = 422,
                     body = { ok = false, error = "invalid_blueprint", message = "no" } } }
      r = sail.run({ "defaults", "dock", dir }, env)
      emu.clear_faults()
      assert.are.equal(1, r.rc)
      assert.matches("^ocean defaults dock: cannot create blueprint 'specGroup': .*422", r.err)
    end)

    it("needs the default mapping file", function()
      os.remove(dir .. "/.port/resources/port-app-config.yml")
      local r = sail.run({ "defaults", "dock", dir }, env)
      assert.are.equal(1, r.rc)
      assert.are.equal("ocean defaults dock: " .. dir
        .. "/.port/resources/port-app-config.yml is missing: no default mapping to dock\n", r.err)
    end)
  end)

  describe("clean", function()
    local function docked_and_synced()
      assert.are.equal(0, sail.run({ "defaults", "dock", dir }, env).rc)
      assert.are.equal(0, sail.run({ "sail", dir, "-O" }, env).rc)
      assert.are.equal(2, #emu.entities("specItem"))
      emu.clear_requests()
    end

    it("with --dry-run says what it would delete and deletes nothing", function()
      docked_and_synced()
      local r = sail.run({ "defaults", "clean", dir, "--dry-run" }, env)
      assert.are.equal(0, r.rc, r.err)
      assert.are.equal("would delete blueprint 'specItem' and its 2 entities\n"
        .. "would delete blueprint 'specGroup' and its 0 entities\n", r.out)
      assert.are.same({}, deletions())
      assert.are.equal(2, #emu.entities("specItem"))
    end)

    it("refuses without --force when not on a terminal, deleting nothing", function()
      docked_and_synced()
      local r = sail.run({ "defaults", "clean", dir }, env)
      assert.are.equal(1, r.rc)
      assert.matches("ocean defaults clean: refusing to delete without --force when not on a terminal",
        r.err, 1, true)
      assert.are.same({}, deletions())
      assert.are.equal(200, (get("/blueprints/specItem")))
    end)

    -- `ocean defaults clean` on a terminal (script(1) gives it one),
    -- answering `answer`: rc, output. SHELL=/bin/sh: script(1) runs its
    -- command through $SHELL, and dash forks where bash execs; the spec
    -- must not depend on which. --foreground keeps `timeout` in the
    -- terminal's foreground process group: in a group of its own, the
    -- prompt's read from the terminal stops on SIGTTIN until the timeout.
    local function on_terminal(answer)
      local parts = { "env -i", "PATH=" .. q(os.getenv("PATH")), "HOME=" .. q(os.getenv("HOME") or "/tmp") }
      if os.getenv("OCEAN_CORE_BUILD") then
        parts[#parts + 1] = "OCEAN_CORE_BUILD=" .. q(os.getenv("OCEAN_CORE_BUILD"))
      end
      for k, v in pairs(env) do parts[#parts + 1] = k .. "=" .. q(v) end
      parts[#parts + 1] = ("timeout --foreground 60 %s %s defaults clean %s"):format(sail.runtime(),
        q(ehelp.root() .. "/bin/ocean"), q(dir))
      local out = ehelp.sh(("printf '%s\\n' | SHELL=/bin/sh script -qec %s /dev/null; echo \"rc=$?\"")
        :format(answer, q(table.concat(parts, " "))))
      return tonumber(out:match("rc=(%d+)%s*$")), out:gsub("\r", "")
    end

    it("asks on a terminal, and deletes nothing unless the answer is yes", function()
      docked_and_synced()
      local rc, out = on_terminal("n")
      assert.are.equal(0, rc, out)
      assert.matches("will delete blueprint 'specItem' and its 2 entities\n", out, 1, true)
      assert.matches("Delete them? [y/N]: ", out, 1, true)
      assert.matches("nothing deleted\n", out, 1, true)
      assert.are.same({}, deletions())
      rc, out = on_terminal("y")
      assert.are.equal(0, rc, out)
      assert.matches("deleted blueprint 'specGroup' and its 0 entities\n", out, 1, true)
      assert.are.equal(404, (get("/blueprints/specItem")))
    end)

    it("with --force deletes the blueprints and their entities, dependents first", function()
      docked_and_synced()
      local r = sail.run({ "defaults", "clean", dir, "--force" }, env)
      assert.are.equal(0, r.rc, r.err)
      assert.are.same({ "/v1/blueprints/specItem/all-entities", "/v1/blueprints/specGroup/all-entities" },
        deletions())
      assert.matches("deleted blueprint 'specItem' and its 2 entities\n", r.out, 1, true)
      assert.are.equal(404, (get("/blueprints/specItem")))
      assert.are.equal(404, (get("/blueprints/specGroup")))
      assert.are.same({}, emu.entities("specItem"))
      -- the integration stays (no --destroy)
      assert.are.equal(200, (get("/integration/" .. env.OCEAN__INTEGRATION__IDENTIFIER)))
      -- again: nothing left to delete
      r = sail.run({ "defaults", "clean", dir, "--force" }, env)
      assert.are.equal(0, r.rc, r.err)
      assert.matches("blueprint 'specItem' is not in Port: nothing to delete", r.out, 1, true)
    end)

    it("with --destroy also deletes the integration", function()
      docked_and_synced()
      local r = sail.run({ "defaults", "clean", dir, "-f", "-d" }, env)
      assert.are.equal(0, r.rc, r.err)
      assert.matches("deleted integration 'defaults%-%d+'\n$", r.out)
      assert.are.equal(404, (get("/integration/" .. env.OCEAN__INTEGRATION__IDENTIFIER)))
    end)

    it("does nothing when the integration does not exist in Port (as Ocean's)", function()
      local r = sail.run({ "defaults", "clean", dir, "--force" }, env)
      assert.are.equal(0, r.rc, r.err)
      assert.matches("integration 'defaults%-%d+' does not exist in Port: nothing cleaned\n", r.out)
      assert.are.same({}, deletions())
    end)

    it("names the blueprint Port refused to delete, exits 1, and keeps the integration", function()
      docked_and_synced()
      emu.faults { { method = "DELETE", path = "/specGroup/", status = 409,
                     body = { ok = false, error = "conflict", message = "in use" } } }
      local r = sail.run({ "defaults", "clean", dir, "--force", "--destroy" }, env)
      emu.clear_faults()
      assert.are.equal(1, r.rc)
      assert.matches("ocean defaults clean: cannot delete blueprint 'specGroup': .*409", r.err)
      assert.matches("integration 'defaults%-%d+' kept: 1 blueprints were not deleted", r.out)
      assert.are.equal(200, (get("/integration/" .. env.OCEAN__INTEGRATION__IDENTIFIER)))
    end)
  end)

  local usage = {
    { { "defaults" }, "expected dock or clean" },
    { { "defaults", "sink" }, "unknown subcommand 'sink' (use dock or clean)" },
    { { "defaults", "dock", "--force" }, "unknown option --force for dock" },
    { { "defaults", "clean", "a", "b" }, "more than one PATH given" },
  }
  for _, c in ipairs(usage) do
    it("exits 2 on `ocean " .. table.concat(c[1], " ") .. "`", function()
      local r = sail.run(c[1], env)
      assert.are.equal(2, r.rc)
      assert.are.equal("ocean defaults: " .. c[2] .. "\n", r.err:match("^[^\n]*\n"))
    end)
  end

  it("answers --help on dock and clean", function()
    for _, args in ipairs { { "defaults", "--help" }, { "defaults", "dock", "--help" },
                            { "defaults", "clean", "-h" } } do
      local r = sail.run(args)
      assert.are.equal(0, r.rc)
      assert.are.equal("usage: ocean defaults <dock|clean> [PATH] [options]\n", r.out:match("^[^\n]*\n"))
      assert.truthy(r.out:find("--update-mapping", 1, true))
      assert.truthy(r.out:find("--dry-run", 1, true))
    end
  end)
end)
