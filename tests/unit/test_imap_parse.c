/*
 * Unit tests for imap_parse.c.
 *
 * Table-driven: each case is parsed whole, one byte at a time and in many
 * random splits, and every way must give the same result (message dump,
 * bytes consumed, error, tag); the whole-input result is then compared with
 * the expected dump. Dumps are one line of text:
 *
 *   C tag: args          command
 *   T tag STATUS [code] |text|   tagged status ([code] only if present)
 *   U STATUS [code] |text|       untagged status
 *   U: args              untagged data
 *   + |text|             continuation
 *   R |text|             raw line
 *   ERR why rec|fatal    error
 *
 * Arguments: atoms as sent, "quoted" with escapes removed, {n}data,
 * {n+}data or ~{n}data for literals, (a b) for lists. Control bytes are
 * written as \xHH.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <CUnit/CUnit.h>

#include "imap_parse.h"
#include "suites.h"

#define CMD IMAP_PARSE_COMMANDS
#define RSP IMAP_PARSE_RESPONSES

/* Input with explicit length: cases contain NUL bytes. */
#define IN(s) (s), sizeof(s) - 1

/* Random splits tried per case, on top of whole and byte-at-a-time. */
#define RANDOM_SPLITS 24

static const struct imap_limits small_limits = {
	.max_line_length = 40,
	.max_literal_size = 10,
	.max_list_depth = 3,
	.max_args = 6,
};

/* --- growable string for dumps ---------------------------------------- */

struct sb {
	char  *s;
	size_t len;
	size_t cap;
};

static void sb_putn(struct sb *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 128;
		while (cap < b->len + n + 1)
			cap *= 2;
		b->s = realloc(b->s, cap);
		if (!b->s)
			abort();
		b->cap = cap;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

static void sb_puts(struct sb *b, const char *s)
{
	sb_putn(b, s, strlen(s));
}

/* Bytes with control characters written as \xHH so dumps stay one line. */
static void sb_bytes(struct sb *b, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f) {
			char hex[8];
			snprintf(hex, sizeof(hex), "\\x%02x", c);
			sb_puts(b, hex);
		} else {
			sb_putn(b, s + i, 1);
		}
	}
}

static void dump_args(struct sb *b, const struct imap_arg *args, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct imap_arg *a = &args[i];
		char hdr[48];

		if (i)
			sb_puts(b, " ");
		if (a->type == IMAP_ARG_LIST) {
			CU_ASSERT(a->list_count == 0 || a->list != NULL);
			sb_puts(b, "(");
			dump_args(b, a->list, a->list_count);
			sb_puts(b, ")");
			continue;
		}
		/* every string is NUL-terminated; only literal8 may hold NULs */
		CU_ASSERT_FATAL(a->str != NULL);
		CU_ASSERT(a->str[a->len] == '\0');
		if (a->type != IMAP_ARG_LITERAL || a->lit_kind != IMAP_LITERAL_BINARY)
			CU_ASSERT(strlen(a->str) == a->len);
		switch (a->type) {
		case IMAP_ARG_ATOM:
			sb_bytes(b, a->str, a->len);
			break;
		case IMAP_ARG_QUOTED:
			sb_puts(b, "\"");
			sb_bytes(b, a->str, a->len);
			sb_puts(b, "\"");
			break;
		case IMAP_ARG_LITERAL:
			snprintf(hdr, sizeof(hdr),
			         a->lit_kind == IMAP_LITERAL_BINARY    ? "~{%zu}"
			         : a->lit_kind == IMAP_LITERAL_NONSYNC ? "{%zu+}"
			                                               : "{%zu}",
			         a->len);
			sb_puts(b, hdr);
			sb_bytes(b, a->str, a->len);
			break;
		case IMAP_ARG_LIST:
			break;
		}
	}
}

static void dump_text(struct sb *b, const struct imap_msg *m)
{
	if (m->code) {
		CU_ASSERT(m->code[m->code_len] == '\0');
		sb_puts(b, " [");
		sb_bytes(b, m->code, m->code_len);
		sb_puts(b, "]");
	}
	CU_ASSERT_FATAL(m->text != NULL);
	CU_ASSERT(m->text[m->text_len] == '\0');
	sb_puts(b, " |");
	sb_bytes(b, m->text, m->text_len);
	sb_puts(b, "|");
}

static void dump_msg(struct sb *b, const struct imap_msg *m)
{
	switch (m->kind) {
	case IMAP_MSG_COMMAND:
		CU_ASSERT_FATAL(m->tag != NULL);
		CU_ASSERT(m->status == IMAP_STATUS_NONE && m->text == NULL && m->code == NULL);
		sb_puts(b, "C ");
		sb_puts(b, m->tag);
		sb_puts(b, ": ");
		dump_args(b, m->args, m->nargs);
		break;
	case IMAP_MSG_TAGGED:
		CU_ASSERT_FATAL(m->tag != NULL);
		CU_ASSERT(m->nargs == 0);
		sb_puts(b, "T ");
		sb_puts(b, m->tag);
		sb_puts(b, " ");
		sb_puts(b, imap_status_name(m->status));
		dump_text(b, m);
		break;
	case IMAP_MSG_UNTAGGED:
		CU_ASSERT(m->tag == NULL);
		if (m->status != IMAP_STATUS_NONE) {
			CU_ASSERT(m->nargs == 0);
			sb_puts(b, "U ");
			sb_puts(b, imap_status_name(m->status));
			dump_text(b, m);
		} else {
			CU_ASSERT(m->text == NULL && m->nargs > 0);
			sb_puts(b, "U: ");
			dump_args(b, m->args, m->nargs);
		}
		break;
	case IMAP_MSG_CONTINUATION:
		CU_ASSERT(m->tag == NULL && m->nargs == 0 && m->code == NULL);
		sb_puts(b, "+");
		dump_text(b, m);
		break;
	case IMAP_MSG_RAW_LINE:
		CU_ASSERT(m->tag == NULL && m->nargs == 0 && m->code == NULL);
		sb_puts(b, "R");
		dump_text(b, m);
		break;
	}
}

/* --- feeding ---------------------------------------------------------- */

/* What one parse produced, in comparable form. */
struct outcome {
	enum imap_parse_result res;
	size_t                 consumed; /* total over all feeds */
	char                  *dump;     /* message dump, "ERR ..." or "NEED_MORE" */
	char                  *tag;      /* imap_parser_tag() at the end, or NULL */
};

static void outcome_free(struct outcome *o)
{
	free(o->dump);
	free(o->tag);
	memset(o, 0, sizeof(*o));
}

static uint32_t rng_next(uint32_t *state)
{
	*state = *state * 1103515245u + 12345u;
	return *state >> 8;
}

/*
 * Feed in[0..len) to p in chunks until DONE or ERROR or the input runs out.
 * split 0: one piece; 1: one byte at a time; else: random chunk sizes seeded
 * by split. Checks the per-feed contract (NEED_MORE consumes everything,
 * raw is exactly the consumed input) and records the outcome.
 */
