/*
 * gw_state.c - the gateway's durable per-(user, device) state in SQLite.
 *
 * Everything a P-IMAP client expects the gateway to remember across a
 * restart lives in state_dir/gateway.db: device profiles (preferences), the
 * session record and, per folder, the view the client last saw. SQLite is
 * used rather than a home-made file format because the gateway needs atomic
 * multi-row updates (a session and its folder views go together) and crash
 * safety; WAL mode with synchronous=NORMAL gives both, and a committed
 * transaction survives a process crash (only an OS crash may lose the last
 * few commits, never corrupt the file).
 *
 * Schema (version GW_STATE_SCHEMA_VERSION, kept in PRAGMA user_version):
 *
 *   devices  (user, device)           PK  created_at REAL, last_used REAL (epoch seconds)
 *   prefs    (user, device, name)     PK  value TEXT
 *   sessions (user, device)           PK  session_id TEXT, state INTEGER (0/1/2),
 *                                         selected TEXT NULL,
 *                                         selected_readonly INTEGER (0/1),
 *                                         detached_at REAL (epoch seconds)
 *   folders  (user, device, mailbox)  PK  uidvalidity, uidnext, highestmodseq
 *                                         INTEGER, uids TEXT (compact
 *                                         sequence-set "1:5,7"), flags TEXT NULL
 *   filters  (user, device, mailbox, kind) PK  criteria TEXT (XFILTER's
 *                                         canonical value); mailbox "" is
 *                                         ALL, kind 'V' (view) or 'N'
 *
 * prefs, sessions, folders and filters reference devices(user, device) with ON DELETE
 * CASCADE (foreign_keys=ON). Saving any of them creates the device row if it
 * is missing, so callers need not call gw_state_device_touch first (but only
 * device_touch reports whether the device is new). Folder views belong to the
 * session of the same (user, device): gw_state_session_delete and expiry
 * delete both in one transaction. Folders do not reference sessions so that a
 * view may be saved before its session record.
 *
 * User, device and mailbox names come from the client: they only ever reach
 * SQLite as bound parameters of statements prepared once at open. They are
 * not written to the log either (the SQLite message and the operation are).
 *
 * The module is not thread-safe (one event loop). Callbacks (prefs_load,
 * session_expire) may call other gw_state functions, but prefs_load's
 * callback must not call gw_state_prefs_load again: it steps a shared
 * statement. Transactions nest: an inner failure rolls back the outer one.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "buf.h"
#include "gw_state.h"
#include "log.h"
#include "uidset.h"

/* How long a statement waits for another process's lock before failing. */
#define GW_STATE_BUSY_TIMEOUT_MS 5000

/*
 * Schema migrations: migrations[v] brings a database from user_version v to
 * v + 1. All pending steps and the new user_version are applied in one
 * transaction, so a crash mid-upgrade leaves the old schema intact.
 */
static const char *const migrations[GW_STATE_SCHEMA_VERSION] = {
	/* 0 -> 1: initial schema */
	"CREATE TABLE devices ("
	"  user TEXT NOT NULL,"
	"  device TEXT NOT NULL,"
	"  created_at REAL NOT NULL,"
	"  PRIMARY KEY (user, device)"
	") WITHOUT ROWID;"
	"CREATE TABLE prefs ("
	"  user TEXT NOT NULL,"
	"  device TEXT NOT NULL,"
	"  name TEXT NOT NULL,"
	"  value TEXT NOT NULL,"
	"  PRIMARY KEY (user, device, name),"
	"  FOREIGN KEY (user, device) REFERENCES devices (user, device) ON DELETE CASCADE"
	") WITHOUT ROWID;"
	"CREATE TABLE sessions ("
	"  user TEXT NOT NULL,"
	"  device TEXT NOT NULL,"
	"  session_id TEXT NOT NULL,"
	"  state INTEGER NOT NULL CHECK (state IN (0, 1, 2)),"
	"  selected TEXT,"
	"  selected_readonly INTEGER NOT NULL CHECK (selected_readonly IN (0, 1)),"
	"  detached_at REAL NOT NULL,"
	"  PRIMARY KEY (user, device),"
	"  FOREIGN KEY (user, device) REFERENCES devices (user, device) ON DELETE CASCADE"
	") WITHOUT ROWID;"
	"CREATE TABLE folders ("
	"  user TEXT NOT NULL,"
	"  device TEXT NOT NULL,"
	"  mailbox TEXT NOT NULL,"
	"  uidvalidity INTEGER NOT NULL CHECK (uidvalidity BETWEEN 0 AND 4294967295),"
	"  uidnext INTEGER NOT NULL CHECK (uidnext BETWEEN 0 AND 4294967295),"
	"  highestmodseq INTEGER NOT NULL CHECK (highestmodseq >= 0),"
	"  uids TEXT NOT NULL,"
	"  flags TEXT,"
	"  PRIMARY KEY (user, device, mailbox),"
	"  FOREIGN KEY (user, device) REFERENCES devices (user, device) ON DELETE CASCADE"
	") WITHOUT ROWID;",
	/* 1 -> 2: when each device last logged in, to forget the least recently used one */
	"ALTER TABLE devices ADD COLUMN last_used REAL NOT NULL DEFAULT 0;"
	/* unknown until now: count existing devices as used at the upgrade, never as long unused */
	"UPDATE devices SET last_used = (julianday('now') - 2440587.5) * 86400.0;",
	/* 2 -> 3: XFILTER view and notification filters, per device and mailbox ("" = ALL) */
	"CREATE TABLE filters ("
	"  user TEXT NOT NULL,"
	"  device TEXT NOT NULL,"
	"  mailbox TEXT NOT NULL,"
	"  kind TEXT NOT NULL CHECK (kind IN ('V', 'N')),"
	"  criteria TEXT NOT NULL,"
	"  PRIMARY KEY (user, device, mailbox, kind),"
	"  FOREIGN KEY (user, device) REFERENCES devices (user, device) ON DELETE CASCADE"
	") WITHOUT ROWID;",
};

