/*
 * Unit tests for pimap_cmd.c: login names, preferences, NEW_FORMAT fetch
 * items and XPROVISION.
 *
 * Preference commands are given as real command text and run through
 * imap_parser (IMAP_PARSE_COMMANDS), and the parsed arguments are handed
 * over exactly as the gateway does: args + 1 after the command name. That
 * way the tests also pin how the parser tokenises fetch attributes such as
 * BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)]<0.100>.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include "buf.h"
#include "imap_parse.h"
#include "pimap_cmd.h"
#include "suites.h"

static const struct imap_limits limits = {
	.max_line_length = IMAP_DEFAULT_MAX_LINE_LENGTH,
	.max_literal_size = IMAP_DEFAULT_MAX_LITERAL_SIZE,
	.max_list_depth = IMAP_DEFAULT_MAX_LIST_DEPTH,
	.max_args = IMAP_DEFAULT_MAX_ARGS,
};

/* Parse one whole command (len bytes, CRLF included); the parser owns the message. */
static const struct imap_msg *parse_cmd(struct imap_parser *parser, const char *line, size_t len)
{
	size_t consumed = 0;
	enum imap_parse_result r;

	imap_parser_reset(parser);
	r = imap_parser_feed(parser, (const uint8_t *)line, len, &consumed);
	if (r != IMAP_PARSE_DONE)
		fprintf(stderr, "\n  cannot parse \"%s\": %s\n", line,
		        r == IMAP_PARSE_ERROR ? imap_parser_error(parser) : "incomplete");
	CU_ASSERT_EQUAL_FATAL(r, IMAP_PARSE_DONE);
	CU_ASSERT_EQUAL(consumed, len);
	return imap_parser_msg(parser);
}

/* A buffer's content as a C string, in a static buffer. */
static const char *text_of(const struct buf *b)
{
	static char text[8192];

	CU_ASSERT_FATAL(buf_len(b) < sizeof(text));
	if (buf_len(b))
		memcpy(text, buf_head(b), buf_len(b));
	text[buf_len(b)] = '\0';
	return text;
}

static bool prefs_equal(const struct pimap_prefs *a, const struct pimap_prefs *b)
{
	for (int i = 0; i < PIMAP_PREF_COUNT; i++)
		if (strcmp(a->value[i], b->value[i]) != 0)
			return false;
	return true;
}

/* ---- login ---------------------------------------------------------------- */

static void expect_login(const char *name, const char *user, const char *device)
{
	struct pimap_login login;
	char err[128] = "";

	CU_ASSERT_EQUAL_FATAL(pimap_login_parse(name, strlen(name), &login, err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(login.store_user, user);
	if (device == NULL) {
		CU_ASSERT_PTR_NULL(login.device_id);
	} else if (login.device_id == NULL) {
		CU_FAIL("device id missing");
	} else {
		CU_ASSERT_STRING_EQUAL(login.device_id, device);
	}
	pimap_login_free(&login);
	CU_ASSERT_PTR_NULL(login.store_user);
	CU_ASSERT_PTR_NULL(login.device_id);
}

static void expect_login_error(const char *name, size_t len, const char *why)
{
	struct pimap_login login;
	char err[128] = "";

	CU_ASSERT_EQUAL(pimap_login_parse(name, len, &login, err, sizeof(err)), -1);
	if (strstr(err, why) == NULL)
		fprintf(stderr, "\n  login \"%s\": error \"%s\", expected \"%s\"\n", name, err, why);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, why));
	CU_ASSERT_PTR_NULL(login.store_user);
	CU_ASSERT_PTR_NULL(login.device_id);
}

static void test_login_good(void)
{
	char name[PIMAP_MAX_USER_NAME + 1];

	expect_login("joe#P6505551234@example.org", "joe@example.org", "6505551234");
	expect_login("joe#P6505551234", "joe", "6505551234");
	expect_login("joe", "joe", NULL);
	expect_login("joe@example.org", "joe@example.org", NULL);
	/* the last "#P" separates: the user name keeps the first */
	expect_login("a#Pb#P12@x.org", "a#Pb@x.org", "12");
	/* "#p" is not the separator */
	expect_login("joe#p123", "joe#p123", NULL);
	/* the domain is after the last "@"; a "#P" in it is not a device */
	expect_login("joe@corp#P1.example", "joe@corp#P1.example", NULL);
	expect_login("joe#Pdev.1_x-Y", "joe", "dev.1_x-Y");

	/* the longest device id and the longest name */
	memset(name, 'd', sizeof(name));
	memcpy(name, "u#P", 3);
	name[3 + PIMAP_MAX_DEVICE_ID] = '\0';
	expect_login(name, "u", name + 3);
	memset(name, 'u', PIMAP_MAX_USER_NAME);
	name[PIMAP_MAX_USER_NAME] = '\0';
	expect_login(name, name, NULL);
}

static void test_login_errors(void)
{
	char name[PIMAP_MAX_USER_NAME + 2];

	expect_login_error("", 0, "empty login name");
	expect_login_error("#P123", 5, "empty user name");
	expect_login_error("#P123@example.org", 17, "empty user name");
	expect_login_error("@example.org", 12, "empty user name");
	expect_login_error("joe@", 4, "empty domain");
	expect_login_error("joe#P", 5, "empty device id");
	expect_login_error("joe#P@example.org", 17, "empty device id");
	expect_login_error("joe#P12!3", 9, "invalid character in device id");
	expect_login_error("joe#P12 3@x", 11, "invalid character in device id");
	expect_login_error("joe\0x", 5, "NUL byte");

	memset(name, 'd', sizeof(name));
	memcpy(name, "u#P", 3);
	name[3 + PIMAP_MAX_DEVICE_ID + 1] = '\0';
	expect_login_error(name, strlen(name), "device id longer than 64 bytes");
	memset(name, 'u', PIMAP_MAX_USER_NAME + 1);
	name[PIMAP_MAX_USER_NAME + 1] = '\0';
	expect_login_error(name, strlen(name), "login name longer than 256 bytes");
}

/* ---- preference table ----------------------------------------------------- */

