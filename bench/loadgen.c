// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * loadgen: a bounded, reproducible load for bench/tools_bench.py.
 *
 *   loadgen tcp PORT N       N loopback connects to a listener on 127.0.0.1:PORT that
 *                            this process owns: connect, accept, the server closes first,
 *                            then the client (the same state transitions every time)
 *   loadgen udp PORT N       N datagrams to 127.0.0.1:PORT, where nothing listens
 *                            (each one is dropped with reason NO_SOCKET)
 *   loadgen getppid N        N getppid() system calls
 *   loadgen wait MODE ...    as above, but first read one line from stdin, so that the
 *                            caller can start a tracer after this process exists
 *
 * Prints "done N SECONDS" on stdout when finished: N operations made and how
 * long they took (CLOCK_MONOTONIC), which is the workload's own time.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
	exit(1);
}

static struct sockaddr_in loopback(int port)
{
	struct sockaddr_in a;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons(port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

static long tcp(int port, long n)
{
	struct sockaddr_in a = loopback(port);
	int one = 1, ls;
	long i;

	ls = socket(AF_INET, SOCK_STREAM, 0);
	if (ls < 0)
		die("socket");
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(ls, (struct sockaddr *)&a, sizeof(a)) || listen(ls, 128))
		die("bind/listen");
	for (i = 0; i < n; i++) {
		int c = socket(AF_INET, SOCK_STREAM, 0), s;

		if (c < 0)
			die("socket");
		if (connect(c, (struct sockaddr *)&a, sizeof(a)))
			die("connect");
		s = accept(ls, NULL, NULL);
		if (s < 0)
			die("accept");
		/* The server closes first: its side ends in TIME_WAIT, so the
		 * client's ephemeral ports are free again at once. */
		close(s);
		close(c);
	}
	close(ls);
	return n;
}

static long udp(int port, long n)
{
	struct sockaddr_in a = loopback(port);
	char byte = 0;
	long i;
	int s = socket(AF_INET, SOCK_DGRAM, 0);

	if (s < 0)
		die("socket");
	for (i = 0; i < n; i++)
		if (sendto(s, &byte, 1, 0, (struct sockaddr *)&a, sizeof(a)) < 0 &&
		    errno != ECONNREFUSED)
			die("sendto");
	close(s);
	return n;
}

static long storm(long n)
{
	long i;

	for (i = 0; i < n; i++)
		syscall(SYS_getppid);
	return n;
}

int main(int argc, char **argv)
{
	double t0;
	long done;

	if (argc > 1 && !strcmp(argv[1], "wait")) {
		char line[64];

		if (!fgets(line, sizeof(line), stdin))
			return 1;
		argv++;
		argc--;
	}
	if (argc < 3) {
		fprintf(stderr, "usage: loadgen [wait] tcp|udp PORT N | getppid N\n");
		return 2;
	}
	t0 = now();
	if (!strcmp(argv[1], "getppid"))
		done = storm(atol(argv[2]));
	else if (argc >= 4 && !strcmp(argv[1], "tcp"))
		done = tcp(atoi(argv[2]), atol(argv[3]));
	else if (argc >= 4 && !strcmp(argv[1], "udp"))
		done = udp(atoi(argv[2]), atol(argv[3]));
	else
		return 2;
	printf("done %ld %.6f\n", done, now() - t0);
	return 0;
}
