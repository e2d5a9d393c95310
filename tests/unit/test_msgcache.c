/*
 * Unit tests for msgcache.c: pushed message data answering a client's FETCH
 * in the form Dovecot would (item order, names, literals, partial ranges),
 * and refusing whatever it cannot answer exactly.
 *
 * The expected answers below were checked against Dovecot 2.3.19: UID first
 * for UID FETCH, then non-body items in the client's order, then body
 * sections; HEADER.FIELDS names upper-cased; \Recent last in FLAGS.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include "buf.h"
#include "client_view.h"
#include "imap_parse.h"
#include "msgcache.h"
#include "suites.h"

/* Feed server responses to the view and/or the cache (learn). */
static void feed(struct client_view *v, struct msgcache *mc, const char *text)
{
	struct imap_parser *p = imap_parser_new(IMAP_PARSE_RESPONSES, NULL);
	const uint8_t *d = (const uint8_t *)text;
	size_t off = 0, len = strlen(text), used;
	while (off < len) {
		enum imap_parse_result r = imap_parser_feed(p, d + off, len - off, &used);
		CU_ASSERT_EQUAL_FATAL(r, IMAP_PARSE_DONE);
		const struct imap_msg *m = imap_parser_msg(p);
		if (v)
			client_view_apply(v, m);
		if (mc)
			msgcache_learn(mc, m);
		off += used;
		imap_parser_reset(p);
	}
	imap_parser_free(p);
}

/* Answer a client command text (tag "a"); returns the answer or NULL (refused). */
static char *answer(const struct msgcache *mc, const struct client_view *v, const char *cmd)
{
	struct imap_parser *p = imap_parser_new(IMAP_PARSE_COMMANDS, NULL);
	size_t used;
	char line[1024];
	snprintf(line, sizeof(line), "a %s\r\n", cmd);
	CU_ASSERT_EQUAL_FATAL(imap_parser_feed(p, (const uint8_t *)line, strlen(line), &used), IMAP_PARSE_DONE);
	struct buf out;
	buf_init(&out, 0);
	char *res = NULL;
	if (msgcache_answer(mc, v, imap_parser_msg(p), "a", &out))
		res = buf_str(&out);
	else
		CU_ASSERT_EQUAL(buf_len(&out), 0);
	buf_free(&out);
	imap_parser_free(p);
	return res;
}

static void expect(const struct msgcache *mc, const struct client_view *v, const char *cmd, const char *want)
{
	char *got = answer(mc, v, cmd);
	if (!want) {
		CU_ASSERT_PTR_NULL(got);
		if (got)
			fprintf(stderr, "\n  %s: answered, expected a refusal:\n%s\n", cmd, got);
	} else {
		CU_ASSERT_PTR_NOT_NULL(got);
		if (got && strcmp(got, want) != 0) {
			CU_FAIL("answer differs");
			fprintf(stderr, "\n  %s:\n  got  %s\n  want %s\n", cmd, got, want);
		}
	}
	free(got);
}

#define HDR "From: A <a@example.org>\r\nSubject: hi\r\n\r\n"
#define BODY "From: A <a@example.org>\r\nSubject: hi\r\nDate: x\r\n\r\nbody\r\n"

/* Three messages the client knows (UIDs 10, 11, 12) and a fourth pushed. */
static void setup(struct client_view **v, struct msgcache **mc)
{
	*v = client_view_new();
	*mc = msgcache_new(0);
	feed(*v, NULL,
	     "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)\r\n"
	     "* 3 EXISTS\r\n"
	     "* 1 FETCH (UID 10 FLAGS (\\Seen))\r\n"
	     "* 2 FETCH (UID 11 FLAGS ())\r\n"
	     "* 3 FETCH (UID 12 FLAGS (\\Flagged $Work))\r\n");
	/* the push: the client is told EXISTS only; the proxy learns the UID */
	feed(*v, NULL, "* 4 EXISTS\r\n");
	feed(NULL, *mc,
	     "* 4 FETCH (UID 13 RFC822.SIZE 55 FLAGS (\\Recent) INTERNALDATE \"07-Dec-2026 12:42:05 +0000\" "
	     "BODY[HEADER.FIELDS (FROM SUBJECT)] {40}\r\n" HDR " BODY[] {55}\r\n" BODY ")\r\n");
	client_view_learn_uid(*v, 4, 13);
}

