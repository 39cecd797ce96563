/*
 * asan-keep.c - preloaded by `make asan` (build/asan/keep.so): dlclose()
 * does nothing, so that the Lua module stays mapped until the leak check
 * at exit and LeakSanitizer can name its frames (Lua unloads C modules
 * when its state closes, before the process exits). Test tooling only.
 */
#include <dlfcn.h>

int dlclose(void *handle)
{
  (void)handle;
  return 0;
}
