/*
 * Every function of libpastry's C ABI, called with NULL for each pointer argument in turn
 * (the others valid): each must return PASTRY_STATUS_NULL_PARAMETER with a message and leave
 * its out-parameters alone. Arguments documented as "NULL or writable" (`route_out`,
 * `existed_out`) and data documented as "NULL when the length is 0" are optional: with NULL
 * the call must succeed. Every `_free(NULL)` must do nothing. A security handle must be
 * given wherever one is taken: NULL, also as `options->security`, is a NULL argument too.
 *
 * A small network (a discovery node and one node, on loopback, holding a key generated here)
 * gives the calls real handles.
 *
 *     null_checks
 *
 * Prints a line per failed check; exits 0 with `null_checks: all N checks passed` if none
 * failed, 1 otherwise.
 */

#define _POSIX_C_SOURCE 200809L /* mkdtemp */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pastry.h"

static int checks = 0;
static int failures = 0;

/* Records a check: prints a line if it failed. */
static void check(bool passed, int line, const char *what) {
    checks++;
    if (!passed) {
        failures++;
        printf("FAILED (line %d): %s\n", line, what);
    }
}

/* Checks that a call returned `want`; a NULL_PARAMETER must come with a message. */
static void check_status(PastryStatus got, PastryStatus want, int line, const char *call) {
    checks++;
    if (got != want) {
        failures++;
        printf("FAILED (line %d): %s gave %d (%s), want %d (%s); last error: %s\n", line, call,
               (int)got, pastry_status_text(got), (int)want, pastry_status_text(want),
               pastry_last_error());
    } else if (want == PASTRY_STATUS_NULL_PARAMETER && pastry_last_error()[0] == '\0') {
        failures++;
        printf("FAILED (line %d): %s gave NULL_PARAMETER with no message\n", line, call);
    }
}

#define EXPECT_NULL(call) check_status((call), PASTRY_STATUS_NULL_PARAMETER, __LINE__, #call)
#define EXPECT_OK(call) check_status((call), PASTRY_STATUS_OK, __LINE__, #call)
#define EXPECT(condition) check((condition), __LINE__, #condition)
/* The last error names the argument `what`. */
#define EXPECT_NAMED(what) \
    check(strstr(pastry_last_error(), (what)) != NULL, __LINE__, "the message names " what)

/* A value an out-parameter is set to before a call that must not write it. */
#define UNTOUCHED(type) ((type *)(void *)&untouched)
static char untouched;

/* Writes `text` to the file at `path`. */
static bool write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        return false;
    }
    bool written = fwrite(text, 1, strlen(text), f) == strlen(text);
    return fclose(f) == 0 && written;
}

/* Whether a file exists at `path`. */
static bool exists(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f != NULL) {
        fclose(f);
    }
    return f != NULL;
}

/* Whether the file at `path` holds exactly `text`. */
static bool file_holds(const char *path, const char *text) {
    char buf[256];
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return false;
    }
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return n == strlen(text) && memcmp(buf, text, n) == 0;
}

static void free_functions(void) {
    pastry_node_list_free(NULL);
    pastry_buffer_free(NULL);
    pastry_object_list_free(NULL);
    pastry_leaf_set_free(NULL);
    pastry_routing_table_free(NULL);
    pastry_client_free(NULL);
    pastry_discovery_free(NULL);
    pastry_node_free(NULL);
    pastry_security_free(NULL);
    EXPECT("every _free(NULL) returned");
}

