/*
 * Unit tests for prefetch.c: capturing the responses of a prefetched
 * command, its tagged reply, and answering a claiming client command.
 *
 * Every response is real bytes run through imap_parser
 * (IMAP_PARSE_RESPONSES); every client command is parsed with
 * IMAP_PARSE_COMMANDS and claimed with macro_claim(prefetch_text(pf), ...),
 * the way the proxy does it. Replies are compared byte for byte, and every
 * refused reply must leave the output buffer untouched.
 *
 * The last two are regression tests for bugs these tests found: answers
 * that left messages out instead of refusing.
 */
#include "config.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include "buf.h"
#include "imap_parse.h"
#include "macros.h"
#include "prefetch.h"
#include "suites.h"

/* What every output buffer starts with: a reply appends, a refusal leaves it. */
#define PRE "PRE:"

/* ---- helpers ------------------------------------------------------------ */

/*
 * Parse data as server responses: untagged ones are captured, a tagged one
 * finishes the prefetch. All bytes must form complete messages. Returns the
 * number of captures that returned false.
 */
static size_t feed_n(struct prefetch *pf, const void *data, size_t len)
{
	struct imap_parser *p = imap_parser_new(IMAP_PARSE_RESPONSES, NULL);
	const uint8_t *d = data;
	size_t off = 0, used, refused = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	while (off < len) {
		enum imap_parse_result r = imap_parser_feed(p, d + off, len - off, &used);
		CU_ASSERT_EQUAL_FATAL(r, IMAP_PARSE_DONE);
		const struct imap_msg *m = imap_parser_msg(p);
		CU_ASSERT_PTR_NOT_NULL_FATAL(m);
		if (m->kind == IMAP_MSG_TAGGED) {
			prefetch_finish(pf, m);
		} else {
			CU_ASSERT_EQUAL(m->kind, IMAP_MSG_UNTAGGED);
			if (!prefetch_capture(pf, m))
				refused++;
		}
		imap_parser_reset(p);
		off += used;
	}
	imap_parser_free(p);
	return refused;
}

/* Feed text; every capture must be accepted. */
static void feed(struct prefetch *pf, const char *text)
{
	CU_ASSERT_EQUAL(feed_n(pf, text, strlen(text)), 0);
}

/* A prefetch of cmd fed responses (untagged ones and the tagged reply). */
static struct prefetch *pf_from(const char *cmd, const char *responses)
{
	struct prefetch *pf = prefetch_new(cmd);
	CU_ASSERT_PTR_NOT_NULL_FATAL(pf);
	CU_ASSERT_STRING_EQUAL(prefetch_text(pf), cmd);
	feed(pf, responses);
	return pf;
}

/* Parse one client command line ("tag CMD ...\r\n") and claim pf with it. */
static enum macro_claim_kind claim(const struct prefetch *pf, const char *line, struct macro_claim *cl)
{
	struct imap_parser *p = imap_parser_new(IMAP_PARSE_COMMANDS, NULL);
	size_t used;

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_EQUAL_FATAL(imap_parser_feed(p, (const uint8_t *)line, strlen(line), &used), IMAP_PARSE_DONE);
	CU_ASSERT_EQUAL(used, strlen(line));
	const struct imap_msg *m = imap_parser_msg(p);
	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	CU_ASSERT_EQUAL_FATAL(m->kind, IMAP_MSG_COMMAND);
	enum macro_claim_kind k = macro_claim(prefetch_text(pf), m, cl);
	imap_parser_free(p);
	return k;
}

/*
 * Claim pf with the client command line (expecting claim kind want_kind),
 * ask for the reply with tag and seq_count, and check the result: want NULL
 * means refused (false, out untouched); otherwise true and exactly want
 * appended after PRE.
 */
static void expect_reply(const struct prefetch *pf, const char *line, enum macro_claim_kind want_kind,
                         const char *tag, uint32_t seq_count, const char *want)
{
	struct macro_claim cl;
	struct buf out;

	enum macro_claim_kind k = claim(pf, line, &cl);
	if (k != want_kind)
		fprintf(stderr, "\n  claim of %s by %s: kind %d, expected %d\n", prefetch_text(pf), line, (int)k,
		        (int)want_kind);
	CU_ASSERT_EQUAL(k, want_kind);
	buf_init(&out, 0);
	buf_append_str(&out, PRE);
	bool ok = prefetch_reply(pf, &cl, tag, seq_count, &out);
	char *got = buf_str(&out);
	if (want) {
		size_t wl = strlen(PRE) + strlen(want);
		char *w = malloc(wl + 1);
		CU_ASSERT_PTR_NOT_NULL_FATAL(w);
		snprintf(w, wl + 1, "%s%s", PRE, want);
		if (!ok || strcmp(got, w) != 0)
			fprintf(stderr, "\n  reply to %s (seq_count %u): %s\n  output:\n%s\n  expected:\n%s\n", line,
			        seq_count, ok ? "true" : "false", got, w);
		CU_ASSERT_TRUE(ok);
		CU_ASSERT_STRING_EQUAL(got, w);
		free(w);
	} else {
		if (ok || strcmp(got, PRE) != 0)
			fprintf(stderr, "\n  reply to %s (seq_count %u): %s, expected false\n  output:\n%s\n", line,
			        seq_count, ok ? "true" : "false", got);
		CU_ASSERT_FALSE(ok);
		CU_ASSERT_STRING_EQUAL(got, PRE);
	}
	free(got);
	buf_free(&out);
	macro_claim_free(&cl);
}