static void feed_split(struct imap_parser *p, const char *in, size_t len, unsigned split, struct outcome *o)
{
	const uint8_t *data = (const uint8_t *)in;
	uint32_t rng = split;
	size_t pos = 0, maxchunk = len / 3 + 2;
	enum imap_parse_result r = IMAP_PARSE_NEED_MORE;
	struct sb b = {0};

	memset(o, 0, sizeof(*o));
	do {
		size_t n = split == 0 ? len - pos : split == 1 ? 1 : 1 + rng_next(&rng) % maxchunk;
		size_t used = 0;

		if (n > len - pos)
			n = len - pos;
		r = imap_parser_feed(p, data + pos, n, &used);
		CU_ASSERT(used <= n);
		if (r == IMAP_PARSE_NEED_MORE)
			CU_ASSERT(used == n);
		pos += used;
	} while (r == IMAP_PARSE_NEED_MORE && pos < len);

	o->res = r;
	o->consumed = pos;
	if (r == IMAP_PARSE_DONE) {
		const struct imap_msg *m = imap_parser_msg(p);
		CU_ASSERT_FATAL(m != NULL);
		if (m->raw_len) {
			/* a skipped line has no raw bytes; anything else is verbatim */
			CU_ASSERT(m->raw_len == pos);
			CU_ASSERT(memcmp(m->raw, data, pos) == 0);
		}
		CU_ASSERT(imap_parser_error(p) == NULL);
		dump_msg(&b, m);
	} else if (r == IMAP_PARSE_ERROR) {
		CU_ASSERT(imap_parser_msg(p) == NULL);
		CU_ASSERT_FATAL(imap_parser_error(p) != NULL);
		sb_puts(&b, "ERR ");
		sb_puts(&b, imap_parser_error(p));
		sb_puts(&b, imap_parser_error_recoverable(p) ? " rec" : " fatal");
	} else {
		CU_ASSERT(imap_parser_msg(p) == NULL);
		sb_puts(&b, "NEED_MORE");
	}
	o->dump = b.s ? b.s : strdup("");
	o->tag = imap_parser_tag(p) ? strdup(imap_parser_tag(p)) : NULL;
}

static bool outcome_eq(const struct outcome *a, const struct outcome *b)
{
	if (a->res != b->res || a->consumed != b->consumed || strcmp(a->dump, b->dump) != 0)
		return false;
	if (!a->tag || !b->tag)
		return a->tag == b->tag;
	return strcmp(a->tag, b->tag) == 0;
}

/*
 * Parse one message every way (whole, bytewise, random splits) with a fresh
 * parser each time, assert they agree, and return the whole-input outcome.
 * raw_line: call imap_parser_expect_raw_line() first.
 */
static struct outcome parse_every_way(enum imap_parser_mode mode, const struct imap_limits *lim,
                                      bool raw_line, const char *in, size_t len)
{
	struct outcome first = {0}, o;

	for (unsigned split = 0; split < 2 + RANDOM_SPLITS; split++) {
		struct imap_parser *p = imap_parser_new(mode, lim);
		CU_ASSERT_FATAL(p != NULL);
		if (raw_line)
			imap_parser_expect_raw_line(p);
		feed_split(p, in, len, split, split ? &o : &first);
		if (split && !outcome_eq(&first, &o)) {
			CU_FAIL("split feeding differs from one-piece feeding");
			fprintf(stderr, "\n  split %u: %s (consumed %zu) vs whole: %s (consumed %zu)\n", split,
			        o.dump, o.consumed, first.dump, first.consumed);
		}
		if (split)
			outcome_free(&o);
		imap_parser_free(p);
	}
	return first;
}

struct good_case {
	enum imap_parser_mode mode;
	const char           *in;
	size_t                len;
	const char           *want;
};

struct bad_case {
	enum imap_parser_mode      mode;
	const struct imap_limits  *lim;  /* NULL: defaults */
	const char                *in;
	size_t                     len;
	const char                *want; /* "ERR why rec|fatal" */
	size_t                     at;   /* bytes consumed when the error is reported */
};

static void check_good(enum imap_parser_mode mode, const struct imap_limits *lim, bool raw_line,
                       const char *in, size_t len, size_t msg_len, const char *want)
{
	struct outcome o = parse_every_way(mode, lim, raw_line, in, len);

	CU_ASSERT(o.res == IMAP_PARSE_DONE);
	CU_ASSERT(o.consumed == msg_len);
	CU_ASSERT_STRING_EQUAL(o.dump, want);
	if (o.res != IMAP_PARSE_DONE || strcmp(o.dump, want) != 0 || o.consumed != msg_len)
		fprintf(stderr, "\n  input %.*s\n  got  %s (consumed %zu of %zu)\n  want %s\n", (int)len, in,
		        o.dump, o.consumed, msg_len, want);
	outcome_free(&o);
}

static void run_good(const struct good_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++)
		check_good(cases[i].mode, NULL, false, cases[i].in, cases[i].len, cases[i].len, cases[i].want);
}

static void check_bad(const struct bad_case *c, bool raw_line)
{
	struct outcome o = parse_every_way(c->mode, c->lim, raw_line, c->in, c->len);

	CU_ASSERT(o.res == IMAP_PARSE_ERROR);
	CU_ASSERT_STRING_EQUAL(o.dump, c->want);
	CU_ASSERT(o.consumed == c->at);
	if (strcmp(o.dump, c->want) != 0 || o.consumed != c->at)
		fprintf(stderr, "\n  input %.*s\n  got  %s at %zu\n  want %s at %zu\n", (int)c->len, c->in, o.dump,
		        o.consumed, c->want, c->at);
	outcome_free(&o);
}

/* Feed a C string in one piece and check the result. */
static bool feed_str(struct imap_parser *p, const char *s, enum imap_parse_result want)
{
	size_t used;
	enum imap_parse_result r = imap_parser_feed(p, (const uint8_t *)s, strlen(s), &used);
	return r == want && (r != IMAP_PARSE_NEED_MORE || used == strlen(s));
}

/* --- good commands ------------------------------------------------------ */

