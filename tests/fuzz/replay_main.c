/* Replay driver for fuzz targets when not built with libFuzzer: runs the target over every
 * file named on the command line, or every file in a directory argument. The corpus is the
 * test: a missing or unreadable argument, an unreadable file, or no input at all fails
 * (exit 1), so a moved or emptied corpus folder cannot turn the replay into a silent pass. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Runs the target on one file's bytes; 0, or -1 when the file cannot be read. */
static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = -1;

    if (f == NULL)
        goto out;
    for (;;) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 4096;
            uint8_t *nb = realloc(buf, ncap);
            if (nb == NULL)
                goto out;
            buf = nb;
            cap = ncap;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        if (n == 0)
            break;
        len += n;
    }
    if (ferror(f))
        goto out;
    LLVMFuzzerTestOneInput(buf, len);
    rc = 0;
out:
    if (rc != 0)
        fprintf(stderr, "replay: cannot read %s: %s\n", path, strerror(errno));
    if (f != NULL)
        fclose(f);
    free(buf);
    return rc;
}

/* Runs every regular entry of a directory (dot files skipped); the count, or -1. */
static int run_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int runs = 0;

    if (d == NULL) {
        fprintf(stderr, "replay: cannot open corpus folder %s: %s\n", dir, strerror(errno));
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        char p[4096];
        if (e->d_name[0] == '.')
            continue;
        if (snprintf(p, sizeof(p), "%s/%s", dir, e->d_name) >= (int)sizeof(p) || run_file(p) != 0) {
            runs = -1;
            break;
        }
        runs++;
    }
    closedir(d);
    return runs;
}

int main(int argc, char **argv)
{
    int runs = 0, failed = 0;

    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]);
        return 1;
    }
    LLVMFuzzerTestOneInput((const uint8_t *)"", 0);
    for (int i = 1; i < argc; i++) {
        struct stat st;
        int n;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: corpus %s: %s\n", argv[i], strerror(errno));
            failed = 1;
            continue;
        }
        n = S_ISDIR(st.st_mode) ? run_dir(argv[i]) : run_file(argv[i]) == 0 ? 1 : -1;
        if (n < 0)
            failed = 1;
        else if (n == 0) {
            fprintf(stderr, "replay: corpus folder %s is empty\n", argv[i]);
            failed = 1;
        } else
            runs += n;
    }
    printf("replayed %d inputs\n", runs);
    return failed || runs == 0 ? 1 : 0;
}
