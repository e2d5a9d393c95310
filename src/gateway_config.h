/*
 * gateway_config.h - pimap-gateway's configuration struct and its key table.
 * One table (gateway_config_keys) is the single source of keys, types,
 * defaults and bounds; etc/pimap-gateway.yaml documents the same keys.
 */
#ifndef PIMAP_GATEWAY_CONFIG_H
#define PIMAP_GATEWAY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "cfg.h"
#include "proxy_config.h" /* enum log_level_value, enum plaintext_login_value */

struct gateway_config {
	char  **listen_pimaps;            /* listen.pimaps: implicit-TLS P-IMAP listeners (default 127.0.0.1:2993) */
	char  **listen_pimap;             /* listen.pimap: STARTTLS P-IMAP listeners (default 127.0.0.1:2143) */
	char  **listen_https;             /* listen.https: HTTPS binding listeners (default none) */
	int     plaintext_login;          /* listen.plaintext_login: loopback|never|always (default never) */
	char   *tls_cert_file;            /* tls.cert: "" = generated self-signed in state_dir */
	char   *tls_key_file;             /* tls.key */
	char   *store_url;                /* store.url: imaps://host[:port] or imap://host[:port] (STARTTLS) */
	char   *store_ca_file;            /* store.ca_file: "" = system trust store */
	char   *store_server_name;        /* store.server_name: "" = URL host */
	bool    store_allow_plaintext;    /* store.allow_plaintext: imap:// without STARTTLS (loopback stores) */
	bool    store_compress;           /* store.compress: COMPRESS=DEFLATE to the store when offered */
	double  store_connect_timeout;    /* store.connect_timeout: TCP+TLS+greeting+login deadline (10s) */
	double  store_idle_refresh;       /* store.idle_refresh: re-issue IDLE on parked connections (25m) */
	char   *state_dir;                /* state_dir: gateway.db, generated certificate ("" = /var/lib/pimap-gateway) */
	double  session_lifetime;         /* session.lifetime: how long a detached session is kept (1h, min 1h) */
	char   *submission_url;           /* submission.url: smtp:// (STARTTLS) or smtps://; "" = no XDELIVER */
	char   *submission_ca_file;       /* submission.ca_file: "" = system trust store */
	char   *submission_server_name;   /* submission.server_name: "" = URL host */
	bool    submission_allow_plaintext; /* submission.allow_plaintext: smtp:// without STARTTLS */
	char   *submission_helo_name;     /* submission.helo_name: EHLO name; "" = this host's name */
	double  submission_connect_timeout; /* submission.connect_timeout: TCP+TLS+greeting (30s) */
	double  submission_timeout;       /* submission.timeout: each reply; the final dot gets twice (5m) */
	double  submission_dedup_window;  /* submission.dedup_window: how long a Message-ID is remembered (168h) */
	long long submission_dedup_entries; /* submission.dedup_entries: Message-IDs remembered per user (1000) */
	long long submission_max_concurrent; /* submission.max_concurrent: XDELIVERs in progress at once (64) */
	int     log_level;                /* log.level */
	char   *log_file;                 /* log.file: "" = stderr */
	bool    log_trace;                /* log.trace */
	bool    log_syslog;               /* log.syslog: to the syslog daemon instead of log.file/stderr */
	int     log_syslog_facility;      /* log.syslog_facility: enum log_facility_value */
	char   *log_syslog_socket;        /* log.syslog_socket */
	char   *pid_file;                 /* pid_file */
	size_t  max_line_length;          /* limits.max_line_length (64K) */
	size_t  max_literal_size;         /* limits.max_literal_size (64M) */
	size_t  max_command_size;         /* limits.max_command_size (128M) */
	long long max_list_depth;         /* limits.max_list_depth (32) */
	size_t  max_output_queue;         /* limits.max_output_queue (1M) */
	long long max_commands_in_flight; /* limits.max_commands_in_flight: per connection (64) */
	long long max_queued_events;      /* limits.max_queued_events: per folder of a detached session (1000) */
	long long max_sessions_per_user;  /* limits.max_sessions_per_user: live P-IMAP sessions (16) */
	long long max_devices_per_user;   /* limits.max_devices_per_user: device profiles kept (32) */
	long long max_connections_per_device; /* limits.max_connections_per_device (8; Thunderbird opens 5) */
	long long max_failed_logins;      /* limits.max_failed_logins: per client address per minute (10) */
	long long max_clients;            /* limits.max_clients: concurrent client connections (4096) */
	double  preauth_timeout;          /* limits.preauth_timeout (60s) */
	double  idle_timeout;             /* limits.idle_timeout: silent authenticated client (31m) */
	double  drain_timeout;            /* limits.drain_timeout: SIGTERM grace period (10s) */
	/* HTTPS binding (http_binding.c) */
	char   *http_path;                /* http.path: the one request target served (/pimap) */
	size_t  http_max_header_size;     /* http.max_header_size: request line + headers (8K) */
	long long http_max_headers;       /* http.max_headers: header lines per request (64) */
	size_t  http_max_body_size;       /* http.max_body_size: an in-response request's body (16M) */
	long long http_max_requests_per_minute; /* http.max_requests_per_minute: per in-response session (600) */
	long long http_max_connections;   /* http.max_connections: concurrent HTTPS connections (1024) */
	long long http_max_sessions;      /* http.max_sessions: in-response sessions (cookies) alive (1024) */
	double  http_header_timeout;      /* http.header_timeout: TLS handshake + request head (10s) */
	double  http_body_timeout;        /* http.body_timeout: the rest of an in-response body (30s) */
	double  http_keepalive_timeout;   /* http.keepalive_timeout: idle connection between requests (15s) */
	double  http_response_timeout;    /* http.response_timeout: a batch's replies (60s) */
	double  http_session_timeout;     /* http.session_timeout: in-response session without requests (30m) */
	/* out-band notifications (outband.c) */
	double  outband_min_interval;     /* outband.min_interval: per device between notifications (5s) */
	char   *outband_webhook_ca_file;  /* outband.webhook_ca_file: trust anchors for webhooks; "" = system */
	double  outband_webhook_timeout;  /* outband.webhook_timeout: connect + TLS + answer (10s) */
	double  outband_webhook_resolve_timeout; /* outband.webhook_resolve_timeout: the host name lookup (5s) */
	char  **outband_webhook_allow;    /* outband.webhook_allow: https:// URL prefixes; empty = no WEBHOOK */
	char  **outband_udp_allow;        /* outband.udp_allow: CIDR networks or "any"; empty = device's own address */
};

extern const struct cfg_key gateway_config_keys[];

#endif