static const struct good_case commands[] = {
	{CMD, IN("a1 NOOP\r\n"), "C a1: NOOP"},
	{CMD, IN("a1 noop\n"), "C a1: noop"},
	{CMD, IN("a1 NOOP \r\n"), "C a1: NOOP"},
	{CMD, IN("b8  LIST  \"\"   *\r\n"), "C b8: LIST \"\" *"},
	{CMD, IN("a2 LOGIN \"joe\" \"pa\\\"ss\\\\wd\"\r\n"), "C a2: LOGIN \"joe\" \"pa\"ss\\wd\""},
	/* lenient: a backslash before another byte is kept */
	{CMD, IN("a3 SELECT \"a\\b\"\r\n"), "C a3: SELECT \"a\\b\""},
	{CMD, IN("a3 LOGIN \"\" \"(x) {3}\"\r\n"), "C a3: LOGIN \"\" \"(x) {3}\""},
	{CMD, IN("a4 LOGIN {3}\r\njoe {6}\r\nsecret\r\n"), "C a4: LOGIN {3}joe {6}secret"},
	{CMD, IN("a5 LOGIN {3+}\r\njoe {6+}\r\nsecret\r\n"), "C a5: LOGIN {3+}joe {6+}secret"},
	{CMD, IN("a6 APPEND INBOX ~{5}\r\nhe\0lo\r\n"), "C a6: APPEND INBOX ~{5}he\\x00lo"},
	{CMD, IN("a6 APPEND INBOX ~{3+}\r\n\0\r\n\r\n"), "C a6: APPEND INBOX ~{3}\\x00\\x0d\\x0a"},
	{CMD, IN("a7 LOGIN {0}\r\n {0+}\r\n\r\n"), "C a7: LOGIN {0} {0+}"},
	{CMD, IN("a7 X {4}\r\n\r\n\r\n\r\n"), "C a7: X {4}\\x0d\\x0a\\x0d\\x0a"},
	{CMD, IN("a8 X (a (b (c)) () d)\r\n"), "C a8: X (a (b (c)) () d)"},
	{CMD, IN("c6 X ((a)(b))\r\n"), "C c6: X ((a) (b))"},
	{CMD, IN("a9 UID FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.100>)\r\n"),
	 "C a9: UID FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.100>)"},
	{CMD, IN("b1 FETCH 1 BODY[HEADER.FIELDS (A B)]<0.10>\r\n"), "C b1: FETCH 1 BODY[HEADER.FIELDS (A B)]<0.10>"},
	{CMD, IN("b2 FETCH 1 (BODY[HEADER.FIELDS (\"X]Y\" Z)] BODY[1.2.MIME])\r\n"),
	 "C b2: FETCH 1 (BODY[HEADER.FIELDS (\"X]Y\" Z)] BODY[1.2.MIME])"},
	{CMD, IN("b3 APPEND \"Sent Items\" (\\Seen \\Draft) \"07-Feb-1994 21:52:25 -0800\" {11}\r\nHello World\r\n"),
	 "C b3: APPEND \"Sent Items\" (\\Seen \\Draft) \"07-Feb-1994 21:52:25 -0800\" {11}Hello World"},
	/* MULTIAPPEND and CATENATE: literals inside a list, line continues after them */
	{CMD, IN("b4 APPEND INBOX {2+}\r\nhi CATENATE (URL \"/INBOX;UID=1\" TEXT {3+}\r\nyo!)\r\n"),
	 "C b4: APPEND INBOX {2+}hi CATENATE (URL \"/INBOX;UID=1\" TEXT {3+}yo!)"},
	{CMD, IN("b5 SEARCH OR (FROM \"x\" SUBJECT y) NOT (SEEN) SINCE 1-Feb-1994 UID 1:4,7\r\n"),
	 "C b5: SEARCH OR (FROM \"x\" SUBJECT y) NOT (SEEN) SINCE 1-Feb-1994 UID 1:4,7"},
	{CMD, IN("b6 AUTHENTICATE PLAIN AGpvZQBzZWNyZXQ=\r\n"), "C b6: AUTHENTICATE PLAIN AGpvZQBzZWNyZXQ="},
	{CMD, IN("b7 SELECT Entw\xc3\xbc" "rfe\r\n"), "C b7: SELECT Entw\xc3\xbc" "rfe"},
	{CMD, IN("b9 X ({3}\r\nabc def)\r\n"), "C b9: X ({3}abc def)"},
	/* "{" is special only at the start of a token */
	{CMD, IN("c2 SELECT foo{5}x a{b} c{1+\r\n"), "C c2: SELECT foo{5}x a{b} c{1+"},
	{CMD, IN("c3 X ~ ~a ~[b c]\r\n"), "C c3: X ~ ~a ~[b c]"},
	{CMD, IN("c4 SELECT [Gmail]/Sent\r\n"), "C c4: SELECT [Gmail]/Sent"},
	/* an unclosed section ends with the line */
	{CMD, IN("c5 SELECT foo[bar baz\r\n"), "C c5: SELECT foo[bar baz"},
	{CMD, IN("c6 FETCH 1 BODY[x[y]z (\"a\\\"]\")]<1>\r\n"), "C c6: FETCH 1 BODY[x[y]z (\"a\\\"]\")]<1>"},
	{CMD, IN("c7 ID (\"name\" \"x\" \"version\" NIL)\r\n"), "C c7: ID (\"name\" \"x\" \"version\" NIL)"},
	{CMD, IN("A*]% STORE 1 +FLAGS.SILENT (\\Deleted)\r\n"), "C A*]%: STORE 1 +FLAGS.SILENT (\\Deleted)"},
	{CMD, IN("c8 X \"a\"(b)\r\n"), "C c8: X \"a\" (b)"},
	{CMD, IN("c9 X a(b) c\r\n"), "C c9: X a (b) c"},
	{CMD, IN("d1 IDLE\r\n"), "C d1: IDLE"},
};

static void test_commands(void)
{
	run_good(commands, sizeof(commands) / sizeof(commands[0]));
}

/* --- good responses ------------------------------------------------------ */

static const struct good_case responses[] = {
	{RSP, IN("* 3 EXISTS\r\n"), "U: 3 EXISTS"},
	{RSP, IN("* SEARCH\r\n"), "U: SEARCH"},
	{RSP, IN("* 1 FETCH (UID 1 BODY[] {5}\r\nhello)\r\n"), "U: 1 FETCH (UID 1 BODY[] {5}hello)"},
	{RSP, IN("* 12 FETCH (BODY[HEADER.FIELDS (FROM)] {4}\r\nab\r\n)\r\n"),
	 "U: 12 FETCH (BODY[HEADER.FIELDS (FROM)] {4}ab\\x0d\\x0a)"},
	{RSP, IN("* 12 FETCH (FLAGS (\\Seen) INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" RFC822.SIZE 4286 "
	       "ENVELOPE (\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" \"IMAP4rev1 WG mtg summary and minutes\" "
	       "((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) NIL NIL "
	       "((NIL NIL \"imap\" \"cac.washington.edu\")) NIL NIL NIL \"<B27397-0100000@cac.washington.edu>\") "
	       "BODY (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 3028 92))\r\n"),
	 "U: 12 FETCH (FLAGS (\\Seen) INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" RFC822.SIZE 4286 "
	 "ENVELOPE (\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" \"IMAP4rev1 WG mtg summary and minutes\" "
	 "((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) NIL NIL "
	 "((NIL NIL \"imap\" \"cac.washington.edu\")) NIL NIL NIL \"<B27397-0100000@cac.washington.edu>\") "
	 "BODY (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 3028 92))"},
	/* multipart BODYSTRUCTURE: parts follow each other as ")(" */
	{RSP, IN("* 2 FETCH (UID 9 BODYSTRUCTURE ((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 1152 23)"
	       "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\" \"NAME\" \"cc.diff\") "
	       "\"<960723163407.20117h@cac.washington.edu>\" \"Compiler diff\" \"BASE64\" 4554 73) \"MIXED\") "
	       "BODY[TEXT] {3}\r\nabc)\r\n"),
	 "U: 2 FETCH (UID 9 BODYSTRUCTURE ((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 1152 23) "
	 "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\" \"NAME\" \"cc.diff\") "
	 "\"<960723163407.20117h@cac.washington.edu>\" \"Compiler diff\" \"BASE64\" 4554 73) \"MIXED\") "
	 "BODY[TEXT] {3}abc)"},
	{RSP, IN("* LIST (\\HasNoChildren) \"/\" INBOX\r\n"), "U: LIST (\\HasNoChildren) \"/\" INBOX"},
	{RSP, IN("* LIST (\\Noselect) \"/\" foo[bar\r\n"), "U: LIST (\\Noselect) \"/\" foo[bar"},
	{RSP, IN("* LIST () \"/\" {7}\r\nfoo bar\r\n"), "U: LIST () \"/\" {7}foo bar"},
	{RSP, IN("* STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292)\r\n"),
	 "U: STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292)"},
	{RSP, IN("* CAPABILITY IMAP4rev1 STARTTLS AUTH=GSSAPI LOGINDISABLED LITERAL+\r\n"),
	 "U: CAPABILITY IMAP4rev1 STARTTLS AUTH=GSSAPI LOGINDISABLED LITERAL+"},
	{RSP, IN("* ID NIL\r\n"), "U: ID NIL"},
	{RSP, IN("* ESEARCH (TAG \"a\") ALL 1:3\r\n"), "U: ESEARCH (TAG \"a\") ALL 1:3"},
	{RSP, IN("* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n"), "U: NAMESPACE ((\"\" \"/\")) NIL NIL"},
	{RSP, IN("* XZIP ~{3}\r\na\0c\r\n"), "U: XZIP ~{3}a\\x00c"},
	{RSP, IN("* {3}\r\nabc\r\n"), "U: {3}abc"},
	{RSP, IN("* ~{3}\r\nabc\r\n"), "U: ~{3}abc"},
	{RSP, IN("* ~OK\r\n"), "U: ~OK"},
	{RSP, IN("a1 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n"), "T a1 OK [CAPABILITY IMAP4rev1 IDLE] |Logged in|"},
	{RSP, IN("a2 NO [TRYCREATE] no such mailbox \"x\r\n"), "T a2 NO [TRYCREATE] |no such mailbox \"x|"},
	{RSP, IN("a3 bad oops\r\n"), "T a3 BAD |oops|"},
	{RSP, IN("a4 OK\r\n"), "T a4 OK ||"},
	{RSP, IN("a5  Ok  done {5}\r\n"), "T a5 OK |done {5}|"},
	{RSP, IN("* OK [PERMANENTFLAGS (\\Answered \\*)] Flags permitted.\r\n"),
	 "U OK [PERMANENTFLAGS (\\Answered \\*)] |Flags permitted.|"},
	{RSP, IN("* BYE text with {5}\r\n"), "U BYE |text with {5}|"},
	{RSP, IN("* ok\r\n"), "U OK ||"},
	{RSP, IN("* NO  two  spaces\n"), "U NO |two  spaces|"},
	{RSP, IN("* PREAUTH [CAPABILITY IMAP4rev1] ready\r\n"), "U PREAUTH [CAPABILITY IMAP4rev1] |ready|"},
	{RSP, IN("* OK [ALERT]\r\n"), "U OK [ALERT] ||"},
	{RSP, IN("* OK [HIGHESTMODSEQ 7]  x\r\n"), "U OK [HIGHESTMODSEQ 7] | x|"},
	{RSP, IN("* OK [unterminated text\r\n"), "U OK |[unterminated text|"},
	{RSP, IN("* BAD \x01\x7f\r\n"), "U BAD |\\x01\\x7f|"},
	/* no SP after the status word: not a status response */
	{RSP, IN("* OK[ALERT] hi\r\n"), "U: OK[ALERT] hi"},
	{RSP, IN("+\r\n"), "+ ||"},
	{RSP, IN("+ \r\n"), "+ ||"},
	{RSP, IN("+ idling\r\n"), "+ |idling|"},
	{RSP, IN("+ Ready for {5} \"literal\"\r\n"), "+ |Ready for {5} \"literal\"|"},
	{RSP, IN("+YmFzZTY0\r\n"), "+ |YmFzZTY0|"},
};

