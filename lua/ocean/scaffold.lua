-- ocean.scaffold: `ocean new [PATH]`, a new integration folder that works
-- as soon as it is written (Ocean's `ocean new`, which fills a cookiecutter
-- template).
--
--   scaffold.main(args) -> exit status (0 written, 1 refused, 2 usage)
--   scaffold.answers(opts) -> answers | nil, err   (defaults filled, checked)
--   scaffold.files(answers) -> { {path, text}, ... }  (what would be written)
--
-- The folder has .port/spec.yaml, .port/resources/port-app-config.yml and
-- blueprints.json (one kind, one blueprint), config.yaml, main.lua (a
-- generator resync over sample data, or the API at `apiUrl`; a webhook
-- processor), README.md and spec/integration_spec.lua, a busted spec that
-- starts the bundled Port emulator, runs `ocean sail PATH --once` and
-- checks the catalog, then the webhook. Right after `ocean new DIR`,
-- `ocean sail DIR --once` against the emulator succeeds and
-- `busted DIR/spec` passes.
--
-- On a terminal it asks for what no flag gave (each question shows its
-- default; an empty answer takes it). Otherwise (or with --yes) it takes
-- flags and defaults without asking. It never overwrites a file unless
-- --force. Differs from Ocean on purpose: PATH is the integration folder
-- itself (Ocean creates PATH/<slug>); with no PATH it is ./<type>.
local json = require "ocean.json"

local _M = {}

local USAGE = [[
usage: ocean new [PATH] [--name NAME] [--type TYPE] [--kind KIND]
                 [--blueprint ID] [--description TEXT] [--yes] [--force]

Write a new integration into PATH (default: ./TYPE): .port/spec.yaml,
.port/resources/port-app-config.yml and blueprints.json, config.yaml,
main.lua (a generator resync and a webhook processor), README.md and
spec/integration_spec.lua (busted, against the bundled Port emulator).

  --name NAME          the integration's name (default: from PATH, or "My Integration")
  --type TYPE          its type, lower case letters, digits and - (default: from the name);
                       part of the User-Agent that marks its entities in Port
  --kind KIND          the kind its resync function returns (default: item)
  --blueprint ID       the blueprint of that kind's entities (default: TYPE-KIND)
  --description TEXT   one line for spec.yaml and the README
  --yes                ask nothing, even on a terminal
  --force              overwrite files that already exist

On a terminal it asks for what no flag gave; elsewhere it takes the defaults.
Then:  ocean sail PATH --once     (one resync; OCEAN__PORT__* settings)
       busted --lua=lua5.4 PATH/spec   (the resync and the webhook against the emulator)
]]
_M.USAGE = USAGE