/* Every statement the module runs, prepared once at open. */
enum stmt_id {
	S_BEGIN,
	S_COMMIT,
	S_ROLLBACK,
	S_DEVICE_TOUCH,
	S_DEVICE_COUNT,
	S_DEVICE_KNOWN,
	S_DEVICE_USED,
	S_DEVICE_LRU,
	S_DEVICE_DELETE,
	S_PREFS_LOAD,
	S_PREF_SAVE,
	S_SESSION_LOAD,
	S_SESSION_SAVE,
	S_SESSION_DELETE,
	S_SESSION_FOLDERS_DELETE,
	S_SESSION_EXPIRED,
	S_FOLDER_LOAD,
	S_FOLDER_SAVE,
	S_FOLDER_DELETE,
	S_FILTERS_LOAD,
	S_FILTER_SAVE,
	S_FILTER_DELETE,
	S_FILTER_DELETE_KIND,
	S__COUNT
};

static const char *const stmt_sql[S__COUNT] = {
	[S_BEGIN] = "BEGIN IMMEDIATE",
	[S_COMMIT] = "COMMIT",
	[S_ROLLBACK] = "ROLLBACK",
	/* ?1 user, ?2 device, ?3 created_at */
	[S_DEVICE_TOUCH] = "INSERT INTO devices (user, device, created_at, last_used) VALUES (?1, ?2, ?3, ?3)"
	                   " ON CONFLICT (user, device) DO NOTHING",
	[S_DEVICE_COUNT] = "SELECT count(*) FROM devices WHERE user = ?1",
	[S_DEVICE_KNOWN] = "SELECT 1 FROM devices WHERE user = ?1 AND device = ?2",
	[S_DEVICE_USED] = "UPDATE devices SET last_used = ?3 WHERE user = ?1 AND device = ?2",
	/* ?1 user, ?2 cut-off: devices unused since, with no session to resume (none,
	 * expired, or detached before the cut-off), oldest use first */
	[S_DEVICE_LRU] = "SELECT d.device FROM devices d LEFT JOIN sessions s"
	                 " ON s.user = d.user AND s.device = d.device"
	                 " WHERE d.user = ?1 AND d.last_used < ?2 AND (s.state IS NULL OR s.state = 2"
	                 " OR (s.state = 0 AND s.detached_at < ?2))"
	                 " ORDER BY d.last_used, d.device",
	[S_DEVICE_DELETE] = "DELETE FROM devices WHERE user = ?1 AND device = ?2",
	[S_PREFS_LOAD] = "SELECT name, value FROM prefs WHERE user = ?1 AND device = ?2 ORDER BY name",
	[S_PREF_SAVE] = "INSERT INTO prefs (user, device, name, value) VALUES (?1, ?2, ?3, ?4)"
	                " ON CONFLICT (user, device, name) DO UPDATE SET value = excluded.value",
	[S_SESSION_LOAD] = "SELECT session_id, state, selected, selected_readonly, detached_at"
	                   " FROM sessions WHERE user = ?1 AND device = ?2",
	[S_SESSION_SAVE] = "INSERT INTO sessions (user, device, session_id, state, selected,"
	                   " selected_readonly, detached_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
	                   " ON CONFLICT (user, device) DO UPDATE SET session_id = excluded.session_id,"
	                   " state = excluded.state, selected = excluded.selected,"
	                   " selected_readonly = excluded.selected_readonly,"
	                   " detached_at = excluded.detached_at",
	[S_SESSION_DELETE] = "DELETE FROM sessions WHERE user = ?1 AND device = ?2",
	[S_SESSION_FOLDERS_DELETE] = "DELETE FROM folders WHERE user = ?1 AND device = ?2",
	/* ?1 lifetime, ?2 now */
	[S_SESSION_EXPIRED] = "SELECT user, device FROM sessions"
	                      " WHERE state = 0 AND detached_at + ?1 < ?2 ORDER BY user, device",
	[S_FOLDER_LOAD] = "SELECT uidvalidity, uidnext, highestmodseq, uids, flags FROM folders"
	                  " WHERE user = ?1 AND device = ?2 AND mailbox = ?3",
	[S_FOLDER_SAVE] = "INSERT INTO folders (user, device, mailbox, uidvalidity, uidnext,"
	                  " highestmodseq, uids, flags) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
	                  " ON CONFLICT (user, device, mailbox) DO UPDATE SET"
	                  " uidvalidity = excluded.uidvalidity, uidnext = excluded.uidnext,"
	                  " highestmodseq = excluded.highestmodseq, uids = excluded.uids,"
	                  " flags = excluded.flags",
	[S_FOLDER_DELETE] = "DELETE FROM folders WHERE user = ?1 AND device = ?2 AND mailbox = ?3",
	[S_FILTERS_LOAD] = "SELECT mailbox, kind, criteria FROM filters WHERE user = ?1 AND device = ?2"
	                   " ORDER BY mailbox, kind",
	/* ?3 mailbox, ?4 kind, ?5 criteria */
	[S_FILTER_SAVE] = "INSERT INTO filters (user, device, mailbox, kind, criteria) VALUES (?1, ?2, ?3, ?4, ?5)"
	                  " ON CONFLICT (user, device, mailbox, kind) DO UPDATE SET criteria = excluded.criteria",
	[S_FILTER_DELETE] = "DELETE FROM filters WHERE user = ?1 AND device = ?2 AND mailbox = ?3 AND kind = ?4",
	[S_FILTER_DELETE_KIND] = "DELETE FROM filters WHERE user = ?1 AND device = ?2 AND kind = ?3",
};