static void test_defaults_names_lookup(void)
{
	struct pimap_prefs prefs;

	pimap_prefs_init(&prefs);
	CU_ASSERT_STRING_EQUAL(prefs.value[PIMAP_PREF_OUTBAND_ADDRESS], "");
	CU_ASSERT_STRING_EQUAL(prefs.value[PIMAP_PREF_OUTBAND_CHANNEL], "NONE");
	CU_ASSERT_STRING_EQUAL(prefs.value[PIMAP_PREF_OUTBAND_FORMAT], "EMN");
	CU_ASSERT_STRING_EQUAL(prefs.value[PIMAP_PREF_INBAND_NEW_FORMAT], "NONE");
	CU_ASSERT_STRING_EQUAL(prefs.value[PIMAP_PREF_INBAND_PUSH], "OFF");
	CU_ASSERT_STRING_EQUAL(prefs.value[PIMAP_PREF_EVENT_FILTER], "ALL");
	pimap_prefs_free(&prefs);
	CU_ASSERT_PTR_NULL(prefs.value[0]);

	CU_ASSERT_STRING_EQUAL(pimap_pref_name(PIMAP_PREF_INBAND_PUSH), "PIMAP_INBAND_PUSH");
	CU_ASSERT_STRING_EQUAL(pimap_pref_name(PIMAP_PREF_EVENT_FILTER), "PIMAP_EVENT_FILTER");
	CU_ASSERT_PTR_NULL(pimap_pref_name(PIMAP_PREF_COUNT));
	for (int i = 0; i < PIMAP_PREF_COUNT; i++) {
		const char *n = pimap_pref_name((enum pimap_pref_id)i);
		CU_ASSERT_EQUAL(pimap_pref_lookup(n, strlen(n)), i);
	}
	CU_ASSERT_EQUAL(pimap_pref_lookup("pimap_outband_channel", 21), PIMAP_PREF_OUTBAND_CHANNEL);
	CU_ASSERT_EQUAL(pimap_pref_lookup("Pimap_In-Band_New_Format", 24), PIMAP_PREF_INBAND_NEW_FORMAT);
	CU_ASSERT_EQUAL(pimap_pref_lookup("PIMAP_INBAND_PUSH_", 18), -1);
	CU_ASSERT_EQUAL(pimap_pref_lookup("PIMAP_INBAND_PUS", 16), -1);
	CU_ASSERT_EQUAL(pimap_pref_lookup("PIMAP_INBAND_PUSH", 16), -1); /* len counts */
	CU_ASSERT_EQUAL(pimap_pref_lookup("", 0), -1);

	/* only what is implemented is offered (outband.c), and NONE always is */
	CU_ASSERT_STRING_EQUAL(pimap_outband_channels[0], "UDP");
	CU_ASSERT_STRING_EQUAL(pimap_outband_channels[1], "WEBHOOK");
	CU_ASSERT_STRING_EQUAL(pimap_outband_channels[2], "NONE");
	CU_ASSERT_PTR_NULL(pimap_outband_channels[3]);
}

static void test_copy(void)
{
	struct pimap_prefs a, b;

	pimap_prefs_init(&a);
	pimap_prefs_init(&b);
	CU_ASSERT_EQUAL(pimap_pref_set_value(&a, PIMAP_PREF_INBAND_PUSH, "ON"), 0);
	CU_ASSERT_EQUAL(pimap_pref_set_value(&a, PIMAP_PREF_OUTBAND_ADDRESS, "joe@example.org"), 0);
	pimap_prefs_copy(&b, &a);
	CU_ASSERT_TRUE(prefs_equal(&a, &b));
	CU_ASSERT_PTR_NOT_EQUAL(a.value[PIMAP_PREF_INBAND_PUSH], b.value[PIMAP_PREF_INBAND_PUSH]);
	CU_ASSERT_EQUAL(pimap_pref_set_value(&a, PIMAP_PREF_INBAND_PUSH, "OFF"), 0);
	CU_ASSERT_STRING_EQUAL(b.value[PIMAP_PREF_INBAND_PUSH], "ON");
	pimap_prefs_copy(&b, &b);
	CU_ASSERT_STRING_EQUAL(b.value[PIMAP_PREF_OUTBAND_ADDRESS], "joe@example.org");
	pimap_prefs_free(&a);
	pimap_prefs_free(&b);
}

/* ---- XSETPIMAPPREF -------------------------------------------------------- */

/* The server's policy for set_line (NULL: the grammar alone). */
static const struct pimap_pref_policy *set_policy;

/* Run one XSETPIMAPPREF command line through the parser and pimap_pref_set_args. */
static int set_line(struct pimap_prefs *prefs, const char *line, size_t len, enum pimap_pref_id *id, char *err,
                    size_t errlen)
{
	struct imap_parser *parser = imap_parser_new(IMAP_PARSE_COMMANDS, &limits);
	const struct imap_msg *msg;
	int rc;

	CU_ASSERT_PTR_NOT_NULL_FATAL(parser);
	msg = parse_cmd(parser, line, len);
	CU_ASSERT_TRUE(imap_arg_is_atom(&msg->args[0], "XSETPIMAPPREF"));
	rc = pimap_pref_set_args(prefs, msg->args + 1, msg->nargs - 1, set_policy, id, err, errlen);
	imap_parser_free(parser);
	return rc;
}

static void expect_set_len(const char *line, size_t len, enum pimap_pref_id want_id, const char *want)
{
	struct pimap_prefs prefs, again;
	enum pimap_pref_id id = PIMAP_PREF_COUNT;
	char err[256] = "";

	pimap_prefs_init(&prefs);
	if (set_line(&prefs, line, len, &id, err, sizeof(err)) != 0)
		fprintf(stderr, "\n  \"%s\": %s\n", line, err);
	CU_ASSERT_STRING_EQUAL(err, "");
	CU_ASSERT_EQUAL(id, want_id);
	CU_ASSERT_STRING_EQUAL(prefs.value[want_id], want);
	/* the canonical value reads back from the state database unchanged */
	pimap_prefs_init(&again);
	CU_ASSERT_EQUAL(pimap_pref_set_value(&again, want_id, prefs.value[want_id]), 0);
	CU_ASSERT_TRUE(prefs_equal(&prefs, &again));
	pimap_prefs_free(&again);
	pimap_prefs_free(&prefs);
}

static void expect_set(const char *line, enum pimap_pref_id want_id, const char *want)
{
	expect_set_len(line, strlen(line), want_id, want);
}

static void expect_set_error_len(const char *line, size_t len, const char *why)
{
	struct pimap_prefs prefs, before;
	enum pimap_pref_id id = PIMAP_PREF_COUNT;
	char err[256] = "";

	pimap_prefs_init(&prefs);
	/* non-default values, so that "unchanged" is not "reset to defaults" */
	CU_ASSERT_EQUAL(pimap_pref_set_value(&prefs, PIMAP_PREF_INBAND_NEW_FORMAT, "(FLAGS)"), 0);
	CU_ASSERT_EQUAL(pimap_pref_set_value(&prefs, PIMAP_PREF_OUTBAND_ADDRESS, "x@y"), 0);
	pimap_prefs_init(&before);
	pimap_prefs_copy(&before, &prefs);
	CU_ASSERT_EQUAL(set_line(&prefs, line, len, &id, err, sizeof(err)), -1);
	if (strstr(err, why) == NULL)
		fprintf(stderr, "\n  \"%s\": error \"%s\", expected \"%s\"\n", line, err, why);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, why));
	CU_ASSERT_EQUAL(id, PIMAP_PREF_COUNT);
	CU_ASSERT_TRUE(prefs_equal(&prefs, &before));
	/* what goes back to the client never holds control bytes */
	for (const char *p = err; *p; p++)
		CU_ASSERT_TRUE(*p >= 0x20 && *p < 0x7f);
	pimap_prefs_free(&before);
	pimap_prefs_free(&prefs);
}

static void expect_set_error(const char *line, const char *why)
{
	expect_set_error_len(line, strlen(line), why);
}

