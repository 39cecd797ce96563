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

  it("masks credentials in URLs wherever a line carries one", function()
    assert.are.equal("GET http://bob:****@h:1/x failed", log.mask("GET http://bob:hunter2@h:1/x failed"))
    -- a lone user name is often a token (https://TOKEN@github.com)
    assert.are.equal("clone https://****@github.com/o/r.git",
      log.mask("clone https://ghp_abc123@github.com/o/r.git"))
    assert.are.equal("'https://a.io/v1?page=2&access_token=****&api_key=****&Signature=****#top'",
      log.mask("'https://a.io/v1?page=2&access_token=T0K&api_key=K3Y&Signature=S1G#top'"))
    -- what is not a credential stays: paths, other parameters, an @ in the path
    assert.are.equal("https://a.io/users/@me?page=2&per_page=10",
      log.mask("https://a.io/users/@me?page=2&per_page=10"))
    assert.are.equal("no url: token=abc", log.mask("no url: token=abc"))
    log.error("see %s", "https://u:p4ss@x.io/?token=zzz")
    assert.are.same({ "ERROR see https://u:****@x.io/?token=****" }, lines)
    assert.are.equal("https://x.io/p?sig=****", log.redact_url("https://x.io/p?sig=abc"))
  end)
end)
