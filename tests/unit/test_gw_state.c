/* Unit tests for gw_state.c: the gateway's durable state in SQLite. */
#include "config.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CUnit/CUnit.h>
#include <sqlite3.h>

#include "buf.h"
#include "gw_state.h"
#include "log.h"
#include "suites.h"
#include "uidset.h"

/* ---- fixture: a private temporary directory per test ---------------------- */

struct tmp {
	char root[64];   /* mkdtemp directory, removed at the end */
	char dir[128];   /* root/state: the state_dir (created by gw_state_open) */
	char db[192];    /* dir/gateway.db */
};

static void tmp_make(struct tmp *t)
{
	snprintf(t->root, sizeof(t->root), "/tmp/pimap-gwstate.XXXXXX");
	CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(t->root));
	snprintf(t->dir, sizeof(t->dir), "%s/state", t->root);
	snprintf(t->db, sizeof(t->db), "%s/%s", t->dir, GW_STATE_FILE);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void tmp_remove(struct tmp *t)
{
	CU_ASSERT_EQUAL(nftw(t->root, rm_entry, 8, FTW_DEPTH | FTW_PHYS), 0);
	struct stat sb;
	CU_ASSERT_EQUAL(stat(t->root, &sb), -1);
}

static struct gw_state *open_ok(struct tmp *t)
{
	char err[256] = "";
	struct gw_state *st = gw_state_open(t->dir, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL(st);
	CU_ASSERT_STRING_EQUAL(err, "");
	return st;
}

/* Expected database errors are logged by the module: keep them out of the test output. */
static void logs_off(void)
{
	CU_ASSERT_EQUAL(log_open("/dev/null"), 0);
}

static void logs_on(void)
{
	log_open(NULL);
}

/* Run one query directly on the file and return its first column as an integer. */
static long long raw_int(const char *db, const char *sql)
{
	sqlite3 *h = NULL;
	sqlite3_stmt *s = NULL;
	long long v = -12345;
	if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(h, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(h);
	return v;
}

static void make_session(struct gw_session_rec *r, const char *id, int state, const char *selected, bool ro,
                         double at)
{
	memset(r, 0, sizeof(*r));
	snprintf(r->session_id, sizeof(r->session_id), "%s", id);
	r->state = state;
	r->selected = selected ? strdup(selected) : NULL;
	r->selected_readonly = ro;
	r->detached_at = at;
}

static void assert_uidsets_equal(const struct uidset *a, const struct uidset *b)
{
	CU_ASSERT_EQUAL_FATAL(a->count, b->count);
	CU_ASSERT(a->count == 0 || memcmp(a->uids, b->uids, a->count * sizeof(a->uids[0])) == 0);
}

/* ---- preference collector ----------------------------------------------- */

struct prefs_seen {
	struct buf text; /* "name=value;" per call */
	unsigned   n;
};

static void collect_pref(const char *name, const char *value, void *ctx)
{
	struct prefs_seen *p = ctx;
	buf_printf(&p->text, "%s=%s;", name, value);
	p->n++;
}

static void prefs_expect(struct gw_state *st, const char *user, const char *device, const char *want,
                         unsigned n)
{
	struct prefs_seen p = {.n = 0};
	buf_init(&p.text, 0);
	CU_ASSERT_EQUAL(gw_state_prefs_load(st, user, device, collect_pref, &p), 0);
	buf_append(&p.text, "", 1);
	CU_ASSERT_STRING_EQUAL((const char *)buf_head(&p.text), want);
	CU_ASSERT_EQUAL(p.n, n);
	buf_free(&p.text);
}

/* ---- tests ----------------------------------------------------------------- */

static void test_open_creates_private_files(void)
{
	struct tmp t;
	tmp_make(&t);
	struct gw_state *st = open_ok(&t);
	struct stat sb;
	CU_ASSERT_EQUAL_FATAL(stat(t.dir, &sb), 0);
	CU_ASSERT(S_ISDIR(sb.st_mode));
	CU_ASSERT_EQUAL(sb.st_mode & 0777, 0700);
	CU_ASSERT_EQUAL_FATAL(stat(t.db, &sb), 0);
	CU_ASSERT_EQUAL(sb.st_mode & 0777, 0600);
	/* The WAL written by the first commit is as private as the database. */
	CU_ASSERT_EQUAL(gw_state_device_touch(st, "alice", "phone", NULL), 0);
	char wal[256];
	snprintf(wal, sizeof(wal), "%s-wal", t.db);
	CU_ASSERT_EQUAL_FATAL(stat(wal, &sb), 0);
	CU_ASSERT_EQUAL(sb.st_mode & 0777, 0600);
	gw_state_close(st);
	CU_ASSERT_EQUAL(raw_int(t.db, "PRAGMA user_version"), GW_STATE_SCHEMA_VERSION);
	CU_ASSERT_EQUAL(raw_int(t.db, "SELECT count(*) FROM sqlite_master WHERE type = 'table'"), 5); /* devices prefs sessions folders filters */
	CU_ASSERT_EQUAL(raw_int(t.db, "SELECT journal_mode = 'wal' FROM pragma_journal_mode"), 1);
	gw_state_close(NULL);
	tmp_remove(&t);
}

static void test_devices(void)
{
	struct tmp t;
	tmp_make(&t);
	struct gw_state *st = open_ok(&t);
	bool created = false;
	unsigned n = 99;
	CU_ASSERT_EQUAL(gw_state_device_count(st, "alice", &n), 0);
	CU_ASSERT_EQUAL(n, 0);
	CU_ASSERT_EQUAL(gw_state_device_touch(st, "alice", "phone", &created), 0);
	CU_ASSERT_TRUE(created);
	CU_ASSERT_EQUAL(gw_state_device_touch(st, "alice", "phone", &created), 0);
	CU_ASSERT_FALSE(created);
	CU_ASSERT_EQUAL(gw_state_device_touch(st, "alice", "tablet", &created), 0);
	CU_ASSERT_TRUE(created);
	CU_ASSERT_EQUAL(gw_state_device_touch(st, "bob", "phone", NULL), 0);
	CU_ASSERT_EQUAL(gw_state_device_count(st, "alice", &n), 0);
	CU_ASSERT_EQUAL(n, 2);
	CU_ASSERT_EQUAL(gw_state_device_count(st, "bob", &n), 0);
	CU_ASSERT_EQUAL(n, 1);
	CU_ASSERT_EQUAL(gw_state_device_count(st, "ALICE", &n), 0);
	CU_ASSERT_EQUAL(n, 0);
	gw_state_close(st);
	tmp_remove(&t);
}

static void test_prefs(void)
{
	struct tmp t;
	tmp_make(&t);
	struct gw_state *st = open_ok(&t);
	prefs_expect(st, "alice", "phone", "", 0);
	CU_ASSERT_EQUAL(gw_state_pref_save(st, "alice", "phone", "window", "50"), 0);
	CU_ASSERT_EQUAL(gw_state_pref_save(st, "alice", "phone", "attach", "no"), 0);
	CU_ASSERT_EQUAL(gw_state_pref_save(st, "alice", "tablet", "window", "9"), 0);
	prefs_expect(st, "alice", "phone", "attach=no;window=50;", 2);
	/* Saving again overwrites. */
	CU_ASSERT_EQUAL(gw_state_pref_save(st, "alice", "phone", "window", ""), 0);
	prefs_expect(st, "alice", "phone", "attach=no;window=;", 2);
	prefs_expect(st, "alice", "tablet", "window=9;", 1);
	prefs_expect(st, "bob", "phone", "", 0);
	/* Saving a preference registered the device. */
	bool created = true;
	CU_ASSERT_EQUAL(gw_state_device_touch(st, "alice", "tablet", &created), 0);
	CU_ASSERT_FALSE(created);
	/* A NULL callback is allowed. */
	CU_ASSERT_EQUAL(gw_state_prefs_load(st, "alice", "phone", NULL, NULL), 0);
	gw_state_close(st);
	tmp_remove(&t);
}

static void test_session_round_trip(void)
{
	struct tmp t;
	tmp_make(&t);
	struct gw_state *st = open_ok(&t);
	struct gw_session_rec in, out;

	CU_ASSERT_EQUAL(gw_state_session_load(st, "alice", "phone", &out), 1);
	CU_ASSERT_PTR_NULL(out.selected);
	gw_session_rec_free(&out);

	make_session(&in, "0123456789abcdef0123456789abcdef", GW_SESSION_DETACHED, "INBOX", true, 1700000000.25);
	CU_ASSERT_EQUAL(gw_state_session_save(st, "alice", "phone", &in), 0);
	CU_ASSERT_EQUAL_FATAL(gw_state_session_load(st, "alice", "phone", &out), 0);
	CU_ASSERT_STRING_EQUAL(out.session_id, in.session_id);
	CU_ASSERT_EQUAL(out.state, GW_SESSION_DETACHED);
	CU_ASSERT_STRING_EQUAL(out.selected, "INBOX");
	CU_ASSERT_TRUE(out.selected_readonly);
	CU_ASSERT_DOUBLE_EQUAL(out.detached_at, 1700000000.25, 1e-6);
	gw_session_rec_free(&out);
	CU_ASSERT_PTR_NULL(out.selected);
	gw_session_rec_free(&in);

	/* Save again: overwritten, NULL selected survives as NULL. */
	make_session(&in, "ffff", GW_SESSION_ATTACHED, NULL, false, 0);
	CU_ASSERT_EQUAL(gw_state_session_save(st, "alice", "phone", &in), 0);
	CU_ASSERT_EQUAL_FATAL(gw_state_session_load(st, "alice", "phone", &out), 0);
	CU_ASSERT_STRING_EQUAL(out.session_id, "ffff");
	CU_ASSERT_EQUAL(out.state, GW_SESSION_ATTACHED);
	CU_ASSERT_PTR_NULL(out.selected);
	CU_ASSERT_FALSE(out.selected_readonly);
	gw_session_rec_free(&out);

	/* Other keys are not found. */
	CU_ASSERT_EQUAL(gw_state_session_load(st, "alice", "tablet", &out), 1);
	CU_ASSERT_EQUAL(gw_state_session_load(st, "bob", "phone", &out), 1);

	/* Bad records are refused, nothing stored. */
	logs_off();
	in.state = 7;
	CU_ASSERT_EQUAL(gw_state_session_save(st, "alice", "tablet", &in), -1);
	in.state = GW_SESSION_DETACHED;
	memset(in.session_id, 'a', sizeof(in.session_id)); /* no NUL */
	CU_ASSERT_EQUAL(gw_state_session_save(st, "alice", "tablet", &in), -1);
	logs_on();
	CU_ASSERT_EQUAL(gw_state_session_load(st, "alice", "tablet", &out), 1);

	CU_ASSERT_EQUAL(gw_state_session_delete(st, "alice", "phone"), 0);
	CU_ASSERT_EQUAL(gw_state_session_load(st, "alice", "phone", &out), 1);
	/* Deleting what is not there is not an error. */
	CU_ASSERT_EQUAL(gw_state_session_delete(st, "alice", "phone"), 0);
	gw_state_close(st);
	tmp_remove(&t);
}

static void test_folder_round_trip(void)
{
	struct tmp t;
	tmp_make(&t);
	struct gw_state *st = open_ok(&t);
	struct gw_folder_rec in, out;
	gw_folder_rec_init(&in);

	CU_ASSERT_EQUAL(gw_state_folder_load(st, "alice", "phone", "INBOX", &out), 1);
	CU_ASSERT_EQUAL(out.uids.count, 0);
	CU_ASSERT_PTR_NULL(out.flags);
	gw_folder_rec_free(&out);

	/* CONDSTORE view: flags NULL, extreme counters. */
	in.uidvalidity = UINT32_MAX;
	in.uidnext = 4000000000u;
	in.highestmodseq = (uint64_t)INT64_MAX;
	uidset_add_range(&in.uids, 1, 5);
	uidset_add(&in.uids, 9);
	CU_ASSERT_EQUAL(gw_state_folder_save(st, "alice", "phone", "INBOX", &in), 0);
	CU_ASSERT_EQUAL_FATAL(gw_state_folder_load(st, "alice", "phone", "INBOX", &out), 0);
	CU_ASSERT_EQUAL(out.uidvalidity, UINT32_MAX);
	CU_ASSERT_EQUAL(out.uidnext, 4000000000u);
	CU_ASSERT(out.highestmodseq == (uint64_t)INT64_MAX);
	assert_uidsets_equal(&out.uids, &in.uids);
	CU_ASSERT_PTR_NULL(out.flags);
	gw_folder_rec_free(&out);

	/* Overwrite with a non-CONDSTORE view carrying flags. */
	gw_folder_rec_free(&in);
	in.uidvalidity = 42;
	in.uidnext = 11;
	in.highestmodseq = 0;
	uidset_add(&in.uids, 3);
	uidset_add(&in.uids, 10);
	in.flags = strdup("3 (\\Seen)\n10 (\\Flagged $Label1)\n");
	CU_ASSERT_EQUAL(gw_state_folder_save(st, "alice", "phone", "INBOX", &in), 0);
	CU_ASSERT_EQUAL_FATAL(gw_state_folder_load(st, "alice", "phone", "INBOX", &out), 0);
	CU_ASSERT_EQUAL(out.uidvalidity, 42);
	CU_ASSERT_EQUAL(out.uidnext, 11);
	CU_ASSERT(out.highestmodseq == 0);
	assert_uidsets_equal(&out.uids, &in.uids);
	CU_ASSERT_STRING_EQUAL(out.flags, in.flags);
	gw_folder_rec_free(&out);

	/* An empty view round-trips as empty. */
	gw_folder_rec_free(&in);
	in.uidvalidity = 1;
	in.uidnext = 1;
	CU_ASSERT_EQUAL(gw_state_folder_save(st, "alice", "phone", "Empty", &in), 0);
	CU_ASSERT_EQUAL_FATAL(gw_state_folder_load(st, "alice", "phone", "Empty", &out), 0);
	CU_ASSERT_EQUAL(out.uids.count, 0);
	gw_folder_rec_free(&out);

	/* A mod-sequence SQLite cannot hold is refused, not wrapped. */
	in.highestmodseq = (uint64_t)INT64_MAX + 1;
	logs_off();
	CU_ASSERT_EQUAL(gw_state_folder_save(st, "alice", "phone", "Big", &in), -1);
	logs_on();
	CU_ASSERT_EQUAL(gw_state_folder_load(st, "alice", "phone", "Big", &out), 1);

	/* Not found for other keys; delete. */
	CU_ASSERT_EQUAL(gw_state_folder_load(st, "alice", "phone", "inbox", &out), 1);
	CU_ASSERT_EQUAL(gw_state_folder_load(st, "alice", "tablet", "INBOX", &out), 1);
	CU_ASSERT_EQUAL(gw_state_folder_delete(st, "alice", "phone", "INBOX"), 0);
	CU_ASSERT_EQUAL(gw_state_folder_load(st, "alice", "phone", "INBOX", &out), 1);
	CU_ASSERT_EQUAL(gw_state_folder_load(st, "alice", "phone", "Empty", &out), 0);
	gw_folder_rec_free(&out);
	CU_ASSERT_EQUAL(gw_state_folder_delete(st, "alice", "phone", "INBOX"), 0);

	gw_folder_rec_free(&in);
	gw_state_close(st);
	tmp_remove(&t);
}

static void save_folder(struct gw_state *st, const char *user, const char *device, const char *mailbox,
                        uint32_t uid)
{
	struct gw_folder_rec f;
	gw_folder_rec_init(&f);
	f.uidvalidity = 7;
	f.uidnext = uid + 1;
	uidset_add(&f.uids, uid);
	CU_ASSERT_EQUAL(gw_state_folder_save(st, user, device, mailbox, &f), 0);
	gw_folder_rec_free(&f);
}

static int folder_status(struct gw_state *st, const char *user, const char *device, const char *mailbox)
{
	struct gw_folder_rec f;
	int rc = gw_state_folder_load(st, user, device, mailbox, &f);
	gw_folder_rec_free(&f);
	return rc;
}

static void save_session(struct gw_state *st, const char *user, const char *device, int state, double at)
{
	struct gw_session_rec r;
	make_session(&r, "00112233445566778899aabbccddeeff", state, "INBOX", false, at);
	CU_ASSERT_EQUAL(gw_state_session_save(st, user, device, &r), 0);
	gw_session_rec_free(&r);
}

static int session_status(struct gw_state *st, const char *user, const char *device)
{
	struct gw_session_rec r;
	int rc = gw_state_session_load(st, user, device, &r);
	gw_session_rec_free(&r);
	return rc;
}

static void test_delete_cascades(void)
{
	struct tmp t;
	tmp_make(&t);
	struct gw_state *st = open_ok(&t);
	save_session(st, "alice", "phone", GW_SESSION_DETACHED, 100);
	save_session(st, "alice", "tablet", GW_SESSION_DETACHED, 100);
	save_folder(st, "alice", "phone", "INBOX", 1);
	save_folder(st, "alice", "phone", "Sent", 2);
	save_folder(st, "alice", "tablet", "INBOX", 3);
	CU_ASSERT_EQUAL(gw_state_pref_save(st, "alice", "phone", "window", "5"), 0);

	CU_ASSERT_EQUAL(gw_state_session_delete(st, "alice", "phone"), 0);
	CU_ASSERT_EQUAL(session_status(st, "alice", "phone"), 1);
	CU_ASSERT_EQUAL(folder_status(st, "alice", "phone", "INBOX"), 1);
	CU_ASSERT_EQUAL(folder_status(st, "alice", "phone", "Sent"), 1);
	/* The other device and the profile are untouched. */
	CU_ASSERT_EQUAL(session_status(st, "alice", "tablet"), 0);
	CU_ASSERT_EQUAL(folder_status(st, "alice", "tablet", "INBOX"), 0);
	prefs_expect(st, "alice", "phone", "window=5;", 1);
	unsigned n = 0;
	CU_ASSERT_EQUAL(gw_state_device_count(st, "alice", &n), 0);
	CU_ASSERT_EQUAL(n, 2);
	gw_state_close(st);
	tmp_remove(&t);
}

struct expire_seen {
	struct gw_state *st;
	struct buf       names;   /* "user/device;" per callback */
	int              folders; /* folder views still loadable from inside the callback */
};

static void expire_cb(const char *user, const char *device, void *ctx)
{
	struct expire_seen *e = ctx;
	buf_printf(&e->names, "%s/%s;", user, device);
	/* Re-entering the module from the callback works (same transaction). */
	if (folder_status(e->st, user, device, "INBOX") == 0)
		e->folders++;
}

static void test_expire(void)
{
	struct tmp t;
	tmp_make(&t);
	struct gw_state *st = open_ok(&t);
	double now = 1700000000.0, life = 3600.0;
	save_session(st, "alice", "phone", GW_SESSION_DETACHED, now - life - 10);   /* expired */
	save_session(st, "alice", "tablet", GW_SESSION_DETACHED, now - life + 10);  /* not yet */
	save_session(st, "bob", "laptop", GW_SESSION_ATTACHED, now - life - 1000);  /* attached */
	save_session(st, "carol", "phone", GW_SESSION_DETACHED, now - 10 * life);  /* expired */
	save_folder(st, "alice", "phone", "INBOX", 1);
	save_folder(st, "alice", "tablet", "INBOX", 1);
	save_folder(st, "carol", "phone", "INBOX", 1);
	save_folder(st, "carol", "phone", "Archive", 1);

	struct expire_seen e = {.st = st, .folders = 0};
	buf_init(&e.names, 0);
	CU_ASSERT_EQUAL(gw_state_session_expire(st, now, life, expire_cb, &e), 0);
	buf_append(&e.names, "", 1);
	CU_ASSERT_STRING_EQUAL((const char *)buf_head(&e.names), "alice/phone;carol/phone;");
	CU_ASSERT_EQUAL(e.folders, 2);

	CU_ASSERT_EQUAL(session_status(st, "alice", "phone"), 1);
	CU_ASSERT_EQUAL(session_status(st, "carol", "phone"), 1);
	CU_ASSERT_EQUAL(folder_status(st, "alice", "phone", "INBOX"), 1);
	CU_ASSERT_EQUAL(folder_status(st, "carol", "phone", "INBOX"), 1);
	CU_ASSERT_EQUAL(folder_status(st, "carol", "phone", "Archive"), 1);
	CU_ASSERT_EQUAL(session_status(st, "alice", "tablet"), 0);
	CU_ASSERT_EQUAL(session_status(st, "bob", "laptop"), 0);
	CU_ASSERT_EQUAL(folder_status(st, "alice", "tablet", "INBOX"), 0);

	/* Nothing left to expire; a NULL callback is allowed. */
	buf_clear(&e.names);
	CU_ASSERT_EQUAL(gw_state_session_expire(st, now, life, expire_cb, &e), 0);
	CU_ASSERT_EQUAL(buf_len(&e.names), 0);
	CU_ASSERT_EQUAL(gw_state_session_expire(st, now + 20, life, NULL, NULL), 0);
	CU_ASSERT_EQUAL(session_status(st, "alice", "tablet"), 1);
	CU_ASSERT_EQUAL(folder_status(st, "alice", "tablet", "INBOX"), 1);
	buf_free(&e.names);
	gw_state_close(st);
	tmp_remove(&t);
}

static void test_reopen_keeps_data(void)
{
	struct tmp t;
	tmp_make(&t);
	struct gw_state *st = open_ok(&t);
	CU_ASSERT_EQUAL(gw_state_device_touch(st, "alice", "phone", NULL), 0);
	CU_ASSERT_EQUAL(gw_state_pref_save(st, "alice", "phone", "window", "25"), 0);
	save_session(st, "alice", "phone", GW_SESSION_DETACHED, 1234.5);
	save_folder(st, "alice", "phone", "INBOX", 77);
	gw_state_close(st);

	/* "Restart" twice: the second open sees an existing, current schema. */
	for (int i = 0; i < 2; i++) {
		st = open_ok(&t);
		CU_ASSERT_PTR_NOT_NULL_FATAL(st);
		bool created = true;
		CU_ASSERT_EQUAL(gw_state_device_touch(st, "alice", "phone", &created), 0);
		CU_ASSERT_FALSE(created);
		prefs_expect(st, "alice", "phone", "window=25;", 1);
		struct gw_session_rec r;
		CU_ASSERT_EQUAL_FATAL(gw_state_session_load(st, "alice", "phone", &r), 0);
		CU_ASSERT_STRING_EQUAL(r.session_id, "00112233445566778899aabbccddeeff");
		CU_ASSERT_STRING_EQUAL(r.selected, "INBOX");
		CU_ASSERT_DOUBLE_EQUAL(r.detached_at, 1234.5, 1e-9);
		gw_session_rec_free(&r);
		struct gw_folder_rec f;
		CU_ASSERT_EQUAL_FATAL(gw_state_folder_load(st, "alice", "phone", "INBOX", &f), 0);
		CU_ASSERT_EQUAL(f.uidnext, 78);
		CU_ASSERT_EQUAL(f.uids.count, 1);
		CU_ASSERT_TRUE(uidset_contains(&f.uids, 77));
		gw_folder_rec_free(&f);
		gw_state_close(st);
	}
	tmp_remove(&t);
}

static void write_file(const char *path, const char *data, size_t len, size_t repeat)
{
	FILE *f = fopen(path, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	for (size_t i = 0; i < repeat; i++)
		fwrite(data, 1, len, f);
	fclose(f);
}

static void test_garbage_file_refused(void)
{
	/* Text; one byte (SQLite alone would take it for an empty database and overwrite it); a valid header over junk. */
	static const struct {
		const char *data;
		size_t      len;
		size_t      repeat;
	} garbage[] = {
		{"this is not an SQLite database, just some text\n", 47, 200},
		{"x", 1, 1},
		{"SQLite format 3\0\xff\xff\xff\xff\xff\xff\xff\xff", 24, 1},
		{"SQLite format 3\0\x10\x00\x01\x01\x00\x40\x20\x20\xff\xff\xff\xff", 28, 1},
	};
	for (size_t g = 0; g < sizeof(garbage) / sizeof(garbage[0]); g++) {
		struct tmp t;
		tmp_make(&t);
		CU_ASSERT_EQUAL_FATAL(mkdir(t.dir, 0700), 0);
		write_file(t.db, garbage[g].data, garbage[g].len, garbage[g].repeat);
		char err[256] = "";
		struct gw_state *st = gw_state_open(t.dir, err, sizeof(err));
		CU_ASSERT_PTR_NULL(st);
		gw_state_close(st);
		if (g < 2)
			CU_ASSERT_PTR_NOT_NULL(strstr(err, "not a database"));
		CU_ASSERT_PTR_NOT_NULL(strstr(err, t.db));
		/* Left as it was. */
		struct stat sb;
		CU_ASSERT_EQUAL(stat(t.db, &sb), 0);
		CU_ASSERT_EQUAL((size_t)sb.st_size, garbage[g].len * garbage[g].repeat);
		tmp_remove(&t);
	}

	/* A state_dir that is a file. */
	struct tmp t;
	tmp_make(&t);
	write_file(t.dir, "x", 1, 1);
	char err[256] = "";
	CU_ASSERT_PTR_NULL(gw_state_open(t.dir, err, sizeof(err)));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "not a directory"));
	tmp_remove(&t);
}

/* Create dir/gateway.db directly with the given SQL. */
static void raw_create(struct tmp *t, const char *sql)
{
	CU_ASSERT_EQUAL_FATAL(mkdir(t->dir, 0700), 0);
	sqlite3 *h = NULL;
	CU_ASSERT_EQUAL_FATAL(sqlite3_open(t->db, &h), SQLITE_OK);
	CU_ASSERT_EQUAL(sqlite3_exec(h, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(h);
}

static void test_newer_schema_refused(void)
{
	struct tmp t;
	tmp_make(&t);
	raw_create(&t, "CREATE TABLE future (x); PRAGMA user_version = 99;");
	char err[256] = "";
	CU_ASSERT_PTR_NULL(gw_state_open(t.dir, err, sizeof(err)));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "99"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "newer"));
	/* Refused untouched: still version 99, not converted to WAL. */
	CU_ASSERT_EQUAL(raw_int(t.db, "PRAGMA user_version"), 99);
	CU_ASSERT_EQUAL(raw_int(t.db, "SELECT journal_mode = 'wal' FROM pragma_journal_mode"), 0);
	tmp_remove(&t);

	/* Someone else's SQLite database (tables, no version) is refused too. */
	tmp_make(&t);
	raw_create(&t, "CREATE TABLE devices (id INTEGER PRIMARY KEY);");
	err[0] = '\0';
	CU_ASSERT_PTR_NULL(gw_state_open(t.dir, err, sizeof(err)));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "schema version"));
	tmp_remove(&t);
}