/*
 * "* seq FETCH (UID seq BODY[] {n}\r\n<n bytes>)\r\n" of exactly total
 * bytes (*len set to total). Caller frees.
 */
static char *fetch_of_size(uint32_t seq, size_t total, size_t *len)
{
	char head[128];
	size_t n = total, hl = 0;

	/* the header's length depends on the digits of n: settle it */
	for (int i = 0; i < 4; i++) {
		hl = (size_t)snprintf(head, sizeof(head), "* %u FETCH (UID %u BODY[] {%zu}\r\n", seq, seq, n);
		CU_ASSERT_FATAL(total > hl + 3);
		n = total - hl - 3;
	}
	hl = (size_t)snprintf(head, sizeof(head), "* %u FETCH (UID %u BODY[] {%zu}\r\n", seq, seq, n);
	CU_ASSERT_EQUAL_FATAL(hl + n + 3, total);
	char *s = malloc(total);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	memcpy(s, head, hl);
	memset(s + hl, 'x', n);
	memcpy(s + hl + n, ")\r\n", 3);
	*len = total;
	return s;
}

/* ---- fixtures ----------------------------------------------------------- */

/* Four messages answering "FETCH 1:* (UID FLAGS)", an untagged status among them. */
#define SEQ_L1 "* 1 FETCH (UID 10 FLAGS (\\Seen))\r\n"
#define SEQ_ST "* OK [HIGHESTMODSEQ 90] still here\r\n"
#define SEQ_L2 "* 2 FETCH (FLAGS () UID 11)\r\n"
#define SEQ_L3 "* 3 FETCH (UID 12 FLAGS ($Junk \\Answered))\r\n"
#define SEQ_L4 "* 4 FETCH (UID 13 FLAGS ())\r\n"
#define SEQ_ALL SEQ_L1 SEQ_ST SEQ_L2 SEQ_L3 SEQ_L4
#define SEQ_DONE "pf1 OK Fetch completed (0.001 + 0.000 secs).\r\n"

/* ---- capture ------------------------------------------------------------ */

static void test_capture_literals(void)
{
	static const char resp[] =
	    "* 2 FETCH (UID 7 FLAGS () BODY[HEADER.FIELDS (SUBJECT)] {12}\r\nSubject: x\r\n)\r\n"
	    /* a literal that looks like FETCH items, UID after it */
	    "* 3 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {17}\r\nSubject: UID 99\r\n UID 8 FLAGS (\\Seen))\r\n"
	    /* an empty literal */
	    "* 4 FETCH (UID 9 FLAGS (\\Flagged) BODY[HEADER.FIELDS (SUBJECT)] {0}\r\n)\r\n"
	    "* 5 EXISTS\r\n";
	const char *cmd = "FETCH 2:4 (UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])";
	struct prefetch *pf = prefetch_new(cmd);

	CU_ASSERT_PTR_NOT_NULL_FATAL(pf);
	CU_ASSERT_STRING_EQUAL(prefetch_text(pf), cmd);
	CU_ASSERT_EQUAL(prefetch_bytes(pf), 0);
	CU_ASSERT_FALSE(prefetch_finished(pf));
	CU_ASSERT_FALSE(prefetch_usable(pf));

	/* one message at a time: bytes grow by each message's raw length */
	const char *lines[] = {
	    "* 2 FETCH (UID 7 FLAGS () BODY[HEADER.FIELDS (SUBJECT)] {12}\r\nSubject: x\r\n)\r\n",
	    "* 3 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {17}\r\nSubject: UID 99\r\n UID 8 FLAGS (\\Seen))\r\n",
	    "* 4 FETCH (UID 9 FLAGS (\\Flagged) BODY[HEADER.FIELDS (SUBJECT)] {0}\r\n)\r\n",
	    "* 5 EXISTS\r\n",
	};
	size_t total = 0;
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		feed(pf, lines[i]);
		total += strlen(lines[i]);
		CU_ASSERT_EQUAL(prefetch_bytes(pf), total);
		CU_ASSERT_FALSE(prefetch_finished(pf));
		CU_ASSERT_FALSE(prefetch_usable(pf));
	}
	CU_ASSERT_EQUAL(total, strlen(resp));

	feed(pf, "pf1 OK Fetch completed.\r\n");
	CU_ASSERT_TRUE(prefetch_finished(pf));
	CU_ASSERT_TRUE(prefetch_usable(pf));
	CU_ASSERT_EQUAL(prefetch_bytes(pf), strlen(resp));

	/* the identical command gets every captured byte, literals included */
	expect_reply(pf, "a1 FETCH 2:4 (UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n", MACRO_CLAIM_EXACT, "a1",
	             5, "* 2 FETCH (UID 7 FLAGS () BODY[HEADER.FIELDS (SUBJECT)] {12}\r\nSubject: x\r\n)\r\n"
	                "* 3 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {17}\r\nSubject: UID 99\r\n UID 8 FLAGS (\\Seen))\r\n"
	                "* 4 FETCH (UID 9 FLAGS (\\Flagged) BODY[HEADER.FIELDS (SUBJECT)] {0}\r\n)\r\n"
	                "* 5 EXISTS\r\n"
	                "a1 OK Fetch completed.\r\n");
	/* a narrower FETCH by sequence number: message 3, its literal intact */
	expect_reply(pf, "a2 FETCH 3 (UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n", MACRO_CLAIM_FETCH, "a2", 5,
	             "* 3 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {17}\r\nSubject: UID 99\r\n UID 8 FLAGS (\\Seen))\r\n"
	             "a2 OK Fetch completed.\r\n");
	prefetch_free(pf);

	/* the same bytes fed in one go give the same capture */
	pf = pf_from(cmd, resp);
	CU_ASSERT_EQUAL(prefetch_bytes(pf), strlen(resp));
	CU_ASSERT_FALSE(prefetch_finished(pf));
	prefetch_free(pf);
}

