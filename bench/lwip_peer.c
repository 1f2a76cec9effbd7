/* lwip_peer: an LWIPv6 stack on a VDE switch, the reference peer for bench/run.py.
 *
 *   lwip_peer -s SWITCH -a ADDR/PREFIX [-e PORT]               serve: answer ping (LWIPv6 does
 *                                                              that itself) and echo UDP on
 *                                                              PORT; runs until SIGTERM/SIGINT
 *                                                              or EOF on stdin
 *   lwip_peer -s SWITCH -a ADDR/PREFIX -c PEER [-p PORT] [-n N] [-z SIZE] [-w WARMUP] [-i]
 *                                                              client: N round trips to PEER,
 *                                                              UDP echo on PORT (default 7) or,
 *                                                              with -i, ICMP echo; prints one
 *                                                              line "rtt_us <float>" per round
 *                                                              trip and then "median_us <float>"
 *   lwip_peer -s SWITCH -a ADDR/PREFIX -L PORT [-x SECONDS]    TCP sink: accept one connection on
 *                                                              PORT, read it to EOF, print
 *                                                              "tcp_bytes N seconds F"
 *   lwip_peer -s SWITCH -a ADDR/PREFIX -T PEER [-p PORT] -b BYTES [-x SECONDS]
 *                                                              TCP source: connect to PEER:PORT
 *                                                              (default 5201), write BYTES,
 *                                                              close; print "tcp_bytes N seconds
 *                                                              F"; then linger (see below)
 *
 * SWITCH is a vde_switch directory (any vdeplug locator libvdeplug understands).  A line
 * "ready" is printed on stdout once the interface is up (the server also needs its socket
 * bound).  When stdin is a pipe, EOF on it also stops the server.  Lost round trips (no
 * answer within 1 s) are counted and reported as "lost N"; after 3 in a row the client gives
 * up and counts the rest as lost.
 *
 * TCP modes time the transfer from accept (sink) or connect (source) to EOF (sink) or the
 * return of lwip_close (source); the sink's figure is the one to quote, it counts bytes
 * delivered.  After lwip_close the source stays alive until EOF on stdin when stdin is a pipe
 * (3 s otherwise): LWIPv6 sends what is still queued, and the FIN, from its own thread.
 * Both arm a watchdog (-x, default 60 s): when the connection makes no progress for that
 * long (connect, accept to first byte, or between two reads or writes) the program prints
 * "tcp_error stalled after N bytes" and exits with status 3, so a stalled LWIPv6 (it has been
 * seen to wedge or crash when it has to retransmit) is reported rather than waited for.  Other
 * failures print "tcp_error <what>: <errno text>" and exit with status 1.
 *
 * Linking: Debian's liblwipv6-dev ships liblwipv6.so (the constructor calls lwip_init) and
 * liblwipv6.a (lwip_init/lwip_fini must then be called by hand, -DLWIP_STATIC).  Either way
 * libvdeplug is NOT linked in: LWIPv6 dlopen()s "libvdeplug.so" at run time when the first
 * vde interface is added (so libvdeplug-dev's unversioned symlink must be present), hence
 * -ldl -lpthread and no -lvdeplug.  See bench/Makefile.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <lwipv6.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig) { (void)sig; stop = 1; }

static void die(const char *what)
{
	fprintf(stderr, "lwip_peer: %s: %s\n", what, strerror(errno));
	exit(1);
}

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static uint16_t inet_checksum(const void *data, size_t len)
{
	const uint8_t *p = data;
	uint32_t sum = 0;
	for (; len > 1; p += 2, len -= 2)
		sum += (p[0] << 8) | p[1];
	if (len)
		sum += p[0] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return htons(~sum & 0xffff);
}

/* Wait up to timeout_ms for fd to be readable; 1 if readable. */
static int wait_readable(int fd, int timeout_ms)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	int rv = lwip_poll(&pfd, 1, timeout_ms);
	return rv > 0 && (pfd.revents & POLLIN);
}

static void usage(void)
{
	fprintf(stderr, "usage: lwip_peer -s SWITCH -a ADDR/PREFIX [-e PORT]\n"
			"       lwip_peer -s SWITCH -a ADDR/PREFIX -c PEER [-p PORT] [-n N] [-z SIZE]"
			" [-w WARMUP] [-i]\n"
			"       lwip_peer -s SWITCH -a ADDR/PREFIX -L PORT [-x SECONDS]\n"
			"       lwip_peer -s SWITCH -a ADDR/PREFIX -T PEER [-p PORT] -b BYTES"
			" [-x SECONDS]\n");
	exit(2);
}

