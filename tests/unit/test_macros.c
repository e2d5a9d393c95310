/*
 * test_macros.c - command macros (macros.c): loading and every load error
 * with its exact position, the read-only rule, choosing the client,
 * expansion with placeholders, claims, and the shipped macro files.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "imap_parse.h"
#include "macros.h"
#include "suites.h"

/* ---- helpers ---------------------------------------------------------------- */

static struct macro_set *load(const char *yaml, char *err, size_t errlen)
{
	return macro_set_load_string("t.yaml", yaml, strlen(yaml), err, errlen);
}

/* Load yaml and expect exactly this error ("t.yaml:line:column: message"). */
static void expect_error(const char *yaml, const char *want)
{
	char err[512] = "";
	struct macro_set *set = load(yaml, err, sizeof(err));

	CU_ASSERT_PTR_NULL(set);
	CU_ASSERT_STRING_EQUAL(err, want);
	if (strcmp(err, want) != 0)
		fprintf(stderr, "\n  yaml: %s\n  want: %s\n  got:  %s\n", yaml, want, err);
	macro_set_free(set);
}

/* A parsed client command; keeps the parser alive while the message is used. */
struct cmd {
	struct imap_parser    *parser;
	const struct imap_msg *msg;
};

static void cmd_parse(struct cmd *c, const char *text)
{
	struct buf line;
	size_t used = 0;
	enum imap_parse_result r;

	c->parser = imap_parser_new(IMAP_PARSE_COMMANDS, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(c->parser);
	buf_init(&line, 0);
	buf_printf(&line, "a1 %s\r\n", text);
	r = imap_parser_feed(c->parser, buf_head(&line), buf_len(&line), &used);
	CU_ASSERT_EQUAL_FATAL(r, IMAP_PARSE_DONE);
	c->msg = imap_parser_msg(c->parser);
	buf_free(&line);
}

/* A command whose literal payloads are given separately: "SELECT {n}\r\n" + payload. */
static void cmd_parse_raw(struct cmd *c, const char *raw, size_t len)
{
	size_t used = 0;

	c->parser = imap_parser_new(IMAP_PARSE_COMMANDS, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(c->parser);
	CU_ASSERT_EQUAL_FATAL(imap_parser_feed(c->parser, (const uint8_t *)raw, len, &used), IMAP_PARSE_DONE);
	c->msg = imap_parser_msg(c->parser);
}

static void cmd_free(struct cmd *c)
{
	imap_parser_free(c->parser);
}

static bool read_only(const char *text)
{
	struct cmd c;
	bool ok;

	cmd_parse(&c, text);
	ok = macro_command_is_read_only(c.msg);
	cmd_free(&c);
	return ok;
}

/*
 * Expand client command text with the set's first client; returns the
 * commands joined by " | " (or "" if nothing fires) in a static buffer.
 */
static const char *expand(const struct macro_client *mc, const char *text)
{
	static char joined[4096];
	struct cmd c;
	char **out = (char **)1;
	size_t n;

	cmd_parse(&c, text);
	n = macro_expand(mc, c.msg, &out);
	joined[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(joined);
		snprintf(joined + len, sizeof(joined) - len, "%s%s", i ? " | " : "", out[i]);
	}
	if (n == 0)
		CU_ASSERT_PTR_NULL(out);
	macro_free_commands(out, n);
	cmd_free(&c);
	return joined;
}

static const char *expand_raw(const struct macro_client *mc, const char *raw, size_t len)
{
	static char joined[4096];
	struct cmd c;
	char **out = NULL;
	size_t n;

	cmd_parse_raw(&c, raw, len);
	n = macro_expand(mc, c.msg, &out);
	joined[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(joined);
		snprintf(joined + l, sizeof(joined) - l, "%s%s", i ? " | " : "", out[i]);
	}
	macro_free_commands(out, n);
	cmd_free(&c);
	return joined;
}

static enum macro_claim_kind claim(const char *prefetch, const char *client, struct macro_claim *out)
{
	struct cmd c;
	enum macro_claim_kind k;

	cmd_parse(&c, client);
	k = macro_claim(prefetch, c.msg, out);
	cmd_free(&c);
	return k;
}

static enum macro_claim_kind claim_kind(const char *prefetch, const char *client)
{
	struct macro_claim cl;
	enum macro_claim_kind k = claim(prefetch, client, &cl);

	CU_ASSERT_EQUAL(cl.kind, k);
	macro_claim_free(&cl);
	return k;
}

/* The set's compact text. */
static const char *fmt(const struct uidset *set)
{
	static char text[256];
	struct buf out;

	buf_init(&out, 0);
	uidset_format(set, &out);
	snprintf(text, sizeof(text), "%.*s", (int)buf_len(&out), buf_len(&out) ? (const char *)buf_head(&out) : "");
	buf_free(&out);
	return text;
}

/* A client whose only macro sends the given command: "" if it loads, else the error. */
static const char *send_error(const char *command)
{
	static char err[512];
	char yaml[2048];
	struct macro_set *set;

	snprintf(yaml, sizeof(yaml),
	         "client:\n  name: c\n  listen: stdio\nmacros:\n  - name: m\n    trigger: \"SELECT {box}\"\n"
	         "    send: ['%s']\n", command);
	err[0] = '\0';
	set = load(yaml, err, sizeof(err));
	macro_set_free(set);
	return err;
}

/* ---- loading ------------------------------------------------------------------------- */

static const char good_yaml[] =
	"# a comment\n"
	"client:\n"
	"  name: mutt\n"
	"  id:\n"
	"    name: \"Mutt*\"\n"
	"  listen: [\"stdio\", \"127.0.0.1:1144\"]\n"
	"macros:\n"
	"  - name: open-folder\n"
	"    trigger: \"SELECT {mailbox}\"\n"
	"    send:\n"
	"      - \"FETCH 1:* (UID FLAGS)\"\n"
	"      - \"STATUS {mailbox} (MESSAGES UNSEEN)\"\n"
	"  - name: flags\n"
	"    trigger: UID FETCH 1:* (FLAGS)\n"
	"    send: [\"UID SEARCH UNSEEN\"]\n";

static void test_load_good(void)
{
	char err[512] = "x";
	struct macro_set *set = load(good_yaml, err, sizeof(err));
	const struct macro_client *c;

	CU_ASSERT_PTR_NOT_NULL_FATAL(set);
	CU_ASSERT_STRING_EQUAL(err, "x"); /* untouched on success */
	CU_ASSERT_EQUAL(macro_set_count(set), 2);
	CU_ASSERT_EQUAL(macro_set_client_count(set), 1);
	c = macro_client_find(set, NULL, "127.0.0.1:1144");
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	CU_ASSERT_STRING_EQUAL(macro_client_name(c), "mutt");
	CU_ASSERT_STRING_EQUAL(expand(c, "SELECT INBOX"), "FETCH 1:* (UID FLAGS) | STATUS INBOX (MESSAGES UNSEEN)");
	CU_ASSERT_STRING_EQUAL(expand(c, "uid fetch 1:* (flags)"), "UID SEARCH UNSEEN");
	macro_set_free(set);

	/* a client may have only an id, a listen may be one string, id may be null with listen */
	set = load("client: {name: a.b_c-1, id: {name: x, vendor: \"*\"}}\n"
	           "macros: [{name: m, trigger: NOOP, send: [NAMESPACE]}]\n", err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL(set);
	CU_ASSERT_EQUAL(macro_set_count(set), 1);
	macro_set_free(set);
	set = load("client: {name: a, id: ~, listen: stdio}\n"
	           "macros: [{name: m, trigger: NOOP, send: [NAMESPACE]}]\n", err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL(set);
	CU_ASSERT_PTR_NOT_NULL(macro_client_find(set, NULL, "stdio"));
	macro_set_free(set);

	/* exactly the limits: 16 commands, 64 macros */
	{
		struct buf y;

		buf_init(&y, 0);
		buf_append_str(&y, "client: {name: c, listen: stdio}\nmacros:\n");
		for (int i = 0; i < MACRO_MAX_PER_FILE; i++) {
			buf_printf(&y, "  - name: m%d\n    trigger: NOOP\n    send:\n", i);
			for (int j = 0; j < (i ? 1 : MACRO_MAX_SEND); j++)
				buf_printf(&y, "      - UID FETCH %d (FLAGS)\n", j + 1);
		}
		set = macro_set_load_string("t.yaml", (const char *)buf_head(&y), buf_len(&y), err, sizeof(err));
		CU_ASSERT_PTR_NOT_NULL(set);
		CU_ASSERT_EQUAL(macro_set_count(set), MACRO_MAX_PER_FILE);
		macro_set_free(set);
		buf_free(&y);
	}
}

/* Every structural error, with its exact position and text. */
static void test_load_errors(void)
{
	static const struct {
		const char *yaml, *err;
	} cases[] = {
		{"", "t.yaml: no client: a macro file has 'client' and 'macros'"},
		{"---\n", "t.yaml: no client: a macro file has 'client' and 'macros'"},
		{"- a\n", "t.yaml:1:1: the top level must be a mapping with 'client' and 'macros', got a sequence"},
		{"client: {name: c, listen: stdio}\n",
		 "t.yaml:1:1: missing required key 'macros'"},
		{"macros: []\n", "t.yaml:1:1: missing required key 'client'"},
		{"client: {name: c, listen: stdio}\nmacros: []\nextra: 1\n", "t.yaml:3:1: unknown key 'extra'"},
		{"client: {name: c, listen: stdio}\nclient: {name: d, listen: stdio}\nmacros: []\n",
		 "t.yaml:2:1: duplicate key 'client' (first set at line 1)"},
		{"client: c\nmacros: []\n", "t.yaml:1:9: client: expected a mapping (name, id, listen), got a scalar"},
		{"client:\n  nmae: c\nmacros: []\n", "t.yaml:2:3: unknown key 'nmae' in client"},
		{"client:\n  listen: stdio\nmacros: []\n", "t.yaml:2:3: client: missing required key 'name'"},
		{"client:\n  name: [c]\n  listen: stdio\nmacros: []\n",
		 "t.yaml:2:9: client.name: expected a string, got a sequence"},
		{"client:\n  name: \"\"\n  listen: stdio\nmacros: []\n", "t.yaml:2:9: client.name: must not be empty"},
		{"client:\n  name: mu tt\n  listen: stdio\nmacros: []\n",
		 "t.yaml:2:9: client.name: 'mu tt' is not a valid name (up to 64 letters, digits, '.', '_', '-')"},
		{"client:\n  name: c\nmacros: []\n",
		 "t.yaml:2:3: client: give 'id' or 'listen' (or both), or the client never matches"},
		{"client:\n  name: c\n  id: Mutt\nmacros: []\n",
		 "t.yaml:3:7: client.id: expected a mapping of ID fields to patterns, got a scalar"},
		{"client:\n  name: c\n  id: {name: a, NAME: b}\nmacros: []\n",
		 "t.yaml:3:17: client.id: duplicate field 'NAME'"},
		{"client:\n  name: c\n  id: {name: [a]}\nmacros: []\n",
		 "t.yaml:3:14: client.id: expected a string, got a sequence"},
		{"client:\n  name: c\n  listen: {a: b}\nmacros: []\n",
		 "t.yaml:3:11: client.listen: expected a list of listener addresses, got a mapping"},
		{"client:\n  name: c\n  listen: [stdio, \"\"]\nmacros: []\n",
		 "t.yaml:3:19: client.listen: must not be empty"},
		{"client: {name: c, listen: stdio}\nmacros: {}\n",
		 "t.yaml:2:9: macros: expected a list of macros, got a mapping"},
		{"client: {name: c, listen: stdio}\nmacros: []\n", "t.yaml:2:9: macros: the list is empty"},
		{"client: {name: c, listen: stdio}\nmacros:\n  - x\n",
		 "t.yaml:3:5: macros: expected a mapping (name, trigger, send), got a scalar"},
		{"client: {name: c, listen: stdio}\nmacros:\n  - trigger: NOOP\n    send: [NAMESPACE]\n",
		 "t.yaml:3:5: macros: item 1: missing required key 'name'"},
		{"client: {name: c, listen: stdio}\nmacros:\n  - name: m\n    send: [NAMESPACE]\n",
		 "t.yaml:3:5: macro 'm': missing required key 'trigger'"},
		{"client: {name: c, listen: stdio}\nmacros:\n  - name: m\n    trigger: NOOP\n",
		 "t.yaml:3:5: macro 'm': missing required key 'send'"},
		{"client: {name: c, listen: stdio}\nmacros:\n  - name: m\n    trigger: NOOP\n    sned: [NAMESPACE]\n",
		 "t.yaml:5:5: unknown key 'sned' in macro"},
		{"client: {name: c, listen: stdio}\nmacros:\n  - name: m/1\n    trigger: NOOP\n    send: [NAMESPACE]\n",
		 "t.yaml:3:11: macro name 'm/1' is not valid (up to 64 letters, digits, '.', '_', '-')"},
		{"client: {name: c, listen: stdio}\nmacros:\n  - {name: m, trigger: NOOP, send: [NAMESPACE]}\n"
		 "  - {name: m, trigger: CHECK, send: [NAMESPACE]}\n",
		 "t.yaml:4:12: duplicate macro name 'm'"},
		{"client: {name: c, listen: stdio}\nmacros:\n  - name: m\n    trigger: {a: b}\n    send: [NAMESPACE]\n",
		 "t.yaml:4:14: macro 'm': trigger: expected a string, got a mapping"},
		{"client: {name: c, listen: stdio}\nmacros:\n  - name: m\n    trigger: NOOP\n    send: NAMESPACE\n",
		 "t.yaml:5:11: macro 'm': send: expected a list of commands, got a scalar"},
		{"client: {name: c, listen: stdio}\nmacros:\n  - name: m\n    trigger: NOOP\n    send: []\n",
		 "t.yaml:5:11: macro 'm': send: the list is empty"},
		{"client: {name: c, listen: stdio}\nmacros:\n  - name: m\n    trigger: NOOP\n    send: [[NAMESPACE]]\n",
		 "t.yaml:5:12: macro 'm': send: expected a string, got a sequence"},
		{"client: {name: c, listen: stdio}\nmacros:\n  - name: m\n    trigger: SELECT {box}\n    send: [\"STATUS {bx} (MESSAGES)\"]\n",
		 "t.yaml:5:12: macro 'm': send: placeholder {bx} is not captured by the trigger"},
		{"client: {name: c, listen: stdio}\nmacros:\n  - name: m\n    trigger: \"SELECT \\\"abc\"\n    send: [NAMESPACE]\n",
		 "t.yaml:4:14: macro 'm': trigger: bad IMAP syntax: unterminated quoted string"},
		{"client: {name: c, listen: stdio}\nmacros:\n  - name: m\n    trigger: NOOP\n    send: [\"FETCH 1:* (FLAGS\"]\n",
		 "t.yaml:5:12: macro 'm': send: bad IMAP syntax: missing ')'"},
		{"client: {name: c, listen: stdio}\nmacros:\n  - name: m\n    trigger: NOOP\n    send: [\"SEARCH SUBJECT {3}\"]\n",
		 "t.yaml:5:12: macro 'm': send: bad IMAP syntax: incomplete command (literals are not allowed)"},
		{"client: {name: c, listen: stdio}\nmacros:\n  - name: m\n    trigger: NOOP\n    send: [\"NAMESPACE\\nNAMESPACE\"]\n",
		 "t.yaml:5:12: macro 'm': send: 'NAMESPACE?NAMESPACE' is not one line"},
		{"client: {name: c, listen: stdio}\nmacros:\n  - name: m\n    trigger: \"SELECT {a} {a}\"\n    send: [NAMESPACE]\n",
		 "t.yaml:4:14: macro 'm': trigger: placeholder {a} appears twice"},
		{"client: {name: c, listen: stdio}\nmacros:\n  - name: m\n    trigger: \"{cmd} INBOX\"\n    send: [NAMESPACE]\n",
		 "t.yaml:4:14: macro 'm': trigger: must start with a command name, not a placeholder"},
		{"client: {name: c, listen: stdio}\nmacros:\n  - name: m\n    trigger: \"SELECT x{box}\"\n    send: [NAMESPACE]\n",
		 "t.yaml:4:14: macro 'm': trigger: placeholder {box} must be a whole argument"},
		{"client: {name: c, listen: stdio}\nmacros:\n  - name: m\n    trigger: \"SELECT {b x}\"\n    send: [NAMESPACE]\n",
		 "t.yaml:4:14: macro 'm': trigger: bad placeholder at offset 7: {name} with letters, digits, '_' and '-'"},
		{"client: {name: c, listen: stdio}\nmacros:\n  - name: m\n    trigger: \"LOGIN {user} {pass}\"\n    send: [NAMESPACE]\n",
		 "t.yaml:4:14: macro 'm': trigger: LOGIN cannot be a trigger"},
		{"client: {name: c, listen: stdio}\nmacros:\n  - name: m\n    trigger: idle\n    send: [NAMESPACE]\n",
		 "t.yaml:4:14: macro 'm': trigger: idle cannot be a trigger"},
		{"client: {name: c, listen: stdio}\nmacros:\n  - name: m\n    trigger: UID\n    send: [NAMESPACE]\n",
		 "t.yaml:4:14: macro 'm': trigger: UID needs a command after it"},
		{"client: {name: c, listen: stdio}\nmacros:\n  - name: m\n    trigger: SELECT pimap-macro-placeholder-0\n    send: [NAMESPACE]\n",
		 "t.yaml:4:14: macro 'm': trigger: 'PIMAP-MACRO-PLACEHOLDER-' is reserved"},
		{"client: {name: c, listen: stdio}\nmacros:\n  - name: m\n    trigger: \"UID FETCH {set} (FLAGS)\"\n    send: [\"UID FETCH 1 {set}\"]\n",
		 "t.yaml:5:12: macro 'm': send: a placeholder cannot stand for a FETCH item"},
		{"client: {name: c, listen: stdio}\nmacros:\n  - {name: m, trigger: NOOP, send: [NAMESPACE]}\n---\nx: 1\n",
		 "t.yaml:5:1: only one YAML document is allowed"},
		{"client: {name: c, listen: stdio\nmacros: []\n",
		 "t.yaml:2:7: YAML syntax error: did not find expected ',' or '}' (while parsing a flow mapping at line 1, column 9)"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		expect_error(cases[i].yaml, cases[i].err);
}

/* The named limits: one past each is an error at the offending item. */
static void test_load_limits(void)
{
	char err[512] = "";
	struct macro_set *set;
	struct buf y;
	char *big;

	/* 17 commands */
	buf_init(&y, 0);
	buf_append_str(&y, "client: {name: c, listen: stdio}\nmacros:\n  - name: m\n    trigger: NOOP\n    send:\n");
	for (int j = 0; j <= MACRO_MAX_SEND; j++)
		buf_printf(&y, "      - UID FETCH %d (FLAGS)\n", j + 1);
	buf_append(&y, "", 1);
	expect_error((const char *)buf_head(&y), "t.yaml:22:9: macro 'm': send: more than 16 commands");
	buf_free(&y);

	/* 65 macros */
	buf_init(&y, 0);
	buf_append_str(&y, "client: {name: c, listen: stdio}\nmacros:\n");
	for (int i = 0; i <= MACRO_MAX_PER_FILE; i++)
		buf_printf(&y, "  - {name: m%d, trigger: NOOP, send: [NAMESPACE]}\n", i);
	buf_append(&y, "", 1);
	expect_error((const char *)buf_head(&y), "t.yaml:67:5: macros: more than 64 macros in one file");
	buf_free(&y);

	/* over 1 MiB: refused before parsing */
	big = malloc(MACRO_MAX_FILE_SIZE + 2);
	CU_ASSERT_PTR_NOT_NULL_FATAL(big);
	memset(big, '#', MACRO_MAX_FILE_SIZE + 1);
	big[MACRO_MAX_FILE_SIZE + 1] = '\0';
	set = macro_set_load_string("t.yaml", big, MACRO_MAX_FILE_SIZE + 1, err, sizeof(err));
	CU_ASSERT_PTR_NULL(set);
	CU_ASSERT_STRING_EQUAL(err, "t.yaml: file is larger than 1048576 bytes; not a macro file?");
	free(big);

	/* too long a command */
	big = malloc(MACRO_MAX_COMMAND + 200);
	CU_ASSERT_PTR_NOT_NULL_FATAL(big);
	snprintf(big, MACRO_MAX_COMMAND + 200, "client: {name: c, listen: stdio}\nmacros:\n  - name: m\n    trigger: NOOP\n    send: [\"SEARCH %0*d\"]\n",
	         MACRO_MAX_COMMAND, 1);
	expect_error(big, "t.yaml:5:12: macro 'm': send: longer than 4096 bytes");
	free(big);

	/* a tiny error buffer is filled, truncated, NUL-terminated */
	{
		char small[8];

		memset(small, 'z', sizeof(small));
		set = load("", small, sizeof(small));
		CU_ASSERT_PTR_NULL(set);
		CU_ASSERT_STRING_EQUAL(small, "t.yaml:");
	}
}

/* ---- the read-only rule ------------------------------------------------------------------- */

static void test_side_effects_refused(void)
{
	static const struct {
		const char *cmd, *msg;
	} cases[] = {
		{"STORE 1 +FLAGS (\\Seen)", "STORE is not read-only (allowed: FETCH, SEARCH, STATUS, LIST, LSUB, NAMESPACE, GETQUOTAROOT, GETQUOTA, MYRIGHTS, GETMETADATA)"},
		{"UID STORE 1 +FLAGS (\\Seen)", "UID STORE is not read-only (allowed: UID FETCH, UID SEARCH)"},
		{"UID EXPUNGE 1", "UID EXPUNGE is not read-only (allowed: UID FETCH, UID SEARCH)"},
		{"UID COPY 1 Trash", "UID COPY is not read-only (allowed: UID FETCH, UID SEARCH)"},
		{"UID MOVE 1 Trash", "UID MOVE is not read-only (allowed: UID FETCH, UID SEARCH)"},
		{"EXPUNGE", "EXPUNGE is not read-only (allowed: FETCH, SEARCH, STATUS, LIST, LSUB, NAMESPACE, GETQUOTAROOT, GETQUOTA, MYRIGHTS, GETMETADATA)"},
		{"COPY 1 Trash", "COPY is not read-only (allowed: FETCH, SEARCH, STATUS, LIST, LSUB, NAMESPACE, GETQUOTAROOT, GETQUOTA, MYRIGHTS, GETMETADATA)"},
		{"MOVE 1 Trash", "MOVE is not read-only (allowed: FETCH, SEARCH, STATUS, LIST, LSUB, NAMESPACE, GETQUOTAROOT, GETQUOTA, MYRIGHTS, GETMETADATA)"},
		{"SELECT {box}", "SELECT is not read-only (allowed: FETCH, SEARCH, STATUS, LIST, LSUB, NAMESPACE, GETQUOTAROOT, GETQUOTA, MYRIGHTS, GETMETADATA)"},
		{"EXAMINE {box}", "EXAMINE is not read-only (allowed: FETCH, SEARCH, STATUS, LIST, LSUB, NAMESPACE, GETQUOTAROOT, GETQUOTA, MYRIGHTS, GETMETADATA)"},
		{"CREATE x", "CREATE is not read-only (allowed: FETCH, SEARCH, STATUS, LIST, LSUB, NAMESPACE, GETQUOTAROOT, GETQUOTA, MYRIGHTS, GETMETADATA)"},
		{"DELETE x", "DELETE is not read-only (allowed: FETCH, SEARCH, STATUS, LIST, LSUB, NAMESPACE, GETQUOTAROOT, GETQUOTA, MYRIGHTS, GETMETADATA)"},
		{"SUBSCRIBE x", "SUBSCRIBE is not read-only (allowed: FETCH, SEARCH, STATUS, LIST, LSUB, NAMESPACE, GETQUOTAROOT, GETQUOTA, MYRIGHTS, GETMETADATA)"},
		{"IDLE", "IDLE is not read-only (allowed: FETCH, SEARCH, STATUS, LIST, LSUB, NAMESPACE, GETQUOTAROOT, GETQUOTA, MYRIGHTS, GETMETADATA)"},
		{"LOGOUT", "LOGOUT is not read-only (allowed: FETCH, SEARCH, STATUS, LIST, LSUB, NAMESPACE, GETQUOTAROOT, GETQUOTA, MYRIGHTS, GETMETADATA)"},
		{"CLOSE", "CLOSE is not read-only (allowed: FETCH, SEARCH, STATUS, LIST, LSUB, NAMESPACE, GETQUOTAROOT, GETQUOTA, MYRIGHTS, GETMETADATA)"},
		{"NOOP", "NOOP is not read-only (allowed: FETCH, SEARCH, STATUS, LIST, LSUB, NAMESPACE, GETQUOTAROOT, GETQUOTA, MYRIGHTS, GETMETADATA)"},
		{"ENABLE CONDSTORE", "ENABLE is not read-only (allowed: FETCH, SEARCH, STATUS, LIST, LSUB, NAMESPACE, GETQUOTAROOT, GETQUOTA, MYRIGHTS, GETMETADATA)"},
		{"FETCH 1 BODY[]", "FETCH item BODY[] sets \\Seen (use BODY.PEEK[...])"},
		{"FETCH 1:* (FLAGS BODY[HEADER.FIELDS (From)])", "FETCH item BODY[HEADER.FIELDS (From)] sets \\Seen (use BODY.PEEK[...])"},
		{"UID FETCH 1 (body[text]<0.100>)", "FETCH item body[text]<0.100> sets \\Seen (use body.PEEK[...])"},
		{"FETCH 1 (BINARY[1])", "FETCH item BINARY[1] sets \\Seen (use BINARY.PEEK[...])"},
		{"FETCH 1 RFC822", "FETCH item RFC822 sets \\Seen (use BODY.PEEK[])"},
		{"FETCH 1 (UID RFC822.TEXT)", "FETCH item RFC822.TEXT sets \\Seen (use BODY.PEEK[TEXT])"},
		{"FETCH 1 (X-GM-LABELS)", "unknown or unsupported FETCH item X-GM-LABELS"},
		{"FETCH 1 (BODY.PEEK)", "unknown or unsupported FETCH item BODY.PEEK"},
		{"FETCH 1 (BODY.PEEK[TEXT]<1>)", "bad section in FETCH item BODY.PEEK[TEXT]<1>"},
		{"FETCH 1 (BINARY.SIZE[1]<0.5>)", "bad section in FETCH item BINARY.SIZE[1]<0.5>"},
		{"FETCH 1 (FLAGS ALL)", "unknown or unsupported FETCH item ALL"},
		{"FETCH 1 (\"FLAGS\")", "FETCH items are atoms, not strings"},
		{"FETCH 1 ()", "empty FETCH item list"},
		{"FETCH x:y FLAGS", "FETCH needs a sequence set first"},
		{"FETCH 0 FLAGS", "FETCH needs a sequence set first"},
		{"FETCH 1", "FETCH takes a sequence set, items and optional modifiers"},
		{"FETCH 1 FLAGS (VANISHED)", "unsupported FETCH modifier"},
		{"SEARCH RETURN (SAVE) UNSEEN", "SEARCH RETURN option SAVE is not read-only or not supported"},
		{"UID SEARCH RETURN (MIN UPDATE) ALL", "SEARCH RETURN option UPDATE is not read-only or not supported"},
		{"SEARCH", "SEARCH needs search keys"},
		{"STATUS INBOX", "STATUS takes a mailbox and a list of items"},
		{"NAMESPACE x", "NAMESPACE takes no arguments"},
		{"UID", "UID needs a command after it"},
	};
	char want[512];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *got = send_error(cases[i].cmd);

		snprintf(want, sizeof(want), "t.yaml:7:12: macro 'm': send: %s", cases[i].msg);
		CU_ASSERT_STRING_EQUAL(got, want);
		if (strcmp(got, want) != 0)
			fprintf(stderr, "\n  cmd:  %s\n  want: %s\n  got:  %s\n", cases[i].cmd, want, got);
	}

	/* the same rule on parsed client commands */
	CU_ASSERT_FALSE(read_only("STORE 1 +FLAGS (\\Seen)"));
	CU_ASSERT_FALSE(read_only("UID STORE 1 +FLAGS (\\Seen)"));
	CU_ASSERT_FALSE(read_only("FETCH 1 BODY[]"));
	CU_ASSERT_FALSE(read_only("FETCH 1 (FLAGS RFC822)"));
	CU_ASSERT_FALSE(read_only("FETCH 1 RFC822.TEXT"));
	CU_ASSERT_FALSE(read_only("SELECT INBOX"));
	CU_ASSERT_FALSE(read_only("EXPUNGE"));
	CU_ASSERT_FALSE(read_only("SEARCH RETURN (SAVE) ALL"));
	CU_ASSERT_FALSE(read_only("FETCH 1 (FLAGS) (VANISHED)"));
	CU_ASSERT_FALSE(macro_command_is_read_only(NULL));
	{
		struct cmd c;

		cmd_parse_raw(&c, "a SEARCH SUBJECT {3}\r\nabc\r\n", 27);
		CU_ASSERT_FALSE(macro_command_is_read_only(c.msg)); /* literals never */
		cmd_free(&c);
	}
}

static void test_read_only_allowed(void)
{
	static const char *const ok[] = {
		"FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY RFC822.HEADER MODSEQ)",
		"FETCH 1:3,5,7:* (BODY.PEEK[HEADER.FIELDS (DATE FROM)] BODY.PEEK[]<0.2048>)",
		"UID FETCH * (BINARY.PEEK[1]<10.20> BINARY.SIZE[1])",
		"fetch 1 all",
		"FETCH 1 FAST",
		"FETCH 1 FULL",
		"UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345 VANISHED)",
		"FETCH 1:* (FLAGS) (CHANGEDSINCE 1)",
		"SEARCH UNSEEN",
		"UID SEARCH RETURN (MIN MAX COUNT ALL) SINCE 1-Jan-2020",
		"UID SEARCH RETURN (PARTIAL 1:100) ALL",
		"SEARCH CHARSET UTF-8 SUBJECT \"x y\"",
		"STATUS \"Sent Items\" (MESSAGES UIDNEXT UNSEEN)",
		"LIST \"\" \"*\"",
		"LIST (SUBSCRIBED) \"\" \"*\" RETURN (SPECIAL-USE)",
		"LSUB \"\" \"*\"",
		"NAMESPACE",
		"GETQUOTAROOT INBOX",
		"GETQUOTA \"\"",
		"MYRIGHTS INBOX",
		"GETMETADATA INBOX /private/comment",
	};

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		CU_ASSERT_TRUE(read_only(ok[i]));
		if (!read_only(ok[i]))
			fprintf(stderr, "\n  refused: %s\n", ok[i]);
	}
	/* and they load as macro commands */
	CU_ASSERT_STRING_EQUAL(send_error("FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (From To)])"), "");
	CU_ASSERT_STRING_EQUAL(send_error("STATUS {box} (MESSAGES)"), "");
	CU_ASSERT_STRING_EQUAL(send_error("GETQUOTAROOT {box}"), "");
	CU_ASSERT_STRING_EQUAL(send_error("SEARCH SUBJECT \"{box}\""), ""); /* quoted: not a placeholder */
}

/* ---- which client ----------------------------------------------------------------------------- */

static char tmpdir[256];

static void write_file(const char *name, const char *text)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	f = fopen(path, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fputs(text, f);
	fclose(f);
}

static void remove_file(const char *name)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	unlink(path);
}

static void make_tmpdir(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "%s/pimap-macros-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(tmpdir));
}

static void test_client_find(void)
{
	char err[512] = "";
	struct macro_set *set;
	const char *tb_id[] = {"name", "Thunderbird", "version", "128.5.0", NULL};
	const char *tb_lower[] = {"NAME", "thunderbird", NULL};
	const char *both[] = {"name", "Mutt", "os", "Linux", NULL};
	const char *wrong_os[] = {"name", "Mutt", "os", "BSD", NULL};
	const char *other[] = {"name", "Evolution", NULL};
	const struct macro_client *c;

	make_tmpdir();
	/* loaded in name order: a-*.yaml before b-*.yaml */
	write_file("b-tb.yaml", "client:\n  name: thunderbird\n  id: {name: \"Thunderbird*\"}\n  listen: [\"127.0.0.1:1143\"]\n"
	                        "macros: [{name: m, trigger: NOOP, send: [NAMESPACE]}]\n");
	write_file("a-mutt.yaml", "client:\n  name: mutt\n  id: {name: \"mutt\", os: \"lin*\"}\n  listen: [stdio, \"127.0.0.1:1143\"]\n"
	                          "macros: [{name: m, trigger: NOOP, send: [NAMESPACE]}, {name: n, trigger: CHECK, send: [NAMESPACE]}]\n");
	write_file("notes.txt", "not yaml: [");
	write_file(".hidden.yaml", "not yaml: [");
	set = macro_set_load_dir(tmpdir, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL_FATAL(set);
	CU_ASSERT_STRING_EQUAL(err, "");
	CU_ASSERT_EQUAL(macro_set_client_count(set), 2);
	CU_ASSERT_EQUAL(macro_set_count(set), 3);

	/* by ID glob, case-insensitive names and values */
	c = macro_client_find(set, tb_id, NULL);
	CU_ASSERT_STRING_EQUAL(macro_client_name(c), "thunderbird");
	c = macro_client_find(set, tb_lower, "stdio");
	CU_ASSERT_STRING_EQUAL(macro_client_name(c), "thunderbird"); /* ID beats the listener */
	/* every id field must match */
	c = macro_client_find(set, both, NULL);
	CU_ASSERT_STRING_EQUAL(macro_client_name(c), "mutt");
	CU_ASSERT_PTR_NULL(macro_client_find(set, wrong_os, NULL));
	/* no ID match: the listener decides; first loaded file wins a shared listener */
	c = macro_client_find(set, wrong_os, "stdio");
	CU_ASSERT_STRING_EQUAL(macro_client_name(c), "mutt");
	c = macro_client_find(set, other, "127.0.0.1:1143");
	CU_ASSERT_STRING_EQUAL(macro_client_name(c), "mutt");
	c = macro_client_find(set, NULL, "127.0.0.1:1143");
	CU_ASSERT_STRING_EQUAL(macro_client_name(c), "mutt");
	CU_ASSERT_PTR_NULL(macro_client_find(set, NULL, "127.0.0.1:9999"));
	CU_ASSERT_PTR_NULL(macro_client_find(set, other, NULL));
	CU_ASSERT_PTR_NULL(macro_client_find(set, NULL, NULL));
	CU_ASSERT_PTR_NULL(macro_client_find(NULL, tb_id, "stdio"));
	CU_ASSERT_PTR_NULL(macro_client_name(NULL));
	macro_set_free(set);

	/* the same client name in two files */
	write_file("c-dup.yaml", "client:\n  name: mutt\n  listen: stdio\nmacros: [{name: m, trigger: NOOP, send: [NAMESPACE]}]\n");
	set = macro_set_load_dir(tmpdir, err, sizeof(err));
	CU_ASSERT_PTR_NULL(set);
	{
		char want[1024];

		snprintf(want, sizeof(want), "%s/c-dup.yaml:2:9: client 'mutt' is already defined in %s/a-mutt.yaml", tmpdir, tmpdir);
		CU_ASSERT_STRING_EQUAL(err, want);
	}
	remove_file("c-dup.yaml");

	/* an error in one file names that file; nothing is loaded */
	write_file("c-bad.yaml", "client: {name: x, listen: stdio}\nmacros: [{name: m, trigger: NOOP, send: [EXPUNGE]}]\n");
	set = macro_set_load_dir(tmpdir, err, sizeof(err));
	CU_ASSERT_PTR_NULL(set);
	{
		char want[1024];

		snprintf(want, sizeof(want), "%s/c-bad.yaml:2:42: macro 'm': send: EXPUNGE is not read-only (allowed: "
		         "FETCH, SEARCH, STATUS, LIST, LSUB, NAMESPACE, GETQUOTAROOT, GETQUOTA, MYRIGHTS, GETMETADATA)", tmpdir);
		CU_ASSERT_STRING_EQUAL(err, want);
	}
	remove_file("c-bad.yaml");
	remove_file("a-mutt.yaml");
	remove_file("b-tb.yaml");
	remove_file("notes.txt");
	remove_file(".hidden.yaml");

	/* an empty directory is an empty set */
	set = macro_set_load_dir(tmpdir, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL(set);
	CU_ASSERT_EQUAL(macro_set_count(set), 0);
	CU_ASSERT_PTR_NULL(macro_client_find(set, tb_id, "stdio"));
	macro_set_free(set);
	CU_ASSERT_EQUAL(rmdir(tmpdir), 0);

	/* a missing one is an error naming it */
	set = macro_set_load_dir(tmpdir, err, sizeof(err));
	CU_ASSERT_PTR_NULL(set);
	{
		char want[1024];

		snprintf(want, sizeof(want), "%s: cannot open macro directory: %s", tmpdir, strerror(ENOENT));
		CU_ASSERT_STRING_EQUAL(err, want);
	}
	set = macro_set_load_dir("", err, sizeof(err));
	CU_ASSERT_PTR_NULL(set);
	CU_ASSERT_STRING_EQUAL(err, "macros: no macro directory given");
}

/* ---- expansion ------------------------------------------------------------------------------------ */

static const char expand_yaml[] =
	"client: {name: c, listen: stdio}\n"
	"macros:\n"
	"  - name: open\n"
	"    trigger: \"SELECT {mailbox}\"\n"
	"    send:\n"
	"      - \"FETCH 1:* (UID FLAGS)\"\n"
	"      - \"STATUS {mailbox} (MESSAGES)\"\n"
	"      - \"LIST \\\"\\\" {mailbox}\"\n"
	"  - name: status-two\n"
	"    trigger: \"STATUS {box} (UNSEEN)\"\n"
	"    send: [\"STATUS {box} (MESSAGES)\"]\n"
	"  - name: status-any\n"
	"    trigger: \"STATUS {mbox} (unseen)\"\n"
	"    send: [\"MYRIGHTS {mbox}\"]\n"
	"  - name: flags\n"
	"    trigger: \"UID FETCH {set} (FLAGS)\"\n"
	"    send: [\"UID FETCH {set} (UID RFC822.SIZE BODY.PEEK[HEADER])\"]\n"
	"  - name: exact\n"
	"    trigger: \"EXAMINE INBOX\"\n"
	"    send: [\"FETCH 1:* (FLAGS)\"]\n"
	"  - name: exact-case\n"
	"    trigger: \"EXAMINE Sent\"\n"
	"    send: [\"FETCH 1:* (UID)\"]\n";

static void test_expand(void)
{
	char err[512] = "";
	struct macro_set *set = load(expand_yaml, err, sizeof(err));
	const struct macro_client *c;

	CU_ASSERT_PTR_NOT_NULL_FATAL(set);
	c = macro_client_find(set, NULL, "stdio");
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);

	/* an atom stays an atom; a quoted string stays quoted, escapes redone */
	CU_ASSERT_STRING_EQUAL(expand(c, "SELECT INBOX"),
	                       "FETCH 1:* (UID FLAGS) | STATUS INBOX (MESSAGES) | LIST \"\" INBOX");
	CU_ASSERT_STRING_EQUAL(expand(c, "select \"My Folder\""),
	                       "FETCH 1:* (UID FLAGS) | STATUS \"My Folder\" (MESSAGES) | LIST \"\" \"My Folder\"");
	CU_ASSERT_STRING_EQUAL(expand(c, "SELECT \"a\\\"b\\\\c\""),
	                       "FETCH 1:* (UID FLAGS) | STATUS \"a\\\"b\\\\c\" (MESSAGES) | LIST \"\" \"a\\\"b\\\\c\"");
	/* a literal that can be quoted is quoted */
	CU_ASSERT_STRING_EQUAL(expand_raw(c, "a SELECT {5}\r\nIn(b)\r\n", 21),
	                       "FETCH 1:* (UID FLAGS) | STATUS \"In(b)\" (MESSAGES) | LIST \"\" \"In(b)\"");
	/* values that would need a literal: the macro does not fire */
	CU_ASSERT_STRING_EQUAL(expand_raw(c, "a SELECT {4}\r\na\r\nb\r\n", 20), "");
	CU_ASSERT_STRING_EQUAL(expand(c, "SELECT \"Entw\xc3\xbcrfe\""), "");
	CU_ASSERT_STRING_EQUAL(expand_raw(c, "a SELECT ~{3}\r\nabc\r\n", 20), "");
	/* shape must match: argument count, list vs string */
	CU_ASSERT_STRING_EQUAL(expand(c, "SELECT INBOX (CONDSTORE)"), "");
	CU_ASSERT_STRING_EQUAL(expand(c, "SELECT (INBOX)"), "");
	CU_ASSERT_STRING_EQUAL(expand(c, "SELECT"), "");
	CU_ASSERT_STRING_EQUAL(expand(c, "EXAMINE Drafts"), "");
	/* first matching macro wins: status-two before status-any, which also matches */
	CU_ASSERT_STRING_EQUAL(expand(c, "STATUS Sent (unseen)"), "STATUS Sent (MESSAGES)");
	CU_ASSERT_STRING_EQUAL(expand(c, "STATUS Sent (RECENT)"), "");
	/* a placeholder captures one string argument, never a list */
	CU_ASSERT_STRING_EQUAL(expand(c, "STATUS (a b) (UNSEEN)"), "");
	/* a sequence set substituted as written */
	CU_ASSERT_STRING_EQUAL(expand(c, "uid fetch 1:5,9 (flags)"), "UID FETCH 1:5,9 (UID RFC822.SIZE BODY.PEEK[HEADER])");
	CU_ASSERT_STRING_EQUAL(expand(c, "UID FETCH 7:* FLAGS"), "UID FETCH 7:* (UID RFC822.SIZE BODY.PEEK[HEADER])");
	/* the substitution is parsed again: a quoted set is not a set, so nothing fires */
	CU_ASSERT_STRING_EQUAL(expand(c, "UID FETCH \"1:5\" (FLAGS)"), "");
	CU_ASSERT_STRING_EQUAL(expand(c, "UID FETCH 1:5 (FLAGS UID)"), "");
	CU_ASSERT_STRING_EQUAL(expand(c, "FETCH 1:5 (FLAGS)"), "");
	/* exact triggers: INBOX is case-insensitive and may be quoted; other names are not */
	CU_ASSERT_STRING_EQUAL(expand(c, "examine \"inbox\""), "FETCH 1:* (FLAGS)");
	CU_ASSERT_STRING_EQUAL(expand(c, "EXAMINE Sent"), "FETCH 1:* (UID)");
	CU_ASSERT_STRING_EQUAL(expand(c, "EXAMINE \"Sent\""), "FETCH 1:* (UID)");
	CU_ASSERT_STRING_EQUAL(expand(c, "EXAMINE sent"), "");
	/* not a command */
	{
		struct imap_msg m = {.kind = IMAP_MSG_TAGGED};
		char **out = (char **)1;

		CU_ASSERT_EQUAL(macro_expand(c, &m, &out), 0);
		CU_ASSERT_PTR_NULL(out);
		CU_ASSERT_EQUAL(macro_expand(NULL, &m, &out), 0);
	}
	macro_set_free(set);

	/* a macro that cannot fire lets the next matching one fire */
	set = load("client: {name: c, listen: stdio}\n"
	           "macros:\n"
	           "  - {name: a, trigger: \"SELECT {x}\", send: [\"STATUS {x} (MESSAGES)\"]}\n"
	           "  - {name: b, trigger: \"SELECT {y}\", send: [\"NAMESPACE\"]}\n", err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL_FATAL(set);
	c = macro_client_find(set, NULL, "stdio");
	CU_ASSERT_STRING_EQUAL(expand(c, "SELECT \"caf\xc3\xa9\""), "NAMESPACE");
	CU_ASSERT_STRING_EQUAL(expand(c, "SELECT cafe"), "STATUS cafe (MESSAGES)");
	macro_set_free(set);
}

/* ---- claims ------------------------------------------------------------------------------------------ */

#define MUTT_ITEMS "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (DATE FROM SUBJECT)])"

static void test_claim_exact(void)
{
	CU_ASSERT_EQUAL(claim_kind("LIST \"\" \"\"", "list \"\" \"\""), MACRO_CLAIM_EXACT);
	CU_ASSERT_EQUAL(claim_kind("STATUS INBOX (MESSAGES UNSEEN)", "status \"inbox\" (messages unseen)"), MACRO_CLAIM_EXACT);
	CU_ASSERT_EQUAL(claim_kind("STATUS Sent (MESSAGES)", "STATUS \"Sent\" (MESSAGES)"), MACRO_CLAIM_EXACT);
	CU_ASSERT_EQUAL(claim_kind("STATUS Sent (MESSAGES)", "STATUS sent (MESSAGES)"), MACRO_CLAIM_NONE);
	CU_ASSERT_EQUAL(claim_kind("STATUS Sent (MESSAGES UNSEEN)", "STATUS Sent (UNSEEN MESSAGES)"), MACRO_CLAIM_NONE);
	CU_ASSERT_EQUAL(claim_kind("LIST \"\" \"*\"", "LIST \"\" \"%\""), MACRO_CLAIM_NONE);
	CU_ASSERT_EQUAL(claim_kind("LIST \"\" *", "LIST \"\" \"*\""), MACRO_CLAIM_EXACT);
	CU_ASSERT_EQUAL(claim_kind("NAMESPACE", "namespace"), MACRO_CLAIM_EXACT);
	CU_ASSERT_EQUAL(claim_kind("NAMESPACE", "LSUB \"\" \"*\""), MACRO_CLAIM_NONE);
	/* search keys are keywords; their string arguments are compared exactly */
	CU_ASSERT_EQUAL(claim_kind("UID SEARCH UNSEEN", "uid search unseen"), MACRO_CLAIM_EXACT);
	CU_ASSERT_EQUAL(claim_kind("SEARCH SUBJECT \"Hello\"", "SEARCH SUBJECT \"hello\""), MACRO_CLAIM_NONE);
	CU_ASSERT_EQUAL(claim_kind("SEARCH UNSEEN", "UID SEARCH UNSEEN"), MACRO_CLAIM_NONE);
	/* an identical FETCH is EXACT: all its responses replay */
	CU_ASSERT_EQUAL(claim_kind("UID FETCH 1:* (FLAGS)", "UID fetch 1:* (FLAGS)"), MACRO_CLAIM_EXACT);
	CU_ASSERT_EQUAL(claim_kind("FETCH 1:* " MUTT_ITEMS, "fetch 1:* " MUTT_ITEMS), MACRO_CLAIM_EXACT);
	/* garbage never claims */
	CU_ASSERT_EQUAL(claim_kind("FETCH 1:* (FLAGS", "FETCH 1:* (FLAGS)"), MACRO_CLAIM_NONE);
	CU_ASSERT_EQUAL(claim_kind(NULL, "NAMESPACE"), MACRO_CLAIM_NONE);
}

static void test_claim_fetch(void)
{
	struct macro_claim cl;

	/* mutt: FETCH 1:N after prefetching FETCH 1:* */
	CU_ASSERT_EQUAL(claim("FETCH 1:* " MUTT_ITEMS, "FETCH 1:3 " MUTT_ITEMS, &cl), MACRO_CLAIM_FETCH);
	CU_ASSERT_EQUAL(cl.kind, MACRO_CLAIM_FETCH);
	CU_ASSERT_FALSE(cl.uid);
	CU_ASSERT_STRING_EQUAL(fmt(&cl.want), "1:3");
	CU_ASSERT_FALSE(cl.want_star);
	CU_ASSERT_STRING_EQUAL(fmt(&cl.have), "");
	CU_ASSERT_TRUE(cl.have_star);
	CU_ASSERT_EQUAL(cl.have_star_from, 1);
	CU_ASSERT_TRUE(macro_claim_covers(&cl, 3, 3));
	CU_ASSERT_TRUE(macro_claim_covers(&cl, 3, 5));
	CU_ASSERT_FALSE(macro_claim_covers(&cl, 2, 2)); /* 3 did not exist when the prefetch ran */
	macro_claim_free(&cl);

	/* item names are case-insensitive, a lone item equals a one-item list */
	CU_ASSERT_EQUAL(claim_kind("UID FETCH 1:* (FLAGS)", "uid fetch 4:* flags"), MACRO_CLAIM_FETCH);
	CU_ASSERT_EQUAL(claim_kind("UID FETCH 1:* FLAGS", "UID FETCH 4 (flags)"), MACRO_CLAIM_FETCH);
	CU_ASSERT_EQUAL(claim_kind("FETCH 1:* ALL", "FETCH 1 (ALL)"), MACRO_CLAIM_NONE);
	/* different items, other order, other section text: no */
	CU_ASSERT_EQUAL(claim_kind("UID FETCH 1:* (FLAGS)", "UID FETCH 1:5 (FLAGS UID)"), MACRO_CLAIM_NONE);
	CU_ASSERT_EQUAL(claim_kind("UID FETCH 1:* (UID FLAGS)", "UID FETCH 1:5 (FLAGS UID)"), MACRO_CLAIM_NONE);
	CU_ASSERT_EQUAL(claim_kind("FETCH 1:* (BODY.PEEK[HEADER.FIELDS (From)])", "FETCH 1 (body.peek[HEADER.FIELDS (From)])"),
	                MACRO_CLAIM_FETCH);
	CU_ASSERT_EQUAL(claim_kind("FETCH 1:* (BODY.PEEK[HEADER.FIELDS (From)])", "FETCH 1 (BODY.PEEK[HEADER.FIELDS (FROM)])"),
	                MACRO_CLAIM_NONE);
	/* UID vs sequence numbers */
	CU_ASSERT_EQUAL(claim_kind("UID FETCH 1:* (FLAGS)", "FETCH 1:5 (FLAGS)"), MACRO_CLAIM_NONE);
	CU_ASSERT_EQUAL(claim_kind("FETCH 1:* (FLAGS)", "UID FETCH 1:5 (FLAGS)"), MACRO_CLAIM_NONE);
	/* modifiers must be the same */
	CU_ASSERT_EQUAL(claim_kind("UID FETCH 1:* (FLAGS) (CHANGEDSINCE 5)", "UID FETCH 2 (FLAGS) (changedsince 5)"),
	                MACRO_CLAIM_FETCH);
	CU_ASSERT_EQUAL(claim_kind("UID FETCH 1:* (FLAGS) (CHANGEDSINCE 5)", "UID FETCH 2 (FLAGS) (CHANGEDSINCE 6)"),
	                MACRO_CLAIM_NONE);
	CU_ASSERT_EQUAL(claim_kind("UID FETCH 1:* (FLAGS)", "UID FETCH 2 (FLAGS) (CHANGEDSINCE 6)"), MACRO_CLAIM_NONE);

	/* explicit sets: decided now */
	CU_ASSERT_EQUAL(claim("UID FETCH 1:10,20 (FLAGS)", "UID FETCH 10,3:5,20 (FLAGS)", &cl), MACRO_CLAIM_FETCH);
	CU_ASSERT_TRUE(cl.uid);
	CU_ASSERT_STRING_EQUAL(fmt(&cl.want), "3:5,10,20");
	CU_ASSERT_STRING_EQUAL(fmt(&cl.have), "1:10,20");
	CU_ASSERT_FALSE(cl.want_star);
	CU_ASSERT_FALSE(cl.have_star);
	CU_ASSERT_TRUE(macro_claim_covers(&cl, 0, 0));
	macro_claim_free(&cl);
	CU_ASSERT_EQUAL(claim_kind("UID FETCH 1:10 (FLAGS)", "UID FETCH 9:11 (FLAGS)"), MACRO_CLAIM_NONE);

	/* "*" in the client's set */
	CU_ASSERT_EQUAL(claim("UID FETCH 1:* (FLAGS)", "UID FETCH 5:* (FLAGS)", &cl), MACRO_CLAIM_FETCH);
	CU_ASSERT_TRUE(cl.want_star);
	CU_ASSERT_EQUAL(cl.star_from, 5);
	CU_ASSERT_STRING_EQUAL(fmt(&cl.want), "");
	CU_ASSERT_TRUE(macro_claim_covers(&cl, 9, 9));
	CU_ASSERT_FALSE(macro_claim_covers(&cl, 3, 3));  /* * = 3: 5:* is 3:5, and 4, 5 are not in 1:3 */
	CU_ASSERT_TRUE(macro_claim_covers(&cl, 3, 5));
	CU_ASSERT_FALSE(macro_claim_covers(&cl, 12, 9)); /* 10..12 arrived later */
	macro_claim_free(&cl);
	CU_ASSERT_EQUAL(claim("UID FETCH 1:* (FLAGS)", "UID FETCH *,2 (FLAGS)", &cl), MACRO_CLAIM_FETCH);
	CU_ASSERT_TRUE(cl.want_star);
	CU_ASSERT_EQUAL(cl.star_from, 0);
	CU_ASSERT_STRING_EQUAL(fmt(&cl.want), "2");
	CU_ASSERT_TRUE(macro_claim_covers(&cl, 7, 7));
	macro_claim_free(&cl);
	/* "*" only in the prefetch, explicit gaps */
	CU_ASSERT_EQUAL(claim("UID FETCH 3,8:* (FLAGS)", "UID FETCH 3,9:10 (FLAGS)", &cl), MACRO_CLAIM_FETCH);
	CU_ASSERT_TRUE(macro_claim_covers(&cl, 0, 10));
	CU_ASSERT_FALSE(macro_claim_covers(&cl, 0, 9));
	macro_claim_free(&cl);
	CU_ASSERT_EQUAL(claim("UID FETCH 3,8:* (FLAGS)", "UID FETCH 4:* (FLAGS)", &cl), MACRO_CLAIM_FETCH);
	CU_ASSERT_FALSE(macro_claim_covers(&cl, 10, 10)); /* 4..7 missing */
	CU_ASSERT_TRUE(macro_claim_covers(&cl, 3, 3));   /* * = 3: 4:* is 3:4, 8:* is 3:8 */
	macro_claim_free(&cl);
	/* "*" in the client's set, none in the prefetch's */
	CU_ASSERT_EQUAL(claim("UID FETCH 1:5,7 (FLAGS)", "UID FETCH 3:* (FLAGS)", &cl), MACRO_CLAIM_FETCH);
	CU_ASSERT_TRUE(macro_claim_covers(&cl, 5, 0));
	CU_ASSERT_FALSE(macro_claim_covers(&cl, 6, 0));
	CU_ASSERT_FALSE(macro_claim_covers(&cl, 7, 0));
	macro_claim_free(&cl);
	/* an empty mailbox: "*" names nothing */
	CU_ASSERT_EQUAL(claim("FETCH 1:* (FLAGS)", "FETCH 2:* (FLAGS)", &cl), MACRO_CLAIM_FETCH);
	CU_ASSERT_TRUE(macro_claim_covers(&cl, 0, 0));
	macro_claim_free(&cl);

	/* not claimed: two different star ranges, huge explicit sets, bad sets */
	CU_ASSERT_EQUAL(claim_kind("UID FETCH 1:* (FLAGS)", "UID FETCH 2:*,5:* (FLAGS)"), MACRO_CLAIM_NONE);
	CU_ASSERT_EQUAL(claim_kind("UID FETCH 1:* (FLAGS)", "UID FETCH 1:4000000000 (FLAGS)"), MACRO_CLAIM_NONE);
	CU_ASSERT_EQUAL(claim_kind("UID FETCH 1:* (FLAGS)", "UID FETCH 1:1000000 (FLAGS)"), MACRO_CLAIM_FETCH);
	CU_ASSERT_EQUAL(claim_kind("UID FETCH 1:* (FLAGS)", "UID FETCH 0:3 (FLAGS)"), MACRO_CLAIM_NONE);
	CU_ASSERT_EQUAL(claim_kind("UID FETCH 1:* (FLAGS)", "UID FETCH \"1:3\" (FLAGS)"), MACRO_CLAIM_NONE);
	CU_ASSERT_EQUAL(claim_kind("UID FETCH 1:* (FLAGS)", "UID FETCH $ (FLAGS)"), MACRO_CLAIM_NONE);

	/* covers() is for FETCH claims only */
	CU_ASSERT_EQUAL(claim("NAMESPACE", "NAMESPACE", &cl), MACRO_CLAIM_EXACT);
	CU_ASSERT_FALSE(macro_claim_covers(&cl, 1, 1));
	macro_claim_free(&cl);
	CU_ASSERT_FALSE(macro_claim_covers(NULL, 1, 1));
}

/* ---- the shipped files ------------------------------------------------------------------------------- */

/* top_srcdir/macros/NAME, or found through this file's path when run by hand. */
static void shipped_path(char *path, size_t len, const char *name)
{
	const char *srcdir = getenv("top_srcdir");
	const char *here = __FILE__, *cut = strstr(here, "tests/unit/test_macros.c");

	if (srcdir && *srcdir)
		snprintf(path, len, "%s/macros/%s", srcdir, name);
	else if (cut)
		snprintf(path, len, "%.*smacros/%s", (int)(cut - here), here, name);
	else
		snprintf(path, len, "macros/%s", name);
}

static void test_shipped_macros(void)
{
	static const char mutt_items[] =
		"(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (DATE FROM SENDER SUBJECT TO CC "
		"MESSAGE-ID REFERENCES CONTENT-TYPE CONTENT-DESCRIPTION IN-REPLY-TO REPLY-TO LINES LIST-POST X-LABEL)])";
	const char *tb_id[] = {"name", "Thunderbird", "version", "128.0", NULL};
	char dir[4096], err[1024] = "", cmd[1024];
	struct macro_set *set;
	const struct macro_client *c;
	struct macro_claim cl;

	shipped_path(dir, sizeof(dir), "");
	set = macro_set_load_dir(dir, err, sizeof(err));
	CU_ASSERT_STRING_EQUAL(err, "");
	CU_ASSERT_PTR_NOT_NULL_FATAL(set);
	CU_ASSERT_EQUAL(macro_set_client_count(set), 2);

	/* mutt (no ID command): by listener; after SELECT, its recorded header fetch */
	c = macro_client_find(set, NULL, "stdio");
	CU_ASSERT_STRING_EQUAL(macro_client_name(c), "mutt");
	snprintf(cmd, sizeof(cmd), "FETCH 1:* %s", mutt_items);
	CU_ASSERT_STRING_EQUAL(expand(c, "SELECT \"INBOX\""), cmd);
	snprintf(cmd, sizeof(cmd), "FETCH 1:3 %s", mutt_items);
	CU_ASSERT_EQUAL(claim(expand(c, "SELECT \"INBOX\""), cmd, &cl), MACRO_CLAIM_FETCH);
	CU_ASSERT_TRUE(macro_claim_covers(&cl, 3, 3));
	macro_claim_free(&cl);

	/* Thunderbird by ID: after SELECT, the flags of every message */
	c = macro_client_find(set, tb_id, "stdio");
	CU_ASSERT_STRING_EQUAL(macro_client_name(c), "thunderbird");
	CU_ASSERT_STRING_EQUAL(expand(c, "select \"INBOX\""), "UID FETCH 1:* (FLAGS)");
	CU_ASSERT_EQUAL(claim_kind("UID FETCH 1:* (FLAGS)", "UID fetch 1:* (FLAGS)"), MACRO_CLAIM_EXACT);
	macro_set_free(set);
}

/* The new-mail items of a client: the items of its first fixed FETCH, as written. */
static void expect_fetch_items(const char *send, const char *want)
{
	char yaml[1024], err[512] = "";
	snprintf(yaml, sizeof(yaml),
	         "client:\n  name: t\n  listen: [stdio]\nmacros:\n  - name: m\n    trigger: \"SELECT {mailbox}\"\n"
	         "    send:\n      - \"%s\"\n",
	         send);
	struct macro_set *set = load(yaml, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL_FATAL(set);
	const char *items = macro_client_fetch_items(macro_client_find(set, NULL, "stdio"));
	if (!want) {
		CU_ASSERT_PTR_NULL(items);
	} else {
		CU_ASSERT_PTR_NOT_NULL_FATAL(items);
		CU_ASSERT_STRING_EQUAL(items, want);
	}
	macro_set_free(set);
}

static void test_fetch_items(void)
{
	expect_fetch_items("FETCH 1:* (UID FLAGS)", "(UID FLAGS)");
	expect_fetch_items("UID FETCH 1:* FLAGS", "FLAGS");
	expect_fetch_items("STATUS INBOX (MESSAGES)", NULL);
	/* What the loader's parser accepts: more spaces, or "(" right after the
	 * set (fuzz_macros: corpus/macros/regress-fetch-items-spacing). */
	expect_fetch_items("UID FETCH  1:*(FLAGS)", "(FLAGS)");
	expect_fetch_items("FETCH 1:*   (FLAGS UID)", "(FLAGS UID)");
}

void suite_macros(void)
{
	ADD_SUITE("macros",
	          {"load good", test_load_good},
	          {"load errors", test_load_errors},
	          {"load limits", test_load_limits},
	          {"side effects refused", test_side_effects_refused},
	          {"read-only allowed", test_read_only_allowed},
	          {"client find and load dir", test_client_find},
	          {"expand", test_expand},
	          {"claim exact", test_claim_exact},
	          {"claim fetch", test_claim_fetch},
	          {"shipped macros", test_shipped_macros},
	          {"new-mail fetch items", test_fetch_items});
}