static void test_responses(void)
{
	run_good(responses, sizeof(responses) / sizeof(responses[0]));
}

/* --- errors -------------------------------------------------------------- */

static const struct imap_limits line10 = {10, 100, 5, 100};

static const struct bad_case bad[] = {
	/* line too long: refused at the first byte over, without waiting for CRLF */
	{CMD, &line10, IN("a1 NOOP xxxxxxxxxxxxxxxxxxxxxxxx"), "ERR line too long fatal", 10},
	{CMD, &line10, IN("a1 NOOP xxx\r\n"), "ERR line too long fatal", 10},
	{CMD, &line10, IN("a1 X {3}\r\nabc xx\r\n"), "ERR line too long fatal", 15},
	{RSP, &line10, IN("* OK 45678901\r\n"), "ERR line too long fatal", 10},
	/* literal too large: sync is recoverable, the peer waits for "+" */
	{CMD, &small_limits, IN("a1 APPEND INBOX {11}\r\n"), "ERR literal too large rec", 19},
	{CMD, &small_limits, IN("a1 APPEND INBOX {11+}\r\n"), "ERR literal too large fatal", 20},
	{CMD, &small_limits, IN("a1 APPEND INBOX ~{11}\r\n"), "ERR literal too large rec", 20},
	{CMD, &small_limits, IN("a1 APPEND INBOX ~{11+}\r\n"), "ERR literal too large fatal", 21},
	{CMD, NULL, IN("a1 X {99999999999999999999999999}\r\n"), "ERR literal too large rec", 32},
	{RSP, &small_limits, IN("* 1 FETCH (BODY[] {11}\r\n"), "ERR literal too large fatal", 21},
	{CMD, NULL, IN("a1 NO\0OP\r\n"), "ERR NUL byte rec", 5},
	{CMD, NULL, IN("a1 LOGIN \"a\0\"\r\n"), "ERR NUL byte rec", 11},
	{CMD, NULL, IN("a1 X {3}\r\na\0c\r\n"), "ERR NUL byte fatal", 11},
	{RSP, NULL, IN("* OK hi\0\r\n"), "ERR NUL byte rec", 7},
	{CMD, NULL, IN("a1 NOOP\rX\r\n"), "ERR CR without LF rec", 8},
	{CMD, NULL, IN("a1 X \"a\rb\"\r\n"), "ERR CR without LF rec", 8},
	{RSP, NULL, IN("+ a\r\r\n"), "ERR CR without LF rec", 4},
	{CMD, NULL, IN("a1 X (a))\r\n"), "ERR unexpected ')' rec", 8},
	{CMD, NULL, IN("a1 X )\r\n"), "ERR unexpected ')' rec", 5},
	{CMD, NULL, IN("a1 X ((a)\r\n"), "ERR missing ')' rec", 10},
	{RSP, NULL, IN("* 1 FETCH (FLAGS (\\Seen)\r\n"), "ERR missing ')' rec", 25},
	{CMD, &small_limits, IN("a1 X ((((a))))\r\n"), "ERR list nesting too deep rec", 8},
	{CMD, &small_limits, IN("a1 X a b c d e f\r\n"), "ERR too many arguments rec", 15},
	{CMD, &small_limits, IN("a1 X (a (b c) d)\r\n"), "ERR too many arguments rec", 14},
	{CMD, NULL, IN(" NOOP\r\n"), "ERR missing tag rec", 0},
	{CMD, NULL, IN("\r\n"), "ERR empty line rec", 1},
	{CMD, NULL, IN("\n"), "ERR empty line rec", 0},
	{CMD, NULL, IN("a1\r\n"), "ERR missing command rec", 3},
	{CMD, NULL, IN("a1 \r\n"), "ERR missing command rec", 4},
	{CMD, NULL, IN("a\"1 NOOP\r\n"), "ERR invalid character in tag rec", 1},
	{CMD, NULL, IN("a+1 NOOP\r\n"), "ERR invalid character in tag rec", 1},
	{CMD, NULL, IN("+ NOOP\r\n"), "ERR invalid character in tag rec", 0},
	{CMD, NULL, IN("a\t1 NOOP\r\n"), "ERR invalid character in tag rec", 1},
	{CMD, NULL, IN("a1 \"NOOP\"\r\n"), "ERR invalid command name rec", 3},
	{CMD, NULL, IN("a1 {4}\r\nNOOP\r\n"), "ERR invalid command name rec", 3},
	{CMD, NULL, IN("a1 ~{4}\r\nNOOP\r\n"), "ERR invalid command name rec", 4},
	{CMD, NULL, IN("a1 (NOOP)\r\n"), "ERR invalid command name rec", 3},
	{CMD, NULL, IN("a1 LOGIN \"abc\r\n"), "ERR unterminated quoted string rec", 14},
	{CMD, NULL, IN("a1 X {abc}\r\n"), "ERR invalid literal header rec", 6},
	{CMD, NULL, IN("a1 X {}\r\n"), "ERR invalid literal header rec", 6},
	{CMD, NULL, IN("a1 X {+}\r\n"), "ERR invalid literal header rec", 6},
	{CMD, NULL, IN("a1 X {5+5}\r\n"), "ERR invalid literal header rec", 8},
	{CMD, NULL, IN("a1 X {5\r\n"), "ERR invalid literal header rec", 8},
	{CMD, NULL, IN("a1 X {5} \r\n"), "ERR missing CRLF after literal header rec", 8},
	/* a line ending in "{n}" where no literal can start: refused, not misframed */
	{CMD, NULL, IN("c2 SELECT foo{5}\r\n"), "ERR literal header inside an atom rec", 17},
	{CMD, NULL, IN("c2 SELECT ~x~{5+}\r\n"), "ERR literal header inside an atom rec", 18},
	{CMD, NULL, IN("b1 FETCH 1 BODY[HEADER.FIELDS ({4}\r\nFrom)]\r\n"), "ERR literal header inside an atom rec", 35},
	{RSP, NULL, IN("* LIST () \"/\" foo[bar {3}\r\n"), "ERR literal header inside an atom rec", 26},
	{CMD, NULL, IN("a1 X \"a\"\"b\"\r\n"), "ERR missing space between arguments rec", 8},
	{CMD, NULL, IN("a1 X (b)c\r\n"), "ERR missing space between arguments rec", 8},
	{CMD, NULL, IN("a1 X {1}\r\nab\r\n"), "ERR missing space between arguments rec", 11},
	{CMD, NULL, IN("a1 X a\tb\r\n"), "ERR invalid character rec", 6},
	{CMD, NULL, IN("a1 X \x7f\r\n"), "ERR invalid character rec", 5},
	{RSP, NULL, IN("\r\n"), "ERR empty line rec", 1},
	{RSP, NULL, IN(" OK\r\n"), "ERR missing tag rec", 0},
	{RSP, NULL, IN("a1 FOO bar\r\n"), "ERR invalid status rec", 3},
	{RSP, NULL, IN("a1 OKAY\r\n"), "ERR invalid status rec", 5},
	{RSP, NULL, IN("a1 BYE x\r\n"), "ERR invalid status rec", 4},
	{RSP, NULL, IN("a1 PREAUTH x\r\n"), "ERR invalid status rec", 3},
	{RSP, NULL, IN("a1 BA\r\n"), "ERR invalid status rec", 6},
	{RSP, NULL, IN("a1 BA x\r\n"), "ERR invalid status rec", 5},
	{RSP, NULL, IN("a\"1 OK\r\n"), "ERR invalid character in tag rec", 1},
	{RSP, NULL, IN("a1+ OK\r\n"), "ERR invalid character in tag rec", 2},
	{RSP, NULL, IN("a1\r\n"), "ERR missing status rec", 3},
	{RSP, NULL, IN("a1  \r\n"), "ERR missing status rec", 5},
	{RSP, NULL, IN("*\r\n"), "ERR empty untagged response rec", 2},
	{RSP, NULL, IN("* \r\n"), "ERR empty untagged response rec", 3},
	{RSP, NULL, IN("*x\r\n"), "ERR missing space after '*' rec", 1},
	{RSP, NULL, IN("* 1 FETCH (BODY[] {3}\r\nab\0"), "ERR NUL byte fatal", 25},
};

