-- The nginx.conf of docs/openresty.md (and README.md's copy), started as
-- written: only its documented placeholders are replaced (/opt/lua-ocean,
-- /srv/my-integration, the port 8000), with the documented command line.
-- It serves a freshly scaffolded integration against the emulator; every
-- file nginx writes is under the prefix; [ocean] info lines reach the
-- error log; a webhook bigger than nginx's 1m default goes through.
local ehelp = require "spec.helpers.emulator"
local nc = require "spec.helpers.nginx_conf"
local sail = require "spec.helpers.sail"
local json = require "ocean.json"
local prom = require "spec.helpers.prometheus"

local q, read_file, sh = ehelp.shell_quote, ehelp.read_file, ehelp.sh

local MARKER = "<!-- the complete nginx.conf (spec/08-openresty/docs_conf_spec.lua starts it) -->"

-- The ```nginx block right after the marker.
local function extract(path)
  local text = assert(read_file(path), path)
  local at = text:find(MARKER, 1, true)
  assert(at, path .. ": no marked nginx.conf")
  local conf = text:match("^%s*```nginx\n(.-)\n```", at + #MARKER)
  assert(conf, path .. ": no ```nginx block after the marker")
  return conf .. "\n"
end

-- Replace a placeholder, insisting that it is there.
local function put(conf, placeholder, value)
  local out, n = conf:gsub(placeholder:gsub("%p", "%%%0"), (value:gsub("%%", "%%%%")))
  assert(n > 0, "placeholder not found: " .. placeholder)
  return out
end

describe("the documented nginx.conf", function()
  local emu, ng, dir, conf
  setup(function()
    conf = extract(ehelp.root() .. "/docs/openresty.md")
    emu = ehelp.start { quiet = true }
    dir = ehelp.tmpdir()
    os.execute("chmod 755 " .. q(dir))
    local r = sail.run({ "new", dir .. "/my-integration", "--yes", "--type", "docs-conf" })
    assert(r.rc == 0, r.err)
    os.execute("chmod -R a+rX " .. q(dir))
    -- the journal folder, as the docs say: writable by the workers (nobody)
    local jdir = dir .. "/journal"
    os.execute("mkdir -p " .. q(jdir) .. " && chown nobody " .. q(jdir))
    local start = conf
    ng = nc.start(function(port)
      local c = put(start, "/opt/lua-ocean", ehelp.root())
      c = put(c, "/srv/my-integration", dir .. "/my-integration")
      return (put(c, "listen 8000 ", "listen " .. port .. " "))
    end, {
      dirs = { "conf", "logs", "tmp" },          -- as the docs say: mkdir -p conf logs tmp
      args = "-e logs/error.log -c conf/nginx.conf",
      pid_file = "logs/nginx.pid", ready = "/integration/health",
      env = { OCEAN__PORT__BASE_URL = emu.url, OCEAN__PORT__CLIENT_ID = emu.client_id,
              OCEAN__PORT__CLIENT_SECRET = emu.client_secret,
              OCEAN__LIVE_EVENTS__JOURNAL_DIR = jdir,
              OCEAN__EVENT_LISTENER__TYPE = "WEBHOOKS_ONLY", OCEAN__METRICS__ENABLED = "true" },
    })
  end)
  teardown(function()
    nc.stop_all()
    ehelp.stop_all()
    if dir then os.execute("rm -rf " .. q(dir)) end
  end)

  it("is the same in README.md", function()
    assert.are.equal(conf, extract(ehelp.root() .. "/README.md"))
  end)

  it("has what nginx needs to start alone", function()
    for _, line in ipairs { "events {", "load_module /usr/lib/nginx/modules/ndk_http_module.so;",
                            "load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;",
                            "pid logs/nginx.pid;", "error_log logs/error.log info;",
                            "access_log logs/access.log;", "client_body_temp_path tmp/client_body;",
                            "client_max_body_size 25m;", "env OCEAN__PORT__CLIENT_SECRET;",
                            "lua_shared_dict ocean_metrics 4m;", "location = /metrics {" } do
      assert.truthy(conf:find(line, 1, true), line)
    end
  end)

  it("serves the integration: health, a resync, a webhook above nginx's 1m default", function()
    local ready = false
    for _ = 1, 200 do
      local status, text = ng:http("GET", "/integration/health")
      if status == 200 and json.decode(text).ready then ready = true break end
      ehelp.sleep(0.05)
    end
    assert.is_true(ready, ng:error_log())
    local status = ng:http("POST", "/integration/resync")
    assert.are.equal(202, status)
    for _ = 1, 200 do
      if #emu.entities("docs-conf-item") == 25 then break end
      ehelp.sleep(0.05)
    end
    assert.are.equal(25, #emu.entities("docs-conf-item"), ng:error_log())
    -- 2 MB: above client_body_buffer_size too, so it is read from tmp/client_body
    local body = json.encode { action = "upsert", item = { id = "big-one", name = "Big",
      status = "VALID", score = 1, url = "https://example.com/big", blob = ("x"):rep(2 * 1024 * 1024) } }
    local text
    status, text = ng:http("POST", "/integration/webhook", { body = body })
    assert.are.equal(200, status, text)
    -- a webhook processor: answered once journaled, applied in the background
    local found
    for _ = 1, 200 do
      for _, e in ipairs(emu.entities("docs-conf-item")) do
        if e.identifier == "big-one" then found = e end
      end
      if found then break end
      ehelp.sleep(0.05)
    end
    assert.are.equal("Big", found and found.title, ng:error_log())
  end)

  it("serves Prometheus metrics from the shared dict after the resync", function()
    -- after the resync of the test above
    local status, text, headers = ng:http("GET", "/metrics")
    assert.are.equal(200, status, text)
    assert.are.equal("text/plain; version=0.0.4; charset=utf-8", headers["content-type"])
    local r = prom.parse(text)
    assert.are.equal(25, prom.value(r, "object_count", { kind = "item-0", phase = "extract",
                                                         object_count_type = "raw_extracted" }))
    assert.are.equal(25, prom.value(r, "upserted_count", { kind = "item-0", phase = "load" }))
    assert.are.equal(1, prom.value(r, "success", { kind = "__resync__", phase = "resync" }))
    local bulk = 0
    for _, req in ipairs(emu.requests()) do
      if req.method == "POST" and req.path == "/v1/blueprints/docs-conf-item/entities/bulk" then
        bulk = bulk + 1
      end
    end
    assert.is_true(bulk >= 2)
    -- the webhook's upsert is applied in the background: the emulator has
    -- its request a moment before the worker reads the answer and counts it
    local counted
    for _ = 1, 100 do
      counted = prom.value(r, "ocean_port_requests_total",
        { endpoint = "/v1/blueprints/{blueprint}/entities/bulk", status = "200" })
      if counted == bulk then break end
      ehelp.sleep(0.05)
      r = prom.parse((select(2, ng:http("GET", "/metrics"))))
    end
    assert.are.equal(bulk, counted)
    assert.are.same({ 405 }, { (ng:http("POST", "/metrics")) })
  end)

  it("writes its files under the prefix and logs [ocean] info lines there", function()
    assert.are.equal(tostring(ng.pid), (ng:file("logs/nginx.pid") or ""):match("%d+"))
    assert.truthy((ng:file("logs/access.log") or ""):find("POST /integration/webhook", 1, true))
    local log = ng:error_log()
    assert.truthy(log:find("[ocean]", 1, true), log)
    assert.truthy(log:find("%[info%].-%[ocean%] resync [%x-]+ completed"), log)
    assert.are.equal("yes\n", sh("test -d " .. q(ng.prefix .. "/tmp/client_body") .. " && echo yes"))
    assert.is_nil(read_file(ng.prefix .. "/../stderr.log"):find("/var/", 1, true))
  end)
end)
