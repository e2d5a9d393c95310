/*
 * proxy_config.h - pimap-proxy's configuration struct and its key table.
 * One table (proxy_config_keys) is the single source of keys, types,
 * defaults and bounds; etc/pimap-proxy.yaml documents the same keys.
 */
#ifndef PIMAP_PROXY_CONFIG_H
#define PIMAP_PROXY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "cfg.h"

/* Longest device id (the gateway's limit too). */
#define DEVICE_ID_MAX 64

enum log_level_value { LOGV_ERROR, LOGV_WARN, LOGV_INFO, LOGV_DEBUG };

/* upstream.binding: how a gateway is reached (auto = as the URL scheme says). */
enum upstream_binding_value { BINDING_AUTO, BINDING_TCP, BINDING_HTTPS };
/* upstream.mode, HTTPS binding only. */
enum upstream_mode_value { MODE_PERSISTENT, MODE_IN_RESPONSE };

/* When a client may send LOGIN/AUTHENTICATE without TLS on its leg. */
enum plaintext_login_value {
	PLAINTEXT_LOGIN_LOOPBACK, /* only from 127.0.0.0/8 and ::1 (and --stdio) */
	PLAINTEXT_LOGIN_NEVER,    /* STARTTLS or the TLS listener first */
	PLAINTEXT_LOGIN_ALWAYS,   /* any peer (a trusted network only) */
};

struct proxy_config {
	char  **listen_imap;              /* listen.imap: plain IMAP + STARTTLS listeners */
	char  **listen_imaps;             /* listen.imaps: implicit TLS listeners */
	int     plaintext_login;          /* listen.plaintext_login: loopback|never|always */
	char   *upstream_url;             /* upstream.url: imaps://, imap://, pimaps://, pimap://, https:// */
	char   *upstream_ca_file;         /* upstream.ca_file: trust anchors; "" = system store */
	char   *upstream_server_name;     /* upstream.server_name: name to verify/SNI; "" = URL host */
	bool    upstream_allow_plaintext; /* upstream.allow_plaintext: allow imap:// without STARTTLS */
	bool    upstream_compress;        /* upstream.compress: COMPRESS=DEFLATE when offered */
	double  upstream_connect_timeout; /* upstream.connect_timeout: TCP+TLS+greeting deadline */
	int     upstream_binding;         /* upstream.binding: auto|tcp|https (enum upstream_binding_value) */
	int     upstream_mode;            /* upstream.mode: persistent|in-response (HTTPS binding) */
	double  upstream_poll_interval;   /* upstream.poll_interval: in-response without wake-ups: poll while idle */
	char   *upstream_http_proxy;      /* upstream.http_proxy: HTTPS binding through a web proxy (CONNECT); "" = direct */
	char   *upstream_http_proxy_user; /* upstream.http_proxy_user: Proxy-Authorization Basic; "" = none */
	char   *upstream_http_proxy_password_file; /* upstream.http_proxy_password_file: its password (mode 0600) */
	char   *outband_listen;           /* outband.listen: UDP wake-up listener ("none") */
	char   *outband_address;          /* outband.address: where the gateway sends them; "" = the bound address */
	double  outband_max_age;          /* outband.max_age: older (or future) wake-ups are refused; 0 = no check */
	char   *device_id;                /* device_id: the P-IMAP device name; "" = generated, kept in state_dir */
	double  link_heartbeat;           /* link.heartbeat: probe a quiet gateway link after this long */
	double  link_dead_timeout;        /* link.dead_timeout: no answer this long after a probe = link dead */
	double  link_reconnect_min;       /* link.reconnect_min: first delay between reconnect attempts */
	double  link_reconnect_max;       /* link.reconnect_max: the backoff stops growing here */
	double  link_outage_wait;         /* link.outage_wait: client commands wait this long for the link */
	bool    link_folder_status;       /* link.folder_status: PIMAP_FOLDER_STATUS ON, STATUS answered locally */
	bool    link_write_behind;        /* link.write_behind: answer flag STOREs locally, send them behind */
	char  **smtp_listen;              /* smtp.listen: SMTP submission listeners offering STARTTLS */
	char  **smtp_listen_tls;          /* smtp.listen_tls: SMTP submission over implicit TLS */
	size_t  smtp_max_message_size;    /* smtp.max_message_size: SIZE; more is refused with 552 */
	long long smtp_max_recipients;    /* smtp.max_recipients: RCPTs per message */
	double  smtp_deliver_timeout;     /* smtp.deliver_timeout: wait this long for the gateway, then queue */
	double  smtp_retry_min;           /* smtp.retry_min: first delay before a queued message is tried again */
	double  smtp_retry_max;           /* smtp.retry_max: the backoff stops growing here */
	double  smtp_outbox_max_age;      /* smtp.outbox_max_age: then a queued message bounces */
	size_t  smtp_outbox_max_size;     /* smtp.outbox_max_size: bytes the outbox may hold */
	char  **smtp_save_sent;           /* smtp.save_sent: "user=folder" (or "*=folder"): SAVETO per account */
	char   *smtp_submission_url;      /* smtp.submission_url: compatibility mode's submission server */
	char   *smtp_submission_ca_file;  /* smtp.submission_ca_file */
	char   *smtp_submission_server_name; /* smtp.submission_server_name */
	bool    smtp_submission_allow_plaintext; /* smtp.submission_allow_plaintext */
	double  smtp_submission_timeout;  /* smtp.submission_timeout: each reply of the submission server */
	bool    macros_enabled;           /* macros.enabled: prefetch per the macro files */
	char   *macros_dir;               /* macros.dir: "" = the macros installed with pimap */
	char   *filters_file;             /* filters.file: views and push rules (pimap-filters(5)); "" = none */
	char   *tls_cert_file;            /* tls.cert: local listener certificate; "" = generated */
	char   *tls_key_file;             /* tls.key */
	char   *state_dir;                /* state_dir: generated certificate etc.; "" = $HOME/.local/state/pimap */
	char   *status_socket;            /* status.socket: "" = state_dir/status.sock, "none" = no status */
	int     log_level;                /* log.level: error|warn|info|debug */
	char   *log_file;                 /* log.file: "" = stderr */
	bool    log_trace;                /* log.trace: protocol trace (secrets and bodies elided) */
	bool    log_syslog;               /* log.syslog: to the syslog daemon instead of log.file/stderr */
	int     log_syslog_facility;      /* log.syslog_facility: enum log_facility_value */
	char   *log_syslog_socket;        /* log.syslog_socket: the syslog daemon's datagram socket */
	char   *pid_file;                 /* pid_file: "" = none */
	size_t  max_line_length;          /* limits.max_line_length */
	size_t  max_literal_size;         /* limits.max_literal_size */
	size_t  max_command_size;         /* limits.max_command_size: one command, all its literals included */
	long long max_list_depth;         /* limits.max_list_depth */
	size_t  max_output_queue;         /* limits.max_output_queue: per direction, backpressure threshold */
	long long max_clients;            /* limits.max_clients: concurrent client connections */
	double  preauth_timeout;          /* limits.preauth_timeout: close clients that do not log in */
	double  idle_timeout;             /* limits.idle_timeout: close silent authenticated clients */
	double  drain_timeout;            /* limits.drain_timeout: SIGTERM grace period */
};

