/* Numbered schema migrations embedded at build time from sql/<driver>/NNN_name.sql by
 * tools/embed_sql.py (one numbering per driver, starting at 1, no gaps). The SQLite driver
 * applies the ones newer than schema_version at open, in order, in one transaction. */
#ifndef ST_STORAGE_MIGRATIONS_H
#define ST_STORAGE_MIGRATIONS_H

#include <stddef.h>

struct st_sql_migration {
    int version;      /* NNN of the file name */
    const char *name; /* the rest of the file name, for logs */
    const char *sql;  /* the file's text; may hold several statements */
};

/* The SQLite migrations, ascending by version (generated; immutable). */
extern const struct st_sql_migration st_sqlite_migrations[];
extern const size_t st_sqlite_migrations_count;

#endif
