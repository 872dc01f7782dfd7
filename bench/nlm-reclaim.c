// The reclaiming half of the failover-at-scale benchmark's client hosts (src/demo/scale-hosts.ts
// starts one per client namespace): the node process there plays each host's statd and tells this
// program, per SM_NOTIFY, to reclaim that host's locks. Each host then does what a kernel client's
// lockd does (nlmclnt_reclaim per lock, one after the other): a fresh TCP connection from the
// host's own address, and its locks one at a time, each with the reclaim flag and the new state.
// All hosts run at once, one epoll loop for them all. The calls come encoded by the node process
// (the project's own codec, once, before the move); only the xid and the state are patched here,
// so that this side costs the machine about two syscalls per reclaim and no allocation: the
// benchmark's window then measures the server, not a client in JavaScript.
//
//   nlm-reclaim CALLS-FILE SERVER-ADDRESS
//
// CALLS-FILE, big-endian u32s: the host count; per host its address's length and bytes (padded to
// 4), its call count, and per call its length and bytes (a whole TCP record, mark included; the
// state is its last 4 bytes, the xid the 4 after the mark).
// stdin, one line per notice: "HOST PORT STATE" (host index, the server's NLM port, the NSM state).
// stdout, one line per host done: "done HOST GRANTED REFUSED AT_MS" (AT_MS: wall-clock ms), or
// "error HOST WHAT".
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct host {
  struct sockaddr_in addr;
  unsigned char **calls;
  uint32_t *lens;
  uint32_t ncalls, next;
  int fd;
  uint32_t state, xid;
  unsigned long granted, refused;
  unsigned char in[512];
  size_t inlen;
};

static struct host *hosts;
static uint32_t nhosts;
static const char *server;
static int ep;

static uint32_t get32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return ntohl(v); }
static void put32(unsigned char *p, uint32_t v) { v = htonl(v); memcpy(p, &v, 4); }

static double wall_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void fail(uint32_t i, const char *what) {
  printf("error %u %s: %s\n", i, what, strerror(errno));
  fflush(stdout);
  if (hosts[i].fd >= 0) close(hosts[i].fd);
  hosts[i].fd = -1;
}

static void load(const char *file) {
  FILE *f = fopen(file, "rb");
  if (!f) { perror(file); exit(2); }
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  rewind(f);
  unsigned char *buf = malloc((size_t)size);
  if (!buf || fread(buf, 1, (size_t)size, f) != (size_t)size) { perror(file); exit(2); }
  fclose(f);
  size_t at = 0;
  nhosts = get32(buf + at); at += 4;
  hosts = calloc(nhosts, sizeof *hosts);
  for (uint32_t i = 0; i < nhosts; i++) {
    struct host *h = &hosts[i];
    uint32_t alen = get32(buf + at); at += 4;
    char addr[64] = { 0 };
    memcpy(addr, buf + at, alen < 63 ? alen : 63);
    at += (alen + 3) & ~3u;
    h->addr.sin_family = AF_INET;
    if (inet_pton(AF_INET, addr, &h->addr.sin_addr) != 1) { fprintf(stderr, "bad address %s\n", addr); exit(2); }
    h->ncalls = get32(buf + at); at += 4;
    h->calls = calloc(h->ncalls, sizeof *h->calls);
    h->lens = calloc(h->ncalls, sizeof *h->lens);
    for (uint32_t j = 0; j < h->ncalls; j++) {
      h->lens[j] = get32(buf + at); at += 4;
      h->calls[j] = buf + at;
      at += h->lens[j];
    }
    h->fd = -1;
    h->xid = (i + 1) * 0x10000u;
  }
}

static void send_next(uint32_t i) {
  struct host *h = &hosts[i];
  unsigned char *c = h->calls[h->next];
  uint32_t len = h->lens[h->next];
  put32(c + 4, ++h->xid);
  put32(c + len - 4, h->state);
  ssize_t n = write(h->fd, c, len);
  if (n != (ssize_t)len) fail(i, "write");
}

