/*
 * The Common API from C: an application whose callbacks count what they see, registered on
 * every node of a network in this process. Messages routed to random keys must be delivered
 * at the responsible node, seen by `forward` at every node before it (each adding a mark the
 * next one sees), and a request must bring back the reply `deliver` set; a `forward` that
 * returns false stops a message; `update` hears of a node that joins.
 *
 *     apps
 *
 * Prints `apps: all N checks passed` and exits 0, or a line per failed check and exits 1.
 */

#define _POSIX_C_SOURCE 200809L /* nanosleep */

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pastry.h"

enum { NODES = 8, MESSAGES = 100 };

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

/* What one node's application saw. */
struct seen {
    uint16_t id;
    atomic_int forwarded;
    atomic_int delivered;
    atomic_int joins;
    /* Whether the last message delivered here carried the marks of every hop before. */
    atomic_int last_marks;
};

static void on_deliver(void *user, uint16_t key, const uint8_t *message, size_t len,
                       PastryBytes *reply) {
    (void)key;
    struct seen *seen = user;
    atomic_fetch_add(&seen->delivered, 1);
    int marks = 0;
    for (size_t i = 0; i < len; i++) {
        marks += message[i] == '+';
    }
    atomic_store(&seen->last_marks, marks);
    uint8_t answer[2] = {(uint8_t)(seen->id >> 8), (uint8_t)seen->id};
    pastry_bytes_set(reply, answer, sizeof answer);
}

static bool on_forward(void *user, uint16_t key, PastryBytes *message, const PastryNodeInfo *next) {
    (void)key;
    (void)next;
    struct seen *seen = user;
    atomic_fetch_add(&seen->forwarded, 1);
    const uint8_t *data = NULL;
    size_t len = 0;
    if (pastry_bytes_get(message, &data, &len) != PASTRY_STATUS_OK || len >= 64) {
        return false;
    }
    if (len > 0 && data[0] == '!') {
        return false; /* stopped here */
    }
    uint8_t marked[64];
    memcpy(marked, data, len);
    marked[len] = '+';
    return pastry_bytes_set(message, marked, len + 1) == PASTRY_STATUS_OK;
}

static void on_update(void *user, const PastryNodeInfo *node, bool joined) {
    (void)node;
    struct seen *seen = user;
    if (joined) {
        atomic_fetch_add(&seen->joins, 1);
    }
}

static PastryNode *start_node(const PastrySecurity *key, const char *discovery) {
    PastryNodeOptions options;
    CHECK_OK(pastry_node_options_init(&options, sizeof options));
    options.security = key;
    options.maintenance_interval_ms = 100;
    PastryNode *node = NULL;
    /* A random id: one a member holds already is drawn again. */
    CHECK_OK(pastry_node_start_joined(&options, discovery, &node));
    if (node == NULL) {
        exit(1);
    }
    return node;
}

int main(void) {
    PastrySecurity *key = NULL;
    CHECK_OK(pastry_security_generate(&key));
    PastryDiscovery *discovery = NULL;
    CHECK_OK(pastry_discovery_start("127.0.0.1:0", key, &discovery));
    char address[PASTRY_ADDR_LEN];
    CHECK_OK(pastry_discovery_address(discovery, address, sizeof address));

    PastryNode *nodes[NODES];
    static struct seen seen[NODES];
    uint16_t ids[NODES];
    for (int n = 0; n < NODES; n++) {
        nodes[n] = start_node(key, address);
        PastryNodeInfo info;
        CHECK_OK(pastry_node_info(nodes[n], &info));
        ids[n] = info.id;
        seen[n].id = info.id;
        PastryApplication app;
        CHECK_OK(pastry_application_init(&app, sizeof app));
        app.user = &seen[n];
        app.deliver = on_deliver;
        app.forward = on_forward;
        app.update = on_update;
        CHECK_OK(pastry_node_register_app(nodes[n], "counting", &app));
    }

    int hops = 0;
    for (int i = 0; i < MESSAGES; i++) {
        uint16_t k = (uint16_t)(i * 2654435761u >> 16);
        int from = i % NODES;
        uint16_t want = 0;
        CHECK_OK(pastry_responsible(k, ids, NODES, &want));
        PastryNodeList *route = NULL;
        PastryBuffer *reply = NULL;
        const uint8_t message[] = "m";
        CHECK_OK(pastry_node_request(nodes[from], "counting", k, message, 1, &reply, &route));
        if (route == NULL || reply == NULL) {
            continue;
        }
        uint16_t last = route->items[route->len - 1].id;
        CHECK(last == want);
        CHECK(route->items[0].id == ids[from]);
        CHECK(reply->len == 2 && (uint16_t)(reply->data[0] << 8 | reply->data[1]) == want);
        for (int n = 0; n < NODES; n++) {
            if (ids[n] == last) {
                CHECK(atomic_load(&seen[n].last_marks) == (int)route->len - 1);
            }
        }
        hops += (int)route->len - 1;
        pastry_node_list_free(route);
        pastry_buffer_free(reply);
    }
    int forwarded = 0, delivered = 0;
    for (int n = 0; n < NODES; n++) {
        forwarded += atomic_load(&seen[n].forwarded);
        delivered += atomic_load(&seen[n].delivered);
    }
    CHECK(delivered == MESSAGES);
    CHECK(forwarded == hops); /* one forward at every node before the last */

    /* A message that a forward stops: not delivered, its route ends at the sender. */
    uint16_t elsewhere = 0;
    for (uint32_t k = 0; k <= 0xffff; k++) {
        uint16_t owner = 0;
        pastry_responsible((uint16_t)k, ids, NODES, &owner);
        if (owner != ids[0]) {
            elsewhere = (uint16_t)k;
            break;
        }
    }
    bool was_delivered = true;
    PastryNodeList *route = NULL;
    CHECK_OK(pastry_node_route(nodes[0], "counting", elsewhere, (const uint8_t *)"!", 1,
                               &was_delivered, &route));
    CHECK(!was_delivered && route != NULL && route->len == 1);
    pastry_node_list_free(route);
    CHECK(pastry_node_route(nodes[0], "nobody", ids[1], NULL, 0, NULL, NULL) ==
          PASTRY_STATUS_REFUSED);

    /* A node joins: the applications of the nodes whose leaf sets take it hear of it. */
    int joins_before = 0;
    for (int n = 0; n < NODES; n++) {
        joins_before += atomic_load(&seen[n].joins);
    }
    PastryNode *late = start_node(key, address);
    int joins = joins_before;
    /* Bounded: at most 100 waits of 50 ms. */
    for (int tries = 0; tries < 100 && joins < joins_before + NODES; tries++) {
        struct timespec pause = {0, 50 * 1000 * 1000};
        nanosleep(&pause, NULL);
        joins = 0;
        for (int n = 0; n < NODES; n++) {
            joins += atomic_load(&seen[n].joins);
        }
    }
    CHECK(joins >= joins_before + NODES);

    for (int n = 0; n < NODES; n++) {
        CHECK_OK(pastry_node_unregister_app(nodes[n], "counting"));
    }
    pastry_node_free(late);
    for (int n = 0; n < NODES; n++) {
        pastry_node_free(nodes[n]);
    }
    pastry_discovery_free(discovery);
    pastry_security_free(key);
    if (failures > 0) {
        printf("apps: %d of %d checks failed\n", failures, checks);
        return 1;
    }
    printf("apps: all %d checks passed\n", checks);
    return 0;
}