struct gw_state {
	sqlite3      *db;
	sqlite3_stmt *stmt[S__COUNT];
	unsigned      tx_depth;  /* nesting of tx_begin (callbacks may re-enter) */
	bool          tx_failed; /* an inner transaction failed: roll back the outer one */
};

/* ---- small helpers -------------------------------------------------------- */

static double wall_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Log a database error for operation `what` with SQLite's own message. */
static void db_error(struct gw_state *st, const char *what)
{
	log_err("state: %s: %s (%d)", what, sqlite3_errmsg(st->db), sqlite3_extended_errcode(st->db));
}

/* Return the statement ready for binding (it is always left reset after use). */
static sqlite3_stmt *stmt(struct gw_state *st, enum stmt_id id)
{
	return st->stmt[id];
}

/* Reset a statement after use and drop its bindings (they may point at caller memory). */
static void stmt_done(sqlite3_stmt *s)
{
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
}

/* Bind a C string (never NULL here: NULL binds SQL NULL, use bind_text_or_null). */
static int bind_text(sqlite3_stmt *s, int idx, const char *text)
{
	return sqlite3_bind_text(s, idx, text, -1, SQLITE_STATIC);
}

static int bind_text_or_null(sqlite3_stmt *s, int idx, const char *text)
{
	return text ? bind_text(s, idx, text) : sqlite3_bind_null(s, idx);
}

/* Bind ?1 user and ?2 device, which nearly every statement takes. */
static int bind_key(sqlite3_stmt *s, const char *user, const char *device)
{
	int rc = bind_text(s, 1, user);
	if (rc == SQLITE_OK)
		rc = bind_text(s, 2, device);
	return rc;
}

/* Step a statement that returns no rows, then reset it. 0 or -1 (logged). */
static int exec_stmt(struct gw_state *st, sqlite3_stmt *s, const char *what)
{
	int rc = sqlite3_step(s);
	if (rc != SQLITE_DONE) {
		db_error(st, what);
		stmt_done(s);
		return -1;
	}
	stmt_done(s);
	return 0;
}

/* Caller-supplied keys are C strings; a NULL is a programming error, refused rather than stored. */
static bool args_ok(const char *what, const char *a, const char *b, const char *c)
{
	if (a && b && c)
		return true;
	log_err("state: %s: NULL key", what);
	return false;
}

/* ---- transactions ------------------------------------------------------- */

/* Begin a write transaction, or join the one already open (re-entrant callbacks). */
static int tx_begin(struct gw_state *st)
{
	if (st->tx_depth > 0) {
		st->tx_depth++;
		return 0;
	}
	if (exec_stmt(st, stmt(st, S_BEGIN), "begin") < 0)
		return -1;
	st->tx_depth = 1;
	st->tx_failed = false;
	return 0;
}

/*
 * End the transaction begun by the matching tx_begin: commit if rc >= 0 and
 * nothing inside failed, else roll back. Returns rc, or -1 if the commit (or
 * a nested operation) failed.
 */
static int tx_end(struct gw_state *st, int rc)
{
	if (st->tx_depth > 1) {
		st->tx_depth--;
		if (rc < 0)
			st->tx_failed = true;
		return rc;
	}
	st->tx_depth = 0;
	if (rc >= 0 && !st->tx_failed) {
		if (exec_stmt(st, stmt(st, S_COMMIT), "commit") == 0)
			return rc;
		rc = -1;
	}
	st->tx_failed = false;
	/* After some errors SQLite has already rolled back; then ROLLBACK itself fails harmlessly. */
	if (sqlite3_get_autocommit(st->db) == 0)
		exec_stmt(st, stmt(st, S_ROLLBACK), "rollback");
	return -1;
}

/* Create the device row if absent. *created (may be NULL) tells whether it was new. */
static int device_ensure(struct gw_state *st, const char *user, const char *device, bool *created)
{
	sqlite3_stmt *s = stmt(st, S_DEVICE_TOUCH);
	if (bind_key(s, user, device) != SQLITE_OK || sqlite3_bind_double(s, 3, wall_now()) != SQLITE_OK) {
		db_error(st, "device touch: bind");
		stmt_done(s);
		return -1;
	}
	if (exec_stmt(st, s, "device touch") < 0)
		return -1;
	if (created)
		*created = sqlite3_changes(st->db) > 0;
	return 0;
}

/* ---- open / close ------------------------------------------------------- */