static void plain_functions(void) {
    EXPECT(pastry_last_error() != NULL);
    EXPECT(pastry_version() != NULL && pastry_version()[0] != '\0');
    for (uint32_t s = 0; s <= 14; s++) {
        EXPECT(pastry_status_text(s) != NULL && pastry_status_text(s)[0] != '\0');
    }
    EXPECT(strcmp(pastry_status_text(UINT32_MAX), "unknown status") == 0);

    const uint8_t name[] = "123456789";
    uint16_t key = 0xbeef;
    EXPECT_NULL(pastry_key_of(NULL, 9, &key));
    EXPECT(key == 0xbeef);
    EXPECT_NULL(pastry_key_of(name, 9, NULL));
    EXPECT_OK(pastry_key_of(name, 9, &key));
    EXPECT(key == 0x31c3);
    /* NULL with length 0 is the empty name, as documented. */
    EXPECT_OK(pastry_key_of(NULL, 0, &key));
    EXPECT(key == 0x0000);

    const uint16_t ids[] = {0x1000, 0x2000};
    uint16_t id = 0xbeef;
    EXPECT_NULL(pastry_responsible(0x1800, NULL, 2, &id));
    EXPECT_NULL(pastry_responsible(0x1800, ids, 2, NULL));
    EXPECT(id == 0xbeef);
    EXPECT_OK(pastry_responsible(0x1801, ids, 2, &id));
    EXPECT(id == 0x2000);

    PastryNetOptions net;
    EXPECT_NULL(pastry_net_options_init(NULL, sizeof net));
    EXPECT_OK(pastry_net_options_init(&net, sizeof net));
    EXPECT(net.size == sizeof net && net.io_timeout_ms == 5000);

    /* Turning logging off needs no callback; setting it needs one (NULL turns it off). */
    EXPECT_OK(pastry_set_log_callback(PASTRY_LOG_LEVEL_OFF, NULL, NULL));
    EXPECT_OK(pastry_set_log_callback(PASTRY_LOG_LEVEL_INFO, NULL, NULL));
}

/* Frees `security` unless a call that should have made it did not. */
static void free_made(PastrySecurity *security) {
    if (security != UNTOUCHED(PastrySecurity)) {
        pastry_security_free(security);
    }
}

/* Every way of making a security handle; returns a generated key for the network. */
static PastrySecurity *security_functions(void) {
    PastrySecurity *security = UNTOUCHED(PastrySecurity);
    EXPECT_NULL(pastry_security_insecure(NULL));
    EXPECT_OK(pastry_security_insecure(&security));
    free_made(security);

    /* One byte more than a key, so that every length tried below can be read. */
    const uint8_t bytes[PASTRY_KEY_LEN + 1] = {1, 2, 3};
    security = UNTOUCHED(PastrySecurity);
    EXPECT_NULL(pastry_security_from_bytes(NULL, PASTRY_KEY_LEN, &security));
    EXPECT(security == UNTOUCHED(PastrySecurity));
    EXPECT_NULL(pastry_security_from_bytes(bytes, PASTRY_KEY_LEN, NULL));
    /* A key is exactly PASTRY_KEY_LEN bytes: neither fewer nor more. */
    check_status(pastry_security_from_bytes(bytes, 0, &security),
                 PASTRY_STATUS_INVALID_ARGUMENT, __LINE__, "pastry_security_from_bytes, 0 bytes");
    check_status(pastry_security_from_bytes(bytes, PASTRY_KEY_LEN - 1, &security),
                 PASTRY_STATUS_INVALID_ARGUMENT, __LINE__, "pastry_security_from_bytes, 31 bytes");
    check_status(pastry_security_from_bytes(bytes, PASTRY_KEY_LEN + 1, &security),
                 PASTRY_STATUS_INVALID_ARGUMENT, __LINE__, "pastry_security_from_bytes, 33 bytes");
    EXPECT(security == UNTOUCHED(PastrySecurity));
    EXPECT_OK(pastry_security_from_bytes(bytes, PASTRY_KEY_LEN, &security));
    free_made(security);

    char dir[] = "/tmp/pastry-null-checks-XXXXXX";
    if (mkdtemp(dir) == NULL) {
        printf("null_checks: no temporary directory, cannot go on\n");
        exit(1);
    }
    char path[64];
    snprintf(path, sizeof path, "%s/cluster.key", dir);
    security = UNTOUCHED(PastrySecurity);
    EXPECT_NULL(pastry_security_new_key_file(NULL, &security));
    EXPECT(security == UNTOUCHED(PastrySecurity));
    EXPECT_NULL(pastry_security_new_key_file(path, NULL));
    EXPECT(!exists(path)); /* a NULL argument writes no file */
    EXPECT_OK(pastry_security_new_key_file(path, &security));
    free_made(security);
    security = UNTOUCHED(PastrySecurity);
    EXPECT_NULL(pastry_security_from_key_file(NULL, &security));
    EXPECT(security == UNTOUCHED(PastrySecurity));
    EXPECT_NULL(pastry_security_from_key_file(path, NULL));
    EXPECT_OK(pastry_security_from_key_file(path, &security));
    free_made(security);
    remove(path);
    remove(dir);

    security = UNTOUCHED(PastrySecurity);
    EXPECT_NULL(pastry_security_generate(NULL));
    EXPECT_NULL(pastry_security_client_key(NULL, &security));
    EXPECT_OK(pastry_security_generate(&security));
    if (security == UNTOUCHED(PastrySecurity)) {
        printf("null_checks: no key, cannot go on\n");
        exit(1);
    }
    EXPECT_NULL(pastry_security_client_key(security, NULL));
    return security;
}

