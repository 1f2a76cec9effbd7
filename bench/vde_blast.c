/* vde_blast: measure a VDE switch's frame forwarding rate, for bench/run.py.
 *
 *   vde_blast SWITCH SIZE SECONDS [WINDOW]
 *        two endpoints on SWITCH (libvdeplug, vde_open): a sender thread blasts SIZE-byte
 *        unicast frames at the receiver's MAC for SECONDS; the receiver (main thread) counts
 *        them until the switch has been quiet for 150 ms.
 *   vde_blast -loop SIZE SECONDS [WINDOW]
 *        the same two threads over a bare socketpair: the ceiling of the harness itself, how
 *        fast sender and receiver are without a switch in between.
 *
 * Prints one line:
 *   sent N received N elapsed_s F rate_fps F send_cpu_s F recv_cpu_s F stalls N
 * where rate_fps = received / (time of the last received frame - time of the first send).
 *
 * WINDOW 0 (default) is open loop: the sender sends as fast as the switch reads.  It uses
 * sendmmsg() on libvdeplug's data socket (vde_datafd(): vdeplug4 connects it to the switch's
 * port socket), blocking: a unix datagram stays charged to the sender's send buffer until the
 * switch reads it, so the sender is held to the switch's input rate, and frames are lost only
 * where the switch drops them towards a receiver that is momentarily not scheduled
 * (vde_switch drops on EAGAIN, with the default 208 KiB socket buffer: a few hundred small or
 * ~90 full-size frames).
 *
 * WINDOW N > 0 is closed loop: at most N frames in flight (sent, not yet received).  The
 * switch always has frames waiting, but its output queue never overflows because the
 * receiver is late, so the rate measures the switch's forwarding capacity, not the
 * scheduler.  If nothing arrives for 20 ms with the window full, the frames in flight are
 * written off as lost (a "stall") and sending resumes.
 *
 *   vde_blast -rtt SWITCH SIZE COUNT
 *        latency of the switch alone: one endpoint sends a frame, a thread on the other
 *        endpoint sends it straight back, COUNT times (after 100 warm-up round trips); prints
 *        "rtt_us F" for each and "median_us F" (two switch traversals per round trip).
 *
 * The receiver uses recvmmsg() in batches of 64: sender and receiver cost one system call per
 * batch, while a switch needs at least one receive and one send per frame.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <libvdeplug.h>

#define BATCH 64
#define MAXFRAME 1600
#define ETHERTYPE 0x88b5 /* IEEE local experimental */

static const uint8_t tx_mac[6] = {0x02, 0xbe, 0x00, 0x00, 0x00, 0x01};
static const uint8_t rx_mac[6] = {0x02, 0xbe, 0x00, 0x00, 0x00, 0x02};

