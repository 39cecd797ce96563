-- The installed Debian packages and their maintainers, from dpkg's status
-- file, as Port entities. Real local data: every Debian machine has it.
--
--   kind `maintainer`: one object per distinct Maintainer field of the
--                      installed packages
--   kind `package`:    one object per installed package (a generator that
--                      yields pages of 200); the mapping relates each
--                      package to its maintainer and to its dependencies
local ocean = require "ocean"
local dpkg = require "dpkg_status"

local PAGE = 200

local function status_file()
  return ocean.integration_config.status_file or "/var/lib/dpkg/status"
end

-- "install ok installed"; removed packages keep a stanza ("deinstall ok
-- config-files") until they are purged.
local function installed(stanza)
  return (stanza.status or ""):match(" installed$") ~= nil
end

ocean.on_resync("maintainer", function()
  local seen, list = {}, {}
  for stanza in dpkg.stanzas(status_file()) do
    local m = installed(stanza) and dpkg.maintainer(stanza.maintainer)
    if m and not seen[m.email] then
      seen[m.email] = true
      list[#list + 1] = m
    end
  end
  return list                     -- a plain list: one batch
end)

ocean.on_resync("package", function()
  local page = {}
  for stanza in dpkg.stanzas(status_file()) do
    page[#page + 1] = stanza
    if #page == PAGE then
      coroutine.yield(page)       -- a generator: one page at a time
      page = {}
    end
  end
  if #page > 0 then coroutine.yield(page) end
end)
