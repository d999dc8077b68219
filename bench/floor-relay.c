/*
 * floor-relay.c -- the least a UDP SIP proxy can do for the proxied-call scenario
 * (INVITE/100/180/200/ACK/BYE/200 from the driver's UAC on 127.0.0.1:5090 to its UAS on
 * 127.0.0.1:5080 through 127.0.0.1:5060): the floor of SCENARIO=proxy, what the kernel's
 * syscalls and wake-ups alone cost per call, as floor404.c is for the 404 scenario.
 *
 * It sends and receives the same datagrams a stateful record-routing proxy does, and does
 * nothing else: no parsing beyond finding lines, no state, no timers, no retransmissions.
 *   request  -> INVITE: "100 Trying" to the source (Via/From/To/Call-ID/CSeq copied);
 *               then the request with our Via line (and, for INVITE, a Record-Route line)
 *               inserted after the request line, sent to the UAS 127.0.0.1:5080.
 *   response -> a 100 is absorbed (a stateful proxy does not forward it); any other has
 *               its first Via value removed (the line, or the first of a comma list) and
 *               goes to the host:port of the next one.
 * One thread, blocking recvfrom/sendto, SO_RCVBUF as floor404.
 *
 *   gcc -O2 -Wall -o floor-relay floor-relay.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define RXBUF 8192
#define TXBUF 9000
#define RCVBUF 262144

static int lc(int c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

/* whether header line l[0..n) is a Via (full or compact name) */
static int is_via(const char *l, size_t n)
{
	if (n >= 4 && lc((unsigned char)l[0]) == 'v' && lc((unsigned char)l[1]) == 'i' &&
	    lc((unsigned char)l[2]) == 'a' && (l[3] == ':' || l[3] == ' '))
		return 1;
	return n >= 2 && lc((unsigned char)l[0]) == 'v' && (l[1] == ':' || l[1] == ' ');
}

/* whether line l[0..n) starts with header name `name` (lower case) then ':' */
static int is_hdr(const char *l, size_t n, const char *name)
{
	size_t k = strlen(name), i;
	if (n <= k)
		return 0;
	for (i = 0; i < k; i++)
		if (lc((unsigned char)l[i]) != name[i])
			return 0;
	return l[k] == ':' || l[k] == ' ';
}

/* host:port of a Via line "Via: SIP/2.0/UDP host:port;..." into sa; 0 on failure */
static int via_addr(const char *l, size_t n, struct sockaddr_in *sa)
{
	const char *p = memchr(l, '/', n), *e = l + n;
	char host[64];
	size_t h = 0;
	int port = 5060;
	if (!p || !(p = memchr(p + 1, '/', e - p - 1)))
		return 0;
	while (p < e && *p != ' ')
		p++;
	while (p < e && *p == ' ')
		p++;
	while (p < e && *p != ':' && *p != ';' && *p != ' ' && *p != '\r' && h < sizeof(host) - 1)
		host[h++] = *p++;
	host[h] = 0;
	if (p < e && *p == ':')
		port = atoi(p + 1);
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons(port);
	return inet_pton(AF_INET, host, &sa->sin_addr) == 1;
}

#define PUT(s, n) do { if (o + (n) > oe) return 0; memcpy(o, (s), (n)); o += (n); } while (0)
#define PUTS(lit) PUT(lit, sizeof(lit) - 1)

/* 100 Trying for the INVITE p[0..n) */
static size_t build_100(const char *p, size_t n, char *out, size_t cap)
{
	const char *end = p + n, *l, *nl;
	char *o = out, *oe = out + cap;
	PUTS("SIP/2.0 100 Trying\r\n");
	l = memchr(p, '\n', n);
	if (!l)
		return 0;
	for (l++; l < end; l = nl + 1) {
		size_t len;
		nl = memchr(l, '\n', end - l);
		if (!nl)
			return 0;
		len = nl + 1 - l;
		if (len <= 2)
			break;
		if (is_via(l, len) || is_hdr(l, len, "from") || is_hdr(l, len, "to") ||
		    is_hdr(l, len, "call-id") || is_hdr(l, len, "cseq") || is_hdr(l, len, "f") ||
		    is_hdr(l, len, "t") || is_hdr(l, len, "i"))
			PUT(l, len);
	}
	PUTS("Content-Length: 0\r\n\r\n");
	return o - out;
}

