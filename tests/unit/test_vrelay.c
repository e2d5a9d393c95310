/*
 * Unit tests for vrelay.c: a filtered view relayed, with a scripted server.
 *
 * The fake host records what vrelay sends (tags V1, V2, ...), what it
 * finishes and opens; each test plays the server's part by feeding the
 * untagged and tagged answers a store would give, in stream order.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include "buf.h"
#include "imap_parse.h"
#include "suites.h"
#include "vrelay.h"
#include "xfilter.h"

#define MAX_SENT 64

struct fake {
	struct vrelay *vr;
	char *sent[MAX_SENT];   /* command texts (without CRLF) */
	uint32_t cookie[MAX_SENT];
	char *tagp[MAX_SENT];   /* where vrelay wants the tag */
	size_t nsent, next;     /* next: the oldest not yet answered */
	struct buf finished;    /* every finished command's data, in order */
	unsigned nfinished;
	void *last_cmd;
	int opened;             /* -1 none, else enum vrelay_opened */
	struct buf response, events;
	unsigned pending;
	char lost[256];
};

static void f_send(void *ctx, const uint8_t *text, size_t len, uint32_t cookie, char *tag_out)
{
	struct fake *f = ctx;
	CU_ASSERT_FATAL(f->nsent < MAX_SENT);
	CU_ASSERT_FATAL(len >= 2 && text[len - 2] == '\r' && text[len - 1] == '\n');
	f->sent[f->nsent] = strndup((const char *)text, len - 2);
	f->cookie[f->nsent] = cookie;
	f->tagp[f->nsent] = tag_out;
	snprintf(tag_out, VRELAY_TAG_MAX, "V%zu", f->nsent + 1);
	f->nsent++;
}

static void f_finished(void *ctx, void *cmd, const uint8_t *data, size_t len)
{
	struct fake *f = ctx;
	buf_append(&f->finished, data, len);
	f->nfinished++;
	f->last_cmd = cmd;
}

static void f_opened(void *ctx, enum vrelay_opened result, const struct buf *response, const struct buf *events)
{
	struct fake *f = ctx;
	f->opened = (int)result;
	buf_clear(&f->response);
	buf_clear(&f->events);
	buf_append(&f->response, buf_head(response), buf_len(response));
	buf_append(&f->events, buf_head(events), buf_len(events));
}

static void f_pending(void *ctx)
{
	((struct fake *)ctx)->pending++;
}

static void f_lost(void *ctx, const char *why)
{
	snprintf(((struct fake *)ctx)->lost, sizeof(((struct fake *)ctx)->lost), "%s", why);
}

static const struct vrelay_host host = {f_send, f_finished, f_opened, f_pending, f_lost};

static void fake_init(struct fake *f, const char *view, const char *notify, const char *new_items)
{
	memset(f, 0, sizeof(*f));
	buf_init(&f->finished, 0);
	buf_init(&f->response, 0);
	buf_init(&f->events, 0);
	f->opened = -1;
	struct vrelay_config cfg = {
		.mailbox = "INBOX", .view = view, .notify = notify, .today = 19800, .new_items = new_items,
		.max_events = 1000, .condstore = true,
	};
	f->vr = vrelay_new(&host, f, &cfg);
	CU_ASSERT_PTR_NOT_NULL_FATAL(f->vr);
}

static void fake_free(struct fake *f)
{
	vrelay_free(f->vr);
	for (size_t i = 0; i < f->nsent; i++)
		free(f->sent[i]);
	buf_free(&f->finished);
	buf_free(&f->response);
	buf_free(&f->events);
}

static char *take(struct buf *b)
{
	char *s = buf_str(b);
	buf_clear(b);
	return s;
}

#define EXPECT_STR(got, want)                                                                          \
	do {                                                                                           \
		char *g_ = (got);                                                                      \
		CU_ASSERT_STRING_EQUAL(g_, want);                                                      \
		if (strcmp(g_, want) != 0)                                                             \
			fprintf(stderr, "\n%s:%d: got [%s]\n want [%s]\n", __FILE__, __LINE__, g_, want); \
		free(g_);                                                                              \
	} while (0)