static void test_errors(void)
{
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		check_bad(&bad[i], false);
}

/* The tag is readable once its SP is consumed, and still after a later error. */
static void test_tag_after_error(void)
{
	struct imap_parser *p = imap_parser_new(CMD, NULL);
	size_t used;

	CU_ASSERT_FATAL(p != NULL);
	CU_ASSERT(imap_parser_feed(p, (const uint8_t *)"abc", 3, &used) == IMAP_PARSE_NEED_MORE);
	CU_ASSERT(imap_parser_tag(p) == NULL);
	CU_ASSERT(imap_parser_feed(p, (const uint8_t *)" ", 1, &used) == IMAP_PARSE_NEED_MORE);
	CU_ASSERT_STRING_EQUAL(imap_parser_tag(p), "abc");
	CU_ASSERT(imap_parser_feed(p, (const uint8_t *)"X (\r\n", 5, &used) == IMAP_PARSE_ERROR);
	CU_ASSERT_STRING_EQUAL(imap_parser_error(p), "missing ')'");
	CU_ASSERT_STRING_EQUAL(imap_parser_tag(p), "abc");
	/* feeding again without reset changes nothing */
	CU_ASSERT(imap_parser_feed(p, (const uint8_t *)"x\r\n", 3, &used) == IMAP_PARSE_ERROR);
	CU_ASSERT(used == 0);
	imap_parser_reset(p);
	CU_ASSERT(imap_parser_tag(p) == NULL);
	CU_ASSERT(imap_parser_error(p) == NULL);
	imap_parser_free(p);

	/* the same through every split, via the outcome's tag */
	struct outcome o = parse_every_way(CMD, NULL, false, IN("t9 LOGIN \"x\r\n"));
	CU_ASSERT(o.res == IMAP_PARSE_ERROR);
	CU_ASSERT(o.tag && strcmp(o.tag, "t9") == 0);
	outcome_free(&o);
	o = parse_every_way(RSP, NULL, false, IN("t8 NOPE\r\n"));
	CU_ASSERT(o.tag && strcmp(o.tag, "t8") == 0);
	outcome_free(&o);
	o = parse_every_way(RSP, NULL, false, IN("* OK x\r\n"));
	CU_ASSERT(o.tag == NULL);
	outcome_free(&o);
}

/* --- limits at the boundary --------------------------------------------- */

static void test_limits_exact(void)
{
	/* 10 bytes of line, literal payloads and CRLFs not counted */
	check_good(CMD, &line10, false, IN("a1 NOOP xx\r\n"), 12, "C a1: NOOP xx");
	check_good(CMD, &line10, false, IN("a1 X {3}\r\nabc x\r\n"), 17, "C a1: X {3}abc x");
	check_good(CMD, &small_limits, false, IN("a1 X {10}\r\n0123456789\r\n"), 23, "C a1: X {10}0123456789");
	check_good(CMD, &small_limits, false, IN("a1 X ((()))\r\n"), 13, "C a1: X ((()))");
	check_good(CMD, &small_limits, false, IN("a1 X a b c d e\r\n"), 16, "C a1: X a b c d e");
	check_good(CMD, &small_limits, false, IN("a1 X (a (b))\r\n"), 14, "C a1: X (a (b))");
	/* a status word is not an argument: no args needed */
	static const struct imap_limits noargs = {100, 100, 1, 0};
	check_good(RSP, &noargs, false, IN("* OK hi\r\n"), 9, "U OK |hi|");
	struct bad_case b = {RSP, &noargs, IN("* 1 EXISTS\r\n"), "ERR too many arguments rec", 3};
	check_bad(&b, false);
	struct bad_case b2 = {RSP, &noargs, IN("* ~{1}\r\nx\r\n"), "ERR too many arguments rec", 3};
	check_bad(&b2, false);
	/* literals that each fit must not add up past max_message_size */
	static const struct imap_limits msg30 = {100, 100, 5, 100, 30};
	check_good(CMD, &msg30, false, IN("a1 X {3}\r\nabc {3}\r\ndef\r\n"), 24, "C a1: X {3}abc {3}def");
	struct bad_case b3 = {CMD, &msg30, IN("a1 X {3}\r\nabc {30}\r\n"), "ERR message too large rec", 17};
	check_bad(&b3, false);
	struct bad_case b4 = {CMD, &msg30, IN("a1 X {3}\r\nabc {30+}\r\n"), "ERR message too large fatal", 18};
	check_bad(&b4, false);
}

/* --- several messages in one buffer ------------------------------------- */

static void test_multiple_messages(void)
{
	static const char in[] = "a1 NOOP\r\na2 LOGIN {3}\r\nabc \"x\"\r\na3 LOGOUT\n* junk";
	static const char *const want[] = {"C a1: NOOP", "C a2: LOGIN {3}abc \"x\"", "C a3: LOGOUT"};
	size_t len = sizeof(in) - 1, pos = 0;

	/* each message parsed every way, from where the previous one ended */
	for (size_t i = 0; i < 3; i++) {
		const char *end = strchr(in + pos, i == 1 ? '"' : '\n');
		size_t msg_len;

		if (i == 1)
			end = strchr(end + 1, '\n');
		msg_len = (size_t)(end - (in + pos)) + 1;
		check_good(CMD, NULL, false, in + pos, len - pos, msg_len, want[i]);
		pos += msg_len;
	}

	/* one parser, reset between messages, the caller keeping the rest */
	struct imap_parser *p = imap_parser_new(CMD, NULL);
	size_t used, total = 0;
	CU_ASSERT_FATAL(p != NULL);
	for (size_t i = 0; i < 3; i++) {
		CU_ASSERT(imap_parser_feed(p, (const uint8_t *)in + total, len - total, &used) == IMAP_PARSE_DONE);
		CU_ASSERT(imap_parser_msg(p)->raw_len == used);
		total += used;
		/* DONE again without reset: nothing more is consumed */
		CU_ASSERT(imap_parser_feed(p, (const uint8_t *)in + total, len - total, &used) == IMAP_PARSE_DONE);
		CU_ASSERT(used == 0);
		imap_parser_reset(p);
		CU_ASSERT(imap_parser_msg(p) == NULL);
	}
	CU_ASSERT(total == len - 6);
	CU_ASSERT(imap_parser_feed(p, (const uint8_t *)in + total, len - total, &used) == IMAP_PARSE_NEED_MORE);
	CU_ASSERT(used == 6);
	imap_parser_free(p);
}

