/* The standalone corpus runner shared by every fuzz target: built with
 * -DST_FUZZ_STANDALONE (and without libFuzzer), a target replays the files and
 * directories named on its command line through LLVMFuzzerTestOneInput, which
 * is how `make test` runs the seed corpora. Include it at the end of a target
 * after defining ST_FUZZ_NAME. */
#ifndef ST_FUZZ_STANDALONE_H
#define ST_FUZZ_STANDALONE_H
#ifdef ST_FUZZ_STANDALONE

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>

#include "base/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return 1;
    }
    struct st_buf b;
    st_buf_init(&b, 16 * 1024 * 1024);
    char tmp[4096];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) {
        if (st_buf_append(&b, tmp, n)) {
            fprintf(stderr, "%s: too large\n", path);
            break;
        }
    }
    fclose(f);
    LLVMFuzzerTestOneInput((const uint8_t *)(b.data ? b.data : ""), b.len);
    st_buf_free(&b);
    return 0;
}

int main(int argc, char **argv)
{
    int failed = 0, count = 0;
    for (int i = 1; i < argc; i++) {
        struct stat stt;
        if (stat(argv[i], &stt) != 0) {
            perror(argv[i]);
            failed = 1;
            continue;
        }
        if (!S_ISDIR(stt.st_mode)) {
            failed |= run_file(argv[i]);
            count++;
            continue;
        }
        DIR *d = opendir(argv[i]);
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name);
            failed |= run_file(path);
            count++;
        }
        if (d)
            closedir(d);
    }
    printf("%s: %d inputs run\n", ST_FUZZ_NAME, count);
    return failed;
}

#endif
#endif