/* Run one pragma (or any SQL) for its side effect; on failure fill err. */
static int open_exec(sqlite3 *db, const char *sql, const char *path, char *err, size_t errlen)
{
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s: %s", path, sql, msg ? msg : sqlite3_errmsg(db));
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

/* Read a single integer (PRAGMA user_version, a count). */
static int open_query_int(sqlite3 *db, const char *sql, sqlite3_int64 *out, const char *path, char *err,
                          size_t errlen)
{
	sqlite3_stmt *s = NULL;
	int rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
	if (rc == SQLITE_OK) {
		rc = sqlite3_step(s);
		if (rc == SQLITE_ROW) {
			*out = sqlite3_column_int64(s, 0);
			rc = SQLITE_OK;
		}
	}
	if (rc != SQLITE_OK)
		snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(db));
	sqlite3_finalize(s);
	return rc == SQLITE_OK ? 0 : -1;
}

/* The state directory holds device data: create it private; refuse a non-directory. */
static int make_state_dir(const char *dir, char *err, size_t errlen)
{
	if (mkdir(dir, 0700) == 0)
		return 0;
	if (errno != EEXIST) {
		snprintf(err, errlen, "state directory %s: %s", dir, strerror(errno));
		return -1;
	}
	struct stat sb;
	if (stat(dir, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
		snprintf(err, errlen, "state directory %s: not a directory", dir);
		return -1;
	}
	return 0;
}

/*
 * Create the database file ourselves with mode 0600 (SQLite would use 0644
 * less umask) and tighten an existing one; SQLite gives the -wal and -shm
 * files the database file's mode. O_NOFOLLOW: never write through a symlink.
 * Also refuses early a non-empty file without the SQLite header.
 */
static int make_db_file(const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	struct stat sb;
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		close(fd);
		return -1;
	}
	/*
	 * SQLite takes a file too short to hold its header for an empty database
	 * and would write a fresh one over it; anything non-empty must already
	 * start with the header. (An empty file is a new database.)
	 */
	static const char magic[16] = "SQLite format 3";
	char head[sizeof(magic)];
	if (sb.st_size > 0 && (pread(fd, head, sizeof(head), 0) != (ssize_t)sizeof(head) ||
	                       memcmp(head, magic, sizeof(magic)) != 0)) {
		snprintf(err, errlen, "%s: file is not a database (no SQLite header)", path);
		close(fd);
		return -1;
	}
	if ((sb.st_mode & 077) && fchmod(fd, 0600) < 0)
		log_warn("state: %s: chmod 0600: %s", path, strerror(errno));
	close(fd);
	return 0;
}

/* Bring the schema to GW_STATE_SCHEMA_VERSION, or refuse a database we cannot use. */
static int open_schema(sqlite3 *db, const char *path, char *err, size_t errlen)
{
	sqlite3_int64 version = 0;
	/* The first read of the file: this is where a non-database fails (SQLITE_NOTADB). */
	if (open_query_int(db, "PRAGMA user_version", &version, path, err, errlen) < 0)
		return -1;
	if (version > GW_STATE_SCHEMA_VERSION) {
		snprintf(err, errlen, "%s: schema version %lld is newer than this gateway's (%d); refusing to use it",
		         path, (long long)version, GW_STATE_SCHEMA_VERSION);
		return -1;
	}
	if (version < 0) {
		snprintf(err, errlen, "%s: invalid schema version %lld", path, (long long)version);
		return -1;
	}
	if (version == GW_STATE_SCHEMA_VERSION)
		return 0;
	if (version == 0) {
		/* Version 0 is "new": a file that already has tables belongs to something else. */
		sqlite3_int64 tables = 0;
		if (open_query_int(db, "SELECT count(*) FROM sqlite_master", &tables, path, err, errlen) < 0)
			return -1;
		if (tables > 0) {
			snprintf(err, errlen, "%s: an SQLite database without a gateway schema version; refusing to use it",
			         path);
			return -1;
		}
	}

	if (open_exec(db, "BEGIN IMMEDIATE", path, err, errlen) < 0)
		return -1;
	for (sqlite3_int64 v = version; v < GW_STATE_SCHEMA_VERSION; v++) {
		if (open_exec(db, migrations[v], path, err, errlen) < 0)
			goto fail;
	}
	char sql[64];
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", GW_STATE_SCHEMA_VERSION);
	if (open_exec(db, sql, path, err, errlen) < 0 || open_exec(db, "COMMIT", path, err, errlen) < 0)
		goto fail;
	return 0;
fail:
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

struct gw_state *gw_state_open(const char *state_dir, char *err, size_t errlen)
{
	if (!state_dir || !*state_dir) {
		snprintf(err, errlen, "no state directory configured");
		return NULL;
	}
	if (make_state_dir(state_dir, err, errlen) < 0)
		return NULL;
	struct buf pathbuf;
	buf_init(&pathbuf, 0);
	buf_printf(&pathbuf, "%s/%s", state_dir, GW_STATE_FILE);
	buf_append(&pathbuf, "", 1);
	const char *path = (const char *)buf_head(&pathbuf);

	struct gw_state *st = xcalloc(1, sizeof(*st));
	if (make_db_file(path, err, errlen) < 0)
		goto fail;

	int rc = sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW, NULL);
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", path, st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
		goto fail;
	}
	sqlite3_extended_result_codes(st->db, 1);
	sqlite3_busy_timeout(st->db, GW_STATE_BUSY_TIMEOUT_MS);

	/* Schema first: a newer or foreign database is refused before anything is written to it. */
	if (open_schema(st->db, path, err, errlen) < 0)
		goto fail;

	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(st->db, "PRAGMA journal_mode = WAL", -1, &s, NULL) != SQLITE_OK ||
	    sqlite3_step(s) != SQLITE_ROW) {
		snprintf(err, errlen, "%s: journal_mode=WAL: %s", path, sqlite3_errmsg(st->db));
		sqlite3_finalize(s);
		goto fail;
	}
	/* WAL is refused on some filesystems (no shared memory); the default journal still works. */
	const unsigned char *mode = sqlite3_column_text(s, 0);
	if (!mode || strcmp((const char *)mode, "wal") != 0)
		log_warn("state: %s: journal_mode is %s, not wal", path, mode ? (const char *)mode : "?");
	sqlite3_finalize(s);

	if (open_exec(st->db, "PRAGMA synchronous = NORMAL", path, err, errlen) < 0 ||
	    open_exec(st->db, "PRAGMA foreign_keys = ON", path, err, errlen) < 0)
		goto fail;

	for (int i = 0; i < S__COUNT; i++) {
		if (sqlite3_prepare_v3(st->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st->stmt[i], NULL) !=
		    SQLITE_OK) {
			snprintf(err, errlen, "%s: preparing statement %d: %s", path, i, sqlite3_errmsg(st->db));
			goto fail;
		}
	}
	buf_free(&pathbuf);
	return st;

