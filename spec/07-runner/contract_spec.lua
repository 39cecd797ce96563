-- What a resync function gives, what `ocean sail --once` prints and the
-- exit status it ends with, through a real `ocean sail` against the
-- emulator (issue 10, findings of the failfix-b trial):
--   * a value given beyond the contract (two pages in one yield,
--     `return list, extra`) fails the kind and deletes nothing;
--   * nothing sail prints (stdout, stderr) nor logs shows a secret: the
--     registered ones, in identifiers, plan lines and reasons, and
--     credentials in third-party URLs (user:password@, ?token=);
--   * a resync whose deletion was skipped (threshold, dropped entities)
--     exits 3, with the reason;
--   * an error raised as a table is rendered, not "table: 0x...";
--   * ocean.http's option errors name the function and the option.
local ehelp = require "spec.helpers.emulator"
local sail = require "spec.helpers.sail"

local q = ehelp.shell_quote

local PORT_DIR = {
  ["spec.yaml"] = [[
type: contract
version: 0.1.0
description: contract test
features:
  - type: exporter
    section: Test
    resources:
      - kind: item
      - kind: other
configurations:
  - name: apiToken
    type: string
    required: false
    sensitive: true
]],
  ["resources/blueprints.json"] = [[
[
 {"identifier":"ctItem","title":"Item","schema":{"properties":{"n":{"type":"number"}},"required":[]},"relations":{}},
 {"identifier":"ctOther","title":"Other","schema":{"properties":{"n":{"type":"number"}},"required":[]},"relations":{}}
]
]],
  ["resources/port-app-config.yml"] = [[
deleteDependentEntities: true
entityDeletionThreshold: 0.9
resources:
  - kind: item
    selector:
      query: 'true'
    port:
      entity:
        mappings:
          identifier: .id
          title: .name
          blueprint: '"ctItem"'
          properties:
            n: .n
  - kind: other
    selector:
      query: 'true'
    port:
      entity:
        mappings:
          identifier: .id
          title: .name
          blueprint: '"ctOther"'
          properties:
            n: .n
]],
}

