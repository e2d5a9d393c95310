/*
 * Unit tests for the pure parts of sending: msg_header.c (header fields,
 * address lists, Message-ID, SMTP data), xdeliver.c (the XDELIVER grammar
 * through the real IMAP parser, the command the proxy writes, results both
 * ways), smtp_reply.c (whole, byte by byte and in random splits) and
 * mime_attach.c (BODYSTRUCTURE to attachments, the multipart it builds).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/file.h>
#include <fcntl.h>
#include <dirent.h>

#include <CUnit/CUnit.h>

#include "buf.h"
#include "dsn.h"
#include "outbox.h"
#include "gw_sent.h"
#include "imap_parse.h"
#include "mime_attach.h"
#include "msg_header.h"
#include "smtp_reply.h"
#include "suites.h"
#include "xdeliver.h"

#define RANDOM_SPLITS 24

static const struct imap_limits limits = {
	.max_line_length = IMAP_DEFAULT_MAX_LINE_LENGTH,
	.max_literal_size = IMAP_DEFAULT_MAX_LITERAL_SIZE,
	.max_list_depth = IMAP_DEFAULT_MAX_LIST_DEPTH,
	.max_args = IMAP_DEFAULT_MAX_ARGS,
};

#define M(s) (const uint8_t *)(s), strlen(s)
#define S(s) (s), strlen(s)

/* ---- msg_header ----------------------------------------------------------- */

static char *header(const char *msg, const char *name)
{
	struct buf b;
	buf_init(&b, 0);
	if (!msg_header_get(M(msg), name, &b)) {
		buf_free(&b);
		return NULL;
	}
	char *s = buf_str(&b);
	buf_free(&b);
	return s;
}

static void test_header_get(void)
{
	const char *msg = "From: Alice <a@x.org>\r\nSubject: one\r\n  two\r\nX-Empty:\r\nsubject: later\r\n\r\n"
	                  "Subject: in the body\r\n";
	char *s = header(msg, "subject");
	CU_ASSERT_STRING_EQUAL(s, "one  two");
	free(s);
	s = header(msg, "X-Empty");
	CU_ASSERT_STRING_EQUAL(s, "");
	free(s);
	CU_ASSERT_PTR_NULL(header(msg, "To"));
	CU_ASSERT_PTR_NULL(header("From: a@b\r\n\r\nTo: c@d\r\n", "To")); /* body is not header */
	/* LF-only line ends, a field name with WSP before the colon, no blank line */
	s = header("A: 1\nSubject : lf\n", "Subject");
	CU_ASSERT_STRING_EQUAL(s, "lf");
	free(s);
	CU_ASSERT_EQUAL(msg_header_size(M("A: 1\r\n\r\nbody")), 8);
	CU_ASSERT_EQUAL(msg_header_size(M("A: 1\n\nbody")), 6);
	CU_ASSERT_EQUAL(msg_header_size(M("A: 1\r\n")), 6);
	CU_ASSERT_TRUE(msg_header_has(M(msg), "FROM"));
	CU_ASSERT_FALSE(msg_header_has(M(msg), "Fro"));
}

struct addrs {
	char s[1024];
};

static void collect(const char *a, size_t n, void *ctx)
{
	struct addrs *x = ctx;
	size_t l = strlen(x->s);
	snprintf(x->s + l, sizeof(x->s) - l, "%s%.*s", l ? "|" : "", (int)n, a);
}

static int addr_list(const char *v, char *out)
{
	struct addrs x = {""};
	int n = msg_address_list(v, strlen(v), collect, &x);
	strcpy(out, x.s);
	return n;
}

static void test_address_list(void)
{
	char out[1024];
	CU_ASSERT_EQUAL(addr_list("a@x.org", out), 1);
	CU_ASSERT_STRING_EQUAL(out, "a@x.org");
	CU_ASSERT_EQUAL(addr_list("\"Smith, Jo\" <jo@x.org>, b@y.org (Bee), Cee <c@z.org>", out), 3);
	CU_ASSERT_STRING_EQUAL(out, "jo@x.org|b@y.org|c@z.org");
	CU_ASSERT_EQUAL(addr_list("Team: a@x.org, \"b\" <b@x.org>;, d@y.org", out), 3);
	CU_ASSERT_STRING_EQUAL(out, "a@x.org|b@x.org|d@y.org");
	CU_ASSERT_EQUAL(addr_list("undisclosed-recipients:;", out), 0);
	CU_ASSERT_EQUAL(addr_list("<@route.org,@r2.org:x@y.org>", out), 1);
	CU_ASSERT_STRING_EQUAL(out, "x@y.org");
	CU_ASSERT_EQUAL(addr_list("\"a b\"@x.org", out), 1);
	CU_ASSERT_STRING_EQUAL(out, "\"a b\"@x.org");
	CU_ASSERT_EQUAL(addr_list("Name (comment (nested)) <n@x.org>", out), 1);
	CU_ASSERT_STRING_EQUAL(out, "n@x.org");
	/* malformed */
	CU_ASSERT_EQUAL(addr_list("nobody", out), -1);
	CU_ASSERT_EQUAL(addr_list("<a@x.org", out), -1);
	CU_ASSERT_EQUAL(addr_list("\"open@x.org", out), -1);
	CU_ASSERT_EQUAL(addr_list("(open a@x.org", out), -1);
	CU_ASSERT_EQUAL(addr_list("a b@x.org", out), -1);
	CU_ASSERT_EQUAL(addr_list("<>", out), -1);
	CU_ASSERT_EQUAL(addr_list("<a@x.org> <b@x.org>", out), -1);
	char first[64];
	CU_ASSERT_TRUE(msg_first_address(S("Alice <alice@x.org>, bob@y.org"), first, sizeof(first)));
	CU_ASSERT_STRING_EQUAL(first, "alice@x.org");
	CU_ASSERT_FALSE(msg_first_address(S("x:;"), first, sizeof(first)));
}

