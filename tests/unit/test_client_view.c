/*
 * Unit tests for client_view.c: a client's picture of its selected mailbox,
 * the server's snapshot, and the untagged responses between them.
 *
 * Every input is real response bytes run through imap_parser
 * (IMAP_PARSE_RESPONSES). Diff results are checked twice: the exact lines
 * for hand-written cases, and a replay that feeds the emitted lines to a
 * second copy of the old view the way the client would and compares it with
 * the diffed view (UIDs and flags). A randomised round (fixed seed) covers
 * the shapes the hand-written cases miss.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <CUnit/CUnit.h>

#include "buf.h"
#include "client_view.h"
#include "imap_parse.h"
#include "suites.h"

#define RANDOM_ROUNDS  2000
#define RANDOM_UID_MAX 60
#define LARGE_COUNT    100000u
/* Generous bound for the 100,000-message diff in a sanitizer build (it
 * takes a few ms); it only catches an accidentally quadratic diff. */
#define LARGE_DIFF_MAX_MS 500.0

/* ---- feeding responses -------------------------------------------------- */

typedef void (*apply_fn)(void *obj, const struct imap_msg *m);

static void apply_view(void *obj, const struct imap_msg *m)
{
	client_view_apply(obj, m);
}

static void apply_snap(void *obj, const struct imap_msg *m)
{
	view_snapshot_apply(obj, m);
}

/* Parse data as server responses and apply every message; all bytes must
 * form complete messages. Returns the number of messages. */
static size_t feed_n(apply_fn fn, void *obj, const void *data, size_t len)
{
	struct imap_parser *p = imap_parser_new(IMAP_PARSE_RESPONSES, NULL);
	const uint8_t *d = data;
	size_t off = 0, used, n = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	while (off < len) {
		enum imap_parse_result r = imap_parser_feed(p, d + off, len - off, &used);
		CU_ASSERT_EQUAL(r, IMAP_PARSE_DONE);
		if (r != IMAP_PARSE_DONE) {
			fprintf(stderr, "\n  parse %s at byte %zu\n",
			        r == IMAP_PARSE_ERROR ? imap_parser_error(p) : "incomplete", off);
			break;
		}
		fn(obj, imap_parser_msg(p));
		imap_parser_reset(p);
		off += used;
		n++;
	}
	imap_parser_free(p);
	return n;
}

static void feed_view(struct client_view *v, const char *text)
{
	feed_n(apply_view, v, text, strlen(text));
}

static void feed_snap(struct view_snapshot *s, const char *text)
{
	feed_n(apply_snap, s, text, strlen(text));
}

static struct client_view *view_from(const char *text)
{
	struct client_view *v = client_view_new();
	feed_view(v, text);
	return v;
}

static struct view_snapshot *snap_from(uint32_t count, const char *text)
{
	struct view_snapshot *s = view_snapshot_new(count);
	feed_snap(s, text);
	return s;
}

static void expect_out(const struct buf *out, const char *want)
{
	char *got = buf_str(out);
	if (strcmp(got, want) != 0)
		fprintf(stderr, "\n  output:\n%s  expected:\n%s", got, want);
	CU_ASSERT_STRING_EQUAL(got, want);
	free(got);
}