/* Parse one server message (untagged or tagged). */
static struct imap_parser *parser;

static const struct imap_msg *msg(const char *text)
{
	struct imap_limits lim = {1 << 20, 1 << 20, 64, 1000000, 0};
	if (parser)
		imap_parser_free(parser);
	parser = imap_parser_new(IMAP_PARSE_RESPONSES, &lim);
	size_t used;
	char line[65536];
	snprintf(line, sizeof(line), "%s\r\n", text);
	CU_ASSERT_FATAL(imap_parser_feed(parser, (const uint8_t *)line, strlen(line), &used) == IMAP_PARSE_DONE);
	return imap_parser_msg(parser);
}

/* The server sends an untagged response: what the client gets ("" consumed, "=" passed as is). */
static char *untagged(struct fake *f, const char *text)
{
	struct buf out;
	buf_init(&out, 0);
	enum vrelay_untagged r = vrelay_untagged(f->vr, msg(text), &out);
	char *s = r == VRU_OUT ? buf_str(&out) : strdup(r == VRU_PASS ? "=" : "");
	buf_free(&out);
	return s;
}

/* The sent command number i (1-based) as text. */
static const char *sent(struct fake *f, size_t i)
{
	return i >= 1 && i <= f->nsent ? f->sent[i - 1] : "(none)";
}

/* The tagged reply of sent command i. */
static void reply(struct fake *f, size_t i, const char *status_text)
{
	char line[512];
	snprintf(line, sizeof(line), "V%zu %s", i, status_text);
	vrelay_done(f->vr, f->cookie[i - 1], msg(line));
}

/* "* ESEARCH (TAG "Vi") UID ALL set" (or none when set is empty) then the OK. */
static void search_answer(struct fake *f, size_t i, const char *set)
{
	char line[65536];
	if (*set)
		snprintf(line, sizeof(line), "* ESEARCH (TAG \"V%zu\") UID ALL %s", i, set);
	else
		snprintf(line, sizeof(line), "* ESEARCH (TAG \"V%zu\") UID", i);
	char *s = untagged(f, line);
	CU_ASSERT_STRING_EQUAL(s, "");
	free(s);
	reply(f, i, "OK Search completed");
}

static const struct imap_msg *command(const char *text)
{
	struct imap_limits lim = {1 << 20, 1 << 20, 64, 1000000, 0};
	if (parser)
		imap_parser_free(parser);
	parser = imap_parser_new(IMAP_PARSE_COMMANDS, &lim);
	size_t used;
	char line[4096];
	snprintf(line, sizeof(line), "%s\r\n", text);
	CU_ASSERT_FATAL(imap_parser_feed(parser, (const uint8_t *)line, strlen(line), &used) == IMAP_PARSE_DONE);
	return imap_parser_msg(parser);
}

static enum vrelay_take client(struct fake *f, const char *text, bool *seq)
{
	bool dummy;
	return vrelay_command(f->vr, command(text), (void *)text, seq ? seq : &dummy);
}

/* The standard open: store UIDs 1..10, view 2,4,6 (store numbers 2,4,6). */
static void open_standard(struct fake *f)
{
	vrelay_open(f->vr, VR_OPEN_SELECT, NULL);
	CU_ASSERT_EQUAL_FATAL(f->nsent, 2);
	CU_ASSERT_STRING_EQUAL(sent(f, 1), "UID SEARCH RETURN (ALL) FROM \"vip\"");
	CU_ASSERT_STRING_EQUAL(sent(f, 2), "UID SEARCH RETURN (ALL) ALL");
	static const char *sel[] = {"* FLAGS (\\Seen \\Deleted)", "* OK [PERMANENTFLAGS (\\Seen \\Deleted \\*)] Ok",
	                            "* 10 EXISTS", "* 1 RECENT", "* OK [UNSEEN 3] First unseen.",
	                            "* OK [UIDVALIDITY 77] Ok", "* OK [UIDNEXT 11] Predicted", "* OK [HIGHESTMODSEQ 40] Hi"};
	for (size_t i = 0; i < sizeof(sel) / sizeof(sel[0]); i++) {
		char *s = untagged(f, sel[i]);
		CU_ASSERT_STRING_EQUAL(s, "");
		free(s);
	}
	vrelay_select_done(f->vr, msg("X OK [READ-WRITE] Select completed"));
	search_answer(f, 1, "2,4,6");
	CU_ASSERT_EQUAL(f->opened, -1);
	search_answer(f, 2, "1:10");
	CU_ASSERT_EQUAL_FATAL(f->opened, VR_OPENED);
	CU_ASSERT(vrelay_is_open(f->vr));
}

