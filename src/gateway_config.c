/*
 * gateway_config.c - pimap-gateway's configuration key table.
 *
 * The one place that names each key, its type, default and bounds; cfg.c does
 * the loading, etc/pimap-gateway.yaml documents the same keys (a unit test
 * loads it and checks that it sets every key to exactly these defaults).
 *
 * Reloadable keys take effect on SIGHUP: limits, logging, the login policy,
 * the session lifetime and the IDLE refresh period are read when they are
 * next used. Listeners, TLS credentials, the store and its trust anchors,
 * state_dir and pid_file are fixed at startup: changing them means rebinding
 * sockets, reopening the state database or re-deciding trust for store
 * connections already open on behalf of parked sessions.
 */
#include "config.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "gateway_config.h"
#include "outband_policy.h"
#include "url.h"


#define KIB 1024.0
#define MIB (1024.0 * KIB)
#define GIB (1024.0 * MIB)
#define MINUTE 60.0
#define HOUR (60.0 * MINUTE)
#define DAY (24.0 * HOUR)

/*
 * store.url: empty (given later by --store) or an IMAP URL. The gateway
 * speaks plain IMAP to its store: a pimap(s):// or https:// URL here would be
 * a gateway in front of a gateway, which is always a configuration mistake.
 */
static int valid_store_url(const char *value, char *msg, size_t msglen)
{
	struct upstream_url url;

	if (*value == '\0')
		return 0;
	if (url_parse(value, &url, msg, msglen) < 0)
		return -1;
	if (url.scheme != URL_IMAPS && url.scheme != URL_IMAP) {
		if (msg && msglen)
			snprintf(msg, msglen, "a store is an IMAP server: expected imaps:// or imap://, not %s://",
			         url_scheme_name(url.scheme));
		return -1;
	}
	return 0;
}

/* listen.*: "none" (no listener of this kind) or host:port. */
static int valid_listen_addr(const char *value, char *msg, size_t msglen)
{
	char host[256], port[16];

	if (strcmp(value, "none") == 0)
		return 0;
	return listen_addr_parse(value, host, sizeof(host), port, sizeof(port), msg, msglen);
}

/* http.path: an absolute path without spaces, query or fragment. */
static int valid_http_path(const char *value, char *msg, size_t msglen)
{
	if (value[0] != '/' || strpbrk(value, " ?#\t\r\n")) {
		if (msg && msglen)
			snprintf(msg, msglen, "expected an absolute path such as /pimap");
		return -1;
	}
	return 0;
}

#define OFF(field) offsetof(struct gateway_config, field)