static void test_subsets(void)
{
	struct client_view *v;
	struct msgcache *mc;
	setup(&v, &mc);
	CU_ASSERT_EQUAL(msgcache_count(mc), 1);
	CU_ASSERT(msgcache_has(mc, 13));
	/* Thunderbird's three fetches of a new message */
	expect(mc, v, "UID fetch 13:* (FLAGS)", "* 4 FETCH (UID 13 FLAGS (\\Recent))\r\na OK Fetch completed.\r\n");
	expect(mc, v,
	       "UID fetch 13 (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From Subject)])",
	       "* 4 FETCH (UID 13 RFC822.SIZE 55 FLAGS (\\Recent) BODY[HEADER.FIELDS (FROM SUBJECT)] {40}\r\n" HDR
	       ")\r\na OK Fetch completed.\r\n");
	expect(mc, v, "UID fetch 13 (UID RFC822.SIZE BODY.PEEK[])",
	       "* 4 FETCH (UID 13 RFC822.SIZE 55 BODY[] {55}\r\n" BODY ")\r\na OK Fetch completed.\r\n");
	/* Dovecot's order: body sections last, the rest as asked */
	expect(mc, v, "UID FETCH 13 (BODY.PEEK[] INTERNALDATE FLAGS)",
	       "* 4 FETCH (UID 13 INTERNALDATE \"07-Dec-2026 12:42:05 +0000\" FLAGS (\\Recent) BODY[] {55}\r\n" BODY
	       ")\r\na OK Fetch completed.\r\n");
	/* a sequence-number FETCH: UID where asked */
	expect(mc, v, "FETCH 4 (FLAGS UID RFC822.SIZE)", "* 4 FETCH (FLAGS (\\Recent) UID 13 RFC822.SIZE 55)\r\na OK Fetch completed.\r\n");
	expect(mc, v, "FETCH 4:4 RFC822.SIZE", "* 4 FETCH (RFC822.SIZE 55)\r\na OK Fetch completed.\r\n");
	/* a partial range of the body */
	expect(mc, v, "UID FETCH 13 (BODY.PEEK[]<0.4>)", "* 4 FETCH (UID 13 BODY[]<0> {4}\r\nFrom)\r\na OK Fetch completed.\r\n");
	expect(mc, v, "UID FETCH 13 (BODY.PEEK[]<51.100>)", "* 4 FETCH (UID 13 BODY[]<51> {4}\r\ndy\r\n)\r\na OK Fetch completed.\r\n");
	msgcache_free(mc);
	client_view_free(v);
}

static void test_flags_from_view(void)
{
	struct client_view *v;
	struct msgcache *mc;
	setup(&v, &mc);
	/* FLAGS and UID of messages the client was told of need no cached data */
	expect(mc, v, "UID FETCH 1:* (FLAGS)",
	       "* 1 FETCH (UID 10 FLAGS (\\Seen))\r\n* 2 FETCH (UID 11 FLAGS ())\r\n"
	       "* 3 FETCH (UID 12 FLAGS (\\Flagged $Work))\r\n* 4 FETCH (UID 13 FLAGS (\\Recent))\r\n"
	       "a OK Fetch completed.\r\n");
	/* a later change the client was told of wins over the pushed flags */
	feed(v, NULL, "* 4 FETCH (FLAGS (\\Seen \\Recent))\r\n");
	expect(mc, v, "FETCH 4 FLAGS", "* 4 FETCH (FLAGS (\\Seen \\Recent))\r\na OK Fetch completed.\r\n");
	/* "n:*" above the highest UID is the highest message (RFC 9051) */
	expect(mc, v, "UID FETCH 99:* (FLAGS)", "* 4 FETCH (UID 13 FLAGS (\\Seen \\Recent))\r\na OK Fetch completed.\r\n");
	/* UIDs that do not exist: nothing but OK */
	expect(mc, v, "UID FETCH 20:30 (FLAGS)", "a OK Fetch completed.\r\n");
	msgcache_free(mc);
	client_view_free(v);
}

