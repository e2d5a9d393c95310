/*
 * Unit tests for smtp_cmd.c (the reader of client input and the command
 * parser) and smtp_server.c (the submission state machine).
 *
 * Every script is run whole, one byte at a time and in random splits; each
 * way must give the same transcript. A transcript is one line per event:
 * reader events with the line or message, or for the server the replies it
 * wrote and the actions it asked for (the test plays the owner: password
 * "secret" is good, "down" cannot be checked, a message is accepted with
 * 250 unless its first line says "reject").
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include "buf.h"
#include "smtp_cmd.h"
#include "smtp_server.h"
#include "suites.h"

#define RANDOM_SPLITS 24

/* split 0: whole; 1: byte by byte; else: random chunks seeded by split. */
static size_t chunk_size(int split, size_t left)
{
	if (split == 0)
		return left;
	if (split == 1)
		return 1;
	return 1 + (size_t)rand() % left;
}

/* ---- the reader ----------------------------------------------------------- */

static void escape(struct buf *out, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\r')
			buf_append_str(out, "\\r");
		else if (c == '\n')
			buf_append_str(out, "\\n");
		else if (c < 0x20)
			buf_printf(out, "\\x%02x", c);
		else
			buf_append(out, &s[i], 1);
	}
}

/* Run the reader over input; DATA starts after a line "DATA". */
static char *read_events(const char *input, size_t len, size_t max_message, int split)
{
	struct smtp_in *in = smtp_in_new(max_message);
	struct buf t;
	buf_init(&t, 0);
	srand((unsigned)split);
	size_t pos = 0;
	while (pos < len) {
		size_t n = chunk_size(split, len - pos), used;
		size_t off = 0;
		while (off < n) {
			enum smtp_in_event ev = smtp_in_feed(in, (const uint8_t *)input + pos + off, n - off, &used);
			off += used;
			size_t ll;
			const char *line;
			switch (ev) {
			case SMTP_IN_NEED_MORE:
				if (used == 0)
					off = n; /* dead reader */
				break;
			case SMTP_IN_LINE:
				line = smtp_in_line(in, &ll);
				buf_append_str(&t, "LINE ");
				escape(&t, line, ll);
				buf_append_str(&t, "\n");
				if (ll == 4 && strncmp(line, "DATA", 4) == 0)
					smtp_in_begin_data(in);
				break;
			case SMTP_IN_LINE_TOO_LONG:
				buf_append_str(&t, "TOOLONG\n");
				break;
			case SMTP_IN_BARE_LF:
				buf_append_str(&t, "BARELF\n");
				break;
			case SMTP_IN_DATA_END:
				buf_printf(&t, "DATA%s %llu ", smtp_in_data_too_big(in) ? " too big" : "",
				           (unsigned long long)smtp_in_data_size(in));
				escape(&t, (const char *)buf_head(smtp_in_data(in)), buf_len(smtp_in_data(in)));
				buf_append_str(&t, "\n");
				break;
			case SMTP_IN_DATA_BARE_LF:
				buf_append_str(&t, "DATA BARELF\n");
				break;
			}
		}
		pos += n;
	}
	char *s = buf_str(&t);
	buf_free(&t);
	smtp_in_free(in);
	return s;
}

static void check_reader(const char *input, size_t len, size_t max, const char *want)
{
	char *whole = read_events(input, len, max, 0);
	if (strcmp(whole, want) != 0)
		fprintf(stderr, "\n  got:\n%s  want:\n%s", whole, want);
	CU_ASSERT_STRING_EQUAL(whole, want);
	for (int split = 1; split < 2 + RANDOM_SPLITS; split++) {
		char *other = read_events(input, len, max, split);
		CU_ASSERT_STRING_EQUAL(other, whole);
		free(other);
	}
	free(whole);
}

#define READER(in, max, want) check_reader(in, sizeof(in) - 1, max, want)