static void test_set_keywords(void)
{
	expect_set("a XSETPIMAPPREF PIMAP_INBAND_PUSH ON\r\n", PIMAP_PREF_INBAND_PUSH, "ON");
	expect_set("a xsetpimappref pimap_inband_push on\r\n", PIMAP_PREF_INBAND_PUSH, "ON");
	expect_set("a XSETPIMAPPREF PIMAP_INBAND_PUSH \"off\"\r\n", PIMAP_PREF_INBAND_PUSH, "OFF");
	expect_set("a XSETPIMAPPREF PIMAP_OUTBAND_CHANNEL none\r\n", PIMAP_PREF_OUTBAND_CHANNEL, "NONE");
	expect_set("a XSETPIMAPPREF PIMAP_OUTBAND_FORMAT Extended\r\n", PIMAP_PREF_OUTBAND_FORMAT, "EXTENDED");
	expect_set("a XSETPIMAPPREF PIMAP_OUTBAND_FORMAT EMN\r\n", PIMAP_PREF_OUTBAND_FORMAT, "EMN");
	expect_set("a XSETPIMAPPREF PIMAP_EVENT_FILTER new\r\n", PIMAP_PREF_EVENT_FILTER, "NEW");
	expect_set("a XSETPIMAPPREF PIMAP_EVENT_FILTER NONE\r\n", PIMAP_PREF_EVENT_FILTER, "NONE");

	expect_set_error("a XSETPIMAPPREF PIMAP_INBAND_PUSH MAYBE\r\n",
	                 "PIMAP_INBAND_PUSH must be one of (ON OFF), not MAYBE");
	expect_set_error("a XSETPIMAPPREF PIMAP_OUTBAND_FORMAT XML\r\n", "must be one of (EMN EXTENDED)");
	expect_set_error("a XSETPIMAPPREF PIMAP_EVENT_FILTER SOME\r\n", "must be one of (ALL NEW NONE)");
	expect_set_error("a XSETPIMAPPREF PIMAP_INBAND_PUSH (ON)\r\n", "takes a single value, not a list");
	/* a literal8 with a NUL never matches a keyword, and is echoed safely */
	static const char nul_value[] = "a XSETPIMAPPREF PIMAP_INBAND_PUSH ~{3+}\r\nO\0N\r\n";
	expect_set_error_len(nul_value, sizeof(nul_value) - 1, "not O?N");
}

static void test_set_channel(void)
{
	expect_set("a XSETPIMAPPREF PIMAP_OUTBAND_CHANNEL udp\r\n", PIMAP_PREF_OUTBAND_CHANNEL, "UDP");
	expect_set("a XSETPIMAPPREF PIMAP_OUTBAND_CHANNEL Webhook\r\n", PIMAP_PREF_OUTBAND_CHANNEL, "WEBHOOK");
	expect_set_error("a XSETPIMAPPREF PIMAP_OUTBAND_CHANNEL SIP\r\n",
	                 "channel SIP is not offered by this server (see XPROVISION)");
	expect_set_error("a XSETPIMAPPREF PIMAP_OUTBAND_CHANNEL sms\r\n", "channel sms is not offered by this server");
	expect_set_error("a XSETPIMAPPREF PIMAP_OUTBAND_CHANNEL PIGEON\r\n", "unknown channel PIGEON (see XPROVISION)");
	expect_set_error("a XSETPIMAPPREF PIMAP_OUTBAND_CHANNEL (NONE)\r\n", "not a list");
}

static void test_set_address(void)
{
	char line[PIMAP_MAX_PREF_VALUE + 100];
	int n;

	expect_set("a XSETPIMAPPREF PIMAP_OUTBAND_ADDRESS 13335559999\r\n", PIMAP_PREF_OUTBAND_ADDRESS, "13335559999");
	expect_set("a XSETPIMAPPREF PIMAP_OUTBAND_ADDRESS \"Joe <joe@example.org>\"\r\n", PIMAP_PREF_OUTBAND_ADDRESS,
	           "Joe <joe@example.org>");
	expect_set("a XSETPIMAPPREF PIMAP_OUTBAND_ADDRESS \"\"\r\n", PIMAP_PREF_OUTBAND_ADDRESS, "");
	expect_set("a XSETPIMAPPREF PIMAP_OUTBAND_ADDRESS {5+}\r\na\"b\\c\r\n", PIMAP_PREF_OUTBAND_ADDRESS, "a\"b\\c");
	/* the text is kept as the client wrote it (case included) */
	expect_set("a XSETPIMAPPREF PIMAP_OUTBAND_ADDRESS Nil\r\n", PIMAP_PREF_OUTBAND_ADDRESS, "Nil");

	expect_set_error("a XSETPIMAPPREF PIMAP_OUTBAND_ADDRESS {3+}\r\na\r\n\r\n", "must be printable ASCII");
	expect_set_error("a XSETPIMAPPREF PIMAP_OUTBAND_ADDRESS \"caf\xc3\xa9\"\r\n", "must be printable ASCII");
	expect_set_error("a XSETPIMAPPREF PIMAP_OUTBAND_ADDRESS {3+}\r\na\x7f\x62\r\n", "must be printable ASCII");
	expect_set_error("a XSETPIMAPPREF PIMAP_OUTBAND_ADDRESS {2+}\r\na\t\r\n", "must be printable ASCII");
	expect_set_error("a XSETPIMAPPREF PIMAP_OUTBAND_ADDRESS (a b)\r\n", "not a list");

	/* exactly the limit, then one byte more */
	n = snprintf(line, sizeof(line), "a XSETPIMAPPREF PIMAP_OUTBAND_ADDRESS {%d+}\r\n", PIMAP_MAX_PREF_VALUE);
	memset(line + n, 'x', PIMAP_MAX_PREF_VALUE);
	memcpy(line + n + PIMAP_MAX_PREF_VALUE, "\r\n", 3);
	{
		struct pimap_prefs prefs;
		char err[128] = "";
		pimap_prefs_init(&prefs);
		CU_ASSERT_EQUAL(set_line(&prefs, line, strlen(line), NULL, err, sizeof(err)), 0);
		CU_ASSERT_EQUAL(strlen(prefs.value[PIMAP_PREF_OUTBAND_ADDRESS]), PIMAP_MAX_PREF_VALUE);
		pimap_prefs_free(&prefs);
	}
	n = snprintf(line, sizeof(line), "a XSETPIMAPPREF PIMAP_OUTBAND_ADDRESS {%d+}\r\n", PIMAP_MAX_PREF_VALUE + 1);
	memset(line + n, 'x', PIMAP_MAX_PREF_VALUE + 1);
	memcpy(line + n + PIMAP_MAX_PREF_VALUE + 1, "\r\n", 3);
	expect_set_error(line, "PIMAP_OUTBAND_ADDRESS is longer than 1024 bytes");
}

/* A stand-in for the gateway's address check: refuses "bad...", records what it saw. */
static char seen_address[64], seen_peer[64];
static int seen_calls;

static int check_stub(const char *address, const void *ctx, const char *peer, char *err, size_t errlen)
{
	CU_ASSERT_STRING_EQUAL((const char *)ctx, "ctx");
	seen_calls++;
	snprintf(seen_address, sizeof(seen_address), "%s", address);
	snprintf(seen_peer, sizeof(seen_peer), "%s", peer ? peer : "(null)");
	if (strncmp(address, "bad", 3) == 0) {
		snprintf(err, errlen, "refused by policy: %s", address);
		return -1;
	}
	return 0;
}

