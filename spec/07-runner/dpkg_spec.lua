-- `ocean sail examples/dpkg --once` end to end against the emulator, on a
-- fixed status file (spec/fixtures/dpkg-status: 8 installed packages, one
-- removed, a dependency cycle, alternatives, an arch qualifier, and one
-- dependency that is not installed).
local json = require "ocean.json"
local yaml = require "ocean.yaml"
local ehelp = require "spec.helpers.emulator"
local sail = require "spec.helpers.sail"

local null = json.null
local ROOT = ehelp.root()
local DPKG = ROOT .. "/examples/dpkg"
local STATUS = ROOT .. "/spec/fixtures/dpkg-status"
local DS = "port-ocean/dpkg/1.0.0/my-dpkg-integration/exporter"

local function maintainer(email, name)
  return { blueprint = "debianMaintainer", identifier = email, title = name,
           properties = { email = email, name = name }, relations = {} }
end

local function package(id, version, props, maint, depends)
  local p = { version = version, architecture = "amd64", essential = false, homepage = null }
  for k, v in pairs(props) do p[k] = v end
  return { blueprint = "debianPackage", identifier = id, title = id .. " " .. version,
           properties = p, relations = { maintainer = maint, depends = json.array(depends) } }
end

local CATALOG = {
  maintainer("sanvila@debian.org", "Santiago Vila"),
  maintainer("debian-glibc@lists.debian.org", "GNU Libc Maintainers"),
  maintainer("debian-gcc@lists.debian.org", "Debian GCC Maintainers"),
  maintainer("broonie@debian.org", "Mark Brown"),
  maintainer("ocsi@debian.org", "Janos Lenart"),
  maintainer("debian-dpkg@lists.debian.org", "Dpkg Developers"),
  maintainer("adduser@packages.debian.org", "Debian Adduser Developers"),
  package("base-files", "12.4+deb12u5", { essential = true, installedSizeKb = 340,
    priority = "required", section = "admin",
    summary = "Debian base system miscellaneous files" }, "sanvila@debian.org", {}),
  package("libc6", "2.36-9+deb12u7", { installedSizeKb = 12988, priority = "optional",
    section = "libs", summary = "GNU C Library: Shared libraries",
    homepage = "https://www.gnu.org/software/libc/libc.html" },
    "debian-glibc@lists.debian.org", { "libgcc-s1" }),
  package("libgcc-s1", "12.2.0-14", { installedSizeKb = 140, priority = "optional",
    section = "libs", summary = "GCC support library", homepage = "http://gcc.gnu.org/" },
    "debian-gcc@lists.debian.org", { "gcc-12-base", "libc6" }),
  package("gcc-12-base", "12.2.0-14", { installedSizeKb = 71, priority = "required",
    section = "libs", summary = "GCC, the GNU Compiler Collection (base package)",
    homepage = "http://gcc.gnu.org/" }, "debian-gcc@lists.debian.org", {}),
  package("zlib1g", "1:1.2.13.dfsg-1", { installedSizeKb = 168, priority = "required",
    section = "libs", summary = "compression library - runtime", homepage = "http://zlib.net/" },
    "broonie@debian.org", { "libc6" }),
  package("tar", "1.34+dfsg-1.2+deb12u1", { essential = true, installedSizeKb = 3133,
    priority = "required", section = "utils",
    summary = "GNU version of the tar archiving utility" }, "ocsi@debian.org", { "libc6" }),
  package("dpkg", "1.21.22", { essential = true, installedSizeKb = 6459, priority = "required",
    section = "admin", summary = "Debian package management system",
    homepage = "https://wiki.debian.org/Teams/Dpkg" },
    "debian-dpkg@lists.debian.org", { "libc6", "tar", "zlib1g" }),
  package("adduser", "3.134", { architecture = "all", installedSizeKb = 849,
    priority = "important", section = "admin", summary = "add and remove users and groups" },
    "adduser@packages.debian.org", { "passwd" }),
  -- not installed: created bare by Port (createMissingRelatedEntities)
  { blueprint = "debianPackage", identifier = "passwd", properties = {}, relations = {} },
}

