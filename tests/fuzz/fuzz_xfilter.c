/*
 * fuzz_xfilter.c - libFuzzer target for XFILTER criteria (xfilter.c) and the
 * user's filter file (filters.c).
 *
 * The first byte picks the case:
 *  - command: "a XFILTER " + the rest is parsed as one command and given to
 *    xfilter_parse_command(). An accepted value is canonical: it validates
 *    and canonicalises to itself (the stored text is stable), has no key
 *    on something that changes (flags, keywords,
 *    MODSEQ, UIDs, save dates: xfilter_check_text refuses them), and
 *    XFILTER GET's rendering of it parses as a response; the search text
 *    the gateway sends to the store for it (xfilter_resolve, for a date from
 *    the input) parses as a UID SEARCH;
 *  - text: the rest is criteria as text (xfilter_canonical_text), with the
 *    same checks on what is accepted;
 *  - file: the rest is a filter file (YAML); when it loads, the XFILTER
 *    commands the proxy sends at login parse as commands and are accepted
 *    by the gateway's parser.
 *
 * Corpus: tests/fuzz/corpus/xfilter; dictionary tests/fuzz/xfilter.dict.
 */
#include "config.h"

#include "filters.h"
#include "fuzz.h"
#include "xfilter.h"

static void check_canonical(const char *value, long today)
{
	char err[256];
	FUZZ_CHECK(strlen(value) <= XFILTER_MAX_TEXT);
	FUZZ_CHECK(xfilter_check_text(value, err, sizeof(err)) == XFILTER_OK);
	if (xfilter_is_all(value) || xfilter_is_none(value))
		return;
	struct buf again;
	buf_init(&again, 0);
	FUZZ_CHECK(xfilter_canonical_text(value, &again, err, sizeof(err)) == XFILTER_OK);
	if (strcmp(fuzz_buf_cstr(&again), value) != 0)
		fprintf(stderr, "not stable: %s -> %s\n", value, (const char *)buf_head(&again));
	FUZZ_CHECK(strcmp(fuzz_buf_cstr(&again), value) == 0);
	buf_free(&again);

	/* XFILTER GET's rendering parses as an untagged response. */
	struct buf resp;
	buf_init(&resp, 0);
	buf_append_str(&resp, "* XFILTER INBOX V ");
	xfilter_response_text(value, &resp);
	buf_append(&resp, "\r\n", 2);
	struct imap_parser *p = fuzz_parse_whole(IMAP_PARSE_RESPONSES, buf_head(&resp), buf_len(&resp));
	if (!p)
		fprintf(stderr, "unparseable: %.*s\n", (int)buf_len(&resp), (const char *)buf_head(&resp));
	FUZZ_CHECK(p != NULL);
	imap_parser_free(p);
	buf_free(&resp);

	/* What goes to the store parses as a search, with no DAYSBEFORETODAY left. */
	struct buf keys;
	buf_init(&keys, 0);
	FUZZ_CHECK(xfilter_resolve(value, today, &keys) == 0);
	struct buf cmd;
	buf_init(&cmd, 0);
	buf_append_str(&cmd, "G1 UID SEARCH ");
	if (xfilter_needs_utf8(value))
		buf_append_str(&cmd, "CHARSET UTF-8 ");
	buf_append(&cmd, buf_head(&keys), buf_len(&keys));
	buf_append(&cmd, "\r\n", 2);
	p = fuzz_parse_whole(IMAP_PARSE_COMMANDS, buf_head(&cmd), buf_len(&cmd));
	if (!p)
		fprintf(stderr, "unparseable: %.*s\n", (int)buf_len(&cmd), (const char *)buf_head(&cmd));
	FUZZ_CHECK(p != NULL);
	imap_parser_free(p);
	buf_free(&cmd);
	buf_free(&keys);
}

