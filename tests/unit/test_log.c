/*
 * test_log.c - trace redaction (credentials and literal contents must never
 * appear), line format, level filtering, control-character stripping, and
 * reopening for log rotation.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include "log.h"
#include "suites.h"

/* Redact a C string (the NUL is not part of the message) into a fresh buffer. */
static const char *redact(const char *raw, bool secret)
{
	static char out[1024];
	log_redact_imap((const uint8_t *)raw, strlen(raw), secret, out, sizeof(out));
	return out;
}

static const char *redact_n(const char *raw, size_t len)
{
	static char out[1024];
	log_redact_imap((const uint8_t *)raw, len, false, out, sizeof(out));
	return out;
}

/* The secret must be gone, whatever else happened to the line. */
#define ASSERT_HIDDEN(out, needle) CU_ASSERT_PTR_NULL(strstr((out), (needle)))

static void test_login_atom(void)
{
	const char *o = redact("a1 LOGIN bob hunter2\r\n", false);
	CU_ASSERT_STRING_EQUAL(o, "a1 LOGIN bob <secret>");
	ASSERT_HIDDEN(o, "hunter2");

	/* Command names are case-insensitive. */
	o = redact("x login bob hunter2\r\n", false);
	CU_ASSERT_STRING_EQUAL(o, "x login bob <secret>");

	/* No password yet (or a broken command): nothing to hide, nothing lost. */
	CU_ASSERT_STRING_EQUAL(redact("a1 LOGIN bob\r\n", false), "a1 LOGIN bob");
	CU_ASSERT_STRING_EQUAL(redact("a1 LOGIN\r\n", false), "a1 LOGIN");
	/* Not LOGIN: the fourth token stays. */
	CU_ASSERT_STRING_EQUAL(redact("a1 SELECT INBOX extra\r\n", false), "a1 SELECT INBOX extra");
	CU_ASSERT_STRING_EQUAL(redact("a1 LOGINX bob pw\r\n", false), "a1 LOGINX bob pw");
}

static void test_login_quoted(void)
{
	const char *o = redact("a1 LOGIN \"bob smith\" \"hunter 2 \\\"quoted\\\"\"\r\n", false);
	CU_ASSERT_STRING_EQUAL(o, "a1 LOGIN \"bob smith\" <secret>");
	ASSERT_HIDDEN(o, "hunter");
	ASSERT_HIDDEN(o, "quoted");

	/* Extra spaces and trailing junk after the password are hidden with it. */
	o = redact("a1 LOGIN  bob   hunter2 more words\r\n", false);
	CU_ASSERT_STRING_EQUAL(o, "a1 LOGIN  bob   <secret>");
	ASSERT_HIDDEN(o, "more");
}

static void test_login_literal(void)
{
	const char *o = redact("a1 LOGIN bob {7}\r\nhunter2\r\n", false);
	CU_ASSERT_STRING_EQUAL(o, "a1 LOGIN bob <secret>");
	ASSERT_HIDDEN(o, "hunter2");

	/* User as a LITERAL+ literal: its size shows, its content does not. */
	o = redact("a1 LOGIN {3+}\r\nbob {7+}\r\nhunter2\r\n", false);
	CU_ASSERT_STRING_EQUAL(o, "a1 LOGIN {3+}<3 bytes> <secret>");
	ASSERT_HIDDEN(o, "bob");
	ASSERT_HIDDEN(o, "hunter2");

	/* Traced before the password literal arrived: just the marker line. */
	o = redact("a1 LOGIN \"bob\" {7}\r\n", false);
	CU_ASSERT_STRING_EQUAL(o, "a1 LOGIN \"bob\" <secret>");

	/* A password literal holding CRLF and spaces does not end the message early. */
	o = redact("a1 LOGIN bob {12}\r\nhun\r\nter 2 x\r\na2 NOOP\r\n", false);
	CU_ASSERT_STRING_EQUAL(o, "a1 LOGIN bob <secret> a2 NOOP");
	ASSERT_HIDDEN(o, "hun");
	ASSERT_HIDDEN(o, "ter");
}