static PastryDiscovery *discovery_functions(char *address, const PastrySecurity *security) {
    PastryDiscovery *discovery = UNTOUCHED(PastryDiscovery);
    EXPECT_NULL(pastry_discovery_start(NULL, security, &discovery));
    EXPECT_NULL(pastry_discovery_start("127.0.0.1:0", NULL, &discovery));
    EXPECT(discovery == UNTOUCHED(PastryDiscovery));
    EXPECT_NULL(pastry_discovery_start("127.0.0.1:0", security, NULL));
    EXPECT_OK(pastry_discovery_start("127.0.0.1:0", security, &discovery));
    if (discovery == UNTOUCHED(PastryDiscovery)) {
        printf("null_checks: no discovery node, cannot go on\n");
        exit(1);
    }

    strcpy(address, "untouched");
    EXPECT_NULL(pastry_discovery_address(NULL, address, PASTRY_ADDR_LEN));
    EXPECT(strcmp(address, "untouched") == 0);
    EXPECT_NULL(pastry_discovery_address(discovery, NULL, PASTRY_ADDR_LEN));
    check_status(pastry_discovery_address(discovery, address, 2),
                 PASTRY_STATUS_INVALID_ARGUMENT, __LINE__, "pastry_discovery_address, 2 bytes");
    EXPECT(strcmp(address, "untouched") == 0);
    EXPECT_OK(pastry_discovery_address(discovery, address, PASTRY_ADDR_LEN));

    PastryNodeList *peers = UNTOUCHED(PastryNodeList);
    EXPECT_NULL(pastry_discovery_peers(NULL, &peers));
    EXPECT(peers == UNTOUCHED(PastryNodeList));
    EXPECT_NULL(pastry_discovery_peers(discovery, NULL));
    EXPECT_OK(pastry_discovery_peers(discovery, &peers));
    EXPECT(peers != UNTOUCHED(PastryNodeList) && peers->len == 0);
    if (peers != UNTOUCHED(PastryNodeList)) {
        pastry_node_list_free(peers);
    }
    return discovery;
}