static void test_set_policy(void)
{
	static const char *const offered[] = {"UDP", "NONE", NULL};
	const struct pimap_pref_policy policy = {offered, check_stub, "ctx", "192.0.2.7:4000"};
	struct buf out;

	set_policy = &policy;
	/* a channel the build has but the server does not offer now */
	expect_set_error("a XSETPIMAPPREF PIMAP_OUTBAND_CHANNEL webhook\r\n",
	                 "channel webhook is not offered by this server (see XPROVISION)");
	expect_set_error("a XSETPIMAPPREF PIMAP_OUTBAND_CHANNEL SIP\r\n", "channel SIP is not offered");
	expect_set_error("a XSETPIMAPPREF PIMAP_OUTBAND_CHANNEL PIGEON\r\n", "unknown channel PIGEON");
	expect_set("a XSETPIMAPPREF PIMAP_OUTBAND_CHANNEL udp\r\n", PIMAP_PREF_OUTBAND_CHANNEL, "UDP");
	CU_ASSERT_EQUAL(seen_calls, 0); /* the channel is not the address check's business */

	/* the address check sees the value (NUL-terminated) and the peer; its refusal is the NO, prefs untouched */
	expect_set("a XSETPIMAPPREF PIMAP_OUTBAND_ADDRESS \"192.0.2.7:9\"\r\n", PIMAP_PREF_OUTBAND_ADDRESS,
	           "192.0.2.7:9");
	CU_ASSERT_EQUAL(seen_calls, 1);
	CU_ASSERT_STRING_EQUAL(seen_address, "192.0.2.7:9");
	CU_ASSERT_STRING_EQUAL(seen_peer, "192.0.2.7:4000");
	expect_set_error("a XSETPIMAPPREF PIMAP_OUTBAND_ADDRESS {5+}\r\nbad:1\r\n", "refused by policy: bad:1");
	CU_ASSERT_EQUAL(seen_calls, 2);
	/* the grammar goes first: the check never sees control bytes */
	expect_set_error("a XSETPIMAPPREF PIMAP_OUTBAND_ADDRESS {3+}\r\nb\ta\r\n", "must be printable ASCII");
	CU_ASSERT_EQUAL(seen_calls, 2);
	set_policy = NULL;

	/* stored values are the database's: no policy (a WEBHOOK stored earlier stays, and is not sent) */
	struct pimap_prefs prefs;
	pimap_prefs_init(&prefs);
	CU_ASSERT_EQUAL(pimap_pref_set_value(&prefs, PIMAP_PREF_OUTBAND_CHANNEL, "WEBHOOK"), 0);
	pimap_prefs_free(&prefs);

	/* XPROVISION lists exactly what is offered */
	buf_init(&out, 0);
	pimap_provision_format(NULL, 0, offered, &out);
	CU_ASSERT_PTR_NOT_NULL(strstr(text_of(&out), "* XPROVISION XPIMAPPREF PIMAP_OUTBAND_CHANNEL (UDP NONE)\r\n"));
	buf_free(&out);
}

static void test_set_name_and_arity_errors(void)
{
	char line[300];

	expect_set_error("a XSETPIMAPPREF\r\n", "missing preference name");
	expect_set_error("a XSETPIMAPPREF (PIMAP_INBAND_PUSH) ON\r\n", "preference name expected, not a list");
	expect_set_error("a XSETPIMAPPREF PIMAP_FOO ON\r\n", "unknown preference PIMAP_FOO");
	expect_set_error("a XSETPIMAPPREF PIMAP_INBAND_PUSH_ (ON)\r\n", "unknown preference PIMAP_INBAND_PUSH_");
	/* the -01 underscore spelling only works with a list */
	expect_set_error("a XSETPIMAPPREF PIMAP_INBAND_NEW_FORMAT_ ALL\r\n", "unknown preference PIMAP_INBAND_NEW_FORMAT_");
	expect_set_error("a XSETPIMAPPREF {4+}\r\nA\tB\x01\r\n", "unknown preference A?B?");
	expect_set_error("a XSETPIMAPPREF PIMAP_INBAND_PUSH\r\n", "missing value for PIMAP_INBAND_PUSH");
	expect_set_error("a XSETPIMAPPREF pimap_inband_push ON OFF\r\n", "PIMAP_INBAND_PUSH takes one value");
	expect_set_error("a XSETPIMAPPREF PIMAP_INBAND_NEW_FORMAT FLAGS UID\r\n", "use a parenthesised list");

	/* a long unknown name is cut in the error */
	memset(line, 0, sizeof(line));
	memcpy(line, "a XSETPIMAPPREF ", 16);
	memset(line + 16, 'N', 200);
	memcpy(line + 216, " ON\r\n", 5);
	{
		struct pimap_prefs prefs;
		char err[512] = "";
		pimap_prefs_init(&prefs);
		CU_ASSERT_EQUAL(set_line(&prefs, line, strlen(line), NULL, err, sizeof(err)), -1);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, "NNN..."));
		CU_ASSERT_TRUE(strlen(err) < 120);
		pimap_prefs_free(&prefs);
	}
}

static void test_set_new_format(void)
{
	const enum pimap_pref_id nf = PIMAP_PREF_INBAND_NEW_FORMAT;

	expect_set("a XSETPIMAPPREF PIMAP_INBAND_NEW_FORMAT NONE\r\n", nf, "NONE");
	expect_set("a XSETPIMAPPREF PIMAP_INBAND_NEW_FORMAT all\r\n", nf, "ALL");
	expect_set("a XSETPIMAPPREF PIMAP_INBAND_NEW_FORMAT Fast\r\n", nf, "FAST");
	expect_set("a XSETPIMAPPREF PIMAP_INBAND_NEW_FORMAT FULL\r\n", nf, "FULL");
	expect_set("a XSETPIMAPPREF PIMAP_INBAND_NEW_FORMAT flags\r\n", nf, "(FLAGS)");
	expect_set("a XSETPIMAPPREF PIMAP_IN-BAND_NEW_FORMAT envelope\r\n", nf, "(ENVELOPE)");
	/* the section, spaces and parentheses included, is one atom from the parser */
	expect_set("a XSETPIMAPPREF PIMAP_INBAND_NEW_FORMAT (uid flags body.peek[header.fields (from subject)]<0.100>)\r\n",
	           nf, "(UID FLAGS BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)]<0.100>)");
	expect_set("a XSETPIMAPPREF PIMAP_INBAND_NEW_FORMAT BODY[HEADER.FIELDS (A B)]<0.10>\r\n", nf,
	           "(BODY[HEADER.FIELDS (A B)]<0.10>)");
	expect_set("a XSETPIMAPPREF PIMAP_INBAND_NEW_FORMAT (INTERNALDATE RFC822.SIZE BODYSTRUCTURE BODY RFC822.HEADER "
	           "BODY[] BODY[TEXT] BODY[HEADER] BODY[1] BODY[1.2.MIME] BODY[2.HEADER] BODY[3.TEXT] "
	           "BODY[1.HEADER.FIELDS.NOT (X-Spam Received)] BODY.PEEK[]<00.100> "
	           "BINARY.PEEK[1.2]<0.10> BINARY.PEEK[] BINARY.SIZE[1])\r\n",
	           nf,
	           "(INTERNALDATE RFC822.SIZE BODYSTRUCTURE BODY RFC822.HEADER BODY[] BODY[TEXT] BODY[HEADER] BODY[1] "
	           "BODY[1.2.MIME] BODY[2.HEADER] BODY[3.TEXT] BODY[1.HEADER.FIELDS.NOT (X-SPAM RECEIVED)] "
	           "BODY.PEEK[]<0.100> BINARY.PEEK[1.2]<0.10> BINARY.PEEK[] BINARY.SIZE[1])");
	/* quoted header names become atoms */
	expect_set("a XSETPIMAPPREF PIMAP_INBAND_NEW_FORMAT BODY.PEEK[HEADER.FIELDS (\"From\" Date)]\r\n", nf,
	           "(BODY.PEEK[HEADER.FIELDS (FROM DATE)])");
	/* -01: "PIMAP_INBAND_NEW_FORMAT_(ALL BODY[])", a macro inside the list */
	expect_set("a XSETPIMAPPREF PIMAP_INBAND_NEW_FORMAT_(ALL BODY[])\r\n", nf, "(ALL BODY[])");
	expect_set("a XSETPIMAPPREF PIMAP_INBAND_NEW_FORMAT (fast)\r\n", nf, "(FAST)");
	expect_set("a XSETPIMAPPREF PIMAP_INBAND_NEW_FORMAT (BODY[]<4294967295.4294967295>)\r\n", nf,
	           "(BODY[]<4294967295.4294967295>)");
}