static void test_open_fresh(void)
{
	struct fake f;
	fake_init(&f, "FROM \"vip\"", "ALL", NULL);
	open_standard(&f);
	EXPECT_STR(take(&f.response), "* FLAGS (\\Seen \\Deleted)\r\n* OK [PERMANENTFLAGS (\\Seen \\Deleted \\*)] Ok\r\n"
	                              "* 3 EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 77] Ok\r\n"
	                              "* OK [UIDNEXT 11] Predicted\r\n"
	                              "* OK [NOMODSEQ] A new view: compare all of it\r\n"); /* not the store's 40 */
	EXPECT_STR(take(&f.events), "");
	CU_ASSERT_EQUAL(f.nsent, 2); /* nothing more: no new mail */
	fake_free(&f);
}

static void test_fetch_store_copy(void)
{
	struct fake f;
	fake_init(&f, "FROM \"vip\"", "ALL", NULL);
	open_standard(&f);
	bool seq;
	CU_ASSERT_EQUAL(client(&f, "a1 FETCH 1:* (FLAGS)", &seq), VR_TAKEN);
	CU_ASSERT(seq);
	CU_ASSERT_STRING_EQUAL(sent(&f, 3), "UID FETCH 2,4,6 (FLAGS)");
	EXPECT_STR(untagged(&f, "* 4 FETCH (UID 4 FLAGS ())"), "* 2 FETCH (UID 4 FLAGS ())\r\n");
	EXPECT_STR(untagged(&f, "* 6 FETCH (FLAGS (\\Seen))"), "* 3 FETCH (FLAGS (\\Seen))\r\n");
	EXPECT_STR(untagged(&f, "* 3 FETCH (FLAGS (\\Seen))"), ""); /* hidden: dropped */
	reply(&f, 3, "OK Fetch completed.");
	EXPECT_STR(take(&f.finished), "a1 OK Fetch completed.\r\n");
	/* UID commands: sets meet the view; seq 2 is UID 4 */
	CU_ASSERT_EQUAL(client(&f, "a2 UID STORE 1:5 +FLAGS.SILENT (\\Deleted)", &seq), VR_TAKEN);
	CU_ASSERT(!seq);
	CU_ASSERT_STRING_EQUAL(sent(&f, 4), "UID STORE 2,4 +FLAGS.SILENT (\\Deleted)");
	reply(&f, 4, "OK Store completed.");
	CU_ASSERT_EQUAL(client(&f, "a3 COPY 2 {5}\r\nTrash", NULL), VR_TAKEN);
	CU_ASSERT_STRING_EQUAL(sent(&f, 5), "UID COPY 4 {5+}\r\nTrash");
	reply(&f, 5, "OK [COPYUID 9 4 100] Copy completed.");
	/* nothing in the view: answered without the store */
	CU_ASSERT_EQUAL(client(&f, "a4 UID FETCH 3 (FLAGS)", NULL), VR_TAKEN);
	CU_ASSERT_EQUAL(f.nsent, 5);
	EXPECT_STR(take(&f.finished), "a2 OK Store completed.\r\na3 OK [COPYUID 9 4 100] Copy completed.\r\n"
	                              "a4 OK FETCH completed (no messages)\r\n");
	/* numbers out of the view: BAD */
	CU_ASSERT_EQUAL(client(&f, "a5 FETCH 4 (FLAGS)", NULL), VR_TAKEN);
	EXPECT_STR(take(&f.finished), "a5 BAD invalid message sequence number (the folder shows 3 messages)\r\n");
	/* not a view command: the host relays it */
	CU_ASSERT_EQUAL(client(&f, "a6 NOOP", NULL), VR_PASS);
	CU_ASSERT_EQUAL(client(&f, "a7 STATUS Trash (MESSAGES)", NULL), VR_PASS);
	fake_free(&f);
}