static void test_message_id(void)
{
	char id[MSG_ID_MAX + 1];
	CU_ASSERT_TRUE(msg_message_id(M("Message-ID:\r\n <abc.1@x.org>\r\n\r\n"), id, sizeof(id)));
	CU_ASSERT_STRING_EQUAL(id, "<abc.1@x.org>");
	CU_ASSERT_FALSE(msg_message_id(M("Message-ID: abc@x.org\r\n\r\n"), id, sizeof(id)));
	CU_ASSERT_FALSE(msg_message_id(M("Message-ID: <a b@x>\r\n\r\n"), id, sizeof(id)));
	CU_ASSERT_FALSE(msg_message_id(M("Message-ID: <ab>\r\n\r\n"), id, sizeof(id)));
	CU_ASSERT_FALSE(msg_message_id(M("Subject: x\r\n\r\n"), id, sizeof(id)));
	char longid[400] = "Message-ID: <";
	memset(longid + 13, 'a', 300);
	strcpy(longid + 313, "@x>\r\n\r\n");
	CU_ASSERT_FALSE(msg_message_id(M(longid), id, sizeof(id)));
	char a[MSG_ID_MAX + 1], b[MSG_ID_MAX + 1];
	msg_new_message_id("host.example", a, sizeof(a));
	msg_new_message_id("host.example", b, sizeof(b));
	CU_ASSERT_STRING_NOT_EQUAL(a, b);
	CU_ASSERT_PTR_NOT_NULL(strstr(a, "@host.example>"));
	char msg[400];
	snprintf(msg, sizeof(msg), "Message-ID: %s\r\n\r\n", a);
	CU_ASSERT_TRUE(msg_message_id(M(msg), id, sizeof(id)));
	CU_ASSERT_STRING_EQUAL(id, a);
}

static char *smtp_data(const char *msg)
{
	struct buf b;
	buf_init(&b, 0);
	msg_to_smtp_data(M(msg), &b);
	char *s = buf_str(&b);
	buf_free(&b);
	return s;
}

static void test_smtp_data(void)
{
	char *s = smtp_data("A: 1\r\n\r\n.dot\r\n..two\r\nend");
	CU_ASSERT_STRING_EQUAL(s, "A: 1\r\n\r\n..dot\r\n...two\r\nend\r\n");
	free(s);
	s = smtp_data("bare\nlf\rcr\r\n.\r\n");
	CU_ASSERT_STRING_EQUAL(s, "bare\r\nlf\r\ncr\r\n..\r\n");
	free(s);
	s = smtp_data(".");
	CU_ASSERT_STRING_EQUAL(s, "..\r\n");
	free(s);
	CU_ASSERT_TRUE(msg_has_8bit(M("caf\xc3\xa9")));
	CU_ASSERT_FALSE(msg_has_8bit(M("cafe")));
}

/* ---- xdeliver ------------------------------------------------------------- */

static int parse_xdeliver(struct imap_parser *p, const char *cmd, size_t len, struct xdeliver_cmd *x, char *err)
{
	size_t used;
	imap_parser_reset(p);
	enum imap_parse_result r = imap_parser_feed(p, (const uint8_t *)cmd, len, &used);
	CU_ASSERT_EQUAL_FATAL(r, IMAP_PARSE_DONE);
	return xdeliver_parse(imap_parser_msg(p), x, err, 256);
}

#define XD(s) parse_xdeliver(p, s, sizeof(s) - 1, &x, err)