static void test_reader(void)
{
	READER("EHLO x\r\nMAIL FROM:<a@b>\r\nNOOP\r\n", 100, "LINE EHLO x\nLINE MAIL FROM:<a@b>\nLINE NOOP\n");
	READER("DATA\r\nHello\r\n..dot\r\n\r\n.x\r\n.\r\nQUIT\r\n", 100,
	       "LINE DATA\nDATA 18 Hello\\r\\n.dot\\r\\n\\r\\nx\\r\\n\nLINE QUIT\n");
	READER("DATA\r\n.\r\n", 100, "LINE DATA\nDATA 0 \n");
	READER("NOOP\nRSET\r\n", 100, "BARELF\nLINE RSET\n");
	READER("\r\n", 100, "LINE \n");
	/* a bare LF or CR in DATA ends the reader: nothing after it is read */
	READER("DATA\r\nline\nnext\r\n.\r\nNOOP\r\n", 100, "LINE DATA\nDATA BARELF\n");
	READER("DATA\r\nbare\rcr\r\n.\r\n", 100, "LINE DATA\nDATA BARELF\n");
	READER("DATA\r\n.\nend\r\n.\r\n", 100, "LINE DATA\nDATA BARELF\n");
	READER("DATA\r\nabc\r\n.\rx", 100, "LINE DATA\nDATA BARELF\n");
	/* over max_message: counted, dropped, reported at the end */
	READER("DATA\r\n0123456789\r\n0123456789\r\n.\r\nNOOP\r\n", 15, "LINE DATA\nDATA too big 24 \nLINE NOOP\n");
	/* a command line over the limit is dropped through its LF */
	struct buf b;
	buf_init(&b, 0);
	for (int i = 0; i < SMTP_MAX_COMMAND_LINE; i++)
		buf_append(&b, "x", 1);
	buf_append_str(&b, "\r\nNOOP\r\n");
	char *s = buf_str(&b);
	check_reader(s, strlen(s), 100, "TOOLONG\nLINE NOOP\n");
	free(s);
	/* the longest line that fits: SMTP_MAX_COMMAND_LINE bytes with its CRLF */
	buf_clear(&b);
	for (int i = 0; i < SMTP_MAX_COMMAND_LINE - 2; i++)
		buf_append(&b, "y", 1);
	buf_append_str(&b, "\r\n");
	s = buf_str(&b);
	char *ev = read_events(s, strlen(s), 100, 0);
	CU_ASSERT_EQUAL(strncmp(ev, "LINE yyy", 8), 0);
	free(ev);
	free(s);
	buf_free(&b);
}