static void test_new_mail_and_expunge(void)
{
	struct fake f;
	fake_init(&f, "FROM \"vip\"", "ALL", NULL);
	open_standard(&f);
	EXPECT_STR(untagged(&f, "* 12 EXISTS"), "");
	CU_ASSERT_EQUAL_FATAL(f.nsent, 4);
	CU_ASSERT_STRING_EQUAL(sent(&f, 3), "UID SEARCH RETURN (ALL) UID 11:*");
	CU_ASSERT_STRING_EQUAL(sent(&f, 4), "UID SEARCH RETURN (ALL) UID 11:* FROM \"vip\"");
	EXPECT_STR(untagged(&f, "* 13 EXISTS"), ""); /* more mail while the round runs */
	search_answer(&f, 3, "11:13");
	search_answer(&f, 4, "12");
	CU_ASSERT_EQUAL(f.pending, 1);
	struct vrelay_pending p;
	vrelay_pending(f.vr, &p);
	CU_ASSERT(p.arrivals == 1 && p.notify && !p.removals);
	struct buf out;
	buf_init(&out, 0);
	vrelay_flush(f.vr, true, true, &out);
	EXPECT_STR(take(&out), "* 4 EXISTS\r\n");
	/* the store expunges UID 4 (store number 4) and a hidden one (store number 1) */
	EXPECT_STR(untagged(&f, "* 4 EXPUNGE"), "");
	EXPECT_STR(untagged(&f, "* 1 EXPUNGE"), "");
	vrelay_pending(f.vr, &p);
	CU_ASSERT(p.removals && !p.arrivals);
	/* until flushed the client's numbers stay: seq 3 is still UID 6 */
	bool seq;
	CU_ASSERT_EQUAL(client(&f, "b1 FETCH 3 (UID)", &seq), VR_TAKEN);
	CU_ASSERT_STRING_EQUAL(sent(&f, 5), "UID FETCH 6 (UID)");
	vrelay_flush(f.vr, true, true, &out);
	EXPECT_STR(take(&out), "* 2 EXPUNGE\r\n");
	/* store numbers moved: UID 6 is store number 4 now */
	EXPECT_STR(untagged(&f, "* 4 FETCH (FLAGS (\\Seen))"), "* 2 FETCH (FLAGS (\\Seen))\r\n");
	buf_free(&out);
	fake_free(&f);
}

