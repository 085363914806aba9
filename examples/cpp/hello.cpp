// The smallest whole libpastry program in C++: a discovery node and three nodes in this
// process, a value put through a client and read back. Built by the tests from an
// installed library with nothing but `pkg-config --cflags --libs pastry`.
//
//     hello
//
// Prints `hello: all checks passed` and exits 0, or says what failed and exits 1.

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "pastry.hpp"

int main() {
    try {
        pastry::Security key;
        pastry::check(pastry_security_generate(pastry::out_ptr(key)), "generate a key");
        pastry::Discovery discovery;
        pastry::check(pastry_discovery_start("127.0.0.1:0", key.get(), pastry::out_ptr(discovery)),
                      "start discovery");
        char address[PASTRY_ADDR_LEN];
        pastry::check(pastry_discovery_address(discovery.get(), address, sizeof address));

        std::vector<pastry::Node> nodes(3);
        for (auto& node : nodes) {
            PastryNodeOptions options;
            pastry::check(pastry_node_options_init(&options, sizeof options));
            options.security = key.get();
            pastry::check(pastry_node_start(&options, pastry::out_ptr(node)), "start a node");
            pastry::check(pastry_node_join_discovery(node.get(), address), "join");
        }

        pastry::Client client;
        pastry::check(pastry_client_new(address, key.get(), pastry::out_ptr(client)));
        const std::string name = "greeting";
        const std::string text = "hello, pastry";
        auto bytes = [](const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); };
        pastry::check(pastry_client_put(client.get(), bytes(name), name.size(), bytes(text),
                                        text.size(), nullptr),
                      "put");
        pastry::Buffer data;
        pastry::check(pastry_client_get(client.get(), bytes(name), name.size(),
                                        pastry::out_ptr(data), nullptr),
                      "get");
        std::string got(reinterpret_cast<const char*>(data->data), data->len);
        if (got != text) {
            std::printf("hello: got \"%s\", want \"%s\"\n", got.c_str(), text.c_str());
            return 1;
        }
        if (std::strcmp(pastry_version(), PASTRY_VERSION_STRING) != 0) {
            std::printf("hello: library %s, header %s\n", pastry_version(), PASTRY_VERSION_STRING);
            return 1;
        }
    } catch (const pastry::Error& e) {
        std::printf("hello: %s\n", e.what());
        return 1;
    }
    std::printf("hello: all checks passed\n");
    return 0;
}