static void test_command_parse(void)
{
	struct {
		const char *line;
		enum smtp_verb verb;
		enum smtp_parse_status st;
		const char *path, *params;
	} cases[] = {
		{"MAIL FROM:<a@b.org> SIZE=10 BODY=8BITMIME", SMTP_VERB_MAIL, SMTP_PARSE_OK, "a@b.org", "SIZE=10 BODY=8BITMIME"},
		{"mail from: <a@b.org>", SMTP_VERB_MAIL, SMTP_PARSE_OK, "a@b.org", ""},
		{"MAIL FROM:<>", SMTP_VERB_MAIL, SMTP_PARSE_OK, "", ""},
		{"RCPT TO:<>", SMTP_VERB_RCPT, SMTP_PARSE_BAD_ADDRESS, NULL, NULL},
		{"RCPT TO:<@r1,@r2:x@y>", SMTP_VERB_RCPT, SMTP_PARSE_OK, "x@y", ""},
		{"RCPT TO:<\"a >b\"@y>", SMTP_VERB_RCPT, SMTP_PARSE_OK, "\"a >b\"@y", ""},
		{"RCPT TO:x@y", SMTP_VERB_RCPT, SMTP_PARSE_SYNTAX, NULL, NULL},
		{"RCPT FROM:<x@y>", SMTP_VERB_RCPT, SMTP_PARSE_SYNTAX, NULL, NULL},
		{"RCPT TO:<x@y>junk", SMTP_VERB_RCPT, SMTP_PARSE_SYNTAX, NULL, NULL},
		{"RCPT TO:<x y@z>", SMTP_VERB_RCPT, SMTP_PARSE_BAD_ADDRESS, NULL, NULL},
		{"RCPT TO:<nodomain>", SMTP_VERB_RCPT, SMTP_PARSE_BAD_ADDRESS, NULL, NULL},
		{"RCPT TO:<x@y", SMTP_VERB_RCPT, SMTP_PARSE_SYNTAX, NULL, NULL},
		{"ehlo host", SMTP_VERB_EHLO, SMTP_PARSE_OK, "", ""},
		{"BDAT 10 LAST", SMTP_VERB_NOT_IMPLEMENTED, SMTP_PARSE_OK, "", ""},
		{"FROB", SMTP_VERB_UNKNOWN, SMTP_PARSE_OK, "", ""},
		{"STARTTLSX", SMTP_VERB_UNKNOWN, SMTP_PARSE_OK, "", ""},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char line[200];
		struct smtp_command c;
		snprintf(line, sizeof(line), "%s", cases[i].line);
		enum smtp_parse_status st = smtp_command_parse(line, &c);
		if (c.verb != cases[i].verb || st != cases[i].st)
			fprintf(stderr, "\n  %s: verb %d status %d", cases[i].line, c.verb, st);
		CU_ASSERT_EQUAL(c.verb, cases[i].verb);
		CU_ASSERT_EQUAL(st, cases[i].st);
		if (st == SMTP_PARSE_OK && cases[i].path) {
			CU_ASSERT_STRING_EQUAL(c.path, cases[i].path);
			CU_ASSERT_STRING_EQUAL(c.params, cases[i].params);
		}
	}
	char key[16], value[16];
	size_t pos = 0;
	const char *params = "size=10  BODY=8BITMIME FLAG";
	CU_ASSERT_TRUE(smtp_param_next(params, &pos, key, sizeof(key), value, sizeof(value)));
	CU_ASSERT_STRING_EQUAL(key, "SIZE");
	CU_ASSERT_STRING_EQUAL(value, "10");
	CU_ASSERT_TRUE(smtp_param_next(params, &pos, key, sizeof(key), value, sizeof(value)));
	CU_ASSERT_STRING_EQUAL(key, "BODY");
	CU_ASSERT_TRUE(smtp_param_next(params, &pos, key, sizeof(key), value, sizeof(value)));
	CU_ASSERT_STRING_EQUAL(key, "FLAG");
	CU_ASSERT_STRING_EQUAL(value, "");
	CU_ASSERT_FALSE(smtp_param_next(params, &pos, key, sizeof(key), value, sizeof(value)));
}

/* ---- the server ----------------------------------------------------------- */

/* The reply codes of what the server wrote ("250-" or "250 " per line), into t. */
static void dump_output(struct smtp_server *s, struct buf *t)
{
	struct buf *out = smtp_server_output(s);
	const char *o = (const char *)buf_head(out);
	size_t ol = buf_len(out);
	for (size_t i = 0; i < ol;) {
		const char *nl = memchr(o + i, '\n', ol - i);
		size_t e = nl ? (size_t)(nl - o) + 1 : ol;
		buf_append(t, o + i, e - i >= 4 ? 4 : e - i);
		i = e;
	}
	buf_clear(out);
}

/* The transcript of a session: each reply line's code (and "-" or " "), and the actions. */
static char *run_session(const struct smtp_server_config *cfg, const char *input, size_t len, int split,
                         char **message_out)
{
	struct smtp_server *s = smtp_server_new(cfg);
	struct buf t, msgs;
	buf_init(&t, 0);
	buf_init(&msgs, 0);
	smtp_server_greet(s);
	srand((unsigned)split + 1000);
	size_t pos = 0;
	bool closed = false;
	while (!closed) {
		size_t n = pos < len ? chunk_size(split, len - pos) : 0, used;
		enum smtp_action act = smtp_server_input(s, (const uint8_t *)input + pos, n, &used);
		pos += used;
		dump_output(s, &t);
		switch (act) {
		case SMTP_ACTION_NONE:
			break;
		case SMTP_ACTION_STARTTLS:
			buf_append_str(&t, "[tls] ");
			smtp_server_tls_started(s);
			break;
		case SMTP_ACTION_AUTH: {
			const char *pw = smtp_server_auth_password(s);
			buf_printf(&t, "[auth %s] ", smtp_server_auth_user(s));
			smtp_server_auth_done(s, strcmp(pw, "secret") == 0 ? SMTP_AUTH_OK
			                         : strcmp(pw, "down") == 0 ? SMTP_AUTH_TEMPFAIL
			                                                   : SMTP_AUTH_INVALID);
			break;
		}
		case SMTP_ACTION_DELIVER: {
			size_t nr;
			char *const *r = smtp_server_rcpts(s, &nr);
			struct buf *m = smtp_server_message(s);
			buf_printf(&t, "[deliver %s %zu", smtp_server_mail_from(s), nr);
			for (size_t i = 0; i < nr; i++)
				buf_printf(&t, " %s", r[i]);
			buf_append_str(&t, "] ");
			buf_append(&msgs, buf_head(m), buf_len(m));
			buf_append_str(&msgs, "|");
			bool reject = buf_len(m) >= 6 && memcmp(buf_head(m), "reject", 6) == 0;
			smtp_server_deliver_done(s, reject ? 550 : 250, reject ? "5.7.1" : "2.0.0", reject ? "no" : "sent");
			break;
		}
		case SMTP_ACTION_CLOSE:
			buf_append_str(&t, "[close]");
			closed = true;
			break;
		}
		dump_output(s, &t);
		if (act == SMTP_ACTION_NONE && pos >= len)
			break;
	}
	if (message_out)
		*message_out = buf_str(&msgs);
	char *res = buf_str(&t);
	buf_free(&t);
	buf_free(&msgs);
	smtp_server_free(s);
	return res;
}