/* UIDs are read from the UID item wherever it is, never from literal text. */
static void test_capture_uid_items(void)
{
	const char *cmd = "UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])";
	struct prefetch *pf = pf_from(
	    cmd, "* 1 FETCH (UID 7 BODY[HEADER.FIELDS (SUBJECT)] {12}\r\nSubject: x\r\n)\r\n"
	         "* 2 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {17}\r\nSubject: UID 99\r\n UID 8)\r\n"
	         "* 3 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {12}\r\nSubject: z\r\n UID 30)\r\n"
	         "pf9 OK done\r\n");

	CU_ASSERT_TRUE(prefetch_usable(pf));
	/* UID 8's literal names 99: 99 is no UID of the capture, and 8 is */
	expect_reply(pf, "u1 UID FETCH 8:29 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n", MACRO_CLAIM_FETCH, "u1", 3,
	             "* 2 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {17}\r\nSubject: UID 99\r\n UID 8)\r\n"
	             "u1 OK done\r\n");
	expect_reply(pf, "u2 UID FETCH 30:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n", MACRO_CLAIM_FETCH, "u2", 3,
	             "* 3 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {12}\r\nSubject: z\r\n UID 30)\r\n"
	             "u2 OK done\r\n");
	expect_reply(pf, "u3 UID FETCH 7 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n", MACRO_CLAIM_FETCH, "u3", 3,
	             "* 1 FETCH (UID 7 BODY[HEADER.FIELDS (SUBJECT)] {12}\r\nSubject: x\r\n)\r\n"
	             "u3 OK done\r\n");
	prefetch_free(pf);
}

/* ---- finish ------------------------------------------------------------- */

static void test_finish_ok(void)
{
	/* nothing captured: the reply is the tagged line alone */
	struct prefetch *pf = pf_from("STATUS INBOX (MESSAGES)", "");
	CU_ASSERT_FALSE(prefetch_finished(pf));
	CU_ASSERT_FALSE(prefetch_usable(pf));
	feed(pf, "p OK [X-CODE 1] Status  done\r\n");
	CU_ASSERT_TRUE(prefetch_finished(pf));
	CU_ASSERT_TRUE(prefetch_usable(pf));
	CU_ASSERT_EQUAL(prefetch_bytes(pf), 0);
	expect_reply(pf, "tag.long.1 STATUS inbox (messages)\r\n", MACRO_CLAIM_EXACT, "tag.long.1", 0,
	             "tag.long.1 OK [X-CODE 1] Status  done\r\n");
	prefetch_free(pf);
}

