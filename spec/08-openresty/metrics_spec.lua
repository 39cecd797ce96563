-- ocean.metrics over a real lua_shared_dict: two nginx workers add to the
-- same samples, and either renders them all (Prometheus text, parsed).
local ehelp = require "spec.helpers.emulator"
local nc = require "spec.helpers.nginx_conf"
local prom = require "spec.helpers.prometheus"
local metrics = require "ocean.metrics"

local CONF = [[
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
worker_processes 2;
pid @PREFIX@/nginx.pid;
error_log @PREFIX@/logs/error.log info;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path @PREFIX@/tmp/client_body;
    proxy_temp_path @PREFIX@/tmp/proxy;
    fastcgi_temp_path @PREFIX@/tmp/fastcgi;
    uwsgi_temp_path @PREFIX@/tmp/uwsgi;
    scgi_temp_path @PREFIX@/tmp/scgi;
    lua_package_path "@ROOT@/lua/?.lua;@ROOT@/lua/?/init.lua;;";
    lua_shared_dict ocean 1m;
    init_by_lua_block {
        local metrics = require "ocean.metrics"
        -- a key of the adapter's own (the resync lock lives in this dict too)
        ngx.shared.ocean:set("resync:lock", "not a metric")
        METRICS = function()
            local reg = metrics.new { store = metrics.shared_dict_store(ngx.shared.ocean) }
            return reg, metrics.declare_ocean(reg)
        end
    }
    server {
        listen 127.0.0.1:@PORT@ reuseport;
        location = /inc {
            content_by_lua_block {
                local _, m = METRICS()
                local n = tonumber(ngx.var.arg_n)
                assert(m.object_count:inc({ ngx.var.arg_kind, "extract", "raw_extracted" }, n))
                assert(m.http_requests_count:inc({ endpoint = "/v1/x?a=\"b\"", kind = ngx.var.arg_kind,
                                                   phase = "extract", status = "200" }))
                ngx.say(ngx.worker.pid())
            }
        }
        location = /metrics {
            content_by_lua_block {
                local reg = METRICS()
                ngx.header.content_type = require("ocean.metrics").CONTENT_TYPE
                ngx.print(reg:render())
            }
        }
    }
}
]]

describe("ocean.metrics in nginx", function()
  local ng
  setup(function()
    ng = nc.start(function(port, prefix)
      os.execute("mkdir -p " .. ehelp.shell_quote(prefix .. "/tmp"))
      return (CONF:gsub("@(%u+)@", { PORT = tostring(port), PREFIX = prefix, ROOT = ehelp.root() }))
    end, { ready = "/metrics" })
  end)
  teardown(nc.stop_all)

  it("adds up increments from both workers in the shared dict", function()
    -- 120 requests on separate connections (reuseport spreads them over
    -- the workers), 8 at a time
    local list = ehelp.tmpdir()
    local f = assert(io.open(list .. "/urls", "w"))
    local want = { ["repo-0"] = 0, ["repo-1"] = 0 }
    for i = 1, 120 do
      local kind = i % 2 == 0 and "repo-0" or "repo-1"
      local n = i % 5 + 1
      want[kind] = want[kind] + n
      f:write(("%s/inc?kind=%s&n=%d\n"):format(ng.url, kind, n))
    end
    f:close()
    local out = ehelp.sh(("xargs -P 8 -n 1 curl -s --max-time 10 < %s"):format(ehelp.shell_quote(list .. "/urls")))
    os.execute("rm -rf " .. ehelp.shell_quote(list))
    local pids, answers = {}, 0
    for pid in out:gmatch("(%d+)\n") do
      pids[pid] = true
      answers = answers + 1
    end
    assert.are.equal(120, answers, out)
    local workers = 0
    for _ in pairs(pids) do workers = workers + 1 end
    assert.are.equal(2, workers, "both workers served increments")

    local status, text, headers = ng:http("GET", "/metrics")
    assert.are.equal(200, status)
    assert.are.equal(metrics.CONTENT_TYPE, headers["content-type"])
    local r = prom.parse(text)
    assert.are.equal("gauge", r.families.object_count.type)
    for kind, n in pairs(want) do
      assert.are.equal(n, prom.value(r, "object_count",
        { kind = kind, phase = "extract", object_count_type = "raw_extracted" }), kind)
      assert.are.equal(60, prom.value(r, "http_requests_count",
        { endpoint = '/v1/x?a="b"', kind = kind, phase = "extract", status = "200" }), kind)
    end
    assert.is_nil(text:find("resync:lock", 1, true))
    assert.is_nil(ng:error_log():find("[error]", 1, true), ng:error_log())
  end)
end)