static void test_hostile_names(void)
{
	static const char *const names[] = {
		"O'Brien",
		"\"quoted\"",
		"a b  c ",
		"Entw\xc3\xbcrfe/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x93\xa7",
		"x'); DROP TABLE folders; --",
		"%s%n%x \\ ? ?1 :name @v $v",
		"50% _under_ * [a-z]",
		"",
	};
	size_t nn = sizeof(names) / sizeof(names[0]);
	struct tmp t;
	tmp_make(&t);
	struct gw_state *st = open_ok(&t);

	for (size_t i = 0; i < nn; i++) {
		const char *user = names[i], *device = names[(i + 1) % nn], *mbox = names[(i + 2) % nn];
		CU_ASSERT_EQUAL(gw_state_pref_save(st, user, device, mbox, names[(i + 3) % nn]), 0);
		struct gw_session_rec r;
		make_session(&r, "abc", GW_SESSION_DETACHED, mbox, false, (double)i);
		CU_ASSERT_EQUAL(gw_state_session_save(st, user, device, &r), 0);
		gw_session_rec_free(&r);
		struct gw_folder_rec f;
		gw_folder_rec_init(&f);
		f.uidvalidity = (uint32_t)i + 1;
		uidset_add(&f.uids, (uint32_t)i + 1);
		f.flags = strdup(names[(i + 4) % nn]);
		CU_ASSERT_EQUAL(gw_state_folder_save(st, user, device, mbox, &f), 0);
		gw_folder_rec_free(&f);
	}
	gw_state_close(st);
	st = open_ok(&t);
	for (size_t i = 0; i < nn; i++) {
		const char *user = names[i], *device = names[(i + 1) % nn], *mbox = names[(i + 2) % nn];
		struct buf want;
		buf_init(&want, 0);
		buf_printf(&want, "%s=%s;", mbox, names[(i + 3) % nn]);
		buf_append(&want, "", 1);
		prefs_expect(st, user, device, (const char *)buf_head(&want), 1);
		buf_free(&want);
		struct gw_session_rec r;
		CU_ASSERT_EQUAL_FATAL(gw_state_session_load(st, user, device, &r), 0);
		CU_ASSERT_STRING_EQUAL(r.selected, mbox);
		CU_ASSERT_DOUBLE_EQUAL(r.detached_at, (double)i, 1e-9);
		gw_session_rec_free(&r);
		struct gw_folder_rec f;
		CU_ASSERT_EQUAL_FATAL(gw_state_folder_load(st, user, device, mbox, &f), 0);
		CU_ASSERT_EQUAL(f.uidvalidity, (uint32_t)i + 1);
		CU_ASSERT_TRUE(uidset_contains(&f.uids, (uint32_t)i + 1));
		CU_ASSERT_STRING_EQUAL(f.flags, names[(i + 4) % nn]);
		gw_folder_rec_free(&f);
	}
	unsigned n = 0;
	CU_ASSERT_EQUAL(gw_state_device_count(st, "x'); DROP TABLE folders; --", &n), 0);
	CU_ASSERT_EQUAL(n, 1);
	CU_ASSERT_EQUAL(gw_state_device_count(st, "%", &n), 0);
	CU_ASSERT_EQUAL(n, 0);
	gw_state_close(st);
	CU_ASSERT_EQUAL(raw_int(t.db, "SELECT count(*) FROM folders"), (long long)nn);
	tmp_remove(&t);
}