static void test_finish_no(void)
{
	static const char *const finals[] = {
	    "pf1 NO [SERVERBUG] Internal error occurred.\r\n",
	    "pf1 BAD Error in IMAP command FETCH: Invalid arguments.\r\n",
	};
	for (size_t i = 0; i < sizeof(finals) / sizeof(finals[0]); i++) {
		struct prefetch *pf = pf_from("FETCH 1:* (UID FLAGS)", SEQ_ALL);
		CU_ASSERT_FALSE(prefetch_finished(pf));
		feed(pf, finals[i]);
		CU_ASSERT_TRUE(prefetch_finished(pf));
		CU_ASSERT_FALSE(prefetch_usable(pf));
		/* the capture is kept, but it answers nothing */
		CU_ASSERT_EQUAL(prefetch_bytes(pf), strlen(SEQ_ALL));
		expect_reply(pf, "c1 FETCH 1:* (UID FLAGS)\r\n", MACRO_CLAIM_EXACT, "c1", 4, NULL);
		expect_reply(pf, "c2 FETCH 2:3 (UID FLAGS)\r\n", MACRO_CLAIM_FETCH, "c2", 4, NULL);
		expect_reply(pf, "c3 FETCH 1:4 (UID FLAGS)\r\n", MACRO_CLAIM_FETCH, "c3", 4, NULL);
		prefetch_free(pf);
	}

	/* a non-FETCH command answered NO is never replayed either */
	struct prefetch *pf = pf_from("STATUS Archive (MESSAGES)", "pf2 NO Mailbox doesn't exist: Archive\r\n");
	CU_ASSERT_TRUE(prefetch_finished(pf));
	CU_ASSERT_FALSE(prefetch_usable(pf));
	expect_reply(pf, "c4 STATUS Archive (MESSAGES)\r\n", MACRO_CLAIM_EXACT, "c4", 0, NULL);
	prefetch_free(pf);
}

static void test_usable(void)
{
	struct prefetch *pf = prefetch_new("FETCH 1:* (UID FLAGS)");

	CU_ASSERT_FALSE(prefetch_finished(pf));
	CU_ASSERT_FALSE(prefetch_usable(pf));
	/* not finished: no reply, whether anything was captured or not */
	expect_reply(pf, "c1 FETCH 1:* (UID FLAGS)\r\n", MACRO_CLAIM_EXACT, "c1", 0, NULL);
	feed(pf, SEQ_ALL);
	CU_ASSERT_FALSE(prefetch_finished(pf));
	CU_ASSERT_FALSE(prefetch_usable(pf));
	expect_reply(pf, "c2 FETCH 1:* (UID FLAGS)\r\n", MACRO_CLAIM_EXACT, "c2", 4, NULL);
	expect_reply(pf, "c3 FETCH 2 (UID FLAGS)\r\n", MACRO_CLAIM_FETCH, "c3", 4, NULL);
	feed(pf, SEQ_DONE);
	CU_ASSERT_TRUE(prefetch_finished(pf));
	CU_ASSERT_TRUE(prefetch_usable(pf));
	/* and now it answers */
	expect_reply(pf, "c4 FETCH 2 (UID FLAGS)\r\n", MACRO_CLAIM_FETCH, "c4", 4,
	             SEQ_L2 "c4 OK Fetch completed (0.001 + 0.000 secs).\r\n");
	prefetch_free(pf);

	/* a claim that is no claim is never answered */
	pf = pf_from("FETCH 1:* (UID FLAGS)", SEQ_ALL SEQ_DONE);
	CU_ASSERT_TRUE(prefetch_usable(pf));
	expect_reply(pf, "c5 FETCH 1:* (FLAGS UID)\r\n", MACRO_CLAIM_NONE, "c5", 4, NULL);
	expect_reply(pf, "c6 UID FETCH 1:* (UID FLAGS)\r\n", MACRO_CLAIM_NONE, "c6", 4, NULL);
	prefetch_free(pf);
}

/* ---- replies ------------------------------------------------------------ */

