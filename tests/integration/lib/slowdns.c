/*
 * slowdns.c - an LD_PRELOAD stand-in for a DNS server that does not answer,
 * for t_outband_policy.sh. getaddrinfo() of the host named by SLOWDNS_HOST
 * creates SLOWDNS_DIR/entered, then waits until SLOWDNS_DIR/release exists
 * (at most SLOWDNS_MAX_WAIT seconds), creates SLOWDNS_DIR/left and fails
 * with EAI_AGAIN, as a resolver whose server never answers does. Every
 * other name goes to the real getaddrinfo. The test builds it with the
 * system compiler: cc -shared -fPIC -o slowdns.so slowdns.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define SLOWDNS_MAX_WAIT 60 /* seconds: a test that never releases still ends */

typedef int (*gai_fn)(const char *, const char *, const struct addrinfo *, struct addrinfo **);

static void touch(const char *dir, const char *name)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd >= 0)
		close(fd);
}

static int exists(const char *dir, const char *name)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return access(path, F_OK) == 0;
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
	const char *slow = getenv("SLOWDNS_HOST"), *dir = getenv("SLOWDNS_DIR");
	if (node && slow && dir && strcasecmp(node, slow) == 0) {
		touch(dir, "entered");
		const struct timespec step = {0, 10 * 1000 * 1000};
		for (int i = 0; i < SLOWDNS_MAX_WAIT * 100 && !exists(dir, "release"); i++)
			nanosleep(&step, NULL);
		touch(dir, "left");
		return EAI_AGAIN;
	}
	gai_fn real = (gai_fn)dlsym(RTLD_NEXT, "getaddrinfo");
	return real ? real(node, service, hints, res) : EAI_SYSTEM;
}
