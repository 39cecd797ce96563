-- examples/parse_items: map raw GitHub repositories to Port entities with
-- a resource of a port app config, as Ocean's jq entity processor does.
--
--   lua5.4 examples/parse_items/main.lua    (from the repository root,
--   after `make`, with LUA_PATH/LUA_CPATH set as in scripts/run-tests, or
--   after `make install`)
local ocean = require "ocean"

local here = arg[0]:match("^(.*)/[^/]*$") or "."

-- One entry of the config's `resources` (port-app-config.yml as Lua).
local resource = {
  kind = "repository",
  selector = { query = ".archived == false" },
  port = { entity = { mappings = {
    identifier = ".full_name",
    title = ".name",
    blueprint = "'githubRepository'",         -- single quotes work
    properties = {
      url = ".html_url",
      language = ".language",
      stars = ".stargazers_count",
      license = ".license.spdx_id",
    },
    relations = {
      owner = ".owner.login",
      teams = '.topics | map(select(startswith("team-")))',
    },
  } } },
}

local f = assert(io.open(here .. "/repos.json", "rb"))
local text = f:read("*a")
f:close()

-- items: the JSON text as is (a list of Lua tables works too)
local result = assert(ocean.parse_items(resource, text))

for _, entity in ipairs(result.passed) do
  print("entity  " .. ocean.json.encode(entity))
end
for _, d in ipairs(result.dropped) do
  print(("dropped item %d: %s"):format(d.index, d.reason))
end
for _, e in ipairs(result.errors) do
  print(("error   item %d: %s"):format(e.index, e.message))
end
local paths = {}
for path in pairs(result.misconfigured) do paths[#paths + 1] = path end
table.sort(paths)
for _, path in ipairs(paths) do
  print(("misconfigured %s: %s"):format(path, result.misconfigured[path]))
end