extern const struct cfg_key proxy_config_keys[];
/* Enum value names shared with the gateway's table (NULL-terminated, indexed by the enums above). */
extern const char *const plaintext_login_names[];
extern const char *const log_level_names[];
extern const char *const upstream_binding_names[];
extern const char *const upstream_mode_names[];
/* Syslog facilities offered by log.syslog_facility (daemon_cli.c maps them to <syslog.h>). */
enum log_facility_value { LOGF_MAIL, LOGF_DAEMON, LOGF_USER, LOGF_LOCAL0, LOGF_LOCAL1, LOGF_LOCAL2,
	LOGF_LOCAL3, LOGF_LOCAL4, LOGF_LOCAL5, LOGF_LOCAL6, LOGF_LOCAL7 };
extern const char *const log_facility_names[];

/*
 * The log.* and pid_file rows both daemons' tables share, expanded inside
 * each table, where OFF(field) names that daemon's config struct (the
 * fields have the same names in both).
 */
#define CFG_LOG_AND_PID_KEYS \
	{"log.level", CFG_ENUM, OFF(log_level), "info", 0, 0, log_level_names, true, \
	 "log verbosity: error, warn, info or debug"}, \
	{"log.file", CFG_STRING, OFF(log_file), "", 0, 0, NULL, true, \
	 "log file, reopened on SIGHUP; \"\" = stderr"}, \
	{"log.trace", CFG_BOOL, OFF(log_trace), "false", 0, 0, NULL, true, \
	 "log protocol traffic (passwords and message bodies are elided)"}, \
	{"log.syslog", CFG_BOOL, OFF(log_syslog), "false", 0, 0, NULL, true, \
	 "log to the syslog daemon instead of log.file or stderr (not both)"}, \
	{"log.syslog_facility", CFG_ENUM, OFF(log_syslog_facility), "mail", 0, 0, log_facility_names, true, \
	 "syslog facility: mail, daemon, user or local0..local7"}, \
	{"log.syslog_socket", CFG_STRING, OFF(log_syslog_socket), "/dev/log", 0, 0, NULL, true, \
	 "the syslog daemon's datagram socket"}, \
	{"pid_file", CFG_STRING, OFF(pid_file), "", 0, 0, NULL, false, \
	 "write the daemon's pid here; \"\" = none"},

#endif