fail:
	gw_state_close(st);
	buf_free(&pathbuf);
	return NULL;
}

void gw_state_close(struct gw_state *st)
{
	if (!st)
		return;
	for (int i = 0; i < S__COUNT; i++)
		sqlite3_finalize(st->stmt[i]);
	/* Closing the last connection checkpoints the WAL into the database and removes it. */
	if (st->db && sqlite3_close(st->db) != SQLITE_OK)
		log_err("state: close: %s", sqlite3_errmsg(st->db));
	free(st);
}

/* ---- devices and preferences --------------------------------------------- */

int gw_state_device_touch(struct gw_state *st, const char *user, const char *device, bool *created)
{
	if (!args_ok("device touch", user, device, ""))
		return -1;
	return device_ensure(st, user, device, created);
}

int gw_state_device_count(struct gw_state *st, const char *user, unsigned *count)
{
	if (!args_ok("device count", user, "", ""))
		return -1;
	sqlite3_stmt *s = stmt(st, S_DEVICE_COUNT);
	int rc = bind_text(s, 1, user);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		db_error(st, "device count");
		stmt_done(s);
		return -1;
	}
	sqlite3_int64 n = sqlite3_column_int64(s, 0);
	*count = n < 0 ? 0 : n > UINT32_MAX ? UINT32_MAX : (unsigned)n;
	stmt_done(s);
	return 0;
}

int gw_state_device_used(struct gw_state *st, const char *user, const char *device, double when)
{
	if (!args_ok("device used", user, device, ""))
		return -1;
	if (tx_begin(st) < 0)
		return -1;
	int rc = device_ensure(st, user, device, NULL);
	if (rc == 0) {
		sqlite3_stmt *s = stmt(st, S_DEVICE_USED);
		if (bind_key(s, user, device) != SQLITE_OK || sqlite3_bind_double(s, 3, when) != SQLITE_OK) {
			db_error(st, "device used: bind");
			stmt_done(s);
			rc = -1;
		} else {
			rc = exec_stmt(st, s, "device used");
		}
	}
	return tx_end(st, rc);
}

int gw_state_device_evict(struct gw_state *st, const char *user, double unused_before, gw_device_skip_cb skip,
                          void *ctx, char *evicted, size_t evicted_len)
{
	if (!args_ok("device evict", user, "", ""))
		return -1;
	if (tx_begin(st) < 0)
		return -1;
	sqlite3_stmt *s = stmt(st, S_DEVICE_LRU);
	int rc = bind_text(s, 1, user);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_double(s, 2, unused_before);
	char name[512] = "";
	bool found = false;
	while (rc == SQLITE_OK || rc == SQLITE_ROW) {
		rc = sqlite3_step(s);
		if (rc != SQLITE_ROW)
			break;
		const char *dev = (const char *)sqlite3_column_text(s, 0);
		if (!dev || (skip && skip(dev, ctx)))
			continue; /* the caller knows it is in use */
		snprintf(name, sizeof(name), "%s", dev);
		found = true;
		break;
	}
	stmt_done(s);
	if (!found && rc != SQLITE_DONE && rc != SQLITE_ROW) {
		db_error(st, "device evict: select");
		return tx_end(st, -1);
	}
	if (!found)
		return tx_end(st, 0) < 0 ? -1 : 1;
	sqlite3_stmt *d = stmt(st, S_DEVICE_DELETE);
	int r = -1;
	if (bind_key(d, user, name) != SQLITE_OK) {
		db_error(st, "device evict: bind");
		stmt_done(d);
	} else {
		r = exec_stmt(st, d, "device evict");
	}
	if (tx_end(st, r) < 0)
		return -1;
	snprintf(evicted, evicted_len, "%s", name);
	return 0;
}

int gw_state_device_known(struct gw_state *st, const char *user, const char *device, bool *known)
{
	if (!args_ok("device known", user, device, ""))
		return -1;
	sqlite3_stmt *s = stmt(st, S_DEVICE_KNOWN);
	int rc = bind_key(s, user, device);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		db_error(st, "device known");
		stmt_done(s);
		return -1;
	}
	*known = rc == SQLITE_ROW;
	stmt_done(s);
	return 0;
}