static const struct smtp_server_config plain_cfg = {
	.hostname = "proxy.test", .max_message = 100, .max_recipients = 2, .tls_offered = true,
	.tls_active = false, .auth_in_clear = true,
};
static const struct smtp_server_config remote_cfg = {
	.hostname = "proxy.test", .max_message = 100, .max_recipients = 2, .tls_offered = true,
	.tls_active = false, .auth_in_clear = false,
};

/* AUTH PLAIN for alice with "secret" / "wrong" / "down". */
#define PLAIN_SECRET "AGFsaWNlAHNlY3JldA=="
#define PLAIN_WRONG "AGFsaWNlAHdyb25n"
#define PLAIN_DOWN "AGFsaWNlAGRvd24="

static void check_session(const struct smtp_server_config *cfg, const char *input, const char *want,
                          const char *want_messages)
{
	char *msgs = NULL;
	char *whole = run_session(cfg, input, strlen(input), 0, &msgs);
	if (strcmp(whole, want) != 0)
		fprintf(stderr, "\n  session: %s\n  got:  %s\n  want: %s\n", input, whole, want);
	CU_ASSERT_STRING_EQUAL(whole, want);
	if (want_messages)
		CU_ASSERT_STRING_EQUAL(msgs, want_messages);
	free(msgs);
	for (int split = 1; split < 2 + RANDOM_SPLITS; split++) {
		char *other = run_session(cfg, input, strlen(input), split, NULL);
		if (strcmp(other, whole) != 0)
			fprintf(stderr, "\n  split %d: %s\n", split, other);
		CU_ASSERT_STRING_EQUAL(other, whole);
		free(other);
	}
	free(whole);
}