/* --- skip_line recovery --------------------------------------------------- */

/*
 * Feed in until an error, skip the line, and check that the next message
 * parses; split as in feed_split(). Returns the dump of the message after the
 * skipped line.
 */
static void check_skip(enum imap_parser_mode mode, const struct imap_limits *lim, const char *in, size_t len,
                       size_t err_at, size_t skip_end, const char *want_next)
{
	for (unsigned split = 0; split < 2 + RANDOM_SPLITS; split++) {
		struct imap_parser *p = imap_parser_new(mode, lim);
		struct outcome o;

		CU_ASSERT_FATAL(p != NULL);
		feed_split(p, in, len, split, &o);
		CU_ASSERT(o.res == IMAP_PARSE_ERROR && o.consumed == err_at);
		if (o.res != IMAP_PARSE_ERROR || o.consumed != err_at)
			fprintf(stderr, "\n  input %.*s\n  got %s at %zu, want error at %zu\n", (int)len, in, o.dump,
			        o.consumed, err_at);
		CU_ASSERT(imap_parser_error_recoverable(p));
		outcome_free(&o);

		imap_parser_skip_line(p);
		feed_split(p, in + err_at, len - err_at, split, &o);
		CU_ASSERT(o.res == IMAP_PARSE_DONE);
		CU_ASSERT(err_at + o.consumed == skip_end);
		CU_ASSERT_STRING_EQUAL(o.dump, "R ||");
		CU_ASSERT(imap_parser_msg(p)->raw_len == 0);
		outcome_free(&o);

		imap_parser_reset(p);
		feed_split(p, in + skip_end, len - skip_end, split, &o);
		CU_ASSERT(o.res == IMAP_PARSE_DONE);
		CU_ASSERT(skip_end + o.consumed == len);
		CU_ASSERT_STRING_EQUAL(o.dump, want_next);
		outcome_free(&o);
		imap_parser_free(p);
	}
}

static void test_skip_line(void)
{
	check_skip(CMD, NULL, IN("a1 X (a))\r\na2 NOOP\r\n"), 8, 11, "C a2: NOOP");
	/* the error is at the LF itself: skipping ends right there */
	check_skip(CMD, NULL, IN("a1\r\na2 NOOP\r\n"), 3, 4, "C a2: NOOP");
	check_skip(CMD, NULL, IN("\na2 NOOP\r\n"), 0, 1, "C a2: NOOP");
	/* a synchronising literal over the limit: the peer sends no data */
	check_skip(CMD, &small_limits, IN("a1 APPEND INBOX {999}\r\na2 NOOP\r\n"), 20, 23, "C a2: NOOP");
	/* junk after the error, including NUL and bare CR, is skipped */
	check_skip(CMD, NULL, IN("a1 X \"x\"y \0\r\r junk\r\na2 NOOP\r\n"), 8, 20, "C a2: NOOP");
	check_skip(RSP, NULL, IN("a1 WHAT\r\n* 2 EXISTS\r\n"), 3, 9, "U: 2 EXISTS");
	/* LITERAL+ payload after a refused line is discarded, not parsed */
	check_skip(CMD, NULL, IN("a1 X \"x\"y {9+}\r\nb1 LOGOUT {0+}\r\n\r\na2 NOOP\r\n"), 8, 34, "C a2: NOOP");
	check_skip(CMD, NULL, IN("a1 X foo{9+}\r\nb1 LOGOUT\r\na2 NOOP\r\n"), 13, 25, "C a2: NOOP");
	check_skip(CMD, NULL, IN("a1 {6+}\r\nb1 X\r\n\r\na2 NOOP\r\n"), 3, 17, "C a2: NOOP");
	/* a synchronising one is not sent after our BAD */
	check_skip(CMD, NULL, IN("a1 X foo{9}\r\na2 NOOP\r\n"), 12, 13, "C a2: NOOP");
	/* a server never waits: any literal after a bad response is payload */
	check_skip(RSP, NULL, IN("* 1 FETCH (X \"a\"\"b\" {3}\r\n)\r\n) x\r\n* 2 EXISTS\r\n"), 16, 33, "U: 2 EXISTS");
	/* but "{3}" in status text is text */
	check_skip(RSP, NULL, IN("* OK a\0 {3}\r\n* 2 EXISTS\r\n"), 6, 13, "U: 2 EXISTS");
	check_skip(CMD, NULL, IN("a1 X \"x\"y {0+}\r\n\r\na2 NOOP\r\n"), 8, 18, "C a2: NOOP");

	/* a payload over the limit cannot be waited out */
	{
		struct imap_parser *q = imap_parser_new(CMD, &small_limits);
		size_t n;
		CU_ASSERT(feed_str(q, "a1 X \"x\"y", IMAP_PARSE_ERROR));
		imap_parser_skip_line(q);
		CU_ASSERT(imap_parser_feed(q, (const uint8_t *)"y {11+}\r\n", 9, &n) == IMAP_PARSE_ERROR);
		CU_ASSERT(n == 8);
		CU_ASSERT_STRING_EQUAL(imap_parser_error(q), "literal too large");
		CU_ASSERT(!imap_parser_error_recoverable(q));
		imap_parser_free(q);
	}

	/* a long line is skipped without the parser keeping it */
	struct imap_parser *p = imap_parser_new(CMD, NULL);
	size_t used;
	static uint8_t junk[64 * 1024];
	memset(junk, 'x', sizeof(junk));
	CU_ASSERT(imap_parser_feed(p, (const uint8_t *)"a1 X ((", 7, &used) == IMAP_PARSE_NEED_MORE);
	CU_ASSERT(imap_parser_feed(p, (const uint8_t *)"\"\0", 2, &used) == IMAP_PARSE_ERROR);
	CU_ASSERT(used == 1);
	CU_ASSERT_STRING_EQUAL(imap_parser_error(p), "NUL byte");
	imap_parser_skip_line(p);
	CU_ASSERT_STRING_EQUAL(imap_parser_tag(p), "a1");
	for (int i = 0; i < 200; i++) {
		CU_ASSERT(imap_parser_feed(p, junk, sizeof(junk), &used) == IMAP_PARSE_NEED_MORE);
		CU_ASSERT(used == sizeof(junk));
	}
	CU_ASSERT(imap_parser_feed(p, (const uint8_t *)"x\nb", 3, &used) == IMAP_PARSE_DONE);
	CU_ASSERT(used == 2);
	CU_ASSERT(imap_parser_msg(p)->kind == IMAP_MSG_RAW_LINE);
	imap_parser_reset(p);
	CU_ASSERT(imap_parser_feed(p, (const uint8_t *)"b NOOP\r\n", 8, &used) == IMAP_PARSE_DONE);
	CU_ASSERT(imap_arg_is_atom(&imap_parser_msg(p)->args[0], "noop"));
	imap_parser_free(p);
}

/* --- raw lines ------------------------------------------------------------ */

