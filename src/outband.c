/*
 * outband.c - out-band notifications from pimap-gateway (see outband.h).
 *
 * Objects:
 *   outband        the UDP sockets (one per address family, made when first
 *                  needed), the webhook trust anchors, the host name
 *                  resolver (threads, made when first needed), the sequence
 *                  counter, per-device records and webhook POSTs in flight
 *   ob_device      (user, device): key, the address of its last in-band
 *                  connection, when it was last notified, the event waiting
 *                  for the rate limit, and a copy of the preferences that
 *                  event is to be sent with
 *   webhook        one HTTPS POST: host name lookup, stream (TCP -> TLS),
 *                  response reader
 *
 * Where a notification may go is outband_policy.c's to say; it is asked
 * when the device sets its address and again before every send.
 *
 * A notification is a hint: nothing is queued for long, nothing is
 * retried. The events themselves wait in the gateway's session and reach
 * the device when it connects.
 */
#include "config.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "clock.h"
#include "http_wire.h"
#include "log.h"
#include "netaddr.h"
#include "outband.h"
#include "outband_policy.h"
#include "resolver.h"
#include "stream.h"
#include "tlsio.h"
#include "url.h"

/* The device key is kept among the device's preferences under a name no
 * client can set or read (XGETPIMAPPREF lists only PIMAP_* names). */
#define KEY_PREF_NAME "x-pimap-outband-key"
/* The same for the address of the device's last in-band connection (UDP goes there by default). */
#define PEER_PREF_NAME "x-pimap-outband-peer"
#define WEBHOOK_MAX_RESPONSE 65536

struct ob_device {
	struct ob_device *next;
	struct outband *ob;
	char *user;
	char *device;
	uint8_t key[OUTBAND_KEY_LEN];
	bool have_key;
	struct netaddr peer;     /* where its last in-band connection came from */
	bool have_peer, peer_loaded;
	double last_sent;        /* monotonic; 0 = never */
	ev_timer later;          /* fires when the rate limit allows the pending event */
	bool pending;
	enum outband_event pending_ev;
	char *pending_mailbox;
	char *channel, *format, *address; /* preferences of the pending event */
};

struct webhook {
	struct webhook *next;
	struct outband *ob;
	struct stream *st;
	struct http_reader *rd;
	struct resolver_query *lookup; /* while the host name is looked up */
	char host[256];
	char what[700];  /* for the log: "user#Pdevice -> host" */
	struct buf request;
	bool sent;
};

struct outband {
	struct ev_loop *loop;
	const struct gateway_config *cfg;
	struct gw_state *db;
	struct tls_creds *creds;
	struct resolver *resolver;
	int udp4, udp6;
	uint64_t last_seq;
	struct ob_device *devices;
	unsigned ndevices;
	struct webhook *webhooks;
	unsigned nwebhooks;
};

/* Microseconds of the wall clock: the EXTENDED sequence numbers. */
static uint64_t wall_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void outband_account(const char *user, const char *device, char *out, size_t outlen)
{
	const char *at = strrchr(user, '@');
	size_t local = at ? (size_t)(at - user) : strlen(user);
	snprintf(out, outlen, "%.*s#P%s%s", (int)local, user, device, at ? at : "");
}

/* ---- devices and keys ------------------------------------------------------ */

static void device_clear_pending(struct ob_device *d)
{
	d->pending = false;
	free(d->pending_mailbox);
	free(d->channel);
	free(d->format);
	free(d->address);
	d->pending_mailbox = d->channel = d->format = d->address = NULL;
}

static void device_free(struct ob_device *d)
{
	ev_timer_stop(d->ob->loop, &d->later);
	device_clear_pending(d);
	gnutls_memset(d->key, 0, sizeof(d->key));
	free(d->user);
	free(d->device);
	free(d);
}

static void on_later(struct ev_loop *loop, ev_timer *w, int revents);