struct sender {
	int fd;
	int size;
	int window;
	double seconds;
	double start;
	volatile uint64_t sent;
	volatile int done;
	double cpu;
	uint64_t stalls;
	/* flow control: the receiver publishes its count and wakes a waiting sender */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint64_t received;
	int waiting;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double thread_cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void build_frame(uint8_t *f, int size, const uint8_t *dst, const uint8_t *src)
{
	memset(f, 0x5a, size);
	memcpy(f, dst, 6);
	memcpy(f + 6, src, 6);
	f[12] = ETHERTYPE >> 8;
	f[13] = ETHERTYPE & 0xff;
}

static void *send_main(void *arg)
{
	struct sender *s = arg;
	static uint8_t frame[MAXFRAME];
	struct iovec iov[BATCH];
	struct mmsghdr msgs[BATCH];
	build_frame(frame, s->size, rx_mac, tx_mac);
	memset(msgs, 0, sizeof msgs);
	for (int i = 0; i < BATCH; i++) {
		iov[i].iov_base = frame;
		iov[i].iov_len = s->size;
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	double cpu0 = thread_cpu_s();
	s->start = now_s();
	double end = s->start + s->seconds;
	uint64_t sent = 0, written_off = 0;
	while (now_s() < end) {
		int room = BATCH;
		if (s->window > 0) {
			pthread_mutex_lock(&s->lock);
			uint64_t received = s->received;
			while ((int64_t)(sent - written_off) - (int64_t)received >= s->window) {
				struct timespec until;
				clock_gettime(CLOCK_REALTIME, &until);
				until.tv_nsec += 20 * 1000000;
				if (until.tv_nsec >= 1000000000) {
					until.tv_sec++;
					until.tv_nsec -= 1000000000;
				}
				s->waiting = 1;
				int rv = pthread_cond_timedwait(&s->cond, &s->lock, &until);
				s->waiting = 0;
				if (rv == ETIMEDOUT && s->received == received) {
					/* no progress for 20 ms: what is in flight was dropped */
					written_off = sent - received;
					s->stalls++;
				}
				received = s->received;
			}
			pthread_mutex_unlock(&s->lock);
			int64_t free_slots = (int64_t)s->window - ((int64_t)(sent - written_off) - (int64_t)received);
			room = free_slots < BATCH ? (int)free_slots : BATCH;
			if (room < 1)
				room = 1;
		}
		int n = sendmmsg(s->fd, msgs, room, 0);
		if (n < 0) {
			if (errno == EAGAIN || errno == ENOBUFS) {
				struct pollfd p = {.fd = s->fd, .events = POLLOUT};
				poll(&p, 1, 10);
				continue;
			}
			if (errno == EINTR)
				continue;
			perror("vde_blast: sendmmsg");
			break;
		}
		sent += n;
	}
	s->sent = sent;
	s->cpu = thread_cpu_s() - cpu0;
	__atomic_store_n(&s->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

static void *echo_main(void *arg)
{
	VDECONN *conn = arg;
	static uint8_t buf[MAXFRAME];
	for (;;) {
		ssize_t n = vde_recv(conn, buf, sizeof buf, 0);
		if (n <= 0)
			break;
		if (n < 14 || memcmp(buf + 6, tx_mac, 6) != 0)
			continue;
		if (buf[12] == 0xde && buf[13] == 0xad)
			break; /* stop frame */
		memcpy(buf, tx_mac, 6);
		memcpy(buf + 6, rx_mac, 6);
		vde_send(conn, buf, n, 0);
	}
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static int rtt_mode(const char *sw, int size, int count)
{
	VDECONN *a = vde_open((char *)sw, "vde_blast rtt a", NULL);
	VDECONN *b = vde_open((char *)sw, "vde_blast rtt b", NULL);
	if (!a || !b) {
		fprintf(stderr, "vde_blast: vde_open %s: %s\n", sw, strerror(errno));
		return 1;
	}
	static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	static uint8_t frame[MAXFRAME], in[MAXFRAME];
	build_frame(frame, 64, bcast, rx_mac);
	vde_send(b, frame, 64, 0);
	build_frame(frame, 64, bcast, tx_mac);
	vde_send(a, frame, 64, 0);
	usleep(50000);
	while (recv(vde_datafd(a), in, sizeof in, MSG_DONTWAIT) > 0)
		;
	while (recv(vde_datafd(b), in, sizeof in, MSG_DONTWAIT) > 0)
		;
	pthread_t thread;
	pthread_create(&thread, NULL, echo_main, b);
	build_frame(frame, size, rx_mac, tx_mac);
	double *rtts = calloc(count, sizeof *rtts);
	int got = 0, lost = 0;
	for (int i = 0; i < 100 + count; i++) {
		memcpy(frame + 14, &i, sizeof i);
		double t0 = now_s();
		vde_send(a, frame, size, 0);
		int answered = 0;
		while (!answered) {
			struct pollfd p = {.fd = vde_datafd(a), .events = POLLIN};
			if (poll(&p, 1, 1000) <= 0)
				break;
			ssize_t n = recv(vde_datafd(a), in, sizeof in, 0);
			int seq;
			memcpy(&seq, in + 14, sizeof seq);
			answered = n == size && memcmp(in + 6, rx_mac, 6) == 0 && seq == i;
		}
		double rtt = (now_s() - t0) * 1e6;
		if (i < 100)
			continue;
		if (answered) {
			rtts[got++] = rtt;
			printf("rtt_us %.1f\n", rtt);
		} else {
			lost++;
		}
	}
	frame[12] = 0xde;
	frame[13] = 0xad;
	vde_send(a, frame, size, 0);
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 1;
	if (pthread_timedjoin_np(thread, NULL, &until) != 0) { /* the stop frame was lost */
		pthread_cancel(thread);
		pthread_join(thread, NULL);
	}
	if (got) {
		qsort(rtts, got, sizeof *rtts, cmp_double);
		printf("median_us %.1f\n", got % 2 ? rtts[got / 2] : (rtts[got / 2 - 1] + rtts[got / 2]) / 2);
	}
	printf("lost %d\n", lost);
	vde_close(a);
	vde_close(b);
	return got ? 0 : 1;
}

int main(int argc, char *argv[])
{
	if (argc == 5 && strcmp(argv[1], "-rtt") == 0)
		return rtt_mode(argv[2], atoi(argv[3]), atoi(argv[4]));
	if (argc != 4 && argc != 5) {
		fprintf(stderr, "usage: vde_blast SWITCH|-loop SIZE SECONDS [WINDOW]\n"
				"       vde_blast -rtt SWITCH SIZE COUNT\n");
		return 2;
	}
	int size = atoi(argv[2]);
	double seconds = atof(argv[3]);
	int window = argc == 5 ? atoi(argv[4]) : 0;
	if (size < 14 || size > MAXFRAME || seconds <= 0) {
		fprintf(stderr, "vde_blast: SIZE must be 14..%d, SECONDS > 0\n", MAXFRAME);
		return 2;
	}
	int txfd, rxfd;
	VDECONN *tx = NULL, *rx = NULL;
	if (strcmp(argv[1], "-loop") == 0) {
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) < 0) {
			perror("vde_blast: socketpair");
			return 1;
		}
		txfd = sv[0];
		rxfd = sv[1];
	} else {
		rx = vde_open(argv[1], "vde_blast rx", NULL);
		tx = vde_open(argv[1], "vde_blast tx", NULL);
		if (!rx || !tx) {
			fprintf(stderr, "vde_blast: vde_open %s: %s\n", argv[1], strerror(errno));
			return 1;
		}
		txfd = vde_datafd(tx);
		rxfd = vde_datafd(rx);
		/* let the switch learn both MACs: one broadcast frame from each */
		static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
		uint8_t hello[64];
		build_frame(hello, 64, bcast, rx_mac);
		vde_send(rx, hello, 64, 0);
		build_frame(hello, 64, bcast, tx_mac);
		vde_send(tx, hello, 64, 0);
		usleep(100000);
	}
	int big = 4 * 1024 * 1024;
	setsockopt(txfd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
	setsockopt(rxfd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
	/* drain the hello frames */
	{
		static uint8_t junk[MAXFRAME];
		while (recv(rxfd, junk, sizeof junk, MSG_DONTWAIT) > 0)
			;
	}

	static uint8_t bufs[BATCH][MAXFRAME];
	struct iovec iov[BATCH];
	struct mmsghdr msgs[BATCH];
	memset(msgs, 0, sizeof msgs);
	for (int i = 0; i < BATCH; i++) {
		iov[i].iov_base = bufs[i];
		iov[i].iov_len = MAXFRAME;
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
	}

	struct sender s = {.fd = txfd, .size = size, .seconds = seconds, .window = window};
	pthread_mutex_init(&s.lock, NULL);
	pthread_cond_init(&s.cond, NULL);
	pthread_t thread;
	double cpu0 = thread_cpu_s();
	if (pthread_create(&thread, NULL, send_main, &s) != 0) {
		perror("vde_blast: pthread_create");
		return 1;
	}
	uint64_t received = 0;
	double last = 0;
	for (;;) {
		struct pollfd p = {.fd = rxfd, .events = POLLIN};
		int ready = poll(&p, 1, 150);
		if (ready == 0) {
			if (__atomic_load_n(&s.done, __ATOMIC_SEQ_CST))
				break; /* sender finished and the switch has been quiet for 150 ms */
			continue;
		}
		if (ready < 0) {
			if (errno == EINTR)
				continue;
			perror("vde_blast: poll");
			break;
		}
		int n = recvmmsg(rxfd, msgs, BATCH, MSG_DONTWAIT, NULL);
		if (n <= 0)
			continue;
		for (int i = 0; i < n; i++) {
			const uint8_t *f = bufs[i];
			if (msgs[i].msg_len >= 14 && f[12] == (ETHERTYPE >> 8) &&
					f[13] == (ETHERTYPE & 0xff) && memcmp(f + 6, tx_mac, 6) == 0)
				received++;
		}
		last = now_s();
		if (s.window > 0) {
			pthread_mutex_lock(&s.lock);
			s.received = received;
			if (s.waiting)
				pthread_cond_signal(&s.cond);
			pthread_mutex_unlock(&s.lock);
		}
	}
	double recv_cpu = thread_cpu_s() - cpu0;
	pthread_join(thread, NULL);
	double elapsed = received ? last - s.start : seconds;
	printf("sent %llu received %llu elapsed_s %.4f rate_fps %.0f send_cpu_s %.3f recv_cpu_s %.3f"
	       " stalls %llu\n",
	       (unsigned long long)s.sent, (unsigned long long)received, elapsed,
	       received / elapsed, s.cpu, recv_cpu, (unsigned long long)s.stalls);
	if (tx)
		vde_close(tx);
	if (rx)
		vde_close(rx);
	return 0;
}