int gw_state_prefs_load(struct gw_state *st, const char *user, const char *device, gw_pref_cb cb, void *ctx)
{
	if (!args_ok("prefs load", user, device, ""))
		return -1;
	sqlite3_stmt *s = stmt(st, S_PREFS_LOAD);
	int rc = bind_key(s, user, device);
	while (rc == SQLITE_OK || rc == SQLITE_ROW) {
		rc = sqlite3_step(s);
		if (rc != SQLITE_ROW)
			break;
		const char *name = (const char *)sqlite3_column_text(s, 0);
		const char *value = (const char *)sqlite3_column_text(s, 1);
		if (cb && name)
			cb(name, value ? value : "", ctx);
	}
	if (rc != SQLITE_DONE) {
		db_error(st, "prefs load");
		stmt_done(s);
		return -1;
	}
	stmt_done(s);
	return 0;
}

int gw_state_pref_save(struct gw_state *st, const char *user, const char *device, const char *name,
                       const char *value)
{
	if (!args_ok("pref save", user, device, name) || !args_ok("pref save", value, "", ""))
		return -1;
	if (tx_begin(st) < 0)
		return -1;
	int rc = device_ensure(st, user, device, NULL);
	if (rc == 0) {
		sqlite3_stmt *s = stmt(st, S_PREF_SAVE);
		if (bind_key(s, user, device) != SQLITE_OK || bind_text(s, 3, name) != SQLITE_OK ||
		    bind_text(s, 4, value) != SQLITE_OK) {
			db_error(st, "pref save: bind");
			stmt_done(s);
			rc = -1;
		} else {
			rc = exec_stmt(st, s, "pref save");
		}
	}
	return tx_end(st, rc);
}

/* ---- sessions ------------------------------------------------------------- */

void gw_session_rec_free(struct gw_session_rec *rec)
{
	if (!rec)
		return;
	free(rec->selected);
	rec->selected = NULL;
}

/* rec is overwritten (not freed first); on 1 or -1 it is left empty and safe to free. */
int gw_state_session_load(struct gw_state *st, const char *user, const char *device, struct gw_session_rec *rec)
{
	memset(rec, 0, sizeof(*rec));
	if (!args_ok("session load", user, device, ""))
		return -1;
	sqlite3_stmt *s = stmt(st, S_SESSION_LOAD);
	int rc = bind_key(s, user, device);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc == SQLITE_DONE) {
		stmt_done(s);
		return 1;
	}
	if (rc != SQLITE_ROW) {
		db_error(st, "session load");
		stmt_done(s);
		return -1;
	}
	const char *id = (const char *)sqlite3_column_text(s, 0);
	size_t idlen = id ? (size_t)sqlite3_column_bytes(s, 0) : 0;
	if (idlen >= sizeof(rec->session_id)) {
		log_err("state: session load: stored session id is %zu bytes (corrupt row)", idlen);
		stmt_done(s);
		return -1;
	}
	if (idlen)
		memcpy(rec->session_id, id, idlen);
	rec->session_id[idlen] = '\0';
	rec->state = sqlite3_column_int(s, 1);
	const char *sel = (const char *)sqlite3_column_text(s, 2);
	rec->selected = sel ? xstrdup(sel) : NULL;
	rec->selected_readonly = sqlite3_column_int(s, 3) != 0;
	rec->detached_at = sqlite3_column_double(s, 4);
	stmt_done(s);
	return 0;
}

int gw_state_session_save(struct gw_state *st, const char *user, const char *device,
                          const struct gw_session_rec *rec)
{
	if (!args_ok("session save", user, device, ""))
		return -1;
	/* The id is a fixed array: never read past it even if the caller forgot the NUL. */
	if (strnlen(rec->session_id, sizeof(rec->session_id)) == sizeof(rec->session_id)) {
		log_err("state: session save: session id not NUL-terminated");
		return -1;
	}
	if (rec->state != GW_SESSION_DETACHED && rec->state != GW_SESSION_ATTACHED && rec->state != GW_SESSION_EXPIRED) {
		log_err("state: session save: invalid state %d", rec->state);
		return -1;
	}
	if (tx_begin(st) < 0)
		return -1;
	int rc = device_ensure(st, user, device, NULL);
	if (rc == 0) {
		sqlite3_stmt *s = stmt(st, S_SESSION_SAVE);
		if (bind_key(s, user, device) != SQLITE_OK || bind_text(s, 3, rec->session_id) != SQLITE_OK ||
		    sqlite3_bind_int(s, 4, rec->state) != SQLITE_OK ||
		    bind_text_or_null(s, 5, rec->selected) != SQLITE_OK ||
		    sqlite3_bind_int(s, 6, rec->selected_readonly ? 1 : 0) != SQLITE_OK ||
		    sqlite3_bind_double(s, 7, rec->detached_at) != SQLITE_OK) {
			db_error(st, "session save: bind");
			stmt_done(s);
			rc = -1;
		} else {
			rc = exec_stmt(st, s, "session save");
		}
	}
	return tx_end(st, rc);
}

/* Delete a session row and its folder views; runs inside the caller's transaction. */
static int session_delete_rows(struct gw_state *st, const char *user, const char *device)
{
	static const enum stmt_id ids[] = {S_SESSION_FOLDERS_DELETE, S_SESSION_DELETE};
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		sqlite3_stmt *s = stmt(st, ids[i]);
		if (bind_key(s, user, device) != SQLITE_OK) {
			db_error(st, "session delete: bind");
			stmt_done(s);
			return -1;
		}
		if (exec_stmt(st, s, "session delete") < 0)
			return -1;
	}
	return 0;
}