static void test_xdeliver_parse(void)
{
	struct imap_parser *p = imap_parser_new(IMAP_PARSE_COMMANDS, &limits);
	struct xdeliver_cmd x;
	char err[256];
	CU_ASSERT_EQUAL(XD("a XDELIVER N ENVELOPE ((\"Bob\" NIL \"bob\" \"x.org\") (NIL NIL \"a b\" \"y.org\")) "
	                   "{5+}\r\nHello\r\n"),
	                0);
	CU_ASSERT_EQUAL(x.kind, XDELIVER_NEW);
	CU_ASSERT_EQUAL(x.nrcpts, 2);
	CU_ASSERT_STRING_EQUAL(x.rcpts[0], "bob@x.org");
	CU_ASSERT_STRING_EQUAL(x.rcpts[1], "\"a b\"@y.org");
	CU_ASSERT_EQUAL(x.msg_len, 5);
	CU_ASSERT_EQUAL(memcmp(x.msg, "Hello", 5), 0);
	CU_ASSERT_PTR_NULL(x.saveto);
	xdeliver_cmd_free(&x);

	CU_ASSERT_EQUAL(XD("a XDELIVER R Inbox 1 203 Y SAVETO=~/Sent ENVELOPE ((\"Mooch\" NIL \"mooch\" "
	                   "\"owatagu.siam.edu\")) {3}\r\nabc\r\n"),
	                0);
	CU_ASSERT_EQUAL(x.kind, XDELIVER_REPLY);
	CU_ASSERT_STRING_EQUAL(x.folder, "Inbox");
	CU_ASSERT_EQUAL(x.uidvalidity, 1);
	CU_ASSERT_EQUAL(x.uid, 203);
	CU_ASSERT_TRUE(x.reattach);
	CU_ASSERT_STRING_EQUAL(x.saveto, "~/Sent");
	xdeliver_cmd_free(&x);

	CU_ASSERT_EQUAL(XD("a xdeliver f \"My Folder\" 7 9 n saveto \"Sent Items\" envelope ((nil nil b c)) {1+}\r\nz\r\n"),
	                0);
	CU_ASSERT_EQUAL(x.kind, XDELIVER_FORWARD);
	CU_ASSERT_STRING_EQUAL(x.folder, "My Folder");
	CU_ASSERT_FALSE(x.reattach);
	CU_ASSERT_STRING_EQUAL(x.saveto, "Sent Items");
	CU_ASSERT_STRING_EQUAL(x.rcpts[0], "b@c");
	xdeliver_cmd_free(&x);

	/* errors: each gives BAD with a reason */
	static const char *const bad[] = {
		"a XDELIVER\r\n",
		"a XDELIVER Q ENVELOPE ((NIL NIL b c)) {1+}\r\nz\r\n",
		"a XDELIVER N {1+}\r\nz\r\n",
		"a XDELIVER N ENVELOPE NIL {1+}\r\nz\r\n",
		"a XDELIVER N ENVELOPE () {1+}\r\nz\r\n",
		"a XDELIVER N ENVELOPE ((NIL NIL NIL c)) {1+}\r\nz\r\n",
		"a XDELIVER N ENVELOPE ((NIL NIL b)) {1+}\r\nz\r\n",
		"a XDELIVER N ENVELOPE ((NIL NIL b \"c d\")) {1+}\r\nz\r\n",
		"a XDELIVER N ENVELOPE ((NIL NIL b c)) \"not a literal\"\r\n",
		"a XDELIVER N ENVELOPE ((NIL NIL b c)) {0+}\r\n\r\n",
		"a XDELIVER N ENVELOPE ((NIL NIL b c)) {1+}\r\nz extra\r\n",
		"a XDELIVER R INBOX 0 5 Y ENVELOPE ((NIL NIL b c)) {1+}\r\nz\r\n",
		"a XDELIVER R INBOX 1 5 X ENVELOPE ((NIL NIL b c)) {1+}\r\nz\r\n",
		"a XDELIVER R INBOX 1 ENVELOPE ((NIL NIL b c)) {1+}\r\nz\r\n",
		"a XDELIVER N SAVETO= ENVELOPE ((NIL NIL b c)) {1+}\r\nz\r\n",
		"a XDELIVER N ENVELOPE ((NIL NIL {2+}\r\nb\n c)) {1+}\r\nz\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		int r = parse_xdeliver(p, bad[i], strlen(bad[i]), &x, err);
		if (r == 0)
			fprintf(stderr, "\n  accepted: %s", bad[i]);
		CU_ASSERT_EQUAL(r, -1);
		CU_ASSERT_NOT_EQUAL(err[0], '\0');
	}
	/* a NUL in a literal8: mail cannot carry it (found by fuzz_xdeliver) */
	err[0] = '\0';
	CU_ASSERT_EQUAL(XD("a XDELIVER N ENVELOPE ((NIL NIL b c)) ~{3+}\r\na\0b\r\n"), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "NUL"));
	imap_parser_free(p);
}

static void test_xdeliver_format(void)
{
	char *rcpts[] = {"bob@x.org", "\"a \\\"q\\\"\"@y.org"};
	struct xdeliver_cmd c = {.kind = XDELIVER_NEW, .saveto = "Sent Items", .rcpts = rcpts, .nrcpts = 2,
	                         .msg = (const uint8_t *)"Hi", .msg_len = 2};
	struct buf b;
	buf_init(&b, 0);
	CU_ASSERT_EQUAL(xdeliver_format(&b, &c), 0);
	char *s = buf_str(&b);
	CU_ASSERT_STRING_EQUAL(s, "XDELIVER N SAVETO \"Sent Items\" ENVELOPE ((NIL NIL \"bob\" \"x.org\")"
	                          "(NIL NIL \"a \\\"q\\\"\" \"y.org\")) {2+}\r\nHi\r\n");
	/* what the proxy writes, the gateway reads back to the same recipients */
	struct imap_parser *p = imap_parser_new(IMAP_PARSE_COMMANDS, &limits);
	struct buf cmd;
	buf_init(&cmd, 0);
	buf_append_str(&cmd, "t ");
	buf_append(&cmd, buf_head(&b), buf_len(&b));
	struct xdeliver_cmd x;
	char err[256];
	CU_ASSERT_EQUAL(parse_xdeliver(p, (const char *)buf_head(&cmd), buf_len(&cmd), &x, err), 0);
	CU_ASSERT_STRING_EQUAL(x.saveto, "Sent Items");
	CU_ASSERT_STRING_EQUAL(x.rcpts[0], "bob@x.org");
	CU_ASSERT_STRING_EQUAL(x.rcpts[1], "\"a \\\"q\\\"\"@y.org");
	xdeliver_cmd_free(&x);
	free(s);
	buf_clear(&b);
	c.saveto = "Sent";
	c.nrcpts = 1;
	CU_ASSERT_EQUAL(xdeliver_format(&b, &c), 0);
	s = buf_str(&b);
	CU_ASSERT_PTR_NOT_NULL(strstr(s, " SAVETO=Sent ENVELOPE"));
	free(s);
	char *badr[] = {"no-at-sign"};
	c.rcpts = badr;
	buf_clear(&b);
	CU_ASSERT_EQUAL(xdeliver_format(&b, &c), -1);
	buf_free(&b);
	buf_free(&cmd);
	imap_parser_free(p);
}

