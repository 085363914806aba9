/*
 * A whole Pastry network in one process, driven through libpastry's C ABI and checked
 * against a brute-force oracle written here in C:
 *
 * - a discovery node and 8 nodes that join through it, all holding one cluster key made
 *   here; discovery lists all 8;
 * - 50 objects of 0 to 100 KiB of pseudo-random bytes are put and read back intact; the
 *   route of every put, get and lookup ends at the responsible node, and each object is
 *   kept by the nodes best placed for its key (the responsible one, and the next best if the
 *   library keeps copies), all the same number of times;
 * - a client holding another key cannot get an object; a new client holding the right key
 *   can;
 * - one is deleted, after which a get says PASTRY_STATUS_NOT_FOUND with a message;
 * - error paths: an id already in use, an unreachable discovery node, a malformed address;
 * - lookups, leaf sets, routing tables and the objects each node holds;
 * - two nodes leave gracefully and every object is still there, on its new holder;
 * - everything handed out is freed (run it under valgrind to see).
 *
 *     network [SEED]
 *
 * Prints `network: all checks passed` and exits 0, or prints the first mismatch on stderr
 * and exits 1.
 *
 * Build (after `cargo build`), from the repository's root:
 *     cc -std=c11 -Wall -Wextra -Werror -pedantic -I include examples/c/network.c \
 *        target/debug/libpastry.a -lpthread -ldl -lm -o network
 */

#define _POSIX_C_SOURCE 200809L /* nanosleep */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pastry.h"

#define NODES 8
#define OBJECTS 50
#define MAX_SIZE (100 * 1024)

/* ----- Reporting ----------------------------------------------------------------------- */

/* Prints what went wrong and exits 1. */
static void fail(const char *format, ...) {
    va_list args;
    va_start(args, format);
    fputs("network: FAILED: ", stderr);
    vfprintf(stderr, format, args);
    fputc('\n', stderr);
    va_end(args);
    exit(1);
}

/* Fails unless `status` is PASTRY_STATUS_OK. */
static void ok(PastryStatus status, const char *what) {
    if (status != PASTRY_STATUS_OK) {
        fail("%s: %s: %s", what, pastry_status_text(status), pastry_last_error());
    }
}

/* Fails unless `status` is `want` and the last error has a message. */
static void expect_error(PastryStatus status, PastryStatus want, const char *what) {
    if (status != want) {
        fail("%s: got status %d (%s), want %d (%s); last error: %s", what, (int)status,
             pastry_status_text(status), (int)want, pastry_status_text(want),
             pastry_last_error());
    }
    if (pastry_last_error()[0] == '\0') {
        fail("%s: status %s but pastry_last_error() is empty", what, pastry_status_text(status));
    }
}

/* ----- The oracle ---------------------------------------------------------------------- */

/* Distance on the ring of 2^16 ids: the shorter way round. */
static uint16_t distance(uint16_t a, uint16_t b) {
    uint16_t one_way = (uint16_t)(a - b);
    uint16_t other_way = (uint16_t)(b - a);
    return one_way < other_way ? one_way : other_way;
}

/* The id among `ids` closest to `key`; of two equally close, the larger. */
static uint16_t responsible(uint16_t key, const uint16_t *ids, size_t n) {
    uint16_t best = ids[0];
    for (size_t i = 1; i < n; i++) {
        uint16_t d = distance(ids[i], key);
        uint16_t best_d = distance(best, key);
        if (d < best_d || (d == best_d && ids[i] > best)) {
            best = ids[i];
        }
    }
    return best;
}

/* How many leading hex digits two ids share (0 to 4). */
static int shared_digits(uint16_t a, uint16_t b) {
    int n = 0;
    while (n < 4 && ((a >> (12 - 4 * n)) & 0xf) == ((b >> (12 - 4 * n)) & 0xf)) {
        n++;
    }
    return n;
}

/* ----- Pseudo-random numbers (splitmix64), so that every run is the same ----------------- */

static uint64_t rng_state;