static void test_reply_exact(void)
{
	struct prefetch *pf = pf_from("FETCH 1:* (UID FLAGS)",
	                              SEQ_ALL "pf000123 OK [X-STATS 4] Fetch  completed (0.001 + 0.000 secs).\r\n");

	CU_ASSERT_TRUE(prefetch_usable(pf));
	/* every captured byte (the untagged OK too), then the client's tag in
	 * front of the prefetch's status text, kept byte for byte */
	expect_reply(pf, "A7 FETCH 1:* (UID FLAGS)\r\n", MACRO_CLAIM_EXACT, "A7", 4,
	             SEQ_ALL "A7 OK [X-STATS 4] Fetch  completed (0.001 + 0.000 secs).\r\n");
	/* normalised: the names' case does not matter; a longer tag */
	expect_reply(pf, "client-tag-0042 fetch 1:* (uid Flags)\r\n", MACRO_CLAIM_EXACT, "client-tag-0042", 4,
	             SEQ_ALL "client-tag-0042 OK [X-STATS 4] Fetch  completed (0.001 + 0.000 secs).\r\n");
	/* a reply can be built again: the capture is not consumed */
	expect_reply(pf, "x FETCH 1:* (UID FLAGS)\r\n", MACRO_CLAIM_EXACT, "x", 4,
	             SEQ_ALL "x OK [X-STATS 4] Fetch  completed (0.001 + 0.000 secs).\r\n");
	prefetch_free(pf);

	/* a non-FETCH command: all its responses */
	pf = pf_from("LIST \"\" \"*\"", "* LIST (\\HasNoChildren) \"/\" INBOX\r\n"
	                                 "* LIST (\\HasNoChildren \\Sent) \"/\" {4}\r\nSent\r\n"
	                                 "L1 OK List completed (0.001 + 0.000 secs).\r\n");
	expect_reply(pf, "8 LIST \"\" \"*\"\r\n", MACRO_CLAIM_EXACT, "8", 0,
	             "* LIST (\\HasNoChildren) \"/\" INBOX\r\n"
	             "* LIST (\\HasNoChildren \\Sent) \"/\" {4}\r\nSent\r\n"
	             "8 OK List completed (0.001 + 0.000 secs).\r\n");
	prefetch_free(pf);
}

static void test_reply_fetch_seq(void)
{
	struct prefetch *pf = pf_from("FETCH 1:* (UID FLAGS)", SEQ_ALL SEQ_DONE);
	const char *done = " OK Fetch completed (0.001 + 0.000 secs).\r\n";
	char want[512];

	/* only messages 2 and 3, in order; no untagged status */
	snprintf(want, sizeof(want), "%s%s%s%s", SEQ_L2, SEQ_L3, "c7", done);
	expect_reply(pf, "c7 FETCH 2:3 (UID FLAGS)\r\n", MACRO_CLAIM_FETCH, "c7", 4, want);
	/* reversed range, and a list: the capture's order */
	snprintf(want, sizeof(want), "%s%s%s%s", SEQ_L2, SEQ_L3, "c8", done);
	expect_reply(pf, "c8 FETCH 3:2 (UID FLAGS)\r\n", MACRO_CLAIM_FETCH, "c8", 4, want);
	snprintf(want, sizeof(want), "%s%s%s%s", SEQ_L1, SEQ_L4, "c9", done);
	expect_reply(pf, "c9 FETCH 4,1 (uid flags)\r\n", MACRO_CLAIM_FETCH, "c9", 4, want);
	/* "*" in the client's set is the last message it knows */
	snprintf(want, sizeof(want), "%s%s%s%s", SEQ_L3, SEQ_L4, "d1", done);
	expect_reply(pf, "d1 FETCH 3:* (UID FLAGS)\r\n", MACRO_CLAIM_FETCH, "d1", 4, want);
	snprintf(want, sizeof(want), "%s%s%s", SEQ_L4, "d2", done);
	expect_reply(pf, "d2 FETCH * (UID FLAGS)\r\n", MACRO_CLAIM_FETCH, "d2", 4, want);
	snprintf(want, sizeof(want), "%s%s%s", SEQ_L1, "d3", done);
	expect_reply(pf, "d3 FETCH 1 (UID FLAGS)\r\n", MACRO_CLAIM_FETCH, "d3", 4, want);
	prefetch_free(pf);

	/* claim details: a FETCH claim by sequence number */
	pf = pf_from("FETCH 1:* (UID FLAGS)", SEQ_ALL SEQ_DONE);
	struct macro_claim cl;
	CU_ASSERT_EQUAL(claim(pf, "c7 FETCH 2:3 (UID FLAGS)\r\n", &cl), MACRO_CLAIM_FETCH);
	CU_ASSERT_FALSE(cl.uid);
	macro_claim_free(&cl);
	prefetch_free(pf);
}

