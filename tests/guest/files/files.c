// The guest VFS against Linux: a dynamically linked program (so the
// sandbox's loader maps ld.so and libc through the file service) doing file,
// directory, link, pipe and exec operations under /tmp of its root. Prints
// only what is the same on every run (no inode numbers, no times).
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(c)                                                             \
  do {                                                                       \
    if (!(c)) {                                                              \
      printf("FAIL line %d: %s (errno %s)\n", __LINE__, #c, strerror(errno)); \
      exit(1);                                                               \
    }                                                                        \
  } while (0)

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void list(const char *dir) {
  DIR *d = opendir(dir);
  CHECK(d);
  char *names[64];
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) && n < 64) names[n++] = strdup(e->d_name);
  closedir(d);
  qsort(names, n, sizeof names[0], cmp);
  printf("%s:", dir);
  for (int i = 0; i < n; i++) printf(" %s", names[i]);
  printf("\n");
}

int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "script")) {
    // Started as the interpreter of /tmp/s.sh: argv = [/files, script, /tmp/s.sh, x].
    printf("interpreter argv:");
    for (int i = 1; i < argc; i++) printf(" %s", argv[i]);
    printf("\n");
    return 7;
  }
  setvbuf(stdout, NULL, _IONBF, 0);
  umask(022);
  // Create, write, read back, positions.
  int fd = open("/tmp/a", O_CREAT | O_EXCL | O_RDWR, 0640);
  CHECK(fd >= 0);
  CHECK(write(fd, "hello, ", 7) == 7);
  CHECK(write(fd, "world\n", 6) == 6);
  CHECK(lseek(fd, 0, SEEK_CUR) == 13);
  char buf[64] = {0};
  CHECK(pread(fd, buf, 5, 7) == 5);
  printf("pread: %s\n", buf);
  CHECK(lseek(fd, 0, SEEK_SET) == 0);
  memset(buf, 0, sizeof buf);
  CHECK(read(fd, buf, sizeof buf) == 13);
  printf("read: %s", buf);
  CHECK(read(fd, buf, sizeof buf) == 0);
  struct stat st;
  CHECK(fstat(fd, &st) == 0);
  printf("size %ld mode %o nlink %ld\n", (long)st.st_size, st.st_mode, (long)st.st_nlink);
  CHECK(open("/tmp/a", O_CREAT | O_EXCL | O_RDWR, 0640) == -1 && errno == EEXIST);
  // Append mode.
  int ap = open("/tmp/a", O_WRONLY | O_APPEND);
  CHECK(ap >= 0);
  CHECK(write(ap, "more\n", 5) == 5);
  close(ap);
  CHECK(stat("/tmp/a", &st) == 0);
  printf("after append %ld\n", (long)st.st_size);
  // A file mapping sees the bytes.
  char *m = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
  CHECK(m != MAP_FAILED);
  printf("mapped: %.5s, past end zero: %d\n", m, m[100]);
  munmap(m, 4096);
  // Truncate.
  CHECK(ftruncate(fd, 5) == 0);
  CHECK(fstat(fd, &st) == 0 && st.st_size == 5);
  close(fd);
  // Directories, links, renames.
  CHECK(mkdir("/tmp/d", 0755) == 0);
  CHECK(mkdir("/tmp/d", 0755) == -1 && errno == EEXIST);
  CHECK(mkdir("/tmp/d/sub", 0700) == 0);
  CHECK(link("/tmp/a", "/tmp/d/hard") == 0);
  CHECK(stat("/tmp/a", &st) == 0);
  printf("nlink after link %ld\n", (long)st.st_nlink);
  CHECK(symlink("../a", "/tmp/d/sym") == 0);
  ssize_t n = readlink("/tmp/d/sym", buf, sizeof buf);
  CHECK(n == 4);
  printf("readlink: %.*s\n", (int)n, buf);
  CHECK(lstat("/tmp/d/sym", &st) == 0 && S_ISLNK(st.st_mode));
  CHECK(stat("/tmp/d/sym", &st) == 0 && S_ISREG(st.st_mode));
  CHECK(rename("/tmp/d/hard", "/tmp/d/renamed") == 0);
  CHECK(access("/tmp/d/hard", F_OK) == -1 && errno == ENOENT);
  list("/tmp/d");
  CHECK(rmdir("/tmp/d") == -1 && errno == ENOTEMPTY);
  CHECK(unlink("/tmp/d/sub") == -1 && errno == EISDIR);
  CHECK(rmdir("/tmp/d/sub") == 0);
  CHECK(chmod("/tmp/a", 0600) == 0);
  CHECK(stat("/tmp/a", &st) == 0);
  printf("mode after chmod %o\n", st.st_mode & 07777);
  // Working directory and relative paths.
  CHECK(chdir("/tmp/d") == 0);
  CHECK(getcwd(buf, sizeof buf) != NULL);
  printf("cwd %s\n", buf);
  int dfd = open(".", O_RDONLY | O_DIRECTORY);
  CHECK(dfd >= 0);
  CHECK(openat(dfd, "renamed", O_RDONLY) >= 0);
  CHECK(open("nothere", O_RDONLY) == -1 && errno == ENOENT);
  CHECK(open("renamed/x", O_RDONLY) == -1 && errno == ENOTDIR);
  // Pipes, dup2, fork and exec of a dynamic program through a #! script.
  int p[2];
  CHECK(pipe(p) == 0);
  pid_t c = fork();
  if (c == 0) {
    dup2(p[1], 1);
    close(p[0]);
    close(p[1]);
    int s = open("/tmp/s.sh", O_CREAT | O_WRONLY | O_TRUNC, 0755);
    dprintf(s, "#!/files script\n");
    close(s);
    char *args[] = {"s.sh", "x", NULL};
    execv("/tmp/s.sh", args);
    _exit(99);
  }
  close(p[1]);
  memset(buf, 0, sizeof buf);
  size_t got = 0;
  while ((n = read(p[0], buf + got, sizeof buf - 1 - got)) > 0) got += n;
  int status;
  CHECK(waitpid(c, &status, 0) == c);
  printf("child said: %s", buf);
  printf("child exit %d\n", WEXITSTATUS(status));
  CHECK(unlink("/tmp/s.sh") == 0);
  // copy_file_range and splice through a pipe.
  int in = open("/tmp/d/renamed", O_RDONLY), out = open("/tmp/copy", O_CREAT | O_WRONLY, 0644);
  CHECK(in >= 0 && out >= 0);
  loff_t o = 1;
  CHECK(copy_file_range(in, &o, out, NULL, 100, 0) == 4 && o == 5);
  int q[2];
  CHECK(pipe(q) == 0);
  CHECK(splice(in, NULL, q[1], NULL, 3, 0) == 3);
  CHECK(splice(q[0], NULL, out, NULL, 3, 0) == 3);
  close(in);
  close(out);
  memset(buf, 0, sizeof buf);
  in = open("/tmp/copy", O_RDONLY);
  CHECK(read(in, buf, sizeof buf) == 7);
  printf("copied: %s\n", buf);
  CHECK(unlink("/tmp/copy") == 0);
  // A shared writable mapping of a file: a forked child's stores are seen
  // by the parent, and msync/munmap/exit write them to the file.
  int sf = open("/tmp/shared", O_CREAT | O_RDWR, 0644);
  CHECK(sf >= 0 && ftruncate(sf, 8192) == 0);
  char *sm = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, sf, 0);
  CHECK(sm != MAP_FAILED);
  memcpy(sm, "parent", 6);
  pid_t sc = fork();
  if (sc == 0) {
    memcpy(sm + 4096, "child", 5);
    _exit(0);
  }
  CHECK(waitpid(sc, NULL, 0) == sc);
  printf("parent sees: %.5s\n", sm + 4096);
  CHECK(msync(sm, 8192, MS_SYNC) == 0);
  memset(buf, 0, sizeof buf);
  CHECK(pread(sf, buf, 6, 0) == 6);
  printf("after msync: %s\n", buf);
  memcpy(sm + 100, "unmapped", 8);
  CHECK(munmap(sm, 8192) == 0);
  memset(buf, 0, sizeof buf);
  CHECK(pread(sf, buf, 8, 100) == 8);
  printf("after munmap: %s\n", buf);
  CHECK(fstat(sf, &st) == 0 && st.st_size == 8192);
  close(sf);
  CHECK(unlink("/tmp/shared") == 0);
  list("/tmp");
  return 0;
}