static void test_raw_line(void)
{
	check_good(CMD, NULL, true, IN("DONE\r\n"), 6, "R |DONE|");
	check_good(CMD, NULL, true, IN("\r\n"), 2, "R ||");
	check_good(CMD, NULL, true, IN("*\n"), 2, "R |*|");
	/* verbatim: no tokens, no literals, no tag */
	check_good(CMD, NULL, true, IN("dXNlcg== {5}\r\nabc\r\n"), 14, "R |dXNlcg== {5}|");
	check_good(RSP, NULL, true, IN("  \"( x\r\n"), 8, "R |  \"( x|");

	static const struct bad_case raw_bad[] = {
		{CMD, &line10, IN("0123456789A\r\n"), "ERR line too long fatal", 10},
		{CMD, NULL, IN("ab\0c\r\n"), "ERR NUL byte rec", 2},
		{CMD, NULL, IN("ab\rc\r\n"), "ERR CR without LF rec", 3},
	};
	for (size_t i = 0; i < sizeof(raw_bad) / sizeof(raw_bad[0]); i++)
		check_bad(&raw_bad[i], true);

	/* one message only; expect_raw_line() before or after reset */
	struct imap_parser *p = imap_parser_new(CMD, NULL);
	static const char in[] = "a1 IDLE\r\nDONE\r\na2 NOOP\r\nx\r\n";
	size_t used, pos = 0;
	CU_ASSERT_FATAL(p != NULL);
	CU_ASSERT(imap_parser_feed(p, (const uint8_t *)in, sizeof(in) - 1, &used) == IMAP_PARSE_DONE);
	CU_ASSERT(imap_parser_msg(p)->kind == IMAP_MSG_COMMAND);
	pos += used;
	imap_parser_expect_raw_line(p);
	imap_parser_reset(p);
	CU_ASSERT(imap_parser_feed(p, (const uint8_t *)in + pos, sizeof(in) - 1 - pos, &used) == IMAP_PARSE_DONE);
	CU_ASSERT(imap_parser_msg(p)->kind == IMAP_MSG_RAW_LINE);
	CU_ASSERT_STRING_EQUAL(imap_parser_msg(p)->text, "DONE");
	pos += used;
	imap_parser_reset(p);
	CU_ASSERT(imap_parser_feed(p, (const uint8_t *)in + pos, sizeof(in) - 1 - pos, &used) == IMAP_PARSE_DONE);
	CU_ASSERT(imap_parser_msg(p)->kind == IMAP_MSG_COMMAND);
	pos += used;
	imap_parser_reset(p);
	imap_parser_expect_raw_line(p);
	CU_ASSERT(imap_parser_feed(p, (const uint8_t *)in + pos, sizeof(in) - 1 - pos, &used) == IMAP_PARSE_DONE);
	CU_ASSERT(imap_parser_msg(p)->kind == IMAP_MSG_RAW_LINE);
	CU_ASSERT_STRING_EQUAL(imap_parser_msg(p)->text, "x");
	imap_parser_free(p);
}

/* --- wants_continuation --------------------------------------------------- */


static void test_wants_continuation(void)
{
	struct imap_parser *p = imap_parser_new(CMD, NULL);

	CU_ASSERT_FATAL(p != NULL);
	CU_ASSERT(!imap_parser_wants_continuation(p));
	CU_ASSERT(feed_str(p, "a1 LOGIN {3}", IMAP_PARSE_NEED_MORE));
	CU_ASSERT(!imap_parser_wants_continuation(p));
	CU_ASSERT(feed_str(p, "\r", IMAP_PARSE_NEED_MORE));
	CU_ASSERT(!imap_parser_wants_continuation(p));
	CU_ASSERT(feed_str(p, "\n", IMAP_PARSE_NEED_MORE));
	CU_ASSERT(imap_parser_wants_continuation(p));
	CU_ASSERT(feed_str(p, "", IMAP_PARSE_NEED_MORE));
	CU_ASSERT(imap_parser_wants_continuation(p));
	CU_ASSERT(feed_str(p, "j", IMAP_PARSE_NEED_MORE));
	CU_ASSERT(!imap_parser_wants_continuation(p));
	CU_ASSERT(feed_str(p, "oe {4+}\r\n", IMAP_PARSE_NEED_MORE));
	CU_ASSERT(!imap_parser_wants_continuation(p)); /* LITERAL+: no "+" */
	CU_ASSERT(feed_str(p, "pass ~{2}\r\n", IMAP_PARSE_NEED_MORE));
	CU_ASSERT(imap_parser_wants_continuation(p));
	CU_ASSERT(feed_str(p, "xy {0}\r\n", IMAP_PARSE_NEED_MORE));
	CU_ASSERT(imap_parser_wants_continuation(p)); /* {0} is synchronising too (RFC 3501 7.5) */
	CU_ASSERT(feed_str(p, "\r\n", IMAP_PARSE_DONE));
	CU_ASSERT(!imap_parser_wants_continuation(p));
	CU_ASSERT(imap_parser_msg(p)->nargs == 5);
	imap_parser_reset(p);
	/* cancelling a raw-line expectation that no line used */
	imap_parser_expect_raw_line(p);
	imap_parser_cancel_raw_line(p);
	CU_ASSERT(feed_str(p, "a3 NOOP\r\n", IMAP_PARSE_DONE));
	CU_ASSERT(imap_parser_msg(p)->kind == IMAP_MSG_COMMAND);
	imap_parser_reset(p);
	/* header and payload in one feed: the "+" moment has passed */
	CU_ASSERT(feed_str(p, "a2 LOGIN {1}\r\nx", IMAP_PARSE_NEED_MORE));
	CU_ASSERT(!imap_parser_wants_continuation(p));
	imap_parser_free(p);

	/* servers' literals need no "+" from us */
	p = imap_parser_new(RSP, NULL);
	CU_ASSERT(feed_str(p, "* 1 FETCH (BODY[] {3}\r\n", IMAP_PARSE_NEED_MORE));
	CU_ASSERT(!imap_parser_wants_continuation(p));
	imap_parser_free(p);
}

/* --- large literal ---------------------------------------------------------- */

static void test_big_literal(void)
{
	enum { SIZE = 10 * 1024 * 1024, CHUNK = 4096 };
	static const char head[] = "a1 APPEND INBOX {10485760}\r\n";
	static const char tail[] = " x\r\n";
	size_t len = sizeof(head) - 1 + SIZE + sizeof(tail) - 1, pos = 0, used;
	uint8_t *in = malloc(len);
	struct imap_parser *p = imap_parser_new(CMD, NULL);
	enum imap_parse_result r = IMAP_PARSE_NEED_MORE;
	clock_t start = clock();

	CU_ASSERT_FATAL(in != NULL && p != NULL);
	memcpy(in, head, sizeof(head) - 1);
	for (size_t i = 0; i < SIZE; i++)
		in[sizeof(head) - 1 + i] = (uint8_t)('a' + i % 26);
	memcpy(in + len - (sizeof(tail) - 1), tail, sizeof(tail) - 1);

	while (pos < len) {
		size_t n = len - pos < CHUNK ? len - pos : CHUNK;
		r = imap_parser_feed(p, in + pos, n, &used);
		pos += used;
		if (r != IMAP_PARSE_NEED_MORE)
			break;
	}
	double secs = (double)(clock() - start) / CLOCKS_PER_SEC;
	CU_ASSERT(r == IMAP_PARSE_DONE);
	CU_ASSERT(pos == len);
	/* linear: a rescan per chunk would take minutes, not milliseconds */
	CU_ASSERT(secs < 2.0);
	const struct imap_msg *m = imap_parser_msg(p);
	CU_ASSERT_FATAL(m != NULL && m->nargs == 4);
	CU_ASSERT(m->args[2].type == IMAP_ARG_LITERAL && m->args[2].len == SIZE);
	CU_ASSERT(memcmp(m->args[2].str, in + sizeof(head) - 1, SIZE) == 0);
	CU_ASSERT(m->args[2].str[SIZE] == '\0');
	CU_ASSERT(imap_arg_is_atom(&m->args[3], "x"));
	CU_ASSERT(m->raw_len == len && memcmp(m->raw, in, len) == 0);
	imap_parser_reset(p);
	CU_ASSERT(feed_str(p, "a2 NOOP\r\n", IMAP_PARSE_DONE));
	imap_parser_free(p);
	free(in);
}

