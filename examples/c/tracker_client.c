/*
 * A client of the tracker seed's key/value system, written from the protocol's description
 * alone (README, "The tracker seed's protocol"), with POSIX sockets and none of libpastry's
 * code: it asks the tracker which port serves a 32-bit key, then sends that port 9-byte
 * insert, lookup and delete messages.
 *
 *     tracker_client HOST:PORT insert KEY VALUE
 *     tracker_client HOST:PORT lookup KEY
 *     tracker_client HOST:PORT delete KEY
 *     tracker_client HOST:PORT run N SEED
 *
 * KEY and VALUE are numbers (0x... for hex). The single requests print the reply as
 * `STATUS KEY VALUE` (status 0 ok, 1 not found, 2 failed) and exit with the status. `run`
 * inserts N keys whose 4 bytes are lowercase letters (so that each is also an object name a
 * program can type), looks each up, deletes every other one, and checks every answer; it
 * prints `kept NAME VALUE` for each key left, then `tracker_client: N keys checked`, and
 * exits 0, or says what failed and exits 1. A request that fails (a node gone while the
 * network changes) is asked again, of the tracker first, for up to 20 seconds.
 */

#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

enum { INSERT = 0, LOOKUP = 1, DELETE = 2 };
enum { OK = 0, NOT_FOUND = 1, FAILED = 2 };
enum { MAX_PORTS = 64, RETRY_SECONDS = 20 };

struct reply {
    int status;
    uint32_t key;
    uint32_t value;
};

static struct sockaddr_in tracker_addr;
static int tracker = -1;
/* Connections to compact listeners, by port. */
static int node_port[MAX_PORTS];
static int node_fd[MAX_PORTS];
static int nodes = 0;

static void put_u32(unsigned char *out, uint32_t v) {
    out[0] = (unsigned char)(v >> 24);
    out[1] = (unsigned char)(v >> 16);
    out[2] = (unsigned char)(v >> 8);
    out[3] = (unsigned char)v;
}

static uint32_t get_u32(const unsigned char *in) {
    return (uint32_t)in[0] << 24 | (uint32_t)in[1] << 16 | (uint32_t)in[2] << 8 | in[3];
}