static void test_reply_fetch_uid(void)
{
	const char *l1 = "* 1 FETCH (UID 3 FLAGS ())\r\n";
	const char *l2 = "* 2 FETCH (FLAGS (\\Seen) UID 5)\r\n";
	const char *l3 = "* 3 FETCH (UID 9 FLAGS (\\Answered))\r\n";
	const char *l4 = "* 4 FETCH (UID 12 FLAGS ())\r\n";
	char resp[512], want[512];

	snprintf(resp, sizeof(resp), "%s%s%s%s%s", l1, l2, l3, l4, "U1 OK Fetch completed.\r\n");
	struct prefetch *pf = pf_from("UID FETCH 1:* (FLAGS)", resp);
	CU_ASSERT_TRUE(prefetch_usable(pf));

	struct macro_claim cl;
	CU_ASSERT_EQUAL(claim(pf, "c1 UID FETCH 5:* (FLAGS)\r\n", &cl), MACRO_CLAIM_FETCH);
	CU_ASSERT_TRUE(cl.uid);
	macro_claim_free(&cl);

	/* only UIDs >= 5, whatever the client's message count */
	static const uint32_t counts[] = {0, 1, 4, 5, 1000};
	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		snprintf(want, sizeof(want), "%s%s%s%s", l2, l3, l4, "c1 OK Fetch completed.\r\n");
		expect_reply(pf, "c1 UID FETCH 5:* (FLAGS)\r\n", MACRO_CLAIM_FETCH, "c1", counts[i], want);
	}
	/* 4:* starts at the next existing UID, 6:* skips UID 5 */
	snprintf(want, sizeof(want), "%s%s%s%s", l2, l3, l4, "c2 OK Fetch completed.\r\n");
	expect_reply(pf, "c2 uid fetch 4:* (flags)\r\n", MACRO_CLAIM_FETCH, "c2", 4, want);
	snprintf(want, sizeof(want), "%s%s%s", l3, l4, "c3 OK Fetch completed.\r\n");
	expect_reply(pf, "c3 UID FETCH 6:* (FLAGS)\r\n", MACRO_CLAIM_FETCH, "c3", 4, want);
	/* "*" alone is the largest UID */
	snprintf(want, sizeof(want), "%s%s", l4, "c4 OK Fetch completed.\r\n");
	expect_reply(pf, "c4 UID FETCH * (FLAGS)\r\n", MACRO_CLAIM_FETCH, "c4", 4, want);
	/* explicit UIDs, one of them (4) not existing */
	snprintf(want, sizeof(want), "%s%s%s", l1, l3, "c6 OK Fetch completed.\r\n");
	expect_reply(pf, "c6 UID FETCH 3:4,9 (FLAGS)\r\n", MACRO_CLAIM_FETCH, "c6", 4, want);
	prefetch_free(pf);
}

static void test_reply_not_covered(void)
{
	/* 3 messages captured for 1:*, the client knows 5 and asks for 1:5 */
	struct prefetch *pf = pf_from("FETCH 1:* (UID FLAGS)", SEQ_L1 SEQ_L2 SEQ_L3 SEQ_DONE);
	CU_ASSERT_TRUE(prefetch_usable(pf));
	expect_reply(pf, "c1 FETCH 1:5 (UID FLAGS)\r\n", MACRO_CLAIM_FETCH, "c1", 5, NULL);
	expect_reply(pf, "c2 FETCH 1:* (UID FLAGS)\r\n", MACRO_CLAIM_EXACT, "c2", 3,
	             SEQ_L1 SEQ_L2 SEQ_L3 "c2 OK Fetch completed (0.001 + 0.000 secs).\r\n");
	prefetch_free(pf);

	/* an explicit prefetch set 1:3: "2:*" is covered only while * is 3 */
	pf = pf_from("FETCH 1:3 (UID FLAGS)", SEQ_L1 SEQ_L2 SEQ_L3 SEQ_DONE);
	expect_reply(pf, "c3 FETCH 2:* (UID FLAGS)\r\n", MACRO_CLAIM_FETCH, "c3", 5, NULL);
	expect_reply(pf, "c4 FETCH 2:* (UID FLAGS)\r\n", MACRO_CLAIM_FETCH, "c4", 4, NULL);
	expect_reply(pf, "c5 FETCH * (UID FLAGS)\r\n", MACRO_CLAIM_FETCH, "c5", 4, NULL);
	expect_reply(pf, "c6 FETCH 2:* (UID FLAGS)\r\n", MACRO_CLAIM_FETCH, "c6", 3,
	             SEQ_L2 SEQ_L3 "c6 OK Fetch completed (0.001 + 0.000 secs).\r\n");
	/* a set outside the prefetch's without "*" is no claim at all */
	expect_reply(pf, "c7 FETCH 2:4 (UID FLAGS)\r\n", MACRO_CLAIM_NONE, "c7", 4, NULL);
	prefetch_free(pf);

	/* UID FETCH: the prefetch's UIDs 3:9, the client wants 2 as well */
	pf = pf_from("UID FETCH 3:9 (FLAGS)", "* 1 FETCH (UID 3 FLAGS ())\r\n"
	                                      "* 2 FETCH (UID 9 FLAGS ())\r\n"
	                                      "u OK done\r\n");
	expect_reply(pf, "c8 UID FETCH 2:* (FLAGS)\r\n", MACRO_CLAIM_FETCH, "c8", 2, NULL);
	expect_reply(pf, "c9 UID FETCH 3:9 (FLAGS)\r\n", MACRO_CLAIM_EXACT, "c9", 2,
	             "* 1 FETCH (UID 3 FLAGS ())\r\n* 2 FETCH (UID 9 FLAGS ())\r\nc9 OK done\r\n");
	prefetch_free(pf);
}

