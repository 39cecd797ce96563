-- luacheck: both runtimes, busted specs; `ngx` exists inside OpenResty.
std = "max+busted"
read_globals = { "ngx" }
max_line_length = 120
exclude_files = { "build/**" }