static void test_authenticate(void)
{
	/* SASL-IR: the initial response is the credential (\0bob\0hunter2). */
	const char *o = redact("a2 AUTHENTICATE PLAIN AGJvYgBodW50ZXIy\r\n", false);
	CU_ASSERT_STRING_EQUAL(o, "a2 AUTHENTICATE PLAIN <secret>");
	ASSERT_HIDDEN(o, "AGJvYgBodW50ZXIy");

	o = redact("a2 authenticate XOAUTH2 dXNlcj1ib2IBYXV0aD1CZWFyZXIgeHl6AQE=\r\n", false);
	CU_ASSERT_STRING_EQUAL(o, "a2 authenticate XOAUTH2 <secret>");

	/* Without an initial response the command is harmless. */
	CU_ASSERT_STRING_EQUAL(redact("a2 AUTHENTICATE PLAIN\r\n", false), "a2 AUTHENTICATE PLAIN");
	/* The server's challenge is not a credential. */
	CU_ASSERT_STRING_EQUAL(redact("+ \r\n", false), "+ ");
}

static void test_secret_line(void)
{
	/* A continuation line has no tag: all of it is the credential. */
	const char *o = redact("AGJvYgBodW50ZXIy\r\n", true);
	CU_ASSERT_STRING_EQUAL(o, "<secret>");
	CU_ASSERT_STRING_EQUAL(redact("a1 NOOP\r\n", true), "<secret>");
	CU_ASSERT_STRING_EQUAL(redact("", true), "<secret>");
}

static void test_pipelined(void)
{
	/* A login hidden behind another command in the same buffer is still found. */
	const char *o = redact("a0 NOOP\r\na1 LOGIN bob hunter2\r\na2 SELECT INBOX\r\n", false);
	CU_ASSERT_STRING_EQUAL(o, "a0 NOOP a1 LOGIN bob <secret> a2 SELECT INBOX");
	ASSERT_HIDDEN(o, "hunter2");
}

static void test_fetch_body_literal(void)
{
	static const char body[] = "Subject: merger plans\r\n\r\nTop secret body text.\r\n";
	char raw[256];
	char want[128];
	int n = snprintf(raw, sizeof(raw), "* 12 FETCH (UID 7 BODY[] {%zu}\r\n%s FLAGS (\\Seen))\r\n",
	                 strlen(body), body);
	snprintf(want, sizeof(want), "* 12 FETCH (UID 7 BODY[] {%zu}<%zu bytes> FLAGS (\\Seen))",
	         strlen(body), strlen(body));

	const char *o = redact_n(raw, (size_t)n);
	CU_ASSERT_STRING_EQUAL(o, want);
	ASSERT_HIDDEN(o, "merger");
	ASSERT_HIDDEN(o, "Top secret");

	/* Only the start of a big literal in this buffer: hide what is there. */
	o = redact("* 1 FETCH (BODY[TEXT] {100000}\r\nfirst chunk of the body", false);
	CU_ASSERT_STRING_EQUAL(o, "* 1 FETCH (BODY[TEXT] {100000}<100000 bytes>");
	ASSERT_HIDDEN(o, "chunk");

	/* Binary literal (RFC 3516) with a NUL in it, then the rest of the line. */
	static const char bin[] = "* 2 FETCH (BINARY[1] ~{5}\r\nab\0cd)\r\n";
	o = redact_n(bin, sizeof(bin) - 1);
	CU_ASSERT_STRING_EQUAL(o, "* 2 FETCH (BINARY[1] ~{5}<5 bytes>)");

	/* Client APPEND of a message with LITERAL+. */
	o = redact("a3 APPEND INBOX (\\Seen) {11+}\r\nhello world\r\n", false);
	CU_ASSERT_STRING_EQUAL(o, "a3 APPEND INBOX (\\Seen) {11+}<11 bytes>");
	ASSERT_HIDDEN(o, "hello");
}