static int serve(struct stack *stack, int port)
{
	static char buf[65536];
	struct stat st;
	int stdin_is_pipe = fstat(STDIN_FILENO, &st) == 0 && S_ISFIFO(st.st_mode);
	int fd = -1;
	if (port > 0) {
		struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
		sin.sin_addr.s_addr = htonl(INADDR_ANY);
		if ((fd = lwip_msocket(stack, AF_INET, SOCK_DGRAM, 0)) < 0)
			die("lwip_msocket");
		if (lwip_bind(fd, (struct sockaddr *)&sin, sizeof sin) < 0)
			die("lwip_bind");
	}
	printf("ready\n");
	fflush(stdout);
	while (!stop) {
		/* EOF on a stdin pipe ends us too, so a dead parent never leaves a peer behind */
		struct pollfd in = {.fd = STDIN_FILENO, .events = POLLIN};
		if (stdin_is_pipe && poll(&in, 1, 0) > 0 && (in.revents & (POLLIN | POLLHUP))) {
			char c;
			if (read(STDIN_FILENO, &c, 1) <= 0)
				break;
		}
		if (fd < 0) {
			usleep(100000);
			continue;
		}
		if (!wait_readable(fd, 100))
			continue;
		struct sockaddr_in from;
		socklen_t fromlen = sizeof from;
		ssize_t n = lwip_recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fromlen);
		if (n < 0)
			continue;
		lwip_sendto(fd, buf, n, 0, (struct sockaddr *)&from, fromlen);
	}
	if (fd >= 0)
		lwip_close(fd);
	return 0;
}

static int client(struct stack *stack, const char *peer, int port, int count, int size,
		int warmup, int icmp)
{
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(icmp ? 0 : port)};
	if (inet_pton(AF_INET, peer, &to.sin_addr) != 1) {
		fprintf(stderr, "lwip_peer: bad peer address %s\n", peer);
		return 2;
	}
	int fd = icmp ? lwip_msocket(stack, AF_INET, SOCK_RAW, IPPROTO_ICMP)
		: lwip_msocket(stack, AF_INET, SOCK_DGRAM, 0);
	if (fd < 0)
		die("lwip_msocket");
	size_t len = icmp ? 8 + size : size;
	uint8_t *out = calloc(1, len + 64), *in = malloc(65536);
	double *rtts = calloc(count > 0 ? count : 1, sizeof *rtts);
	uint16_t ident = getpid() & 0xffff;
	int got = 0, lost = 0, missed = 0;
	printf("ready\n");
	fflush(stdout);
	for (int i = 0; i < warmup + count && !stop; i++) {
		if (missed >= 3) { /* the peer is not answering: count the rest as lost */
			lost += warmup + count - (i > warmup ? i : warmup);
			break;
		}
		uint16_t seq = i & 0xffff;
		if (icmp) {
			out[0] = 8; out[1] = 0; out[2] = out[3] = 0;
			out[4] = ident >> 8; out[5] = ident & 0xff;
			out[6] = seq >> 8; out[7] = seq & 0xff;
			for (int k = 0; k < size; k++)
				out[8 + k] = k & 0xff;
			uint16_t ck = inet_checksum(out, len);
			memcpy(out + 2, &ck, 2);
		} else {
			memset(out, 'x', len);
			if (len >= 2) { out[0] = seq >> 8; out[1] = seq & 0xff; }
		}
		double t0 = now_us();
		if (lwip_sendto(fd, out, len, 0, (struct sockaddr *)&to, sizeof to) < 0)
			die("lwip_sendto");
		int answered = 0;
		double deadline = t0 + 1e6;
		while (!answered) {
			int left = (int)((deadline - now_us()) / 1000) + 1;
			if (left <= 0 || !wait_readable(fd, left))
				break;
			ssize_t n = lwip_recvfrom(fd, in, 65536, 0, NULL, NULL);
			if (n < 0)
				break;
			if (icmp) {
				/* a raw socket gets the IPv4 header too; skip it */
				uint8_t *m = in;
				if (n >= 20 && (in[0] >> 4) == 4) {
					int hl = (in[0] & 15) * 4;
					m = in + hl;
					n -= hl;
				}
				if (n >= 8 && m[0] == 0 && ((m[4] << 8) | m[5]) == ident &&
						((m[6] << 8) | m[7]) == seq)
					answered = 1;
			} else if (n == (ssize_t)len && (len < 2 || ((in[0] << 8) | in[1]) == seq)) {
				answered = 1;
			}
		}
		double rtt = now_us() - t0;
		missed = answered ? 0 : missed + 1;
		if (!answered) {
			if (i >= warmup)
				lost++;
			continue;
		}
		if (i >= warmup) {
			rtts[got++] = rtt;
			printf("rtt_us %.1f\n", rtt);
		}
	}
	if (got) {
		qsort(rtts, got, sizeof *rtts, cmp_double);
		double median = got % 2 ? rtts[got / 2] : (rtts[got / 2 - 1] + rtts[got / 2]) / 2;
		printf("median_us %.1f\n", median);
	}
	printf("lost %d\n", lost);
	fflush(stdout);
	lwip_close(fd);
	return got ? 0 : 1;
}

