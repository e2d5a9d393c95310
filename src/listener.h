/*
 * listener.h - listening TCP sockets under libev.
 *
 * Binds "host:port" (see listen_addr_parse), accepts non-blocking, and hands
 * each new socket to the owner. When the process runs out of descriptors
 * (EMFILE/ENFILE) it stops accepting for LISTENER_EMFILE_BACKOFF seconds
 * instead of spinning on a readable listening socket.
 */
#ifndef PIMAP_LISTENER_H
#define PIMAP_LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include <ev.h>

#define LISTENER_EMFILE_BACKOFF 1.0 /* seconds */
#define LISTENER_BACKLOG 128

struct listener;

/* fd is the accepted socket (owned by the callee); peer is a printable "addr:port". */
typedef void (*listener_cb)(struct listener *l, int fd, const char *peer, void *ctx);

struct listener *listener_new(struct ev_loop *loop, const char *address, bool implicit_tls,
                              listener_cb cb, void *ctx, char *err, size_t errlen);
void listener_free(struct listener *l);

/* Stop/resume accepting (connection limit reached, draining). */
void listener_pause(struct listener *l, bool pause);

bool listener_implicit_tls(const struct listener *l);
const char *listener_address(const struct listener *l);

/* True if the connected socket's peer is 127.0.0.0/8, ::1 or a v4-mapped loopback address. */
bool listener_peer_is_loopback(int fd);

/* Printable "addr:port" for a socket address ("[v6]:port" for IPv6). */
void sockaddr_format(const struct sockaddr *sa, socklen_t len, char *out, size_t outlen);

#endif
