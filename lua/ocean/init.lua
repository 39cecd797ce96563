-- ocean: the public API of lua-ocean (named as in Port's Ocean).
local json = require "ocean.json"

local _M = {
  _VERSION = require("ocean.core").version,
  json = json,
  null = json.null,
}

return _M
