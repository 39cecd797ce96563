-- The reason `ocean sail` gives for skipping deletion is the real one: a
-- resource that failed on its selector is named by its error, never as
-- "the entities this integration owns could not be read" (no listing
-- failed), and the error count is in plain English.
local ehelp = require "spec.helpers.emulator"
local sail = require "spec.helpers.sail"

local FIXTURE = ehelp.root() .. "/spec/fixtures/selector-fail"

describe("the deletion-skipped reason", function()
  teardown(function()
    sail.stop_all()
    ehelp.stop_all()
  end)

  it("names a resource that failed on its selector, and nothing it did not try", function()
    local emu = ehelp.start { quiet = true }
    local r = sail.run({ "sail", FIXTURE, "--once" }, {
      OCEAN__PORT__BASE_URL = emu.url, OCEAN__PORT__CLIENT_ID = emu.client_id,
      OCEAN__PORT__CLIENT_SECRET = emu.client_secret,
      OCEAN__INTEGRATION__IDENTIFIER = "spec-selector-fail",
    })
    assert.are.equal(1, r.rc, r.out .. r.err)
    local line = r.out:match("\n  (deletion skipped[^\n]*)\n")
    assert.is_string(line, r.out)
    assert.matches("^deletion skipped[^:]*: kind 'thing'[^\n]*jql", line)
    for _, text in ipairs { r.out, r.err } do
      assert.is_nil(text:find("could not be read", 1, true), text)
      assert.is_nil(text:find("were all read", 1, true), text)
      assert.is_nil(text:find("error(s)", 1, true), text)
    end
    local warn = r.err:match("WARNING (deletion skipped[^\n]*)")
    assert.matches("^deletion skipped: kind 'thing'[^\n]*jql", warn)
    -- the summary tells the two resources of kind thing apart
    assert.truthy(r.out:find("\n  kind thing #1 ", 1, true), r.out)
    assert.truthy(r.out:find("\n  kind thing #2 ", 1, true), r.out)
    -- the first resource still landed; nothing was deleted
    assert.are.equal(1, #emu.entities("selFailThing"))
    emu.stop()
  end)
end)