-- Port's catalog as {blueprint/identifier -> entity}, the fields we own.
local function catalog(emu)
  local out = {}
  for _, e in ipairs(emu.entities()) do
    assert.are.equal(DS, e.datasource)
    out[e.blueprint .. "/" .. e.identifier] = { blueprint = e.blueprint,
      identifier = e.identifier, title = e.title, properties = e.properties,
      relations = e.relations }
  end
  return out
end

local function keyed(list)
  local out = {}
  for _, e in ipairs(list) do out[e.blueprint .. "/" .. e.identifier] = e end
  return out
end

local function count(emu, method, pattern)
  local n = 0
  for _, r in ipairs(emu.requests()) do
    if r.method == method and r.path:find(pattern) then n = n + 1 end
  end
  return n
end

-- The per-kind lines: m maintainers; praw stanzas -> p packages.
local function kinds_text(m, praw, p, what)
  return ("  kind maintainer           %6d objects -> %6d entities: %s\n"
    .. "  kind package              %6d objects -> %6d entities: %s\n")
    :format(m, m, what[1], praw, p, what[2])
end

describe("ocean sail examples/dpkg --once", function()
  local emu, env, dir

  setup(function()
    emu = ehelp.start { quiet = true }
    dir = ehelp.tmpdir()
    env = {
      OCEAN__PORT__BASE_URL = emu.url,
      OCEAN__PORT__CLIENT_ID = emu.client_id,
      OCEAN__PORT__CLIENT_SECRET = emu.client_secret,
      OCEAN__INTEGRATION__CONFIG__STATUS_FILE = STATUS,
    }
  end)
  teardown(function()
    ehelp.stop_all()
    os.execute("rm -rf " .. ehelp.shell_quote(dir))
  end)

  it("with --plan on an empty Port: prints the plan and writes nothing", function()
    local r = sail.run({ "sail", DPKG, "--once", "--plan" }, env)
    assert.are.equal(0, r.rc, r.err)
    local lines = {
      "plan: the bootstrap would create integration my-dpkg-integration, "
        .. "blueprint debianMaintainer, blueprint debianPackage",
      "plan: would create 15, update 0, delete 0; 0 unchanged",
    }
    for _, e in ipairs(CATALOG) do
      if e.title then lines[#lines + 1] = ("  + %s/%s"):format(e.blueprint, e.identifier) end
    end
    assert.are.equal(table.concat(lines, "\n") .. "\n"
      .. kinds_text(7, 9, 8, { "created 7, updated 0, unchanged 0", "created 8, updated 0, unchanged 0" }),
      r.out)
    for _, req in ipairs(emu.requests()) do
      local read = req.method == "GET" or req.path == "/v1/auth/access_token"
        or req.path == "/v1/blueprints/entities/datasource-entities"
      assert.is_true(read, req.method .. " " .. req.path)
    end
    assert.are.same({}, emu.entities())
    assert.are.equal(404, (emu.api("GET", "/v1/integration/my-dpkg-integration")))
    assert.are.equal(404, (emu.api("GET", "/v1/blueprints/debianPackage")))
  end)

  it("bootstraps the integration and blueprints, then creates the catalog", function()
    emu.clear_requests()
    local r = sail.run({ "sail", DPKG, "--once" }, env)
    assert.are.equal(0, r.rc, r.err)
    assert.are.equal("resync completed: created 15, updated 0, unchanged 0, deleted 0, failed 0\n"
      .. kinds_text(7, 9, 8, { "created 7, updated 0, unchanged 0", "created 8, updated 0, unchanged 0" }),
      r.out)
    assert.are.same(keyed(CATALOG), catalog(emu))

    local status, body = emu.api("GET", "/v1/integration/my-dpkg-integration")
    assert.are.equal(200, status)
    local integ = body.integration
    assert.are.same(yaml.load_file(DPKG .. "/.port/resources/port-app-config.yml"), integ.config)
    assert.are.same({ "dpkg", "1.0.0", true, "completed" }, { integ.installationAppType,
      integ.version, integ.arePortResourcesInitialized, integ.resyncState.status })
    local bp
    status, bp = emu.api("GET", "/v1/blueprints/debianPackage")
    assert.are.equal(200, status)
    assert.are.same({ target = "debianMaintainer", many = false, required = false },
      { target = bp.blueprint.relations.maintainer.target,
        many = bp.blueprint.relations.maintainer.many,
        required = bp.blueprint.relations.maintainer.required })
    assert.are.same({ "debianPackage", true }, { bp.blueprint.relations.depends.target,
      bp.blueprint.relations.depends.many })
    assert.are.equal(200, (emu.api("GET", "/v1/blueprints/debianMaintainer")))
    -- two bulk upserts: 7 maintainers, then the 8 packages (20 per request)
    assert.are.equal(2, count(emu, "POST", "/entities/bulk$"))
  end)

  it("changes nothing the second time: no upsert, no deletion", function()
    local before = emu.entities()
    emu.clear_requests()
    local r = sail.run({ "sail", DPKG, "--once" }, env)
    assert.are.equal(0, r.rc, r.err)
    assert.are.equal("resync completed: created 0, updated 0, unchanged 15, deleted 0, failed 0\n"
      .. kinds_text(7, 9, 8, { "created 0, updated 0, unchanged 7", "created 0, updated 0, unchanged 8" }),
      r.out)
    assert.are.same(before, emu.entities())
    assert.are.equal(0, count(emu, "POST", "/entities/bulk$"))
    assert.are.equal(0, count(emu, "POST", "/bulk/entities/delete$"))
    assert.are.equal(0, count(emu, "POST", "^/v1/blueprints$"))
    assert.are.equal(0, count(emu, "POST", "^/v1/integration$"))
  end)

  it("plans, then applies, an upgrade and a removal", function()
    -- zlib1g upgraded, adduser purged: its maintainer goes, and so does
    -- passwd, which nothing relates to any more
    local text = assert(ehelp.read_file(STATUS))
    text = text:gsub("Version: 1:1.2.13.dfsg%-1", "Version: 1:1.2.13.dfsg-1+deb12u1")
    text = text:gsub("\nPackage: adduser\n.*$", "\n")
    local status_file = dir .. "/status"
    local f = assert(io.open(status_file, "w"))
    f:write(text)
    f:close()
    local env2 = {}
    for k, v in pairs(env) do env2[k] = v end
    env2.OCEAN__INTEGRATION__CONFIG__STATUS_FILE = status_file

    local before = emu.entities()
    emu.clear_requests()
    local r = sail.run({ "sail", DPKG, "--once", "--plan" }, env2)
    assert.are.equal(0, r.rc, r.err)
    assert.are.equal("plan: would create 0, update 1, delete 3; 12 unchanged\n"
      .. "  ~ debianPackage/zlib1g\n"
      .. "  - debianMaintainer/adduser@packages.debian.org\n"
      .. "  - debianPackage/passwd\n"
      .. "  - debianPackage/adduser\n"
      .. kinds_text(6, 8, 7, { "created 0, updated 0, unchanged 6", "created 0, updated 1, unchanged 6" }),
      r.out)
    assert.are.same(before, emu.entities())
    assert.are.equal(0, count(emu, "POST", "/entities/bulk$"))

    r = sail.run({ "sail", DPKG, "--once" }, env2)
    assert.are.equal(0, r.rc, r.err)
    -- adduser depends on its maintainer: deleted first, so that Port's
    -- delete_dependents never takes it along (which would count as a
    -- failed delete)
    local summary, kinds = r.out:match("^([^\n]*\n)(.*)$")
    assert.are.equal("resync completed: created 0, updated 1, unchanged 12, deleted 3, failed 0\n",
      summary)
    assert.are.equal(kinds_text(6, 8, 7, { "created 0, updated 0, unchanged 6",
      "created 0, updated 1, unchanged 6" }), kinds)
    local want = keyed(CATALOG)
    want["debianPackage/adduser"], want["debianPackage/passwd"] = nil, nil
    want["debianMaintainer/adduser@packages.debian.org"] = nil
    local z = want["debianPackage/zlib1g"]
    z.title, z.properties.version = "zlib1g 1:1.2.13.dfsg-1+deb12u1", "1:1.2.13.dfsg-1+deb12u1"
    assert.are.same(want, catalog(emu))
  end)
end)