static PastryNode *node_functions(const char *discovery, const PastrySecurity *security) {
    PastryNodeOptions options;
    EXPECT_NULL(pastry_node_options_init(NULL, sizeof options));
    EXPECT_OK(pastry_node_options_init(&options, sizeof options));

    PastryNode *node = UNTOUCHED(PastryNode);
    EXPECT_NULL(pastry_node_start(NULL, &node));
    /* The defaults choose no security: it must be set. */
    EXPECT(options.security == NULL);
    EXPECT_NULL(pastry_node_start(&options, &node));
    EXPECT_NAMED("options->security");
    EXPECT(node == UNTOUCHED(PastryNode));
    options.security = security;
    EXPECT_NULL(pastry_node_start(&options, NULL));
    EXPECT_NULL(pastry_node_start_joined(NULL, discovery, &node));
    EXPECT_NULL(pastry_node_start_joined(&options, NULL, &node));
    EXPECT_NAMED("discovery");
    EXPECT_NULL(pastry_node_start_joined(&options, discovery, NULL));
    EXPECT(node == UNTOUCHED(PastryNode));
    EXPECT_OK(pastry_node_start(&options, &node));
    if (node == UNTOUCHED(PastryNode)) {
        printf("null_checks: no node, cannot go on\n");
        exit(1);
    }

    PastryNodeOptions running;
    running.size = sizeof running;
    running.id = -2;
    EXPECT_NULL(pastry_node_options_of(NULL, &running));
    EXPECT(running.id == -2);
    EXPECT_NULL(pastry_node_options_of(node, NULL));
    EXPECT_OK(pastry_node_options_of(node, &running));
    EXPECT(running.id >= 0 && running.listen != NULL && running.data_dir != NULL);

    PastryNetStats stats = {sizeof stats, 0, 0, 0, 0, 0, 0};
    EXPECT_NULL(pastry_node_stats(NULL, &stats));
    EXPECT_NULL(pastry_node_stats(node, NULL));
    EXPECT_OK(pastry_node_stats(node, &stats));

    PastryNodeInfo info;
    info.id = 0xbeef;
    EXPECT_NULL(pastry_node_info(NULL, &info));
    EXPECT(info.id == 0xbeef);
    EXPECT_NULL(pastry_node_info(node, NULL));

    /* None of these may join: the node joins through discovery below. */
    EXPECT_NULL(pastry_node_join_discovery(NULL, discovery));
    EXPECT_NULL(pastry_node_join_discovery(node, NULL));
    EXPECT_NULL(pastry_node_join_peer(NULL, discovery));
    EXPECT_NULL(pastry_node_join_peer(node, NULL));
    EXPECT_NULL(pastry_node_create(NULL));
    EXPECT_OK(pastry_node_join_discovery(node, discovery));
    EXPECT_NULL(pastry_node_use_discovery(NULL, discovery));
    EXPECT_NULL(pastry_node_use_discovery(node, NULL));
    EXPECT_OK(pastry_node_use_discovery(node, discovery));

    PastryNodeList *list = UNTOUCHED(PastryNodeList);
    EXPECT_NULL(pastry_node_lookup(NULL, 0x1234, &list));
    EXPECT(list == UNTOUCHED(PastryNodeList));
    EXPECT_NULL(pastry_node_lookup(node, 0x1234, NULL));
    PastryLeafSet *leaf_set = UNTOUCHED(PastryLeafSet);
    EXPECT_NULL(pastry_node_leaf_set(NULL, &leaf_set));
    EXPECT(leaf_set == UNTOUCHED(PastryLeafSet));
    EXPECT_NULL(pastry_node_leaf_set(node, NULL));
    PastryRoutingTable *table = UNTOUCHED(PastryRoutingTable);
    EXPECT_NULL(pastry_node_routing_table(NULL, &table));
    EXPECT(table == UNTOUCHED(PastryRoutingTable));
    EXPECT_NULL(pastry_node_routing_table(node, NULL));

    PastryObjectList *objects = UNTOUCHED(PastryObjectList);
    EXPECT_NULL(pastry_node_objects(NULL, &objects));
    EXPECT(objects == UNTOUCHED(PastryObjectList));
    EXPECT_NULL(pastry_node_objects(node, NULL));

    EXPECT_NULL(pastry_node_leave(NULL));
    return node;
}