/* A tagged response parsed by the real parser. */
static enum xdeliver_status result_of(struct imap_parser *p, const char *line, struct smtp_outcome *o)
{
	size_t used;
	imap_parser_reset(p);
	CU_ASSERT_EQUAL_FATAL(imap_parser_feed(p, (const uint8_t *)line, strlen(line), &used), IMAP_PARSE_DONE);
	return xdeliver_result_parse(imap_parser_msg(p), o);
}

static void test_xdeliver_results(void)
{
	struct smtp_outcome o;
	struct buf b;
	buf_init(&b, 0);
	smtp_outcome_set(&o, 550, "5.1.1 <x@y>: no such user\x01", 26);
	CU_ASSERT_EQUAL(o.code, 550);
	CU_ASSERT_STRING_EQUAL(o.enhanced, "5.1.1");
	CU_ASSERT_STRING_EQUAL(o.text, "<x@y>: no such user");
	xdeliver_result_format(&b, &o, NULL, NULL);
	char *s = buf_str(&b);
	CU_ASSERT_STRING_EQUAL(s, "NO [SMTP 550 5.1.1] <x@y>: no such user");
	free(s);
	smtp_outcome_set(&o, 250, "2.0.0 Ok: queued", 16);
	buf_clear(&b);
	xdeliver_result_format(&b, &o, "7 42", NULL);
	s = buf_str(&b);
	CU_ASSERT_STRING_EQUAL(s, "OK [APPENDUID 7 42] 250 2.0.0 Ok: queued");
	free(s);
	smtp_outcome_set(&o, 250, "2.1.0 no enhanced here", 22); /* 2.1.0 matches class 2: taken */
	CU_ASSERT_STRING_EQUAL(o.enhanced, "2.1.0");
	smtp_outcome_set(&o, 451, "5.1.0 wrong class", 17);
	CU_ASSERT_STRING_EQUAL(o.enhanced, "");
	buf_free(&b);

	struct imap_parser *p = imap_parser_new(IMAP_PARSE_RESPONSES, &limits);
	CU_ASSERT_EQUAL(result_of(p, "t OK [SMTP 250 2.0.0] Ok: queued as X\r\n", &o), XDELIVER_SENT);
	CU_ASSERT_EQUAL(o.code, 250);
	CU_ASSERT_STRING_EQUAL(o.enhanced, "2.0.0");
	CU_ASSERT_STRING_EQUAL(o.text, "Ok: queued as X");
	CU_ASSERT_EQUAL(result_of(p, "t OK [APPENDUID 1 5] 250 2.0.0 Ok\r\n", &o), XDELIVER_SENT);
	CU_ASSERT_EQUAL(o.code, 250);
	CU_ASSERT_STRING_EQUAL(o.enhanced, "2.0.0");
	CU_ASSERT_EQUAL(result_of(p, "t NO [SMTP 550 5.1.1] <b@x>: User unknown\r\n", &o), XDELIVER_REJECTED);
	CU_ASSERT_EQUAL(o.code, 550);
	CU_ASSERT_STRING_EQUAL(o.enhanced, "5.1.1");
	CU_ASSERT_STRING_EQUAL(o.text, "<b@x>: User unknown");
	CU_ASSERT_EQUAL(result_of(p, "t NO [SMTP 451] try later\r\n", &o), XDELIVER_REJECTED);
	CU_ASSERT_EQUAL(o.code, 451);
	CU_ASSERT_STRING_EQUAL(o.enhanced, "");
	CU_ASSERT_EQUAL(result_of(p, "t NO [UNAVAILABLE] Not sent: refused\r\n", &o), XDELIVER_UNAVAILABLE);
	CU_ASSERT_EQUAL(o.code / 100, 4);
	CU_ASSERT_EQUAL(result_of(p, "t NO [DELIVERYUNKNOWN] lost\r\n", &o), XDELIVER_UNKNOWN);
	CU_ASSERT_EQUAL(o.code / 100, 5);
	CU_ASSERT_EQUAL(result_of(p, "t NO [TOOBIG] big\r\n", &o), XDELIVER_REFUSED);
	CU_ASSERT_EQUAL(o.code, 552);
	CU_ASSERT_EQUAL(result_of(p, "t BAD XDELIVER: nonsense\r\n", &o), XDELIVER_REFUSED);
	CU_ASSERT_EQUAL(o.code / 100, 5);
	CU_ASSERT_EQUAL(result_of(p, "t OK [SMTP 550 5.0.0] contradiction\r\n", &o), XDELIVER_UNAVAILABLE);
	imap_parser_free(p);
}

/* ---- smtp_reply ----------------------------------------------------------- */

struct reply_case {
	const char *in;
	int code;          /* 0: error expected */
	const char *text;  /* lines joined with \n */
	size_t consumed;   /* 0: all */
};