/* Many arguments: the token and list storage grow, and shrink on reset. */
static void test_many_args(void)
{
	enum { N = 20000 };
	struct sb b = {0};
	struct imap_parser *p = imap_parser_new(CMD, NULL);

	CU_ASSERT_FATAL(p != NULL);
	sb_puts(&b, "m1 X");
	for (int i = 0; i < N; i++)
		sb_puts(&b, i % 2 ? " a" : " (");
	for (int i = 0; i < N / 2; i++)
		sb_puts(&b, ")");
	sb_puts(&b, "\r\n");
	static const struct imap_limits lim = {1024 * 1024, 100, N, N + 1};
	for (int round = 0; round < 2; round++) {
		size_t used;
		imap_parser_free(p);
		p = imap_parser_new(CMD, &lim);
		CU_ASSERT(imap_parser_feed(p, (const uint8_t *)b.s, b.len, &used) == IMAP_PARSE_DONE);
		CU_ASSERT(used == b.len);
		const struct imap_msg *m = imap_parser_msg(p);
		CU_ASSERT_FATAL(m != NULL && m->nargs == 2);
		const struct imap_arg *a = &m->args[1];
		size_t depth = 0;
		while (a->type == IMAP_ARG_LIST && a->list_count) {
			depth++;
			CU_ASSERT(imap_arg_is_atom(&a->list[0], "a"));
			a = a->list_count == 2 ? &a->list[1] : NULL;
			if (!a)
				break;
		}
		CU_ASSERT(depth == N / 2);
		imap_parser_reset(p);
		CU_ASSERT(feed_str(p, "m2 NOOP\r\n", IMAP_PARSE_DONE));
	}
	imap_parser_free(p);
	free(b.s);
}

/* --- arg tree shape and helpers ---------------------------------------------- */

static void test_tree_and_helpers(void)
{
	struct imap_parser *p = imap_parser_new(RSP, NULL);
	const struct imap_msg *m;

	CU_ASSERT_FATAL(p != NULL);
	CU_ASSERT(feed_str(p, "* 4 FETCH (FLAGS () UID 7 X (\"q\" {1}\r\nl (NIL)))\r\n", IMAP_PARSE_DONE));
	m = imap_parser_msg(p);
	CU_ASSERT_FATAL(m != NULL && m->nargs == 3);
	CU_ASSERT(imap_arg_is_atom(&m->args[1], "fetch"));
	CU_ASSERT(imap_arg_is_atom(&m->args[1], "FETCH"));
	CU_ASSERT(!imap_arg_is_atom(&m->args[1], "FETC"));
	CU_ASSERT(!imap_arg_is_atom(&m->args[1], "FETCHX"));
	const struct imap_arg *l = &m->args[2];
	CU_ASSERT_FATAL(l->type == IMAP_ARG_LIST && l->list_count == 6);
	CU_ASSERT(l->list[1].type == IMAP_ARG_LIST && l->list[1].list_count == 0);
	CU_ASSERT(!imap_arg_is_string(&l->list[1]));
	CU_ASSERT(imap_arg_is_string(&l->list[2]));
	const struct imap_arg *in = &l->list[5];
	CU_ASSERT_FATAL(in->type == IMAP_ARG_LIST && in->list_count == 3);
	CU_ASSERT(in->list[0].type == IMAP_ARG_QUOTED && imap_arg_is_string(&in->list[0]));
	CU_ASSERT(!imap_arg_is_atom(&in->list[0], "q")); /* quoted is not an atom */
	CU_ASSERT(in->list[1].type == IMAP_ARG_LITERAL && in->list[1].lit_kind == IMAP_LITERAL_SYNC);
	CU_ASSERT(imap_arg_is_string(&in->list[1]));
	CU_ASSERT(in->list[2].type == IMAP_ARG_LIST && imap_arg_is_atom(&in->list[2].list[0], "nil"));
	imap_parser_free(p);

	CU_ASSERT_STRING_EQUAL(imap_status_name(IMAP_STATUS_OK), "OK");
	CU_ASSERT_STRING_EQUAL(imap_status_name(IMAP_STATUS_NO), "NO");
	CU_ASSERT_STRING_EQUAL(imap_status_name(IMAP_STATUS_BAD), "BAD");
	CU_ASSERT_STRING_EQUAL(imap_status_name(IMAP_STATUS_BYE), "BYE");
	CU_ASSERT_STRING_EQUAL(imap_status_name(IMAP_STATUS_PREAUTH), "PREAUTH");
	CU_ASSERT_STRING_EQUAL(imap_status_name(IMAP_STATUS_NONE), "NONE");
	CU_ASSERT(!imap_arg_is_string(NULL));
	CU_ASSERT(!imap_arg_is_atom(NULL, "x"));
}

/* The response helpers callers use: numbers, "* n WORD", and response codes. */
static void test_response_helpers(void)
{
	uint64_t v64;
	uint32_t v32;
	CU_ASSERT(imap_parse_u64("18446744073709551615", 20, &v64) && v64 == UINT64_MAX);
	CU_ASSERT(!imap_parse_u64("18446744073709551616", 20, &v64));
	CU_ASSERT(!imap_parse_u64("", 0, &v64));
	CU_ASSERT(!imap_parse_u64("12a", 3, &v64));
	CU_ASSERT(!imap_parse_u64("-1", 2, &v64));
	CU_ASSERT(imap_parse_u32("4294967295", 10, &v32) && v32 == UINT32_MAX);
	CU_ASSERT(!imap_parse_u32("4294967296", 10, &v32));

	static const char resp[] = "* 17 EXISTS\r\n* OK [UIDVALIDITY 99] ok\r\n* 3 FETCH (FLAGS ())\r\n";
	struct imap_parser *p = imap_parser_new(IMAP_PARSE_RESPONSES, NULL);
	size_t off = 0, used;
	const char *val;
	size_t vlen;
	CU_ASSERT_EQUAL_FATAL(imap_parser_feed(p, (const uint8_t *)resp, sizeof(resp) - 1, &used), IMAP_PARSE_DONE);
	const struct imap_msg *m = imap_parser_msg(p);
	CU_ASSERT(imap_untagged_num(m, "EXISTS", &v32) && v32 == 17);
	CU_ASSERT(!imap_untagged_num(m, "EXPUNGE", &v32));
	CU_ASSERT(!imap_code_value(m, "UIDVALIDITY", &val, &vlen));
	off += used;
	imap_parser_reset(p);
	CU_ASSERT_EQUAL_FATAL(imap_parser_feed(p, (const uint8_t *)resp + off, sizeof(resp) - 1 - off, &used),
	                      IMAP_PARSE_DONE);
	m = imap_parser_msg(p);
	CU_ASSERT(imap_code_value(m, "UIDVALIDITY", &val, &vlen) && vlen == 2 && memcmp(val, "99", 2) == 0);
	CU_ASSERT(!imap_code_value(m, "UIDNEXT", &val, &vlen));
	CU_ASSERT(!imap_code_value(m, "UIDVALIDIT", &val, &vlen)); /* a prefix is not the name */
	CU_ASSERT(!imap_untagged_num(m, "OK", &v32));
	off += used;
	imap_parser_reset(p);
	CU_ASSERT_EQUAL_FATAL(imap_parser_feed(p, (const uint8_t *)resp + off, sizeof(resp) - 1 - off, &used),
	                      IMAP_PARSE_DONE);
	m = imap_parser_msg(p);
	CU_ASSERT(imap_untagged_num(m, "FETCH", &v32) && v32 == 3);
	imap_parser_free(p);
}

void suite_imap_parse(void)
{
	ADD_SUITE("imap_parse",
	          {"commands", test_commands},
	          {"responses", test_responses},
	          {"errors", test_errors},
	          {"tag after error", test_tag_after_error},
	          {"limits at the boundary", test_limits_exact},
	          {"multiple messages in one buffer", test_multiple_messages},
	          {"skip_line recovery", test_skip_line},
	          {"raw line mode", test_raw_line},
	          {"wants_continuation", test_wants_continuation},
	          {"10 MB literal in 4 KiB chunks", test_big_literal},
	          {"many arguments, deep nesting", test_many_args},
	          {"arg tree and helpers", test_tree_and_helpers},
	          {"response helpers", test_response_helpers});
}