const struct cfg_key gateway_config_keys[] = {
	{"listen.pimaps", CFG_STRLIST, OFF(listen_pimaps), "127.0.0.1:2993", 0, 0, NULL, false,
	 "implicit-TLS P-IMAP listeners: \"host:port\", \"[v6]:port\" or \":port\"", valid_listen_addr},
	{"listen.pimap", CFG_STRLIST, OFF(listen_pimap), "127.0.0.1:2143", 0, 0, NULL, false,
	 "P-IMAP listeners offering STARTTLS, same syntax as listen.pimaps", valid_listen_addr},
	{"listen.https", CFG_STRLIST, OFF(listen_https), "none", 0, 0, NULL, false,
	 "listeners of the HTTPS binding (P-IMAP over HTTP POST, TLS always), same syntax as listen.pimaps",
	 valid_listen_addr},
	{"listen.plaintext_login", CFG_ENUM, OFF(plaintext_login), "never", 0, 0, plaintext_login_names, true,
	 "LOGIN/AUTHENTICATE before TLS on a client connection: never, loopback (peers on 127/8, ::1), always"},

	{"tls.cert", CFG_STRING, OFF(tls_cert_file), "", 0, 0, NULL, false,
	 "PEM certificate chain presented to clients; \"\" = generate a self-signed one in state_dir"},
	{"tls.key", CFG_STRING, OFF(tls_key_file), "", 0, 0, NULL, false,
	 "PEM private key for tls.cert"},

	{"store.url", CFG_STRING, OFF(store_url), "", 0, 0, NULL, false,
	 "the IMAP store sessions are served from: imaps://host[:port] or imap://host[:port] (STARTTLS)",
	 valid_store_url},
	{"store.ca_file", CFG_STRING, OFF(store_ca_file), "", 0, 0, NULL, false,
	 "PEM file of trust anchors for the store's certificate; \"\" = system store"},
	{"store.server_name", CFG_STRING, OFF(store_server_name), "", 0, 0, NULL, false,
	 "name to send as SNI and verify in the store's certificate; \"\" = the URL host"},
	{"store.allow_plaintext", CFG_BOOL, OFF(store_allow_plaintext), "false", 0, 0, NULL, false,
	 "allow imap:// to continue without TLS when the store offers no STARTTLS"},
	{"store.compress", CFG_BOOL, OFF(store_compress), "true", 0, 0, NULL, false,
	 "use COMPRESS=DEFLATE towards the store when it is offered"},
	{"store.connect_timeout", CFG_DURATION, OFF(store_connect_timeout), "10s", 1, 5 * MINUTE, NULL, false,
	 "deadline for TCP connect, TLS handshake, greeting and login at the store"},
	/* RFC 2177: a server may drop an IDLE after 30 minutes; re-issuing it
	 * more often than every minute only burns round trips. */
	{"store.idle_refresh", CFG_DURATION, OFF(store_idle_refresh), "25m", MINUTE, 29 * MINUTE, NULL, true,
	 "re-issue IDLE on the store connections that watch parked sessions this often"},

	{"state_dir", CFG_STRING, OFF(state_dir), "", 0, 0, NULL, false,
	 "directory for gateway.db and the generated certificate; \"\" = /var/lib/pimap-gateway"},

	/* The draft asks that a session outlive its connection by at least an hour. */
	{"session.lifetime", CFG_DURATION, OFF(session_lifetime), "1h", 1, 30 * DAY, NULL, true,
	 "how long a session without a connection keeps queueing events before it expires"},

	{"submission.url", CFG_STRING, OFF(submission_url), "", 0, 0, NULL, false,
	 "SMTP submission server XDELIVER relays to: smtp://host[:587] (STARTTLS) or smtps://host[:465]; "
	 "\"\" = no XDELIVER", url_validate_submission},
	{"submission.ca_file", CFG_STRING, OFF(submission_ca_file), "", 0, 0, NULL, false,
	 "PEM file of trust anchors for the submission server's certificate; \"\" = system store"},
	{"submission.server_name", CFG_STRING, OFF(submission_server_name), "", 0, 0, NULL, false,
	 "name to send as SNI and verify in the submission server's certificate; \"\" = the URL host"},
	{"submission.allow_plaintext", CFG_BOOL, OFF(submission_allow_plaintext), "false", 0, 0, NULL, false,
	 "allow smtp:// to continue without TLS when the server offers no STARTTLS"},
	{"submission.helo_name", CFG_STRING, OFF(submission_helo_name), "", 0, 0, NULL, true,
	 "the name the gateway gives in EHLO; \"\" = this host's name"},
	{"submission.connect_timeout", CFG_DURATION, OFF(submission_connect_timeout), "30s", 1, 5 * MINUTE, NULL, true,
	 "deadline for TCP connect, TLS handshake and greeting at the submission server"},
	/* RFC 5321 4.5.3.2 suggests 5 minutes per command and 10 for the final dot. */
	{"submission.timeout", CFG_DURATION, OFF(submission_timeout), "5m", 1, HOUR, NULL, true,
	 "how long the submission server may take for each reply (twice that after the message)"},
	{"submission.dedup_window", CFG_DURATION, OFF(submission_dedup_window), "168h", MINUTE, 365 * DAY, NULL, true,
	 "how long a sent Message-ID is remembered, so that a retried XDELIVER is not sent twice"},
	{"submission.dedup_entries", CFG_INT, OFF(submission_dedup_entries), "1000", 1, 1000000, NULL, true,
	 "sent Message-IDs remembered per user (the oldest are forgotten first)"},
	{"submission.max_concurrent", CFG_INT, OFF(submission_max_concurrent), "64", 1, 10000, NULL, true,
	 "XDELIVER commands in progress at once, all users together; more get NO [LIMIT]"},

	CFG_LOG_AND_PID_KEYS

	/* Bounds: below the minimums ordinary clients break, above the maximums one
	 * user or connection could pin an unreasonable share of memory or time. */
	{"limits.max_line_length", CFG_SIZE, OFF(max_line_length), "64K", KIB, 16 * MIB, NULL, true,
	 "longest command or response line accepted, literals not counted"},
	{"limits.max_literal_size", CFG_SIZE, OFF(max_literal_size), "64M", KIB, 2 * GIB, NULL, true,
	 "largest single literal ({n}) accepted, e.g. one APPENDed or XDELIVERed message"},
	{"limits.max_command_size", CFG_SIZE, OFF(max_command_size), "128M", 64 * KIB, 4 * GIB, NULL, true,
	 "largest client command with all its literals (MULTIAPPEND), buffered whole"},
	{"limits.max_list_depth", CFG_INT, OFF(max_list_depth), "32", 1, 256, NULL, true,
	 "deepest parenthesised list nesting accepted in a command or response"},
	{"limits.max_output_queue", CFG_SIZE, OFF(max_output_queue), "1M", 16 * KIB, 256 * MIB, NULL, true,
	 "queued bytes per connection before reading from the other side pauses"},
	{"limits.max_commands_in_flight", CFG_INT, OFF(max_commands_in_flight), "64", 1, 1024, NULL, true,
	 "pipelined commands of one connection being processed; further ones wait unread"},
	{"limits.max_queued_events", CFG_INT, OFF(max_queued_events), "1000", 1, 1000000, NULL, true,
	 "events queued per folder of a session without a connection; beyond it the device gets RESYNC"},
	{"limits.max_sessions_per_user", CFG_INT, OFF(max_sessions_per_user), "16", 1, 1024, NULL, true,
	 "live P-IMAP sessions (devices with a session) per user"},
	{"limits.max_devices_per_user", CFG_INT, OFF(max_devices_per_user), "32", 1, 1024, NULL, true,
	 "device profiles (filters, preferences) kept per user"},
	{"limits.max_connections_per_device", CFG_INT, OFF(max_connections_per_device), "8", 1, 256, NULL, true,
	 "concurrent connections sharing one device's session (Thunderbird opens 5)"},
	{"limits.max_failed_logins", CFG_INT, OFF(max_failed_logins), "10", 1, 100000, NULL, true,
	 "failed logins per client address per minute before further attempts are refused"},
	{"limits.max_clients", CFG_INT, OFF(max_clients), "4096", 1, 100000, NULL, true,
	 "concurrent client connections"},
	{"limits.preauth_timeout", CFG_DURATION, OFF(preauth_timeout), "60s", 1, HOUR, NULL, true,
	 "close clients that have not logged in within this time"},
	{"limits.idle_timeout", CFG_DURATION, OFF(idle_timeout), "31m", MINUTE, DAY, NULL, true,
	 "close authenticated clients silent for this long (RFC 3501 asks for at least 30m)"},
	{"limits.drain_timeout", CFG_DURATION, OFF(drain_timeout), "10s", 0, 10 * MINUTE, NULL, true,
	 "on SIGTERM, how long open connections may finish before they are cut"},

	{"http.path", CFG_STRING, OFF(http_path), "/pimap", 0, 0, NULL, false,
	 "the request target of the HTTPS binding; other paths get 404", valid_http_path},
	/* 8K: what common servers allow (nginx large_client_header_buffers); a
	 * P-IMAP request needs about 300 bytes of head, so a flood is cut early. */
	{"http.max_header_size", CFG_SIZE, OFF(http_max_header_size), "8K", 1 * KIB, 64 * KIB, NULL, true,
	 "request line and header fields of one request; beyond: 431"},
	{"http.max_headers", CFG_INT, OFF(http_max_headers), "64", 8, 1000, NULL, true,
	 "header lines of one request; beyond: 431"},
	{"http.max_body_size", CFG_SIZE, OFF(http_max_body_size), "16M", 4 * KIB, 2 * GIB, NULL, true,
	 "body of an in-response request (a batch, literals included); beyond: 413"},
	{"http.max_requests_per_minute", CFG_INT, OFF(http_max_requests_per_minute), "600", 1, 100000, NULL, true,
	 "requests per in-response session per minute; beyond: 429"},
	{"http.max_connections", CFG_INT, OFF(http_max_connections), "1024", 1, 100000, NULL, true,
	 "concurrent HTTPS connections (each persistent session is one)"},
	{"http.max_sessions", CFG_INT, OFF(http_max_sessions), "1024", 1, 100000, NULL, true,
	 "in-response sessions (cookies) alive at once; beyond: 503"},
	/* Slowloris: a peer that trickles its head or body is cut at these deadlines. */
	{"http.header_timeout", CFG_DURATION, OFF(http_header_timeout), "10s", 1, 5 * MINUTE, NULL, true,
	 "TLS handshake and request head must arrive within this; then 408 and close"},
	{"http.body_timeout", CFG_DURATION, OFF(http_body_timeout), "30s", 1, HOUR, NULL, true,
	 "the rest of an in-response request's body must arrive within this"},
	{"http.keepalive_timeout", CFG_DURATION, OFF(http_keepalive_timeout), "15s", 1, HOUR, NULL, true,
	 "an idle connection between requests is closed after this"},
	{"http.response_timeout", CFG_DURATION, OFF(http_response_timeout), "60s", 1, HOUR, NULL, true,
	 "longest wait for a batch's replies; then the response carries what is there and the rest comes later"},
	{"http.session_timeout", CFG_DURATION, OFF(http_session_timeout), "30m", 10, DAY, NULL, true,
	 "an in-response session without requests ends (its store connection is parked) after this"},

	{"outband.min_interval", CFG_DURATION, OFF(outband_min_interval), "5s", 0, HOUR, NULL, true,
	 "at most one out-band notification per device this often; events in between are told once, later"},
	{"outband.webhook_ca_file", CFG_STRING, OFF(outband_webhook_ca_file), "", 0, 0, NULL, false,
	 "PEM trust anchors for WEBHOOK URLs; \"\" = system store (certificates are always verified)"},
	{"outband.webhook_timeout", CFG_DURATION, OFF(outband_webhook_timeout), "10s", 1, 5 * MINUTE, NULL, true,
	 "connect, TLS and answer of one webhook POST"},
	{"outband.webhook_resolve_timeout", CFG_DURATION, OFF(outband_webhook_resolve_timeout), "5s", 0.1, MINUTE,
	 NULL, true, "looking up a webhook's host name (on a helper thread) must end within this"},
	{"outband.webhook_allow", CFG_STRLIST, OFF(outband_webhook_allow), "", 0, 0, NULL, true,
	 "https:// URL prefixes WEBHOOK addresses must start with; empty = WEBHOOK not offered. Loopback and "
	 "private targets only when an entry names them as an IP literal",
	 outband_policy_webhook_entry_valid},
	{"outband.udp_allow", CFG_STRLIST, OFF(outband_udp_allow), "", 0, 0, NULL, true,
	 "networks (CIDR) UDP wake-ups may go to besides the device's own address, or \"any\"; empty = only the "
	 "address of the device's last in-band connection",
	 outband_policy_udp_entry_valid},

	{NULL, 0, 0, NULL, 0, 0, NULL, false, NULL, NULL},
};
