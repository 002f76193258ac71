/* Module registry internals (the public module API is include/starling/module.h). */
#ifndef ST_XMPP_MODULE_H
#define ST_XMPP_MODULE_H

struct st_server;
struct st_settings;
struct st_module_def;

/* Returns the NULL-terminated table of built-in modules. */
const struct st_module_def *const *st_module_builtins(void);
/* Validates modules.<name> sections against each module's option table without loading
 * (for `starling check` and reload). Returns 0 or ST_EINVAL with *err "FILE:LINE: ...". */
int st_modules_check(const struct st_settings *s, char **err);
/* Loads every enabled module. Returns 0 or an error with *err (new string). */
int st_modules_load(struct st_server *srv, char **err);
/* Unloads all modules, removing their hooks and timers. */
void st_modules_unload(struct st_server *srv);

#endif