static struct ob_device *device_get(struct outband *ob, const char *user, const char *device)
{
	struct ob_device **pp = &ob->devices;
	for (struct ob_device *d = ob->devices; d; pp = &d->next, d = d->next) {
		if (strcmp(d->user, user) == 0 && strcmp(d->device, device) == 0) {
			*pp = d->next; /* most recently used first */
			d->next = ob->devices;
			ob->devices = d;
			return d;
		}
	}
	if (ob->ndevices >= OUTBAND_MAX_DEVICES) {
		/* Forget the least recently used record: at worst that device gets its next wake-up early. */
		struct ob_device **last = &ob->devices;
		while ((*last)->next)
			last = &(*last)->next;
		device_free(*last);
		*last = NULL;
		ob->ndevices--;
	}
	struct ob_device *d = xcalloc(1, sizeof(*d));
	d->ob = ob;
	d->user = xstrdup(user);
	d->device = xstrdup(device);
	ev_init(&d->later, on_later);
	d->later.data = d;
	d->next = ob->devices;
	ob->devices = d;
	ob->ndevices++;
	return d;
}

struct key_lookup {
	uint8_t *key;
	bool found;
};

static void key_pref_cb(const char *name, const char *value, void *ctx)
{
	struct key_lookup *kl = ctx;
	if (strcmp(name, KEY_PREF_NAME) != 0)
		return;
	gnutls_datum_t src = {(unsigned char *)(uintptr_t)value, (unsigned)strlen(value)};
	gnutls_datum_t raw = {NULL, 0};
	if (gnutls_base64_decode2(&src, &raw) == 0 && raw.size == OUTBAND_KEY_LEN) {
		memcpy(kl->key, raw.data, OUTBAND_KEY_LEN);
		kl->found = true;
	}
	if (raw.data) {
		gnutls_memset(raw.data, 0, raw.size);
		gnutls_free(raw.data);
	}
}

/* The device's key: from memory, from the database, or new (create). False if none and !create. */
static bool device_key(struct ob_device *d, bool create)
{
	if (d->have_key)
		return true;
	struct key_lookup kl = {d->key, false};
	gw_state_prefs_load(d->ob->db, d->user, d->device, key_pref_cb, &kl);
	if (kl.found) {
		d->have_key = true;
		return true;
	}
	if (!create)
		return false;
	gnutls_rnd(GNUTLS_RND_KEY, d->key, OUTBAND_KEY_LEN);
	gnutls_datum_t src = {d->key, OUTBAND_KEY_LEN};
	gnutls_datum_t b64 = {NULL, 0};
	if (gnutls_base64_encode2(&src, &b64) < 0)
		return false;
	char *text = xmalloc(b64.size + 1);
	memcpy(text, b64.data, b64.size);
	text[b64.size] = '\0';
	int rc = gw_state_pref_save(d->ob->db, d->user, d->device, KEY_PREF_NAME, text);
	gnutls_memset(text, 0, b64.size);
	gnutls_memset(b64.data, 0, b64.size);
	gnutls_free(b64.data);
	free(text);
	if (rc < 0)
		return false;
	d->have_key = true;
	return true;
}

void outband_provision(struct outband *ob, const char *user, const char *device, struct buf *out)
{
	struct ob_device *d = device_get(ob, user, device);
	if (!device_key(d, true)) {
		log_warn("cannot make an out-band key for %s#P%s", user, device);
		return;
	}
	gnutls_datum_t src = {d->key, OUTBAND_KEY_LEN};
	gnutls_datum_t b64 = {NULL, 0};
	if (gnutls_base64_encode2(&src, &b64) < 0)
		return;
	buf_append_str(out, "* XPROVISION PIMAP_ENC_KEY (");
	buf_append(out, b64.data, b64.size);
	buf_append_str(out, ")\r\n* XPROVISION PIMAP_ENC_CIPHER (AES-256-GCM)\r\n");
	gnutls_memset(b64.data, 0, b64.size);
	gnutls_free(b64.data);
}

/* ---- where the device is, and where it may be told ------------------------- */

static void peer_pref_cb(const char *name, const char *value, void *ctx)
{
	struct ob_device *d = ctx;
	if (strcmp(name, PEER_PREF_NAME) == 0 && netaddr_parse(value, &d->peer))
		d->have_peer = true;
}

/* The address of the device's last in-band connection; NULL if none is known. */
static const struct netaddr *device_peer(struct ob_device *d)
{
	if (!d->peer_loaded) {
		d->peer_loaded = true;
		gw_state_prefs_load(d->ob->db, d->user, d->device, peer_pref_cb, d);
	}
	return d->have_peer ? &d->peer : NULL;
}