static void test_server_sessions(void)
{
	/* the happy path, pipelined */
	check_session(&plain_cfg,
	              "EHLO c\r\nAUTH PLAIN " PLAIN_SECRET "\r\nMAIL FROM:<alice@x> SIZE=20\r\nRCPT TO:<bob@y>\r\n"
	              "RCPT TO:<carol@y>\r\nDATA\r\nHi\r\n..dot\r\n.\r\nQUIT\r\n",
	              "220 250-250-250-250-250-250-250 [auth alice] 235 250 250 250 354 "
	              "[deliver alice@x 2 bob@y carol@y] 250 221 [close]",
	              "Hi\r\n.dot\r\n|");
	/* AUTH LOGIN, with and without initial response; refused and temporary */
	check_session(&plain_cfg,
	              "EHLO c\r\nAUTH LOGIN\r\nYWxpY2U=\r\nd3Jvbmc=\r\nAUTH LOGIN YWxpY2U=\r\nc2VjcmV0\r\nQUIT\r\n",
	              "220 250-250-250-250-250-250-250 334 334 [auth alice] 535 334 [auth alice] 235 221 [close]", NULL);
	check_session(&plain_cfg, "EHLO c\r\nAUTH PLAIN\r\n" PLAIN_DOWN "\r\nMAIL FROM:<a@b>\r\nQUIT\r\n",
	              "220 250-250-250-250-250-250-250 334 [auth alice] 454 530 221 [close]", NULL);
	check_session(&plain_cfg, "EHLO c\r\nAUTH PLAIN\r\n*\r\nAUTH LOGIN\r\n%%%\r\nAUTH CRAM-MD5\r\nQUIT\r\n",
	              "220 250-250-250-250-250-250-250 334 501 334 501 504 221 [close]", NULL);
	/* three failed authentications end the session */
	check_session(&plain_cfg,
	              "EHLO c\r\nAUTH PLAIN " PLAIN_WRONG "\r\nAUTH PLAIN " PLAIN_WRONG "\r\nAUTH PLAIN " PLAIN_WRONG
	              "\r\nNOOP\r\n",
	              "220 250-250-250-250-250-250-250 [auth alice] 535 [auth alice] 535 [auth alice] 535 421 [close]",
	              NULL);
	/* commands out of order */
	check_session(&plain_cfg,
	              "MAIL FROM:<a@b>\r\nAUTH PLAIN " PLAIN_SECRET "\r\nEHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<b@c>\r\n"
	              "DATA\r\nAUTH PLAIN " PLAIN_SECRET "\r\nMAIL FROM:<a@b>\r\nDATA\r\nMAIL FROM:<a@b>\r\nRCPT TO:<b@c>\r\n"
	              "DATA extra\r\nRSET\r\nRCPT TO:<b@c>\r\nQUIT\r\n",
	              "220 503 503 250-250-250-250-250-250-250 530 503 503 [auth alice] 235 250 503 503 250 501 250 503 "
	              "221 [close]",
	              NULL);
	/* AUTH needs TLS for a remote peer: not offered, refused, then fine after STARTTLS */
	check_session(&remote_cfg,
	              "EHLO c\r\nAUTH PLAIN " PLAIN_SECRET "\r\nSTARTTLS\r\nEHLO c\r\nAUTH PLAIN " PLAIN_SECRET
	              "\r\nSTARTTLS\r\nQUIT\r\n",
	              "220 250-250-250-250-250-250 538 220 [tls] 250-250-250-250-250-250 [auth alice] 235 503 221 [close]",
	              NULL);
	/* STARTTLS discards nothing here (the stream does); HELO works too; bad syntax */
	check_session(&plain_cfg, "HELO\r\nHELO c\r\nMAIL FROM:a@b\r\nVRFY x\r\nHELP\r\nBDAT 1\r\nFOO\r\nQUIT\r\n",
	              "220 501 250 530 252 214 502 500 221 [close]", NULL);
	/* size: by the SIZE parameter, and by counting; recipient limit; parameters */
	check_session(&plain_cfg,
	              "EHLO c\r\nAUTH PLAIN " PLAIN_SECRET "\r\nMAIL FROM:<a@b> SIZE=101\r\nMAIL FROM:<a@b> FOO=1\r\n"
	              "MAIL FROM:<a@b> BODY=9BIT\r\nMAIL FROM:<a@b> BODY=8BITMIME AUTH=<>\r\nRCPT TO:<b@c> NOTIFY=NEVER\r\n"
	              "RCPT TO:<1@c>\r\nRCPT TO:<2@c>\r\nRCPT TO:<3@c>\r\nDATA\r\n"
	              "0123456789012345678901234567890123456789012345678901234567890123456789\r\n"
	              "0123456789012345678901234567890123456789\r\n.\r\nRSET\r\nQUIT\r\n",
	              "220 250-250-250-250-250-250-250 [auth alice] 235 552 555 501 250 555 250 250 452 354 552 250 221 "
	              "[close]",
	              NULL);
	/* a refusal from the submission server is passed on and the session goes on */
	check_session(&plain_cfg,
	              "EHLO c\r\nAUTH PLAIN " PLAIN_SECRET "\r\nMAIL FROM:<a@b>\r\nRCPT TO:<b@c>\r\nDATA\r\nreject me\r\n"
	              ".\r\nMAIL FROM:<a@b>\r\nRCPT TO:<b@c>\r\nDATA\r\nfine\r\n.\r\nQUIT\r\n",
	              "220 250-250-250-250-250-250-250 [auth alice] 235 250 250 354 [deliver a@b 1 b@c] 550 250 250 354 "
	              "[deliver a@b 1 b@c] 250 221 [close]",
	              "reject me\r\n|fine\r\n|");
	/* a bare LF in DATA: 521, closed, nothing delivered */
	check_session(&plain_cfg,
	              "EHLO c\r\nAUTH PLAIN " PLAIN_SECRET "\r\nMAIL FROM:<a@b>\r\nRCPT TO:<b@c>\r\nDATA\r\nbad\nline\r\n"
	              ".\r\n",
	              "220 250-250-250-250-250-250-250 [auth alice] 235 250 250 354 521 [close]", "");
	/* a NUL in the message: 554, nothing delivered, the session goes on (XDELIVER cannot carry it) */
	{
		static const char in[] = "EHLO c\r\nAUTH PLAIN " PLAIN_SECRET "\r\nMAIL FROM:<a@b>\r\nRCPT TO:<b@c>\r\n"
		                         "DATA\r\nnul \0 here\r\n.\r\nNOOP\r\n";
		char *msgs = NULL;
		char *got = run_session(&plain_cfg, in, sizeof(in) - 1, 0, &msgs);
		CU_ASSERT_STRING_EQUAL(got, "220 250-250-250-250-250-250-250 [auth alice] 235 250 250 354 554 250 ");
		CU_ASSERT_STRING_EQUAL(msgs, "");
		free(got);
		free(msgs);
	}
	/* a bare LF and a long line in commands: 500, the session goes on */
	struct buf b;
	buf_init(&b, 0);
	buf_append_str(&b, "NOOP\nEHLO ");
	for (int i = 0; i < SMTP_MAX_COMMAND_LINE; i++)
		buf_append(&b, "h", 1);
	buf_append_str(&b, "\r\nNOOP\r\nQUIT\r\n");
	char *in = buf_str(&b);
	check_session(&plain_cfg, in, "220 500 500 250 221 [close]", NULL);
	free(in);
	buf_free(&b);
	/* too many errors */
	check_session(&plain_cfg, "A\r\nB\r\nC\r\nD\r\nE\r\nF\r\nG\r\nH\r\nI\r\nJ\r\nK\r\n",
	              "220 500 500 500 500 500 500 500 500 500 500 421 [close]", NULL);
	/* input with DATA unfinished at the end: nothing delivered */
	check_session(&plain_cfg,
	              "EHLO c\r\nAUTH PLAIN " PLAIN_SECRET "\r\nMAIL FROM:<a@b>\r\nRCPT TO:<b@c>\r\nDATA\r\npartial\r\n",
	              "220 250-250-250-250-250-250-250 [auth alice] 235 250 250 354 ", "");
}