static PastryClient *client_handles(const char *discovery, const char *peer,
                                    const PastrySecurity *security) {
    PastryClient *client = UNTOUCHED(PastryClient);
    EXPECT_NULL(pastry_client_via_peer(NULL, security, &client));
    EXPECT_NULL(pastry_client_via_peer(peer, NULL, &client));
    EXPECT(client == UNTOUCHED(PastryClient));
    EXPECT_NULL(pastry_client_via_peer(peer, security, NULL));
    EXPECT_OK(pastry_client_via_peer(peer, security, &client));
    if (client != UNTOUCHED(PastryClient)) {
        pastry_client_free(client);
    }

    PastryClientOptions options;
    EXPECT_NULL(pastry_client_options_init(NULL, sizeof options));
    EXPECT_OK(pastry_client_options_init(&options, sizeof options));
    client = UNTOUCHED(PastryClient);
    EXPECT_NULL(pastry_client_start(NULL, &client));
    options.security = security;
    EXPECT_NULL(pastry_client_start(&options, &client)); /* no entry set: both NULL */
    EXPECT(client == UNTOUCHED(PastryClient));
    options.peer = peer;
    EXPECT_NULL(pastry_client_start(&options, NULL));
    /* The defaults choose no security: it must be set. */
    options.security = NULL;
    EXPECT_NULL(pastry_client_start(&options, &client));
    EXPECT_NAMED("options->security");
    EXPECT(client == UNTOUCHED(PastryClient));
    options.security = security;
    EXPECT_OK(pastry_client_start(&options, &client));
    if (client != UNTOUCHED(PastryClient)) {
        PastryNetStats stats = {sizeof stats, 0, 0, 0, 0, 0, 0};
        EXPECT_NULL(pastry_client_stats(NULL, &stats));
        EXPECT_NULL(pastry_client_stats(client, NULL));
        EXPECT_OK(pastry_client_stats(client, &stats));
        pastry_client_free(client);
    }

    client = UNTOUCHED(PastryClient);
    EXPECT_NULL(pastry_client_new(NULL, security, &client));
    EXPECT_NULL(pastry_client_new(discovery, NULL, &client));
    EXPECT(client == UNTOUCHED(PastryClient));
    EXPECT_NULL(pastry_client_new(discovery, security, NULL));
    EXPECT_OK(pastry_client_new(discovery, security, &client));
    if (client == UNTOUCHED(PastryClient)) {
        printf("null_checks: no client, cannot go on\n");
        exit(1);
    }
    return client;
}

static void object_functions(const PastryClient *client) {
    const uint8_t name[] = "null-checks";
    const size_t name_len = sizeof name - 1;
    const uint8_t data[] = "some bytes";
    const size_t data_len = sizeof data - 1;
    PastryNodeList *route = UNTOUCHED(PastryNodeList);

    EXPECT_NULL(pastry_client_put(NULL, name, name_len, data, data_len, &route));
    EXPECT_NULL(pastry_client_put(client, NULL, name_len, data, data_len, &route));
    EXPECT_NULL(pastry_client_put(client, name, name_len, NULL, data_len, &route));
    EXPECT(route == UNTOUCHED(PastryNodeList));
    /* Optional: no route wanted; no data when there are 0 bytes. */
    EXPECT_OK(pastry_client_put(client, name, name_len, NULL, 0, NULL));
    EXPECT_OK(pastry_client_put(client, name, name_len, data, data_len, NULL));

    PastryBuffer *buffer = UNTOUCHED(PastryBuffer);
    EXPECT_NULL(pastry_client_get(NULL, name, name_len, &buffer, &route));
    EXPECT_NULL(pastry_client_get(client, NULL, name_len, &buffer, &route));
    EXPECT(buffer == UNTOUCHED(PastryBuffer) && route == UNTOUCHED(PastryNodeList));
    EXPECT_NULL(pastry_client_get(client, name, name_len, NULL, &route));
    EXPECT(route == UNTOUCHED(PastryNodeList));
    EXPECT_OK(pastry_client_get(client, name, name_len, &buffer, NULL));
    if (buffer != UNTOUCHED(PastryBuffer)) {
        EXPECT(buffer->len == data_len && memcmp(buffer->data, data, data_len) == 0);
        pastry_buffer_free(buffer);
    }

    bool existed = false;
    EXPECT_NULL(pastry_client_delete(NULL, name, name_len, &existed, &route));
    EXPECT_NULL(pastry_client_delete(client, NULL, name_len, &existed, &route));
    EXPECT(route == UNTOUCHED(PastryNodeList));
    /* Optional: whether it existed, the route. */
    EXPECT_OK(pastry_client_delete(client, name, name_len, NULL, NULL));
    EXPECT_OK(pastry_client_put(client, name, name_len, data, data_len, NULL));
    EXPECT_OK(pastry_client_delete(client, name, name_len, &existed, NULL));
    EXPECT(existed);
    route = NULL;
    EXPECT_OK(pastry_client_delete(client, name, name_len, NULL, &route));
    EXPECT(route != NULL && route->len > 0);
    pastry_node_list_free(route);
}

