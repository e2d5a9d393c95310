/*
 * log.c - leveled logging to stderr or an append-only file, and redacted
 * IMAP protocol traces.
 *
 * The process is single-threaded (libev), so the state is a few statics.
 * Several processes may share one log file: every line is built in memory
 * and written with a single write() on an O_APPEND descriptor, which the
 * kernel appends atomically, so lines from different writers never interleave.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/*
 * Longest line written, including the timestamp header. Longer messages are
 * cut and end in "...": a log line is for a human, and a 64 KiB command
 * echoed in full would only flood the file.
 */
#define LOG_LINE_MAX 8192

/* Room for one redacted trace message; the rest of the line is the header. */
#define LOG_TRACE_MAX 4096

static int            log_fd = STDERR_FILENO; /* where lines go */
static bool           log_fd_owned;           /* log_fd is a file we opened (not stderr) */
static enum log_level log_level = LOG_LEVEL_INFO;
static bool           log_trace;              /* protocol traces wanted */

static const char *const level_names[] = {
	[LOG_LEVEL_ERROR] = "ERROR",
	[LOG_LEVEL_WARN]  = "WARN",
	[LOG_LEVEL_INFO]  = "INFO",
	[LOG_LEVEL_DEBUG] = "DEBUG",
};

/*
 * Point logging at path (appending, created 0640) or at stderr for NULL/"".
 * The new file is opened before the old one is closed, so a failed reopen
 * (SIGHUP after a rotation into a full or missing directory) keeps logging
 * to the old target. Returns 0, or -1 with errno set.
 */
int log_open(const char *path)
{
	int fd = STDERR_FILENO;

	if (path && *path) {
		do
			fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
		while (fd < 0 && errno == EINTR);
		if (fd < 0)
			return -1;
	}
	if (log_fd_owned)
		close(log_fd);
	log_fd = fd;
	log_fd_owned = fd != STDERR_FILENO;
	return 0;
}

void log_close(void)
{
	if (log_fd_owned)
		close(log_fd);
	log_fd = STDERR_FILENO;
	log_fd_owned = false;
}

void log_set_level(enum log_level level)
{
	if ((int)level < (int)LOG_LEVEL_ERROR)
		level = LOG_LEVEL_ERROR;
	if (level > LOG_LEVEL_DEBUG)
		level = LOG_LEVEL_DEBUG;
	log_level = level;
}

enum log_level log_get_level(void)
{
	return log_level;
}

void log_set_trace(bool on)
{
	log_trace = on;
}

bool log_trace_enabled(void)
{
	return log_trace;
}

/*
 * Append src to dst[*n..cap) with control characters neutralised, so text a
 * peer controls (user names, error strings, command echoes) cannot forge a
 * second log line or drive a terminal: CR and LF vanish, tab becomes a space,
 * other C0 bytes and DEL become '?'. Bytes >= 0x80 pass (UTF-8 user names).
 * Returns false if src did not fit.
 */
static bool append_clean(char *dst, size_t *n, size_t cap, const char *src)
{
	for (const unsigned char *s = (const unsigned char *)src; *s; s++) {
		unsigned char c = *s;
		if (c == '\r' || c == '\n')
			continue;
		if (*n >= cap)
			return false;
		if (c == '\t')
			c = ' ';
		else if (c < 0x20 || c == 0x7f)
			c = '?';
		dst[(*n)++] = (char)c;
	}
	return true;
}

/* write() the whole line, retrying on EINTR and on a short write (disk full, pipe). */
static void write_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t w = write(fd, p, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return; /* nowhere left to report it */
		}
		p += w;
		len -= (size_t)w;
	}
}

void log_vmsg(enum log_level level, const char *prefix, const char *fmt, va_list ap)
{
	/* The cheap test first: debug calls in hot paths cost one compare. */
	if (level > log_level)
		return;

	int saved_errno = errno; /* callers log and then still look at errno */
	char msg[LOG_LINE_MAX];
	char line[LOG_LINE_MAX + 1]; /* + the newline */
	size_t n;

	int mlen = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (mlen < 0)
		snprintf(msg, sizeof(msg), "(bad log format: %s)", fmt);
	bool cut = mlen >= (int)sizeof(msg);

	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	const char *name = (unsigned)level < sizeof(level_names) / sizeof(level_names[0])
	                   ? level_names[level] : "?";
	int hlen = snprintf(line, LOG_LINE_MAX, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s ",
	                    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
	                    tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L, name);
	n = hlen > 0 ? (size_t)hlen : 0;

	if (prefix && *prefix) {
		line[n++] = '[';
		append_clean(line, &n, LOG_LINE_MAX - 2, prefix);
		line[n++] = ']';
		line[n++] = ' ';
	}
	if (!append_clean(line, &n, LOG_LINE_MAX, msg))
		cut = true;
	if (cut) {
		if (n > LOG_LINE_MAX - 3)
			n = LOG_LINE_MAX - 3;
		memcpy(line + n, "...", 3);
		n += 3;
	}
	line[n++] = '\n';
	write_all(log_fd, line, n);
	errno = saved_errno;
}

