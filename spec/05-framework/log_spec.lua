local log = require "ocean.log"

describe("ocean.log", function()
  local lines
  before_each(function()
    lines = {}
    log.set_sink(function(level, line) lines[#lines + 1] = level .. " " .. line end)
    log.set_level("INFO")
  end)
  after_each(function() log.set_sink(nil) end)

  it("filters by level", function()
    log.debug("hidden %d", 1)
    log.info("shown %d", 2)
    log.error("bad")
    assert.are.same({ "INFO shown 2", "ERROR bad" }, lines)
    assert.is_nil((log.set_level("LOUD")))
  end)

  it("masks registered secrets and bearer tokens everywhere", function()
    log.add_secret("s3cr3t-value")
    log.info("secret=%s header=%s", "s3cr3t-value", "Authorization: Bearer eyJabc.def-ghi")
    assert.are.same({ "INFO secret=**** header=Authorization: Bearer ****" }, lines)
    assert.are.equal("x **** y", log.mask("x s3cr3t-value y"))
  end)
end)
