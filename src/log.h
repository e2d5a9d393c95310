/*
 * log.h - leveled logging with a per-connection prefix, and protocol tracing.
 *
 * Logs go to stderr (foreground) or a file; each line is
 * "YYYY-MM-DDTHH:MM:SS.mmmZ LEVEL [prefix] message".
 * Protocol traces (log_trace_imap) never show credentials or message bodies:
 * LOGIN's password, AUTHENTICATE's initial response (SASL-IR) and its
 * continuation lines are replaced by "<secret>", and every literal's content
 * by "<N bytes>".
 */
#ifndef PIMAP_LOG_H
#define PIMAP_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

/* Send logs to path (append), or stderr if path is NULL or "". Returns 0 or -1 (errno set). Reopens on each call (SIGHUP). */
int log_open(const char *path);
/*
 * Send logs to the local syslog daemon instead: datagrams on socket_path
 * (normally /dev/log) tagged "ident[pid]", facility one of LOG_MAIL,
 * LOG_DAEMON, ... from <syslog.h>. A socket that is missing or refuses a
 * line is no error: those lines go to stderr. Returns -1 (errno set) only
 * for a path that is too long or not a datagram socket. log_open() or
 * log_close() ends it.
 */
int log_open_syslog(const char *ident, int facility, const char *socket_path);
void log_close_syslog(void);
bool log_to_syslog(void);
/*
 * The last warning or error logged (whatever the level setting), without
 * its timestamp, for a status report. False if there was none.
 */
#define LOG_PROBLEM_MAX 512
bool log_last_problem(char *out, size_t outlen, time_t *when);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
void log_set_trace(bool on);
bool log_trace_enabled(void);
void log_close(void);

void log_msg(enum log_level level, const char *prefix, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void log_vmsg(enum log_level level, const char *prefix, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

#define log_err(...)   log_msg(LOG_LEVEL_ERROR, NULL, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LEVEL_WARN, NULL, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LEVEL_INFO, NULL, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, NULL, __VA_ARGS__)

/* Direction of a traced protocol message. */
enum trace_dir {
	TRACE_CLIENT_IN,    /* "C>" client -> proxy */
	TRACE_CLIENT_OUT,   /* "C<" proxy -> client */
	TRACE_UPSTREAM_OUT, /* "S>" proxy -> upstream */
	TRACE_UPSTREAM_IN,  /* "S<" upstream -> proxy */
};

/*
 * Redact one IMAP message (raw bytes, CRLF and literals included) for a trace:
 * writes a printable single line (no CRLF) into out (NUL-terminated, truncated
 * to outlen). `secret` replaces the whole message by "<secret>"
 * (AUTHENTICATE continuation lines have no tag). Pure; exposed for tests.
 */
void log_redact_imap(const uint8_t *raw, size_t len, bool secret, char *out, size_t outlen);

/* Trace a message if tracing is on: redacts, then logs at DEBUG with the direction. */
void log_trace_imap(const char *prefix, enum trace_dir dir, const uint8_t *raw, size_t len, bool secret);

/* Classify a socket errno for logging: true if it is a normal peer event (ECONNRESET, EPIPE...) worth only INFO. */
bool log_errno_is_peer_event(int err);

#endif