static void test_set_new_format_errors(void)
{
	char line[4 * PIMAP_MAX_PREF_VALUE];
	size_t n;

	expect_set_error("a XSETPIMAPPREF PIMAP_INBAND_NEW_FORMAT ()\r\n", "empty fetch attribute list");
	expect_set_error("a XSETPIMAPPREF PIMAP_INBAND_NEW_FORMAT \"ALL\"\r\n", "not a string");
	expect_set_error("a XSETPIMAPPREF PIMAP_INBAND_NEW_FORMAT (FLAGS (UID))\r\n", "not nested lists");
	expect_set_error("a XSETPIMAPPREF PIMAP_INBAND_NEW_FORMAT (FLAGS \"UID\")\r\n", "not strings");
	/* RFC822 and RFC822.TEXT would set \Seen; NONE is not an attribute */
	expect_set_error("a XSETPIMAPPREF PIMAP_INBAND_NEW_FORMAT RFC822\r\n", "unknown fetch attribute RFC822");
	expect_set_error("a XSETPIMAPPREF PIMAP_INBAND_NEW_FORMAT (RFC822.TEXT)\r\n", "unknown fetch attribute");
	expect_set_error("a XSETPIMAPPREF PIMAP_INBAND_NEW_FORMAT (NONE)\r\n", "unknown fetch attribute NONE");
	expect_set_error("a XSETPIMAPPREF PIMAP_INBAND_NEW_FORMAT FOO[1]\r\n", "unknown fetch attribute FOO[1]");
	expect_set_error("a XSETPIMAPPREF PIMAP_INBAND_NEW_FORMAT BINARY[1]\r\n", "unknown fetch attribute");
	static const char *const bad_sections[] = {
		"BODY[FOO]", "BODY[MIME]", "BODY[1.]", "BODY[0]", "BODY[01]", "BODY[1.0]",
		"BODY[1..2]", "BODY[4294967296]", "BODY[HEADER.FIELDS]", "BODY[HEADER.FIELDS ()]",
		"BODY[HEADER.FIELDS (A  B)]", "BODY[HEADER.FIELDS (A )]", "BODY[HEADER.FIELDS ( A)]",
		"BODY[HEADER.FIELDS(A)]", "BODY[HEADER.FIELDS (A:B)]", "BODY[HEADER.FIELDS (\"A B\")]",
		"BODY[HEADER.FIELDS (\"A)]", "BODY[HEADER.FIELDS (A]", "BODY[HEADERX]", "BODY[TEXT ]",
		"BODY[ TEXT]", "BODY[1.MIMEX]", "BINARY.PEEK[HEADER]", "BINARY.PEEK[1.TEXT]", "BODY[HEADER",
		"BODY.PEEK[1.2", "BODY[1x]", "BODY[HEADER.FIELDS.NOT ()]",
	};
	for (size_t i = 0; i < sizeof(bad_sections) / sizeof(bad_sections[0]); i++) {
		snprintf(line, sizeof(line), "a XSETPIMAPPREF PIMAP_INBAND_NEW_FORMAT %s\r\n", bad_sections[i]);
		expect_set_error(line, "invalid section in fetch attribute");
	}
	static const char *const bad_partials[] = {
		"BODY[]<>", "BODY[]<1>", "BODY[]<0.0>", "BODY[]<0.01>", "BODY[]<a.1>", "BODY[]<0.1",
		"BODY[]<4294967296.1>", "BODY.PEEK[1]<0,1>", "BINARY.PEEK[1]<1.>",
	};
	for (size_t i = 0; i < sizeof(bad_partials) / sizeof(bad_partials[0]); i++) {
		snprintf(line, sizeof(line), "a XSETPIMAPPREF PIMAP_INBAND_NEW_FORMAT %s\r\n", bad_partials[i]);
		expect_set_error(line, "invalid <offset.count> in fetch attribute");
	}
	expect_set_error("a XSETPIMAPPREF PIMAP_INBAND_NEW_FORMAT BODY[]x\r\n", "unexpected text after the section");
	expect_set_error("a XSETPIMAPPREF PIMAP_INBAND_NEW_FORMAT BODY[]<0.1>x\r\n", "unexpected text after the section");
	expect_set_error("a XSETPIMAPPREF PIMAP_INBAND_NEW_FORMAT BINARY.SIZE[1]<0.1>\r\n",
	                 "unexpected text after the section");
	expect_set_error("a XSETPIMAPPREF PIMAP_INBAND_NEW_FORMAT BODY[1][2]\r\n", "unexpected text after the section");

	/* the longest list that fits: 170 x FLAGS is 1021 bytes canonical */
	char value[2 * PIMAP_MAX_PREF_VALUE];
	n = 0;
	for (int i = 0; i < PIMAP_MAX_PREF_VALUE / 6; i++)
		n += (size_t)snprintf(value + n, sizeof(value) - n, "%sFLAGS", i ? " " : "(");
	snprintf(value + n, sizeof(value) - n, ")");
	snprintf(line, sizeof(line), "a XSETPIMAPPREF PIMAP_INBAND_NEW_FORMAT %s\r\n", value);
	expect_set(line, PIMAP_PREF_INBAND_NEW_FORMAT, value);
}

/* One attribute more than fits: 171 x FLAGS make 1027 bytes. */
static void test_set_new_format_too_long(void)
{
	char line[4 * PIMAP_MAX_PREF_VALUE];
	size_t n = (size_t)snprintf(line, sizeof(line), "a XSETPIMAPPREF PIMAP_INBAND_NEW_FORMAT (");

	for (int i = 0; i < PIMAP_MAX_PREF_VALUE / 6 + 1; i++)
		n += (size_t)snprintf(line + n, sizeof(line) - n, "%sflags", i ? " " : "");
	snprintf(line + n, sizeof(line) - n, ")\r\n");
	expect_set_error(line, "value of PIMAP_INBAND_NEW_FORMAT is longer than 1024 bytes");
}

/* ---- stored values -------------------------------------------------------- */

