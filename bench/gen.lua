-- bench/gen.lua: a deterministic generator of GitHub-repository-shaped
-- objects (~1.2 KB of JSON each, ~10 % archived) written as NDJSON.
--
--   lua5.4 bench/gen.lua COUNT SEED > file.ndjson
--   local gen = dofile("bench/gen.lua"); gen.write(io.stdout, count, seed)
--
-- The generator is a Park-Miller LCG in double arithmetic, so Lua 5.4 and
-- LuaJIT produce byte-identical output for the same seed.
local concat, format = table.concat, string.format

local _M = {}

local function rng(seed)
  local x = seed % 2147483646 + 1
  return function(n)                   -- integer in [1, n]
    x = (x * 16807) % 2147483647
    return x % n + 1
  end
end

local WORDS = { "api", "web", "core", "auth", "billing", "search", "infra",
  "mobile", "data", "ml", "edge", "gateway", "payments", "catalog", "events",
  "notify", "users", "admin", "docs", "sdk", "cli", "ops", "metrics", "cache" }
local LANGS = { "Go", "Python", "TypeScript", "Java", "Rust", "C", "Lua",
  "Ruby", "Kotlin", "Scala", "Shell" }
local LICENSES = {
  { "mit", "MIT License", "MIT" },
  { "apache-2.0", "Apache License 2.0", "Apache-2.0" },
  { "bsd-3-clause", "BSD 3-Clause \"New\" or \"Revised\" License", "BSD-3-Clause" },
  { "gpl-3.0", "GNU General Public License v3.0", "GPL-3.0" },
}
local TEAMS = { "team-payments", "team-platform", "team-growth",
  "team-data", "team-sre" }

local function str(s)                  -- JSON string literal
  return '"' .. s:gsub('[%c"\\]', function(c)
    if c == '"' then return '\\"' end
    if c == "\\" then return "\\\\" end
    return format("\\u%04x", c:byte())
  end) .. '"'
end

local function date(r)
  return format('"20%02d-%02d-%02dT%02d:%02d:%02dZ"', 15 + r(9), r(12), r(28),
                r(24) - 1, r(60) - 1, r(60) - 1)
end

-- One repository as JSON text (fields in GitHub's order).
local function repo(r, i)
  local org = "org" .. r(40)
  local name = WORDS[r(#WORDS)] .. "-" .. WORDS[r(#WORDS)] .. "-" .. i
  local full = org .. "/" .. name
  local lic = LICENSES[r(#LICENSES)]
  local topics = {}
  for k = 1, r(5) - 1 do
    topics[k] = str(k == 1 and TEAMS[r(#TEAMS)] or WORDS[r(#WORDS)])
  end
  local owner_id = 1000 + r(40)
  local t = {
    '{"id":', 10000000 + i,
    ',"node_id":', str("R_kgDO" .. format("%08X", i * 7919 % 4294967291)),
    ',"name":', str(name), ',"full_name":', str(full),
    ',"private":', r(4) == 1 and "true" or "false",
    ',"owner":{"login":', str(org), ',"id":', owner_id,
    ',"node_id":', str("O_kgDO" .. owner_id),
    ',"avatar_url":', str("https://avatars.githubusercontent.com/u/" .. owner_id .. "?v=4"),
    ',"html_url":', str("https://github.com/" .. org),
    ',"type":"Organization","site_admin":false}',
    ',"html_url":', str("https://github.com/" .. full),
    ',"description":', r(8) == 1 and "null"
      or str("The " .. WORDS[r(#WORDS)] .. " service for \"" .. WORDS[r(#WORDS)] .. "\" — owned by " .. org),
    ',"fork":', r(10) == 1 and "true" or "false",
    ',"url":', str("https://api.github.com/repos/" .. full),
    ',"created_at":', date(r), ',"updated_at":', date(r), ',"pushed_at":', date(r),
    ',"git_url":', str("git://github.com/" .. full .. ".git"),
    ',"ssh_url":', str("git@github.com:" .. full .. ".git"),
    ',"clone_url":', str("https://github.com/" .. full .. ".git"),
    ',"homepage":', r(3) == 1 and str("https://" .. name .. ".example.com") or "null",
    ',"size":', r(500000),
    ',"stargazers_count":', r(5000) - 1, ',"watchers_count":', r(5000) - 1,
    ',"language":', r(12) == 1 and "null" or str(LANGS[r(#LANGS)]),
    ',"has_issues":true,"has_projects":', r(2) == 1 and "true" or "false",
    ',"has_wiki":', r(2) == 1 and "true" or "false",
    ',"forks_count":', r(300) - 1,
    ',"archived":', r(10) == 1 and "true" or "false",
    ',"disabled":false,"open_issues_count":', r(200) - 1,
    ',"license":', r(7) == 1 and "null" or concat({ '{"key":', str(lic[1]),
      ',"name":', str(lic[2]), ',"spdx_id":', str(lic[3]),
      ',"url":', str("https://api.github.com/licenses/" .. lic[1]), "}" }),
    ',"topics":[', concat(topics, ","), "]",
    ',"visibility":', r(4) == 1 and '"private"' or '"public"',
    ',"default_branch":', r(5) == 1 and '"master"' or '"main"',
    ',"score":', format("%.2f", r(10000) / 100),
    ',"permissions":{"admin":', r(3) == 1 and "true" or "false",
    ',"push":true,"pull":true}}',
  }
  return concat(t)
end

-- Write count repositories as NDJSON to file handle f.
function _M.write(f, count, seed)
  local r = rng(seed or 42)
  local chunk = {}
  for i = 1, count do
    chunk[#chunk + 1] = repo(r, i)
    if #chunk == 1000 or i == count then
      chunk[#chunk + 1] = ""
      f:write(concat(chunk, "\n"))
      chunk = {}
    end
  end
end

_M.repo = repo
_M.rng = rng

if select("#", ...) > 0 and tonumber((...)) then   -- run as a script
  _M.write(io.stdout, tonumber(arg[1]) or 1000, tonumber(arg[2]) or 42)
end

return _M
