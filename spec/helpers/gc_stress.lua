-- Loaded by busted with --helper when GC_STRESS=1 (make gc-stress): the
-- collector runs all the time, as in luv's CI, so that a C object the
-- binding does not anchor (a string, a userdata held only from C) is
-- collected under it and the spec that uses it fails or crashes.
if rawget(_G, "jit") then
  collectgarbage("setpause", 0)      -- a new cycle as soon as one ends
else
  collectgarbage("generational", 1, 1)   -- minor collections at 1 % growth
end