/* Writes or reads exactly `len` bytes; 0 on success, -1 on failure or end of stream. */
static int send_all(int fd, const unsigned char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static int recv_all(int fd, unsigned char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = recv(fd, buf, len, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* A connection to `addr` with a 15-second read timeout, or -1. */
static int connect_to(const struct sockaddr_in *addr) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        return -1;
    }
    struct timeval timeout = {15, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (const struct sockaddr *)addr, sizeof *addr) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* The port the tracker names for `key`: 0 if it names none, -1 on failure. */
static int port_of(uint32_t key) {
    if (tracker < 0) {
        tracker = connect_to(&tracker_addr);
        if (tracker < 0) {
            return -1;
        }
    }
    unsigned char out[4], in[4];
    put_u32(out, key);
    if (send_all(tracker, out, 4) != 0 || recv_all(tracker, in, 4) != 0) {
        close(tracker);
        tracker = -1;
        return -1;
    }
    return (int)(get_u32(in) & 0xffff);
}

/* The connection to the compact listener on `port` of the tracker's host, or -1. */
static int node_for(int port) {
    for (int i = 0; i < nodes; i++) {
        if (node_port[i] == port) {
            return i;
        }
    }
    struct sockaddr_in addr = tracker_addr;
    addr.sin_port = htons((uint16_t)port);
    int fd = connect_to(&addr);
    if (fd < 0) {
        return -1;
    }
    if (nodes == MAX_PORTS) {
        close(node_fd[0]);
        memmove(node_port, node_port + 1, sizeof node_port[0] * (MAX_PORTS - 1));
        memmove(node_fd, node_fd + 1, sizeof node_fd[0] * (MAX_PORTS - 1));
        nodes--;
    }
    node_port[nodes] = port;
    node_fd[nodes] = fd;
    return nodes++;
}

static void forget_node(int i) {
    close(node_fd[i]);
    node_port[i] = node_port[nodes - 1];
    node_fd[i] = node_fd[nodes - 1];
    nodes--;
}

/* One request, once: 0 with `*reply` filled, -1 on a socket failure. */
static int request_once(int type, uint32_t key, uint32_t value, struct reply *reply) {
    int port = port_of(key);
    if (port <= 0) {
        return -1;
    }
    int i = node_for(port);
    if (i < 0) {
        return -1;
    }
    unsigned char out[9], in[9];
    out[0] = (unsigned char)type;
    put_u32(out + 1, key);
    put_u32(out + 5, value);
    if (send_all(node_fd[i], out, 9) != 0 || recv_all(node_fd[i], in, 9) != 0) {
        forget_node(i);
        return -1;
    }
    reply->status = in[0];
    reply->key = get_u32(in + 1);
    reply->value = get_u32(in + 5);
    return 0;
}

/* A request, asked again while it fails, for up to RETRY_SECONDS. */
static struct reply request(int type, uint32_t key, uint32_t value) {
    struct reply reply = {FAILED, key, 0};
    time_t deadline = time(NULL) + RETRY_SECONDS;
    while (time(NULL) < deadline) {
        if (request_once(type, key, value, &reply) == 0 && reply.status != FAILED) {
            return reply;
        }
        struct timespec pause = {0, 50 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    return reply;
}

static uint64_t rng_state;

/* splitmix64: the same keys for the same seed. */
static uint64_t next_random(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static int fail(const char *what, uint32_t key, struct reply got) {
    printf("tracker_client: %s %c%c%c%c: got status %d value %u\n", what, (char)(key >> 24),
           (char)(key >> 16), (char)(key >> 8), (char)key, got.status, (unsigned)got.value);
    return 1;
}

static int run(long n, uint64_t seed) {
    uint32_t *keys = calloc((size_t)n, sizeof *keys);
    uint32_t *values = calloc((size_t)n, sizeof *values);
    if (keys == NULL || values == NULL) {
        printf("tracker_client: out of memory\n");
        return 1;
    }
    rng_state = seed;
    for (long i = 0; i < n; i++) {
        bool fresh = false;
        /* Bounded: 26^4 names, far more than any n used. */
        while (!fresh) {
            uint32_t key = 0;
            for (int b = 0; b < 4; b++) {
                key = key << 8 | (uint32_t)('a' + next_random() % 26);
            }
            fresh = true;
            for (long j = 0; j < i && fresh; j++) {
                fresh = keys[j] != key;
            }
            keys[i] = key;
        }
        values[i] = (uint32_t)next_random();
    }
    int failed = 0;
    for (long i = 0; i < n && !failed; i++) {
        struct reply r = request(INSERT, keys[i], values[i]);
        if (r.status != OK || r.key != keys[i] || r.value != values[i]) {
            failed = fail("insert", keys[i], r);
        }
    }
    for (long i = 0; i < n && !failed; i++) {
        struct reply r = request(LOOKUP, keys[i], 0);
        if (r.status != OK || r.value != values[i]) {
            failed = fail("lookup", keys[i], r);
        }
    }
    for (long i = 0; i < n && !failed; i += 2) {
        struct reply r = request(DELETE, keys[i], 0);
        if (r.status != OK || r.value != values[i]) {
            failed = fail("delete", keys[i], r);
        }
    }
    for (long i = 0; i < n && !failed; i++) {
        struct reply r = request(LOOKUP, keys[i], 0);
        bool deleted = i % 2 == 0;
        if (deleted ? r.status != NOT_FOUND : r.status != OK || r.value != values[i]) {
            failed = fail(deleted ? "lookup after delete" : "lookup again", keys[i], r);
        }
    }
    for (long i = 1; i < n && !failed; i += 2) {
        printf("kept %c%c%c%c %u\n", (char)(keys[i] >> 24), (char)(keys[i] >> 16),
               (char)(keys[i] >> 8), (char)keys[i], (unsigned)values[i]);
    }
    free(keys);
    free(values);
    if (!failed) {
        printf("tracker_client: %ld keys checked\n", n);
    }
    return failed;
}

static int usage(void) {
    fprintf(stderr,
            "usage: tracker_client HOST:PORT (insert KEY VALUE | lookup KEY | delete KEY | "
            "run N SEED)\n");
    return 2;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        return usage();
    }
    char host[64];
    const char *colon = strrchr(argv[1], ':');
    if (colon == NULL || (size_t)(colon - argv[1]) >= sizeof host) {
        return usage();
    }
    memcpy(host, argv[1], (size_t)(colon - argv[1]));
    host[colon - argv[1]] = '\0';
    tracker_addr.sin_family = AF_INET;
    tracker_addr.sin_port = htons((uint16_t)strtoul(colon + 1, NULL, 10));
    if (inet_pton(AF_INET, host, &tracker_addr.sin_addr) != 1) {
        return usage();
    }
    const char *command = argv[2];
    if (strcmp(command, "run") == 0 && argc == 5) {
        return run(strtol(argv[3], NULL, 0), strtoull(argv[4], NULL, 0));
    }
    int type = strcmp(command, "insert") == 0   ? INSERT
               : strcmp(command, "lookup") == 0 ? LOOKUP
               : strcmp(command, "delete") == 0 ? DELETE
                                                : -1;
    if (type < 0 || argc != (type == INSERT ? 5 : 4)) {
        return usage();
    }
    uint32_t key = (uint32_t)strtoul(argv[3], NULL, 0);
    uint32_t value = type == INSERT ? (uint32_t)strtoul(argv[4], NULL, 0) : 0;
    struct reply r = request(type, key, value);
    printf("%d %u %u\n", r.status, (unsigned)r.key, (unsigned)r.value);
    return r.status;
}