static void test_large_view(void)
{
	struct tmp t;
	tmp_make(&t);
	struct gw_state *st = open_ok(&t);
	/* 100,000 UIDs: 100 runs of 1,000 separated by gaps (expunges), plus a lone UID. */
	struct gw_folder_rec in, out;
	gw_folder_rec_init(&in);
	for (uint32_t r = 0; r < 100; r++)
		uidset_add_range(&in.uids, r * 1037 + 1, r * 1037 + 1000);
	uidset_remove(&in.uids, 500);
	uidset_add(&in.uids, 200000);
	CU_ASSERT_EQUAL_FATAL(in.uids.count, 100000);
	in.uidvalidity = 99;
	in.uidnext = 200001;
	in.highestmodseq = 123456789012ull;
	CU_ASSERT_EQUAL(gw_state_folder_save(st, "alice", "phone", "INBOX", &in), 0);
	CU_ASSERT_EQUAL_FATAL(gw_state_folder_load(st, "alice", "phone", "INBOX", &out), 0);
	assert_uidsets_equal(&out.uids, &in.uids);
	CU_ASSERT(out.highestmodseq == 123456789012ull);
	gw_folder_rec_free(&out);
	gw_state_close(st);
	/* Stored as ranges: about 102 of them, a couple of kilobytes, not 100,000 numbers. */
	long long len = raw_int(t.db, "SELECT length(uids) FROM folders");
	CU_ASSERT(len > 0 && len < 2500);
	gw_folder_rec_free(&in);
	tmp_remove(&t);
}