static void test_set_value(void)
{
	struct pimap_prefs prefs, before;
	char big[PIMAP_MAX_PREF_VALUE + 2];

	pimap_prefs_init(&prefs);
	CU_ASSERT_EQUAL(pimap_pref_set_value(&prefs, PIMAP_PREF_OUTBAND_CHANNEL, "NONE"), 0);
	CU_ASSERT_EQUAL(pimap_pref_set_value(&prefs, PIMAP_PREF_OUTBAND_FORMAT, "EXTENDED"), 0);
	CU_ASSERT_EQUAL(pimap_pref_set_value(&prefs, PIMAP_PREF_INBAND_PUSH, "ON"), 0);
	CU_ASSERT_EQUAL(pimap_pref_set_value(&prefs, PIMAP_PREF_EVENT_FILTER, "NEW"), 0);
	CU_ASSERT_EQUAL(pimap_pref_set_value(&prefs, PIMAP_PREF_OUTBAND_ADDRESS, "a b \"c\""), 0);
	CU_ASSERT_EQUAL(pimap_pref_set_value(&prefs, PIMAP_PREF_INBAND_NEW_FORMAT,
	                                     "(UID BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)]<0.100>)"), 0);
	CU_ASSERT_STRING_EQUAL(prefs.value[PIMAP_PREF_INBAND_NEW_FORMAT],
	                       "(UID BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)]<0.100>)");
	CU_ASSERT_EQUAL(pimap_pref_set_value(&prefs, PIMAP_PREF_INBAND_NEW_FORMAT, "FULL"), 0);
	CU_ASSERT_STRING_EQUAL(prefs.value[PIMAP_PREF_INBAND_NEW_FORMAT], "FULL");
	CU_ASSERT_STRING_EQUAL(prefs.value[PIMAP_PREF_OUTBAND_ADDRESS], "a b \"c\"");

	/* invalid stored values are refused and change nothing */
	pimap_prefs_init(&before);
	pimap_prefs_copy(&before, &prefs);
	CU_ASSERT_EQUAL(pimap_pref_set_value(&prefs, PIMAP_PREF_INBAND_PUSH, "MAYBE"), -1);
	CU_ASSERT_EQUAL(pimap_pref_set_value(&prefs, PIMAP_PREF_OUTBAND_CHANNEL, "SMS"), -1);
	CU_ASSERT_EQUAL(pimap_pref_set_value(&prefs, PIMAP_PREF_OUTBAND_FORMAT, ""), -1);
	CU_ASSERT_EQUAL(pimap_pref_set_value(&prefs, PIMAP_PREF_EVENT_FILTER, "ALL "), -1);
	CU_ASSERT_EQUAL(pimap_pref_set_value(&prefs, PIMAP_PREF_OUTBAND_ADDRESS, "a\r\nb"), -1);
	CU_ASSERT_EQUAL(pimap_pref_set_value(&prefs, PIMAP_PREF_INBAND_NEW_FORMAT, "(FLAGS"), -1);
	CU_ASSERT_EQUAL(pimap_pref_set_value(&prefs, PIMAP_PREF_INBAND_NEW_FORMAT, "(FLAGS) UID"), -1);
	CU_ASSERT_EQUAL(pimap_pref_set_value(&prefs, PIMAP_PREF_INBAND_NEW_FORMAT, "(FLAGS)\r\nt X UID"), -1);
	CU_ASSERT_EQUAL(pimap_pref_set_value(&prefs, PIMAP_PREF_INBAND_NEW_FORMAT, "{5}"), -1);
	CU_ASSERT_EQUAL(pimap_pref_set_value(&prefs, PIMAP_PREF_INBAND_NEW_FORMAT, ""), -1);
	CU_ASSERT_EQUAL(pimap_pref_set_value(&prefs, PIMAP_PREF_INBAND_NEW_FORMAT, "BODY[FOO]"), -1);
	CU_ASSERT_EQUAL(pimap_pref_set_value(&prefs, PIMAP_PREF_INBAND_NEW_FORMAT, "((FLAGS))"), -1);
	memset(big, 'x', sizeof(big));
	big[sizeof(big) - 1] = '\0';
	CU_ASSERT_EQUAL(pimap_pref_set_value(&prefs, PIMAP_PREF_OUTBAND_ADDRESS, big), -1);
	big[0] = '(';
	big[sizeof(big) - 2] = ')';
	CU_ASSERT_EQUAL(pimap_pref_set_value(&prefs, PIMAP_PREF_INBAND_NEW_FORMAT, big), -1);
	CU_ASSERT_EQUAL(pimap_pref_set_value(&prefs, PIMAP_PREF_COUNT, "ON"), -1);
	CU_ASSERT_EQUAL(pimap_pref_set_value(&prefs, PIMAP_PREF_INBAND_PUSH, NULL), -1);
	CU_ASSERT_TRUE(prefs_equal(&prefs, &before));
	pimap_prefs_free(&before);
	pimap_prefs_free(&prefs);
}

/* ---- XGETPIMAPPREF(S) ----------------------------------------------------- */

static void expect_get(const struct pimap_prefs *prefs, const char *line, const char *want)
{
	struct imap_parser *parser = imap_parser_new(IMAP_PARSE_COMMANDS, &limits);
	const struct imap_msg *msg = parse_cmd(parser, line, strlen(line));
	struct buf out;
	char err[128] = "";

	buf_init(&out, 0);
	buf_append_str(&out, ">"); /* format_get appends */
	CU_ASSERT_EQUAL(pimap_prefs_format_get(prefs, msg->args[0].str, msg->args + 1, msg->nargs - 1, &out, err,
	                                       sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(err, "");
	CU_ASSERT_STRING_EQUAL(text_of(&out), want);
	buf_free(&out);
	imap_parser_free(parser);
}

static void expect_get_error(const struct pimap_prefs *prefs, const char *line, const char *why)
{
	struct imap_parser *parser = imap_parser_new(IMAP_PARSE_COMMANDS, &limits);
	const struct imap_msg *msg = parse_cmd(parser, line, strlen(line));
	struct buf out;
	char err[128] = "";

	buf_init(&out, 0);
	CU_ASSERT_EQUAL(pimap_prefs_format_get(prefs, msg->args[0].str, msg->args + 1, msg->nargs - 1, &out, err,
	                                       sizeof(err)), -1);
	CU_ASSERT_EQUAL(buf_len(&out), 0); /* nothing half-written */
	if (strstr(err, why) == NULL)
		fprintf(stderr, "\n  \"%s\": error \"%s\", expected \"%s\"\n", line, err, why);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, why));
	buf_free(&out);
	imap_parser_free(parser);
}

