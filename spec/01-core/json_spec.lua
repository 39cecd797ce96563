local core = require "ocean.core"

describe("core json", function()
  it("encodes with sorted keys", function()
    assert.are.equal('{"a":1,"b":[1,2]}', core.json_encode({ b = { 1, 2 }, a = 1 }))
  end)
end)