int gw_state_session_delete(struct gw_state *st, const char *user, const char *device)
{
	if (!args_ok("session delete", user, device, ""))
		return -1;
	if (tx_begin(st) < 0)
		return -1;
	return tx_end(st, session_delete_rows(st, user, device));
}

struct expired {
	char *user;
	char *device;
};

int gw_state_session_expire(struct gw_state *st, double now, double lifetime, gw_session_cb cb, void *ctx)
{
	if (tx_begin(st) < 0)
		return -1;

	/*
	 * Collect the expired keys before calling anyone: the callback may use
	 * the store (load the session's views, say), which must not happen while
	 * this statement is still stepping.
	 */
	struct expired *list = NULL;
	size_t n = 0, cap = 0;
	sqlite3_stmt *s = stmt(st, S_SESSION_EXPIRED);
	int rc = sqlite3_bind_double(s, 1, lifetime);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_double(s, 2, now);
	while (rc == SQLITE_OK || rc == SQLITE_ROW) {
		rc = sqlite3_step(s);
		if (rc != SQLITE_ROW)
			break;
		const char *u = (const char *)sqlite3_column_text(s, 0);
		const char *d = (const char *)sqlite3_column_text(s, 1);
		if (!u || !d)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 8;
			list = xrealloc(list, cap * sizeof(*list));
		}
		list[n].user = xstrdup(u);
		list[n].device = xstrdup(d);
		n++;
	}
	int ret = 0;
	if (rc != SQLITE_DONE) {
		db_error(st, "session expire");
		ret = -1;
	}
	stmt_done(s);

	for (size_t i = 0; i < n && ret == 0; i++) {
		if (cb)
			cb(list[i].user, list[i].device, ctx);
		ret = session_delete_rows(st, list[i].user, list[i].device);
	}
	for (size_t i = 0; i < n; i++) {
		free(list[i].user);
		free(list[i].device);
	}
	free(list);
	return tx_end(st, ret);
}

/* ---- folder views --------------------------------------------------------- */

void gw_folder_rec_init(struct gw_folder_rec *rec)
{
	memset(rec, 0, sizeof(*rec));
	uidset_init(&rec->uids);
}

void gw_folder_rec_free(struct gw_folder_rec *rec)
{
	if (!rec)
		return;
	uidset_free(&rec->uids);
	free(rec->flags);
	gw_folder_rec_init(rec);
}

/* Read an INTEGER column that must fit in [0, max]; false if the row is out of range (corrupt). */
static bool column_u64(sqlite3_stmt *s, int col, uint64_t max, uint64_t *out)
{
	if (sqlite3_column_type(s, col) != SQLITE_INTEGER)
		return false;
	sqlite3_int64 v = sqlite3_column_int64(s, col);
	if (v < 0 || (uint64_t)v > max)
		return false;
	*out = (uint64_t)v;
	return true;
}

/* rec is overwritten (not freed first); on 1 or -1 it is left empty and safe to free. */
int gw_state_folder_load(struct gw_state *st, const char *user, const char *device, const char *mailbox,
                         struct gw_folder_rec *rec)
{
	gw_folder_rec_init(rec);
	if (!args_ok("folder load", user, device, mailbox))
		return -1;
	sqlite3_stmt *s = stmt(st, S_FOLDER_LOAD);
	int rc = bind_key(s, user, device);
	if (rc == SQLITE_OK)
		rc = bind_text(s, 3, mailbox);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc == SQLITE_DONE) {
		stmt_done(s);
		return 1;
	}
	if (rc != SQLITE_ROW) {
		db_error(st, "folder load");
		stmt_done(s);
		return -1;
	}
	uint64_t uidvalidity, uidnext, modseq;
	if (!column_u64(s, 0, UINT32_MAX, &uidvalidity) || !column_u64(s, 1, UINT32_MAX, &uidnext) ||
	    !column_u64(s, 2, INT64_MAX, &modseq)) {
		log_err("state: folder load: counters out of range (corrupt row)");
		stmt_done(s);
		return -1;
	}
	rec->uidvalidity = (uint32_t)uidvalidity;
	rec->uidnext = (uint32_t)uidnext;
	rec->highestmodseq = modseq;

	const char *uids = (const char *)sqlite3_column_text(s, 3);
	size_t uidslen = uids ? (size_t)sqlite3_column_bytes(s, 3) : 0;
	char perr[128];
	if (uidset_parse(&rec->uids, uids ? uids : "", uidslen, perr, sizeof(perr)) < 0) {
		log_err("state: folder load: stored UID list: %s (corrupt row)", perr);
		stmt_done(s);
		gw_folder_rec_free(rec);
		return -1;
	}
	const char *flags = (const char *)sqlite3_column_text(s, 4);
	rec->flags = flags ? xstrdup(flags) : NULL;
	stmt_done(s);
	return 0;
}

