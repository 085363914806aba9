/*
 * The promises of libpastry's C ABI that a program relies on across releases, checked from
 * C: the version macros agree with the library; an options struct of an older, smaller
 * size gets the documented defaults for the fields it does not know, and the library writes
 * no byte past it; a newer, larger one is taken if the fields this library does not know
 * are zero, refused otherwise; the log callback receives the library's records at the
 * chosen level, from several threads at once, and none once it is turned off.
 *
 *     abi
 *
 * Prints a line per failed check; exits 0 with `abi: all N checks passed` if none failed.
 */

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pastry.h"

static int checks = 0;
static int failures = 0;

static void check(bool passed, int line, const char *what) {
    checks++;
    if (!passed) {
        failures++;
        printf("FAILED (line %d): %s; last error: %s\n", line, what, pastry_last_error());
    }
}

#define CHECK(condition) check((condition), __LINE__, #condition)
#define CHECK_OK(call) check((call) == PASTRY_STATUS_OK, __LINE__, #call)

/* Stops the program when a check it cannot go on without fails. */
static void require(bool passed, const char *what) {
    if (!passed) {
        printf("abi: %s (%s), cannot go on\n", what, pastry_last_error());
        exit(1);
    }
}

static void versions(void) {
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", PASTRY_VERSION_MAJOR, PASTRY_VERSION_MINOR,
             PASTRY_VERSION_PATCH);
    CHECK(strcmp(want, PASTRY_VERSION_STRING) == 0);
    /* The library this program runs with is the one its header came with. */
    CHECK(strcmp(pastry_version(), PASTRY_VERSION_STRING) == 0);
}

/* PastryNodeOptions as an older header declared it: the fields up to `max_hops`. */
typedef struct OldNodeOptions {
    size_t size;
    const char *listen;
    const char *advertise;
    const char *data_dir;
    const PastrySecurity *security;
    int32_t id;
    uint32_t leaf_half;
    uint32_t replicas;
    uint32_t max_hops;
} OldNodeOptions;

/* Room for an options struct and what lies after it. */
typedef union Room {
    PastryNodeOptions options;
    OldNodeOptions old;
    unsigned char bytes[sizeof(PastryNodeOptions) + 64];
} Room;

static void older_options(const PastrySecurity *key) {
    Room room;
    memset(&room, 0xff, sizeof room);
    CHECK_OK(pastry_node_options_init(&room.options, sizeof room.old));
    bool untouched = true;
    for (size_t i = sizeof room.old; i < sizeof room; i++) {
        untouched = untouched && room.bytes[i] == 0xff;
    }
    CHECK(untouched); /* init wrote nothing past the older struct */
    CHECK(room.old.size == sizeof room.old && room.old.id == -1 && room.old.leaf_half == 8 &&
          room.old.replicas == 3 && room.old.max_hops == 32);
    room.old.security = key;
    room.old.max_hops = 20;
    PastryNode *node = NULL;
    CHECK_OK(pastry_node_start(&room.options, &node));
    require(node != NULL, "no node from the older options");

    PastryNodeOptions running;
    CHECK_OK(pastry_node_options_init(&running, sizeof running));
    CHECK_OK(pastry_node_options_of(node, &running));
    /* What the older struct set, and the defaults for what it did not know. */
    CHECK(running.max_hops == 20 && running.leaf_half == 8);
    CHECK(running.maintenance_interval_ms == 1000);
    CHECK(running.sync_writes == 1);
    CHECK(running.tombstone_grace_ms == 24u * 3600u * 1000u);
    CHECK(running.small_object_max == 65536);
    CHECK(running.net != NULL && running.net->io_timeout_ms == 5000 &&
          running.net->max_connections == 2048);
    pastry_node_free(node);
}

static void newer_and_wrong_sizes(const PastrySecurity *key) {
    Room room;
    memset(&room, 0xff, sizeof room);
    size_t newer = sizeof room.options + 16;
    CHECK_OK(pastry_node_options_init(&room.options, newer));
    bool zeroed = true;
    for (size_t i = sizeof room.options; i < newer; i++) {
        zeroed = zeroed && room.bytes[i] == 0;
    }
    CHECK(zeroed && room.options.size == newer);
    room.options.security = key;
    PastryNode *node = NULL;
    CHECK_OK(pastry_node_start(&room.options, &node));
    pastry_node_free(node);

    /* A field this library does not know, set: refused, not ignored. */
    room.bytes[sizeof room.options + 3] = 1;
    node = NULL;
    CHECK(pastry_node_start(&room.options, &node) == PASTRY_STATUS_INVALID_ARGUMENT);
    CHECK(node == NULL && strstr(pastry_last_error(), "newer") != NULL);

    /* Smaller than the first release: refused by init and by start. */
    CHECK(pastry_node_options_init(&room.options, sizeof(size_t)) ==
          PASTRY_STATUS_INVALID_ARGUMENT);
    room.options.size = 1;
    CHECK(pastry_node_start(&room.options, &node) == PASTRY_STATUS_INVALID_ARGUMENT);

    PastryClientOptions client_options;
    CHECK_OK(pastry_client_options_init(&client_options, sizeof client_options));
    CHECK(client_options.retry_ms == 10000 && client_options.max_hops == 32 &&
          client_options.sync_writes == 1 && client_options.net == NULL);
}