static bool str_eq_or_null(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

/* a and b hold the same messages: count, UIDs, flags, broken, UIDVALIDITY. */
static bool views_equal(const struct client_view *a, const struct client_view *b)
{
	if (client_view_count(a) != client_view_count(b) || client_view_broken(a) != client_view_broken(b) ||
	    client_view_uidvalidity(a) != client_view_uidvalidity(b))
		return false;
	for (uint32_t seq = 1; seq <= client_view_count(a); seq++)
		if (client_view_uid_at(a, seq) != client_view_uid_at(b, seq) ||
		    !str_eq_or_null(client_view_flags_at(a, seq), client_view_flags_at(b, seq)))
			return false;
	return true;
}

/*
 * Replay the diff output onto a fresh view built from old_text, as the
 * client would, and compare with the diffed view v. Every sequence number
 * must be in range when read (the replay would go broken otherwise). With
 * strict, every UID must come across; otherwise a replayed UID may be
 * unknown (a new message whose flags the snapshot did not know gets no
 * FETCH line). Flags v knows must have come across.
 */
static void check_replay(const char *old_text, const struct buf *out, const struct client_view *v, bool strict)
{
	struct client_view *r = view_from(old_text);
	uint32_t n;

	feed_n(apply_view, r, buf_head(out), buf_len(out));
	CU_ASSERT_FALSE(client_view_broken(r));
	CU_ASSERT_EQUAL(client_view_count(r), client_view_count(v));
	n = client_view_count(r) < client_view_count(v) ? client_view_count(r) : client_view_count(v);
	for (uint32_t seq = 1; seq <= n; seq++) {
		uint32_t ru = client_view_uid_at(r, seq), vu = client_view_uid_at(v, seq);
		const char *vf = client_view_flags_at(v, seq), *rf = client_view_flags_at(r, seq);
		CU_ASSERT(ru == vu || (!strict && ru == 0));
		if (vf)
			CU_ASSERT(rf != NULL && strcmp(rf, vf) == 0);
	}
	client_view_free(r);
}

/*
 * Build a view from old_text and a snapshot of snap_count messages fed
 * snap_text (UIDVALIDITY snap_uv), diff them, and check: the return code,
 * the exact output (want_out; NULL = don't check), and then either the
 * replay (success) or that out and the view are untouched (failure).
 */
static void expect_diff(const char *old_text, uint32_t snap_count, const char *snap_text, uint32_t snap_uv,
                        int want_rc, const char *want_out, bool strict)
{
	struct client_view *v = view_from(old_text);
	struct client_view *before = view_from(old_text);
	struct view_snapshot *s = snap_from(snap_count, snap_text);
	struct buf out;

	buf_init(&out, 0);
	buf_append_str(&out, "PRE:");
	view_snapshot_set_uidvalidity(s, snap_uv);
	int rc = client_view_diff_apply(v, s, &out);
	CU_ASSERT_EQUAL(rc, want_rc);
	CU_ASSERT_FATAL(buf_len(&out) >= 4 && memcmp(buf_head(&out), "PRE:", 4) == 0);
	buf_consume(&out, 4);
	if (rc == 0) {
		if (want_out)
			expect_out(&out, want_out);
		check_replay(old_text, &out, v, strict);
		CU_ASSERT_FALSE(client_view_broken(v));
		if (strict)
			CU_ASSERT_TRUE(client_view_uids_known(v));
		/* the view now equals the snapshot: a second diff says nothing */
		buf_clear(&out);
		if (strict) {
			CU_ASSERT_EQUAL(client_view_diff_apply(v, s, &out), 0);
			CU_ASSERT_EQUAL(buf_len(&out), 0);
		}
	} else {
		CU_ASSERT_EQUAL(buf_len(&out), 0);
		CU_ASSERT_TRUE(views_equal(v, before));
	}
	buf_free(&out);
	view_snapshot_free(s);
	client_view_free(before);
	client_view_free(v);
}

/* ---- tracking ----------------------------------------------------------- */

static void test_learn_fetch_literals(void)
{
	struct client_view *v = view_from(
	    "* 4 EXISTS\r\n"
	    "* OK [UIDVALIDITY 777] UIDs valid\r\n"
	    /* a header literal and flags after it */
	    "* 1 FETCH (UID 10 BODY[HEADER.FIELDS (FROM SUBJECT)] {9}\r\nFrom: x\r\n FLAGS (\\Seen $Work))\r\n"
	    /* a literal whose text looks like FETCH items must not be read as them */
	    "* 2 FETCH (BODY[]<0> {24}\r\nUID 99 FLAGS (\\Deleted)) UID 20)\r\n"
	    /* an envelope with nested lists, NIL and a literal; flags first */
	    "* 3 FETCH (FLAGS (\\Flagged \\Recent) ENVELOPE (\"Mon, 1 Jan 2024 00:00:00 +0000\" {4}\r\nsubj "
	    "((\"A\" NIL \"a\" \"example.org\")) NIL NIL NIL NIL NIL NIL \"<id@x>\") RFC822.SIZE 1234)\r\n");

	CU_ASSERT_FALSE(client_view_broken(v));
	CU_ASSERT_EQUAL(client_view_count(v), 4);
	CU_ASSERT_EQUAL(client_view_uidvalidity(v), 777);
	CU_ASSERT_EQUAL(client_view_uid_at(v, 1), 10);
	CU_ASSERT_EQUAL(client_view_uid_at(v, 2), 20);
	CU_ASSERT_EQUAL(client_view_uid_at(v, 3), 0);
	CU_ASSERT_EQUAL(client_view_uid_at(v, 4), 0);
	CU_ASSERT_EQUAL(client_view_uid_at(v, 0), 0);
	CU_ASSERT_EQUAL(client_view_uid_at(v, 5), 0);
	/* normalised: sorted, system flags lower-cased, \Recent dropped */
	CU_ASSERT_PTR_NOT_NULL_FATAL(client_view_flags_at(v, 1));
	CU_ASSERT_STRING_EQUAL(client_view_flags_at(v, 1), "$Work \\seen");
	CU_ASSERT_PTR_NULL(client_view_flags_at(v, 2));
	CU_ASSERT_PTR_NOT_NULL_FATAL(client_view_flags_at(v, 3));
	CU_ASSERT_STRING_EQUAL(client_view_flags_at(v, 3), "\\flagged");
	CU_ASSERT_PTR_NULL(client_view_flags_at(v, 5));
	CU_ASSERT_FALSE(client_view_uids_known(v));

	/* UID and flags learned separately; an empty flag list is known */
	feed_view(v, "* 3 FETCH (UID 30)\r\n* 4 FETCH (UID 40 FLAGS ())\r\n* 2 FETCH (FLAGS (\\Answered \\Seen \\SEEN))\r\n");
	CU_ASSERT_FALSE(client_view_broken(v));
	CU_ASSERT_TRUE(client_view_uids_known(v));
	CU_ASSERT_EQUAL(client_view_uid_at(v, 3), 30);
	CU_ASSERT_PTR_NOT_NULL_FATAL(client_view_flags_at(v, 4));
	CU_ASSERT_STRING_EQUAL(client_view_flags_at(v, 4), "");
	CU_ASSERT_PTR_NOT_NULL_FATAL(client_view_flags_at(v, 2));
	CU_ASSERT_STRING_EQUAL(client_view_flags_at(v, 2), "\\answered \\seen");
	/* flags replaced, not merged; the same UID again is fine */
	feed_view(v, "* 1 FETCH (UID 10 FLAGS (\\Deleted))\r\n");
	CU_ASSERT_STRING_EQUAL(client_view_flags_at(v, 1), "\\deleted");
	CU_ASSERT_FALSE(client_view_broken(v));
	client_view_free(v);
}

static void test_exists_expunge(void)
{
	struct client_view *v = view_from(
	    "* 5 EXISTS\r\n"
	    "* 1 FETCH (UID 1 FLAGS ())\r\n* 2 FETCH (UID 2 FLAGS ())\r\n* 3 FETCH (UID 3 FLAGS (\\Seen))\r\n"
	    "* 4 FETCH (UID 4 FLAGS ())\r\n* 5 FETCH (UID 5 FLAGS (\\Flagged))\r\n");

	CU_ASSERT_EQUAL(client_view_count(v), 5);
	CU_ASSERT_TRUE(client_view_uids_known(v));
	feed_view(v, "* 2 EXPUNGE\r\n");
	CU_ASSERT_EQUAL(client_view_count(v), 4);
	CU_ASSERT_EQUAL(client_view_uid_at(v, 2), 3);
	CU_ASSERT_STRING_EQUAL(client_view_flags_at(v, 2), "\\seen");
	feed_view(v, "* 4 EXPUNGE\r\n");
	CU_ASSERT_EQUAL(client_view_count(v), 3);
	CU_ASSERT_EQUAL(client_view_uid_at(v, 3), 4);
	CU_ASSERT_EQUAL(client_view_uid_at(v, 4), 0);

	/* growth: new slots unknown; the same count again is no change */
	feed_view(v, "* 6 EXISTS\r\n* 6 EXISTS\r\n");
	CU_ASSERT_EQUAL(client_view_count(v), 6);
	CU_ASSERT_FALSE(client_view_uids_known(v));
	CU_ASSERT_EQUAL(client_view_uid_at(v, 5), 0);
	CU_ASSERT_PTR_NULL(client_view_flags_at(v, 5));
	feed_view(v, "* 4 FETCH (UID 9)\r\n* 6 FETCH (UID 12)\r\n* 5 FETCH (UID 11)\r\n");
	CU_ASSERT_TRUE(client_view_uids_known(v));
	CU_ASSERT_FALSE(client_view_broken(v));
	/* expunging the highest known, then below it */
	feed_view(v, "* 6 EXPUNGE\r\n* 1 EXPUNGE\r\n");
	CU_ASSERT_EQUAL(client_view_count(v), 4);
	CU_ASSERT_EQUAL(client_view_uid_at(v, 1), 3);
	CU_ASSERT_EQUAL(client_view_uid_at(v, 4), 11);
	feed_view(v, "* 5 EXISTS\r\n* 5 FETCH (UID 13)\r\n");
	CU_ASSERT_FALSE(client_view_broken(v));
	CU_ASSERT_EQUAL(client_view_uid_at(v, 5), 13);

	/* responses that do not change the view */
	feed_view(v, "* 3 RECENT\r\n* FLAGS (\\Seen \\Deleted)\r\n* OK [PERMANENTFLAGS (\\Seen \\*)] ok\r\n"
	             "* SEARCH 1 2\r\n* OK [UIDNEXT 99] next\r\n* NO [ALERT] hm\r\na1 OK [READ-WRITE] done\r\n"
	             "+ go on\r\n* CAPABILITY IMAP4rev1\r\n");
	CU_ASSERT_EQUAL(client_view_count(v), 5);
	CU_ASSERT_FALSE(client_view_broken(v));
	CU_ASSERT_EQUAL(client_view_uidvalidity(v), 0);
	feed_view(v, "* OK [UIDVALIDITY 42] x\r\n");
	CU_ASSERT_EQUAL(client_view_uidvalidity(v), 42);

	/* shrinking by EXISTS is an inconsistency */
	feed_view(v, "* 4 EXISTS\r\n");
	CU_ASSERT_TRUE(client_view_broken(v));
	CU_ASSERT_EQUAL(client_view_count(v), 5);

	/* SELECT again: everything forgotten */
	client_view_reset(v);
	CU_ASSERT_FALSE(client_view_broken(v));
	CU_ASSERT_EQUAL(client_view_count(v), 0);
	CU_ASSERT_EQUAL(client_view_uidvalidity(v), 0);
	CU_ASSERT_TRUE(client_view_uids_known(v));
	CU_ASSERT_EQUAL(client_view_uid_at(v, 1), 0);
	feed_view(v, "* 2 EXISTS\r\n* 1 FETCH (UID 7)\r\n* 2 FETCH (UID 8)\r\n");
	CU_ASSERT_EQUAL(client_view_uid_at(v, 2), 8);
	CU_ASSERT_FALSE(client_view_broken(v));
	client_view_free(v);
}

/* Inputs that leave a view broken, and controls that must not. */
static const struct {
	const char *text;
	bool        broken;
} broken_cases[] = {
    {"* 2 EXISTS\r\n* 3 EXPUNGE\r\n", true},
    {"* 2 EXISTS\r\n* 0 EXPUNGE\r\n", true},
    {"* 1 EXPUNGE\r\n", true},
    {"* 2 EXISTS\r\n* 3 FETCH (UID 5)\r\n", true},
    {"* 2 EXISTS\r\n* 0 FETCH (UID 5)\r\n", true},
    {"* 2 EXISTS\r\n* 1 FETCH (UID 5)\r\n* 2 FETCH (UID 3)\r\n", true},   /* descending */
    {"* 2 EXISTS\r\n* 1 FETCH (UID 5)\r\n* 2 FETCH (UID 5)\r\n", true},   /* duplicate */
    {"* 2 EXISTS\r\n* 1 FETCH (UID 5)\r\n* 1 FETCH (UID 6)\r\n", true},   /* contradiction */
    {"* 3 EXISTS\r\n* 3 FETCH (UID 5)\r\n* 1 FETCH (UID 7)\r\n", true},   /* learned below, out of order */
    {"* 3 EXISTS\r\n* 3 FETCH (UID 5)\r\n* 2 FETCH (UID 5)\r\n", true},
    /* the out-of-order slot expunged afterwards: still broken */
    {"* 3 EXISTS\r\n* 3 FETCH (UID 5)\r\n* 1 FETCH (UID 7)\r\n* 3 EXPUNGE\r\n", true},
    {"* 2 EXISTS\r\n* 1 FETCH (UID 0)\r\n", true},
    {"* 2 EXISTS\r\n* 1 FETCH (UID abc)\r\n", true},
    {"* 2 EXISTS\r\n* 1 FETCH (UID \"5\")\r\n", true},
    {"* 2 EXISTS\r\n* 1 FETCH (FLAGS (\"\\Seen\"))\r\n", true},
    {"* 2 EXISTS\r\n* 1 FETCH (FLAGS \\Seen)\r\n", true},
    {"* 2 EXISTS\r\n* 1 FETCH (FLAGS ((\\Seen)))\r\n", true},
    {"* 2 EXISTS\r\n* 1 FETCH (UID)\r\n", true},
    {"* 2 EXISTS\r\n* 1 FETCH UID 5\r\n", true},
    {"* 2 EXISTS\r\n* VANISHED 1\r\n", true},
    {"* 2 EXISTS\r\n* VANISHED (EARLIER) 1:3\r\n", true},
    {"* 4294967295 EXISTS\r\n", true},
    {"* OK [UIDVALIDITY 5] x\r\n* 1 EXISTS\r\n* 1 FETCH (UID 3)\r\n* OK [UIDVALIDITY 6] x\r\n", true},
    /* controls */
    {"* 3 EXISTS\r\n* 3 FETCH (UID 9)\r\n* 1 FETCH (UID 2)\r\n* 2 FETCH (UID 5)\r\n", false},
    {"* 3 EXISTS\r\n* 1 FETCH (UID 2)\r\n* 1 FETCH (UID 2 FLAGS ())\r\n* 3 FETCH (FLAGS (\\Seen))\r\n", false},
    {"* 2 EXISTS\r\n* 2 EXPUNGE\r\n* 1 EXPUNGE\r\n* 0 EXISTS\r\n", false},
    {"* OK [UIDVALIDITY 5] x\r\n* OK [UIDVALIDITY 6] x\r\n* 1 EXISTS\r\n", false},
    {"* 2 EXISTS\r\n* 1 FETCH (UID 4 X-GM-LABELS (\\Inbox \"a b\") MODSEQ (12))\r\n", false},
};

static void test_broken(void)
{
	for (size_t i = 0; i < sizeof(broken_cases) / sizeof(broken_cases[0]); i++) {
		struct client_view *v = view_from(broken_cases[i].text);
		struct view_snapshot *s = snap_from(0, broken_cases[i].text);
		if (client_view_broken(v) != broken_cases[i].broken)
			fprintf(stderr, "\n  case %zu: broken=%d\n", i, client_view_broken(v));
		CU_ASSERT_EQUAL(client_view_broken(v), broken_cases[i].broken);
		if (broken_cases[i].broken) {
			/* neither side of a diff may be broken */
			struct buf out;
			struct client_view *good = client_view_new();
			buf_init(&out, 0);
			CU_ASSERT_EQUAL(client_view_diff_apply(v, s, &out), -1);
			CU_ASSERT_EQUAL(client_view_diff_apply(good, s, &out), -1);
			CU_ASSERT_EQUAL(buf_len(&out), 0);
			CU_ASSERT_EQUAL(client_view_count(good), 0);
			CU_ASSERT_TRUE(client_view_broken(v));
			buf_free(&out);
			client_view_free(good);
		}
		view_snapshot_free(s);
		client_view_free(v);
	}
}

/* ---- diff ---------------------------------------------------------------- */

#define SIX                                                                                    \
	"* 6 EXISTS\r\n* 1 FETCH (UID 10 FLAGS (\\Seen))\r\n* 2 FETCH (UID 20 FLAGS (\\Seen))\r\n" \
	"* 3 FETCH (UID 30 FLAGS ())\r\n* 4 FETCH (UID 40 FLAGS ())\r\n"                          \
	"* 5 FETCH (UID 50 FLAGS (\\Flagged))\r\n* 6 FETCH (UID 60 FLAGS ())\r\n"

static void test_diff_expunges(void)
{
	/* first, middle, last */
	expect_diff(SIX, 3,
	            "* 1 FETCH (UID 20 FLAGS (\\Seen))\r\n* 2 FETCH (UID 40 FLAGS ())\r\n"
	            "* 3 FETCH (UID 50 FLAGS (\\Flagged))\r\n",
	            0, 0, "* 6 EXPUNGE\r\n* 3 EXPUNGE\r\n* 1 EXPUNGE\r\n", true);
	/* a run of neighbours */
	expect_diff(SIX, 2, "* 1 FETCH (UID 10 FLAGS (\\Seen))\r\n* 2 FETCH (UID 60 FLAGS ())\r\n", 0, 0,
	            "* 5 EXPUNGE\r\n* 4 EXPUNGE\r\n* 3 EXPUNGE\r\n* 2 EXPUNGE\r\n", true);
	/* everything */
	expect_diff(SIX, 0, "", 0, 0,
	            "* 6 EXPUNGE\r\n* 5 EXPUNGE\r\n* 4 EXPUNGE\r\n* 3 EXPUNGE\r\n* 2 EXPUNGE\r\n* 1 EXPUNGE\r\n", true);
	/* the last message fetched is expunged before the diff */
	expect_diff(SIX, 6,
	            "* 1 FETCH (UID 10 FLAGS (\\Seen))\r\n* 2 FETCH (UID 20 FLAGS (\\Seen))\r\n"
	            "* 3 FETCH (UID 30 FLAGS ())\r\n* 4 FETCH (UID 40 FLAGS ())\r\n"
	            "* 5 FETCH (UID 50 FLAGS (\\Flagged))\r\n* 6 FETCH (UID 60 FLAGS ())\r\n* 6 EXPUNGE\r\n",
	            0, 0, "* 6 EXPUNGE\r\n", true);
	/* the snapshot started too big and the server expunged while we fetched */
	expect_diff(SIX, 8,
	            "* 1 FETCH (UID 10 FLAGS (\\Seen))\r\n* 8 EXPUNGE\r\n* 7 EXPUNGE\r\n"
	            "* 2 FETCH (UID 30 FLAGS ())\r\n* 3 FETCH (UID 40 FLAGS ())\r\n"
	            "* 4 FETCH (UID 50 FLAGS (\\Flagged))\r\n* 5 FETCH (UID 60 FLAGS ())\r\n* 6 EXPUNGE\r\n",
	            0, 0, "* 2 EXPUNGE\r\n", true);
}

static void test_diff_additions(void)
{
	static const char three[] = "* 3 EXISTS\r\n* 1 FETCH (UID 1 FLAGS ())\r\n* 2 FETCH (UID 2 FLAGS (\\Seen))\r\n"
	                            "* 3 FETCH (UID 3 FLAGS ())\r\n";
	static const char three_snap[] = "* 1 FETCH (UID 1 FLAGS ())\r\n* 2 FETCH (UID 2 FLAGS (\\Seen))\r\n"
	                                 "* 3 FETCH (UID 3 FLAGS ())\r\n";

	expect_diff(three, 5,
	            "* 1 FETCH (UID 1 FLAGS ())\r\n* 2 FETCH (UID 2 FLAGS (\\Seen))\r\n* 3 FETCH (UID 3 FLAGS ())\r\n"
	            "* 4 FETCH (UID 4 FLAGS (\\Seen \\Recent))\r\n* 5 FETCH (UID 9 FLAGS ())\r\n",
	            0, 0, "* 5 EXISTS\r\n* 4 FETCH (UID 4 FLAGS (\\Seen))\r\n* 5 FETCH (UID 9 FLAGS ())\r\n", true);
	/* expunges and additions together */
	expect_diff(three, 4,
	            "* 1 FETCH (UID 2 FLAGS (\\Seen))\r\n* 2 FETCH (UID 3 FLAGS ())\r\n"
	            "* 3 FETCH (UID 7 FLAGS ($Junk))\r\n* 4 FETCH (UID 8 FLAGS ())\r\n",
	            0, 0,
	            "* 1 EXPUNGE\r\n* 4 EXISTS\r\n* 3 FETCH (UID 7 FLAGS ($Junk))\r\n* 4 FETCH (UID 8 FLAGS ())\r\n",
	            true);
	/* from an empty mailbox */
	expect_diff("* 0 EXISTS\r\n", 2, "* 1 FETCH (UID 5 FLAGS ())\r\n* 2 FETCH (UID 6 FLAGS (\\Deleted))\r\n", 0, 0,
	            "* 2 EXISTS\r\n* 1 FETCH (UID 5 FLAGS ())\r\n* 2 FETCH (UID 6 FLAGS (\\Deleted))\r\n", true);
	/* a new message whose flags the snapshot does not know: EXISTS, no FETCH */
	expect_diff(three, 4, "* 1 FETCH (UID 1 FLAGS ())\r\n* 2 FETCH (UID 2 FLAGS (\\Seen))\r\n"
	                      "* 3 FETCH (UID 3 FLAGS ())\r\n* 4 FETCH (UID 4)\r\n",
	            0, 0, "* 4 EXISTS\r\n", false);
	/* messages that arrived after the FETCH ran: unknown UIDs at the end */
	expect_diff(three, 3, "* 1 FETCH (UID 1 FLAGS ())\r\n* 2 FETCH (UID 2 FLAGS (\\Seen))\r\n"
	                      "* 3 FETCH (UID 3 FLAGS ())\r\n* 5 EXISTS\r\n* 5 FETCH (FLAGS (\\Seen))\r\n",
	            0, 0, "* 5 EXISTS\r\n* 5 FETCH (FLAGS (\\Seen))\r\n", false);

	/* after that the view has unknown UIDs: no further diff until it learns them */
	struct client_view *v = view_from(three);
	struct view_snapshot *s = snap_from(3, three_snap);
	struct buf out;
	buf_init(&out, 0);
	feed_snap(s, "* 4 EXISTS\r\n");
	CU_ASSERT_EQUAL(client_view_diff_apply(v, s, &out), 0);
	expect_out(&out, "* 4 EXISTS\r\n");
	CU_ASSERT_EQUAL(client_view_count(v), 4);
	CU_ASSERT_FALSE(client_view_uids_known(v));
	CU_ASSERT_EQUAL(client_view_uid_at(v, 4), 0);
	buf_clear(&out);
	CU_ASSERT_EQUAL(client_view_diff_apply(v, s, &out), -1);
	CU_ASSERT_EQUAL(buf_len(&out), 0);
	feed_view(v, "* 4 FETCH (UID 4 FLAGS ())\r\n");
	feed_snap(s, "* 4 FETCH (UID 4 FLAGS (\\Seen))\r\n");
	CU_ASSERT_EQUAL(client_view_diff_apply(v, s, &out), 0);
	expect_out(&out, "* 4 FETCH (UID 4 FLAGS (\\Seen))\r\n");
	buf_free(&out);
	view_snapshot_free(s);
	client_view_free(v);
}

static void test_diff_flags_only(void)
{
	static const char old[] =
	    "* 8 EXISTS\r\n"
	    "* 1 FETCH (UID 1 FLAGS (\\Seen))\r\n"
	    "* 2 FETCH (UID 2 FLAGS (\\Seen \\Flagged))\r\n"
	    "* 3 FETCH (UID 3 FLAGS ($Label))\r\n"
	    "* 4 FETCH (UID 4 FLAGS ())\r\n"
	    "* 5 FETCH (UID 5 FLAGS (\\Seen))\r\n"
	    "* 6 FETCH (UID 6)\r\n"
	    "* 7 FETCH (UID 7 FLAGS (\\Deleted))\r\n"
	    "* 8 FETCH (UID 8 FLAGS (\\Seen))\r\n";
	static const char snap[] =
	    "* 1 FETCH (UID 1 FLAGS (\\SEEN))\r\n"                 /* case of a system flag: same */
	    "* 2 FETCH (FLAGS (\\Flagged \\Seen \\Seen) UID 2)\r\n" /* order, duplicates: same */
	    "* 3 FETCH (UID 3 FLAGS ($label))\r\n"                 /* case of a keyword: differs */
	    "* 4 FETCH (UID 4 FLAGS (\\Recent))\r\n"               /* \Recent is ignored */
	    "* 5 FETCH (UID 5 FLAGS (\\Seen \\Recent \\Answered))\r\n"
	    "* 6 FETCH (UID 6 FLAGS (\\Seen))\r\n"                 /* the client never knew */
	    "* 7 FETCH (UID 7)\r\n"                                /* the snapshot does not know */
	    "* 8 FETCH (UID 8 FLAGS ())\r\n";
	expect_diff(old, 8, snap, 0, 0,
	            "* 3 FETCH (UID 3 FLAGS ($label))\r\n"
	            "* 5 FETCH (UID 5 FLAGS (\\Seen \\Answered))\r\n"
	            "* 6 FETCH (UID 6 FLAGS (\\Seen))\r\n"
	            "* 8 FETCH (UID 8 FLAGS ())\r\n",
	            true);
	/* flag changes numbered after the expunges before them */
	expect_diff(SIX, 4,
	            "* 1 FETCH (UID 10 FLAGS (\\Seen))\r\n* 2 FETCH (UID 30 FLAGS ())\r\n"
	            "* 3 FETCH (UID 50 FLAGS (\\Flagged \\Seen))\r\n* 4 FETCH (UID 60 FLAGS (\\Deleted))\r\n",
	            0, 0,
	            "* 4 EXPUNGE\r\n* 2 EXPUNGE\r\n"
	            "* 3 FETCH (UID 50 FLAGS (\\Flagged \\Seen))\r\n* 4 FETCH (UID 60 FLAGS (\\Deleted))\r\n",
	            true);
}

static void test_diff_nothing(void)
{
	expect_diff(SIX, 6,
	            "* 1 FETCH (UID 10 FLAGS (\\Seen))\r\n* 2 FETCH (UID 20 FLAGS (\\seen \\Recent))\r\n"
	            "* 3 FETCH (UID 30 FLAGS ())\r\n* 4 FETCH (UID 40 FLAGS ())\r\n"
	            "* 5 FETCH (UID 50 FLAGS (\\Flagged))\r\n* 6 FETCH (UID 60 FLAGS ())\r\n",
	            0, 0, "", true);
	expect_diff("", 0, "", 0, 0, "", true);
	expect_diff("* OK [UIDVALIDITY 9] x\r\n* 0 EXISTS\r\n", 0, "", 9, 0, "", true);
}

static void test_diff_refused(void)
{
	static const char snap6[] = "* 1 FETCH (UID 10 FLAGS (\\Seen))\r\n* 2 FETCH (UID 20 FLAGS (\\Seen))\r\n"
	                            "* 3 FETCH (UID 30 FLAGS ())\r\n* 4 FETCH (UID 40 FLAGS ())\r\n"
	                            "* 5 FETCH (UID 50 FLAGS (\\Flagged))\r\n* 6 FETCH (UID 60 FLAGS ())\r\n";

	/* the client has a slot with an unknown UID */
	expect_diff("* 2 EXISTS\r\n* 1 FETCH (UID 10 FLAGS ())\r\n", 1, "* 1 FETCH (UID 10 FLAGS ())\r\n", 0, -1,
	            NULL, true);
	/* the snapshot has a hole that is not at the end */
	expect_diff(SIX, 6,
	            "* 1 FETCH (UID 10 FLAGS ())\r\n* 3 FETCH (UID 30 FLAGS ())\r\n* 4 FETCH (UID 40 FLAGS ())\r\n"
	            "* 5 FETCH (UID 50 FLAGS ())\r\n* 6 FETCH (UID 60 FLAGS ())\r\n",
	            0, -1, NULL, true);
	/* ... also when nothing known follows the hole */
	expect_diff(SIX, 2, "* 2 FETCH (UID 70 FLAGS ())\r\n", 0, -1, NULL, true);
	/* a new UID below one the client still holds */
	expect_diff(SIX, 7,
	            "* 1 FETCH (UID 10 FLAGS (\\Seen))\r\n* 2 FETCH (UID 20 FLAGS (\\Seen))\r\n"
	            "* 3 FETCH (UID 25 FLAGS ())\r\n* 4 FETCH (UID 30 FLAGS ())\r\n* 5 FETCH (UID 40 FLAGS ())\r\n"
	            "* 6 FETCH (UID 50 FLAGS (\\Flagged))\r\n* 7 FETCH (UID 60 FLAGS ())\r\n",
	            0, -1, NULL, true);
	/* ... but below an expunged one only is fine */
	expect_diff(SIX, 6,
	            "* 1 FETCH (UID 10 FLAGS (\\Seen))\r\n* 2 FETCH (UID 20 FLAGS (\\Seen))\r\n"
	            "* 3 FETCH (UID 30 FLAGS ())\r\n* 4 FETCH (UID 40 FLAGS ())\r\n"
	            "* 5 FETCH (UID 50 FLAGS (\\Flagged))\r\n* 6 FETCH (UID 55 FLAGS ())\r\n",
	            0, 0, "* 6 EXPUNGE\r\n* 6 EXISTS\r\n* 6 FETCH (UID 55 FLAGS ())\r\n", true);
	/* UIDVALIDITY: different is refused; unknown on either side is assumed the same */
	static const char six_uv[] = "* OK [UIDVALIDITY 100] x\r\n" SIX;
	expect_diff(six_uv, 6, snap6, 101, -1, NULL, true);
	expect_diff(six_uv, 6, snap6, 100, 0, "", true);
	expect_diff(six_uv, 6, snap6, 0, 0, "", true);
	expect_diff(SIX, 6, snap6, 101, 0, "", true);
	/* a snapshot UIDVALIDITY learned from its responses counts too */
	struct client_view *v = view_from(six_uv);
	struct view_snapshot *s = snap_from(6, snap6);
	struct buf out;
	buf_init(&out, 0);
	feed_snap(s, "* OK [UIDVALIDITY 5] x\r\n");
	CU_ASSERT_EQUAL(client_view_diff_apply(v, s, &out), -1);
	view_snapshot_set_uidvalidity(s, 100);
	CU_ASSERT_EQUAL(client_view_diff_apply(v, s, &out), 0);
	CU_ASSERT_EQUAL(buf_len(&out), 0);
	/* the view adopts a UIDVALIDITY it did not know */
	client_view_free(v);
	v = view_from(SIX);
	CU_ASSERT_EQUAL(client_view_diff_apply(v, s, &out), 0);
	CU_ASSERT_EQUAL(client_view_uidvalidity(v), 100);
	buf_free(&out);
	view_snapshot_free(s);
	client_view_free(v);
}

static void test_snapshot_interleaved(void)
{
	static const char old[] = "* 5 EXISTS\r\n"
	                          "* 1 FETCH (UID 1 FLAGS (\\Seen))\r\n* 2 FETCH (UID 2 FLAGS ())\r\n"
	                          "* 3 FETCH (UID 3 FLAGS ())\r\n* 4 FETCH (UID 4 FLAGS ())\r\n"
	                          "* 5 FETCH (UID 5 FLAGS ())\r\n";
	/* the server's answer to UID FETCH 1:* (FLAGS), with an EXPUNGE and an
	 * EXISTS in the middle and a flag update for a slot already fetched */
	static const char snap[] = "* 1 FETCH (UID 1 FLAGS (\\Seen))\r\n"
	                           "* 2 FETCH (UID 2 FLAGS ())\r\n"
	                           "* 2 EXPUNGE\r\n"
	                           "* 2 FETCH (UID 3 FLAGS (\\Answered))\r\n"
	                           "* 6 EXISTS\r\n"
	                           "* 3 FETCH (UID 4 FLAGS ())\r\n"
	                           "* 1 FETCH (FLAGS ())\r\n"
	                           "* 4 FETCH (UID 5 FLAGS ())\r\n"
	                           "* 5 FETCH (UID 6 FLAGS (\\Recent))\r\n"
	                           "* 6 FETCH (UID 7 FLAGS ($Todo))\r\n"
	                           "* 4 EXPUNGE\r\n";
	expect_diff(old, 5, snap, 0, 0,
	            "* 5 EXPUNGE\r\n* 2 EXPUNGE\r\n* 5 EXISTS\r\n"
	            "* 1 FETCH (UID 1 FLAGS ())\r\n"
	            "* 2 FETCH (UID 3 FLAGS (\\Answered))\r\n"
	            "* 4 FETCH (UID 6 FLAGS ())\r\n"
	            "* 5 FETCH (UID 7 FLAGS ($Todo))\r\n",
	            true);
}

/* ---- randomised ---------------------------------------------------------- */


static const char *const palette[] = {"", "\\Seen", "\\Seen \\Flagged", "\\Flagged \\Seen", "\\SEEN", "$Work",
                                      "\\Recent", "\\Deleted \\Seen $Work"};
#define PALETTE_N (sizeof(palette) / sizeof(palette[0]))

/* Responses for a mailbox holding the UIDs with member[uid] set; a client
 * view (is_view) has an EXISTS line and may not know some messages' flags;
 * a snapshot (the answer to UID FETCH 1:* (FLAGS)) knows them all. */
static void gen_mailbox(struct buf *b, const bool *member, bool is_view, uint32_t *count)
{
	uint32_t n = 0;
	for (uint32_t u = 1; u <= RANDOM_UID_MAX; u++)
		n += member[u];
	if (is_view)
		buf_printf(b, "* %u EXISTS\r\n", n);
	*count = n;
	n = 0;
	for (uint32_t u = 1; u <= RANDOM_UID_MAX; u++) {
		if (!member[u])
			continue;
		n++;
		if (is_view && unit_rng_next() % 10 == 0)
			buf_printf(b, "* %u FETCH (UID %u)\r\n", n, u);
		else
			buf_printf(b, "* %u FETCH (UID %u FLAGS (%s))\r\n", n, u, palette[unit_rng_next() % PALETTE_N]);
	}
}

static void test_random(void)
{
	int refused = 0;

	unit_rng_seed(0x5eed1234u);
	for (int round = 0; round < RANDOM_ROUNDS; round++) {
		bool in_v[RANDOM_UID_MAX + 1] = {false}, in_s[RANDOM_UID_MAX + 1] = {false};
		struct buf vt, st;
		uint32_t vc, sc, max_kept = 0, min_new = UINT32_MAX;

		for (uint32_t u = 1; u <= RANDOM_UID_MAX; u++) {
			in_v[u] = unit_rng_next() % 3 == 0;
			in_s[u] = in_v[u] ? unit_rng_next() % 4 != 0 : unit_rng_next() % 6 == 0;
			if (in_v[u] && in_s[u])
				max_kept = u;
		}
		/* half the rounds: only append above the kept UIDs, so most diffs succeed */
		if (round % 2)
			for (uint32_t u = 1; u < max_kept; u++)
				in_s[u] = in_s[u] && in_v[u];
		min_new = UINT32_MAX;
		for (uint32_t u = 1; u <= RANDOM_UID_MAX; u++)
			if (!in_v[u] && in_s[u] && u < min_new)
				min_new = u;

		buf_init(&vt, 0);
		buf_init(&st, 0);
		gen_mailbox(&vt, in_v, true, &vc);
		gen_mailbox(&st, in_s, false, &sc);
		buf_append(&vt, "", 1);
		buf_append(&st, "", 1);
		/* a new UID below a kept one cannot be expressed */
		int want = min_new < max_kept ? -1 : 0;
		refused += want != 0;
		expect_diff((const char *)buf_head(&vt), sc, (const char *)buf_head(&st), 0, want, NULL, true);
		buf_free(&vt);
		buf_free(&st);
	}
	/* both outcomes well represented */
	CU_ASSERT(refused > RANDOM_ROUNDS / 10);
	CU_ASSERT(refused < RANDOM_ROUNDS - RANDOM_ROUNDS / 10);
}

/* ---- flag table ------------------------------------------------------------ */

static void test_flag_table(void)
{
	struct client_view *v = client_view_new();
	struct buf b;

	/* one message whose keyword keeps changing: old sets are dropped, the
	 * sets other messages use survive */
	buf_init(&b, 0);
	buf_append_str(&b, "* 4 EXISTS\r\n* 1 FETCH (UID 1)\r\n* 2 FETCH (UID 2 FLAGS (\\Seen))\r\n"
	                   "* 3 FETCH (UID 3 FLAGS ($A \\Flagged))\r\n* 4 FETCH (UID 4 FLAGS ())\r\n");
	for (uint32_t i = 0; i < CLIENT_VIEW_MAX_FLAGSETS + 100; i++)
		buf_printf(&b, "* 1 FETCH (FLAGS (\\Seen $k%u))\r\n", i);
	feed_n(apply_view, v, buf_head(&b), buf_len(&b));
	CU_ASSERT_FALSE(client_view_broken(v));
	CU_ASSERT_PTR_NOT_NULL_FATAL(client_view_flags_at(v, 1));
	char want[64];
	snprintf(want, sizeof(want), "$k%u \\seen", CLIENT_VIEW_MAX_FLAGSETS + 99);
	CU_ASSERT_STRING_EQUAL(client_view_flags_at(v, 1), want);
	CU_ASSERT(str_eq_or_null(client_view_flags_at(v, 2), "\\seen"));
	CU_ASSERT(str_eq_or_null(client_view_flags_at(v, 3), "$A \\flagged"));
	CU_ASSERT(str_eq_or_null(client_view_flags_at(v, 4), ""));
	CU_ASSERT(client_view_memory(v) < 64 * 1024);
	/* the ids still work for interning after the table was compacted */
	feed_view(v, "* 4 FETCH (FLAGS (\\Flagged $A))\r\n* 1 FETCH (FLAGS (\\Seen))\r\n");
	CU_ASSERT(str_eq_or_null(client_view_flags_at(v, 4), "$A \\flagged"));
	CU_ASSERT(str_eq_or_null(client_view_flags_at(v, 1), "\\seen"));

	/* more distinct sets in use than the table holds: broken */
	client_view_reset(v);
	buf_clear(&b);
	buf_printf(&b, "* %u EXISTS\r\n", CLIENT_VIEW_MAX_FLAGSETS + 1);
	for (uint32_t i = 1; i <= CLIENT_VIEW_MAX_FLAGSETS + 1; i++)
		buf_printf(&b, "* %u FETCH (UID %u FLAGS ($k%u))\r\n", i, i, i);
	feed_n(apply_view, v, buf_head(&b), buf_len(&b));
	CU_ASSERT_TRUE(client_view_broken(v));
	buf_free(&b);
	client_view_free(v);
}

/* ---- 100,000 messages ------------------------------------------------------ */

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static const char *const large_flags[] = {"\\Seen", "", "\\Seen \\Answered", "\\Flagged", "\\Seen $Work"};

static void test_large(void)
{
	struct buf vt, st, out;
	uint32_t n = 0, expunged = 0;

	buf_init(&vt, 0);
	buf_init(&st, 0);
	buf_init(&out, 0);
	buf_printf(&vt, "* %u EXISTS\r\n", LARGE_COUNT);
	for (uint32_t i = 1; i <= LARGE_COUNT; i++)
		buf_printf(&vt, "* %u FETCH (UID %u FLAGS (%s))\r\n", i, 2 * i, large_flags[i % 5]);
	buf_append(&vt, "", 1);
	/* the server: every 50th gone, every 7th with other flags, 1,000 new */
	for (uint32_t i = 1; i <= LARGE_COUNT + 1000; i++) {
		const char *f = large_flags[i % 5];
		if (i <= LARGE_COUNT && i % 50 == 0) {
			expunged++;
			continue;
		}
		if (i % 7 == 0)
			f = large_flags[(i + 1) % 5];
		n++;
		buf_printf(&st, "* %u FETCH (UID %u FLAGS (%s))\r\n", n, 2 * i, f);
	}
	buf_append(&st, "", 1);

	struct client_view *v = view_from((const char *)buf_head(&vt));
	struct view_snapshot *s = snap_from(n, (const char *)buf_head(&st));
	CU_ASSERT_FALSE(client_view_broken(v));
	CU_ASSERT_TRUE(client_view_uids_known(v));
	CU_ASSERT_EQUAL(client_view_count(v), LARGE_COUNT);
	CU_ASSERT(client_view_memory(v) < 2u * 1024 * 1024);

	double t0 = now_ms();
	int rc = client_view_diff_apply(v, s, &out);
	double ms = now_ms() - t0;
	CU_ASSERT_EQUAL(rc, 0);
	if (ms > LARGE_DIFF_MAX_MS)
		fprintf(stderr, "\n  100k diff took %.1f ms\n", ms);
	CU_ASSERT(ms < LARGE_DIFF_MAX_MS);
	CU_ASSERT_EQUAL(client_view_count(v), n);
	CU_ASSERT(client_view_memory(v) < 2u * 1024 * 1024);

	/* line counts: expunges, one EXISTS, flag changes of kept + all new */
	uint32_t lines = 0, exp_lines = 0, exists_lines = 0, fetch_lines = 0;
	for (size_t k = 0; k < buf_len(&out); k++)
		lines += buf_head(&out)[k] == '\n';
	char *text = buf_str(&out);
	for (char *p = text; (p = strstr(p, " EXPUNGE\r\n")); p++)
		exp_lines++;
	for (char *p = text; (p = strstr(p, " EXISTS\r\n")); p++)
		exists_lines++;
	for (char *p = text; (p = strstr(p, " FETCH (")); p++)
		fetch_lines++;
	free(text);
	CU_ASSERT_EQUAL(exp_lines, expunged);
	CU_ASSERT_EQUAL(exists_lines, 1);
	CU_ASSERT_EQUAL(lines, exp_lines + exists_lines + fetch_lines);
	/* changed kept messages whose new flags differ as sets, plus the 1,000 new */
	uint32_t want_fetch = 1000;
	for (uint32_t i = 1; i <= LARGE_COUNT; i++)
		if (i % 50 && i % 7 == 0) /* (i + 1) % 5 always names another set */
			want_fetch++;
	CU_ASSERT_EQUAL(fetch_lines, want_fetch);

	check_replay((const char *)buf_head(&vt), &out, v, true);
	buf_free(&vt);
	buf_free(&st);
	buf_free(&out);
	view_snapshot_free(s);
	client_view_free(v);
}

void suite_client_view(void)
{
	ADD_SUITE("client_view",
	          {"learn UID/flags from FETCH with literals", test_learn_fetch_literals},
	          {"EXISTS/EXPUNGE bookkeeping", test_exists_expunge},
	          {"broken views", test_broken},
	          {"diff: expunges", test_diff_expunges},
	          {"diff: additions", test_diff_additions},
	          {"diff: flag changes only", test_diff_flags_only},
	          {"diff: nothing changed", test_diff_nothing},
	          {"diff: refused", test_diff_refused},
	          {"snapshot with interleaved EXISTS/EXPUNGE", test_snapshot_interleaved},
	          {"randomised diff + replay", test_random},
	          {"flag table limits", test_flag_table},
	          {"100,000 messages", test_large});
}
