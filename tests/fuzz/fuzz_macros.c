/*
 * fuzz_macros.c - libFuzzer target for the macro loader and its use
 * (macros.c): a macro file, then client commands to match against it.
 *
 * Input: a YAML document, optionally followed by the separator line
 * "\n%%\n" and a stream of client commands. Checks:
 *  - a refused file has a "name:line:column: message" or "name: message"
 *    error; an accepted one reports consistent counts;
 *  - for every command: whatever a macro expands to parses as one command
 *    and is read-only (macro_command_is_read_only) - a macro never makes
 *    the proxy send something with a side effect, whatever the file and
 *    the client send;
 *  - a prefetch never claims a command with side effects, and claims are
 *    consistent (an EXACT claim is of the same command name);
 *  - a client's new-mail fetch items make a read-only FETCH;
 *  - nothing leaks.
 *
 * Corpus: tests/fuzz/corpus/macros (the shipped macro files mutt.yaml and thunderbird.yaml, and the unit
 * tests' documents); dictionary tests/fuzz/macros.dict.
 */
#include "config.h"

#include <strings.h>

#include "fuzz.h"
#include "macros.h"

#define SEPARATOR "\n%%\n"

/* "x " + text + CRLF parsed as one command, or NULL. */
static struct imap_parser *parse_text(const char *prefix, const char *text)
{
	struct buf line;
	buf_init(&line, 0);
	buf_append_str(&line, prefix);
	buf_append_str(&line, text);
	buf_append(&line, "\r\n", 2);
	struct imap_parser *p = fuzz_parse_whole(IMAP_PARSE_COMMANDS, buf_head(&line), buf_len(&line));
	buf_free(&line);
	return p;
}

/* The ID fields of "ID (k v k v ...)" as macro_client_find wants them; NULL if none. */
static char **id_fields(const struct imap_msg *m)
{
	if (m->nargs < 2 || !imap_arg_is_atom(&m->args[0], "ID") || m->args[1].type != IMAP_ARG_LIST)
		return NULL;
	size_t n = m->args[1].list_count;
	char **kv = calloc(n + 2, sizeof(*kv));
	FUZZ_CHECK(kv != NULL);
	size_t k = 0;
	for (size_t i = 0; i + 1 < n; i += 2) {
		const struct imap_arg *f = &m->args[1].list[i], *v = &m->args[1].list[i + 1];
		if (!imap_arg_is_string(f) || !imap_arg_is_string(v) || imap_arg_is_atom(v, "NIL"))
			continue;
		kv[k++] = strdup(f->str);
		kv[k++] = strdup(v->str);
	}
	return kv;
}

static void free_fields(char **kv)
{
	for (size_t i = 0; kv && kv[i]; i++)
		free(kv[i]);
	free(kv);
}

static void check_command(const struct macro_client *mc, const struct imap_msg *cmd)
{
	char **cmds = NULL;
	size_t n = macro_expand(mc, cmd, &cmds);
	FUZZ_CHECK(n <= MACRO_MAX_SEND);
	FUZZ_CHECK((n == 0) == (cmds == NULL));
	for (size_t i = 0; i < n; i++) {
		struct imap_parser *p = parse_text("x ", cmds[i]);
		if (!p)
			fprintf(stderr, "expanded to an unparseable command: %s\n", cmds[i]);
		FUZZ_CHECK(p != NULL);
		FUZZ_CHECK(macro_command_is_read_only(imap_parser_msg(p)));
		imap_parser_free(p);

		/* Could the prefetch answer the client's command? */
		struct macro_claim claim;
		enum macro_claim_kind kind = macro_claim(cmds[i], cmd, &claim);
		FUZZ_CHECK(kind == claim.kind);
		if (kind != MACRO_CLAIM_NONE) {
			/* Only a read-only client command can be answered from a prefetch. */
			FUZZ_CHECK(macro_command_is_read_only(cmd));
			(void)macro_claim_covers(&claim, 10, 10);
			(void)macro_claim_covers(&claim, 0, 4000000000u);
		}
		macro_claim_free(&claim);
	}
	macro_free_commands(cmds, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	const char *sep = NULL;
	for (size_t i = 0; i + strlen(SEPARATOR) <= size; i++) {
		if (memcmp(text + i, SEPARATOR, strlen(SEPARATOR)) == 0) {
			sep = text + i;
			break;
		}
	}
	size_t ylen = sep ? (size_t)(sep - text) : size;

	char err[512] = "";
	struct macro_set *set = macro_set_load_string("fuzz.yaml", text, ylen, err, sizeof(err));
	if (!set) {
		FUZZ_CHECK(strncmp(err, "fuzz.yaml", 9) == 0);
		return 0;
	}
	FUZZ_CHECK(macro_set_client_count(set) <= MACRO_MAX_PER_FILE * 1000);
	if (macro_set_client_count(set) == 0)
		FUZZ_CHECK(macro_set_count(set) == 0);

	/* Every client's new-mail items make a read-only FETCH. */
	const struct macro_client *by_listener = macro_client_find(set, NULL, "stdio");
	if (by_listener) {
		FUZZ_CHECK(macro_client_name(by_listener) != NULL);
		const char *items = macro_client_fetch_items(by_listener);
		if (items) {
			struct buf b;
			buf_init(&b, 0);
			buf_printf(&b, "1:* %s", items);
			struct imap_parser *p = parse_text("x UID FETCH ", fuzz_buf_cstr(&b));
			buf_free(&b);
			if (p) {
				FUZZ_CHECK(macro_command_is_read_only(imap_parser_msg(p)));
				imap_parser_free(p);
			}
		}
	}

	if (sep) {
		const uint8_t *cmds = (const uint8_t *)sep + strlen(SEPARATOR);
		size_t left = size - (size_t)(cmds - data);
		struct imap_parser *p = imap_parser_new(IMAP_PARSE_COMMANDS, NULL);
		const struct macro_client *mc = by_listener;
		char **kv = NULL;
		while (left > 0) {
			size_t used = 0;
			enum imap_parse_result r = imap_parser_feed(p, cmds, left, &used);
			cmds += used;
			left -= used;
			if (r == IMAP_PARSE_NEED_MORE)
				break;
			if (r == IMAP_PARSE_ERROR) {
				if (!imap_parser_error_recoverable(p))
					break;
				imap_parser_skip_line(p);
				continue;
			}
			const struct imap_msg *m = imap_parser_msg(p);
			if (m->kind == IMAP_MSG_COMMAND) {
				char **fields = id_fields(m);
				if (fields) {
					/* The client said who it is: that decides the macros from now on. */
					free_fields(kv);
					kv = fields;
					const struct macro_client *by_id = macro_client_find(set, (const char *const *)kv, NULL);
					if (by_id)
						mc = by_id;
				} else if (mc) {
					check_command(mc, m);
				}
			}
			imap_parser_reset(p);
		}
		free_fields(kv);
		imap_parser_free(p);
	}
	macro_set_free(set);
	return 0;
}
