/*
 * fuzz_xdeliver.c - libFuzzer target for XDELIVER (xdeliver.c): the command
 * the gateway parses, the command the proxy writes, and the tagged result
 * that goes back.
 *
 * The first byte picks the case:
 *  - command: "a XDELIVER " + the rest (a CRLF added unless it ends the
 *    input) is parsed as one command; when xdeliver_parse() accepts it,
 *    the recipients are SMTP paths without spaces, CR or LF (they go into
 *    RCPT TO), at most XDELIVER_MAX_RECIPIENTS, and what xdeliver_format()
 *    writes for it parses back to the same command (kind, original,
 *    SAVETO, recipients, message bytes);
 *  - result: the rest is an SMTP reply's code (two bytes) and text; the
 *    tagged result xdeliver_result_format() writes parses as one response,
 *    has no control characters, and xdeliver_result_parse() reads back the
 *    same code and classifies 2xx as sent and 4xx/5xx as rejected;
 *  - tagged: the rest is parsed as any tagged response and classified
 *    (what a gateway may answer): no crash, a code that is an SMTP code.
 *
 * Corpus: tests/fuzz/corpus/xdeliver; dictionary tests/fuzz/xdeliver.dict.
 */
#include "config.h"

#include "fuzz.h"
#include "xdeliver.h"

static struct imap_parser *parse_with_prefix(enum imap_parser_mode mode, const char *prefix, const uint8_t *p,
                                             size_t n)
{
	struct buf line;
	buf_init(&line, 0);
	buf_append_str(&line, prefix);
	buf_append(&line, p, n);
	if (!n || p[n - 1] != '\n')
		buf_append(&line, "\r\n", 2);
	struct imap_parser *parser = fuzz_parse_whole(mode, buf_head(&line), buf_len(&line));
	buf_free(&line);
	return parser;
}

static void check_same(const struct xdeliver_cmd *a, const struct xdeliver_cmd *b)
{
	FUZZ_CHECK(a->kind == b->kind);
	FUZZ_CHECK((a->folder == NULL) == (b->folder == NULL));
	if (a->folder)
		FUZZ_CHECK(strcmp(a->folder, b->folder) == 0 && a->uidvalidity == b->uidvalidity && a->uid == b->uid &&
		           a->reattach == b->reattach);
	FUZZ_CHECK((a->saveto == NULL) == (b->saveto == NULL));
	if (a->saveto)
		FUZZ_CHECK(strcmp(a->saveto, b->saveto) == 0);
	FUZZ_CHECK(a->nrcpts == b->nrcpts);
	for (size_t i = 0; i < a->nrcpts; i++)
		FUZZ_CHECK(strcmp(a->rcpts[i], b->rcpts[i]) == 0);
	FUZZ_CHECK(a->msg_len == b->msg_len && (a->msg_len == 0 || memcmp(a->msg, b->msg, a->msg_len) == 0));
}