/* Reads from a string (`user`), as pastry_client_put_stream asks. */
static int64_t read_text(void *user, uint64_t offset, uint8_t *buf, size_t len) {
    const char *text = user;
    size_t size = strlen(text);
    size_t n = offset >= size ? 0 : size - (size_t)offset;
    n = n < len ? n : len;
    memcpy(buf, text + offset, n);
    return (int64_t)n;
}

/* Collects what pastry_client_get_stream hands over into a buffer (`user`). */
static int write_text(void *user, uint64_t offset, const uint8_t *data, size_t len) {
    char *buf = user;
    if (offset + len >= 64) {
        return 1;
    }
    memcpy(buf + offset, data, len);
    buf[offset + len] = '\0';
    return 0;
}

static void stream_functions(const PastryClient *client) {
    const uint8_t name[] = "null-checks-stream";
    const size_t name_len = sizeof name - 1;
    char text[] = "streamed through callbacks";
    PastryNodeList *route = UNTOUCHED(PastryNodeList);
    EXPECT_NULL(pastry_client_put_stream(NULL, name, name_len, strlen(text), read_text, text,
                                         &route));
    EXPECT_NULL(pastry_client_put_stream(client, NULL, name_len, strlen(text), read_text, text,
                                         &route));
    EXPECT_NULL(pastry_client_put_stream(client, name, name_len, strlen(text), NULL, text,
                                         &route));
    EXPECT(route == UNTOUCHED(PastryNodeList));
    /* Optional: no route wanted. */
    EXPECT_OK(pastry_client_put_stream(client, name, name_len, strlen(text), read_text, text,
                                       NULL));

    char got[64] = {0};
    uint64_t size = 0;
    EXPECT_NULL(pastry_client_get_stream(NULL, name, name_len, write_text, got, &size, &route));
    EXPECT_NULL(pastry_client_get_stream(client, NULL, name_len, write_text, got, &size, &route));
    EXPECT_NULL(pastry_client_get_stream(client, name, name_len, NULL, got, &size, &route));
    EXPECT(route == UNTOUCHED(PastryNodeList) && size == 0);
    EXPECT_OK(pastry_client_get_stream(client, name, name_len, write_text, got, NULL, NULL));
    EXPECT(strcmp(got, text) == 0);
    EXPECT_OK(pastry_client_get_stream(client, name, name_len, write_text, got, &size, NULL));
    EXPECT(size == strlen(text));
    EXPECT_OK(pastry_client_delete(client, name, name_len, NULL, NULL));
}

/* Answers every message with nothing. */
static void deliver_nothing(void *user, uint16_t key, const uint8_t *message, size_t len,
                            PastryBytes *reply) {
    (void)user;
    (void)key;
    (void)message;
    (void)len;
    (void)reply;
}

