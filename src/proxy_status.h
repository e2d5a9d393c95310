/*
 * proxy_status_socket.h - pimap-proxy's status report: what `pimap-proxy --status`
 * shows (status_socket.c carries it over a Unix socket).
 *
 *   pimap-proxy: 0.1.0, pid 4242, up 2h05m
 *   mode: gateway, upstream pimaps://gw.example.org:2993, device laptop1
 *   listen: 127.0.0.1:1143 (imap), 127.0.0.1:1993 (imaps)
 *   clients: 3 connected, at most 256
 *   account alice: 2 connections, link up on 1 of 2
 *   connection c1 127.0.0.1:50312: alice, INBOX, in IDLE, link up for 2h04m
 *   connection c2 127.0.0.1:50318: alice, link reconnecting (attempt 3)
 *   account (not logged in): 1 connection
 *   connection c3 127.0.0.1:50320: not logged in
 *   outbox: 1 queued (4210 bytes), oldest 3m12s
 *   outbox alice: 1 queued, next try in 25s
 *   last error: 2026-12-07T10:12:01Z [c2 127.0.0.1:50318] link to the gateway lost: ...
 *
 * Sections: daemon (STATUS_RANK_DAEMON), accounts and connections
 * (STATUS_RANK_ACCOUNTS), the outbox of the SMTP listener when there is
 * one (STATUS_RANK_OUTBOX, sender_status() in proxy_send.c), last error
 * (STATUS_RANK_LAST_ERROR).
 */
#ifndef PIMAP_PROXY_STATUS_H
#define PIMAP_PROXY_STATUS_H

#include <stdbool.h>
#include <stdio.h>

#include <ev.h>

#include "imap_parse.h"
#include "proxy_config.h"

struct proxy_server;
struct session;

/* How long `pimap-proxy --status` waits for the report. */
#define PROXY_STATUS_FETCH_TIMEOUT 10.0

/*
 * The socket status.socket names ("" = state_dir/status.sock; "none", or ""
 * with --stdio, where several proxies share a state directory: none).
 * Returns a malloc'd path, or NULL when there is no status socket.
 */
char *proxy_status_path(const struct proxy_config *cfg, bool stdio_mode);

/*
 * Open the status socket for srv (sets srv->status_report) and add the proxy's
 * sections. Returns 0 (also when status is off), or -1 with err filled.
 */
int proxy_status_start(struct proxy_server *srv, struct ev_loop *loop, const struct proxy_config *cfg,
                       bool stdio_mode, char *err, size_t errlen);
void proxy_status_stop(struct proxy_server *srv);

/* pimap-proxy --status: print the running proxy's report to out. Returns an exit status. */
int proxy_status_command(const struct proxy_config *cfg, FILE *out);

/*
 * Compatibility mode: remember whom a client logs in as (LOGIN, or
 * AUTHENTICATE PLAIN with its initial response or, for the next raw line,
 * without), to show it once the login succeeded. The password is never
 * kept; the decoded SASL buffer is wiped.
 */
void proxy_status_note_login(struct session *s, const struct imap_msg *m);
void proxy_status_note_sasl_line(struct session *s, const struct imap_msg *m);

#endif