static void fuzz_command(const uint8_t *p, size_t n)
{
	struct imap_parser *parser = parse_with_prefix(IMAP_PARSE_COMMANDS, "a XDELIVER ", p, n);
	if (!parser)
		return;
	struct xdeliver_cmd cmd;
	memset(&cmd, 0, sizeof(cmd));
	char err[256] = "";
	if (xdeliver_parse(imap_parser_msg(parser), &cmd, err, sizeof(err)) < 0) {
		FUZZ_CHECK(err[0] != '\0');
		imap_parser_free(parser);
		return;
	}
	FUZZ_CHECK(cmd.nrcpts >= 1 && cmd.nrcpts <= XDELIVER_MAX_RECIPIENTS);
	for (size_t i = 0; i < cmd.nrcpts; i++) {
		/* A recipient goes into "RCPT TO:<...>": no control character at
		 * all, and outside a quoted local part nothing that ends the path. */
		const char *c = cmd.rcpts[i];
		for (const char *q = c; *q; q++)
			FUZZ_CHECK((unsigned char)*q >= 0x20 && *q != 0x7f);
		if (*c == '"') {
			for (c++; *c && *c != '"'; c++)
				if (*c == '\\' && c[1])
					c++;
			FUZZ_CHECK(*c == '"');
			c++;
		}
		for (; *c; c++)
			FUZZ_CHECK(*c != '<' && *c != '>' && *c != ' ');
	}
	struct buf out;
	buf_init(&out, 0);
	if (xdeliver_format(&out, &cmd) == 0) {
		struct buf line;
		buf_init(&line, 0);
		buf_append_str(&line, "b ");
		buf_append(&line, buf_head(&out), buf_len(&out));
		struct imap_parser *again = fuzz_parse_whole(IMAP_PARSE_COMMANDS, buf_head(&line), buf_len(&line));
		if (!again)
			fprintf(stderr, "unparseable: %.*s\n", (int)buf_len(&line), (const char *)buf_head(&line));
		FUZZ_CHECK(again != NULL);
		struct xdeliver_cmd cmd2;
		memset(&cmd2, 0, sizeof(cmd2));
		int rc = xdeliver_parse(imap_parser_msg(again), &cmd2, err, sizeof(err));
		if (rc < 0)
			fprintf(stderr, "refused: %s: %.*s\n", err, (int)buf_len(&line), (const char *)buf_head(&line));
		FUZZ_CHECK(rc == 0);
		check_same(&cmd, &cmd2);
		xdeliver_cmd_free(&cmd2);
		imap_parser_free(again);
		buf_free(&line);
	}
	buf_free(&out);
	xdeliver_cmd_free(&cmd);
	imap_parser_free(parser);
}

static void fuzz_result(const uint8_t *p, size_t n)
{
	if (n < 2)
		return;
	int code = 200 + (p[0] << 8 | p[1]) % 400;
	struct smtp_outcome o;
	smtp_outcome_set(&o, code, (const char *)p + 2, n - 2);
	FUZZ_CHECK(o.code == code);
	for (const char *c = o.text; *c; c++)
		FUZZ_CHECK((unsigned char)*c >= 0x20 && *c != 0x7f);
	struct buf out;
	buf_init(&out, 0);
	buf_append_str(&out, "a ");
	xdeliver_result_format(&out, &o, (p[0] & 1) ? "17 42" : NULL, (p[1] & 1) ? "relayed:" : NULL);
	buf_append(&out, "\r\n", 2);
	FUZZ_CHECK(memchr(buf_head(&out), '\n', buf_len(&out) - 1) == NULL);
	struct imap_parser *parser = fuzz_parse_whole(IMAP_PARSE_RESPONSES, buf_head(&out), buf_len(&out));
	if (!parser)
		fprintf(stderr, "unparseable: %.*s\n", (int)buf_len(&out), (const char *)buf_head(&out));
	FUZZ_CHECK(parser != NULL);
	struct smtp_outcome back;
	enum xdeliver_status st = xdeliver_result_parse(imap_parser_msg(parser), &back);
	if (code < 300)
		FUZZ_CHECK(st == XDELIVER_SENT);
	else if (code >= 400)
		FUZZ_CHECK(st == XDELIVER_REJECTED);
	if (st == XDELIVER_SENT || st == XDELIVER_REJECTED)
		FUZZ_CHECK(back.code == code);
	imap_parser_free(parser);
	buf_free(&out);
}

static void fuzz_tagged(const uint8_t *p, size_t n)
{
	struct imap_parser *parser = parse_with_prefix(IMAP_PARSE_RESPONSES, "a ", p, n);
	if (!parser)
		return;
	const struct imap_msg *m = imap_parser_msg(parser);
	if (m->kind == IMAP_MSG_TAGGED) {
		struct smtp_outcome o;
		(void)xdeliver_result_parse(m, &o);
		FUZZ_CHECK(o.code >= 200 && o.code <= 599);
	}
	imap_parser_free(parser);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	switch (data[0] % 3) {
	case 0:
		fuzz_command(data + 1, size - 1);
		break;
	case 1:
		fuzz_result(data + 1, size - 1);
		break;
	default:
		fuzz_tagged(data + 1, size - 1);
		break;
	}
	return 0;
}
