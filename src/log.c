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
#include <sys/socket.h>
#include <sys/un.h>
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

static int            log_fd = STDERR_FILENO; /* where lines go (unless to syslog) */
static bool           log_fd_owned;           /* log_fd is a file we opened (not stderr) */
static enum log_level log_level = LOG_LEVEL_INFO;
static bool           log_trace;              /* protocol traces wanted */

/*
 * Syslog: one datagram per line on the local syslog socket (RFC 3164 as
 * the local daemons take it: "<PRI>Mmm dd hh:mm:ss ident[pid]: message").
 * Our own client rather than syslog(3): the socket path is a setting (a
 * test, or a chroot, points it elsewhere), and a line the socket refuses
 * is written to stderr instead of being dropped.
 */
static struct {
	bool on;
	int  fd;                              /* connected AF_UNIX datagram socket, or -1 */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char ident[64];
	int  facility;                        /* LOG_FACILITY_* value, already << 3 */
	bool warned;                          /* the fallback to stderr was announced */
} sys = { .fd = -1 };

/* The last warning or error, for a status report (log_last_problem). */
static char   last_problem[LOG_PROBLEM_MAX];
static time_t last_problem_at;

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
	log_close_syslog();
	return 0;
}

void log_close_syslog(void)
{
	if (sys.fd >= 0)
		close(sys.fd);
	sys.fd = -1;
	sys.on = false;
}

static int syslog_connect(void)
{
	struct sockaddr_un sa;
	int fd;

	if (sys.fd >= 0)
		close(sys.fd);
	sys.fd = -1;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, sys.path, strlen(sys.path) + 1);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	sys.fd = fd;
	return 0;
}

int log_open_syslog(const char *ident, int facility, const char *socket_path)
{
	if (strlen(socket_path) >= sizeof(sys.path) || !*socket_path) {
		errno = ENAMETOOLONG;
		return -1;
	}
	log_close_syslog();
	snprintf(sys.path, sizeof(sys.path), "%s", socket_path);
	snprintf(sys.ident, sizeof(sys.ident), "%s", ident);
	sys.facility = facility;
	sys.warned = false;
	sys.on = true;
	/* A syslog daemon that is not there yet is no reason not to start:
	 * lines go to stderr until the socket answers (log_syslog_line). */
	if (syslog_connect() < 0 && (errno == EACCES || errno == ENOTSOCK || errno == EPROTOTYPE)) {
		sys.on = false;
		return -1;
	}
	if (log_fd_owned)
		close(log_fd);
	log_fd = STDERR_FILENO;
	log_fd_owned = false;
	return 0;
}

bool log_to_syslog(void)
{
	return sys.on;
}

void log_close(void)
{
	if (log_fd_owned)
		close(log_fd);
	log_fd = STDERR_FILENO;
	log_fd_owned = false;
	log_close_syslog();
}

bool log_last_problem(char *out, size_t outlen, time_t *when)
{
	if (!last_problem_at)
		return false;
	snprintf(out, outlen, "%s", last_problem);
	if (when)
		*when = last_problem_at;
	return true;
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

/* The syslog severity of each level (RFC 5424 numbers). */
static const int syslog_severity[] = {
	[LOG_LEVEL_ERROR] = 3,
	[LOG_LEVEL_WARN]  = 4,
	[LOG_LEVEL_INFO]  = 6,
	[LOG_LEVEL_DEBUG] = 7,
};

/*
 * Send one finished syslog line. If the socket is gone (the daemon
 * restarted), connect again once; if that fails too, the line goes to
 * stderr, after a one-time note saying why: a log line is never dropped
 * silently.
 */
static void syslog_send(const char *line, size_t len, const char *body, size_t body_len,
                        const char *file_header, size_t fh_len)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		if (sys.fd < 0 && syslog_connect() < 0)
			break;
		if (send(sys.fd, line, len, MSG_NOSIGNAL | MSG_DONTWAIT) == (ssize_t)len) {
			sys.warned = false;
			return;
		}
		if (errno != ECONNREFUSED && errno != ENOTCONN && errno != ENOENT)
			break;
		close(sys.fd);
		sys.fd = -1;
	}
	if (!sys.warned) {
		char note[200 + sizeof(sys.path)];
		int e = errno;
		int nlen = snprintf(note, sizeof(note), "%.*sWARN syslog socket %s: %s; this and later lines go to stderr until it works\n",
		                    (int)fh_len, file_header, sys.path, strerror(e));
		if (nlen > 0)
			write_all(STDERR_FILENO, note, (size_t)nlen < sizeof(note) ? (size_t)nlen : sizeof(note) - 1);
		sys.warned = true;
	}
	write_all(STDERR_FILENO, file_header, fh_len);
	write_all(STDERR_FILENO, body, body_len);
	write_all(STDERR_FILENO, "\n", 1);
}

