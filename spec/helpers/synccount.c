/*
 * synccount.c - an LD_PRELOAD shim for the journal's specs: every fsync(2)
 * and fdatasync(2) the process makes is first logged as one line,
 * "fsync FD" or "fdatasync FD", appended to the file SYNCCOUNT_LOG names,
 * then made. A spec writes its own marker lines into the same file
 * (O_APPEND keeps the order) and counts the syncs between them. Not part
 * of the module: the spec compiles it with cc -shared.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int fsync(int fd);
int fdatasync(int fd);

static void note(const char *what, int fd)
{
  const char *path = getenv("SYNCCOUNT_LOG");
  int lf;
  if (!path) return;
  lf = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (lf < 0) return;
  dprintf(lf, "%s %d\n", what, fd);
  close(lf);
}

int fsync(int fd)
{
  int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
  note("fsync", fd);
  return real(fd);
}

int fdatasync(int fd)
{
  int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
  note("fdatasync", fd);
  return real(fd);
}
