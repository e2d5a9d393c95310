/*
 * proxy_config.c - pimap-proxy's configuration key table.
 *
 * The one place that names each key, its type, default and bounds; cfg.c does
 * the loading, etc/pimap-proxy.yaml documents the same keys (a unit test loads
 * it and checks that it sets every key to exactly these defaults).
 *
 * Reloadable keys take effect on SIGHUP. Listeners, the upstream, TLS
 * credentials and paths are fixed at startup: changing them means rebinding
 * sockets or re-deciding trust for connections already in flight.
 */
#include "config.h"

#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "proxy_config.h"
#include "url.h"

/* Designated initialisers keep the names in step with enum log_level_value. */
const char *const plaintext_login_names[] = {
	[PLAINTEXT_LOGIN_LOOPBACK] = "loopback",
	[PLAINTEXT_LOGIN_NEVER] = "never",
	[PLAINTEXT_LOGIN_ALWAYS] = "always",
	NULL,
};

const char *const log_level_names[] = {
	[LOGV_ERROR] = "error",
	[LOGV_WARN] = "warn",
	[LOGV_INFO] = "info",
	[LOGV_DEBUG] = "debug",
	NULL,
};

const char *const upstream_binding_names[] = {
	[BINDING_AUTO] = "auto",
	[BINDING_TCP] = "tcp",
	[BINDING_HTTPS] = "https",
	NULL,
};

const char *const upstream_mode_names[] = {
	[MODE_PERSISTENT] = "persistent",
	[MODE_IN_RESPONSE] = "in-response",
	NULL,
};

const char *const log_facility_names[] = {
	[LOGF_MAIL] = "mail", [LOGF_DAEMON] = "daemon", [LOGF_USER] = "user",
	[LOGF_LOCAL0] = "local0", [LOGF_LOCAL1] = "local1", [LOGF_LOCAL2] = "local2",
	[LOGF_LOCAL3] = "local3", [LOGF_LOCAL4] = "local4", [LOGF_LOCAL5] = "local5",
	[LOGF_LOCAL6] = "local6", [LOGF_LOCAL7] = "local7",
	NULL,
};

#define KIB 1024.0
#define MIB (1024.0 * KIB)
#define GIB (1024.0 * MIB)

/* upstream.url: empty (set later by a flag) or a URL url_parse accepts. */
static int valid_upstream_url(const char *value, char *msg, size_t msglen)
{
	struct upstream_url url;
	if (*value == '\0')
		return 0;
	return url_parse(value, &url, msg, msglen);
}