void outband_device_seen(struct outband *ob, const char *user, const char *device, const char *peer)
{
	struct netaddr a;
	if (!ob || !outband_policy_peer_addr(peer, &a))
		return; /* not an IP connection (--stdio): only outband.udp_allow can allow UDP */
	struct ob_device *d = device_get(ob, user, device);
	const struct netaddr *known = device_peer(d);
	if (known && netaddr_equal(known, &a))
		return;
	d->peer = a;
	d->have_peer = true;
	char text[NETADDR_TEXT_MAX];
	netaddr_format(&a, text, sizeof(text));
	/* Kept across restarts: a device waiting for its wake-up has no connection to tell us again. */
	if (gw_state_pref_save(ob->db, user, device, PEER_PREF_NAME, text) < 0)
		log_warn("cannot save the address of %s#P%s", user, device);
}

const char *const *outband_channels(const struct outband *ob)
{
	return outband_policy_channels(ob->cfg->outband_webhook_allow);
}

static int check_address(const char *address, const void *ctx, const char *peer, char *err, size_t errlen)
{
	const struct outband *ob = ctx;
	struct netaddr a;
	bool have = peer && outband_policy_peer_addr(peer, &a);
	return outband_policy_address(ob->cfg->outband_webhook_allow, ob->cfg->outband_udp_allow, address,
	                              have ? &a : NULL, err, errlen);
}

struct pimap_pref_policy outband_pref_policy(const struct outband *ob, const char *peer)
{
	struct pimap_pref_policy p = {.channels = outband_channels(ob), .check_address = check_address, .ctx = ob,
	                              .peer = peer};
	return p;
}

/* ---- payloads ------------------------------------------------------------- */

/* Strictly growing: microseconds of the wall clock, or one more than the last. */
static uint64_t next_seq(struct outband *ob)
{
	uint64_t now = wall_us();
	ob->last_seq = now > ob->last_seq ? now : ob->last_seq + 1;
	return ob->last_seq;
}

/* The payload in the device's format; -1 if EXTENDED cannot be sealed (no key yet). */
static int make_payload(struct ob_device *d, const char *format, enum outband_event ev, const char *mailbox,
                        struct buf *out)
{
	char account[OUTBAND_MAX_ACCOUNT + 1];
	outband_account(d->user, d->device, account, sizeof(account));
	if (strcasecmp(format, "EXTENDED") == 0) {
		if (!device_key(d, false)) {
			log_warn("out-band EXTENDED for %s: the device has no key yet (XPROVISION gives it one)", account);
			return -1;
		}
		uint8_t salt[OUTBAND_SALT_LEN];
		gnutls_rnd(GNUTLS_RND_NONCE, salt, sizeof(salt));
		if (mailbox && (strlen(mailbox) > OUTBAND_MAX_MAILBOX))
			mailbox = NULL;
		return outband_extended_encode(d->key, next_seq(d->ob), salt, account, ev, mailbox, out);
	}
	outband_emn_format(account, time(NULL), out);
	return 0;
}

/* ---- UDP ------------------------------------------------------------------ */

static int udp_socket(struct outband *ob, int family)
{
	int *slot = family == AF_INET6 ? &ob->udp6 : &ob->udp4;
	if (*slot >= 0)
		return *slot;
	int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		log_warn("out-band UDP socket: %s", strerror(errno));
	*slot = fd;
	return fd;
}

static void send_udp(struct ob_device *d, const char *address, const struct buf *payload)
{
	struct sockaddr_storage to;
	socklen_t tolen;
	char err[320];
	/* Asked again at every send: the device may have moved, the configuration may have changed. */
	if (outband_policy_udp(d->ob->cfg->outband_udp_allow, address, device_peer(d), &to, &tolen, err,
	                       sizeof(err)) < 0) {
		log_warn("out-band UDP for %s#P%s not sent: %s", d->user, d->device, err);
		return;
	}
	int fd = udp_socket(d->ob, to.ss_family);
	if (fd >= 0 && sendto(fd, buf_head(payload), buf_len(payload), MSG_NOSIGNAL, (struct sockaddr *)&to, tolen) < 0)
		log_warn("out-band UDP to %s: %s", address, strerror(errno));
	else if (fd >= 0)
		log_debug("out-band UDP notification to %s (%zu bytes) for %s#P%s", address, buf_len(payload), d->user,
		          d->device);
}

