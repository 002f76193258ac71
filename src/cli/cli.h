/* Command-line subcommands of the starling binary other than `run` (main.c dispatches).
 * Each returns the process exit status: 0 success, 1 failure, 2 usage error. */
#ifndef ST_CLI_CLI_H
#define ST_CLI_CLI_H

/* `starling user add JID [--password-stdin] | passwd JID [--password-stdin] | del JID |
 * list [DOMAIN]`: account management on the configured storage, safe while the server runs
 * (same SQLite file: WAL and a busy timeout). argv[0..argc) are the words after "user"
 * (a leading "user" is skipped too); config_path is the --config file or NULL for the
 * embedded defaults (borrowed). Passwords come from /dev/tty with echo off (asked twice) or,
 * with --password-stdin, as one line of stdin; they are never printed and are wiped after
 * use. Prints results to stdout and errors to stderr. Blocking; main thread, no loop.
 * Returns 0, 1 (failure, with a message) or 2 (usage printed). */
int st_cmd_user(int argc, char **argv, const char *config_path);

#endif