static void test_search(void)
{
	struct fake f;
	fake_init(&f, "FROM \"vip\"", "ALL", NULL);
	open_standard(&f);
	bool seq;
	CU_ASSERT_EQUAL(client(&f, "s1 SEARCH FROM x 2:3 NOT (OR SEEN UID 1:5)", &seq), VR_TAKEN);
	CU_ASSERT(seq);
	CU_ASSERT_STRING_EQUAL(sent(&f, 3), "UID SEARCH RETURN (ALL) FROM \"x\" UID 4,6 NOT (OR SEEN UID 2,4)");
	search_answer(&f, 3, "1:6");
	EXPECT_STR(take(&f.finished), "* SEARCH 1 2 3\r\ns1 OK Search completed\r\n");
	CU_ASSERT_EQUAL(client(&f, "s2 UID SEARCH RETURN (MIN COUNT ALL) CHARSET UTF-8 BODY {3}\r\nabc", NULL),
	                VR_TAKEN);
	CU_ASSERT_STRING_EQUAL(sent(&f, 4), "UID SEARCH RETURN (ALL) CHARSET \"UTF-8\" BODY \"abc\"");
	search_answer(&f, 4, "4:6");
	EXPECT_STR(take(&f.finished), "* ESEARCH (TAG \"s2\") UID MIN 4 COUNT 2 ALL 4,6\r\ns2 OK Search completed\r\n");
	/* SAVE, then $ */
	CU_ASSERT_EQUAL(client(&f, "s3 SEARCH RETURN (SAVE) ALL", NULL), VR_TAKEN);
	search_answer(&f, 5, "1:10");
	EXPECT_STR(take(&f.finished), "s3 OK Search completed\r\n");
	CU_ASSERT_EQUAL(client(&f, "s4 FETCH $ (UID)", NULL), VR_TAKEN);
	CU_ASSERT_STRING_EQUAL(sent(&f, 6), "UID FETCH 2,4,6 (UID)");
	/* no match: no MIN/ALL, COUNT 0 */
	CU_ASSERT_EQUAL(client(&f, "s5 SEARCH RETURN (MIN COUNT) SUBJECT nothing", NULL), VR_TAKEN);
	search_answer(&f, 7, "");
	EXPECT_STR(take(&f.finished), "* ESEARCH (TAG \"s5\") COUNT 0\r\ns5 OK Search completed\r\n");
	CU_ASSERT_EQUAL(client(&f, "s6 SEARCH RETURN (UPDATE) ALL", NULL), VR_TAKEN);
	EXPECT_STR(take(&f.finished), "s6 BAD SEARCH RETURN option UPDATE is not supported in a filtered folder\r\n");
	CU_ASSERT_EQUAL(client(&f, "s7 SEARCH X-FOO", NULL), VR_TAKEN);
	EXPECT_STR(take(&f.finished), "s7 BAD search key X-FOO is not supported in a filtered folder\r\n");
	/* SORT and THREAD answers in view terms */
	CU_ASSERT_EQUAL(client(&f, "s8 SORT (DATE) UTF-8 ALL", NULL), VR_TAKEN);
	CU_ASSERT_STRING_EQUAL(sent(&f, 8), "UID SORT (DATE) \"UTF-8\" ALL");
	EXPECT_STR(untagged(&f, "* SORT 6 5 4 3 2 1"), "");
	reply(&f, 8, "OK Sort completed");
	EXPECT_STR(take(&f.finished), "* SORT 3 2 1\r\ns8 OK Sort completed\r\n");
	CU_ASSERT_EQUAL(client(&f, "s9 UID THREAD REFERENCES UTF-8 ALL", NULL), VR_TAKEN);
	EXPECT_STR(untagged(&f, "* THREAD (1 2 (3 4)(6))"), "");
	reply(&f, 9, "OK Thread completed");
	EXPECT_STR(take(&f.finished), "* THREAD (2 (4)(6))\r\ns9 OK Thread completed\r\n");
	fake_free(&f);
}

static void test_saved_view(void)
{
	struct fake f;
	fake_init(&f, "FROM \"vip\"", "ALL", NULL);
	struct vrelay_saved saved;
	uidset_init(&saved.uids);
	uidset_add(&saved.uids, 2);
	uidset_add(&saved.uids, 4);
	uidset_add(&saved.uids, 6);
	saved.modseq = 30;
	saved.uidnext = 9;
	vrelay_open(f.vr, VR_OPEN_SELECT, &saved);
	uidset_free(&saved.uids);
	free(untagged(&f, "* 10 EXISTS"));
	free(untagged(&f, "* OK [UIDNEXT 12] Predicted"));
	free(untagged(&f, "* OK [HIGHESTMODSEQ 40] Hi"));
	vrelay_select_done(f.vr, msg("X OK Select completed"));
	/* now: 4 expunged, 11 arrived and matches */
	search_answer(&f, 1, "2,6,11");
	search_answer(&f, 2, "1:3,5:11");
	CU_ASSERT_EQUAL(f.opened, -1);
	CU_ASSERT_STRING_EQUAL(sent(&f, 3), "UID FETCH 2,6 (UID FLAGS) (CHANGEDSINCE 30)");
	EXPECT_STR(untagged(&f, "* 5 FETCH (UID 6 FLAGS (\\Seen) MODSEQ (35))"), "");
	reply(&f, 3, "OK Fetch completed");
	CU_ASSERT_EQUAL_FATAL(f.opened, VR_OPENED);
	EXPECT_STR(take(&f.response), "* 3 EXISTS\r\n* OK [UIDNEXT 9] Predicted next UID\r\n"
	                              "* OK [HIGHESTMODSEQ 30] Highest\r\n");
	EXPECT_STR(take(&f.events), "* 2 EXPUNGE\r\n* 3 EXISTS\r\n* 2 FETCH (UID 6 FLAGS (\\Seen))\r\n");
	struct uidset told;
	uidset_init(&told);
	vrelay_told(f.vr, &told);
	CU_ASSERT(told.count == 3 && told.uids[0] == 2 && told.uids[2] == 11);
	uidset_free(&told);
	fake_free(&f);
}