static void test_malformed_literals_hidden(void)
{
	/* Marker glued to an atom, or inside an unterminated quote: still a literal. */
	const char *o = redact("a1 SELECT foo{6}\r\nsecret\r\n", false);
	CU_ASSERT_STRING_EQUAL(o, "a1 SELECT foo{6}<6 bytes>");
	ASSERT_HIDDEN(o, "secret");
	o = redact("a1 SELECT \"foo{6}\r\nsecret\r\n", false);
	CU_ASSERT_STRING_EQUAL(o, "a1 SELECT \"foo{6}<6 bytes>");
	ASSERT_HIDDEN(o, "secret");

	/* An absurd size hides everything after it. */
	o = redact("* 1 FETCH (BODY[] {99999999999999999999999}\r\nsecret)\r\n", false);
	ASSERT_HIDDEN(o, "secret");

	/* Braces that are not a literal marker are just text. */
	CU_ASSERT_STRING_EQUAL(redact("a1 SEARCH SUBJECT \"{5}\"\r\n", false), "a1 SEARCH SUBJECT \"{5}\"");
	CU_ASSERT_STRING_EQUAL(redact("a1 X {} {a} {5\r\n", false), "a1 X {} {a} {5");
}

static void test_control_chars(void)
{
	CU_ASSERT_STRING_EQUAL(redact("a1 SELECT \x1b[31mred\x7f\r\n", false),
	                       "a1 SELECT \\x1b[31mred\\x7f");
	/* Bare CR inside a line, NUL, 8-bit bytes: escaped; the final CRLF: dropped. */
	CU_ASSERT_STRING_EQUAL(redact_n("a\rb\0c\xc3\xa9\r\n", 9), "a\\x0db\\x00c\\xc3\\xa9");
	/* A bare-LF line end is dropped too. */
	CU_ASSERT_STRING_EQUAL(redact("* OK hi\n", false), "* OK hi");
	CU_ASSERT_STRING_EQUAL(redact("", false), "");
}

static void test_truncation(void)
{
	char out[64];
	static const char line[] = "a1 SELECT \"a very long mailbox name that will not fit\"\r\n";

	/* Canary after the allowed length catches any overrun. */
	memset(out, 'Z', sizeof(out));
	log_redact_imap((const uint8_t *)line, strlen(line), false, out, 16);
	CU_ASSERT_EQUAL(strlen(out), 15);
	CU_ASSERT_STRING_EQUAL(out, "a1 SELECT \"a...");
	CU_ASSERT_EQUAL(out[16], 'Z');

	/* Exactly fitting is not truncated. */
	log_redact_imap((const uint8_t *)"a1 NOOP\r\n", 9, false, out, 8);
	CU_ASSERT_STRING_EQUAL(out, "a1 NOOP");

	/* Cut in the middle of an escape or of the secret marker: nothing leaks. */
	static const char login[] = "a1 LOGIN \x01ob hunter2\r\n";
	static const char full[] = "a1 LOGIN \\x01ob <secret>";
	for (size_t len = 1; len <= sizeof(full) + 2; len++) {
		memset(out, 'Z', sizeof(out));
		log_redact_imap((const uint8_t *)login, strlen(login), false, out, len);
		CU_ASSERT_EQUAL(strlen(out), len < sizeof(full) ? len - 1 : sizeof(full) - 1);
		if (len >= sizeof(full))
			CU_ASSERT_STRING_EQUAL(out, full);
		CU_ASSERT_EQUAL(out[len], 'Z');
		ASSERT_HIDDEN(out, "hunt");
	}

	/* Tiny buffers: still NUL-terminated; zero length writes nothing. */
	memset(out, 'Z', sizeof(out));
	log_redact_imap((const uint8_t *)line, strlen(line), false, out, 1);
	CU_ASSERT_EQUAL(out[0], '\0');
	CU_ASSERT_EQUAL(out[1], 'Z');
	memset(out, 'Z', sizeof(out));
	log_redact_imap((const uint8_t *)line, strlen(line), true, out, 0);
	CU_ASSERT_EQUAL(out[0], 'Z');
}

/* --- logging to a file --- */

static char log_path[64];

/* Whole file as a NUL-terminated string (caller frees). */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	char *s = malloc(1 << 16);
	size_t n = fread(s, 1, (1 << 16) - 1, f);
	s[n] = '\0';
	fclose(f);
	return s;
}

