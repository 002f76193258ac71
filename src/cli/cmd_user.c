/* `starling user ...`: add, change the password of, delete and list local accounts
 * (src/xmpp/accounts.h) in the storage the configuration names. JIDs are parsed and
 * prepared per RFC 7622 (localpart UsernameCaseMapped, RFC 8265 §3.3), passwords with
 * OpaqueString (RFC 8265 §4.2) inside st_account_create_sync. It runs next to a live server:
 * the SQLite database is in WAL mode with a busy timeout, and a created account is visible to
 * the server's next authentication without a restart (the server reads credentials per
 * login). Passwords are read without stdio buffering, never echoed, printed or logged, and
 * wiped from memory after use. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "cli/cli.h"
#include "storage/storage.h"
#include "xmpp/accounts.h"
#include "xmpp/jid.h"
#include "xmpp/settings.h"

/* Longest password accepted (bytes, without the newline); the JID part limit of
 * OpaqueString preparation is lower still. */
#define PW_MAX 1024

static void usage(FILE *f)
{
    fprintf(f, "usage: starling user add JID [--password-stdin]\n"
               "       starling user passwd JID [--password-stdin]\n"
               "       starling user del JID\n"
               "       starling user list [DOMAIN]\n"
               "options: --config FILE (before or after the command)\n");
}

/* ---- password input ---- */

/* The terminal state to restore if a signal arrives while echo is off. Process-wide by
 * nature (a signal handler cannot be given context); only the CLI uses it. */
static volatile sig_atomic_t tty_saved;
static int tty_fd = -1;
static struct termios tty_orig;

static void on_signal(int sig)
{
    if (tty_saved)
        tcsetattr(tty_fd, TCSAFLUSH, &tty_orig);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Reads one line from fd into buf (at most max-1 bytes, NUL-terminated, newline removed).
 * Unbuffered so no copy of the secret stays in a stdio buffer. Returns 0, ST_ELIMIT for a
 * longer line, ST_EIO on read error, ST_ENOTFOUND at end of input before any byte. */
static int read_line(int fd, char *buf, size_t max, size_t *len)
{
    size_t n = 0;
    bool any = false;
    for (;;) {
        char c;
        ssize_t r = read(fd, &c, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return ST_EIO;
        if (r == 0)
            break;
        any = true;
        if (c == '\n')
            break;
        if (n + 1 >= max) {
            st_memzero(buf, max);
            return ST_ELIMIT;
        }
        buf[n++] = c;
    }
    buf[n] = 0;
    *len = n;
    return any ? 0 : ST_ENOTFOUND;
}

static int prompt_line(int fd, const char *prompt, char *buf, size_t max, size_t *len)
{
    if (write(fd, prompt, strlen(prompt)) < 0)
        return ST_EIO;
    int rc = read_line(fd, buf, max, len);
    /* echo is off, so the user's Enter did not move the cursor */
    if (write(fd, "\n", 1) < 0 && !rc)
        rc = ST_EIO;
    return rc;
}

/* Asks twice on the terminal with echo off. Returns 0 or 1 (message printed). */
static int read_password_tty(char *pw, size_t max)
{
    char again[PW_MAX + 1];
    size_t len = 0, len2 = 0;
    int fd = open("/dev/tty", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "starling: no terminal to ask for the password; "
                        "use --password-stdin\n");
        return 1;
    }
    struct termios t;
    if (tcgetattr(fd, &tty_orig) != 0) {
        fprintf(stderr, "starling: cannot read terminal settings; use --password-stdin\n");
        close(fd);
        return 1;
    }
    tty_fd = fd;
    tty_saved = 1;
    struct sigaction sa, old_int, old_term, old_hup, old_quit;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGHUP, &sa, &old_hup);
    sigaction(SIGQUIT, &sa, &old_quit);
    t = tty_orig;
    t.c_lflag &= ~(tcflag_t)ECHO;
    int rc = tcsetattr(fd, TCSAFLUSH, &t) == 0 ? 0 : ST_EIO;
    if (!rc)
        rc = prompt_line(fd, "Password: ", pw, max, &len);
    if (!rc)
        rc = prompt_line(fd, "Password (again): ", again, sizeof again, &len2);
    tcsetattr(fd, TCSAFLUSH, &tty_orig);
    tty_saved = 0;
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGHUP, &old_hup, NULL);
    sigaction(SIGQUIT, &old_quit, NULL);
    close(fd);
    tty_fd = -1;
    int out = 0;
    if (rc == ST_ELIMIT) {
        fprintf(stderr, "starling: password too long (at most %d bytes)\n", PW_MAX - 1);
        out = 1;
    } else if (rc) {
        fprintf(stderr, "starling: cannot read the password from the terminal\n");
        out = 1;
    } else if (len != len2 || memcmp(pw, again, len) != 0) {
        fprintf(stderr, "starling: passwords do not match\n");
        out = 1;
    } else if (len == 0) {
        fprintf(stderr, "starling: empty password\n");
        out = 1;
    }
    st_memzero(again, sizeof again);
    if (out)
        st_memzero(pw, max);
    return out;
}