int gw_state_folder_save(struct gw_state *st, const char *user, const char *device, const char *mailbox,
                         const struct gw_folder_rec *rec)
{
	if (!args_ok("folder save", user, device, mailbox))
		return -1;
	/* SQLite integers are signed 64-bit; RFC 7162 caps mod-sequences at 2^63 - 1 anyway. */
	if (rec->highestmodseq > (uint64_t)INT64_MAX) {
		log_err("state: folder save: HIGHESTMODSEQ %llu exceeds 2^63-1",
		        (unsigned long long)rec->highestmodseq);
		return -1;
	}
	struct buf uids;
	buf_init(&uids, 0);
	uidset_format(&rec->uids, &uids);
	buf_append(&uids, "", 1); /* NUL: also makes buf_head valid for the empty set */
	if (buf_len(&uids) > (size_t)INT32_MAX) {
		log_err("state: folder save: UID list too large (%zu bytes)", buf_len(&uids));
		buf_free(&uids);
		return -1;
	}

	if (tx_begin(st) < 0) {
		buf_free(&uids);
		return -1;
	}
	int rc = device_ensure(st, user, device, NULL);
	if (rc == 0) {
		sqlite3_stmt *s = stmt(st, S_FOLDER_SAVE);
		if (bind_key(s, user, device) != SQLITE_OK || bind_text(s, 3, mailbox) != SQLITE_OK ||
		    sqlite3_bind_int64(s, 4, rec->uidvalidity) != SQLITE_OK ||
		    sqlite3_bind_int64(s, 5, rec->uidnext) != SQLITE_OK ||
		    sqlite3_bind_int64(s, 6, (sqlite3_int64)rec->highestmodseq) != SQLITE_OK ||
		    sqlite3_bind_text(s, 7, (const char *)buf_head(&uids), (int)(buf_len(&uids) - 1), SQLITE_STATIC) !=
		            SQLITE_OK ||
		    bind_text_or_null(s, 8, rec->flags) != SQLITE_OK) {
			db_error(st, "folder save: bind");
			stmt_done(s);
			rc = -1;
		} else {
			rc = exec_stmt(st, s, "folder save");
		}
	}
	buf_free(&uids);
	return tx_end(st, rc);
}

int gw_state_folder_delete(struct gw_state *st, const char *user, const char *device, const char *mailbox)
{
	if (!args_ok("folder delete", user, device, mailbox))
		return -1;
	sqlite3_stmt *s = stmt(st, S_FOLDER_DELETE);
	if (bind_key(s, user, device) != SQLITE_OK || bind_text(s, 3, mailbox) != SQLITE_OK) {
		db_error(st, "folder delete: bind");
		stmt_done(s);
		return -1;
	}
	return exec_stmt(st, s, "folder delete");
}

/* ---- filters -------------------------------------------------------------- */

int gw_state_filters_load(struct gw_state *st, const char *user, const char *device, gw_filter_cb cb, void *ctx)
{
	if (!args_ok("filters load", user, device, ""))
		return -1;
	sqlite3_stmt *s = stmt(st, S_FILTERS_LOAD);
	int rc = bind_key(s, user, device);
	while (rc == SQLITE_OK || rc == SQLITE_ROW) {
		rc = sqlite3_step(s);
		if (rc != SQLITE_ROW)
			break;
		const char *mailbox = (const char *)sqlite3_column_text(s, 0);
		const char *kind = (const char *)sqlite3_column_text(s, 1);
		const char *criteria = (const char *)sqlite3_column_text(s, 2);
		if (cb && mailbox && kind && criteria)
			cb(mailbox, kind[0], criteria, ctx);
	}
	if (rc != SQLITE_DONE) {
		db_error(st, "filters load");
		stmt_done(s);
		return -1;
	}
	stmt_done(s);
	return 0;
}

int gw_state_filter_save(struct gw_state *st, const char *user, const char *device, const char *mailbox, char kind,
                         const char *criteria)
{
	if (!args_ok("filter save", user, device, mailbox) || (kind != 'V' && kind != 'N'))
		return -1;
	char k[2] = {kind, '\0'};
	if (tx_begin(st) < 0)
		return -1;
	int rc = device_ensure(st, user, device, NULL);
	if (rc == 0 && !*mailbox) {
		/* A filter for ALL replaces every folder's own filter of that kind. */
		sqlite3_stmt *d = stmt(st, S_FILTER_DELETE_KIND);
		if (bind_key(d, user, device) != SQLITE_OK || bind_text(d, 3, k) != SQLITE_OK) {
			db_error(st, "filter save: bind");
			stmt_done(d);
			rc = -1;
		} else {
			rc = exec_stmt(st, d, "filter save: clear");
		}
	}
	if (rc == 0) {
		sqlite3_stmt *s = stmt(st, criteria ? S_FILTER_SAVE : S_FILTER_DELETE);
		if (bind_key(s, user, device) != SQLITE_OK || bind_text(s, 3, mailbox) != SQLITE_OK ||
		    bind_text(s, 4, k) != SQLITE_OK || (criteria && bind_text(s, 5, criteria) != SQLITE_OK)) {
			db_error(st, "filter save: bind");
			stmt_done(s);
			rc = -1;
		} else {
			rc = exec_stmt(st, s, "filter save");
		}
	}
	return tx_end(st, rc);
}

int gw_state_folders_delete(struct gw_state *st, const char *user, const char *device)
{
	if (!args_ok("folders delete", user, device, ""))
		return -1;
	sqlite3_stmt *s = stmt(st, S_SESSION_FOLDERS_DELETE);
	if (bind_key(s, user, device) != SQLITE_OK) {
		db_error(st, "folders delete: bind");
		stmt_done(s);
		return -1;
	}
	return exec_stmt(st, s, "folders delete");
}