static const struct reply_case reply_cases[] = {
	{"220 mail.test ESMTP\r\n", 220, "mail.test ESMTP", 0},
	{"250-mail.test\r\n250-PIPELINING\r\n250-SIZE 100\r\n250 AUTH PLAIN LOGIN\r\n", 250,
	 "mail.test\nPIPELINING\nSIZE 100\nAUTH PLAIN LOGIN", 0},
	{"354\r\n", 354, "", 0},
	{"250 ok\nnext", 250, "ok", 7},                 /* bare LF tolerated; the rest is the next reply's */
	{"550-5.1.1 one\r\n550 5.1.1 two\r\n250 x\r\n", 550, "5.1.1 one\n5.1.1 two", 30},
	{"25 short\r\n", 0, NULL, 0},
	{"abc x\r\n", 0, NULL, 0},
	{"250-a\r\n251 b\r\n", 0, NULL, 0},
	{"250xtext\r\n", 0, NULL, 0},
	{"199 low\r\n", 0, NULL, 0},
	{"250 nul\0x\r\n", 0, NULL, 0},
};

static void feed_reply(const struct reply_case *c, size_t len, int mode, unsigned seed)
{
	struct smtp_reply_parser *p = smtp_reply_parser_new();
	size_t pos = 0;
	enum smtp_reply_result r = SMTP_REPLY_NEED_MORE;
	srand(seed);
	while (pos < len && r == SMTP_REPLY_NEED_MORE) {
		size_t chunk = mode == 0 ? len - pos : mode == 1 ? 1 : 1 + (size_t)rand() % (len - pos);
		size_t used = 0;
		r = smtp_reply_feed(p, (const uint8_t *)c->in + pos, chunk, &used);
		pos += used;
	}
	if (c->code == 0) {
		CU_ASSERT_EQUAL(r, SMTP_REPLY_ERROR);
	} else {
		CU_ASSERT_EQUAL(r, SMTP_REPLY_DONE);
		const struct smtp_reply *rep = smtp_reply_get(p);
		CU_ASSERT_PTR_NOT_NULL_FATAL(rep);
		CU_ASSERT_EQUAL(rep->code, c->code);
		CU_ASSERT_STRING_EQUAL((const char *)buf_head(&rep->text) ? (const char *)buf_head(&rep->text) : "",
		                       c->text);
		CU_ASSERT_EQUAL(pos, c->consumed ? c->consumed : len);
	}
	smtp_reply_parser_free(p);
}

static void test_smtp_reply(void)
{
	for (size_t i = 0; i < sizeof(reply_cases) / sizeof(reply_cases[0]); i++) {
		const struct reply_case *c = &reply_cases[i];
		size_t len = strlen(c->in);
		if (strstr(c->in, "nul"))
			len = 12;
		for (int split = 0; split < 2 + RANDOM_SPLITS; split++)
			feed_reply(c, len, split < 2 ? split : 2, (unsigned)(i * 100 + split));
	}
	/* EHLO keywords */
	struct smtp_reply_parser *p = smtp_reply_parser_new();
	const char *ehlo = "250-mail.test hello PIPELINING\r\n250-SIZE 1000\r\n250-AUTH=PLAIN\r\n250 8BITMIME\r\n";
	size_t used;
	CU_ASSERT_EQUAL(smtp_reply_feed(p, (const uint8_t *)ehlo, strlen(ehlo), &used), SMTP_REPLY_DONE);
	const struct smtp_reply *r = smtp_reply_get(p);
	const char *params;
	size_t plen;
	CU_ASSERT_FALSE(smtp_reply_ehlo_has(r, "PIPELINING", NULL, NULL)); /* the greeting line does not count */
	CU_ASSERT_TRUE(smtp_reply_ehlo_has(r, "size", &params, &plen));
	CU_ASSERT_EQUAL(plen, 4);
	CU_ASSERT_EQUAL(strncmp(params, "1000", 4), 0);
	CU_ASSERT_TRUE(smtp_reply_ehlo_has(r, "AUTH", &params, &plen));
	CU_ASSERT_EQUAL(strncmp(params, "PLAIN", plen), 0);
	CU_ASSERT_TRUE(smtp_reply_ehlo_has(r, "8BITMIME", NULL, NULL));
	CU_ASSERT_FALSE(smtp_reply_ehlo_has(r, "8BIT", NULL, NULL));
	/* a line over the limit */
	smtp_reply_reset(p);
	char *big = malloc(SMTP_REPLY_MAX_LINE + 10);
	memcpy(big, "250 ", 4);
	memset(big + 4, 'x', SMTP_REPLY_MAX_LINE + 5);
	CU_ASSERT_EQUAL(smtp_reply_feed(p, (const uint8_t *)big, SMTP_REPLY_MAX_LINE + 9, &used), SMTP_REPLY_ERROR);
	free(big);
	smtp_reply_parser_free(p);
}

/* ---- mime_attach ---------------------------------------------------------- */