/* ---- webhooks -------------------------------------------------------------- */

static void webhook_unlink(struct webhook *w)
{
	struct outband *ob = w->ob;
	if (w->lookup) {
		resolver_cancel(w->lookup);
		w->lookup = NULL;
	}
	for (struct webhook **pp = &ob->webhooks; *pp; pp = &(*pp)->next) {
		if (*pp == w) {
			*pp = w->next;
			ob->nwebhooks--;
			break;
		}
	}
	if (w->st) {
		stream_close(w->st);
		w->st = NULL;
	}
}

static void webhook_release(void *arg)
{
	struct webhook *w = arg;
	http_reader_free(w->rd);
	buf_free(&w->request);
	free(w);
}

/* Done, either way: unlinked at once, memory released from the loop (we may be in its callback). */
static void webhook_finish(struct webhook *w, bool ok, const char *why)
{
	if (ok)
		log_info("out-band webhook %s: %s", w->what, why);
	else
		log_warn("out-band webhook %s failed: %s", w->what, why);
	webhook_unlink(w);
	loop_defer_free(webhook_release, w);
}

static void webhook_read(struct webhook *w)
{
	struct buf *in = stream_input(w->st);
	size_t used;
	enum http_read_result r;
	do {
		r = http_reader_feed(w->rd, buf_head(in), buf_len(in), &used, NULL);
		buf_consume(in, used);
	} while (r == HTTP_READ_HEAD);
	if (r == HTTP_READ_ERROR) {
		webhook_finish(w, false, http_reader_error(w->rd));
		return;
	}
	const struct http_head *h = http_reader_head(w->rd);
	if (r == HTTP_READ_DONE) {
		char why[64];
		snprintf(why, sizeof(why), "HTTP %u", h->status);
		webhook_finish(w, h->status >= 200 && h->status < 300, why);
	}
}

static void on_webhook_event(struct stream *st, enum stream_event ev, const char *reason, void *ctx)
{
	struct webhook *w = ctx;
	char err[256];
	(void)st;
	switch (ev) {
	case STREAM_EV_CONNECTED:
		if (stream_start_tls_client(w->st, w->ob->creds, w->host, err, sizeof(err)) < 0)
			webhook_finish(w, false, err);
		return;
	case STREAM_EV_TLS_READY:
		stream_write(w->st, buf_head(&w->request), buf_len(&w->request));
		stream_flush(w->st);
		w->sent = true;
		return;
	case STREAM_EV_DATA:
		webhook_read(w);
		return;
	case STREAM_EV_EOF:
		if (http_reader_eof(w->rd, NULL) == HTTP_READ_DONE) {
			const struct http_head *h = http_reader_head(w->rd);
			char why[64];
			snprintf(why, sizeof(why), "HTTP %u", h->status);
			webhook_finish(w, h->status >= 200 && h->status < 300, why);
		} else {
			webhook_finish(w, false, "connection closed before an answer");
		}
		return;
	case STREAM_EV_ERROR:
		webhook_finish(w, false, reason ? reason : "connection error");
		return;
	case STREAM_EV_DRAINED:
		return;
	}
}

static void webhook_connect(struct webhook *w, struct addrinfo *res)
{
	char err[256];
	w->st = stream_connect_addrinfo(w->ob->loop, res, w->ob->cfg->outband_webhook_timeout, "webhook", 65536,
	                                on_webhook_event, w, err, sizeof(err));
	if (!w->st)
		webhook_finish(w, false, err);
}

/*
 * Unlink (and free) the addresses a host name must not lead to: loopback,
 * private, link-local and the other special-purpose blocks. A name can be
 * pointed anywhere by whoever runs its DNS; an internal target has to be
 * named in outband.webhook_allow by its IP address. *dropped: what the
 * first one dropped was, or NULL.
 */
