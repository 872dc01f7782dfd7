// The load generator of bench/nlm-vs-ganesha.ts: NLM v4 LOCK+UNLOCK, one thread per owner, each
// owner one call in flight on a socket (a TCP connection or a connected UDP socket) of its own, as
// a libtirpc client per owner has it. C with blocking sockets and calls encoded once by hand (only
// the xid is patched): about 2 syscalls per RPC and no allocation, so that on a 2-core machine the
// generator takes as little as possible from the servers it measures. It reads the server's CPU
// (utime + stime of every thread, /proc/PID/stat) and its own at the start and end of the window.
//
//   nlm-load udp|tcp ADDRESS PORT OWNERS WARMUP_MS MEASURE_MS FH_HEX SERVER_PID CALLER_NAME
//
// CALLER_NAME is the lock's caller_name (and the credential's machine name): the client's address,
// which a statd can resolve when the server monitors it.
//
// Prints one JSON line: rpcs (replies in the window, LOCK and UNLOCK one each), seconds,
// serverCpu and generatorCpu (CPU seconds in the window), errors (a reply not SUCCESS/granted),
// retransmits (UDP: no reply within 200 ms).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

enum { NLM_PROG = 100021, NLM_VERS = 4, NLMPROC_LOCK = 2, NLMPROC_UNLOCK = 4, AUTH_SYS = 1 };
enum { PHASE_WARMUP = 0, PHASE_MEASURE = 1, PHASE_STOP = 2 };

static int tcp;
static struct sockaddr_in server;
static unsigned char fh[64];
static size_t fh_len;
static const char *caller;
static atomic_int phase = PHASE_WARMUP;

struct owner {
  pthread_t thread;
  int index;
  unsigned char msg[2][512]; // LOCK, UNLOCK; on TCP with the record mark in front
  size_t len[2];
  unsigned long rpcs, errors, retransmits;
  int failed; // a socket error: the run is void
};

struct enc { unsigned char *p; size_t n; };
static void u32(struct enc *e, uint32_t v) { uint32_t b = htonl(v); memcpy(e->p + e->n, &b, 4); e->n += 4; }
static void u64(struct enc *e, uint64_t v) { u32(e, (uint32_t)(v >> 32)); u32(e, (uint32_t)v); }
static void opaque(struct enc *e, const void *d, size_t len) {
  u32(e, (uint32_t)len);
  memcpy(e->p + e->n, d, len);
  e->n += len;
  while (e->n % 4) e->p[e->n++] = 0;
}

// One call: the RPC header with AUTH_SYS (machine CALLER_NAME, uid 0, gid 0, no gids), then nlm4_lockargs
// or nlm4_unlockargs for the owner's range [100 * index, +100) of the file.
static size_t encode_call(unsigned char *out, int proc, int index) {
  struct enc e = { out, 0 };
  if (tcp) u32(&e, 0); // the record mark, filled in below
  u32(&e, 0);          // xid, patched per call
  u32(&e, 0);          // CALL
  u32(&e, 2);
  u32(&e, NLM_PROG);
  u32(&e, NLM_VERS);
  u32(&e, (uint32_t)proc);
  unsigned char cred[64];
  struct enc c = { cred, 0 };
  u32(&c, 0);
  opaque(&c, caller, strlen(caller));
  u32(&c, 0);
  u32(&c, 0);
  u32(&c, 0);
  u32(&e, AUTH_SYS);
  opaque(&e, cred, c.n);
  u32(&e, 0); // verifier AUTH_NONE
  u32(&e, 0);
  unsigned char cookie[4] = { 0, 0, 0, (unsigned char)index };
  opaque(&e, cookie, 4);
  if (proc == NLMPROC_LOCK) {
    u32(&e, 0); // block
    u32(&e, 1); // exclusive
  }
  opaque(&e, caller, strlen(caller)); // caller_name
  opaque(&e, fh, fh_len);
  char oh[32];
  int ohn = snprintf(oh, sizeof oh, "owner-%d", index);
  opaque(&e, oh, (size_t)ohn);
  u32(&e, (uint32_t)(1000 + index)); // svid
  u64(&e, 100u * (uint64_t)index);
  u64(&e, 100);
  if (proc == NLMPROC_LOCK) {
    u32(&e, 0); // reclaim
    u32(&e, 1); // state
  }
  if (tcp) {
    uint32_t mark = htonl(0x80000000u | (uint32_t)(e.n - 4));
    memcpy(out, &mark, 4);
  }
  return e.n;
}