static void test_mime_attach(void)
{
	struct imap_parser *p = imap_parser_new(IMAP_PARSE_RESPONSES, &limits);
	const char *fetch =
		"* 1 FETCH (UID 5 BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 1)"
		"(\"application\" \"pdf\" (\"name\" \"a.pdf\") NIL NIL \"base64\" 20)"
		"(\"image\" \"png\" NIL NIL NIL \"base64\" 8) \"mixed\" (\"boundary\" \"b\") NIL NIL))\r\n";
	size_t used;
	CU_ASSERT_EQUAL_FATAL(imap_parser_feed(p, (const uint8_t *)fetch, strlen(fetch), &used), IMAP_PARSE_DONE);
	const struct imap_msg *m = imap_parser_msg(p);
	const struct imap_arg *bs = &m->args[2].list[3];
	unsigned parts[8];
	CU_ASSERT_EQUAL(mime_attachment_parts(bs, parts, 8), 2);
	CU_ASSERT_EQUAL(parts[0], 2);
	CU_ASSERT_EQUAL(parts[1], 3);
	CU_ASSERT_EQUAL(mime_attachment_parts(bs, parts, 1), 1);
	const char *alt = "* 1 FETCH (BODYSTRUCTURE ((\"text\" \"plain\" NIL NIL NIL \"7bit\" 3 1)"
	                  "(\"text\" \"html\" NIL NIL NIL \"7bit\" 3 1) \"alternative\" NIL NIL NIL))\r\n";
	imap_parser_reset(p);
	CU_ASSERT_EQUAL_FATAL(imap_parser_feed(p, (const uint8_t *)alt, strlen(alt), &used), IMAP_PARSE_DONE);
	CU_ASSERT_EQUAL(mime_attachment_parts(&imap_parser_msg(p)->args[2].list[1], parts, 8), 0);
	const char *single = "* 1 FETCH (BODYSTRUCTURE (\"text\" \"plain\" NIL NIL NIL \"7bit\" 3 1))\r\n";
	imap_parser_reset(p);
	CU_ASSERT_EQUAL_FATAL(imap_parser_feed(p, (const uint8_t *)single, strlen(single), &used), IMAP_PARSE_DONE);
	CU_ASSERT_EQUAL(mime_attachment_parts(&imap_parser_msg(p)->args[2].list[1], parts, 8), 0);
	CU_ASSERT_EQUAL(mime_attachment_parts(&imap_parser_msg(p)->args[2].list[0], parts, 8), -1);
	imap_parser_free(p);

	const char *msg = "From: a@x\r\nContent-Type: text/plain; charset=utf-8\r\nSubject: fw\r\n"
	                  "Content-Transfer-Encoding: 8bit\r\n\r\nSee attached.\r\n";
	struct mime_part mp[1] = {{(const uint8_t *)"Content-Type: application/pdf\r\n\r\n", 33,
	                           (const uint8_t *)"UERG", 4}};
	struct buf out;
	buf_init(&out, 0);
	mime_add_parts(M(msg), mp, 1, "ab12", &out);
	char *s = buf_str(&out);
	CU_ASSERT_STRING_EQUAL(s, "From: a@x\r\nSubject: fw\r\nMIME-Version: 1.0\r\n"
	                          "Content-Type: multipart/mixed; boundary=\"=_pimap_ab12_0\"\r\n\r\n"
	                          "--=_pimap_ab12_0\r\nContent-Type: text/plain; charset=utf-8\r\n"
	                          "Content-Transfer-Encoding: 8bit\r\n\r\nSee attached.\r\n"
	                          "--=_pimap_ab12_0\r\nContent-Type: application/pdf\r\n\r\nUERG\r\n"
	                          "--=_pimap_ab12_0--\r\n");
	free(s);
	/* a boundary that occurs in the input is not used */
	buf_clear(&out);
	mime_add_parts(M("A: b\r\n\r\n--=_pimap_ab12_0\r\n"), mp, 1, "ab12", &out);
	s = buf_str(&out);
	CU_ASSERT_PTR_NOT_NULL(strstr(s, "boundary=\"=_pimap_ab12_1\""));
	free(s);
	buf_free(&out);
}

/* ---- gw_sent -------------------------------------------------------------- */