static void fuzz_command(const uint8_t *p, size_t n, long today)
{
	struct buf line;
	buf_init(&line, 0);
	buf_append_str(&line, "a XFILTER ");
	buf_append(&line, p, n);
	if (!n || p[n - 1] != '\n')
		buf_append(&line, "\r\n", 2);
	struct imap_parser *parser = fuzz_parse_whole(IMAP_PARSE_COMMANDS, buf_head(&line), buf_len(&line));
	buf_free(&line);
	if (!parser)
		return;
	const struct imap_msg *m = imap_parser_msg(parser);
	struct xfilter_cmd cmd;
	memset(&cmd, 0, sizeof(cmd));
	char err[256] = "";
	enum xfilter_result r = xfilter_parse_command(m->args + 1, m->nargs - 1, &cmd, err, sizeof(err));
	if (r == XFILTER_OK) {
		FUZZ_CHECK(cmd.which & (XFILTER_VIEW | XFILTER_NOTIFY));
		if (!cmd.get) {
			FUZZ_CHECK(cmd.value != NULL);
			check_canonical(cmd.value, today);
		}
		xfilter_cmd_free(&cmd);
	} else {
		FUZZ_CHECK(err[0] != '\0');
	}
	imap_parser_free(parser);
}

static void fuzz_text(const uint8_t *p, size_t n, long today)
{
	struct fuzz_in in = {p, n};
	char *text = fuzz_cstr(&in, NULL);
	struct buf out;
	buf_init(&out, 0);
	char err[256] = "";
	if (xfilter_canonical_text(text, &out, err, sizeof(err)) == XFILTER_OK)
		check_canonical(fuzz_buf_cstr(&out), today);
	else
		FUZZ_CHECK(err[0] != '\0');
	buf_free(&out);
	free(text);
}

/* Every command the proxy would send parses, and the gateway's parser accepts it. */
static void check_sent(char **cmds, size_t ncmds)
{
	for (size_t i = 0; i < ncmds; i++) {
		struct buf line;
		buf_init(&line, 0);
		buf_printf(&line, "a %s\r\n", cmds[i]);
		struct imap_parser *parser = fuzz_parse_whole(IMAP_PARSE_COMMANDS, buf_head(&line), buf_len(&line));
		if (!parser)
			fprintf(stderr, "unparseable: %s\n", cmds[i]);
		FUZZ_CHECK(parser != NULL);
		const struct imap_msg *m = imap_parser_msg(parser);
		FUZZ_CHECK(imap_arg_is_atom(&m->args[0], "XFILTER"));
		struct xfilter_cmd cmd;
		memset(&cmd, 0, sizeof(cmd));
		char err[256] = "";
		enum xfilter_result r = xfilter_parse_command(m->args + 1, m->nargs - 1, &cmd, err, sizeof(err));
		if (r != XFILTER_OK)
			fprintf(stderr, "the gateway refuses what the proxy sends: %s: %s\n", cmds[i], err);
		FUZZ_CHECK(r == XFILTER_OK);
		xfilter_cmd_free(&cmd);
		imap_parser_free(parser);
		buf_free(&line);
	}
	filter_free_commands(cmds, ncmds);
}

static void fuzz_file(const uint8_t *p, size_t n)
{
	char err[512] = "";
	struct filter_set *set = filter_set_load_string("fuzz.yaml", (const char *)p, n, err, sizeof(err));
	if (!set) {
		FUZZ_CHECK(strncmp(err, "fuzz.yaml", 9) == 0);
		return;
	}
	struct xfilter_set table;
	xfilter_set_init(&table);
	char **cmds = NULL;
	size_t ncmds = filter_sync_login(set, &table, &cmds);
	check_sent(cmds, ncmds);
	/* folders met later (a SELECT): glob rules apply there */
	static const char *const later[] = {"INBOX", "Archive/2026", "Lists/pimap", "Junk", "\"quoted\" {5}"};
	for (size_t i = 0; i < sizeof(later) / sizeof(later[0]); i++) {
		ncmds = filter_sync_mailbox(set, &table, later[i], &cmds);
		check_sent(cmds, ncmds);
	}
	(void)filter_set_events(set);
	xfilter_set_free(&table);
	filter_set_free(set);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	/* A date between 1970 and about 2150, from the first byte. */
	long today = 20000 + (long)data[0] * 200;
	switch (data[0] % 3) {
	case 0:
		fuzz_command(data + 1, size - 1, today);
		break;
	case 1:
		fuzz_text(data + 1, size - 1, today);
		break;
	default:
		fuzz_file(data + 1, size - 1);
		break;
	}
	return 0;
}
