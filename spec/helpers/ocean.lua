-- spec/helpers/ocean.lua: an `ocean` engine wired to a running emulator.
--
--   local oh = require "spec.helpers.ocean"
--   local ctx = oh.setup(emu, { mapping = {...}, blueprints = {...},
--                               identifier = "it", type = "spec", env = {...} })
-- Creates the blueprints and the integration (with the mapping as its
-- config) in the emulator, then initialises ocean against it. Resync
-- registrations are cleared.
local config = require "ocean.config"
local ehelp = require "spec.helpers.emulator"

local _M = {}

function _M.settings(emu, opts)
  opts = opts or {}
  local dir = ehelp.tmpdir()
  local f = assert(io.open(dir .. "/spec.yaml.tmp", "w"))
  f:close()
  os.execute("mkdir -p " .. dir .. "/.port")
  f = assert(io.open(dir .. "/.port/spec.yaml", "w"))
  f:write("type: " .. (opts.type or "spec") .. "\nversion: 1.0.0\n")
  f:close()
  local env = {
    OCEAN__PORT__BASE_URL = emu.url,
    OCEAN__PORT__CLIENT_ID = emu.client_id,
    OCEAN__PORT__CLIENT_SECRET = opts.secret or emu.client_secret,
    OCEAN__INTEGRATION__IDENTIFIER = opts.identifier or "spec-integration",
    APPLICATION__LOG_LEVEL = opts.log_level or "ERROR",
  }
  for k, v in pairs(opts.env or {}) do env[k] = v end
  local s = assert(config.load { path = dir, env = env })
  os.execute("rm -rf " .. dir)
  return s
end

function _M.setup(emu, opts)
  opts = opts or {}
  local ocean = require "ocean"
  ocean.reset()
  for _, bp in ipairs(opts.blueprints or {}) do
    local st, body = emu.api("POST", "/v1/blueprints", bp)
    assert(st == 200 or st == 201, "blueprint: " .. tostring(st) .. " " .. require("ocean.json").encode(body))
  end
  if opts.mapping then
    local st, body = emu.api("POST", "/v1/integration", {
      installationId = opts.identifier or "spec-integration",
      installationAppType = opts.type or "spec", version = "1.0.0", config = opts.mapping })
    assert(st == 200 or st == 201, "integration: " .. tostring(st) .. " " .. require("ocean.json").encode(body))
  end
  local ctx = assert(ocean.init { settings = _M.settings(emu, opts) })
  return ctx, ocean
end

-- Requests in the emulator's log matching method and a path pattern.
function _M.count(emu, method, pattern)
  local n = 0
  for _, r in ipairs(emu.requests()) do
    if r.method == method and r.path:match(pattern) then n = n + 1 end
  end
  return n
end

return _M
