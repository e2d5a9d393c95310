/*
 * clock.h - the two clocks the daemons read, as seconds in a double.
 *
 * clock_mono: for intervals and timeouts that must not follow wall-clock
 * steps. clock_wall: for what is compared with other machines or stored
 * (epoch seconds).
 */
#ifndef PIMAP_CLOCK_H
#define PIMAP_CLOCK_H

#include <time.h>

static inline double clock_mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline double clock_wall(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#endif