void log_vmsg(enum log_level level, const char *prefix, const char *fmt, va_list ap)
{
	/* The cheap test first: debug calls in hot paths cost one compare. */
	if (level > log_level && level > LOG_LEVEL_WARN)
		return;

	int saved_errno = errno; /* callers log and then still look at errno */
	char msg[LOG_LINE_MAX];
	char body[LOG_LINE_MAX + 1];
	size_t n = 0;

	int mlen = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (mlen < 0)
		snprintf(msg, sizeof(msg), "(bad log format: %s)", fmt);
	bool cut = mlen >= (int)sizeof(msg);

	/* "[prefix] message", control characters neutralised. */
	if (prefix && *prefix) {
		body[n++] = '[';
		append_clean(body, &n, LOG_LINE_MAX / 2, prefix);
		body[n++] = ']';
		body[n++] = ' ';
	}
	if (!append_clean(body, &n, LOG_LINE_MAX - 3, msg))
		cut = true;
	if (cut) {
		if (n > LOG_LINE_MAX - 3)
			n = LOG_LINE_MAX - 3;
		memcpy(body + n, "...", 3);
		n += 3;
	}
	body[n] = '\0';

	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	if (level <= LOG_LEVEL_WARN) {
		size_t keep = n < sizeof(last_problem) - 1 ? n : sizeof(last_problem) - 1;
		memcpy(last_problem, body, keep);
		last_problem[keep] = '\0';
		last_problem_at = ts.tv_sec ? ts.tv_sec : 1;
	}
	if (level > log_level) {
		errno = saved_errno;
		return;
	}

	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	const char *name = (unsigned)level < sizeof(level_names) / sizeof(level_names[0])
	                   ? level_names[level] : "?";
	char header[80];
	int hlen = snprintf(header, sizeof(header), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s ",
	                    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
	                    tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L, name);
	size_t fh_len = hlen > 0 ? (size_t)hlen : 0;

	if (sys.on) {
		static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
		                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
		char line[LOG_LINE_MAX + 200];
		struct tm lt;
		localtime_r(&ts.tv_sec, &lt);
		int sev = (unsigned)level < sizeof(syslog_severity) / sizeof(syslog_severity[0])
		          ? syslog_severity[level] : 7;
		int sl = snprintf(line, sizeof(line), "<%d>%s %2d %02d:%02d:%02d %s[%ld]: %s",
		                  sys.facility | sev, months[lt.tm_mon], lt.tm_mday, lt.tm_hour, lt.tm_min,
		                  lt.tm_sec, sys.ident, (long)getpid(), body);
		size_t sl_len = sl < 0 ? 0 : (size_t)sl < sizeof(line) ? (size_t)sl : sizeof(line) - 1;
		syslog_send(line, sl_len, body, n, header, fh_len);
	} else {
		char line[LOG_LINE_MAX + 100];
		memcpy(line, header, fh_len);
		memcpy(line + fh_len, body, n);
		line[fh_len + n] = '\n';
		write_all(log_fd, line, fh_len + n + 1);
	}
	errno = saved_errno;
}

void log_msg(enum log_level level, const char *prefix, const char *fmt, ...)
{
	va_list ap;

	if (level > log_level && level > LOG_LEVEL_WARN)
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