/* A saved view that new messages would enter below the client's last one: fresh view instead. */
static void test_saved_view_reordered(void)
{
	struct fake f;
	fake_init(&f, "FROM \"vip\"", "ALL", "(FLAGS)");
	struct vrelay_saved saved;
	uidset_init(&saved.uids);
	uidset_add(&saved.uids, 6);
	saved.modseq = 30;
	saved.uidnext = 9;
	vrelay_open(f.vr, VR_OPEN_RESUME, &saved);
	uidset_free(&saved.uids);
	search_answer(&f, 1, "2,6");
	search_answer(&f, 2, "1:10");
	/* 7..10 arrived after the view's last match: decided first */
	CU_ASSERT_STRING_EQUAL(sent(&f, 3), "UID SEARCH RETURN (ALL) UID 7:* FROM \"vip\"");
	CU_ASSERT_EQUAL(f.opened, -1);
	search_answer(&f, 3, "");
	CU_ASSERT_EQUAL(f.opened, VR_RESYNC);
	EXPECT_STR(take(&f.events), "");
	CU_ASSERT_EQUAL(fview_count(vrelay_view(f.vr)), 2);
	fake_free(&f);
}

/* NEW_FORMAT: a saved view's arrivals come as FETCH of the items. */
static void test_saved_view_new_format(void)
{
	struct fake f;
	fake_init(&f, "FROM \"vip\"", "ALL", "(FLAGS BODY.PEEK[HEADER])");
	struct vrelay_saved saved;
	uidset_init(&saved.uids);
	uidset_add(&saved.uids, 2);
	saved.modseq = 30;
	saved.uidnext = 9;
	vrelay_open(f.vr, VR_OPEN_RESUME, &saved);
	uidset_free(&saved.uids);
	search_answer(&f, 1, "2,9");
	search_answer(&f, 2, "1:9");
	CU_ASSERT_STRING_EQUAL(sent(&f, 3), "UID FETCH 9 (FLAGS BODY.PEEK[HEADER])");
	EXPECT_STR(untagged(&f, "* 9 FETCH (UID 9 FLAGS ())"), "");
	reply(&f, 3, "OK Fetch completed");
	CU_ASSERT_STRING_EQUAL(sent(&f, 4), "UID FETCH 2 (UID FLAGS) (CHANGEDSINCE 30)");
	reply(&f, 4, "OK Fetch completed");
	CU_ASSERT_EQUAL(f.opened, VR_OPENED);
	EXPECT_STR(take(&f.events), "* 2 FETCH (UID 9 FLAGS ())\r\n");
	fake_free(&f);
}

static void test_notify_filter(void)
{
	struct fake f;
	fake_init(&f, "ALL", "FROM \"boss\"", NULL);
	vrelay_open(f.vr, VR_OPEN_SELECT, NULL);
	free(untagged(&f, "* 2 EXISTS"));
	vrelay_select_done(f.vr, msg("X OK Select completed"));
	search_answer(&f, 1, "1:2");
	search_answer(&f, 2, "1:2");
	CU_ASSERT_EQUAL(f.opened, VR_OPENED);
	free(untagged(&f, "* 3 EXISTS"));
	CU_ASSERT_EQUAL_FATAL(f.nsent, 5);
	CU_ASSERT_STRING_EQUAL(sent(&f, 5), "UID SEARCH RETURN (ALL) UID 3:* (ALL) (FROM \"boss\")");
	search_answer(&f, 3, "3");
	search_answer(&f, 4, "3");
	search_answer(&f, 5, "");
	struct vrelay_pending p;
	vrelay_pending(f.vr, &p);
	CU_ASSERT(p.arrivals == 1 && !p.notify);
	free(untagged(&f, "* 4 EXISTS"));
	search_answer(&f, 6, "4");
	search_answer(&f, 7, "4");
	search_answer(&f, 8, "4");
	vrelay_pending(f.vr, &p);
	CU_ASSERT(p.arrivals == 2 && p.notify);
	struct buf out;
	buf_init(&out, 0);
	vrelay_flush(f.vr, true, true, &out);
	EXPECT_STR(take(&out), "* 4 EXISTS\r\n");
	vrelay_pending(f.vr, &p);
	CU_ASSERT(!p.arrivals && !p.notify);
	buf_free(&out);
	fake_free(&f);
}

