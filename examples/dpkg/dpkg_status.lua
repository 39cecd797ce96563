-- Parsing of dpkg's status file (deb822 stanzas).
local _M = {}

-- Iterate over the stanzas of a status file: tables with lower-case field
-- names ('-' becomes '_'); continuation lines are joined with "\n".
function _M.stanzas(path)
  local f = assert(io.open(path, "r"))
  local current, last = {}, nil
  local lines = f:lines()
  local done = false
  return function()
    if done then return nil end
    for line in lines do
      if line == "" then
        if next(current) then
          local s = current
          current, last = {}, nil
          return s
        end
      elseif line:sub(1, 1) == " " or line:sub(1, 1) == "\t" then
        if last then
          local text = line:sub(2)
          if text == "." then text = "" end
          current[last] = current[last] .. "\n" .. text
        end
      else
        local name, value = line:match("^([^:]+):%s*(.*)$")
        if name then
          last = name:lower():gsub("%-", "_")
          current[last] = value
        end
      end
    end
    done = true
    f:close()
    if next(current) then return current end
    return nil
  end
end

-- "Name <email>" -> {name=, email=}
function _M.maintainer(field)
  if type(field) ~= "string" then return nil end
  local name, email = field:match("^%s*(.-)%s*<([^>]+)>")
  if not email then return nil end
  return { name = name, email = email:lower() }
end

return _M
