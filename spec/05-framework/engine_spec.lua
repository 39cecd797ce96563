-- ocean.engine: every piece of an integration's state lives in an engine,
-- so two integrations run side by side in one Lua state.
local engine = require "ocean.engine"
local json = require "ocean.json"
local log = require "ocean.log"
local ehelp = require "spec.helpers.emulator"
local oh = require "spec.helpers.ocean"

local BLUEPRINT = { identifier = "thing", title = "Thing", schema = { properties = {} } }

local function mapping_for(prefix)
  return { resources = json.array { { kind = "thing", selector = { query = "true" },
    port = { entity = { mappings = { identifier = '"' .. prefix .. '-" + .id',
      blueprint = '"thing"', title = ".name" } } } } } }
end

local function integration(emu, id, prefix)
  local st = emu.api("POST", "/v1/integration", { installationId = id,
    installationAppType = "spec", version = "1.0.0", config = mapping_for(prefix) })
  assert(st == 200 or st == 201, st)
end

describe("two engines in one Lua state", function()
  local emu, a, b

  setup(function() emu = ehelp.start { quiet = true } end)
  teardown(function() ehelp.stop_all() end)
  before_each(function()
    emu.reset()
    emu.api("POST", "/v1/blueprints", BLUEPRINT)
    integration(emu, "engine-a", "a")
    integration(emu, "engine-b", "b")
    a = assert(engine.new { settings = oh.settings(emu, { identifier = "engine-a" }) })
    b = assert(engine.new { settings = oh.settings(emu, { identifier = "engine-b" }) })
  end)
  after_each(function()
    a:close()
    b:close()
  end)

  local function ids()
    local out = {}
    for _, e in ipairs(emu.entities("thing")) do out[#out + 1] = e.identifier end
    table.sort(out)
    return out
  end

  it("keep their own resync functions, mappings and owned entities", function()
    local items = { a = { { id = "1", name = "one" }, { id = "2", name = "two" } },
                    b = { { id = "1", name = "uno" } } }
    a:on_resync("thing", function() return items.a end)
    b:on_resync("thing", function() return items.b end)
    assert.is_true(a:sync_raw_all().ok)
    assert.is_true(b:sync_raw_all().ok)
    assert.are.same({ "a-1", "a-2", "b-1" }, ids())
    -- a's resync deletes what a no longer produces, never what b owns
    items.a = { { id = "1", name = "one" } }
    local s = a:sync_raw_all()
    assert.are.same({ true, 1, 0 }, { s.ok, s.deleted, s.created })
    assert.are.same({ "a-1", "b-1" }, ids())
    assert.are.same({}, b:resync_functions("other"))
    assert.are.equal(1, #a:resync_functions("thing"))
  end)

  it("keep their own routes", function()
    a.router.post("/hook", function() return { who = "a" } end)
    b.router.get("/other", function() return { who = "b" } end)
    local function call(eng, method, path)
      local status, body = eng.router:dispatch { method = method, path = path, raw_body = "" }
      return status, body ~= "" and json.decode(body) or nil
    end
    assert.are.same({ 200, { who = "a" } }, { call(a, "POST", "/hook") })
    assert.are.equal(404, (call(b, "POST", "/hook")))
    assert.are.same({ 200, { who = "b" } }, { call(b, "GET", "/other") })
    assert.are.equal(404, (call(a, "GET", "/other")))
  end)

  it("keep their own compiled mappings", function()
    local r = mapping_for("a").resources[1]
    assert.truthy(a:parse_items(r, { { id = "x", name = "X" } }))
    assert.are.same({ 1, 0 }, { a.mapping_cache:info().size, b.mapping_cache:info().size })
    a.mapping_cache:clear()
    assert.are.equal(0, a.mapping_cache:info().size)
  end)

  it("keep their own runs: an abort stops only the engine it was asked of", function()
    local run_a, run_b = { event = "resync" }, { event = "resync" }
    a:begin_run(run_a)
    b:begin_run(run_b)
    assert.is_true(a:request_abort())
    assert.is_true(a:should_abort(run_a))
    assert.is_false(b:should_abort(run_b))
    a:end_run(run_a)
    b:end_run(run_b)
    assert.is_false(a:request_abort())             -- nothing runs
    assert.is_nil(a:running())
  end)

  it("wait on their own loops, with their own wait hooks", function()
    local seen = {}
    a:set_wait_hook(function(eng) seen[#seen + 1] = eng end)
    local job = a.loop:request { url = emu.url .. "/_emulator/health" }
    assert.are.equal(200, a:await(job).status)
    assert.are_not.equal(a.loop, b.loop)
    for _, eng in ipairs(seen) do assert.are.equal(a, eng) end
    assert.is_nil((b:await(function() return false end, 20)))
  end)

  it("mask their secrets in the log while they live", function()
    local s = oh.settings(emu, { identifier = "engine-c", secret = "only-engine-c-knows" })
    local c = assert(engine.new { settings = s })
    assert.are.equal("token ****", log.mask("token only-engine-c-knows"))
    c:close()
    assert.are.equal("token only-engine-c-knows", log.mask("token only-engine-c-knows"))
  end)

  it("are configured or not: an unconfigured engine says so when asked to sync", function()
    local e = engine.new()
    assert.is_false(e:configured())
    local ok, err = pcall(function() e:sync_raw_all() end)
    assert.is_false(ok)
    assert.matches("ocean is not configured: ", err)
    assert.truthy(e:get_loop())                      -- ocean.http works without Port
    e:close()
  end)
end)

describe("the ocean facade", function()
  local emu

  setup(function() emu = ehelp.start { quiet = true } end)
  teardown(function() ehelp.stop_all() end)

  it("keeps one default engine; reset() makes a new one with the same settings", function()
    local ctx, ocean = oh.setup(emu, { blueprints = { BLUEPRINT }, mapping = mapping_for("d"),
                                       identifier = "facade" })
    assert.are.equal(ctx, ocean.engine())
    ocean.on_resync("thing", function() return {} end)
    ocean.router.post("/x", function() end)
    local old = ocean.engine()
    ocean.reset()
    local new = ocean.engine()
    assert.are_not.equal(old, new)
    assert.is_false(old:configured())                -- closed
    assert.is_true(new:configured())
    assert.are.equal(old.settings, new.settings)
    assert.are.same({}, new:resync_functions("thing"))
    assert.are.equal(404, (ocean.router:dispatch { method = "POST", path = "/x" }))
  end)

  it("leaves no framework module reaching another through package.loaded", function()
    local p = assert(io.popen("grep -rln 'package\\.loaded' lua"))
    local found = p:read("a") or p:read("*a")
    p:close()
    assert.are.equal("", found)
  end)
end)