/* What the log callback saw. */
static atomic_int records;
static atomic_int too_detailed;
static atomic_int malformed;
static pthread_mutex_t threads_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_t threads_seen[64];
static int threads_count;
static int token;

static void on_log(void *user, PastryLogLevel level, const char *target, const char *message) {
    atomic_fetch_add(&records, 1);
    if (level > PASTRY_LOG_LEVEL_INFO || level < PASTRY_LOG_LEVEL_ERROR) {
        atomic_fetch_add(&too_detailed, 1);
    }
    if (user != &token || strncmp(target, "pastry", 6) != 0 || message[0] == '\0') {
        atomic_fetch_add(&malformed, 1);
    }
    pthread_mutex_lock(&threads_lock);
    bool known = false;
    for (int i = 0; i < threads_count; i++) {
        known = known || pthread_equal(threads_seen[i], pthread_self());
    }
    if (!known && threads_count < 64) {
        threads_seen[threads_count++] = pthread_self();
    }
    pthread_mutex_unlock(&threads_lock);
}

enum { JOINERS = 4 };

struct joiner {
    const PastrySecurity *key;
    const char *discovery;
    PastryNode *node;
    PastryStatus status;
};

/* Starts a node and joins it, on a thread of its own: both log on the calling thread. */
static void *join_one(void *arg) {
    struct joiner *j = arg;
    PastryNodeOptions options;
    j->status = pastry_node_options_init(&options, sizeof options);
    options.security = j->key;
    if (j->status == PASTRY_STATUS_OK) {
        j->status = pastry_node_start(&options, &j->node);
    }
    if (j->status == PASTRY_STATUS_OK) {
        j->status = pastry_node_join_discovery(j->node, j->discovery);
    }
    return NULL;
}

static void log_callback(const PastrySecurity *key) {
    CHECK(pastry_set_log_callback(9, on_log, &token) == PASTRY_STATUS_INVALID_ARGUMENT);
    CHECK_OK(pastry_set_log_callback(PASTRY_LOG_LEVEL_INFO, on_log, &token));

    PastryDiscovery *discovery = NULL;
    CHECK_OK(pastry_discovery_start("127.0.0.1:0", key, &discovery));
    require(discovery != NULL, "no discovery node");
    char address[PASTRY_ADDR_LEN];
    CHECK_OK(pastry_discovery_address(discovery, address, sizeof address));

    struct joiner joiners[JOINERS];
    pthread_t threads[JOINERS];
    for (int i = 0; i < JOINERS; i++) {
        joiners[i] = (struct joiner){key, address, NULL, PASTRY_STATUS_OTHER};
        require(pthread_create(&threads[i], NULL, join_one, &joiners[i]) == 0, "no thread");
    }
    for (int i = 0; i < JOINERS; i++) {
        pthread_join(threads[i], NULL);
        CHECK(joiners[i].status == PASTRY_STATUS_OK);
    }
    /* Each node says it started and joined, on its own thread. */
    CHECK(atomic_load(&records) >= 2 * JOINERS);
    CHECK(threads_count >= JOINERS);
    CHECK(atomic_load(&too_detailed) == 0);
    CHECK(atomic_load(&malformed) == 0);

    CHECK_OK(pastry_set_log_callback(PASTRY_LOG_LEVEL_OFF, NULL, NULL));
    int before = atomic_load(&records);
    struct joiner late = {key, address, NULL, PASTRY_STATUS_OTHER};
    join_one(&late);
    CHECK(late.status == PASTRY_STATUS_OK);
    CHECK_OK(pastry_node_leave(late.node));
    pastry_node_free(late.node);
    for (int i = 0; i < JOINERS; i++) {
        pastry_node_free(joiners[i].node);
    }
    pastry_discovery_free(discovery);
    CHECK(atomic_load(&records) == before); /* nothing once turned off */
}

int main(void) {
    versions();
    PastrySecurity *key = NULL;
    require(pastry_security_generate(&key) == PASTRY_STATUS_OK, "no key");
    older_options(key);
    newer_and_wrong_sizes(key);
    log_callback(key);
    pastry_security_free(key);

    if (failures > 0) {
        printf("abi: %d of %d checks failed\n", failures, checks);
        return 1;
    }
    printf("abi: all %d checks passed\n", checks);
    return 0;
}