int main(void)
{
	int s = socket(AF_INET, SOCK_DGRAM, 0), rcv = RCVBUF;
	struct sockaddr_in me = { 0 }, uas = { 0 };
	static char rx[RXBUF], tx[TXBUF];
	unsigned long seq = 0;
	if (s < 0) {
		perror("socket");
		return 1;
	}
	setsockopt(s, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
	me.sin_family = AF_INET;
	me.sin_port = htons(5060);
	inet_pton(AF_INET, "127.0.0.1", &me.sin_addr);
	uas.sin_family = AF_INET;
	uas.sin_port = htons(5080);
	inet_pton(AF_INET, "127.0.0.1", &uas.sin_addr);
	if (bind(s, (struct sockaddr *)&me, sizeof(me)) < 0) {
		perror("bind 127.0.0.1:5060");
		return 1;
	}
	for (;;) {
		struct sockaddr_in from;
		socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(s, rx, sizeof(rx), 0, (struct sockaddr *)&from, &fl);
		const char *nl;
		size_t first;
		if (n <= 12)
			continue;
		nl = memchr(rx, '\n', n);
		if (!nl)
			continue;
		first = nl + 1 - rx;
		if (memcmp(rx, "SIP/2.0 ", 8) == 0) {
			/* response: absorb 100, else pop our Via and send to the next one */
			const char *l = rx + first, *end = rx + n, *lnl, *via1 = NULL;
			size_t via1len = 0;
			struct sockaddr_in to;
			int found = 0;
			if (memcmp(rx + 8, "100", 3) == 0)
				continue;
			for (; l < end; l = lnl + 1) {
				size_t len;
				lnl = memchr(l, '\n', end - l);
				if (!lnl)
					break;
				len = lnl + 1 - l;
				if (len <= 2)
					break;
				if (is_via(l, len)) {
					if (!via1) {
						via1 = l;
						via1len = len;
					} else {
						found = via_addr(l, len, &to);
						break;
					}
				}
			}
			if (via1 && !found) {
				/* "Via: ours, theirs" on one line (SIPp's [last_Via:] joins them):
				 * drop the first value, keep the line */
				const char *c = memchr(via1, ',', via1len), *v, *hv;
				if (!c)
					continue;
				for (v = c + 1; v < via1 + via1len && (*v == ' ' || *v == '\t'); v++)
					;
				if (!via_addr(v, via1 + via1len - v, &to))
					continue;
				hv = memchr(via1, ':', via1len);
				if (!hv || (size_t)n > sizeof(tx))
					continue;
				hv++;
				while (*hv == ' ')
					hv++;
				{
					size_t a = hv - rx, b = n - (v - rx);
					memcpy(tx, rx, a);
					memcpy(tx + a, v, b);
					sendto(s, tx, a + b, 0, (struct sockaddr *)&to, sizeof(to));
				}
				continue;
			}
			if (!via1 || !found)
				continue;
			{
				size_t a = via1 - rx, b = n - a - via1len;
				if ((size_t)n > sizeof(tx))
					continue;
				memcpy(tx, rx, a);
				memcpy(tx + a, via1 + via1len, b);
				sendto(s, tx, a + b, 0, (struct sockaddr *)&to, sizeof(to));
			}
		} else {
			/* request: 100 Trying for INVITE, then forward with our Via (+ RR) */
			int invite = memcmp(rx, "INVITE ", 7) == 0;
			char via[96];
			int vl;
			size_t o;
			if (invite) {
				size_t m = build_100(rx, n, tx, sizeof(tx));
				if (m)
					sendto(s, tx, m, 0, (struct sockaddr *)&from, fl);
			}
			vl = snprintf(via, sizeof(via),
				      "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKfl%lx\r\n", ++seq);
			if (first + vl + 40 + (size_t)n > sizeof(tx))
				continue;
			memcpy(tx, rx, first);
			o = first;
			memcpy(tx + o, via, vl);
			o += vl;
			if (invite) {
				static const char rr[] = "Record-Route: <sip:127.0.0.1:5060;lr>\r\n";
				memcpy(tx + o, rr, sizeof(rr) - 1);
				o += sizeof(rr) - 1;
			}
			memcpy(tx + o, rx + first, n - first);
			o += n - first;
			sendto(s, tx, o, 0, (struct sockaddr *)&uas, sizeof(uas));
		}
	}
}