static bool skip_named(const char *device, void *ctx)
{
	return strcmp(device, (const char *)ctx) == 0;
}

/* The least recently used device without a session to resume is the one forgotten. */
static void test_device_evict(void)
{
	struct tmp t;
	tmp_make(&t);
	struct gw_state *st = open_ok(&t);
	CU_ASSERT_EQUAL(gw_state_device_used(st, "u", "old", 100), 0);
	CU_ASSERT_EQUAL(gw_state_device_used(st, "u", "resumable", 50), 0);
	save_session(st, "u", "resumable", GW_SESSION_DETACHED, 900); /* detached after the cut-off */
	CU_ASSERT_EQUAL(gw_state_device_used(st, "u", "attached", 40), 0);
	save_session(st, "u", "attached", GW_SESSION_ATTACHED, 0);
	CU_ASSERT_EQUAL(gw_state_device_used(st, "u", "timed-out", 30), 0);
	save_session(st, "u", "timed-out", GW_SESSION_DETACHED, 30);
	CU_ASSERT_EQUAL(gw_state_device_used(st, "u", "expired", 10), 0);
	save_session(st, "u", "expired", GW_SESSION_EXPIRED, 10);
	CU_ASSERT_EQUAL(gw_state_device_used(st, "u", "in-use", 5), 0);
	CU_ASSERT_EQUAL(gw_state_device_used(st, "u", "recent", 1000), 0);
	CU_ASSERT_EQUAL(gw_state_pref_save(st, "u", "expired", "PIMAP_INBAND_PUSH", "ON"), 0);
	CU_ASSERT_EQUAL(gw_state_device_used(st, "v", "other-user", 1), 0);
	char name[80] = "";
	/* "in-use" is the oldest, but the caller says it is live; then "expired" (10) */
	CU_ASSERT_EQUAL(gw_state_device_evict(st, "u", 500, skip_named, "in-use", name, sizeof(name)), 0);
	CU_ASSERT_STRING_EQUAL(name, "expired");
	prefs_expect(st, "u", "expired", "", 0); /* the forgotten device's preferences are gone */
	CU_ASSERT_EQUAL(session_status(st, "u", "expired"), 1);
	/* then "timed-out" (detached at 30, before the cut-off), then "old" */
	CU_ASSERT_EQUAL(gw_state_device_evict(st, "u", 500, skip_named, "in-use", name, sizeof(name)), 0);
	CU_ASSERT_STRING_EQUAL(name, "timed-out");
	CU_ASSERT_EQUAL(gw_state_device_evict(st, "u", 500, skip_named, "in-use", name, sizeof(name)), 0);
	CU_ASSERT_STRING_EQUAL(name, "old");
	/* "attached" and "resumable" have sessions, "recent" is recent, "in-use" is skipped */
	CU_ASSERT_EQUAL(gw_state_device_evict(st, "u", 500, skip_named, "in-use", name, sizeof(name)), 1);
	unsigned n = 0;
	CU_ASSERT_EQUAL(gw_state_device_count(st, "u", &n), 0);
	CU_ASSERT_EQUAL(n, 4);
	CU_ASSERT_EQUAL(gw_state_device_count(st, "v", &n), 0);
	CU_ASSERT_EQUAL(n, 1);
	gw_state_close(st);
	tmp_remove(&t);
}