/* ------------------------------------------------------------------------------------ TCP */

/* Bytes moved so far, for the watchdog's message (read from a signal handler). */
static volatile long long tcp_progress;
/* The watchdog's period: a transfer that makes no progress for this long is given up. */
static int watchdog_seconds = 60;

static void on_watchdog(int sig)
{
	(void)sig;
	/* async-signal-safe: format by hand, write(2), _exit(2) */
	char msg[80] = "tcp_error stalled after ";
	char digits[24];
	int n = 0, len = strlen(msg);
	long long v = tcp_progress;
	do {
		digits[n++] = '0' + v % 10;
		v /= 10;
	} while (v && n < (int)sizeof digits);
	while (n)
		msg[len++] = digits[--n];
	memcpy(msg + len, " bytes\n", 7);
	len += 7;
	ssize_t ignored = write(STDOUT_FILENO, msg, len);
	(void)ignored;
	_exit(3);
}

static void arm_watchdog(int seconds)
{
	struct sigaction sa = {.sa_handler = on_watchdog};
	sigaction(SIGALRM, &sa, NULL);
	watchdog_seconds = seconds > 0 ? seconds : 60;
	alarm(watchdog_seconds);
}

/* Progress: restart the watchdog's period (one alarm(2) per 64 KiB read or written). */
static void feed_watchdog(long long total)
{
	tcp_progress = total;
	alarm(watchdog_seconds);
}

static int tcp_fail(const char *what)
{
	printf("tcp_error %s: %s\n", what, strerror(errno));
	fflush(stdout);
	return 1;
}

static void tcp_report(long long bytes, double t0)
{
	double seconds = (now_us() - t0) / 1e6;
	printf("tcp_bytes %lld seconds %.6f\n", bytes, seconds);
	fflush(stdout);
}

/* Accept one connection on port, read to EOF. */
static int tcp_sink(struct stack *stack, int port, int watchdog)
{
	static char buf[65536];
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
	sin.sin_addr.s_addr = htonl(INADDR_ANY);
	int one = 1;
	int lfd = lwip_msocket(stack, AF_INET, SOCK_STREAM, 0);
	if (lfd < 0)
		return tcp_fail("lwip_msocket");
	lwip_setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (lwip_bind(lfd, (struct sockaddr *)&sin, sizeof sin) < 0)
		return tcp_fail("lwip_bind");
	if (lwip_listen(lfd, 1) < 0)
		return tcp_fail("lwip_listen");
	printf("ready\n");
	fflush(stdout);
	int fd;
	for (;;) { /* wait for the client without a watchdog; stop on a signal */
		if (stop)
			return 1;
		if (wait_readable(lfd, 100))
			break;
	}
	arm_watchdog(watchdog);
	if ((fd = lwip_accept(lfd, NULL, NULL)) < 0)
		return tcp_fail("lwip_accept");
	double t0 = now_us();
	long long total = 0;
	for (;;) {
		ssize_t n = lwip_read(fd, buf, sizeof buf);
		if (n == 0)
			break;
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return tcp_fail("lwip_read");
		}
		total += n;
		feed_watchdog(total);
	}
	tcp_report(total, t0);
	alarm(0);
	lwip_close(fd);
	lwip_close(lfd);
	return 0;
}

/* Sleep until EOF on stdin if it is a pipe, else for ms milliseconds. */
static void linger_until_released(int ms)
{
	struct stat st;
	if (fstat(STDIN_FILENO, &st) == 0 && S_ISFIFO(st.st_mode)) {
		char c;
		while (!stop && read(STDIN_FILENO, &c, 1) > 0)
			;
	} else {
		usleep(ms * 1000);
	}
}