static struct addrinfo *keep_public(struct addrinfo *res, const char **dropped)
{
	*dropped = NULL;
	struct addrinfo **pp = &res;
	while (*pp) {
		struct addrinfo *ai = *pp;
		struct netaddr a;
		const char *special = netaddr_from_sockaddr(ai->ai_addr, &a) ? netaddr_special(&a) : "non-IP";
		if (!special) {
			pp = &ai->ai_next;
			continue;
		}
		if (!*dropped)
			*dropped = special;
		*pp = ai->ai_next;
		ai->ai_next = NULL;
		freeaddrinfo(ai); /* POSIX: any sublist may be freed */
	}
	return res;
}

static void on_webhook_resolved(struct addrinfo *res, const char *error, void *ctx)
{
	struct webhook *w = ctx;
	char why[400];
	w->lookup = NULL;
	if (!res) {
		snprintf(why, sizeof(why), "looking up %s: %s", w->host, error);
		webhook_finish(w, false, why);
		return;
	}
	const char *dropped;
	res = keep_public(res, &dropped);
	if (!res) {
		snprintf(why, sizeof(why),
		         "%s has only %s addresses; a host name may lead to public addresses only "
		         "(name an internal target in outband.webhook_allow by its IP address)",
		         w->host, dropped);
		webhook_finish(w, false, why);
		return;
	}
	if (dropped)
		log_debug("out-band webhook %s: %s addresses of %s skipped", w->what, dropped, w->host);
	webhook_connect(w, res);
}

static void send_webhook(struct ob_device *d, const char *address, const char *format, const struct buf *payload)
{
	struct outband *ob = d->ob;
	struct upstream_url url;
	bool literal_ok;
	char err[320];
	/* Asked again at every send: outband.webhook_allow may have changed since the device chose the URL. */
	if (outband_policy_webhook(ob->cfg->outband_webhook_allow, address, &url, &literal_ok, err, sizeof(err)) < 0) {
		log_warn("out-band webhook for %s#P%s not sent: %s", d->user, d->device, err);
		return;
	}
	if (ob->nwebhooks >= OUTBAND_MAX_WEBHOOKS) {
		log_warn("out-band webhook for %s#P%s dropped: %d POSTs already under way", d->user, d->device,
		         OUTBAND_MAX_WEBHOOKS);
		return;
	}
	struct webhook *w = xcalloc(1, sizeof(*w));
	w->ob = ob;
	snprintf(w->host, sizeof(w->host), "%s", url.host);
	snprintf(w->what, sizeof(w->what), "%.256s#P%.64s -> %.255s", d->user, d->device, url.host);
	struct http_limits lim = {.max_header_bytes = 16384, .max_headers = 100, .max_body = WEBHOOK_MAX_RESPONSE};
	w->rd = http_reader_new(HTTP_READER_RESPONSE, &lim);
	buf_init(&w->request, 0);
	bool v6 = strchr(url.host, ':') != NULL;
	buf_printf(&w->request,
	           "POST %s HTTP/1.1\r\nHost: %s%s%s:%s\r\nUser-Agent: pimap-gateway/" PACKAGE_VERSION "\r\n"
	           "Content-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
	           url.path, v6 ? "[" : "", url.host, v6 ? "]" : "", url.port,
	           strcasecmp(format, "EXTENDED") == 0 ? "text/plain; charset=us-ascii" : "application/vnd.oma.emn+xml",
	           buf_len(payload));
	buf_append(&w->request, buf_head(payload), buf_len(payload));
	w->next = ob->webhooks;
	ob->webhooks = w;
	ob->nwebhooks++;
	if (literal_ok) {
		/* An IP address the allow list names: no lookup (numeric only: never waits), any kind of address. */
		struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
		struct addrinfo *res = NULL;
		int rc = getaddrinfo(url.host, url.port, &hints, &res);
		if (rc != 0) {
			webhook_finish(w, false, gai_strerror(rc));
			return;
		}
		webhook_connect(w, res);
		return;
	}
	if (!ob->resolver)
		ob->resolver = resolver_new(ob->loop);
	w->lookup = resolver_lookup(ob->resolver, url.host, url.port, SOCK_STREAM,
	                            ob->cfg->outband_webhook_resolve_timeout, on_webhook_resolved, w);
}

/* ---- sending and the rate limit -------------------------------------------- */

