/* The starling command: `run` the server, `check` a configuration, manage
 * `user` accounts, print the `config-reference`. Every subcommand takes
 * `--config FILE` (default: embedded defaults, data in ./starling-data). */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/log.h"
#include "base/mem.h"
#include "cli/cli.h"
#include "cli/cmd_check_dns.h"
#include "net/tls.h"
#include "st_config.h"
#include "xmpp/module.h"
#include "xmpp/server.h"
#include "xmpp/settings.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: starling COMMAND [--config FILE]\n"
            "\n"
            "commands:\n"
            "  run                      run the server in the foreground\n"
            "  check                    validate the configuration and certificates\n"
            "  user add JID [--password-stdin]\n"
            "  user passwd JID [--password-stdin]\n"
            "  user del JID\n"
            "  user list [DOMAIN]       manage accounts (server running or not)\n"
            "  config-reference         print the configuration reference (Markdown)\n"
            "  version                  print the version\n"
            "\n"
            "Without --config, Starling serves 'localhost' with data in ./starling-data.\n");
}

/* Removes "--config FILE" (or --config=FILE) from argv; returns the path or NULL. */
static const char *take_config(int *argc, char **argv)
{
    const char *path = NULL;
    int o = 0;
    for (int i = 0; i < *argc; i++) {
        if (strcmp(argv[i], "--config") == 0 || strcmp(argv[i], "-c") == 0) {
            if (i + 1 < *argc)
                path = argv[++i];
            else
                path = "";
            continue;
        }
        if (strncmp(argv[i], "--config=", 9) == 0) {
            path = argv[i] + 9;
            continue;
        }
        argv[o++] = argv[i];
    }
    *argc = o;
    argv[o] = NULL;
    return path;
}

static int cmd_check(const char *config)
{
    struct st_settings s;
    char *err = NULL;
    if (st_settings_load(config, &s, &err) != 0) {
        fprintf(stderr, "%s\n", err ? err : "invalid configuration");
        st_free(err);
        return 1;
    }
    int bad = 0;
    if (st_modules_check(&s, &err) != 0) {
        fprintf(stderr, "%s\n", err ? err : "invalid module configuration");
        st_free(err);
        bad = 1;
    }
    printf("%s: configuration OK (%zu host%s)\n", config ? config : "(embedded defaults)",
           s.nhosts, s.nhosts == 1 ? "" : "s");
    for (size_t i = 0; i < s.nhosts; i++) {
        const struct st_host_settings *h = &s.hosts[i];
        char *cert = st_settings_cert_path(&s, h);
        char *key = st_settings_key_path(&s, h);
        if (!h->certificate && access(cert, F_OK) != 0) {
            printf("%s: no certificate yet; a self-signed one will be generated at %s on "
                   "first start\n",
                   h->name, cert);
        } else {
            char *report = NULL;
            int rc = st_tls_check_cert(h->name, cert, key, &report);
            if (report)
                fputs(report, rc ? stderr : stdout);
            if (report && report[0] && report[strlen(report) - 1] != '\n')
                fputc('\n', rc ? stderr : stdout);
            st_free(report);
            if (rc)
                bad = 1;
        }
        st_free(cert);
        st_free(key);
    }
    st_cmd_check_dns(&s);
    st_settings_free(&s);
    if (bad)
        fprintf(stderr, "check failed\n");
    return bad;
}

static int cmd_reference(void)
{
    struct st_buf b;
    st_buf_init(&b, 0);
    int rc = st_settings_document(&b);
    if (rc == 0)
        fwrite(b.data, 1, b.len, stdout);
    st_buf_free(&b);
    return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
    const char *config = take_config(&argc, argv);
    if (config && !*config) {
        fprintf(stderr, "starling: --config needs a file name\n");
        return 2;
    }
    /* libuv reports EPIPE on writes; the signal would kill us instead. */
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "run") == 0) {
        if (argc > 2) {
            usage(stderr);
            return 2;
        }
        return st_server_run(config);
    }
    if (strcmp(cmd, "check") == 0)
        return cmd_check(config);
    if (strcmp(cmd, "user") == 0)
        return st_cmd_user(argc - 2, argv + 2, config);
    if (strcmp(cmd, "config-reference") == 0)
        return cmd_reference();
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("Starling %s\n", ST_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    usage(stderr);
    return 2;
}