static void start(uint32_t i, int port, uint32_t state) {
  struct host *h = &hosts[i];
  if (h->fd >= 0) close(h->fd);
  h->state = state;
  h->next = 0;
  h->granted = h->refused = 0;
  h->inlen = 0;
  h->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int one = 1;
  setsockopt(h->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (bind(h->fd, (struct sockaddr *)&h->addr, sizeof h->addr) < 0) return fail(i, "bind");
  struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
  inet_pton(AF_INET, server, &to.sin_addr);
  if (connect(h->fd, (struct sockaddr *)&to, sizeof to) < 0 && errno != EINPROGRESS) return fail(i, "connect");
  struct epoll_event ev = { .events = EPOLLOUT | EPOLLIN, .data.u32 = i };
  epoll_ctl(ep, EPOLL_CTL_ADD, h->fd, &ev);
}

// A whole reply record in h->in: its NLM status counted, the next call sent (or the host done).
static void replied(uint32_t i, const unsigned char *r, size_t len) {
  struct host *h = &hosts[i];
  // xid, REPLY, MSG_ACCEPTED, verifier (flavor, length, body), accept_stat, then nlm4_res: cookie, stat.
  int ok = len >= 24 && get32(r + 4) == 1 && get32(r + 8) == 0;
  size_t at = ok ? 20 + ((get32(r + 16) + 3) & ~3u) : 0;
  ok = ok && at + 8 <= len && get32(r + at) == 0;
  if (ok) at += 8 + ((get32(r + at + 4) + 3) & ~3u);
  if (ok && at + 4 <= len && get32(r + at) == 0) h->granted++;
  else h->refused++;
  if (++h->next < h->ncalls) return send_next(i);
  printf("done %u %lu %lu %.3f\n", i, h->granted, h->refused, wall_ms());
  fflush(stdout);
  epoll_ctl(ep, EPOLL_CTL_DEL, h->fd, NULL);
  close(h->fd);
  h->fd = -1;
}

static void readable(uint32_t i) {
  struct host *h = &hosts[i];
  for (;;) {
    ssize_t n = read(h->fd, h->in + h->inlen, sizeof h->in - h->inlen);
    if (n == 0) { errno = ECONNRESET; return fail(i, "read"); }
    if (n < 0) { if (errno != EAGAIN) fail(i, "read"); return; }
    h->inlen += (size_t)n;
    // One call in flight: at most one record is waiting, and replies are small (one fragment).
    while (h->inlen >= 4) {
      size_t rec = get32(h->in) & 0x7fffffffu;
      if (rec + 4 > sizeof h->in) { errno = EMSGSIZE; return fail(i, "reply"); }
      if (h->inlen < rec + 4) break;
      replied(i, h->in + 4, rec);
      if (h->fd < 0) return;
      memmove(h->in, h->in + 4 + rec, h->inlen - 4 - rec);
      h->inlen -= 4 + rec;
    }
  }
}

static char line[256];
static size_t linelen;

static void commands(void) {
  ssize_t n = read(0, line + linelen, sizeof line - 1 - linelen);
  if (n <= 0) exit(0); // the node process is gone
  linelen += (size_t)n;
  char *nl;
  while ((nl = memchr(line, '\n', linelen))) {
    *nl = 0;
    unsigned i, state;
    int port;
    if (sscanf(line, "%u %d %u", &i, &port, &state) == 3 && i < nhosts) start(i, port, state);
    size_t used = (size_t)(nl - line) + 1;
    memmove(line, nl + 1, linelen - used);
    linelen -= used;
  }
}

int main(int argc, char **argv) {
  if (argc != 3) { fprintf(stderr, "usage: nlm-reclaim CALLS-FILE SERVER-ADDRESS\n"); return 2; }
  load(argv[1]);
  server = argv[2];
  ep = epoll_create1(0);
  fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
  struct epoll_event in = { .events = EPOLLIN, .data.u32 = UINT32_MAX };
  epoll_ctl(ep, EPOLL_CTL_ADD, 0, &in);
  printf("ready %u\n", nhosts);
  fflush(stdout);
  struct epoll_event evs[256];
  for (;;) {
    int n = epoll_wait(ep, evs, 256, -1);
    if (n < 0 && errno != EINTR) { perror("epoll_wait"); return 1; }
    for (int k = 0; k < n; k++) {
      uint32_t i = evs[k].data.u32;
      if (i == UINT32_MAX) { commands(); continue; }
      struct host *h = &hosts[i];
      if (h->fd < 0) continue;
      if (evs[k].events & EPOLLOUT) {
        // Connected (or failed): from now on only replies are waited for.
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(h->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) { errno = err; fail(i, "connect"); continue; }
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = i };
        epoll_ctl(ep, EPOLL_CTL_MOD, h->fd, &ev);
        send_next(i);
      }
      if (evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) readable(i);
    }
  }
}