static void app_functions(const PastryNode *node) {
    PastryApplication app;
    EXPECT_NULL(pastry_application_init(NULL, sizeof app));
    EXPECT_OK(pastry_application_init(&app, sizeof app));
    EXPECT_NULL(pastry_node_register_app(node, "null-checks", &app)); /* no deliver */
    EXPECT_NAMED("app->deliver");
    app.deliver = deliver_nothing;
    EXPECT_NULL(pastry_node_register_app(NULL, "null-checks", &app));
    EXPECT_NULL(pastry_node_register_app(node, NULL, &app));
    EXPECT_NULL(pastry_node_register_app(node, "null-checks", NULL));
    EXPECT_OK(pastry_node_register_app(node, "null-checks", &app));

    const uint8_t message[] = "hello";
    PastryNodeList *route = UNTOUCHED(PastryNodeList);
    bool delivered = false;
    EXPECT_NULL(pastry_node_route(NULL, "null-checks", 1, message, 5, &delivered, &route));
    EXPECT_NULL(pastry_node_route(node, NULL, 1, message, 5, &delivered, &route));
    EXPECT_NULL(pastry_node_route(node, "null-checks", 1, NULL, 5, &delivered, &route));
    EXPECT(route == UNTOUCHED(PastryNodeList) && !delivered);
    /* Optional: whether it was delivered, the route; no message when it has 0 bytes. */
    EXPECT_OK(pastry_node_route(node, "null-checks", 1, NULL, 0, NULL, NULL));
    EXPECT_OK(pastry_node_route(node, "null-checks", 1, message, 5, &delivered, NULL));
    EXPECT(delivered);

    PastryBuffer *reply = UNTOUCHED(PastryBuffer);
    EXPECT_NULL(pastry_node_request(NULL, "null-checks", 1, message, 5, &reply, NULL));
    EXPECT_NULL(pastry_node_request(node, NULL, 1, message, 5, &reply, NULL));
    EXPECT_NULL(pastry_node_request(node, "null-checks", 1, NULL, 5, &reply, NULL));
    EXPECT_NULL(pastry_node_request(node, "null-checks", 1, message, 5, NULL, NULL));
    EXPECT(reply == UNTOUCHED(PastryBuffer));
    EXPECT_OK(pastry_node_request(node, "null-checks", 1, message, 5, &reply, NULL));
    if (reply != UNTOUCHED(PastryBuffer)) {
        EXPECT(reply->len == 0);
        pastry_buffer_free(reply);
    }

    const uint8_t *data = NULL;
    size_t len = 0;
    EXPECT_NULL(pastry_bytes_get(NULL, &data, &len));
    EXPECT_NULL(pastry_bytes_set(NULL, message, 5));

    EXPECT_NULL(pastry_node_unregister_app(NULL, "null-checks"));
    EXPECT_NULL(pastry_node_unregister_app(node, NULL));
    EXPECT_OK(pastry_node_unregister_app(node, "null-checks"));
}

static void file_functions(const PastryClient *client) {
    char dir[] = "/tmp/pastry-null-checks-XXXXXX";
    if (mkdtemp(dir) == NULL) {
        printf("null_checks: no temporary directory, cannot go on\n");
        exit(1);
    }
    char path[64];
    char copy[64];
    snprintf(path, sizeof path, "%s/null-checks.txt", dir);
    snprintf(copy, sizeof copy, "%s/copy.txt", dir);
    const char text[] = "a file stored by null_checks\n";
    EXPECT(write_file(path, text));

    PastryNodeList *route = UNTOUCHED(PastryNodeList);
    EXPECT_NULL(pastry_client_store_file(NULL, path, &route));
    EXPECT_NULL(pastry_client_store_file(client, NULL, &route));
    EXPECT(route == UNTOUCHED(PastryNodeList));
    EXPECT_OK(pastry_client_store_file(client, path, NULL));

    const uint8_t *name = (const uint8_t *)"null-checks.txt";
    EXPECT_NULL(pastry_client_retrieve_file(NULL, name, 15, copy, &route));
    EXPECT_NULL(pastry_client_retrieve_file(client, NULL, 15, copy, &route));
    EXPECT_NULL(pastry_client_retrieve_file(client, name, 15, NULL, &route));
    EXPECT(route == UNTOUCHED(PastryNodeList));
    EXPECT_OK(pastry_client_retrieve_file(client, name, 15, copy, NULL));
    EXPECT(file_holds(copy, text));

    EXPECT_OK(pastry_client_delete(client, (const uint8_t *)"null-checks.txt", 15, NULL, NULL));
    remove(copy);
    remove(path);
    remove(dir);
}

int main(void) {
    free_functions();
    plain_functions();

    PastrySecurity *security = security_functions();
    char address[PASTRY_ADDR_LEN];
    PastryDiscovery *discovery = discovery_functions(address, security);
    PastryNode *node = node_functions(address, security);
    PastryNodeInfo info = {0};
    EXPECT_OK(pastry_node_info(node, &info));
    PastryClient *client = client_handles(address, info.addr, security);
    /* The handles made with it keep their own copies: the rest runs without it. */
    pastry_security_free(security);
    object_functions(client);
    stream_functions(client);
    app_functions(node);
    file_functions(client);

    EXPECT_OK(pastry_node_leave(node));
    pastry_client_free(client);
    pastry_node_free(node);
    pastry_discovery_free(discovery);

    if (failures > 0) {
        printf("null_checks: %d of %d checks failed\n", failures, checks);
        return 1;
    }
    printf("null_checks: all %d checks passed\n", checks);
    return 0;
}