static void test_reply_seq_count_mismatch(void)
{
	struct prefetch *pf = pf_from("FETCH 1:* (UID FLAGS)", SEQ_ALL SEQ_DONE);

	/* the prefetch's "*" was 4: with another count the numbers moved */
	expect_reply(pf, "c1 FETCH 2:3 (UID FLAGS)\r\n", MACRO_CLAIM_FETCH, "c1", 5, NULL);
	expect_reply(pf, "c2 FETCH 2:3 (UID FLAGS)\r\n", MACRO_CLAIM_FETCH, "c2", 3, NULL);
	expect_reply(pf, "c3 FETCH 1 (UID FLAGS)\r\n", MACRO_CLAIM_FETCH, "c3", 0, NULL);
	expect_reply(pf, "c4 FETCH 3:* (UID FLAGS)\r\n", MACRO_CLAIM_FETCH, "c4", 5, NULL);
	/* the same requests with the count the prefetch saw are answered */
	expect_reply(pf, "c5 FETCH 2:3 (UID FLAGS)\r\n", MACRO_CLAIM_FETCH, "c5", 4,
	             SEQ_L2 SEQ_L3 "c5 OK Fetch completed (0.001 + 0.000 secs).\r\n");
	prefetch_free(pf);

	/* the count is the prefetch's own: 3 messages, the client knows 4 */
	pf = pf_from("FETCH 1:* (UID FLAGS)", SEQ_L1 SEQ_L2 SEQ_L3 SEQ_DONE);
	expect_reply(pf, "c6 FETCH 2:3 (UID FLAGS)\r\n", MACRO_CLAIM_FETCH, "c6", 4, NULL);
	expect_reply(pf, "c7 FETCH 2:3 (UID FLAGS)\r\n", MACRO_CLAIM_FETCH, "c7", 3,
	             SEQ_L2 SEQ_L3 "c7 OK Fetch completed (0.001 + 0.000 secs).\r\n");
	prefetch_free(pf);
}

/* ---- size limit --------------------------------------------------------- */

static void test_max_bytes(void)
{
	const char *small = "* 1 FETCH (UID 1 BODY[] {5}\r\nhello)\r\n";
	struct prefetch *pf = pf_from("FETCH 1:* (UID BODY.PEEK[])", small);
	size_t blen;
	char *big;

	CU_ASSERT_EQUAL(prefetch_bytes(pf), strlen(small));
	/* up to the limit exactly is fine */
	big = fetch_of_size(2, PREFETCH_MAX_BYTES - strlen(small), &blen);
	CU_ASSERT_EQUAL(feed_n(pf, big, blen), 0);
	free(big);
	CU_ASSERT_EQUAL(prefetch_bytes(pf), PREFETCH_MAX_BYTES);
	/* one more message is past it: refused and the capture dropped */
	const char *empty = "* 3 FETCH (UID 3 BODY[] {0}\r\n)\r\n";
	CU_ASSERT_EQUAL(feed_n(pf, empty, strlen(empty)), 1);
	CU_ASSERT_EQUAL(prefetch_bytes(pf), 0);
	/* and it stays dropped, even for a small message */
	const char *tiny = "* 4 FETCH (UID 4)\r\n";
	CU_ASSERT_EQUAL(feed_n(pf, tiny, strlen(tiny)), 1);
	CU_ASSERT_EQUAL(prefetch_bytes(pf), 0);
	CU_ASSERT_FALSE(prefetch_finished(pf));
	feed(pf, "pf1 OK Fetch completed.\r\n");
	CU_ASSERT_TRUE(prefetch_finished(pf));
	CU_ASSERT_FALSE(prefetch_usable(pf));
	expect_reply(pf, "c1 FETCH 1:* (UID BODY.PEEK[])\r\n", MACRO_CLAIM_EXACT, "c1", 4, NULL);
	expect_reply(pf, "c2 FETCH 1 (UID BODY.PEEK[])\r\n", MACRO_CLAIM_FETCH, "c2", 4, NULL);
	prefetch_free(pf);

	/* one message over the limit on its own */
	pf = prefetch_new("FETCH 1:* (UID BODY.PEEK[])");
	big = fetch_of_size(1, PREFETCH_MAX_BYTES + 1, &blen);
	CU_ASSERT_EQUAL(feed_n(pf, big, blen), 1);
	free(big);
	CU_ASSERT_EQUAL(prefetch_bytes(pf), 0);
	CU_ASSERT_EQUAL(feed_n(pf, small, strlen(small)), 1);
	feed(pf, "pf1 OK Fetch completed.\r\n");
	CU_ASSERT_FALSE(prefetch_usable(pf));
	expect_reply(pf, "c3 FETCH 1:* (UID BODY.PEEK[])\r\n", MACRO_CLAIM_EXACT, "c3", 1, NULL);
	prefetch_free(pf);

	/* the control: the same message at the limit is kept and replayed */
	pf = prefetch_new("FETCH 1:* (UID BODY.PEEK[])");
	big = fetch_of_size(1, PREFETCH_MAX_BYTES, &blen);
	CU_ASSERT_EQUAL(feed_n(pf, big, blen), 0);
	feed(pf, "pf1 OK Fetch completed.\r\n");
	CU_ASSERT_TRUE(prefetch_usable(pf));
	struct macro_claim cl;
	struct buf out;
	CU_ASSERT_EQUAL(claim(pf, "c4 FETCH 1 (UID BODY.PEEK[])\r\n", &cl), MACRO_CLAIM_FETCH);
	buf_init(&out, 0);
	CU_ASSERT_TRUE(prefetch_reply(pf, &cl, "c4", 1, &out));
	CU_ASSERT_EQUAL(buf_len(&out), blen + strlen("c4 OK Fetch completed.\r\n"));
	CU_ASSERT(buf_len(&out) >= blen && memcmp(buf_head(&out), big, blen) == 0);
	buf_free(&out);
	macro_claim_free(&cl);
	free(big);
	prefetch_free(pf);
}