static void test_get(void)
{
	struct pimap_prefs prefs;

	pimap_prefs_init(&prefs);
	expect_get(&prefs, "a XGETPIMAPPREFS\r\n",
	           ">* XGETPIMAPPREFS (PIMAP_OUTBAND_ADDRESS \"\" PIMAP_OUTBAND_CHANNEL NONE PIMAP_OUTBAND_FORMAT EMN "
	           "PIMAP_INBAND_NEW_FORMAT NONE PIMAP_INBAND_PUSH OFF PIMAP_EVENT_FILTER ALL PIMAP_FOLDER_STATUS OFF)\r\n");
	expect_get(&prefs, "a xGetPimapPref ()\r\n",
	           ">* XGETPIMAPPREF (PIMAP_OUTBAND_ADDRESS \"\" PIMAP_OUTBAND_CHANNEL NONE PIMAP_OUTBAND_FORMAT EMN "
	           "PIMAP_INBAND_NEW_FORMAT NONE PIMAP_INBAND_PUSH OFF PIMAP_EVENT_FILTER ALL PIMAP_FOLDER_STATUS OFF)\r\n");
	expect_get(&prefs, "a XGETPIMAPPREFS (pimap_outband_channel)\r\n",
	           ">* XGETPIMAPPREFS (PIMAP_OUTBAND_CHANNEL NONE)\r\n");
	expect_get(&prefs, "a xgetpimappref PIMAP_INBAND_PUSH PIMAP_IN-BAND_NEW_FORMAT\r\n",
	           ">* XGETPIMAPPREF (PIMAP_INBAND_PUSH OFF PIMAP_INBAND_NEW_FORMAT NONE)\r\n");

	CU_ASSERT_EQUAL(pimap_pref_set_value(&prefs, PIMAP_PREF_INBAND_NEW_FORMAT, "(UID BODY.PEEK[HEADER.FIELDS (FROM)])"), 0);
	CU_ASSERT_EQUAL(pimap_pref_set_value(&prefs, PIMAP_PREF_OUTBAND_ADDRESS, "Joe \"J\" \\ <joe@x>"), 0);
	expect_get(&prefs, "a XGETPIMAPPREFS (PIMAP_INBAND_NEW_FORMAT PIMAP_OUTBAND_ADDRESS)\r\n",
	           ">* XGETPIMAPPREFS (PIMAP_INBAND_NEW_FORMAT (UID BODY.PEEK[HEADER.FIELDS (FROM)]) "
	           "PIMAP_OUTBAND_ADDRESS \"Joe \\\"J\\\" \\\\ <joe@x>\")\r\n");
	/* atoms where they are atoms; NIL and atom-specials quoted */
	CU_ASSERT_EQUAL(pimap_pref_set_value(&prefs, PIMAP_PREF_OUTBAND_ADDRESS, "+13335559999"), 0);
	expect_get(&prefs, "a XGETPIMAPPREFS (PIMAP_OUTBAND_ADDRESS)\r\n",
	           ">* XGETPIMAPPREFS (PIMAP_OUTBAND_ADDRESS +13335559999)\r\n");
	CU_ASSERT_EQUAL(pimap_pref_set_value(&prefs, PIMAP_PREF_OUTBAND_ADDRESS, "nil"), 0);
	expect_get(&prefs, "a XGETPIMAPPREFS (PIMAP_OUTBAND_ADDRESS)\r\n",
	           ">* XGETPIMAPPREFS (PIMAP_OUTBAND_ADDRESS \"nil\")\r\n");
	CU_ASSERT_EQUAL(pimap_pref_set_value(&prefs, PIMAP_PREF_OUTBAND_ADDRESS, "a]b"), 0);
	expect_get(&prefs, "a XGETPIMAPPREFS (PIMAP_OUTBAND_ADDRESS)\r\n",
	           ">* XGETPIMAPPREFS (PIMAP_OUTBAND_ADDRESS \"a]b\")\r\n");
	/* "[" is an ATOM-CHAR, but written bare it opens a BODY[...]-style
	 * section for parsers, swallowing the rest of the list (fuzz_pimap_cmd
	 * regression: tests/fuzz/corpus/pimap_cmd/regress-getpref-address-bracket). */
	CU_ASSERT_EQUAL(pimap_pref_set_value(&prefs, PIMAP_PREF_OUTBAND_ADDRESS, "INARY.PEEK["), 0);
	expect_get(&prefs, "a XGETPIMAPPREFS (PIMAP_OUTBAND_ADDRESS PIMAP_INBAND_PUSH)\r\n",
	           ">* XGETPIMAPPREFS (PIMAP_OUTBAND_ADDRESS \"INARY.PEEK[\" PIMAP_INBAND_PUSH OFF)\r\n");
	CU_ASSERT_EQUAL(pimap_pref_set_value(&prefs, PIMAP_PREF_INBAND_NEW_FORMAT, "ALL"), 0);
	expect_get(&prefs, "a XGETPIMAPPREFS (PIMAP_INBAND_NEW_FORMAT)\r\n",
	           ">* XGETPIMAPPREFS (PIMAP_INBAND_NEW_FORMAT ALL)\r\n");

	expect_get_error(&prefs, "a XGETPIMAPPREFS (PIMAP_INBAND_PUSH PIMAP_FOO)\r\n", "unknown preference PIMAP_FOO");
	expect_get_error(&prefs, "a XGETPIMAPPREF PIMAP_INBAND_PUSH pimap_bar\r\n", "unknown preference pimap_bar");
	expect_get_error(&prefs, "a XGETPIMAPPREFS ((PIMAP_INBAND_PUSH))\r\n", "preference names must be atoms");
	expect_get_error(&prefs, "a XGETPIMAPPREFS PIMAP_INBAND_PUSH (PIMAP_EVENT_FILTER)\r\n",
	                 "preference names must be atoms");
	pimap_prefs_free(&prefs);
}

/* ---- NEW_FORMAT push items ------------------------------------------------ */

static void expect_items(const char *value, const char *want)
{
	struct pimap_prefs prefs;
	struct buf out;

	pimap_prefs_init(&prefs);
	buf_init(&out, 0);
	CU_ASSERT_EQUAL_FATAL(pimap_pref_set_value(&prefs, PIMAP_PREF_INBAND_NEW_FORMAT, value), 0);
	CU_ASSERT_TRUE(pimap_new_format_fetch_items(&prefs, &out));
	CU_ASSERT_STRING_EQUAL(text_of(&out), want);

	/* what goes to the store parses as the argument of a UID FETCH */
	struct imap_parser *parser = imap_parser_new(IMAP_PARSE_COMMANDS, &limits);
	struct buf line;
	buf_init(&line, 0);
	buf_printf(&line, "s1 UID FETCH 7 %s\r\n", text_of(&out));
	const struct imap_msg *msg = parse_cmd(parser, (const char *)buf_head(&line), buf_len(&line));
	CU_ASSERT_EQUAL(msg->nargs, 4);
	CU_ASSERT_EQUAL(msg->args[3].type, IMAP_ARG_LIST);
	CU_ASSERT_TRUE(msg->args[3].list_count > 0 && imap_arg_is_atom(&msg->args[3].list[0], "UID"));
	imap_parser_free(parser);
	buf_free(&line);
	buf_free(&out);
	pimap_prefs_free(&prefs);
}

static void test_fetch_items(void)
{
	struct pimap_prefs prefs;
	struct buf out;

	pimap_prefs_init(&prefs);
	buf_init(&out, 0);
	CU_ASSERT_FALSE(pimap_new_format_fetch_items(&prefs, &out)); /* NONE: push EXISTS */
	CU_ASSERT_EQUAL(buf_len(&out), 0);
	buf_free(&out);
	pimap_prefs_free(&prefs);

	expect_items("ALL", "(UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE)");
	expect_items("FAST", "(UID FLAGS INTERNALDATE RFC822.SIZE)");
	expect_items("FULL", "(UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODY)");
	expect_items("(FLAGS)", "(UID FLAGS)");
	expect_items("(UID)", "(UID)");
	/* UID moves to the front; BODY[ and RFC822.HEADER become peeks */
	expect_items("(FLAGS UID BODY[HEADER.FIELDS (FROM SUBJECT)]<0.100> RFC822.HEADER)",
	             "(UID FLAGS BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)]<0.100> BODY.PEEK[HEADER])");
	expect_items("(ALL BODY[])", "(UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODY.PEEK[])");
	/* nothing else is touched */
	expect_items("(BODY.PEEK[TEXT] BODY BODYSTRUCTURE BINARY.PEEK[1]<0.10> BINARY.SIZE[2])",
	             "(UID BODY.PEEK[TEXT] BODY BODYSTRUCTURE BINARY.PEEK[1]<0.10> BINARY.SIZE[2])");
	/* duplicates, also after rewriting, are sent once; a header name that
	 * looks like an attribute is not one */
	expect_items("(RFC822.HEADER BODY.PEEK[HEADER] FLAGS FAST BODY[HEADER.FIELDS (FLAGS ENVELOPE)] ENVELOPE)",
	             "(UID BODY.PEEK[HEADER] FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (FLAGS ENVELOPE)] "
	             "ENVELOPE)");
}

