-- ocean.openresty outside nginx: it loads (so tools and the suite can
-- require it under either runtime) and refuses to start.
describe("ocean.openresty outside nginx", function()
  it("loads without ngx and says so when initialised", function()
    local openresty = require "ocean.openresty"
    assert.is_function(openresty.handle)
    assert.has_error(function() openresty.init { path = "examples/openresty/integration" } end,
      "openresty.init: not running inside nginx (ngx_lua)")
  end)

  it("needs init before init_worker", function()
    local openresty = require "ocean.openresty"
    assert.has_error(function() openresty.init_worker() end,
      "openresty.init_worker: openresty.init{...} did not run (or failed) in init_by_lua")
  end)
end)