static uint64_t next_random(void) {
    uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* ----- The network --------------------------------------------------------------------- */

struct object {
    char name[32];
    size_t name_len;
    uint16_t key;
    uint8_t *data;
    size_t len;
    bool deleted;
};

struct network {
    PastrySecurity *security; /* the cluster key every member holds */
    PastryDiscovery *discovery;
    char address[PASTRY_ADDR_LEN];
    PastryNode *nodes[NODES];
    PastryNodeInfo info[NODES];
    bool live[NODES]; /* joined and not left */
    struct object objects[OBJECTS];
};

/* The ids of the live nodes, into `ids`; returns how many. */
static size_t live_ids(const struct network *net, uint16_t *ids) {
    size_t n = 0;
    for (size_t i = 0; i < NODES; i++) {
        if (net->live[i]) {
            ids[n++] = net->info[i].id;
        }
    }
    return n;
}

/* The id of the node responsible for `key` among the live nodes. */
static uint16_t responsible_live(const struct network *net, uint16_t key) {
    uint16_t ids[NODES];
    size_t n = live_ids(net, ids);
    return responsible(key, ids, n);
}

static bool is_live_id(const struct network *net, uint16_t id) {
    for (size_t i = 0; i < NODES; i++) {
        if (net->live[i] && net->info[i].id == id) {
            return true;
        }
    }
    return false;
}

/* Fails unless `route` is not empty and ends at the node responsible for `key`. */
static void check_route(const struct network *net, const PastryNodeList *route, uint16_t key,
                        const char *what) {
    if (route == NULL || route->len == 0) {
        fail("%s: empty route", what);
    }
    uint16_t holder = route->items[route->len - 1].id;
    uint16_t want = responsible_live(net, key);
    if (holder != want) {
        fail("%s: route for key %04x ends at %04x, but %04x is responsible", what,
             (unsigned)key, (unsigned)holder, (unsigned)want);
    }
}

static void start_network(struct network *net) {
    /* In memory only: every member is in this process. */
    ok(pastry_security_generate(&net->security), "pastry_security_generate");
    ok(pastry_discovery_start("127.0.0.1:0", net->security, &net->discovery),
       "pastry_discovery_start");
    ok(pastry_discovery_address(net->discovery, net->address, sizeof net->address),
       "pastry_discovery_address");
    for (size_t i = 0; i < NODES; i++) {
        /* Distinct ids from the seed, so that a run can be repeated. */
        uint16_t id;
        bool taken;
        do {
            id = (uint16_t)next_random();
            taken = false;
            for (size_t j = 0; j < i; j++) {
                taken = taken || net->info[j].id == id;
            }
        } while (taken);

        PastryNodeOptions options;
        ok(pastry_node_options_init(&options, sizeof options), "pastry_node_options_init");
        options.id = id;
        options.security = net->security;
        ok(pastry_node_start(&options, &net->nodes[i]), "pastry_node_start");
        ok(pastry_node_join_discovery(net->nodes[i], net->address), "pastry_node_join_discovery");
        ok(pastry_node_info(net->nodes[i], &net->info[i]), "pastry_node_info");
        if (net->info[i].id != id) {
            fail("node started with id %04x says it is %04x", (unsigned)id,
                 (unsigned)net->info[i].id);
        }
        net->live[i] = true;
    }
    printf("network: discovery on %s, %d nodes joined\n", net->address, NODES);
}

/* Fails unless discovery lists exactly the live nodes, sorted by id. */
static void check_peers(const struct network *net) {
    PastryNodeList *peers = NULL;
    ok(pastry_discovery_peers(net->discovery, &peers), "pastry_discovery_peers");
    uint16_t ids[NODES];
    size_t n = live_ids(net, ids);
    if (peers->len != n) {
        fail("discovery lists %zu peers, want %zu", peers->len, n);
    }
    for (size_t i = 0; i < peers->len; i++) {
        if (!is_live_id(net, peers->items[i].id)) {
            fail("discovery lists %04x, which is not a live node", (unsigned)peers->items[i].id);
        }
        if (i > 0 && peers->items[i - 1].id >= peers->items[i].id) {
            fail("discovery's peers are not sorted by id");
        }
    }
    pastry_node_list_free(peers);
}

static void make_objects(struct network *net) {
    for (size_t i = 0; i < OBJECTS; i++) {
        struct object *o = &net->objects[i];
        snprintf(o->name, sizeof o->name, "object-%02zu.bin", i);
        o->name_len = strlen(o->name);
        ok(pastry_key_of((const uint8_t *)o->name, o->name_len, &o->key), "pastry_key_of");
        o->len = i == 0 ? 0 : i == 1 ? MAX_SIZE : (size_t)(next_random() % (MAX_SIZE + 1));
        o->data = malloc(o->len > 0 ? o->len : 1);
        if (o->data == NULL) {
            fail("out of memory");
        }
        for (size_t j = 0; j < o->len; j++) {
            o->data[j] = (uint8_t)next_random();
        }
        o->deleted = false;
    }
}

static void put_objects(const struct network *net, const PastryClient *client) {
    for (size_t i = 0; i < OBJECTS; i++) {
        const struct object *o = &net->objects[i];
        PastryNodeList *route = NULL;
        ok(pastry_client_put(client, (const uint8_t *)o->name, o->name_len, o->data, o->len,
                             &route),
           o->name);
        check_route(net, route, o->key, o->name);
        pastry_node_list_free(route);
    }
}

/* Gets every object not deleted and compares it with what was put. */
static void get_objects(const struct network *net, const PastryClient *client) {
    for (size_t i = 0; i < OBJECTS; i++) {
        const struct object *o = &net->objects[i];
        if (o->deleted) {
            continue;
        }
        PastryBuffer *data = NULL;
        PastryNodeList *route = NULL;
        ok(pastry_client_get(client, (const uint8_t *)o->name, o->name_len, &data, &route),
           o->name);
        if (data->len != o->len || (o->len > 0 && memcmp(data->data, o->data, o->len) != 0)) {
            fail("%s: got %zu bytes that differ from the %zu put", o->name, data->len, o->len);
        }
        check_route(net, route, o->key, o->name);
        pastry_buffer_free(data);
        pastry_node_list_free(route);
    }
}

/* The live ids ranked for `key`, best placed first (the responsible node first); returns
 * how many. */
static size_t ranked_for(const struct network *net, uint16_t key, uint16_t *ids) {
    size_t n = live_ids(net, ids);
    for (size_t i = 1; i < n; i++) { /* insertion sort: a handful of ids */
        for (size_t j = i; j > 0; j--) {
            uint16_t a = ids[j - 1], b = ids[j];
            uint16_t da = distance(a, key), db = distance(b, key);
            if (da < db || (da == db && a > b)) {
                break;
            }
            ids[j - 1] = b;
            ids[j] = a;
        }
    }
    return n;
}

/* Whether every object not deleted is kept by the nodes best placed for its key (the
 * responsible node and, if the library keeps copies, the next best), every object the same
 * number of times, and nothing else is held anywhere (a node that left holds nothing). If
 * not, writes what is wrong into `why`. On success `*copies` is the number of copies. */
static bool placed(const struct network *net, size_t *copies, char *why, size_t why_len) {
    uint32_t holders[OBJECTS] = {0}; /* bit n: node n holds it */
    for (size_t n = 0; n < NODES; n++) {
        PastryObjectList *list = NULL;
        ok(pastry_node_objects(net->nodes[n], &list), "pastry_node_objects");
        bool fine = true;
        for (size_t k = 0; k < list->len && fine; k++) {
            const PastryObjectInfo *info = &list->items[k];
            size_t i = 0;
            while (i < OBJECTS && !(net->objects[i].name_len == info->name_len &&
                                    memcmp(net->objects[i].name, info->name, info->name_len) == 0)) {
                i++;
            }
            if (i == OBJECTS || net->objects[i].deleted || !net->live[n]) {
                snprintf(why, why_len, "node %04x holds %.*s, which it should not",
                         (unsigned)net->info[n].id, (int)info->name_len, (const char *)info->name);
                fine = false;
            } else if (info->key != net->objects[i].key || info->size != net->objects[i].len) {
                fail("node %04x lists %s with key %04x and size %llu, want %04x and %zu",
                     (unsigned)net->info[n].id, net->objects[i].name, (unsigned)info->key,
                     (unsigned long long)info->size, (unsigned)net->objects[i].key,
                     net->objects[i].len);
            } else {
                holders[i] |= UINT32_C(1) << n;
            }
        }
        pastry_object_list_free(list);
        if (!fine) {
            return false;
        }
    }
    *copies = 0;
    for (size_t i = 0; i < OBJECTS; i++) {
        const struct object *o = &net->objects[i];
        if (o->deleted) {
            continue;
        }
        uint16_t ranked[NODES];
        size_t live = ranked_for(net, o->key, ranked);
        /* Its holders must be the first `count` of the ranking. */
        size_t count = 0;
        uint32_t want = 0;
        for (size_t n = 0; n < NODES; n++) {
            count += (holders[i] >> n) & 1;
        }
        for (size_t r = 0; r < count && r < live; r++) {
            for (size_t n = 0; n < NODES; n++) {
                if (net->live[n] && net->info[n].id == ranked[r]) {
                    want |= UINT32_C(1) << n;
                }
            }
        }
        if (count == 0 || holders[i] != want) {
            snprintf(why, why_len, "%s (key %04x) is held by %zu nodes, not the %zu best placed "
                     "(responsible: %04x)", o->name, (unsigned)o->key, count, count,
                     (unsigned)ranked[0]);
            return false;
        }
        if (*copies != 0 && count != *copies) {
            snprintf(why, why_len, "%s is kept %zu times, others %zu times", o->name, count,
                     *copies);
            return false;
        }
        *copies = count;
    }
    return true;
}

/* Waits up to 30 s for the objects to be placed (copies move in the background after a
 * node leaves); fails if they are not. Returns the number of copies of each. */
static size_t check_placement(const struct network *net) {
    char why[256] = "";
    size_t copies = 0;
    for (int tries = 0; tries < 300; tries++) {
        if (placed(net, &copies, why, sizeof why)) {
            return copies;
        }
        struct timespec pause = {0, 100 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    fail("objects not placed after 30 s: %s", why);
    return 0;
}

/* Lookups of a few keys, each from another node. */
static void check_lookups(const struct network *net) {
    uint16_t hello = 0;
    ok(pastry_key_of((const uint8_t *)"hello.txt", 9, &hello), "pastry_key_of");
    if (hello != 0xf34c) {
        fail("key of hello.txt is %04x, want f34c", (unsigned)hello);
    }
    const uint16_t keys[] = {
        0x0000, 0xffff, 0x8000, hello, net->info[3].id, (uint16_t)(net->info[5].id + 1),
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        size_t from = i % NODES;
        PastryNodeList *route = NULL;
        ok(pastry_node_lookup(net->nodes[from], keys[i], &route), "pastry_node_lookup");
        check_route(net, route, keys[i], "lookup");
        if (route->items[0].id != net->info[from].id) {
            fail("lookup from %04x starts at %04x", (unsigned)net->info[from].id,
                 (unsigned)route->items[0].id);
        }
        pastry_node_list_free(route);
    }
}

/* Checks one side of a leaf set: every other node, in ring order (clockwise nearest first,
 * or counter-clockwise farthest first). */
static void check_side(const struct network *net, uint16_t own, const PastryNodeInfo *side,
                       size_t len, const char *what) {
    if (len != NODES - 1) {
        fail("%s side of %04x has %zu members, want %d", what, (unsigned)own, len, NODES - 1);
    }
    for (size_t i = 0; i < len; i++) {
        uint16_t id = side[i].id;
        if (id == own || !is_live_id(net, id)) {
            fail("leaf set of %04x holds %04x", (unsigned)own, (unsigned)id);
        }
        /* Both sides are listed in ring order: each member clockwise of the one before. */
        if (i > 0 && (uint16_t)(id - own) <= (uint16_t)(side[i - 1].id - own)) {
            fail("%s side of %04x is not in ring order", what, (unsigned)own);
        }
    }
}

/* Each node's leaf set holds every other node on each side (8 nodes, 8 on each side); its
 * routing table holds live nodes, each in its cell, row by row. */
static void check_tables(const struct network *net) {
    for (size_t n = 0; n < NODES; n++) {
        uint16_t own = net->info[n].id;
        PastryLeafSet *leaves = NULL;
        ok(pastry_node_leaf_set(net->nodes[n], &leaves), "pastry_node_leaf_set");
        check_side(net, own, leaves->counter_clockwise, leaves->counter_clockwise_len,
                   "counter-clockwise");
        check_side(net, own, leaves->clockwise, leaves->clockwise_len, "clockwise");
        pastry_leaf_set_free(leaves);

        PastryRoutingTable *table = NULL;
        ok(pastry_node_routing_table(net->nodes[n], &table), "pastry_node_routing_table");
        int cell = -1;
        for (size_t i = 0; i < table->len; i++) {
            const PastryRoutingEntry *entry = &table->items[i];
            uint16_t id = entry->node.id;
            if (id == own || !is_live_id(net, id)) {
                fail("routing table of %04x holds %04x", (unsigned)own, (unsigned)id);
            }
            unsigned digit = (id >> (12 - 4 * entry->row)) & 0xf;
            if (shared_digits(own, id) != entry->row || digit != entry->column) {
                fail("routing table of %04x has %04x in row %u column %u", (unsigned)own,
                     (unsigned)id, (unsigned)entry->row, (unsigned)entry->column);
            }
            if (entry->row * 16 + entry->column <= cell) {
                fail("routing table of %04x is not cell by cell", (unsigned)own);
            }
            cell = entry->row * 16 + entry->column;
        }
        pastry_routing_table_free(table);
    }
}

static void delete_one(struct network *net, const PastryClient *client) {
    struct object *o = &net->objects[7];
    bool existed = false;
    PastryNodeList *route = NULL;
    ok(pastry_client_delete(client, (const uint8_t *)o->name, o->name_len, &existed, &route),
       "pastry_client_delete");
    if (!existed) {
        fail("delete %s: the object did not exist", o->name);
    }
    check_route(net, route, o->key, "delete");
    pastry_node_list_free(route);
    o->deleted = true;

    PastryBuffer *data = NULL;
    expect_error(pastry_client_get(client, (const uint8_t *)o->name, o->name_len, &data, NULL),
                 PASTRY_STATUS_NOT_FOUND, "get after delete");
    if (data != NULL) {
        fail("a failed get wrote its out-parameter");
    }

    /* Deleting again succeeds and says there was nothing. */
    existed = true;
    ok(pastry_client_delete(client, (const uint8_t *)o->name, o->name_len, &existed, NULL),
       "pastry_client_delete again");
    if (existed) {
        fail("delete %s again: the object still existed", o->name);
    }
}

static void check_error_paths(const struct network *net) {
    /* A node with an id already in use cannot join. */
    PastryNodeOptions options;
    ok(pastry_node_options_init(&options, sizeof options), "pastry_node_options_init");
    options.id = net->info[0].id;
    options.security = net->security;
    PastryNode *twin = NULL;
    ok(pastry_node_start(&options, &twin), "pastry_node_start (twin)");
    expect_error(pastry_node_join_discovery(twin, net->address), PASTRY_STATUS_ID_IN_USE,
                 "joining with an id in use");
    pastry_node_free(twin);

    /* A malformed address. */
    PastryClient *client = NULL;
    expect_error(pastry_client_new("not an address", net->security, &client),
                 PASTRY_STATUS_INVALID_ARGUMENT, "pastry_client_new with a malformed address");
    if (client != NULL) {
        fail("a failed pastry_client_new wrote its out-parameter");
    }

    /* An unreachable discovery node: making the client succeeds, using it fails (after the
     * client's retries, cut short here to 200 ms). */
    PastryClientOptions client_options;
    ok(pastry_client_options_init(&client_options, sizeof client_options), "pastry_client_options_init");
    client_options.discovery = "127.0.0.1:1";
    client_options.security = net->security;
    client_options.retry_ms = 200;
    ok(pastry_client_start(&client_options, &client), "pastry_client_start (unreachable)");
    PastryBuffer *data = NULL;
    PastryStatus status = pastry_client_get(client, (const uint8_t *)"x", 1, &data, NULL);
    if (status == PASTRY_STATUS_OK || pastry_last_error()[0] == '\0' || data != NULL) {
        fail("get through an unreachable discovery node: status %s, message \"%s\"",
             pastry_status_text(status), pastry_last_error());
    }
    printf("network: unreachable discovery: %s: %s\n", pastry_status_text(status),
           pastry_last_error());
    pastry_client_free(client);
}

/* A client holding another key is refused (the handshake fails), so its get fails; a new
 * client holding the network's key gets the same object. */
static void check_other_key(const struct network *net) {
    const struct object *o = &net->objects[3];
    PastrySecurity *other = NULL;
    ok(pastry_security_generate(&other), "pastry_security_generate (other key)");
    PastryClientOptions options;
    ok(pastry_client_options_init(&options, sizeof options), "pastry_client_options_init");
    options.discovery = net->address;
    options.security = other;
    options.retry_ms = 200; /* it will not get in: fail fast */
    PastryClient *stranger = NULL;
    ok(pastry_client_start(&options, &stranger), "pastry_client_start (other key)");
    /* The client keeps its own copy of the key. */
    pastry_security_free(other);
    PastryBuffer *data = NULL;
    PastryStatus status =
        pastry_client_get(stranger, (const uint8_t *)o->name, o->name_len, &data, NULL);
    if (status == PASTRY_STATUS_OK || pastry_last_error()[0] == '\0' || data != NULL) {
        fail("get with another key: status %s, message \"%s\"", pastry_status_text(status),
             pastry_last_error());
    }
    printf("network: another key: %s: %s\n", pastry_status_text(status), pastry_last_error());
    pastry_client_free(stranger);

    PastryClient *member = NULL;
    ok(pastry_client_new(net->address, net->security, &member), "pastry_client_new");
    ok(pastry_client_get(member, (const uint8_t *)o->name, o->name_len, &data, NULL),
       "get with the network's key");
    if (data->len != o->len || (o->len > 0 && memcmp(data->data, o->data, o->len) != 0)) {
        fail("%s: got %zu bytes that differ from the %zu put", o->name, data->len, o->len);
    }
    pastry_buffer_free(data);
    pastry_client_free(member);
}

/* A client given only the client key derived from the network's key reads what was stored
 * and writes and deletes its own objects. */
static void check_client_key(const struct network *net) {
    const struct object *o = &net->objects[4];
    PastrySecurity *client_key = NULL;
    ok(pastry_security_client_key(net->security, &client_key), "pastry_security_client_key");
    PastryClient *client = NULL;
    ok(pastry_client_new(net->address, client_key, &client), "pastry_client_new (client key)");
    pastry_security_free(client_key);
    PastryBuffer *data = NULL;
    ok(pastry_client_get(client, (const uint8_t *)o->name, o->name_len, &data, NULL),
       "get with the client key");
    if (data->len != o->len || (o->len > 0 && memcmp(data->data, o->data, o->len) != 0)) {
        fail("%s: got %zu bytes that differ from the %zu put", o->name, data->len, o->len);
    }
    pastry_buffer_free(data);
    const char *name = "written-with-the-client-key";
    ok(pastry_client_put(client, (const uint8_t *)name, strlen(name), (const uint8_t *)"v", 1,
                         NULL),
       "put with the client key");
    ok(pastry_client_delete(client, (const uint8_t *)name, strlen(name), NULL, NULL),
       "delete with the client key");
    printf("network: a client with the client key reads, writes and deletes\n");
    pastry_client_free(client);
}

static void leave_two(struct network *net) {
    const size_t leaving[] = {2, 5};
    for (size_t i = 0; i < 2; i++) {
        ok(pastry_node_leave(net->nodes[leaving[i]]), "pastry_node_leave");
        net->live[leaving[i]] = false;
    }
    printf("network: %04x and %04x left\n", (unsigned)net->info[2].id,
           (unsigned)net->info[5].id);
}

int main(int argc, char **argv) {
    rng_state = argc > 1 ? strtoull(argv[1], NULL, 10) : 2024;
    if (pastry_version()[0] == '\0') {
        fail("pastry_version() is empty");
    }

    static struct network net; /* large: not on the stack */
    start_network(&net);
    check_peers(&net);

    PastryClient *client = NULL;
    ok(pastry_client_new(net.address, net.security, &client), "pastry_client_new");
    make_objects(&net);
    put_objects(&net, client);
    size_t copies = check_placement(&net);
    get_objects(&net, client);
    printf("network: %d objects put, read back, each kept by its %zu best-placed nodes\n",
           OBJECTS, copies);

    check_other_key(&net);
    check_client_key(&net);
    check_lookups(&net);
    check_tables(&net);
    delete_one(&net, client);
    check_placement(&net);
    check_error_paths(&net);
    check_peers(&net);

    leave_two(&net);
    check_peers(&net);
    get_objects(&net, client);
    if (check_placement(&net) != copies) {
        fail("the number of copies changed after the leaves");
    }
    printf("network: every object still there after the leaves\n");

    pastry_client_free(client);
    for (size_t i = 0; i < NODES; i++) {
        pastry_node_free(net.nodes[i]);
    }
    pastry_discovery_free(net.discovery);
    pastry_security_free(net.security);
    for (size_t i = 0; i < OBJECTS; i++) {
        free(net.objects[i].data);
    }
    printf("network: all checks passed\n");
    return 0;
}
