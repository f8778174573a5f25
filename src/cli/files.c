/* Small files of the home directory, written whole with mode 0600. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* Writes `len` bytes to a new file `path`, mode 0600; never replaces one. */
int cli_write_new(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        cli_error("%s: %s", path, strerror(errno));
        return errno == EEXIST ? EXIT_USAGE : EXIT_STORAGE;
    }
    ssize_t n = write(fd, data, len);
    int err = n == (ssize_t)len ? 0 : n < 0 ? errno : EIO;
    if (fsync(fd) != 0 && err == 0)
        err = errno;
    close(fd);
    if (err != 0) {
        unlink(path);
        cli_error("%s: %s", path, strerror(err));
        return EXIT_STORAGE;
    }
    return EXIT_OK;
}

/* Puts `len` bytes in place of `path` (mode 0600) through a new file and a rename. */
int cli_write_replace(const char *path, const void *data, size_t len)
{
    char tmp[4096 + 32];
    snprintf(tmp, sizeof tmp, "%s.new", path);
    if (unlink(tmp) != 0 && errno != ENOENT) {
        cli_error("%s: %s", tmp, strerror(errno));
        return EXIT_STORAGE;
    }
    int st = cli_write_new(tmp, data, len);
    if (st != EXIT_OK)
        return st;
    if (rename(tmp, path) != 0) {
        cli_error("%s: %s", path, strerror(errno));
        unlink(tmp);
        return EXIT_STORAGE;
    }
    return EXIT_OK;
}

/* Reads at most cap - 1 bytes of `path` into `out` as a string; returns its length or -1. */
ssize_t cli_read_small(const char *path, char *out, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, out, cap - 1);
    close(fd);
    if (n < 0)
        return -1;
    out[n] = '\0';
    return n;
}

int cli_read_line(char *out, size_t cap)
{
    if (fgets(out, (int)cap, stdin) == NULL)
        return -1;
    out[strcspn(out, "\r\n")] = '\0';
    return out[0] ? 0 : -1;
}