/* ---- regressions: answers that left messages out -------------------------- */

/*
 * A UID FETCH claim with "*" in the client's set against a prefetch
 * whose UID set has no "*". prefetch_reply takes want_max = pf->max_uid, the
 * largest UID the prefetch happened to capture, as the mailbox's largest
 * UID. But the prefetch "UID FETCH 1:10" cannot know the mailbox's largest
 * UID: here the client knows 4 messages and the 4th has UID 12. The server
 * answers "UID FETCH 5:*" with UIDs 5, 9 and 12, and "UID FETCH *" with
 * UID 12; the prefetch answers 5 and 9, and 9. prefetch.h: "Returns false
 * ... when the capture cannot answer exactly".
 */
static void test_uid_star_explicit_prefetch(void)
{
	struct prefetch *pf = pf_from("UID FETCH 1:10 (FLAGS)", "* 1 FETCH (UID 3 FLAGS ())\r\n"
	                                                       "* 2 FETCH (UID 5 FLAGS ())\r\n"
	                                                       "* 3 FETCH (UID 9 FLAGS ())\r\n"
	                                                       "U1 OK Fetch completed.\r\n");
	CU_ASSERT_TRUE(prefetch_usable(pf));
	expect_reply(pf, "c1 UID FETCH 5:* (FLAGS)\r\n", MACRO_CLAIM_FETCH, "c1", 4, NULL);
	expect_reply(pf, "c2 UID FETCH * (FLAGS)\r\n", MACRO_CLAIM_FETCH, "c2", 4, NULL);
	prefetch_free(pf);
}

/*
 * An EXACT claim of a sequence-number FETCH with "*" ignores
 * seq_count. The prefetch "FETCH 1:* (UID FLAGS)" ran with 3 messages; the
 * client has since heard "* 5 EXISTS" (seq_count 5) and sends the
 * identical command, whose "*" is now 5. The reply replays messages 1-3
 * only, silently leaving out 4 and 5. The FETCH path refuses exactly this
 * ("its '*' stood for another message count"); the EXACT path does not.
 */
static void test_exact_star_seq_count(void)
{
	struct prefetch *pf = pf_from("FETCH 1:* (UID FLAGS)", SEQ_L1 SEQ_L2 SEQ_L3 SEQ_DONE);
	CU_ASSERT_TRUE(prefetch_usable(pf));
	expect_reply(pf, "c1 FETCH 1:* (UID FLAGS)\r\n", MACRO_CLAIM_EXACT, "c1", 5, NULL);
	prefetch_free(pf);
}

void suite_prefetch(void)
{
	ADD_SUITE("prefetch",
	          {"capture FETCH responses with literals", test_capture_literals},
	          {"capture: UID items, literal text ignored", test_capture_uid_items},
	          {"finish with OK", test_finish_ok},
	          {"finish with NO/BAD: never replies", test_finish_no},
	          {"usable only when finished with OK", test_usable},
	          {"reply: EXACT claim, tag replaced", test_reply_exact},
	          {"reply: FETCH claim by sequence number", test_reply_fetch_seq},
	          {"reply: FETCH claim by UID", test_reply_fetch_uid},
	          {"reply: client set not covered", test_reply_not_covered},
	          {"reply: seq_count differs from a \"*\" prefetch", test_reply_seq_count_mismatch},
	          {"PREFETCH_MAX_BYTES", test_max_bytes},
	          {"UID \"*\" claim on an explicit UID prefetch is refused", test_uid_star_explicit_prefetch},
	          {"EXACT \"*\" FETCH with another message count is refused", test_exact_star_seq_count});
}