static void test_ageing(void)
{
	struct fake f;
	fake_init(&f, "DAYSBEFORETODAY 7", "ALL", NULL);
	vrelay_open(f.vr, VR_OPEN_SELECT, NULL);
	char date[16], want[128];
	xfilter_format_date(19800 - 7, date, sizeof(date));
	snprintf(want, sizeof(want), "UID SEARCH RETURN (ALL) SINCE %s", date);
	CU_ASSERT_STRING_EQUAL(sent(&f, 1), want);
	vrelay_select_done(f.vr, msg("X OK Select completed"));
	search_answer(&f, 1, "5:8");
	search_answer(&f, 2, "1:8");
	vrelay_tick(f.vr, 19800); /* same day: nothing */
	CU_ASSERT_EQUAL(f.nsent, 2);
	vrelay_tick(f.vr, 19801);
	CU_ASSERT_EQUAL_FATAL(f.nsent, 3);
	CU_ASSERT(strncmp(sent(&f, 3), "UID SEARCH RETURN (ALL) SINCE ", 30) == 0);
	search_answer(&f, 3, "5");
	struct vrelay_pending p;
	vrelay_pending(f.vr, &p);
	CU_ASSERT(p.removals);
	struct buf out;
	buf_init(&out, 0);
	vrelay_flush(f.vr, true, true, &out);
	EXPECT_STR(take(&out), "* 1 EXPUNGE\r\n");
	CU_ASSERT_EQUAL(fview_count(vrelay_view(f.vr)), 3);
	/* the new day's criteria for new mail */
	free(untagged(&f, "* 9 EXISTS"));
	xfilter_format_date(19801 - 7, date, sizeof(date));
	snprintf(want, sizeof(want), "UID SEARCH RETURN (ALL) UID 9:* SINCE %s", date);
	CU_ASSERT_STRING_EQUAL(sent(&f, 5), want);
	buf_free(&out);
	fake_free(&f);
}

static void test_chunks_and_close(void)
{
	struct fake f;
	fake_init(&f, "FROM \"vip\"", "ALL", NULL);
	vrelay_open(f.vr, VR_OPEN_SELECT, NULL);
	vrelay_select_done(f.vr, msg("X OK Select completed"));
	/* every other UID of 1..9999 matches: a long set */
	struct buf set;
	buf_init(&set, 0);
	for (unsigned u = 1; u < 10000; u += 2)
		buf_printf(&set, "%s%u", u > 1 ? "," : "", u);
	buf_append(&set, "", 1);
	search_answer(&f, 1, (const char *)buf_head(&set));
	search_answer(&f, 2, "1:9999");
	buf_free(&set);
	CU_ASSERT_EQUAL(fview_count(vrelay_view(f.vr)), 5000);
	CU_ASSERT_EQUAL(client(&f, "c1 FETCH 1:* (FLAGS)", NULL), VR_TAKEN);
	size_t parts = f.nsent - 2;
	CU_ASSERT(parts >= 3);
	for (size_t i = 3; i <= f.nsent; i++) {
		CU_ASSERT(strncmp(sent(&f, i), "UID FETCH ", 10) == 0 && strlen(sent(&f, i)) < VRELAY_MAX_SET_TEXT + 40);
		CU_ASSERT_EQUAL(f.nfinished, 0);
		reply(&f, i, "OK Fetch completed.");
	}
	EXPECT_STR(take(&f.finished), "c1 OK Fetch completed.\r\n");
	/* CLOSE: only the view's messages are expunged, then UNSELECT */
	size_t before = f.nsent;
	CU_ASSERT(vrelay_close(f.vr, false));
	CU_ASSERT(f.nsent > before && strncmp(sent(&f, before + 1), "UID EXPUNGE 1,3,5,", 18) == 0);
	EXPECT_STR(untagged(&f, "* 1 EXPUNGE"), "");
	CU_ASSERT_EQUAL(f.pending, 0); /* nothing told while closing */
	CU_ASSERT(!vrelay_close(f.vr, true));
	fake_free(&f);
}