void log_msg(enum log_level level, const char *prefix, const char *fmt, ...)
{
	va_list ap;

	if (level > log_level)
		return;
	va_start(ap, fmt);
	log_vmsg(level, prefix, fmt, ap);
	va_end(ap);
}

bool log_errno_is_peer_event(int err)
{
	switch (err) {
	case ECONNRESET:
	case EPIPE:
	case ETIMEDOUT:
	case ECONNABORTED:
	case ENOTCONN:
		return true;
	default:
		return false;
	}
}

/* --- IMAP trace redaction -------------------------------------------------
 *
 * A deliberately small scanner, independent of imap_parse.c: it only needs to
 * find token boundaries, literals and line ends, and must never show a
 * literal's content or a credential whatever the peer sends. When in doubt it
 * hides more: anything that looks like a literal marker at the end of a line
 * is treated as one, even inside a malformed atom or an unterminated quote.
 */

/* Output cursor: writes at most cap - 1 bytes and always NUL-terminates. */
struct rout {
	char  *p;
	size_t cap;  /* outlen; 0 means write nothing at all */
	size_t n;    /* bytes written, excluding the NUL */
	bool   cut;  /* something did not fit */
};

static void rout_put(struct rout *o, const char *s, size_t len)
{
	if (!o->cap)
		return;
	size_t room = o->cap - 1 - o->n;
	if (len > room) {
		len = room;
		o->cut = true;
	}
	memcpy(o->p + o->n, s, len);
	o->n += len;
}

static void rout_str(struct rout *o, const char *s)
{
	rout_put(o, s, strlen(s));
}

/* Printable ASCII as is, anything else as \xNN, so the trace stays one clean line. */
static void rout_bytes(struct rout *o, const uint8_t *s, size_t len)
{
	for (size_t i = 0; i < len && !o->cut; i++) {
		if (s[i] >= 0x20 && s[i] < 0x7f) {
			rout_put(o, (const char *)s + i, 1);
		} else {
			char esc[5];
			snprintf(esc, sizeof(esc), "\\x%02x", s[i]);
			rout_put(o, esc, 4);
		}
	}
}

/* Length of the line end (CRLF or a bare LF) at i, or 0. */
static size_t eol_at(const uint8_t *p, size_t len, size_t i)
{
	if (i < len && p[i] == '\n')
		return 1;
	if (i + 1 < len && p[i] == '\r' && p[i + 1] == '\n')
		return 2;
	return 0;
}

/*
 * Is there a literal marker at i: "{n}", "{n+}", "~{n}" or "~{n+}" directly
 * followed by a line end? If so, *mark_len is the marker's length (without
 * the line end), *hdr_len the marker plus line end, *size the declared size
 * (saturated: an absurd size hides everything that follows).
 */
static bool literal_at(const uint8_t *p, size_t len, size_t i,
                       size_t *mark_len, size_t *hdr_len, uint64_t *size)
{
	size_t j = i;
	uint64_t n = 0;

	if (j < len && p[j] == '~')
		j++;
	if (j >= len || p[j] != '{')
		return false;
	j++;
	size_t digits = j;
	while (j < len && p[j] >= '0' && p[j] <= '9') {
		unsigned d = (unsigned)(p[j] - '0');
		n = n > (UINT64_MAX - d) / 10 ? UINT64_MAX : n * 10 + d;
		j++;
	}
	if (j == digits)
		return false;
	if (j < len && p[j] == '+')
		j++;
	if (j >= len || p[j] != '}')
		return false;
	j++;
	size_t eol = eol_at(p, len, j);
	if (!eol)
		return false;
	*mark_len = j - i;
	*hdr_len = j - i + eol;
	*size = n;
	return true;
}

enum rtok {
	RT_END,     /* no more input */
	RT_SP,      /* run of spaces */
	RT_EOL,     /* CRLF or LF ending a message */
	RT_LITERAL, /* marker, line end and payload (possibly incomplete) */
	RT_WORD,    /* atom, quoted string, or any other run of bytes */
};

struct rtoken {
	enum rtok kind;
	size_t    start;
	size_t    end;      /* one past the token, payload included for literals */
	size_t    mark_len; /* RT_LITERAL: bytes of "~{n+}" at start */
	uint64_t  size;     /* RT_LITERAL: declared size */
};

/* Scan the token starting at i. */
static struct rtoken next_token(const uint8_t *p, size_t len, size_t i)
{
	struct rtoken t = { .kind = RT_END, .start = i, .end = i };
	size_t hdr;