static int read_full(int fd, unsigned char *p, size_t n) {
  while (n > 0) {
    ssize_t r = recv(fd, p, n, 0);
    if (r <= 0) return -1;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

// Accepted SUCCESS with an empty verifier, then nlm4_res: the cookie, then stat granted (0).
static int granted(const unsigned char *r, size_t n) {
  uint32_t w[8];
  if (n < 32) return 0;
  memcpy(w, r, 32);
  if (ntohl(w[1]) != 1 || ntohl(w[2]) != 0 || ntohl(w[3]) != 0 || ntohl(w[4]) != 0 || ntohl(w[5]) != 0) return 0;
  size_t at = 24 + 4 + ((ntohl(w[6]) + 3u) & ~3u);
  if (at + 4 > n) return 0;
  uint32_t stat;
  memcpy(&stat, r + at, 4);
  return ntohl(stat) == 0;
}

static void *run(void *arg) {
  struct owner *o = arg;
  int fd = socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
  if (fd < 0) { o->failed = errno; return NULL; }
  // UDP: a datagram lost in a full buffer is sent again after 200 ms; TCP: a server that stops
  // answering for 5 s voids the run instead of hanging it.
  struct timeval tv = { tcp ? 5 : 0, tcp ? 0 : 200000 };
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (tcp) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  if (connect(fd, (struct sockaddr *)&server, sizeof server) < 0) { o->failed = errno; close(fd); return NULL; }
  const size_t xid_at = tcp ? 4 : 0;
  uint32_t seq = 0;
  unsigned char reply[1024];
  // Past the window an owner that holds its lock sends its UNLOCK: the next run starts unlocked
  // (Ganesha tells a UDP client from a TCP one: a lock left by one denies the other's).
  for (unsigned long step = 0; atomic_load_explicit(&phase, memory_order_relaxed) != PHASE_STOP || (step & 1); step++) {
    unsigned char *m = o->msg[step & 1];
    uint32_t xid = ((uint32_t)o->index << 24) | (++seq & 0xffffff);
    uint32_t bx = htonl(xid);
    memcpy(m + xid_at, &bx, 4);
    size_t got;
    for (;;) {
      if (send(fd, m, o->len[step & 1], 0) < 0) { o->failed = errno; goto out; }
      if (tcp) {
        uint32_t mark;
        if (read_full(fd, (unsigned char *)&mark, 4) < 0) { o->failed = EPIPE; goto out; }
        got = ntohl(mark) & 0x7fffffffu;
        if (!(ntohl(mark) & 0x80000000u) || got > sizeof reply || read_full(fd, reply, got) < 0) { o->failed = EPROTO; goto out; }
      } else {
        ssize_t r;
        do r = recv(fd, reply, sizeof reply, 0); while (r >= 4 && memcmp(reply, &bx, 4) != 0); // a late reply to an earlier send
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
          if (++o->retransmits > 1000) { o->failed = ETIMEDOUT; goto out; }
          continue;
        }
        if (r < 0) { o->failed = errno; goto out; }
        got = (size_t)r;
      }
      break;
    }
    if (memcmp(reply, &bx, 4) != 0) { o->failed = EPROTO; goto out; }
    if (atomic_load_explicit(&phase, memory_order_relaxed) == PHASE_MEASURE) {
      o->rpcs++;
      if (!granted(reply, got)) o->errors++;
    }
  }
out:
  close(fd);
  return NULL;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

// utime + stime of the whole process (fields 14 and 15 of /proc/PID/stat), in seconds.
static double process_cpu(const char *pid) {
  char path[64], buf[2048];
  snprintf(path, sizeof path, "/proc/%s/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) { perror(path); exit(2); }
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')'); // the command name may hold spaces
  unsigned long ut = 0, st = 0;
  if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2) { fprintf(stderr, "cannot parse %s\n", path); exit(2); }
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double own_cpu(void) {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return (double)u.ru_utime.tv_sec + (double)u.ru_utime.tv_usec / 1e6 + (double)u.ru_stime.tv_sec + (double)u.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv) {
  if (argc != 10) {
    fprintf(stderr, "usage: %s udp|tcp ADDRESS PORT OWNERS WARMUP_MS MEASURE_MS FH_HEX SERVER_PID CALLER_NAME\n", argv[0]);
    return 2;
  }
  tcp = strcmp(argv[1], "tcp") == 0;
  server.sin_family = AF_INET;
  server.sin_port = htons((uint16_t)atoi(argv[3]));
  if (inet_pton(AF_INET, argv[2], &server.sin_addr) != 1) { fprintf(stderr, "bad address %s\n", argv[2]); return 2; }
  int owners = atoi(argv[4]);
  if (owners < 1 || owners > 255) { fprintf(stderr, "owners must be 1..255\n"); return 2; }
  long warmup = atol(argv[5]), measure = atol(argv[6]);
  size_t hex = strlen(argv[7]);
  if (hex % 2 || hex / 2 > sizeof fh) { fprintf(stderr, "bad file handle\n"); return 2; }
  fh_len = hex / 2;
  for (size_t i = 0; i < fh_len; i++) sscanf(argv[7] + 2 * i, "%2hhx", &fh[i]);
  const char *pid = argv[8];
  caller = argv[9];
  if (strlen(caller) > 255) { fprintf(stderr, "caller name too long\n"); return 2; }

  struct owner *o = calloc((size_t)owners, sizeof *o);
  for (int i = 0; i < owners; i++) {
    o[i].index = i;
    o[i].len[0] = encode_call(o[i].msg[0], NLMPROC_LOCK, i);
    o[i].len[1] = encode_call(o[i].msg[1], NLMPROC_UNLOCK, i);
    pthread_create(&o[i].thread, NULL, run, &o[i]);
  }
  usleep((useconds_t)warmup * 1000);
  double s0 = process_cpu(pid), g0 = own_cpu(), t0 = now();
  atomic_store(&phase, PHASE_MEASURE);
  usleep((useconds_t)measure * 1000);
  atomic_store(&phase, PHASE_STOP);
  double s1 = process_cpu(pid), g1 = own_cpu(), t1 = now();
  unsigned long rpcs = 0, errors = 0, retransmits = 0;
  int failed = 0;
  for (int i = 0; i < owners; i++) {
    pthread_join(o[i].thread, NULL);
    rpcs += o[i].rpcs;
    errors += o[i].errors;
    retransmits += o[i].retransmits;
    if (o[i].failed) failed = o[i].failed;
  }
  printf("{\"rpcs\":%lu,\"seconds\":%.4f,\"serverCpu\":%.4f,\"generatorCpu\":%.4f,\"errors\":%lu,\"retransmits\":%lu,\"failed\":\"%s\"}\n",
         rpcs, t1 - t0, s1 - s0, g1 - g0, errors, retransmits, failed ? strerror(failed) : "");
  return failed ? 1 : 0;
}