static void test_status_and_lost(void)
{
	struct fake f;
	fake_init(&f, "FROM \"vip\"", "ALL", NULL);
	open_standard(&f);
	CU_ASSERT_EQUAL(client(&f, "t1 STATUS inbox (UIDNEXT MESSAGES UNSEEN RECENT)", NULL), VR_TAKEN);
	CU_ASSERT_STRING_EQUAL(sent(&f, 3), "STATUS INBOX (UIDNEXT)");
	CU_ASSERT_STRING_EQUAL(sent(&f, 4), "UID SEARCH RETURN (ALL) UNSEEN");
	CU_ASSERT_STRING_EQUAL(sent(&f, 5), "UID SEARCH RETURN (ALL) RECENT");
	EXPECT_STR(untagged(&f, "* STATUS INBOX (UIDNEXT 11)"), "");
	reply(&f, 3, "OK Status completed");
	search_answer(&f, 4, "1:4");
	search_answer(&f, 5, "6:10");
	EXPECT_STR(take(&f.finished), "* STATUS INBOX (UIDNEXT 11 MESSAGES 3 UNSEEN 2 RECENT 1)\r\nt1 OK STATUS completed.\r\n");
	CU_ASSERT_EQUAL(client(&f, "t2 STATUS INBOX (SIZE)", NULL), VR_TAKEN);
	EXPECT_STR(take(&f.finished), "t2 NO [CANNOT] STATUS SIZE is not counted in a filtered folder\r\n");
	/* the store lists more new messages than it announced: the view is lost */
	free(untagged(&f, "* 11 EXISTS"));
	search_answer(&f, 6, "11:12");
	CU_ASSERT(strstr(f.lost, "reported 1 new message(s) but listed 2") != NULL);
	fake_free(&f);
}

static void test_server_caps(void)
{
	char why[128];
	CU_ASSERT(vrelay_server_ok("IMAP4rev1 ESEARCH UIDPLUS UNSELECT IDLE", why, sizeof(why)));
	CU_ASSERT(!vrelay_server_ok("IMAP4rev1 UIDPLUS UNSELECT", why, sizeof(why)));
	CU_ASSERT(strstr(why, "ESEARCH") != NULL);
	CU_ASSERT(!vrelay_server_ok("IMAP4rev1 ESEARCH UNSELECT", why, sizeof(why)));
	struct vrelay_config bad = {.mailbox = "INBOX", .view = "SEEN", .notify = "ALL"};
	CU_ASSERT_PTR_NULL(vrelay_new(&host, NULL, &bad));
}

static void suite_cleanup(void)
{
	if (parser)
		imap_parser_free(parser);
	parser = NULL;
}

static void test_cleanup(void)
{
	suite_cleanup();
}

void suite_vrelay(void)
{
	ADD_SUITE("vrelay",
	          {"open: the SELECT answer describes the view", test_open_fresh},
	          {"FETCH, STORE, COPY: UID sets of the view", test_fetch_store_copy},
	          {"new mail decided by a search; expunges wait for a flush", test_new_mail_and_expunge},
	          {"SEARCH, SORT, THREAD in view terms", test_search},
	          {"saved view: events and flag changes", test_saved_view},
	          {"saved view that cannot be caught up: RESYNC", test_saved_view_reordered},
	          {"saved view with NEW_FORMAT items", test_saved_view_new_format},
	          {"notification filter decides the push", test_notify_filter},
	          {"DAYSBEFORETODAY: messages age out", test_ageing},
	          {"long sets split; CLOSE spares hidden messages", test_chunks_and_close},
	          {"STATUS of the view; a store out of step is lost", test_status_and_lost},
	          {"server capabilities, bad criteria", test_server_caps},
	          {"cleanup", test_cleanup});
}