-- main.lua: CT_MODE picks what kind 'item' gives; 'other' always gives
-- 20 objects.
local MAIN = [=[
local ocean = require "ocean"
local MODE = os.getenv("CT_MODE") or "good"
local N = tonumber(os.getenv("CT_N") or "50")
local function items(prefix, a, b)
  local t = {}
  for i = a, b do t[#t + 1] = { id = prefix .. i, name = prefix .. " " .. i, n = i } end
  return t
end
local modes = {}
modes.good = function(kind) return items(kind, 1, N) end
modes.yield_two = function(kind) coroutine.yield(items(kind, 1, 10), items(kind, 11, N)) end
modes.return_two = function(kind) return items(kind, 1, 10), items(kind, 11, N) end
modes.return_extra = function(kind) return items(kind, 1, N), "extra" end
modes.nil_err_extra = function(kind) return nil, "upstream 401", "more" end
modes.error_table = function(kind) error({ code = 1, detail = { why = "denied" } }) end
modes.secret_id = function(kind)
  local t = items(kind, 1, N)
  t[3].id = "bad id " .. ocean.integration_config.api_token
  t[4].n = "not a number " .. ocean.integration_config.api_token
  return t
end
modes.secret_url = function(kind)
  local r, err = ocean.http.get_json(os.getenv("CT_URL"))
  if not r then error(err, 0) end
  return r
end
modes.retry_zero = function(kind)
  local r, err = ocean.http.get_json(os.getenv("CT_URL"), { retry = 0 })
  if not r then error(err, 0) end
  return r
end
modes.retry_bad = function(kind)
  return ocean.http.get_json(os.getenv("CT_URL"), { retry = "often" })
end
modes.noid = function(kind) local t = items(kind, 1, N); t[7].id = nil; return t end
modes.fewer = function(kind) return items(kind, 1, 10) end
ocean.on_resync("item", function(kind) return modes[MODE](kind) end)
ocean.on_resync("other", function(kind) return items(kind, 1, 20) end)
]=]

local function folder()
  local dir = ehelp.tmpdir()
  os.execute("mkdir -p " .. q(dir .. "/.port/resources"))
  for name, text in pairs(PORT_DIR) do
    local f = assert(io.open(dir .. "/.port/" .. name, "w"))
    f:write(text)
    f:close()
  end
  local f = assert(io.open(dir .. "/main.lua", "w"))
  f:write(MAIN)
  f:close()
  return dir
end

local function ids(list)
  local out = {}
  for _, e in ipairs(list) do out[#out + 1] = e.identifier end
  table.sort(out)
  return out
end

local SECRET = "tok_SEKRET_123456"

describe("ocean sail --once: the resync function's contract, secrets and exit statuses", function()
  local emu, dir

  local function env(extra)
    local e = {
      OCEAN__PORT__BASE_URL = emu.url,
      OCEAN__PORT__CLIENT_ID = emu.client_id,
      OCEAN__PORT__CLIENT_SECRET = emu.client_secret,
      OCEAN__INTEGRATION__IDENTIFIER = "contract-int",
      OCEAN__INITIALIZE_PORT_RESOURCES = "true",
      OCEAN__INTEGRATION__CONFIG__API_TOKEN = SECRET,
    }
    for k, v in pairs(extra or {}) do e[k] = v end
    return e
  end

  local function run(mode, extra, args)
    local e = env(extra)
    e.CT_MODE = mode
    local argv = { "sail", dir, "--once" }
    for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
    return sail.run(argv, e)
  end

  -- the catalog back to 50 items and 20 others
  local function good()
    local r = run("good")
    assert.are.equal(0, r.rc, r.out .. r.err)
    assert.are.equal(50, #emu.entities("ctItem"))
  end

  setup(function()
    emu = ehelp.start { quiet = true }
    dir = folder()
  end)
  teardown(function()
    sail.stop_all()
    ehelp.stop_all()
    os.execute("rm -rf " .. q(dir))
  end)

  describe("a value beyond the contract fails the kind and deletes nothing", function()
    before_each(good)

    it("two pages in one yield", function()
      local r = run("yield_two")
      assert.are.equal(1, r.rc, r.out .. r.err)
      assert.truthy(r.out:find("\n  error: resync function for kind 'item' yielded 2 pages in one "
        .. "yield: yield one page at a time; nothing of them was synced\n", 1, true), r.out)
      assert.truthy(r.out:find("deleted 0,", 1, true), r.out)
      assert.truthy(r.err:find("deletion skipped: 1 error(s) during the resync: the state is "
        .. "incomplete (failed: kind 'item')", 1, true), r.err)
      assert.are.equal(50, #emu.entities("ctItem"))
    end)

    it("a function returning two lists, or a list and something else", function()
      local r = run("return_two")
      assert.are.equal(1, r.rc, r.out .. r.err)
      assert.truthy(r.out:find("\n  error: resync function for kind 'item' returned 2 values (a "
        .. "table, then a table): return one list of objects; nothing of them was synced\n", 1,
        true), r.out)
      assert.are.equal(50, #emu.entities("ctItem"))
      r = run("return_extra")
      assert.are.equal(1, r.rc, r.out .. r.err)
      assert.truthy(r.out:find("returned 2 values (a table, then a string)", 1, true), r.out)
      r = run("nil_err_extra")
      assert.are.equal(1, r.rc, r.out .. r.err)
      assert.truthy(r.out:find("returned 3 values (nil, upstream 401, ...): give nil, err or one "
        .. "list of objects", 1, true), r.out)
      assert.are.equal(50, #emu.entities("ctItem"))
      assert.are.equal(20, #emu.entities("ctOther"))
    end)

    it("an error raised as a table is shown as JSON, not as an address", function()
      local r = run("error_table")
      assert.are.equal(1, r.rc, r.out .. r.err)
      assert.truthy(r.out:find('\n  error: resync function for kind \'item\' failed: '
        .. '{"code":1,"detail":{"why":"denied"}}\n', 1, true), r.out)
      assert.is_nil(r.out:find("table: 0x", 1, true))
      assert.are.equal(50, #emu.entities("ctItem"))
    end)
  end)

  describe("secrets", function()
    it("never appear on stdout, stderr or in --plan lines, even in identifiers", function()
      good()
      for _, args in ipairs { {}, { "--plan" } } do
        local r = run("secret_id", nil, args)
        assert.is_nil(r.out:find(SECRET, 1, true), r.out)
        assert.is_nil(r.err:find(SECRET, 1, true), r.err)
        if args[1] then
          assert.truthy(r.out:find("\n  + ctItem/bad id ****\n", 1, true), r.out)
        else
          assert.are.equal(3, r.rc, r.out .. r.err)
          assert.truthy(r.out:find("\n  rejected ctItem/bad id **** (kind 'item'): 422 "
            .. "invalid_identifier", 1, true), r.out)
          assert.truthy(r.out:find("\n  rejected ctItem/item4 (kind 'item'): 422 "
            .. "invalid_property_type", 1, true), r.out)
          -- the kind's line says its failures
          assert.truthy(r.out:find("\n  kind item %s+50 objects %->%s+50 entities: created 0, updated 0, "
            .. "unchanged 48, failed 2\n"), r.out)
        end
      end
    end)

    it("credentials in a third-party URL are masked in errors and logs", function()
      local url = "http://bob:hunter2pass@127.0.0.1:1/x?page=2&token=" .. "QTOKEN1234"
        .. "&access_token=SUPERSECRETQ&api_key=KEYVALUE99&sig=SIGVALUE77"
      local r = run("secret_url", { CT_URL = url, OCEAN__LOG_LEVEL = "DEBUG" })
      assert.are.equal(1, r.rc, r.out .. r.err)
      for _, s in ipairs { "hunter2pass", "QTOKEN1234", "SUPERSECRETQ", "KEYVALUE99", "SIGVALUE77" } do
        assert.is_nil(r.out:find(s, 1, true), r.out)
        assert.is_nil(r.err:find(s, 1, true), r.err)
      end
      local shown = "GET http://bob:****@127.0.0.1:1/x?page=2&token=****&access_token=****"
        .. "&api_key=****&sig=**** failed"
      assert.truthy(r.out:find(shown, 1, true), r.out)
      assert.truthy(r.err:find("ERROR   resync function for kind 'item' failed: " .. shown, 1, true),
        r.err)
      -- the retries say which request, masked the same way
      assert.truthy(r.err:find("WARNING retrying GET http://bob:****@127.0.0.1:1/x?page=2&token=****",
        1, true), r.err)
    end)
  end)

  describe("ocean.http's options", function()
    it("retry = 0 means no retries; a bad retry names get_json and the option", function()
      local r = run("retry_zero", { CT_URL = "http://127.0.0.1:1/x" })
      assert.are.equal(1, r.rc, r.out .. r.err)
      assert.is_nil(r.err:find("retrying", 1, true), r.err)
      assert.truthy(r.out:find("GET http://127.0.0.1:1/x failed", 1, true), r.out)
      r = run("retry_bad", { CT_URL = "http://127.0.0.1:1/x" })
      assert.are.equal(1, r.rc, r.out .. r.err)
      assert.truthy(r.out:find("http.get_json: opts.retry must be false, a number of retries or a "
        .. "table of retry options, got a string", 1, true), r.out)
      assert.is_nil(r.out:find("bad self", 1, true), r.out)
    end)
  end)

  describe("deletion skipped with no kind failed exits 3 with the reason", function()
    before_each(good)

    it("entities without an identifier", function()
      local r = run("noid", { OCEAN__ENTITY_DELETION_THRESHOLD = "1" })
      assert.are.equal(3, r.rc, r.out .. r.err)
      assert.truthy(r.out:find("^resync completed with failures: "), r.out)
      assert.truthy(r.out:find("\n  deletion skipped (1 candidates): kind 'item': 1 entities had no identifier "
        .. "or blueprint\n", 1, true), r.out)
      assert.are.equal(50, #emu.entities("ctItem"))
    end)

    it("the deletion threshold", function()
      local r = run("fewer", { OCEAN__ENTITY_DELETION_THRESHOLD = "0.5" })
      assert.are.equal(3, r.rc, r.out .. r.err)
      assert.truthy(r.out:find("\n  deletion skipped (40 candidates): deleting 40 of 70 owned "
        .. "entities (57%) is above entityDeletionThreshold (50%)\n", 1, true), r.out)
      assert.are.equal(50, #emu.entities("ctItem"))
      -- and in plan mode, the same status
      r = run("fewer", { OCEAN__ENTITY_DELETION_THRESHOLD = "0.5" }, { "--plan" })
      assert.are.equal(3, r.rc, r.out .. r.err)
      assert.are.equal(50, #emu.entities("ctItem"))
    end)

    it("while a clean resync with deletions exits 0 (and its plan says 'would delete')", function()
      local r = run("fewer", { OCEAN__ENTITY_DELETION_THRESHOLD = "1" }, { "--plan" })
      assert.are.equal(0, r.rc, r.out .. r.err)
      assert.truthy(r.out:find("^plan: would create 0, update 0, delete 40; 30 unchanged\n"), r.out)
      assert.truthy(r.err:find("INFO    resync [%x-]+ plan completed: would create 0, update 0, "
        .. "delete 40; unchanged 30, failed 0\n"), r.err)
      assert.is_nil(r.err:find("deleted 40", 1, true), r.err)
      assert.are.equal(50, #emu.entities("ctItem"))
      r = run("fewer", { OCEAN__ENTITY_DELETION_THRESHOLD = "1" })
      assert.are.equal(0, r.rc, r.out .. r.err)
      assert.are.same(ids(emu.entities("ctItem")), (function()
        local t = {}
        for i = 1, 10 do t[i] = "item" .. i end
        table.sort(t)
        return t
      end)())
    end)
  end)
end)