/* Reads one line of stdin. Returns 0 or 1 (message printed). */
static int read_password_stdin(char *pw, size_t max)
{
    size_t len = 0;
    int rc = read_line(STDIN_FILENO, pw, max, &len);
    if (rc == ST_ELIMIT) {
        fprintf(stderr, "starling: password too long (at most %zu bytes)\n", max - 1);
        return 1;
    }
    if (rc == ST_EIO) {
        fprintf(stderr, "starling: cannot read the password from stdin: %s\n", strerror(errno));
        return 1;
    }
    if (len == 0) {
        st_memzero(pw, max);
        fprintf(stderr, "starling: empty password on stdin\n");
        return 1;
    }
    return 0;
}

/* ---- commands ---- */

struct ctx {
    struct st_settings settings;
    struct st_storage *st;
    unsigned iterations;
};

/* Parses a bare JID of a configured host into *jid. Returns 0 or 1 (message printed). */
static int parse_user_jid(const struct ctx *c, const char *arg, struct st_jid *jid)
{
    if (st_jid_parse(arg, jid) != 0) {
        fprintf(stderr, "starling: '%s' is not a valid JID\n", arg);
        return 1;
    }
    if (!jid->local || jid->resource) {
        fprintf(stderr, "starling: expected user@domain, got '%s'\n", arg);
        st_jid_clear(jid);
        return 1;
    }
    if (!st_settings_host(&c->settings, jid->domain)) {
        fprintf(stderr, "starling: %s is not a host of this server\n", jid->domain);
        st_jid_clear(jid);
        return 1;
    }
    return 0;
}

static int set_password(struct ctx *c, const struct st_jid *jid, bool from_stdin, bool replace)
{
    char pw[PW_MAX + 1];
    int ret = from_stdin ? read_password_stdin(pw, sizeof pw)
                         : read_password_tty(pw, sizeof pw);
    if (ret)
        return ret;
    int rc = st_account_create_sync(c->st, jid->domain, jid->local, pw, c->iterations, replace);
    st_memzero(pw, sizeof pw);
    switch (rc) {
    case 0:
        printf("%s %s\n", replace ? "changed the password of" : "added user", jid->bare);
        return 0;
    case ST_EEXIST:
        fprintf(stderr, "starling: user %s already exists\n", jid->bare);
        return 1;
    case ST_EINVAL:
        fprintf(stderr, "starling: password not allowed (control characters or invalid "
                        "UTF-8)\n");
        return 1;
    default:
        fprintf(stderr, "starling: cannot store the account %s: %s\n", jid->bare,
                st_strerror(rc));
        return 1;
    }
}

static int cmd_add_passwd(struct ctx *c, const char *arg, bool from_stdin, bool add)
{
    struct st_jid jid;
    if (parse_user_jid(c, arg, &jid))
        return 1;
    int ret;
    int ex = st_account_exists_sync(c->st, jid.domain, jid.local);
    if (ex < 0) {
        fprintf(stderr, "starling: cannot read accounts: %s\n", st_strerror(ex));
        ret = 1;
    } else if (add && ex == 1) {
        fprintf(stderr, "starling: user %s already exists\n", jid.bare);
        ret = 1;
    } else if (!add && ex == 0) {
        fprintf(stderr, "starling: no such user %s\n", jid.bare);
        ret = 1;
    } else {
        ret = set_password(c, &jid, from_stdin, !add);
    }
    st_jid_clear(&jid);
    return ret;
}

static int cmd_del(struct ctx *c, const char *arg)
{
    struct st_jid jid;
    if (parse_user_jid(c, arg, &jid))
        return 1;
    int rc = st_account_delete_sync(c->st, jid.domain, jid.local);
    int ret = 0;
    if (rc == 0) {
        printf("deleted user %s\n", jid.bare);
    } else if (rc == ST_ENOTFOUND) {
        fprintf(stderr, "starling: no such user %s\n", jid.bare);
        ret = 1;
    } else {
        fprintf(stderr, "starling: cannot delete %s: %s\n", jid.bare, st_strerror(rc));
        ret = 1;
    }
    st_jid_clear(&jid);
    return ret;
}

