/*
 * gw_sent.c - the gateway's memory of recent deliveries (see gw_sent.h).
 *
 * A file of its own rather than a table in gateway.db: it has a different
 * durability need (every write is fsynced before a message goes out) and
 * no relation to the session tables.
 */
#include "config.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "buf.h"
#include "clock.h"
#include "gw_sent.h"
#include "log.h"

#define GW_SENT_BUSY_TIMEOUT_MS 2000

enum {
	Q_LOOKUP,
	Q_UPSERT,
	Q_DELETE,
	Q_PRUNE_OLD,
	Q_PRUNE_USER,
	Q__COUNT
};

static const char *const query_sql[Q__COUNT] = {
	[Q_LOOKUP] = "SELECT state, at, appenduid FROM sent WHERE user = ?1 AND message_id = ?2 AND at >= ?3",
	[Q_UPSERT] = "INSERT INTO sent (user, message_id, state, at, appenduid) VALUES (?1, ?2, ?3, ?4, ?5) "
	             "ON CONFLICT (user, message_id) DO UPDATE SET state = excluded.state, at = excluded.at, "
	             "appenduid = excluded.appenduid",
	[Q_DELETE] = "DELETE FROM sent WHERE user = ?1 AND message_id = ?2",
	[Q_PRUNE_OLD] = "DELETE FROM sent WHERE at < ?1",
	/* In parentheses: clang's -Wstring-concatenation takes two literals of
	 * an array initializer for a missing comma (the fuzz build is clang). */
	[Q_PRUNE_USER] = ("DELETE FROM sent WHERE user = ?1 AND rowid NOT IN "
	                  "(SELECT rowid FROM sent WHERE user = ?1 ORDER BY at DESC LIMIT ?2)"),
};

struct gw_sent {
	sqlite3      *db;
	sqlite3_stmt *q[Q__COUNT];
	double        window;
	long long     max_per_user;
};

struct gw_sent *gw_sent_open(const char *state_dir, double window, long long max_per_user, char *err,
                             size_t errlen)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", state_dir, GW_SENT_FILE);
	/* Created 0600 by us (SQLite would use 0644); never through a symlink. */
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "%s: cannot open: %m", path);
		return NULL;
	}
	close(fd);
	struct gw_sent *st = xcalloc(1, sizeof(*st));
	st->window = window;
	st->max_per_user = max_per_user;
	char *msg = NULL;
	if (sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW, NULL) != SQLITE_OK)
		goto fail;
	sqlite3_busy_timeout(st->db, GW_SENT_BUSY_TIMEOUT_MS);
	if (sqlite3_exec(st->db,
	                 "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
	                 "CREATE TABLE IF NOT EXISTS sent ("
	                 " user TEXT NOT NULL, message_id TEXT NOT NULL, state INTEGER NOT NULL,"
	                 " at REAL NOT NULL, appenduid TEXT, PRIMARY KEY (user, message_id));",
	                 NULL, NULL, &msg) != SQLITE_OK)
		goto fail;
	for (int i = 0; i < Q__COUNT; i++)
		if (sqlite3_prepare_v3(st->db, query_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st->q[i], NULL) !=
		    SQLITE_OK)
			goto fail;
	return st;
fail:
	snprintf(err, errlen, "%s: %s", path, msg ? msg : st->db ? sqlite3_errmsg(st->db) : "cannot open");
	sqlite3_free(msg);
	gw_sent_close(st);
	return NULL;
}

void gw_sent_close(struct gw_sent *st)
{
	if (!st)
		return;
	for (int i = 0; i < Q__COUNT; i++)
		sqlite3_finalize(st->q[i]);
	if (st->db)
		sqlite3_close(st->db);
	free(st);
}

void gw_sent_set_limits(struct gw_sent *st, double window, long long max_per_user)
{
	st->window = window;
	st->max_per_user = max_per_user;
}

/* Run a statement with no rows to read; reset it either way. */
static int run(struct gw_sent *st, sqlite3_stmt *s, const char *what)
{
	int rc = sqlite3_step(s);
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	if (rc != SQLITE_DONE) {
		log_err("sent memory: %s: %s", what, sqlite3_errmsg(st->db));
		return -1;
	}
	return 0;
}

int gw_sent_lookup(struct gw_sent *st, const char *user, const char *message_id, enum gw_sent_state *state,
                   double *at, char *appenduid, size_t cap)
{
	sqlite3_stmt *s = st->q[Q_LOOKUP];
	*state = GW_SENT_NONE;
	if (at)
		*at = 0;
	if (appenduid && cap)
		*appenduid = '\0';
	sqlite3_bind_text(s, 1, user, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, message_id, -1, SQLITE_STATIC);
	sqlite3_bind_double(s, 3, clock_wall() - st->window);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		int v = sqlite3_column_int(s, 0);
		*state = v == GW_SENT_SENT ? GW_SENT_SENT : GW_SENT_SENDING;
		if (at)
			*at = sqlite3_column_double(s, 1);
		const unsigned char *a = sqlite3_column_text(s, 2);
		if (a && appenduid && cap)
			snprintf(appenduid, cap, "%s", (const char *)a);
	}
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		log_err("sent memory: lookup: %s", sqlite3_errmsg(st->db));
		return -1;
	}
	return 0;
}

int gw_sent_mark(struct gw_sent *st, const char *user, const char *message_id, enum gw_sent_state state,
                 const char *appenduid)
{
	double now = clock_wall();
	sqlite3_stmt *s = st->q[Q_PRUNE_OLD];
	sqlite3_bind_double(s, 1, now - st->window);
	if (run(st, s, "prune") < 0)
		return -1;
	s = st->q[Q_UPSERT];
	sqlite3_bind_text(s, 1, user, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, message_id, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 3, (int)state);
	sqlite3_bind_double(s, 4, now);
	if (appenduid && *appenduid)
		sqlite3_bind_text(s, 5, appenduid, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, 5);
	if (run(st, s, "record") < 0)
		return -1;
	s = st->q[Q_PRUNE_USER];
	sqlite3_bind_text(s, 1, user, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, st->max_per_user);
	return run(st, s, "prune per user");
}

int gw_sent_forget(struct gw_sent *st, const char *user, const char *message_id)
{
	sqlite3_stmt *s = st->q[Q_DELETE];
	sqlite3_bind_text(s, 1, user, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, message_id, -1, SQLITE_STATIC);
	return run(st, s, "forget");
}