static void test_server_misc(void)
{
	struct smtp_server_config cfg = plain_cfg;
	cfg.tls_offered = false;
	cfg.tls_active = true;
	/* a protected leg (implicit TLS, a pipe): no STARTTLS, AUTH offered */
	check_session(&cfg, "EHLO c\r\nSTARTTLS\r\nQUIT\r\n", "220 250-250-250-250-250-250 503 221 [close]", NULL);
	cfg.tls_active = false;
	check_session(&cfg, "EHLO c\r\nSTARTTLS\r\nQUIT\r\n", "220 250-250-250-250-250-250 454 221 [close]", NULL);
	/* shutdown */
	struct smtp_server *s = smtp_server_new(&plain_cfg);
	size_t used;
	smtp_server_greet(s);
	CU_ASSERT_FALSE(smtp_server_busy(s));
	CU_ASSERT_EQUAL(smtp_server_input(s, (const uint8_t *)"EHLO c\r\n", 8, &used), SMTP_ACTION_NONE);
	smtp_server_shutdown(s, "shutting down");
	CU_ASSERT_EQUAL(smtp_server_input(s, (const uint8_t *)"NOOP\r\n", 6, &used), SMTP_ACTION_CLOSE);
	char *out = buf_str(smtp_server_output(s));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "\r\n421 4.3.2 proxy.test shutting down\r\n"));
	free(out);
	smtp_server_free(s);
}

void suite_smtp_server(void)
{
	ADD_SUITE("smtp server", {"input reader", test_reader}, {"command lines", test_command_parse},
	          {"sessions", test_server_sessions}, {"misc", test_server_misc});
}
