-- Only rejections a retry can fix are sent again (README, resync step 4):
-- a 404 `blueprint_not_found` (the blueprint itself is missing: `-i false`
-- on a fresh Port) is final; a 404 `not_found` for a missing related
-- entity is retried once, relation targets first.
local ehelp = require "spec.helpers.emulator"
local sail = require "spec.helpers.sail"
local json = require "ocean.json"

local q = ehelp.shell_quote

-- The entities sent in bulk upserts to blueprint `bp`, all requests summed.
local function entities_sent(emu, bp)
  local n = 0
  for _, req in ipairs(emu.requests { bodies = true }) do
    if req.method == "POST" and req.path == "/v1/blueprints/" .. bp .. "/entities/bulk" then
      local body = type(req.body) == "string" and json.decode(req.body) or req.body
      n = n + #body.entities
    end
  end
  return n
end

describe("retrying rejected entities", function()
  local tmp, emu
  setup(function()
    tmp = ehelp.tmpdir()
    emu = ehelp.start { quiet = true }
  end)
  teardown(function()
    sail.stop_all()
    ehelp.stop_all()
    os.execute("rm -rf " .. q(tmp))
  end)

  it("does not retry a 404 blueprint_not_found", function()
    local dir = tmp .. "/nobp"
    assert.are.equal(0, sail.run({ "new", dir, "--yes", "--type", "nobp" }).rc)
    local r = sail.run({ "sail", dir, "--once", "-i", "false" }, {
      OCEAN__PORT__BASE_URL = emu.url, OCEAN__PORT__CLIENT_ID = emu.client_id,
      OCEAN__PORT__CLIENT_SECRET = emu.client_secret })
    assert.are.equal(3, r.rc, r.out .. r.err)            -- Port rejected entities
    assert.matches("failed 25\n", r.out)
    assert.matches("404 blueprint_not_found", r.out)
    assert.is_nil(r.err:find("retried", 1, true), r.err)
    assert.are.equal(25, entities_sent(emu, "nobp-item"))   -- each sent once, never again
  end)

  it("retries a 404 not_found for a related entity created later in the same resync", function()
    local dir = tmp .. "/rel"
    assert.are.equal(0, sail.run({ "new", dir, "--yes", "--type", "rel" }).rc)
    -- the blueprint relates to itself; each item points at the next one, so
    -- the first pass meets targets not written yet
    local f = assert(io.open(dir .. "/.port/resources/blueprints.json"))
    local bps = f:read("a")
    f:close()
    bps = bps:gsub('"relations"%s*:%s*{%s*}', '"relations": {"next": {"title": "Next", '
      .. '"target": "rel-item", "required": false, "many": false}}', 1)
    ehelp.write_file(dir .. "/.port/resources/blueprints.json", bps)
    f = assert(io.open(dir .. "/.port/resources/port-app-config.yml"))
    local m = f:read("a")
    f:close()
    assert.truthy(m:find("createMissingRelatedEntities: true", 1, true), m)
    m = m:gsub("createMissingRelatedEntities: true", "createMissingRelatedEntities: false")
    m = m:gsub("(\n( +)properties:\n)", "\n%2relations:\n%2  next: '.id | ltrimstr(\"item-\") | tonumber"
      .. " | if . < 25 then \"item-\\(. + 1)\" else null end'%1", 1)
    ehelp.write_file(dir .. "/.port/resources/port-app-config.yml", m)
    local r = sail.run({ "sail", dir, "--once" }, {
      OCEAN__PORT__BASE_URL = emu.url, OCEAN__PORT__CLIENT_ID = emu.client_id,
      OCEAN__PORT__CLIENT_SECRET = emu.client_secret })
    assert.are.equal(0, r.rc, r.out .. r.err .. m)
    assert.matches("retried %d+ failed upserts? in relation order", r.err)
    assert.are.equal(25, #emu.entities("rel-item"))
  end)
end)