static void test_gw_sent(void)
{
	char dir[] = "/tmp/pimap-sent.XXXXXX", path[128], err[256];
	CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
	struct gw_sent *st = gw_sent_open(dir, 3600, 2, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	enum gw_sent_state state;
	char uid[GW_SENT_APPENDUID_MAX + 1];
	double at;
	CU_ASSERT_EQUAL(gw_sent_lookup(st, "alice", "<a@x>", &state, &at, uid, sizeof(uid)), 0);
	CU_ASSERT_EQUAL(state, GW_SENT_NONE);
	CU_ASSERT_EQUAL(gw_sent_mark(st, "alice", "<a@x>", GW_SENT_SENDING, NULL), 0);
	CU_ASSERT_EQUAL(gw_sent_lookup(st, "alice", "<a@x>", &state, &at, uid, sizeof(uid)), 0);
	CU_ASSERT_EQUAL(state, GW_SENT_SENDING);
	CU_ASSERT(at > 0);
	CU_ASSERT_EQUAL(gw_sent_lookup(st, "bob", "<a@x>", &state, NULL, NULL, 0), 0);
	CU_ASSERT_EQUAL(state, GW_SENT_NONE); /* per user */
	CU_ASSERT_EQUAL(gw_sent_mark(st, "alice", "<a@x>", GW_SENT_SENT, "7 42"), 0);
	gw_sent_close(st);
	/* it survives a restart */
	st = gw_sent_open(dir, 3600, 2, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	CU_ASSERT_EQUAL(gw_sent_lookup(st, "alice", "<a@x>", &state, &at, uid, sizeof(uid)), 0);
	CU_ASSERT_EQUAL(state, GW_SENT_SENT);
	CU_ASSERT_STRING_EQUAL(uid, "7 42");
	/* at most 2 per user: the oldest goes */
	CU_ASSERT_EQUAL(gw_sent_mark(st, "alice", "<b@x>", GW_SENT_SENT, NULL), 0);
	usleep(2000);
	CU_ASSERT_EQUAL(gw_sent_mark(st, "alice", "<c@x>", GW_SENT_SENT, NULL), 0);
	CU_ASSERT_EQUAL(gw_sent_lookup(st, "alice", "<a@x>", &state, NULL, NULL, 0), 0);
	CU_ASSERT_EQUAL(state, GW_SENT_NONE);
	CU_ASSERT_EQUAL(gw_sent_lookup(st, "alice", "<c@x>", &state, NULL, uid, sizeof(uid)), 0);
	CU_ASSERT_EQUAL(state, GW_SENT_SENT);
	CU_ASSERT_STRING_EQUAL(uid, "");
	CU_ASSERT_EQUAL(gw_sent_forget(st, "alice", "<c@x>"), 0);
	CU_ASSERT_EQUAL(gw_sent_lookup(st, "alice", "<c@x>", &state, NULL, NULL, 0), 0);
	CU_ASSERT_EQUAL(state, GW_SENT_NONE);
	/* outside the window nothing is remembered */
	gw_sent_set_limits(st, 0, 2);
	CU_ASSERT_EQUAL(gw_sent_lookup(st, "alice", "<b@x>", &state, NULL, NULL, 0), 0);
	CU_ASSERT_EQUAL(state, GW_SENT_NONE);
	gw_sent_close(st);
	static const char *const files[] = {"sent.db", "sent.db-wal", "sent.db-shm"};
	for (size_t i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		unlink(path);
	}
	CU_ASSERT_EQUAL(rmdir(dir), 0);
}

/* ---- dsn ------------------------------------------------------------------- */

static void test_dsn(void)
{
	const char *orig = "From: Alice <alice@x.org>\nTo: nobody@y.org\nSubject: Lunch?\nMessage-ID: <m1@x>\n\nBody text\n";
	const char *rcpts[] = {"nobody@y.org", "bob@y.org"};
	struct smtp_outcome o;
	smtp_outcome_set(&o, 550, "5.1.1 <nobody@y.org>: User unknown", 34);
	struct dsn_info in = {
		.reporting_host = "laptop.test", .notify = "alice@x.org", .message_id = "<dsn1@laptop.test>",
		.arrival = 1765000000, .now = 1765000600, .rcpts = rcpts, .nrcpts = 2, .reply = &o,
		.remote = "gateway", .original = (const uint8_t *)orig, .original_len = strlen(orig),
		.boundary_seed = "abcd",
	};
	struct buf b;
	buf_init(&b, 0);
	dsn_build(&in, &b);
	char *s = buf_str(&b);
	static const char *const want[] = {
		"From: Mail Delivery System <MAILER-DAEMON@laptop.test>\r\n",
		"To: alice@x.org\r\n",
		"Subject: Undelivered Mail Returned to Sender: Lunch?\r\n",
		"Message-ID: <dsn1@laptop.test>\r\n",
		"Auto-Submitted: auto-replied\r\n",
		"Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"=_pimap_dsn_abcd\"",
		"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; laptop.test\r\n"
		"Arrival-Date: Sat, 06 Dec 2025 05:46:40 +0000\r\n",
		"\r\nFinal-Recipient: rfc822; nobody@y.org\r\nAction: failed\r\nStatus: 5.1.1\r\n"
		"Remote-MTA: dns; gateway\r\nDiagnostic-Code: smtp; 550 5.1.1 <nobody@y.org>: User unknown\r\n",
		"Final-Recipient: rfc822; bob@y.org\r\n",
		"Content-Type: text/rfc822-headers\r\n\r\nFrom: Alice <alice@x.org>\r\nTo: nobody@y.org\r\n",
		"Message-ID: <m1@x>\r\n\r\n\r\n--=_pimap_dsn_abcd--\r\n",
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		if (!strstr(s, want[i]))
			fprintf(stderr, "\n  missing: %s", want[i]);
		CU_ASSERT_PTR_NOT_NULL(strstr(s, want[i]));
	}
	CU_ASSERT_PTR_NULL(strstr(s, "Body text")); /* only the header is returned */
	/* a reply without an enhanced code gets the class's generic status */
	smtp_outcome_set(&o, 451, "try later", 9);
	buf_clear(&b);
	in.remote = "";
	dsn_build(&in, &b);
	free(s);
	s = buf_str(&b);
	CU_ASSERT_PTR_NOT_NULL(strstr(s, "Status: 4.0.0\r\n"));
	CU_ASSERT_PTR_NULL(strstr(s, "Remote-MTA"));
	free(s);
	buf_free(&b);
}

/* ---- outbox ---------------------------------------------------------------- */

static void entry_fill(struct outbox_entry *e, const char *user, const char *msg)
{
	outbox_entry_init(e);
	e->kind = OUTBOX_SEND;
	e->user = strdup(user);
	e->from = strdup("alice@x.org");
	e->rcpts = calloc(2, sizeof(char *));
	e->rcpts[0] = strdup("bob@y.org");
	e->rcpts[1] = strdup("\"c d\"@y.org");
	e->nrcpts = 2;
	e->message_id = strdup("<m@x>");
	e->created = 1765000000.5;
	buf_append_str(&e->msg, msg);
}

static void rm_tree(const char *dir)
{
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	CU_ASSERT_EQUAL(system(cmd), 0);
}

static void test_outbox(void)
{
	char dir[] = "/tmp/pimap-outbox.XXXXXX", err[512], path[700];
	bool busy, full;
	CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
	struct outbox *ob = outbox_open(dir, 1 << 20, &busy, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL_FATAL(ob);
	/* a second opener is refused: one process per outbox */
	struct outbox *ob2 = outbox_open(dir, 1 << 20, &busy, err, sizeof(err));
	CU_ASSERT_PTR_NULL(ob2);
	CU_ASSERT_TRUE(busy);

	struct outbox_entry a, b, got;
	entry_fill(&a, "alice", "Subject: one\r\n\r\nfirst\r\n");
	entry_fill(&b, "alice", "Subject: two\r\n\r\nsecond\r\n");
	b.saveto = strdup("Sent Items");
	CU_ASSERT_EQUAL(outbox_add(ob, &a, &full, err, sizeof(err)), 0);
	usleep(2000);
	CU_ASSERT_EQUAL(outbox_add(ob, &b, &full, err, sizeof(err)), 0);
	size_t n;
	char **names = outbox_list(ob, &n);
	CU_ASSERT_EQUAL_FATAL(n, 2);
	CU_ASSERT_STRING_EQUAL(names[0], a.name); /* in the order accepted */
	CU_ASSERT_STRING_EQUAL(names[1], b.name);
	CU_ASSERT_EQUAL(outbox_load(ob, names[1], &got, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(got.kind, OUTBOX_SEND);
	CU_ASSERT_STRING_EQUAL(got.user, "alice");
	CU_ASSERT_STRING_EQUAL(got.from, "alice@x.org");
	CU_ASSERT_EQUAL(got.nrcpts, 2);
	CU_ASSERT_STRING_EQUAL(got.rcpts[1], "\"c d\"@y.org");
	CU_ASSERT_STRING_EQUAL(got.message_id, "<m@x>");
	CU_ASSERT_STRING_EQUAL(got.saveto, "Sent Items");
	CU_ASSERT(got.created > 1765000000.4 && got.created < 1765000000.6);
	char *m = buf_str(&got.msg);
	CU_ASSERT_STRING_EQUAL(m, "Subject: two\r\n\r\nsecond\r\n");
	free(m);
	/* replace: the same name now holds a report */
	got.kind = OUTBOX_DSN;
	buf_clear(&got.msg);
	buf_append_str(&got.msg, "the report");
	CU_ASSERT_EQUAL(outbox_replace(ob, &got, err, sizeof(err)), 0);
	outbox_entry_free(&got);
	CU_ASSERT_EQUAL(outbox_load(ob, names[1], &got, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(got.kind, OUTBOX_DSN);
	outbox_entry_free(&got);
	CU_ASSERT_EQUAL(outbox_remove(ob, names[0], err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(outbox_load(ob, names[0], &got, err, sizeof(err)), 1);
	outbox_entry_free(&got);
	outbox_names_free(names, n);
	/* full */
	outbox_set_max(ob, 100);
	CU_ASSERT_EQUAL(outbox_add(ob, &a, &full, err, sizeof(err)), -1);
	CU_ASSERT_TRUE(full);
	/* no line breaks in header values */
	outbox_set_max(ob, 1 << 20);
	free(a.user);
	a.user = strdup("ali\nce");
	CU_ASSERT_EQUAL(outbox_add(ob, &a, &full, err, sizeof(err)), -1);
	CU_ASSERT_FALSE(full);
	outbox_close(ob);
	/* a crash before the rename leaves a file in tmp/: it was never acknowledged, and goes */
	snprintf(path, sizeof(path), "%s/outbox/tmp/0000000000000001-00000001-00000001", dir);
	FILE *f = fopen(path, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fputs("partial", f);
	fclose(f);
	ob = outbox_open(dir, 1 << 20, &busy, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL_FATAL(ob);
	CU_ASSERT_EQUAL(access(path, F_OK), -1);
	names = outbox_list(ob, &n);
	CU_ASSERT_EQUAL(n, 1);
	outbox_names_free(names, n);
	/* a damaged entry is an error, not a crash */
	outbox_entry_init(&got);
	CU_ASSERT_EQUAL(outbox_parse((const uint8_t *)"pimap-outbox 1\nkind send\n", 25, &got, err, sizeof(err)), -1);
	outbox_entry_free(&got);
	outbox_entry_init(&got);
	CU_ASSERT_EQUAL(outbox_parse((const uint8_t *)"garbage\n\n", 9, &got, err, sizeof(err)), -1);
	outbox_entry_free(&got);
	outbox_close(ob);
	outbox_entry_free(&a);
	outbox_entry_free(&b);
	rm_tree(dir);
}

void suite_sending(void)
{
	ADD_SUITE("sending", {"header fields", test_header_get}, {"address lists", test_address_list},
	          {"Message-ID", test_message_id}, {"SMTP data", test_smtp_data},
	          {"XDELIVER parse", test_xdeliver_parse}, {"XDELIVER format", test_xdeliver_format},
	          {"XDELIVER results", test_xdeliver_results}, {"SMTP replies", test_smtp_reply},
	          {"re-attach", test_mime_attach}, {"sent memory", test_gw_sent},
	          {"DSN", test_dsn}, {"outbox", test_outbox});
}