/* A version 1 database (before devices.last_used) is upgraded in place, its data kept. */
static void test_upgrade_from_v1(void)
{
	struct tmp t;
	tmp_make(&t);
	raw_create(&t, "CREATE TABLE devices (user TEXT NOT NULL, device TEXT NOT NULL, created_at REAL NOT NULL,"
	               " PRIMARY KEY (user, device)) WITHOUT ROWID;"
	               "CREATE TABLE prefs (user TEXT NOT NULL, device TEXT NOT NULL, name TEXT NOT NULL,"
	               " value TEXT NOT NULL, PRIMARY KEY (user, device, name),"
	               " FOREIGN KEY (user, device) REFERENCES devices (user, device) ON DELETE CASCADE) WITHOUT ROWID;"
	               "CREATE TABLE sessions (user TEXT NOT NULL, device TEXT NOT NULL, session_id TEXT NOT NULL,"
	               " state INTEGER NOT NULL CHECK (state IN (0, 1, 2)), selected TEXT,"
	               " selected_readonly INTEGER NOT NULL CHECK (selected_readonly IN (0, 1)),"
	               " detached_at REAL NOT NULL, PRIMARY KEY (user, device),"
	               " FOREIGN KEY (user, device) REFERENCES devices (user, device) ON DELETE CASCADE) WITHOUT ROWID;"
	               "CREATE TABLE folders (user TEXT NOT NULL, device TEXT NOT NULL, mailbox TEXT NOT NULL,"
	               " uidvalidity INTEGER NOT NULL, uidnext INTEGER NOT NULL, highestmodseq INTEGER NOT NULL,"
	               " uids TEXT NOT NULL, flags TEXT, PRIMARY KEY (user, device, mailbox),"
	               " FOREIGN KEY (user, device) REFERENCES devices (user, device) ON DELETE CASCADE) WITHOUT ROWID;"
	               "INSERT INTO devices VALUES ('u', 'phone', 1);"
	               "INSERT INTO prefs VALUES ('u', 'phone', 'PIMAP_INBAND_PUSH', 'ON');"
	               "PRAGMA user_version = 1;");
	struct gw_state *st = open_ok(&t);
	CU_ASSERT_EQUAL(raw_int(t.db, "PRAGMA user_version"), GW_STATE_SCHEMA_VERSION);
	prefs_expect(st, "u", "phone", "PIMAP_INBAND_PUSH=ON;", 1); /* the preference survives the upgrade */
	/* Existing devices count as used at the upgrade, not as unused for ages. */
	char name[80] = "";
	CU_ASSERT_EQUAL(gw_state_device_evict(st, "u", 1000000, NULL, NULL, name, sizeof(name)), 1);
	CU_ASSERT_EQUAL(raw_int(t.db, "SELECT last_used > 1700000000 FROM devices"), 1);
	gw_state_close(st);
	tmp_remove(&t);
}