/* ---- XPROVISION ----------------------------------------------------------- */

static void test_provision(void)
{
	static const char prefs_lines[] =
		"* XPROVISION XPIMAPPREF PIMAP_OUTBAND_ADDRESS (astring)\r\n"
		"* XPROVISION XPIMAPPREF PIMAP_OUTBAND_CHANNEL (UDP WEBHOOK NONE)\r\n"
		"* XPROVISION XPIMAPPREF PIMAP_OUTBAND_FORMAT (EMN EXTENDED)\r\n"
		"* XPROVISION XPIMAPPREF PIMAP_INBAND_NEW_FORMAT (NONE ALL FAST FULL fetch-att-list)\r\n"
		"* XPROVISION XPIMAPPREF PIMAP_INBAND_PUSH (ON OFF)\r\n"
		"* XPROVISION XPIMAPPREF PIMAP_EVENT_FILTER (ALL NEW NONE)\r\n"
		"* XPROVISION XPIMAPPREF PIMAP_FOLDER_STATUS (ON OFF)\r\n";
	const struct pimap_provision_limit lim[] = {
		{"MAX_QUEUED_EVENTS", 10000},
		{"MAX_PREF_VALUE", PIMAP_MAX_PREF_VALUE},
		{"BIG", 18446744073709551615ull},
	};
	struct buf out;

	buf_init(&out, 0);
	pimap_provision_format(NULL, 0, NULL, &out);
	CU_ASSERT_STRING_EQUAL(text_of(&out), prefs_lines);
	buf_clear(&out);
	pimap_provision_format(lim, 3, NULL, &out);
	CU_ASSERT_STRING_EQUAL(text_of(&out), "* XPROVISION XPIMAPPREF PIMAP_OUTBAND_ADDRESS (astring)\r\n"
	                                      "* XPROVISION XPIMAPPREF PIMAP_OUTBAND_CHANNEL (UDP WEBHOOK NONE)\r\n"
	                                      "* XPROVISION XPIMAPPREF PIMAP_OUTBAND_FORMAT (EMN EXTENDED)\r\n"
	                                      "* XPROVISION XPIMAPPREF PIMAP_INBAND_NEW_FORMAT (NONE ALL FAST FULL "
	                                      "fetch-att-list)\r\n"
	                                      "* XPROVISION XPIMAPPREF PIMAP_INBAND_PUSH (ON OFF)\r\n"
	                                      "* XPROVISION XPIMAPPREF PIMAP_EVENT_FILTER (ALL NEW NONE)\r\n"
	                                      "* XPROVISION XPIMAPPREF PIMAP_FOLDER_STATUS (ON OFF)\r\n"
	                                      "* XPROVISION LIMIT MAX_QUEUED_EVENTS 10000\r\n"
	                                      "* XPROVISION LIMIT MAX_PREF_VALUE 1024\r\n"
	                                      "* XPROVISION LIMIT BIG 18446744073709551615\r\n");
	buf_free(&out);
}

/* ---- XZIP ------------------------------------------------------------------ */

/* XZIP's inner command: accepted with this tag and command name, or refused with this text. */
static void expect_xzip(const char *line, const char *want_tag, const char *want_cmd, const char *want_err)
{
	struct imap_parser *parser = imap_parser_new(IMAP_PARSE_COMMANDS, &limits);
	const struct imap_msg *msg = parse_cmd(parser, line, strlen(line));
	char err[160] = "";
	struct imap_parser *inner = pimap_xzip_parse_inner(msg, &limits, err, sizeof(err));

	if (want_err) {
		CU_ASSERT_PTR_NULL(inner);
		CU_ASSERT_STRING_EQUAL(err, want_err);
		if (strcmp(err, want_err) != 0)
			fprintf(stderr, "\n  %s: got \"%s\"\n", line, err);
	} else {
		CU_ASSERT_PTR_NOT_NULL_FATAL(inner);
		const struct imap_msg *m = imap_parser_msg(inner);
		CU_ASSERT_STRING_EQUAL(m->tag, want_tag);
		CU_ASSERT_TRUE(imap_arg_is_atom(&m->args[0], want_cmd));
	}
	imap_parser_free(inner);
	imap_parser_free(parser);
}

static void test_xzip(void)
{
	expect_xzip("a XZIP z1 FETCH 1:* (FLAGS)\r\n", "z1", "FETCH", NULL);
	expect_xzip("a XZIP z1 SELECT {5+}\r\nINBOX\r\n", "z1", "SELECT", NULL);
	expect_xzip("a XZIP z1\r\n", NULL, NULL, "XZIP needs an inner tag and command");
	expect_xzip("a XZIP \"z1\" NOOP\r\n", NULL, NULL, "XZIP needs an inner tag and command");
	expect_xzip("a XZIP a NOOP\r\n", NULL, NULL, "XZIP inner tag must differ from the outer tag");
	expect_xzip("a XZIP z1 idle\r\n", NULL, NULL, "XZIP cannot wrap IDLE");
	expect_xzip("a XZIP z1 LOGOUT\r\n", NULL, NULL, "XZIP cannot wrap LOGOUT");
	expect_xzip("a XZIP z1 XZIP z2 NOOP\r\n", NULL, NULL, "XZIP cannot wrap XZIP");
	/* One atom to the outer parser ("z[ IDLE ]", a section), the tag "z["
	 * and IDLE to the inner one: refused on what would run
	 * (fuzz_pimap_cmd: corpus/pimap_cmd/regress-xzip-*). */
	expect_xzip("a XZIP z[ IDLE ] NOOP\r\n", NULL, NULL, "XZIP inner tag is not a plain tag");
	expect_xzip("a XZIP z[ LOGOUT ] NOOP\r\n", NULL, NULL, "XZIP inner tag is not a plain tag");
}

void suite_pimap_cmd(void)
{
	ADD_SUITE("pimap_cmd",
	          {"login: good names", test_login_good},
	          {"login: every error", test_login_errors},
	          {"prefs: defaults, names, lookup", test_defaults_names_lookup},
	          {"prefs: copy", test_copy},
	          {"XSETPIMAPPREF: keyword values", test_set_keywords},
	          {"XSETPIMAPPREF: out-band channel", test_set_channel},
	          {"XSETPIMAPPREF: out-band address", test_set_address},
	          {"XSETPIMAPPREF: the server's channel and address policy", test_set_policy},
	          {"XSETPIMAPPREF: name and arity errors", test_set_name_and_arity_errors},
	          {"XSETPIMAPPREF: NEW_FORMAT values", test_set_new_format},
	          {"XSETPIMAPPREF: NEW_FORMAT errors", test_set_new_format_errors},
	          {"XSETPIMAPPREF: NEW_FORMAT length limit", test_set_new_format_too_long},
	          {"stored values", test_set_value},
	          {"XGETPIMAPPREF(S)", test_get},
	          {"NEW_FORMAT fetch items", test_fetch_items},
	          {"XPROVISION", test_provision},
	          {"XZIP: the inner command and its checks", test_xzip});
}