static void send_now(struct ob_device *d, const char *channel, const char *format, const char *address,
                     enum outband_event ev, const char *mailbox)
{
	struct buf payload;
	buf_init(&payload, 0);
	if (make_payload(d, format, ev, mailbox, &payload) == 0) {
		d->last_sent = clock_mono();
		if (strcasecmp(channel, "UDP") == 0)
			send_udp(d, address, &payload);
		else if (strcasecmp(channel, "WEBHOOK") == 0)
			send_webhook(d, address, format, &payload);
	}
	buf_free(&payload);
}

static void on_later(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct ob_device *d = w->data;
	(void)loop;
	(void)revents;
	if (!d->pending)
		return;
	send_now(d, d->channel, d->format, d->address, d->pending_ev, d->pending_mailbox);
	device_clear_pending(d);
}

/* Which of two waiting events is told: new mail is what a user waits for. */
static int event_rank(enum outband_event ev)
{
	return ev == OB_NEW_MESSAGE ? 3 : ev == OB_DELETED_MESSAGE ? 2 : 1;
}

void outband_device_event(struct outband *ob, const char *user, const char *device,
                          const struct pimap_prefs *prefs, enum outband_event ev, const char *mailbox)
{
	const char *channel = prefs->value[PIMAP_PREF_OUTBAND_CHANNEL];
	const char *filter = prefs->value[PIMAP_PREF_EVENT_FILTER];
	if (strcasecmp(channel, "NONE") == 0 || strcasecmp(filter, "NONE") == 0)
		return;
	if (strcasecmp(filter, "NEW") == 0 && ev != OB_NEW_MESSAGE)
		return;
	struct ob_device *d = device_get(ob, user, device);
	double now = clock_mono();
	double wait = d->last_sent ? d->last_sent + ob->cfg->outband_min_interval - now : 0;
	if (wait <= 0 && !d->pending) {
		send_now(d, channel, prefs->value[PIMAP_PREF_OUTBAND_FORMAT], prefs->value[PIMAP_PREF_OUTBAND_ADDRESS], ev,
		         mailbox);
		return;
	}
	/* Within the rate limit: one notification at the end of the interval tells of all of them. */
	if (!d->pending || event_rank(ev) > event_rank(d->pending_ev)) {
		device_clear_pending(d);
		d->pending = true;
		d->pending_ev = ev;
		d->pending_mailbox = mailbox ? xstrdup(mailbox) : NULL;
		d->channel = xstrdup(channel);
		d->format = xstrdup(prefs->value[PIMAP_PREF_OUTBAND_FORMAT]);
		d->address = xstrdup(prefs->value[PIMAP_PREF_OUTBAND_ADDRESS]);
	}
	if (!ev_is_active(&d->later)) {
		ev_timer_set(&d->later, wait > 0 ? wait : 0, 0);
		ev_timer_start(ob->loop, &d->later);
	}
}

/* ---- lifetime --------------------------------------------------------------- */

struct outband *outband_new(struct ev_loop *loop, const struct gateway_config *cfg, struct gw_state *db,
                            char *err, size_t errlen)
{
	struct outband *ob = xcalloc(1, sizeof(*ob));
	ob->loop = loop;
	ob->cfg = cfg;
	ob->db = db;
	ob->udp4 = ob->udp6 = -1;
	ob->creds = tlsio_client_creds_new(cfg->outband_webhook_ca_file, err, errlen);
	if (!ob->creds) {
		free(ob);
		return NULL;
	}
	return ob;
}

void outband_reconfigure(struct outband *ob, const struct gateway_config *cfg)
{
	if (!ob)
		return;
	if (strcmp(ob->cfg->outband_webhook_ca_file, cfg->outband_webhook_ca_file) != 0)
		log_warn("outband.webhook_ca_file changed: takes effect after a restart");
	ob->cfg = cfg;
}

void outband_free(struct outband *ob)
{
	if (!ob)
		return;
	while (ob->webhooks) {
		struct webhook *w = ob->webhooks;
		webhook_unlink(w);
		webhook_release(w);
	}
	while (ob->devices) {
		struct ob_device *d = ob->devices;
		ob->devices = d->next;
		device_free(d);
	}
	resolver_free(ob->resolver);
	if (ob->udp4 >= 0)
		close(ob->udp4);
	if (ob->udp6 >= 0)
		close(ob->udp6);
	tlsio_creds_unref(ob->creds);
	free(ob);
}