/* ---- filters ------------------------------------------------------------ */

static void collect_filter(const char *mailbox, char kind, const char *criteria, void *ctx)
{
	buf_printf(ctx, "%s/%c=%s;", *mailbox ? mailbox : "ALL", kind, criteria);
}

static void filters_expect(struct gw_state *st, const char *user, const char *device, const char *want)
{
	struct buf b;
	buf_init(&b, 0);
	CU_ASSERT_EQUAL(gw_state_filters_load(st, user, device, collect_filter, &b), 0);
	buf_append(&b, "", 1);
	CU_ASSERT_STRING_EQUAL((const char *)buf_head(&b), want);
	buf_free(&b);
}

/* Filters: per mailbox and kind, ALL replaces every mailbox's own, NULL deletes, devices own them. */
static void test_filters(void)
{
	struct tmp t;
	tmp_make(&t);
	struct gw_state *st = open_ok(&t);
	filters_expect(st, "u", "phone", "");
	CU_ASSERT_EQUAL(gw_state_filter_save(st, "u", "phone", "INBOX", 'V', "DAYSBEFORETODAY 7"), 0);
	CU_ASSERT_EQUAL(gw_state_filter_save(st, "u", "phone", "INBOX", 'N', "FROM \"boss\""), 0);
	CU_ASSERT_EQUAL(gw_state_filter_save(st, "u", "phone", "Trash", 'V', "NONE"), 0);
	CU_ASSERT_EQUAL(gw_state_filter_save(st, "u", "phone", "INBOX", 'V', "DAYSBEFORETODAY 14"), 0);
	CU_ASSERT_EQUAL(gw_state_filter_save(st, "u", "tablet", "INBOX", 'V', "LARGER 5"), 0);
	filters_expect(st, "u", "phone", "INBOX/N=FROM \"boss\";INBOX/V=DAYSBEFORETODAY 14;Trash/V=NONE;");
	/* ALL replaces every view of the device, not its notification filters nor another device's */
	CU_ASSERT_EQUAL(gw_state_filter_save(st, "u", "phone", "", 'V', "NOT LARGER 1048576"), 0);
	filters_expect(st, "u", "phone", "ALL/V=NOT LARGER 1048576;INBOX/N=FROM \"boss\";");
	filters_expect(st, "u", "tablet", "INBOX/V=LARGER 5;");
	CU_ASSERT_EQUAL(gw_state_filter_save(st, "u", "phone", "INBOX", 'N', NULL), 0);
	filters_expect(st, "u", "phone", "ALL/V=NOT LARGER 1048576;");
	logs_off();
	CU_ASSERT_EQUAL(gw_state_filter_save(st, "u", "phone", "INBOX", 'X', "ALL"), -1);
	logs_on();
	/* a forgotten device takes its filters along */
	char name[80];
	CU_ASSERT_EQUAL(gw_state_device_evict(st, "u", 1e18, NULL, NULL, name, sizeof(name)), 0);
	CU_ASSERT_EQUAL(gw_state_device_evict(st, "u", 1e18, NULL, NULL, name, sizeof(name)), 0);
	filters_expect(st, "u", "phone", "");
	filters_expect(st, "u", "tablet", "");
	gw_state_close(st);
	tmp_remove(&t);
}

void suite_gw_state(void)
{
	ADD_SUITE("gw_state",
	          {"open creates private dir and file, WAL, schema", test_open_creates_private_files},
	          {"devices: touch and count", test_devices},
	          {"preferences: save, overwrite, load", test_prefs},
	          {"session: round trip, not found, overwrite, delete", test_session_round_trip},
	          {"folder: round trip, not found, overwrite, delete", test_folder_round_trip},
	          {"session delete cascades to its folders", test_delete_cascades},
	          {"expire: callback, cascade, re-entry", test_expire},
	          {"reopen after close keeps data", test_reopen_keeps_data},
	          {"garbage gateway.db refused", test_garbage_file_refused},
	          {"newer or foreign schema refused", test_newer_schema_refused},
	          {"hostile names round-trip", test_hostile_names},
	          {"100,000-UID view round-trips compactly", test_large_view},
	          {"device eviction: least recently used, never a resumable session", test_device_evict},
	          {"upgrade from schema 1 keeps the data", test_upgrade_from_v1},
	          {"filters: per mailbox and kind, ALL replaces, devices own them", test_filters});
}
