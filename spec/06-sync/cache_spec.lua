-- ocean.cache end to end: two resources of one kind read the same paged
-- third-party API (the fake API of examples/fake-api) through
-- cache:memoize_pages; its request log shows each page fetched once per
-- resync, and not at all while a disk entry (ttl) is fresh.
local ehelp = require "spec.helpers.emulator"
local fake = require "spec.helpers.fake_api"
local oh = require "spec.helpers.ocean"
local json = require "ocean.json"
local cache = require "ocean.cache"

local BLUEPRINTS = {
  { identifier = "admin", title = "Admin", schema = { properties = { email = { type = "string" } } } },
  { identifier = "member", title = "Member", schema = { properties = { email = { type = "string" } } } },
}

local function resource(role)
  return { kind = "user", selector = { query = ('.active and .role == "%s"'):format(role) },
           port = { entity = { mappings = { identifier = ".login", title = ".name",
             blueprint = ('"%s"'):format(role), properties = { email = ".email" } } } } }
end

local MAPPING = { resources = json.array { resource("admin"), resource("member") } }

describe("ocean.cache in a resync", function()
  local emu, api, ocean, dir, now
  setup(function()
    emu = ehelp.start { quiet = true }
    api = fake.start()
  end)
  teardown(function()
    fake.stop_all()
    ehelp.stop_all()
  end)
  before_each(function()
    emu.reset()
    api.reset()
    dir = ehelp.tmpdir()
    now = 5000
  end)
  after_each(function() os.execute("rm -rf " .. ehelp.shell_quote(dir)) end)

  -- An integration whose user resync reads /users through the cache.
  local function integration(opts)
    local _
    _, ocean = oh.setup(emu, { blueprints = BLUEPRINTS, mapping = MAPPING })
    local c = assert(cache.new { dir = dir, clock = function() return now end })
    local users = c:memoize_pages(function(per_page)
      for page in ocean.http.paginate(api.url .. "/users", { query = { per_page = per_page } }) do
        coroutine.yield(page)
      end
    end, { name = "users", ttl = opts and opts.ttl })
    ocean.on_resync("user", function()
      for page in users(20) do coroutine.yield(page) end
    end)
    ocean.on_resync_start(function() c:begin_resync() end)
    ocean.on_resync_complete(function() c:end_resync() end)
    return c
  end

  local function user_pages()
    local pages = {}
    for _, r in ipairs(api.requests()) do
      if r.method == "GET" and r.path == "/users" then pages[#pages + 1] = r.query end
    end
    table.sort(pages)
    return pages
  end

  local PAGES = { "page=2&per_page=20", "page=3&per_page=20", "per_page=20" }

  it("fetches each page once for two resources of one kind", function()
    local c = integration()
    api.clear_requests()
    local r = ocean.sync_raw_all()
    assert.is_true(r.ok, json.encode(r.errors))
    assert.are.same(PAGES, user_pages())
    -- of 50 users, every 7th an admin and every 10th inactive: 7 admins, 38 members
    assert.are.equal(7, #emu.entities("admin"))
    assert.are.equal(38, #emu.entities("member"))
    assert.are.same({ hits = 1, misses = 1, disk_hits = 0, disk_writes = 0, errors = 0 }, c.stats)
  end)

  it("fetches again in the next resync (memory lasts one resync)", function()
    integration()
    ocean.sync_raw_all()
    api.clear_requests()
    local r = ocean.sync_raw_all()
    assert.is_true(r.ok, json.encode(r.errors))
    assert.are.same(PAGES, user_pages())
  end)

  it("fetches nothing while the disk entry is fresh, then again after its ttl", function()
    local c = integration { ttl = 600 }
    ocean.sync_raw_all()
    assert.are.equal(1, c.stats.disk_writes)
    api.clear_requests()
    now = now + 599
    local r = ocean.sync_raw_all()
    assert.is_true(r.ok, json.encode(r.errors))
    assert.are.same({}, user_pages())
    assert.are.equal(0, r.created + r.updated + r.deleted)
    now = now + 2
    ocean.sync_raw_all()
    assert.are.same(PAGES, user_pages())
  end)
end)