struct jid_list {
    char **items;
    size_t n, cap;
};

static void collect_user(void *ud, const char *host, const char *local)
{
    struct jid_list *l = ud;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->items = st_realloc(l->items, l->cap * sizeof *l->items);
    }
    size_t len = strlen(local) + 1 + strlen(host) + 1;
    char *jid = st_malloc(len);
    snprintf(jid, len, "%s@%s", local, host);
    l->items[l->n++] = jid;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmd_list(struct ctx *c, const char *domain)
{
    char *host = NULL;
    if (domain) {
        if (st_jid_prep_domain(domain, strlen(domain), &host) != 0) {
            fprintf(stderr, "starling: '%s' is not a valid domain\n", domain);
            return 1;
        }
        if (!st_settings_host(&c->settings, host)) {
            fprintf(stderr, "starling: %s is not a host of this server\n", host);
            st_free(host);
            return 1;
        }
    }
    struct jid_list l = {0};
    int rc = st_account_list_sync(c->st, host, collect_user, &l);
    st_free(host);
    /* sorted as printed (by the JID string), which is what a reader scans */
    qsort(l.items, l.n, sizeof *l.items, cmp_str);
    for (size_t i = 0; i < l.n; i++) {
        if (!rc)
            printf("%s\n", l.items[i]);
        st_free(l.items[i]);
    }
    st_free(l.items);
    if (rc) {
        fprintf(stderr, "starling: cannot list accounts: %s\n", st_strerror(rc));
        return 1;
    }
    return fflush(stdout) == 0 ? 0 : 1;
}

int st_cmd_user(int argc, char **argv, const char *config_path)
{
    if (argc > 0 && strcmp(argv[0], "user") == 0) {
        argc--;
        argv++;
    }
    if (argc < 1) {
        usage(stderr);
        return 2;
    }
    const char *sub = argv[0];
    if (strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0 || strcmp(sub, "help") == 0) {
        usage(stdout);
        return 0;
    }
    bool from_stdin = false;
    const char *pos[2] = {NULL, NULL};
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--password-stdin") == 0) {
            from_stdin = true;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "starling: unknown option %s\n", argv[i]);
            usage(stderr);
            return 2;
        } else if (npos < 2) {
            pos[npos++] = argv[i];
        } else {
            npos++;
        }
    }
    bool add = strcmp(sub, "add") == 0, passwd = strcmp(sub, "passwd") == 0;
    bool del = strcmp(sub, "del") == 0, list = strcmp(sub, "list") == 0;
    bool ok = ((add || passwd) && npos == 1) || (del && npos == 1 && !from_stdin) ||
              (list && npos <= 1 && !from_stdin);
    if (!ok) {
        usage(stderr);
        return 2;
    }

    struct ctx c;
    memset(&c, 0, sizeof c);
    char *err = NULL;
    if (st_settings_load(config_path, &c.settings, &err) != 0) {
        fprintf(stderr, "starling: %s\n", err ? err : "invalid configuration");
        st_free(err);
        st_settings_free(&c.settings);
        return 1;
    }
    if (c.settings.log_level < ST_LOG_DEBUG)
        st_log_set_level(ST_LOG_WARN); /* keep routine info lines out of the tool's output */
    if (c.settings.storage != 0) {
        fprintf(stderr, "starling: storage is 'memory': accounts would not persist "
                        "(set storage: sqlite)\n");
        st_settings_free(&c.settings);
        return 1;
    }
    c.iterations = c.settings.c2s.scram_iterations < ST_SCRAM_MIN_ITERATIONS
                       ? ST_SCRAM_MIN_ITERATIONS
                       : (unsigned)c.settings.c2s.scram_iterations;
    if (st_storage_open(NULL, "sqlite", c.settings.data_dir, &c.st, &err) != 0) {
        fprintf(stderr, "starling: cannot open storage in %s: %s\n", c.settings.data_dir,
                err ? err : "?");
        st_free(err);
        st_settings_free(&c.settings);
        return 1;
    }
    int ret;
    if (add || passwd)
        ret = cmd_add_passwd(&c, pos[0], from_stdin, add);
    else if (del)
        ret = cmd_del(&c, pos[0]);
    else
        ret = cmd_list(&c, pos[0]);
    st_storage_close(c.st);
    st_settings_free(&c.settings);
    return ret;
}
