/*
 * The StoreData program in C, over libpastry's C ABI: stores files in a Pastry overlay under
 * their base names, retrieves and deletes them.
 *
 *     store_data DISCOVERY_ADDR KEY_FILE store FILE...
 *     store_data DISCOVERY_ADDR KEY_FILE retrieve NAME OUTPUT
 *     store_data DISCOVERY_ADDR KEY_FILE delete NAME
 *
 * KEY_FILE holds the overlay's cluster key, as `pastry_security_new_key_file` or `discovery
 * --new-key` writes it: without the key, no member talks to the client.
 *
 * For each object it prints `NAME: key KEY`, then `hop I: ID ADDR` for each node on the
 * route from the entry peer, then the holder: `stored on ID ADDR`, `retrieved from ID ADDR
 * into OUTPUT` or `deleted on ID ADDR (existed)` (or `(absent)`). A failure is reported on
 * stderr as `error: STATUS: MESSAGE`.
 *
 * Exit status: 0 if every command succeeded, 1 if any failed, 2 for a usage error.
 *
 * Build (after `cargo build`), from the repository's root:
 *     cc -std=c11 -Wall -Wextra -Werror -pedantic -I include examples/c/store_data.c \
 *        target/debug/libpastry.a -lpthread -ldl -lm -o store_data
 */

#include <stdio.h>
#include <string.h>

#include "pastry.h"

static const char USAGE[] =
    "Usage: store_data DISCOVERY_ADDR KEY_FILE store FILE...\n"
    "       store_data DISCOVERY_ADDR KEY_FILE retrieve NAME OUTPUT\n"
    "       store_data DISCOVERY_ADDR KEY_FILE delete NAME\n";

/* Reports a failed call on stderr: its status and the library's message. */
static void report(PastryStatus status, const char *what) {
    fprintf(stderr, "error: %s: %s: %s\n", what, pastry_status_text(status), pastry_last_error());
}

/* The part of a path after its last '/': the name a file is stored under. */
static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* Prints `NAME: key KEY`. Returns 0, or 1 after reporting an error. */
static int print_key(const char *name) {
    uint16_t key = 0;
    PastryStatus status = pastry_key_of((const uint8_t *)name, strlen(name), &key);
    if (status != PASTRY_STATUS_OK) {
        report(status, name);
        return 1;
    }
    printf("%s: key %04x\n", name, (unsigned)key);
    return 0;
}

/* Prints every hop of `route`, then `VERB ID ADDR` for its last node, the holder. */
static void print_route(const PastryNodeList *route, const char *verb) {
    for (size_t i = 0; i < route->len; i++) {
        printf("hop %zu: %04x %s\n", i, (unsigned)route->items[i].id, route->items[i].addr);
    }
    if (route->len > 0) {
        const PastryNodeInfo *holder = &route->items[route->len - 1];
        printf("%s %04x %s", verb, (unsigned)holder->id, holder->addr);
    } else {
        printf("%s an unknown node", verb); /* a route always has a node: not expected */
    }
}

static int store(const PastryClient *client, const char *path) {
    const char *name = base_name(path);
    if (print_key(name) != 0) {
        return 1;
    }
    PastryNodeList *route = NULL;
    PastryStatus status = pastry_client_store_file(client, path, &route);
    if (status != PASTRY_STATUS_OK) {
        report(status, path);
        return 1;
    }
    print_route(route, "stored on");
    printf("\n");
    pastry_node_list_free(route);
    return 0;
}

static int retrieve(const PastryClient *client, const char *name, const char *output) {
    if (print_key(name) != 0) {
        return 1;
    }
    PastryNodeList *route = NULL;
    PastryStatus status =
        pastry_client_retrieve_file(client, (const uint8_t *)name, strlen(name), output, &route);
    if (status != PASTRY_STATUS_OK) {
        report(status, name);
        return 1;
    }
    print_route(route, "retrieved from");
    printf(" into %s\n", output);
    pastry_node_list_free(route);
    return 0;
}

static int delete_object(const PastryClient *client, const char *name) {
    if (print_key(name) != 0) {
        return 1;
    }
    PastryNodeList *route = NULL;
    bool existed = false;
    PastryStatus status =
        pastry_client_delete(client, (const uint8_t *)name, strlen(name), &existed, &route);
    if (status != PASTRY_STATUS_OK) {
        report(status, name);
        return 1;
    }
    print_route(route, "deleted on");
    printf(" (%s)\n", existed ? "existed" : "absent");
    pastry_node_list_free(route);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fputs(USAGE, stderr);
        return 2;
    }
    const char *discovery = argv[1];
    const char *key_file = argv[2];
    const char *command = argv[3];
    int operands = argc - 4;
    if (!((strcmp(command, "store") == 0 && operands >= 1) ||
          (strcmp(command, "retrieve") == 0 && operands == 2) ||
          (strcmp(command, "delete") == 0 && operands == 1))) {
        fputs(USAGE, stderr);
        return 2;
    }

    PastrySecurity *security = NULL;
    PastryStatus status = pastry_security_from_key_file(key_file, &security);
    if (status != PASTRY_STATUS_OK) {
        report(status, key_file);
        return 1;
    }
    PastryClient *client = NULL;
    status = pastry_client_new(discovery, security, &client);
    /* The client keeps its own copy of the key. */
    pastry_security_free(security);
    if (status != PASTRY_STATUS_OK) {
        report(status, discovery);
        return 1;
    }

    int failed = 0;
    if (strcmp(command, "store") == 0) {
        for (int i = 4; i < argc; i++) {
            failed |= store(client, argv[i]);
        }
    } else if (strcmp(command, "retrieve") == 0) {
        failed = retrieve(client, argv[4], argv[5]);
    } else {
        failed = delete_object(client, argv[4]);
    }

    pastry_client_free(client);
    return failed ? 1 : 0;
}