/* device_id: "" (generate one) or what the gateway accepts after "#P". */
static int valid_device_id(const char *value, char *msg, size_t msglen)
{
	size_t n = strlen(value);
	if (n > DEVICE_ID_MAX) {
		snprintf(msg, msglen, "device id longer than %d characters", DEVICE_ID_MAX);
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)value[i]) && !strchr("._-", value[i])) {
			snprintf(msg, msglen, "device id may hold only A-Z a-z 0-9 . _ -");
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

/* smtp.save_sent items: "user=folder" or "*=folder". */
static int valid_save_sent(const char *value, char *msg, size_t msglen)
{
	const char *eq = strchr(value, '=');
	if (!eq || eq == value || !eq[1]) {
		if (msg && msglen)
			snprintf(msg, msglen, "expected \"user=folder\" or \"*=folder\"");
		return -1;
	}
	for (const char *p = value; *p; p++)
		if ((unsigned char)*p < 0x20) {
			if (msg && msglen)
				snprintf(msg, msglen, "control character in \"user=folder\"");
			return -1;
		}
	return 0;
}

#define OFF(field) offsetof(struct proxy_config, field)

const struct cfg_key proxy_config_keys[] = {
	{"listen.imap", CFG_STRLIST, OFF(listen_imap), "127.0.0.1:1143", 0, 0, NULL, false,
	 "plain IMAP listeners offering STARTTLS: \"host:port\", \"[v6]:port\" or \":port\"", valid_listen_addr},
	{"listen.imaps", CFG_STRLIST, OFF(listen_imaps), "127.0.0.1:1993", 0, 0, NULL, false,
	 "implicit-TLS IMAP listeners, same syntax as listen.imap", valid_listen_addr},
	{"listen.plaintext_login", CFG_ENUM, OFF(plaintext_login), "loopback", 0, 0, plaintext_login_names, true,
	 "LOGIN/AUTHENTICATE without TLS on the client leg: loopback (peers on 127/8, ::1), never, always"},

	{"upstream.url", CFG_STRING, OFF(upstream_url), "", 0, 0, NULL, false,
	 "upstream server: imaps://, imap://, pimaps://, pimap:// or https:// host[:port]", valid_upstream_url},
	{"upstream.ca_file", CFG_STRING, OFF(upstream_ca_file), "", 0, 0, NULL, false,
	 "PEM file of trust anchors for the upstream certificate; \"\" = system store"},
	{"upstream.server_name", CFG_STRING, OFF(upstream_server_name), "", 0, 0, NULL, false,
	 "name to send as SNI and verify in the upstream certificate; \"\" = the URL host"},
	{"upstream.allow_plaintext", CFG_BOOL, OFF(upstream_allow_plaintext), "false", 0, 0, NULL, false,
	 "allow imap:// to continue without TLS when the server offers no STARTTLS"},
	{"upstream.compress", CFG_BOOL, OFF(upstream_compress), "true", 0, 0, NULL, false,
	 "use COMPRESS=DEFLATE towards the upstream when it is offered"},
	{"upstream.connect_timeout", CFG_DURATION, OFF(upstream_connect_timeout), "15s", 1, 300, NULL, false,
	 "deadline for TCP connect, TLS handshake and greeting"},

	{"upstream.binding", CFG_ENUM, OFF(upstream_binding), "auto", 0, 0, upstream_binding_names, false,
	 "how a gateway is reached: auto (by the URL: https:// is the HTTPS binding), tcp, https"},
	{"upstream.mode", CFG_ENUM, OFF(upstream_mode), "persistent", 0, 0, upstream_mode_names, false,
	 "HTTPS binding: persistent (one long chunked POST, push) or in-response (a POST per batch, no idle socket)"},
	{"upstream.poll_interval", CFG_DURATION, OFF(upstream_poll_interval), "5m", 5, 86400, NULL, true,
	 "in-response mode without outband.listen: ask the gateway for events this often while a client idles"},
	{"upstream.http_proxy", CFG_STRING, OFF(upstream_http_proxy), "", 0, 0, NULL, false,
	 "HTTPS binding: reach the gateway through this web proxy with HTTP CONNECT, http://host:port; "
	 "\"\" = directly (https_proxy and the like in the environment are never read)",
	 url_validate_http_proxy},
	{"upstream.http_proxy_user", CFG_STRING, OFF(upstream_http_proxy_user), "", 0, 0, NULL, false,
	 "user name for the web proxy (Proxy-Authorization: Basic); \"\" = none"},
	{"upstream.http_proxy_password_file", CFG_STRING, OFF(upstream_http_proxy_password_file), "", 0, 0, NULL, false,
	 "file whose first line is the web proxy password (not readable by group or others); with http_proxy_user"},
	{"outband.listen", CFG_STRING, OFF(outband_listen), "none", 0, 0, NULL, false,
	 "UDP address for the gateway's wake-ups (in-response mode): \"host:port\" or none", valid_listen_addr},
	{"outband.address", CFG_STRING, OFF(outband_address), "", 0, 0, NULL, false,
	 "the IP:port the gateway is told to send wake-ups to; \"\" = the address outband.listen bound"},
	{"outband.max_age", CFG_DURATION, OFF(outband_max_age), "10m", 0, 86400, NULL, true,
	 "refuse wake-ups older (or further in the future) than this by our clock; 0 = replays only"},

	{"device_id", CFG_STRING, OFF(device_id), "", 0, 0, NULL, false,
	 "this device's name at a pimap-gateway (A-Z a-z 0-9 . _ -); \"\" = generated once, kept in state_dir",
	 valid_device_id},
	{"link.heartbeat", CFG_DURATION, OFF(link_heartbeat), "60s", 1, 3600, NULL, true,
	 "probe a gateway link that has been quiet this long (keep it under NAT timeouts)"},
	{"link.dead_timeout", CFG_DURATION, OFF(link_dead_timeout), "20s", 1, 600, NULL, true,
	 "a gateway link silent this long after a probe is dead: reconnect"},
	{"link.reconnect_min", CFG_DURATION, OFF(link_reconnect_min), "1s", 0.05, 60, NULL, true,
	 "delay before the second reconnect attempt (the first is immediate); doubles each time"},
	{"link.reconnect_max", CFG_DURATION, OFF(link_reconnect_max), "60s", 0.05, 3600, NULL, true,
	 "longest delay between reconnect attempts"},
	{"link.outage_wait", CFG_DURATION, OFF(link_outage_wait), "30s", 0, 3600, NULL, true,
	 "client commands wait this long for a lost gateway link, then get NO [UNAVAILABLE]"},
	{"link.folder_status", CFG_BOOL, OFF(link_folder_status), "true", 0, 0, NULL, true,
	 "ask the gateway to push the STATUS of the other subscribed folders, to answer STATUS locally"},
	{"link.write_behind", CFG_BOOL, OFF(link_write_behind), "true", 0, 0, NULL, true,
	 "answer a flag STORE at once from what the client was told and send it to the gateway behind it"},

	{"smtp.listen", CFG_STRLIST, OFF(smtp_listen), "127.0.0.1:1587", 0, 0, NULL, false,
	 "SMTP submission listeners offering STARTTLS, same syntax as listen.imap", valid_listen_addr},
	{"smtp.listen_tls", CFG_STRLIST, OFF(smtp_listen_tls), "127.0.0.1:1465", 0, 0, NULL, false,
	 "SMTP submission listeners over implicit TLS, same syntax as listen.imap", valid_listen_addr},
	{"smtp.max_message_size", CFG_SIZE, OFF(smtp_max_message_size), "32M", KIB, GIB, NULL, true,
	 "largest message accepted (EHLO SIZE); larger ones get 552"},
	{"smtp.max_recipients", CFG_INT, OFF(smtp_max_recipients), "100", 1, 1000, NULL, true,
	 "recipients of one message; more get 452"},
	{"smtp.deliver_timeout", CFG_DURATION, OFF(smtp_deliver_timeout), "60s", 1, 3600, NULL, true,
	 "how long a client waits for the gateway's answer before its message goes to the outbox"},
	{"smtp.retry_min", CFG_DURATION, OFF(smtp_retry_min), "30s", 0.05, 3600, NULL, true,
	 "first delay before the outbox is tried again; doubles each time"},
	{"smtp.retry_max", CFG_DURATION, OFF(smtp_retry_max), "15m", 0.05, 86400, NULL, true,
	 "longest delay between two tries of the outbox"},
	{"smtp.outbox_max_age", CFG_DURATION, OFF(smtp_outbox_max_age), "120h", 1, 8760 * 3600.0, NULL, true,
	 "a queued message still not sent after this long comes back as a bounce"},
	{"smtp.outbox_max_size", CFG_SIZE, OFF(smtp_outbox_max_size), "256M", MIB, 64 * GIB, NULL, true,
	 "bytes the outbox may hold; beyond it messages get 452 instead of being queued"},
	{"smtp.save_sent", CFG_STRLIST, OFF(smtp_save_sent), "", 0, 0, NULL, true,
	 "save a copy of each sent message: \"user=folder\" per account, or \"*=folder\" for all", valid_save_sent},
	{"smtp.submission_url", CFG_STRING, OFF(smtp_submission_url), "", 0, 0, NULL, false,
	 "compatibility mode: the submission server, smtp://host[:587] (STARTTLS) or smtps://host[:465]",
	 url_validate_submission},
	{"smtp.submission_ca_file", CFG_STRING, OFF(smtp_submission_ca_file), "", 0, 0, NULL, false,
	 "PEM file of trust anchors for the submission server's certificate; \"\" = system store"},
	{"smtp.submission_server_name", CFG_STRING, OFF(smtp_submission_server_name), "", 0, 0, NULL, false,
	 "name to send as SNI and verify in the submission server's certificate; \"\" = the URL host"},
	{"smtp.submission_allow_plaintext", CFG_BOOL, OFF(smtp_submission_allow_plaintext), "false", 0, 0, NULL,
	 false, "allow smtp:// to continue without TLS when the server offers no STARTTLS"},
	{"smtp.submission_timeout", CFG_DURATION, OFF(smtp_submission_timeout), "5m", 1, 3600, NULL, true,
	 "how long the submission server may take for each reply (twice that after the message)"},

	{"macros.enabled", CFG_BOOL, OFF(macros_enabled), "true", 0, 0, NULL, true,
	 "send the commands a known client will send next in one batch (pimap-macros(5))"},
	{"macros.dir", CFG_STRING, OFF(macros_dir), "", 0, 0, NULL, true,
	 "directory of macro files (*.yaml); \"\" = the macros installed with pimap"},

	{"filters.file", CFG_STRING, OFF(filters_file), "", 0, 0, NULL, true,
	 "filter file: views, push rules, event kinds (pimap-filters(5)); \"\" = the proxy manages no filters"},

	{"tls.cert", CFG_STRING, OFF(tls_cert_file), "", 0, 0, NULL, false,
	 "PEM certificate chain for the local listeners; \"\" = generate one in state_dir"},
	{"tls.key", CFG_STRING, OFF(tls_key_file), "", 0, 0, NULL, false,
	 "PEM private key for tls.cert"},

	{"state_dir", CFG_STRING, OFF(state_dir), "", 0, 0, NULL, false,
	 "directory for generated certificates; \"\" = $HOME/.local/state/pimap"},
	{"status.socket", CFG_STRING, OFF(status_socket), "", 0, 0, NULL, false,
	 "Unix socket of pimap-proxy --status; \"\" = state_dir/status.sock (not with --stdio), \"none\" = off"},

	CFG_LOG_AND_PID_KEYS

	/* Bounds: below the minimums ordinary clients break, above the maximums one
	 * connection could pin an unreasonable share of memory or time. */
	{"limits.max_line_length", CFG_SIZE, OFF(max_line_length), "64K", KIB, 16 * MIB, NULL, true,
	 "longest command or response line accepted, literals not counted"},
	{"limits.max_literal_size", CFG_SIZE, OFF(max_literal_size), "64M", KIB, 2 * GIB, NULL, true,
	 "largest single literal ({n}) accepted, e.g. one APPENDed message"},
	{"limits.max_command_size", CFG_SIZE, OFF(max_command_size), "128M", 64 * KIB, 4 * GIB, NULL, true,
	 "largest client command with all its literals (MULTIAPPEND), buffered whole"},
	{"limits.max_list_depth", CFG_INT, OFF(max_list_depth), "32", 1, 256, NULL, true,
	 "deepest parenthesised list nesting accepted in a command or response"},
	{"limits.max_output_queue", CFG_SIZE, OFF(max_output_queue), "1M", 16 * KIB, 256 * MIB, NULL, true,
	 "queued bytes per direction before reading from the other side pauses"},
	{"limits.max_clients", CFG_INT, OFF(max_clients), "256", 1, 100000, NULL, true,
	 "concurrent client connections"},
	{"limits.preauth_timeout", CFG_DURATION, OFF(preauth_timeout), "60s", 1, 3600, NULL, true,
	 "close clients that have not logged in within this time"},
	{"limits.idle_timeout", CFG_DURATION, OFF(idle_timeout), "31m", 60, 86400, NULL, true,
	 "close authenticated clients silent for this long (RFC 3501 asks for at least 30m)"},
	{"limits.drain_timeout", CFG_DURATION, OFF(drain_timeout), "10s", 0, 600, NULL, true,
	 "on SIGTERM, how long open connections may finish before they are cut"},

	{NULL, 0, 0, NULL, 0, 0, NULL, false, NULL},
};