-- {==================== answers ====================

local TYPE_RE = "^[a-z0-9][a-z0-9%-]*$"
local KIND_RE = "^[%w][%w_%.%-]*$"
local BLUEPRINT_RE = "^[%w@_=%-]+$"       -- Port's blueprint identifier alphabet

local function basename(path)
  return (path:gsub("/+$", ""):match("([^/]+)$"))
end

-- "My Integration" -> "my-integration"
local function slug(name)
  local s = name:lower():gsub("[^%w]+", "-"):gsub("^%-+", ""):gsub("%-+$", "")
  return s
end
_M.slug = slug

-- "some-folder_name" -> "Some Folder Name"
local function title_of(word)
  local parts = {}
  for w in word:gmatch("[%w]+") do parts[#parts + 1] = w:sub(1, 1):upper() .. w:sub(2) end
  return table.concat(parts, " ")
end

local CHECKS = {
  name = function(v)
    if v:match("^%s*$") or v:find("[%c]") then return "must be one line of text" end
  end,
  type = function(v)
    if not v:match(TYPE_RE) then
      return "must be lower case letters, digits and - (it goes in the User-Agent)"
    end
  end,
  kind = function(v)
    if not v:match(KIND_RE) then return "must be letters, digits, _ . and -" end
  end,
  blueprint = function(v)
    if not v:match(BLUEPRINT_RE) then return "must be letters, digits and @_=-" end
  end,
  description = function(v)
    if v:find("[%c]") then return "must be one line" end
  end,
}

-- The questions, in order: field, prompt, default from the answers so far.
local QUESTIONS = {
  { "name", "Integration name", function(a)
      return a.path and title_of(basename(a.path)) or "My Integration" end },
  { "type", "Integration type", function(a)
      local s = slug(a.name)
      return s ~= "" and s or "my-integration" end },
  { "description", "One-line description", function(a)
      return a.name .. " integration for Port" end },
  { "kind", "Kind (what the resync function returns)", function() return "item" end },
  { "blueprint", "Blueprint of its entities", function(a) return a.type .. "-" .. a.kind end },
}

-- opts: the flags given (name, type, kind, blueprint, description, path),
-- ask = function(prompt, default) -> answer or nil (a terminal), or nil.
-- Returns the answers (path filled: PATH or ./TYPE) | nil, err.
function _M.answers(opts)
  local a = { path = opts.path }
  for _, q in ipairs(QUESTIONS) do
    local field, prompt, default = q[1], q[2], q[3](a)
    local v = opts[field]
    if v ~= nil then
      local bad = CHECKS[field](v)
      if bad then return nil, ("--%s %q: %s"):format(field, v, bad) end
    elseif opts.ask then
      while true do
        v = opts.ask(prompt, default)
        if v == nil or v:match("^%s*$") then v = default end
        v = v:match("^%s*(.-)%s*$")
        local bad = CHECKS[field](v)
        if not bad then break end
        opts.ask_error(("%s %s"):format(field, bad))
        if opts.ask_error_is_fatal then return nil, field .. " " .. bad end
      end
    else
      v = default
    end
    a[field] = v
  end
  a.path = a.path or a.type
  a.identifier = "my-" .. a.type .. "-integration"
  return a
end

-- }====================

-- {==================== the files ====================

-- @X@ placeholders; @X_JSON@ is the value as a JSON string (valid YAML too).
local function fill(template, a)
  return (template:gsub("@([%u_]+)@", function(key)
    local base = key:match("^(.-)_JSON$")
    local v = a[(base or key):lower()]
    if v == nil then error("BUG: no value for template placeholder @" .. key .. "@") end
    if base then return json.encode(v) end
    return v
  end))
end

local SPEC_YAML = [[
# The integration's definition, as in Ocean: its type (part of the
# User-Agent that marks the entities it writes), the kinds it exports and
# its settings. Each configuration is read from
# OCEAN__INTEGRATION__CONFIG__<NAME> (humps' snake_case, upper case) or
# config.yaml's integration.config, and reaches main.lua as
# ocean.integration_config.<name> (api_url, api_token).
type: @TYPE@
description: @DESCRIPTION_JSON@
icon: Blueprint
features:
  - type: exporter
    section: Under Development
    resources:
      - kind: @KIND@
configurations:
  - name: apiUrl
    type: url
    description: Base URL of the third-party API; unset, the integration syncs sample data
  - name: apiToken
    type: string
    sensitive: true
    description: Bearer token for the API (masked in every log line)
  - name: webhookSecret
    type: string
    sensitive: true
    description: When set, webhooks must carry it in an X-Webhook-Secret header (401 otherwise)
]]

local MAPPING_YAML = [[
# The default mapping (Ocean's port-app-config.yml): created in Port with
# the integration; from then on the mapping is Port's (edit it there, or
# push this file's edits with `ocean defaults dock --update-mapping`).
# Every value under mappings is a jq expression over one raw object.
createMissingRelatedEntities: true
deleteDependentEntities: true
resources:
  - kind: @KIND@
    selector:
      query: 'true'
    port:
      entity:
        mappings:
          identifier: .id
          title: .name
          blueprint: '"@BLUEPRINT@"'
          properties:
            status: .status
            score: .score
            url: .url
]]

local BLUEPRINTS_JSON = [[
[
  {
    "identifier": @BLUEPRINT_JSON@,
    "title": @NAME_JSON@,
    "icon": "Blueprint",
    "schema": {
      "properties": {
        "status": {
          "type": "string",
          "title": "Status",
          "enum": ["VALID", "FAILED"],
          "enumColors": {"VALID": "green", "FAILED": "red"}
        },
        "score": {"type": "number", "title": "Score"},
        "url": {"type": "string", "format": "url", "title": "URL"}
      },
      "required": []
    },
    "relations": {}
  }
]
]]

local CONFIG_YAML = [[
# Settings for `ocean sail`; OCEAN__* environment variables override them.
# "{{ from env NAME }}" reads a variable (unset: the setting is absent).
# Port's credentials: OCEAN__PORT__CLIENT_ID and OCEAN__PORT__CLIENT_SECRET.
integration:
  identifier: @IDENTIFIER@
  config:
    apiUrl: "{{ from env @TYPE_ENV@_API_URL }}"
    apiToken: "{{ from env @TYPE_ENV@_API_TOKEN }}"
eventListener:
  type: POLLING
]]

local MAIN_LUA = [==[
-- @NAME@: @DESCRIPTION@
-- A lua-ocean integration, written by `ocean new`.
--
--   ocean sail . --once     one resync, then exit (0: it succeeded)
--   ocean sail .            resyncs when Port asks; serves the webhook on :8000
--   busted --lua=lua5.4     spec/: the resync and the webhook against the bundled Port emulator
local ocean = require "ocean"

local KIND = "@KIND@"      -- a kind of .port/resources/port-app-config.yml

-- {==================== the source ====================

-- Sample objects, so that the integration syncs something right away.
-- Set apiUrl (OCEAN__INTEGRATION__CONFIG__API_URL) to read the real API.
local SAMPLE_COUNT, PAGE_SIZE = 25, 10

local function sample_page(first, last)
  local page = {}
  for i = first, last do
    page[#page + 1] = {
      id = KIND .. "-" .. i,
      name = "Sample " .. KIND .. " " .. i,
      status = i % 2 == 0 and "VALID" or "FAILED",
      score = i * 32 % 3,
      url = "https://example.com/" .. KIND .. "s/" .. i,
    }
  end
  return page
end

-- }====================

-- The resync, as a generator: each coroutine.yield(page) hands a page of
-- raw objects to the engine, which maps and upserts it while this function
-- fetches the next. (A plain function may return the whole list instead.)
-- An error here fails the kind, and then nothing is deleted.
ocean.on_resync(KIND, function(kind)
  local cfg = ocean.integration_config
  if cfg.api_url then
    -- GET <apiUrl>/<kind>s, page after page along the Link header's
    -- rel="next"; `items=` and `next=` options fit other paging styles.
    local headers = cfg.api_token and { Authorization = "Bearer " .. cfg.api_token } or nil
    for page in ocean.http.paginate(cfg.api_url .. "/" .. kind .. "s", { headers = headers }) do
      coroutine.yield(page)
    end
    return
  end
  for first = 1, SAMPLE_COUNT, PAGE_SIZE do
    coroutine.yield(sample_page(first, math.min(first + PAGE_SIZE - 1, SAMPLE_COUNT)))
  end
end)

-- {==================== live events ====================

-- POST /integration/webhook {"action": "upsert" | "delete", "@KIND@": {...}}
-- (with X-Webhook-Secret: <webhookSecret> once that setting is set).
--
-- A webhook processor, Ocean's model of live events: the sender gets
-- 401 (wrong secret) or 400 (not an @KIND@ it can apply) at once, else
-- {"status":"ok"} as soon as the event is journaled on disk; handle_event
-- then runs in the background, retried with backoff when it fails, and
-- what it returns is written to Port (`updated` upserted, `deleted`
-- deleted if this integration owns them). Several processors may share a
-- path; each says which events it wants (should_process_event).
ocean.add_webhook_processor("/webhook", {
  name = KIND,
  should_process_event = function(event) return type(event.payload[KIND]) == "table" end,
  get_matching_kinds = function() return { KIND } end,
  -- a shared secret, compared in constant time; a sender that signs its
  -- body (GitHub's X-Hub-Signature-256) is checked with ocean.hmac over
  -- event.raw_body (the third argument), see docs/live-events.md
  authenticate = function(_, headers)
    local secret = ocean.integration_config.webhook_secret
    return secret == nil or ocean.secure_compare(headers["x-webhook-secret"], secret)
  end,
  validate_payload = function(payload)
    local action = payload.action
    return (action == nil or action == "upsert" or action == "delete")
      and payload[KIND].id ~= nil
  end,
  -- the place to fetch the object's current state from the API (the event
  -- may be minutes old when it is applied): raise ocean.retryable(msg) for
  -- a failure worth retrying at once (max_retries = 3 by default)
  handle_event = function(payload)
    if payload.action == "delete" then return { updated = {}, deleted = { payload[KIND] } } end
    return { updated = { payload[KIND] }, deleted = {} }
  end,
})

-- }====================

ocean.on_start(function()
  ocean.log.info("@TYPE@: %s", ocean.integration_config.api_url
    and ("reading " .. ocean.integration_config.api_url) or "syncing sample data")
end)
]==]

local README = [==[
# @NAME@

@DESCRIPTION@

A [lua-ocean](https://github.com/lua-ocean/lua-ocean) integration (Port's
Ocean framework in Lua), written by `ocean new`.

| file | |
|---|---|
| `main.lua` | the resync function of kind `@KIND@` (a generator) and the webhook processor |
| `.port/spec.yaml` | type `@TYPE@`, its kinds and settings (`apiUrl`, `apiToken`, `webhookSecret`) |
| `.port/resources/port-app-config.yml` | the default mapping: `@KIND@` → blueprint `@BLUEPRINT@` |
| `.port/resources/blueprints.json` | blueprints created on the first start |
| `config.yaml` | settings; `OCEAN__*` environment variables override them |
| `spec/integration_spec.lua` | the resync and the webhook against the bundled Port emulator |

## Run

```sh
export OCEAN__PORT__CLIENT_ID=... OCEAN__PORT__CLIENT_SECRET=...
ocean sail . --once        # one resync, then exit
ocean sail .               # resync when Port asks; POST /integration/webhook on :8000
```

Without a Port account, against the bundled emulator:

```sh
ocean port-emulator --listen 127.0.0.1:5555 &
OCEAN__PORT__BASE_URL=http://127.0.0.1:5555 \
OCEAN__PORT__CLIENT_ID=emulator-client-id \
OCEAN__PORT__CLIENT_SECRET=emulator-client-secret \
  ocean sail . --once
curl -s 'http://127.0.0.1:5555/_emulator/entities?blueprint=@BLUEPRINT@'
```

Until `apiUrl` is set (`OCEAN__INTEGRATION__CONFIG__API_URL`, or
`@TYPE_ENV@_API_URL` through config.yaml), the resync yields 25 sample
objects in pages of 10. With it, it pages through `<apiUrl>/@KIND@s`.

The webhook: `POST /integration/webhook` with
`{"action": "upsert", "@KIND@": {"id": "...", "name": "...", ...}}` (or
`"delete"`), and `X-Webhook-Secret: <webhookSecret>` once that is set. A
webhook processor handles it: the answer (`{"status":"ok"}`) comes as soon
as the event is journaled in `.ocean/journal/` (or
`OCEAN__LIVE_EVENTS__JOURNAL_DIR`: keep it on a volume that outlives a
restart, and out of version control); the event is written to Port in the
background, with retries, and applied after a crash.

## Test

```sh
busted --lua=lua5.4   # or luajit; needs `ocean` on PATH (or OCEAN_CMD="lua5.4 /path/to/bin/ocean") and curl;
                      # lua-ocean's modules are found through `ocean path`
```
]==]

local SPEC_LUA = [==[
-- @NAME@ against the bundled Port emulator: `ocean port-emulator` in the
-- background, `ocean sail <this folder> --once`, the catalog read back,
-- a second resync that changes nothing, then the webhook.
-- OCEAN_CMD: the `ocean` command (default: ocean on PATH). Needs curl.
-- lua-ocean's own modules (ocean.json) are found where that command finds
-- them (`ocean path`: a checkout, make install or a luarocks tree), so no
-- LUA_PATH needs setting by hand.
local OCEAN = os.getenv("OCEAN_CMD") or "ocean"

local function ocean_path(what)
  local rt = rawget(_G, "jit") and "luajit" or "lua5.4"
  local p = assert(io.popen(OCEAN .. " path --runtime " .. rt .. " --" .. what .. " 2>&1; echo \"rc=$?\""))
  local out = p:read("a")
  p:close()
  local text, rc = out:match("^(.-)\n?rc=(%d+)\n$")
  if rc ~= "0" then error("`" .. OCEAN .. " path` failed (is ocean on PATH, or OCEAN_CMD set?): " .. out, 0) end
  return text
end
for what, field in pairs { ["lua-path"] = "path", ["lua-cpath"] = "cpath" } do
  local t = ocean_path(what)
  if t ~= "" then package[field] = t .. ";" .. package[field] end
end

local json = require "ocean.json"
local BLUEPRINT = "@BLUEPRINT@"
local KIND = "@KIND@"
local HERE = debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]*$") or "."

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function sh(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  return out
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function sleep(s) os.execute("sleep " .. s) end

local function curl(method, url, body)
  local cmd = "curl -s -X " .. method .. " " .. q(url)
  if body then cmd = cmd .. " -H 'Content-Type: application/json' --data-binary " .. q(json.encode(body)) end
  return sh(cmd .. " -w '\\n%{http_code}'")
end

local function get_json(url)
  local text = curl("GET", url):match("^(.*)\n%d+$")
  return assert(json.decode(text))
end

-- Only what this spec sets: never the developer's own OCEAN__* settings.
local function env(vars)
  local parts = { "for v in $(env | grep -o '^OCEAN__[A-Za-z0-9_]*'); do unset \"$v\"; done;" }
  for k, v in pairs(vars) do parts[#parts + 1] = "export " .. k .. "=" .. q(v) .. ";" end
  return table.concat(parts, " ")
end

local dir, emu_url, emu_pid

local function port_env(extra)
  local e = { OCEAN__PORT__BASE_URL = emu_url, OCEAN__PORT__CLIENT_ID = "emulator-client-id",
              OCEAN__PORT__CLIENT_SECRET = "emulator-client-secret" }
  for k, v in pairs(extra or {}) do e[k] = v end
  return env(e)
end

setup(function()
  dir = (sh("mktemp -d"):gsub("%s+$", ""))
  local me = read("/proc/self/stat"):match("^(%d+)")
  emu_pid = tonumber(sh(("%s port-emulator --listen 127.0.0.1:0 --port-file %s --exit-with %s --quiet"
    .. " > %s 2>&1 & echo $!"):format(OCEAN, q(dir .. "/port"), me, q(dir .. "/emulator.log"))))
  for _ = 1, 200 do
    local port = tonumber(read(dir .. "/port") or "")
    if port then emu_url = "http://127.0.0.1:" .. port break end
    sleep(0.05)
  end
  assert(emu_url, "the emulator did not start: " .. (read(dir .. "/emulator.log") or ""))
end)

teardown(function()
  if emu_url then curl("POST", emu_url .. "/_emulator/shutdown") end
  if emu_pid then os.execute("kill " .. emu_pid .. " 2>/dev/null") end
  os.execute("rm -rf " .. q(dir))
end)

local function sail(args)
  local rc = sh(port_env() .. " timeout 120 " .. OCEAN .. " sail " .. q(HERE) .. " " .. args
    .. " > " .. q(dir .. "/out") .. " 2> " .. q(dir .. "/err") .. " < /dev/null; echo $?")
  return tonumber(rc), read(dir .. "/out"), read(dir .. "/err")
end

local function entities()
  local list = get_json(emu_url .. "/_emulator/entities?blueprint=" .. BLUEPRINT).entities
  local by_id = {}
  for _, e in ipairs(list) do by_id[e.identifier] = e end
  return list, by_id
end

describe(@NAME_JSON@, function()
  it("syncs its objects into Port with one resync", function()
    local rc, out, err = sail("--once")
    assert.are.equal(0, rc, out .. err)
    local list, by_id = entities()
    assert.are.equal(25, #list)
    local e = by_id[KIND .. "-2"]
    assert.are.same({ status = "VALID", score = 1, url = "https://example.com/" .. KIND .. "s/2" },
      e.properties)
    assert.are.equal("Sample " .. KIND .. " 2", e.title)
  end)

  it("sends no upsert when nothing changed", function()
    curl("DELETE", emu_url .. "/_emulator/requests")
    local rc, out, err = sail("--once")
    assert.are.equal(0, rc, out .. err)
    for _, r in ipairs(get_json(emu_url .. "/_emulator/requests").requests) do
      assert.is_nil(r.path:find("/entities/bulk$"), "upsert sent: " .. r.path)
    end
    assert.are.equal(25, #entities())
  end)

  it("applies a webhook", function()
    local log = dir .. "/serve.log"
    local pid = tonumber(sh(port_env { OCEAN__EVENT_LISTENER__TYPE = "WEBHOOKS_ONLY",
                                       OCEAN__LIVE_EVENTS__JOURNAL_DIR = dir .. "/journal" }
      .. " exec timeout 120 " .. OCEAN .. " sail " .. q(HERE) .. " --port 0 --host 127.0.0.1 > "
      .. q(log) .. " 2>&1 < /dev/null & echo $!"))
    local url
    for _ = 1, 300 do
      url = (read(log) or ""):match("listening on (http://[%d%.]+:%d+)")
      if url then break end
      sleep(0.05)
    end
    local ok, err = pcall(function()
      assert(url, "ocean sail did not start listening: " .. (read(log) or ""))
      local answer = curl("POST", url .. "/integration/webhook",
        { action = "upsert", [KIND] = { id = "from-webhook", name = "Webhook " .. KIND,
                                        status = "VALID", score = 5, url = "https://example.com/w" } })
      assert.are.equal('{"status":"ok"}\n200', answer)
      -- applied in the background
      local function eventually(pred)
        for _ = 1, 200 do
          if pred() then return true end
          sleep(0.05)
        end
        return false
      end
      assert(eventually(function() return select(2, entities())["from-webhook"] end), "not applied")
      assert.are.equal("Webhook " .. KIND, select(2, entities())["from-webhook"].title)
      answer = curl("POST", url .. "/integration/webhook", { action = "delete", [KIND] = { id = "from-webhook" } })
      assert.are.equal("200", answer:match("(%d+)$"), answer)
      assert(eventually(function() return not select(2, entities())["from-webhook"] end), "not deleted")
      answer = curl("POST", url .. "/integration/webhook", { action = "rename", [KIND] = { id = "x" } })
      assert.are.equal("400", answer:match("(%d+)$"), answer)
    end)
    os.execute("kill " .. pid .. " 2>/dev/null")
    assert(ok, err)
  end)
end)
]==]

local TEMPLATES = {
  { ".port/spec.yaml", SPEC_YAML },
  { ".port/resources/port-app-config.yml", MAPPING_YAML },
  { ".port/resources/blueprints.json", BLUEPRINTS_JSON },
  { "config.yaml", CONFIG_YAML },
  { "main.lua", MAIN_LUA },
  { "README.md", README },
  { "spec/integration_spec.lua", SPEC_LUA },
}

function _M.files(a)
  local vals = {}
  for k, v in pairs(a) do vals[k] = v end
  vals.type_env = a.type:upper():gsub("%-", "_")
  local out = {}
  for i, t in ipairs(TEMPLATES) do out[i] = { t[1], fill(t[2], vals) } end
  return out
end

-- }====================

-- {==================== the command ====================

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

local function write_file(path, text)
  local dir = path:match("^(.*)/[^/]*$")
  if dir then
    local ok = os.execute("mkdir -p " .. shell_quote(dir))   -- true (5.4) or 0 (LuaJIT)
    if ok ~= true and ok ~= 0 then return nil, "cannot create " .. dir end
  end
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then return nil, err end
  local ok, werr = f:write(text)
  f:close()
  if not ok then os.remove(tmp) return nil, werr end
  local rok, rerr = os.rename(tmp, path)
  if not rok then os.remove(tmp) return nil, rerr end
  return true
end

local FLAGS = { ["--name"] = "name", ["--type"] = "type", ["--kind"] = "kind",
                ["--blueprint"] = "blueprint", ["--description"] = "description" }

local function parse_args(args)
  local o = {}
  local i = 1
  while i <= #args do
    local a = args[i]
    local field, inline = a:match("^(%-%-[%w]+)=(.*)$")
    if FLAGS[field or a] then
      local v = inline
      if v == nil then
        i = i + 1
        v = args[i]
        if v == nil then return nil, a .. " needs a value" end
      end
      o[FLAGS[field or a]] = v
    elseif a == "--yes" or a == "-y" then
      o.yes = true
    elseif a == "--force" then
      o.force = true
    elseif a == "--help" or a == "-h" then
      o.help = true
    elseif a:sub(1, 1) == "-" and a ~= "-" then
      return nil, "unknown option " .. a
    elseif o.path then
      return nil, "more than one PATH given"
    else
      o.path = a
    end
    i = i + 1
  end
  return o
end

local function on_terminal()
  local ok = os.execute("test -t 0")
  return ok == true or ok == 0
end

function _M.main(args)
  local o, perr = parse_args(args)
  if not o then
    io.stderr:write("ocean new: ", perr, "\n(see ocean new --help)\n")
    return 2
  end
  if o.help then
    io.stdout:write(USAGE)
    return 0
  end
  if not o.yes and on_terminal() then
    o.ask = function(prompt, default)
      io.stdout:write(prompt, " [", default, "]: ")
      io.stdout:flush()
      return io.stdin:read("l")
    end
    o.ask_error = function(msg) io.stdout:write("  ", msg, "\n") end
  end
  local a, aerr = _M.answers(o)
  if not a then
    io.stderr:write("ocean new: ", aerr, "\n")
    return 2
  end
  local files = _M.files(a)
  if not o.force then
    local there = {}
    for _, f in ipairs(files) do
      if exists(a.path .. "/" .. f[1]) then there[#there + 1] = f[1] end
    end
    if #there > 0 then
      io.stderr:write("ocean new: ", a.path, " already has ", table.concat(there, ", "),
        " (--force overwrites them)\n")
      return 1
    end
  end
  for _, f in ipairs(files) do
    local ok, err = write_file(a.path .. "/" .. f[1], f[2])
    if not ok then
      io.stderr:write("ocean new: cannot write ", a.path, "/", f[1], ": ", tostring(err), "\n")
      return 1
    end
  end
  io.stdout:write(("created %s: integration %q (type %s), kind %s -> blueprint %s\n")
    :format(a.path, a.name, a.type, a.kind, a.blueprint))
  for _, f in ipairs(files) do io.stdout:write("  ", f[1], "\n") end
  io.stdout:write("next:\n",
    "  ocean sail ", a.path, " --once      one resync (OCEAN__PORT__CLIENT_ID/SECRET,",
    " OCEAN__PORT__BASE_URL for the emulator)\n",
    "  busted --lua=lua5.4 ", a.path, "/spec   the resync and the webhook against the bundled emulator\n")
  return 0
end

-- }====================

return _M