/* Connect to peer:port, write bytes (a repeating pattern), close. */
static int tcp_source(struct stack *stack, const char *peer, int port, long long bytes,
		int watchdog)
{
	static char buf[65536];
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port)};
	if (inet_pton(AF_INET, peer, &to.sin_addr) != 1) {
		fprintf(stderr, "lwip_peer: bad peer address %s\n", peer);
		return 2;
	}
	for (size_t i = 0; i < sizeof buf; i++)
		buf[i] = i & 0xff;
	int fd = lwip_msocket(stack, AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return tcp_fail("lwip_msocket");
	printf("ready\n");
	fflush(stdout);
	arm_watchdog(watchdog);
	double t0 = now_us();
	if (lwip_connect(fd, (struct sockaddr *)&to, sizeof to) < 0)
		return tcp_fail("lwip_connect");
	long long total = 0;
	while (total < bytes) {
		long long left = bytes - total;
		ssize_t n = lwip_write(fd, buf, left < (long long)sizeof buf ? (int)left : (int)sizeof buf);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return tcp_fail("lwip_write");
		}
		total += n;
		feed_watchdog(total);
	}
	/* LWIPv6's lwip_shutdown(SHUT_WR) sends no FIN (the sink never sees EOF), so close; but
	 * lwip_close() returns with data still queued, and LWIPv6 sends it and the FIN from its
	 * own thread: an exit now would lose them.  Stay alive until stdin, when it is a pipe,
	 * reaches EOF (the harness closes it once the sink is done), or for 3 s otherwise. */
	if (lwip_close(fd) < 0)
		return tcp_fail("lwip_close");
	tcp_report(total, t0);
	alarm(0);
	linger_until_released(3000);
	return 0;
}

int main(int argc, char *argv[])
{
	const char *sw = NULL, *addr = NULL, *peer = NULL, *tcp_peer = NULL;
	int port = -1, serve_port = 0, count = 100, size = 56, warmup = 5, icmp = 0, opt;
	int sink_port = 0, watchdog = 60;
	long long tcp_bytes = -1;
	while ((opt = getopt(argc, argv, "s:a:e:c:p:n:z:w:iL:T:b:x:")) != -1) {
		switch (opt) {
		case 's': sw = optarg; break;
		case 'a': addr = optarg; break;
		case 'e': serve_port = atoi(optarg); break;
		case 'c': peer = optarg; break;
		case 'p': port = atoi(optarg); break;
		case 'n': count = atoi(optarg); break;
		case 'z': size = atoi(optarg); break;
		case 'w': warmup = atoi(optarg); break;
		case 'i': icmp = 1; break;
		case 'L': sink_port = atoi(optarg); break;
		case 'T': tcp_peer = optarg; break;
		case 'b': tcp_bytes = atoll(optarg); break;
		case 'x': watchdog = atoi(optarg); break;
		default: usage();
		}
	}
	if (!sw || !addr || optind != argc || (!!peer + !!tcp_peer + !!sink_port > 1) ||
			(tcp_peer && tcp_bytes < 0))
		usage();
	char ipbuf[64];
	snprintf(ipbuf, sizeof ipbuf, "%s", addr);
	char *slash = strchr(ipbuf, '/');
	int prefix = 24;
	if (slash) {
		*slash = 0;
		prefix = atoi(slash + 1);
	}
	unsigned a, b, c, d;
	if (sscanf(ipbuf, "%u.%u.%u.%u", &a, &b, &c, &d) != 4 || prefix < 0 || prefix > 32) {
		fprintf(stderr, "lwip_peer: bad address %s (want A.B.C.D/PREFIX)\n", addr);
		return 2;
	}
	uint32_t m = prefix ? 0xffffffffu << (32 - prefix) : 0;
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

#ifdef LWIP_STATIC
	lwip_init();
#endif
	struct stack *stack = lwip_stack_new();
	if (!stack)
		die("lwip_stack_new");
	struct netif *nif = lwip_vdeif_add(stack, (void *)sw);
	if (!nif)
		die("lwip_vdeif_add (is there a switch there? is libvdeplug.so installed?)");
	struct ip_addr ip, mask;
	IP64_ADDR(&ip, a, b, c, d);
	IP64_MASKADDR(&mask, m >> 24, (m >> 16) & 255, (m >> 8) & 255, m & 255);
	if (lwip_add_addr(nif, &ip, &mask) < 0)
		die("lwip_add_addr");
	if (lwip_ifup(nif) < 0)
		die("lwip_ifup");

	int rv;
	if (sink_port)
		rv = tcp_sink(stack, sink_port, watchdog);
	else if (tcp_peer)
		rv = tcp_source(stack, tcp_peer, port < 0 ? 5201 : port, tcp_bytes, watchdog);
	else if (peer)
		rv = client(stack, peer, port < 0 ? 7 : port, count, size, warmup, icmp);
	else
		rv = serve(stack, serve_port);
	lwip_stack_free(stack);
#ifdef LWIP_STATIC
	lwip_fini();
#endif
	return rv;
}