	if (i >= len)
		return t;
	if (p[i] == ' ') {
		while (t.end < len && p[t.end] == ' ')
			t.end++;
		t.kind = RT_SP;
		return t;
	}
	size_t eol = eol_at(p, len, i);
	if (eol) {
		t.kind = RT_EOL;
		t.end = i + eol;
		return t;
	}
	if (literal_at(p, len, i, &t.mark_len, &hdr, &t.size)) {
		size_t avail = len - (i + hdr);
		/* A trace may see only the start of a literal: hide what is there. */
		size_t payload = t.size < avail ? (size_t)t.size : avail;
		t.kind = RT_LITERAL;
		t.end = i + hdr + payload;
		return t;
	}
	/*
	 * A word: a quoted string runs to its closing quote (backslash escapes
	 * honoured), anything else to a space. Both stop at a line end or a
	 * literal marker, which a well-formed word never contains.
	 */
	bool quoted = p[i] == '"';
	size_t j = i + 1;
	uint64_t dummy_size;
	size_t dummy_mark;
	while (j < len) {
		if (eol_at(p, len, j))
			break;
		if ((p[j] == '{' || p[j] == '~') && literal_at(p, len, j, &dummy_mark, &hdr, &dummy_size))
			break;
		if (quoted) {
			if (p[j] == '\\' && j + 1 < len && p[j + 1] != '\r' && p[j + 1] != '\n') {
				j += 2;
				continue;
			}
			if (p[j++] == '"')
				break;
		} else {
			if (p[j] == ' ')
				break;
			j++;
		}
	}
	t.kind = RT_WORD;
	t.end = j;
	return t;
}

static bool word_is(const uint8_t *p, const struct rtoken *t, const char *word)
{
	size_t wlen = strlen(word);
	if (t->kind != RT_WORD || t->end - t->start != wlen)
		return false;
	for (size_t k = 0; k < wlen; k++) {
		uint8_t c = p[t->start + k];
		if (c >= 'a' && c <= 'z')
			c = (uint8_t)(c - 'a' + 'A');
		if (c != (uint8_t)word[k])
			return false;
	}
	return true;
}

/*
 * Where the credentials start in the message at m, or SIZE_MAX if it has
 * none. Both "tag LOGIN user pass" and "tag AUTHENTICATE mech initial-response"
 * put the secret in the fourth token; everything from there to the end of the
 * message is hidden, so an odd password (spaces, literals) cannot leak.
 */
static size_t secret_start(const uint8_t *p, size_t len, size_t m)
{
	struct rtoken tok[4];
	size_t ntok = 0;
	size_t i = m;

	while (ntok < 4) {
		struct rtoken t = next_token(p, len, i);
		if (t.kind == RT_END || t.kind == RT_EOL)
			return SIZE_MAX;
		if (t.kind != RT_SP)
			tok[ntok++] = t;
		i = t.end;
	}
	if (word_is(p, &tok[1], "LOGIN") || word_is(p, &tok[1], "AUTHENTICATE"))
		return tok[3].start;
	return SIZE_MAX;
}

void log_redact_imap(const uint8_t *raw, size_t len, bool secret, char *out, size_t outlen)
{
	struct rout o = { .p = out, .cap = outlen };

	if (secret) {
		/* An AUTHENTICATE continuation is nothing but credentials. */
		rout_str(&o, "<secret>");
	} else {
		size_t i = 0;
		while (i < len && !o.cut) {
			size_t hide = secret_start(raw, len, i);
			if (i > 0)
				rout_str(&o, " "); /* several messages in one buffer */
			for (;;) {
				struct rtoken t = next_token(raw, len, i);
				i = t.end;
				if (t.kind == RT_END || t.kind == RT_EOL || o.cut)
					break;
				if (t.start >= hide) {
					/* Skip to the end of this message, literals included. */
					if (t.start == hide)
						rout_str(&o, "<secret>");
					continue;
				}
				if (t.kind == RT_LITERAL) {
					char size[32];
					rout_bytes(&o, raw + t.start, t.mark_len);
					snprintf(size, sizeof(size), "<%llu bytes>", (unsigned long long)t.size);
					rout_str(&o, size);
				} else {
					rout_bytes(&o, raw + t.start, t.end - t.start);
				}
			}
		}
	}

	if (!outlen)
		return;
	/* Show that the line was cut rather than silently ending mid-word. */
	if (o.cut && outlen > 3)
		memcpy(out + outlen - 4, "...", 3);
	out[o.n] = '\0';
}

void log_trace_imap(const char *prefix, enum trace_dir dir, const uint8_t *raw, size_t len, bool secret)
{
	static const char *const dir_names[] = {
		[TRACE_CLIENT_IN]    = "C>",
		[TRACE_CLIENT_OUT]   = "C<",
		[TRACE_UPSTREAM_OUT] = "S>",
		[TRACE_UPSTREAM_IN]  = "S<",
	};
	char text[LOG_TRACE_MAX];

	/* Redacting costs a scan of the message: skip it unless the line will be written. */
	if (!log_trace || log_level < LOG_LEVEL_DEBUG)
		return;
	log_redact_imap(raw, len, secret, text, sizeof(text));
	const char *d = (unsigned)dir < sizeof(dir_names) / sizeof(dir_names[0]) ? dir_names[dir] : "?";
	log_msg(LOG_LEVEL_DEBUG, prefix, "%s %s", d, text);
}