static int count_lines(const char *s)
{
	int n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* "2026-11-25T04:55:53.123Z " at the start of a line. */
static bool has_timestamp(const char *l)
{
	static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ ";
	for (size_t i = 0; shape[i]; i++) {
		if (shape[i] == 'd' ? (l[i] < '0' || l[i] > '9') : l[i] != shape[i])
			return false;
	}
	return true;
}

static void open_temp_log(void)
{
	strcpy(log_path, "/tmp/pimap-test-log-XXXXXX");
	int fd = mkstemp(log_path);
	CU_ASSERT_FATAL(fd >= 0);
	close(fd);
	CU_ASSERT_EQUAL_FATAL(log_open(log_path), 0);
}

static void restore_logging(void)
{
	log_close();
	log_set_level(LOG_LEVEL_INFO);
	log_set_trace(false);
	unlink(log_path);
}

/* log_vmsg is what wrappers with their own varargs call: it filters too. */
static void __attribute__((format(printf, 2, 3))) vwrap(enum log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(level, "v", fmt, ap);
	va_end(ap);
}

static void test_file_format_and_levels(void)
{
	open_temp_log();
	log_set_level(LOG_LEVEL_INFO);
	CU_ASSERT_EQUAL(log_get_level(), LOG_LEVEL_INFO);

	log_msg(LOG_LEVEL_INFO, "c7 192.0.2.1:993", "hello %d", 42);
	log_debug("dropped at info");
	log_warn("no prefix");
	log_msg(LOG_LEVEL_ERROR, "", "empty prefix");
	log_set_level(LOG_LEVEL_DEBUG);
	log_debug("debug now %s", "shown");
	log_set_level(LOG_LEVEL_ERROR);
	log_warn("dropped at error");
	log_info("dropped too");
	vwrap(LOG_LEVEL_DEBUG, "dropped %s", "via log_vmsg");
	vwrap(LOG_LEVEL_ERROR, "vmsg %d", 5);

	char *s = slurp(log_path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL(count_lines(s), 5);
	const char *want[] = {
		"INFO [c7 192.0.2.1:993] hello 42\n",
		"WARN no prefix\n",
		"ERROR empty prefix\n",
		"DEBUG debug now shown\n",
		"ERROR [v] vmsg 5\n",
	};
	const char *l = s;
	for (int k = 0; k < 5 && *l; k++) {
		CU_ASSERT(has_timestamp(l));
		CU_ASSERT_NSTRING_EQUAL(l + 25, want[k], strlen(want[k]));
		l = strchr(l, '\n') + 1;
	}
	CU_ASSERT_PTR_NULL(strstr(s, "dropped"));
	free(s);
	restore_logging();
}

static void test_message_sanitised(void)
{
	open_temp_log();
	/* A peer-chosen user name trying to forge a second line. */
	log_info("login failed for %s", "bob\r\n2026-01-01T00:00:00.000Z ERROR forged");
	log_msg(LOG_LEVEL_INFO, "c1\n", "tab\there bell\a esc\x1b del\x7f utf8 \xc3\xa9");

	char *s = slurp(log_path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL(count_lines(s), 2);
	CU_ASSERT_PTR_NOT_NULL(strstr(s, "INFO login failed for bob2026-01-01T00:00:00.000Z ERROR forged\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(s, "INFO [c1] tab here bell? esc? del? utf8 \xc3\xa9\n"));
	CU_ASSERT_PTR_NULL(strchr(s, '\r'));
	free(s);
	restore_logging();
}

static void test_long_message_cut(void)
{
	open_temp_log();
	char *big = malloc(20001);
	memset(big, 'x', 20000);
	big[20000] = '\0';
	log_info("%s", big);
	log_info("after");

	char *s = slurp(log_path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL(count_lines(s), 2);
	char *nl = strchr(s, '\n');
	CU_ASSERT((size_t)(nl - s) < 20000);
	CU_ASSERT(nl - s > 3 && memcmp(nl - 3, "...", 3) == 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(nl, "INFO after\n"));
	free(s);
	free(big);
	restore_logging();
}

static void test_reopen_and_errors(void)
{
	char rotated[80];
	open_temp_log();
	snprintf(rotated, sizeof(rotated), "%s.1", log_path);

	log_info("before rotation");
	CU_ASSERT_EQUAL(rename(log_path, rotated), 0);
	/* What SIGHUP does after logrotate moved the file away. */
	CU_ASSERT_EQUAL(log_open(log_path), 0);
	log_info("after rotation");

	/* A failed reopen reports errno and keeps the current file. */
	errno = 0;
	CU_ASSERT_EQUAL(log_open("/nonexistent-pimap-dir/x.log"), -1);
	CU_ASSERT_EQUAL(errno, ENOENT);
	log_info("still here");

	/* Logging leaves errno alone for the caller. */
	errno = EBADF;
	log_info("errno kept");
	log_debug("filtered, errno kept");
	CU_ASSERT_EQUAL(errno, EBADF);

	char *old = slurp(rotated), *cur = slurp(log_path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(old);
	CU_ASSERT_PTR_NOT_NULL_FATAL(cur);
	CU_ASSERT_EQUAL(count_lines(old), 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(old, "before rotation"));
	CU_ASSERT_EQUAL(count_lines(cur), 3);
	CU_ASSERT_PTR_NOT_NULL(strstr(cur, "after rotation"));
	CU_ASSERT_PTR_NOT_NULL(strstr(cur, "still here"));
	free(old);
	free(cur);
	unlink(rotated);

	/* Back to stderr: NULL and "" both mean stderr. */
	CU_ASSERT_EQUAL(log_open(""), 0);
	CU_ASSERT_EQUAL(log_open(NULL), 0);
	restore_logging();
}

static void test_trace(void)
{
	static const char login[] = "a1 LOGIN bob hunter2\r\n";
	open_temp_log();

	/* Off by default, and off below DEBUG even when enabled. */
	log_set_level(LOG_LEVEL_DEBUG);
	CU_ASSERT_FALSE(log_trace_enabled());
	log_trace_imap("c1", TRACE_CLIENT_IN, (const uint8_t *)login, strlen(login), false);
	log_set_trace(true);
	CU_ASSERT_TRUE(log_trace_enabled());
	log_set_level(LOG_LEVEL_INFO);
	log_trace_imap("c1", TRACE_CLIENT_IN, (const uint8_t *)login, strlen(login), false);

	log_set_level(LOG_LEVEL_DEBUG);
	log_trace_imap("c1", TRACE_CLIENT_IN, (const uint8_t *)login, strlen(login), false);
	log_trace_imap("c1", TRACE_UPSTREAM_OUT, (const uint8_t *)login, strlen(login), false);
	log_trace_imap("c1", TRACE_UPSTREAM_IN, (const uint8_t *)"+ \r\n", 4, false);
	log_trace_imap("c1", TRACE_CLIENT_OUT, (const uint8_t *)"+ \r\n", 4, false);
	log_trace_imap(NULL, TRACE_CLIENT_IN, (const uint8_t *)"AGJvYgBodW50ZXIy\r\n", 18, true);

	char *s = slurp(log_path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL(count_lines(s), 5);
	CU_ASSERT_PTR_NOT_NULL(strstr(s, "DEBUG [c1] C> a1 LOGIN bob <secret>\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(s, "DEBUG [c1] S> a1 LOGIN bob <secret>\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(s, "DEBUG [c1] S< + \n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(s, "DEBUG [c1] C< + \n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(s, "DEBUG C> <secret>\n"));
	ASSERT_HIDDEN(s, "hunter2");
	ASSERT_HIDDEN(s, "AGJvYgBodW50ZXIy");
	free(s);
	restore_logging();
}

/* Syslog: one datagram per line, "<PRI>Mmm dd hh:mm:ss ident[pid]: [prefix] message". */
static void test_syslog(void)
{
	char dir[] = "/tmp/pimap-test-syslog-XXXXXX", path[64], got[1024], want[256];
	struct sockaddr_un sa;
	CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/log", dir);
	int rx = socket(AF_UNIX, SOCK_DGRAM, 0);
	CU_ASSERT_FATAL(rx >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	CU_ASSERT_EQUAL_FATAL(bind(rx, (struct sockaddr *)&sa, sizeof(sa)), 0);

	CU_ASSERT_EQUAL_FATAL(log_open_syslog("pimap-test", LOG_MAIL, path), 0);
	CU_ASSERT_TRUE(log_to_syslog());
	log_set_level(LOG_LEVEL_INFO);
	log_msg(LOG_LEVEL_INFO, "c7 192.0.2.1:993", "hello %d\nforged", 42);
	log_debug("dropped at info");
	log_err("broken");

	ssize_t n = recv(rx, got, sizeof(got) - 1, MSG_DONTWAIT);
	CU_ASSERT_FATAL(n > 0);
	got[n] = '\0';
	/* mail.info = 2 * 8 + 6 */
	CU_ASSERT_NSTRING_EQUAL(got, "<22>", 4);
	snprintf(want, sizeof(want), " pimap-test[%ld]: [c7 192.0.2.1:993] hello 42forged", (long)getpid());
	CU_ASSERT_PTR_NOT_NULL(strstr(got, want));
	CU_ASSERT_PTR_NULL(strchr(got, '\n'));
	n = recv(rx, got, sizeof(got) - 1, MSG_DONTWAIT);
	CU_ASSERT_FATAL(n > 0);
	got[n] = '\0';
	CU_ASSERT_NSTRING_EQUAL(got, "<19>", 4); /* mail.err */
	CU_ASSERT_PTR_NOT_NULL(strstr(got, "]: broken"));
	CU_ASSERT_EQUAL(recv(rx, got, sizeof(got), MSG_DONTWAIT), -1); /* nothing at debug */

	/* The last warning or error is kept for status reports, even below the level. */
	char last[LOG_PROBLEM_MAX];
	time_t when = 0;
	log_set_level(LOG_LEVEL_ERROR);
	log_warn("link lost: %s", "timeout");
	CU_ASSERT_TRUE(log_last_problem(last, sizeof(last), &when));
	CU_ASSERT_STRING_EQUAL(last, "link lost: timeout");
	CU_ASSERT(when > 0);
	CU_ASSERT_EQUAL(recv(rx, got, sizeof(got), MSG_DONTWAIT), -1); /* filtered by the level */

	/* log_open() ends syslog; a path too long for a socket is refused. */
	CU_ASSERT_EQUAL(log_open(NULL), 0);
	CU_ASSERT_FALSE(log_to_syslog());
	char longpath[300];
	memset(longpath, 'x', sizeof(longpath) - 1);
	longpath[sizeof(longpath) - 1] = '\0';
	CU_ASSERT_EQUAL(log_open_syslog("pimap-test", LOG_MAIL, longpath), -1);
	CU_ASSERT_FALSE(log_to_syslog());

	close(rx);
	unlink(path);
	rmdir(dir);
	log_close();
	log_set_level(LOG_LEVEL_INFO);
}

static void test_peer_errno(void)
{
	CU_ASSERT_TRUE(log_errno_is_peer_event(ECONNRESET));
	CU_ASSERT_TRUE(log_errno_is_peer_event(EPIPE));
	CU_ASSERT_TRUE(log_errno_is_peer_event(ETIMEDOUT));
	CU_ASSERT_TRUE(log_errno_is_peer_event(ECONNABORTED));
	CU_ASSERT_TRUE(log_errno_is_peer_event(ENOTCONN));
	CU_ASSERT_FALSE(log_errno_is_peer_event(0));
	CU_ASSERT_FALSE(log_errno_is_peer_event(EMFILE));
	CU_ASSERT_FALSE(log_errno_is_peer_event(ENOMEM));
	CU_ASSERT_FALSE(log_errno_is_peer_event(EBADF));
}

void suite_log(void)
{
	ADD_SUITE("log",
	          { "redact LOGIN atom", test_login_atom },
	          { "redact LOGIN quoted", test_login_quoted },
	          { "redact LOGIN literal", test_login_literal },
	          { "redact AUTHENTICATE SASL-IR", test_authenticate },
	          { "redact secret line", test_secret_line },
	          { "redact pipelined", test_pipelined },
	          { "redact FETCH body literal", test_fetch_body_literal },
	          { "redact malformed literals", test_malformed_literals_hidden },
	          { "redact control chars", test_control_chars },
	          { "redact truncation", test_truncation },
	          { "file format and levels", test_file_format_and_levels },
	          { "messages sanitised", test_message_sanitised },
	          { "long message cut", test_long_message_cut },
	          { "reopen and errors", test_reopen_and_errors },
	          { "trace", test_trace },
	          { "syslog", test_syslog },
	          { "peer errno", test_peer_errno });
}