static void test_refusals(void)
{
	struct client_view *v;
	struct msgcache *mc;
	setup(&v, &mc);
	/* side effects: BODY[] without PEEK, RFC822, RFC822.TEXT set \Seen */
	expect(mc, v, "UID FETCH 13 (BODY[])", NULL);
	expect(mc, v, "UID FETCH 13 RFC822", NULL);
	expect(mc, v, "UID FETCH 13 RFC822.TEXT", NULL);
	/* data not held: another section, ENVELOPE, another message's body */
	expect(mc, v, "UID FETCH 13 (BODY.PEEK[TEXT])", NULL);
	expect(mc, v, "UID FETCH 13 (ENVELOPE)", NULL);
	expect(mc, v, "UID FETCH 12 (BODY.PEEK[])", NULL);
	expect(mc, v, "UID FETCH 12:13 (RFC822.SIZE)", NULL);
	/* header names must be the same list */
	expect(mc, v, "UID FETCH 13 (BODY.PEEK[HEADER.FIELDS (From)])", NULL);
	/* beyond the mailbox: the server's BAD is not ours to give */
	expect(mc, v, "FETCH 5 (FLAGS)", NULL);
	/* macros, modifiers, syntax */
	expect(mc, v, "FETCH 4 FAST", NULL);
	expect(mc, v, "UID FETCH 13 (FLAGS) (CHANGEDSINCE 1)", NULL);
	expect(mc, v, "FETCH 0 (FLAGS)", NULL);
	expect(mc, v, "FETCH 4, (FLAGS)", NULL);
	/* a range starting beyond the data */
	expect(mc, v, "UID FETCH 13 (BODY.PEEK[]<55.10>)", NULL);
	/* a view that does not know every UID cannot resolve a UID set */
	feed(v, NULL, "* 5 EXISTS\r\n");
	expect(mc, v, "UID FETCH 13 (RFC822.SIZE)", NULL);
	expect(mc, v, "FETCH 4 (RFC822.SIZE)", "* 4 FETCH (RFC822.SIZE 55)\r\na OK Fetch completed.\r\n");
	/* an expunged message is forgotten */
	msgcache_forget(mc, 13);
	expect(mc, v, "FETCH 4 (RFC822.SIZE)", NULL);
	CU_ASSERT_EQUAL(msgcache_count(mc), 0);
	CU_ASSERT_EQUAL(msgcache_bytes(mc), 0);
	msgcache_free(mc);
	client_view_free(v);
}

static void test_eviction(void)
{
	struct msgcache *mc = msgcache_new(4096);
	char line[2048];
	char body[1001];
	memset(body, 'x', 1000);
	body[1000] = '\0';
	for (unsigned u = 1; u <= 20; u++) {
		snprintf(line, sizeof(line), "* %u FETCH (UID %u BODY[] {1000}\r\n%s)\r\n", u, u, body);
		feed(NULL, mc, line);
		CU_ASSERT(msgcache_bytes(mc) <= 4096);
		CU_ASSERT(msgcache_has(mc, u)); /* the newest always fits */
	}
	CU_ASSERT(!msgcache_has(mc, 1)); /* the oldest went first */
	CU_ASSERT(msgcache_count(mc) <= 4);
	/* learning again replaces items, it does not add bytes twice */
	size_t before = msgcache_bytes(mc);
	snprintf(line, sizeof(line), "* 20 FETCH (UID 20 BODY[] {1000}\r\n%s)\r\n", body);
	feed(NULL, mc, line);
	CU_ASSERT_EQUAL(msgcache_bytes(mc), before);
	msgcache_clear(mc);
	CU_ASSERT_EQUAL(msgcache_count(mc), 0);
	msgcache_free(mc);
}

static void test_write_flags(void)
{
	struct buf b;
	buf_init(&b, 0);
	const char *f1[] = {"$Work", "\\Seen", "\\answered", "\\Flagged"};
	msgcache_write_flags(&b, f1, 4, true);
	char *s = buf_str(&b);
	CU_ASSERT_STRING_EQUAL(s, "\\answered \\Flagged \\Seen $Work \\Recent");
	free(s);
	buf_clear(&b);
	msgcache_write_flags(&b, NULL, 0, true);
	s = buf_str(&b);
	CU_ASSERT_STRING_EQUAL(s, "\\Recent");
	free(s);
	buf_clear(&b);
	msgcache_write_flags(&b, NULL, 0, false);
	CU_ASSERT_EQUAL(buf_len(&b), 0);
	buf_free(&b);
}

void suite_msgcache(void)
{
	ADD_SUITE("msgcache", {"subsets of pushed items, Dovecot's order", test_subsets},
	          {"FLAGS from what the client was told", test_flags_from_view},
	          {"refusals: side effects, missing data, bad sets", test_refusals},
	          {"eviction within the byte budget", test_eviction},
	          {"flag order as the server writes it", test_write_flags});
}
