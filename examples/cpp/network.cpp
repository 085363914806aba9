// A whole Pastry network in one process, through libpastry's C ABI from C++17 with the
// small RAII skin in pastry.hpp; the same checks as examples/c/network.c:
//
// - a discovery node and 8 nodes that join through it, all holding one cluster key made
//   here; discovery lists all 8;
// - 50 objects of 0 to 100 KiB of pseudo-random bytes are put and read back intact; the
//   route of every put, get and lookup ends at the responsible node, and each object is
//   kept by the nodes best placed for its key (the responsible one, and the next best if the
//   library keeps copies), all the same number of times;
// - a client holding another key cannot get an object; a new client holding the right key
//   can;
// - one is deleted, after which a get says PASTRY_STATUS_NOT_FOUND with a message;
// - error paths: an id already in use, an unreachable discovery node, a malformed address;
// - lookups, leaf sets, routing tables and the objects each node holds;
// - two nodes leave gracefully and every object is still there, on its new holder.
//
//     network_cpp [SEED]
//
// Prints `network: all checks passed` and exits 0, or prints the first mismatch on stderr
// and exits 1.
//
// Build (after `cargo build`), from the repository's root:
//     c++ -std=c++17 -Wall -Wextra -Werror -pedantic -I include
//         examples/cpp/network.cpp target/debug/libpastry.a -lpthread -ldl -lm -o network_cpp

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <iostream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "pastry.hpp"

namespace {

constexpr std::size_t kNodes = 8;
constexpr std::size_t kObjects = 50;
constexpr std::size_t kMaxSize = 100 * 1024;

// Throws with a message made of `parts`.
template <class... Parts>
[[noreturn]] void fail(const Parts&... parts) {
    std::ostringstream message;
    (message << ... << parts);
    throw std::runtime_error(message.str());
}

// An id or key as 4 hex digits.
std::string hex(std::uint16_t id) {
    char text[8];
    std::snprintf(text, sizeof text, "%04x", static_cast<unsigned>(id));
    return text;
}

// Calls `f` and returns the status of the `pastry::Error` it throws (OK if none), after
// checking that a failure comes with a message.
template <class F>
PastryStatus status_of(F f) {
    try {
        f();
        return PASTRY_STATUS_OK;
    } catch (const pastry::Error& e) {
        if (pastry_last_error()[0] == '\0') {
            fail("status ", pastry_status_text(e.status()), " but pastry_last_error() is empty");
        }
        return e.status();
    }
}

// ----- The oracle ------------------------------------------------------------------------

// Distance on the ring of 2^16 ids: the shorter way round.
std::uint16_t distance(std::uint16_t a, std::uint16_t b) {
    return std::min<std::uint16_t>(static_cast<std::uint16_t>(a - b),
                                   static_cast<std::uint16_t>(b - a));
}

// The id among `ids` closest to `key`; of two equally close, the larger.
std::uint16_t responsible(std::uint16_t key, const std::vector<std::uint16_t>& ids) {
    return *std::min_element(ids.begin(), ids.end(), [key](std::uint16_t a, std::uint16_t b) {
        auto da = distance(a, key), db = distance(b, key);
        return da < db || (da == db && a > b);
    });
}

// How many leading hex digits two ids share (0 to 4).
int shared_digits(std::uint16_t a, std::uint16_t b) {
    int n = 0;
    while (n < 4 && ((a >> (12 - 4 * n)) & 0xf) == ((b >> (12 - 4 * n)) & 0xf)) {
        ++n;
    }
    return n;
}

// Pseudo-random numbers (splitmix64), so that every run is the same.
class Random {
public:
    explicit Random(std::uint64_t seed) : state_(seed) {}
    std::uint64_t next() {
        std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }

private:
    std::uint64_t state_;
};

// ----- The network -----------------------------------------------------------------------

std::uint16_t key_of(const std::string& name) {
    std::uint16_t key = 0;
    pastry::check(pastry_key_of(reinterpret_cast<const std::uint8_t*>(name.data()),
                                name.size(), &key),
                  "pastry_key_of");
    return key;
}

std::vector<std::uint16_t> ids_of(const PastryNodeInfo* items, std::size_t len) {
    std::vector<std::uint16_t> ids;
    for (std::size_t i = 0; i < len; ++i) {
        ids.push_back(items[i].id);
    }
    return ids;
}

std::vector<std::uint16_t> ids_of(const PastryNodeList& list) {
    return ids_of(list.items, list.len);
}

struct Object {
    std::string name;
    std::uint16_t key;
    std::vector<std::uint8_t> data;
    bool deleted = false;

    const std::uint8_t* name_bytes() const {
        return reinterpret_cast<const std::uint8_t*>(name.data());
    }
};

class Network {
public:
    explicit Network(std::uint64_t seed) : random_(seed) {
        // In memory only: every member is in this process.
        pastry::check(pastry_security_generate(pastry::out_ptr(security_)),
                      "pastry_security_generate");
        pastry::check(
            pastry_discovery_start("127.0.0.1:0", security_.get(), pastry::out_ptr(discovery_)),
            "pastry_discovery_start");
        char address[PASTRY_ADDR_LEN];
        pastry::check(pastry_discovery_address(discovery_.get(), address, sizeof address),
                      "pastry_discovery_address");
        address_ = address;
        while (nodes_.size() < kNodes) {
            auto id = static_cast<std::uint16_t>(random_.next());
            if (std::find(ids_.begin(), ids_.end(), id) != ids_.end()) {
                continue;  // distinct ids
            }
            PastryNodeOptions options;
            pastry::check(pastry_node_options_init(&options, sizeof options));
            options.id = id;
            options.security = security_.get();
            pastry::Node node;
            pastry::check(pastry_node_start(&options, pastry::out_ptr(node)), "pastry_node_start");
            pastry::check(pastry_node_join_discovery(node.get(), address_.c_str()),
                          "pastry_node_join_discovery");
            PastryNodeInfo info;
            pastry::check(pastry_node_info(node.get(), &info), "pastry_node_info");
            if (info.id != id) {
                fail("node started with id ", hex(id), " says it is ", hex(info.id));
            }
            nodes_.push_back(std::move(node));
            ids_.push_back(id);
            live_.push_back(true);
        }
        std::cout << "network: discovery on " << address_ << ", " << kNodes << " nodes joined\n";
    }

    const std::string& address() const { return address_; }
    const PastrySecurity* security() const { return security_.get(); }

    std::vector<std::uint16_t> live_ids() const {
        std::vector<std::uint16_t> ids;
        for (std::size_t i = 0; i < ids_.size(); ++i) {
            if (live_[i]) {
                ids.push_back(ids_[i]);
            }
        }
        return ids;
    }

    bool is_live(std::uint16_t id) const {
        auto live = live_ids();
        return std::find(live.begin(), live.end(), id) != live.end();
    }

    // Fails unless `route` is not empty and ends at the node responsible for `key`.
    void check_route(const PastryNodeList& route, std::uint16_t key, const std::string& what) {
        if (route.len == 0) {
            fail(what, ": empty route");
        }
        auto holder = route.items[route.len - 1].id;
        auto want = responsible(key, live_ids());
        if (holder != want) {
            fail(what, ": route for key ", hex(key), " ends at ", hex(holder), ", but ",
                 hex(want), " is responsible");
        }
    }

    // Fails unless discovery lists exactly the live nodes, sorted by id.
    void check_peers() {
        pastry::NodeList peers;
        pastry::check(pastry_discovery_peers(discovery_.get(), pastry::out_ptr(peers)),
                      "pastry_discovery_peers");
        auto want = live_ids();
        std::sort(want.begin(), want.end());
        if (ids_of(*peers) != want) {
            fail("discovery lists ", peers->len, " peers, not the ", want.size(), " live nodes");
        }
    }

    void make_objects() {
        for (std::size_t i = 0; i < kObjects; ++i) {
            Object o;
            char name[32];
            std::snprintf(name, sizeof name, "object-%02zu.bin", i);
            o.name = name;
            o.key = key_of(o.name);
            auto size = i == 0 ? 0 : i == 1 ? kMaxSize : random_.next() % (kMaxSize + 1);
            for (std::size_t j = 0; j < size; ++j) {
                o.data.push_back(static_cast<std::uint8_t>(random_.next()));
            }
            objects_.push_back(std::move(o));
        }
    }

    void put_objects(const pastry::Client& client) {
        for (const auto& o : objects_) {
            pastry::NodeList route;
            pastry::check(pastry_client_put(client.get(), o.name_bytes(), o.name.size(),
                                            o.data.data(), o.data.size(), pastry::out_ptr(route)),
                          o.name);
            check_route(*route, o.key, o.name);
        }
    }

    // Gets every object not deleted and compares it with what was put.
    void get_objects(const pastry::Client& client) {
        for (const auto& o : objects_) {
            if (o.deleted) {
                continue;
            }
            pastry::Buffer data;
            pastry::NodeList route;
            pastry::check(pastry_client_get(client.get(), o.name_bytes(), o.name.size(),
                                            pastry::out_ptr(data), pastry::out_ptr(route)),
                          o.name);
            if (data->len != o.data.size() ||
                (data->len > 0 && std::memcmp(data->data, o.data.data(), data->len) != 0)) {
                fail(o.name, ": got ", data->len, " bytes that differ from the ", o.data.size(),
                     " put");
            }
            check_route(*route, o.key, o.name);
        }
    }

    // The live ids ranked for `key`, best placed first (the responsible node first).
    std::vector<std::uint16_t> ranked_for(std::uint16_t key) const {
        auto ids = live_ids();
        std::sort(ids.begin(), ids.end(), [key](std::uint16_t a, std::uint16_t b) {
            auto da = distance(a, key), db = distance(b, key);
            return da < db || (da == db && a > b);
        });
        return ids;
    }

    // An empty string if every object not deleted is kept by the nodes best placed for its
    // key (the responsible node and, if the library keeps copies, the next best), every
    // object the same number of times, and nothing else is held anywhere (a node that left
    // holds nothing); else what is wrong. Sets `copies` to the number of copies.
    std::string placement_problem(std::size_t& copies) const {
        std::map<std::string, std::vector<std::uint16_t>> holders;
        for (std::size_t n = 0; n < nodes_.size(); ++n) {
            pastry::ObjectList list;
            pastry::check(pastry_node_objects(nodes_[n].get(), pastry::out_ptr(list)),
                          "pastry_node_objects");
            for (std::size_t k = 0; k < list->len; ++k) {
                const auto& info = list->items[k];
                std::string name(reinterpret_cast<const char*>(info.name), info.name_len);
                auto o = std::find_if(objects_.begin(), objects_.end(),
                                      [&](const Object& c) { return c.name == name; });
                if (o == objects_.end() || o->deleted || !live_[n]) {
                    return "node " + hex(ids_[n]) + " holds " + name + ", which it should not";
                }
                if (info.key != o->key || info.size != o->data.size()) {
                    fail("node ", hex(ids_[n]), " lists ", name, " with key ", hex(info.key),
                         " and size ", info.size);
                }
                holders[name].push_back(ids_[n]);
            }
        }
        copies = 0;
        for (const auto& o : objects_) {
            if (o.deleted) {
                continue;
            }
            auto held = holders[o.name];
            auto best = ranked_for(o.key);
            best.resize(std::min(held.size(), best.size()));
            std::sort(held.begin(), held.end());
            std::sort(best.begin(), best.end());
            if (held.empty() || held != best) {
                return o.name + " (key " + hex(o.key) + ") is held by " +
                       std::to_string(held.size()) + " nodes, not the best placed (responsible: " +
                       hex(ranked_for(o.key)[0]) + ")";
            }
            if (copies != 0 && held.size() != copies) {
                return o.name + " is kept " + std::to_string(held.size()) + " times, others " +
                       std::to_string(copies) + " times";
            }
            copies = held.size();
        }
        return "";
    }

    // Waits up to 30 s for the objects to be placed (copies move in the background after a
    // node leaves); fails if they are not. Returns the number of copies of each.
    std::size_t check_placement() const {
        std::size_t copies = 0;
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
        auto problem = placement_problem(copies);
        while (!problem.empty()) {
            if (std::chrono::steady_clock::now() > deadline) {
                fail("objects not placed after 30 s: ", problem);
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
            problem = placement_problem(copies);
        }
        return copies;
    }

    // Lookups of a few keys, each from another node.
    void check_lookups() {
        auto hello = key_of("hello.txt");
        if (hello != 0xf34c) {
            fail("key of hello.txt is ", hex(hello), ", want f34c");
        }
        const std::uint16_t keys[] = {0x0000, 0xffff, 0x8000, hello, ids_[3],
                                      static_cast<std::uint16_t>(ids_[5] + 1)};
        std::size_t from = 0;
        for (auto key : keys) {
            pastry::NodeList route;
            pastry::check(pastry_node_lookup(nodes_[from].get(), key, pastry::out_ptr(route)),
                          "pastry_node_lookup");
            check_route(*route, key, "lookup");
            if (route->items[0].id != ids_[from]) {
                fail("lookup from ", hex(ids_[from]), " starts at ", hex(route->items[0].id));
            }
            from = (from + 1) % nodes_.size();
        }
    }

    // Each node's leaf set holds every other node on each side (8 nodes, 8 on each side),
    // both sides in ring order; its routing table holds live nodes, each in its cell.
    void check_tables() {
        for (std::size_t n = 0; n < nodes_.size(); ++n) {
            auto own = ids_[n];
            pastry::LeafSet leaves;
            pastry::check(pastry_node_leaf_set(nodes_[n].get(), pastry::out_ptr(leaves)),
                          "pastry_node_leaf_set");
            auto clockwise = [own](std::uint16_t a, std::uint16_t b) {
                return static_cast<std::uint16_t>(a - own) < static_cast<std::uint16_t>(b - own);
            };
            auto others = live_ids();
            others.erase(std::find(others.begin(), others.end(), own));
            std::sort(others.begin(), others.end(), clockwise);
            if (ids_of(leaves->clockwise, leaves->clockwise_len) != others ||
                ids_of(leaves->counter_clockwise, leaves->counter_clockwise_len) != others) {
                fail("leaf set of ", hex(own), " is not every other node on each side, in order");
            }

            pastry::RoutingTable table;
            pastry::check(pastry_node_routing_table(nodes_[n].get(), pastry::out_ptr(table)),
                          "pastry_node_routing_table");
            int cell = -1;
            for (std::size_t i = 0; i < table->len; ++i) {
                const auto& entry = table->items[i];
                auto id = entry.node.id;
                unsigned digit = (id >> (12 - 4 * entry.row)) & 0xfu;
                if (id == own || !is_live(id) || shared_digits(own, id) != entry.row ||
                    digit != entry.column || entry.row * 16 + entry.column <= cell) {
                    fail("routing table of ", hex(own), ": ", hex(id), " is out of place");
                }
                cell = entry.row * 16 + entry.column;
            }
        }
    }

    void delete_one(const pastry::Client& client) {
        auto& o = objects_[7];
        bool existed = false;
        pastry::NodeList route;
        pastry::check(pastry_client_delete(client.get(), o.name_bytes(), o.name.size(),
                                           &existed, pastry::out_ptr(route)),
                      "pastry_client_delete");
        if (!existed) {
            fail("delete ", o.name, ": the object did not exist");
        }
        check_route(*route, o.key, "delete");
        o.deleted = true;

        pastry::Buffer data;
        auto status = pastry_client_get(client.get(), o.name_bytes(), o.name.size(),
                                        pastry::out_ptr(data), nullptr);
        if (status != PASTRY_STATUS_NOT_FOUND || pastry_last_error()[0] == '\0' || data) {
            fail("get after delete: ", pastry_status_text(status), ": ", pastry_last_error());
        }

        existed = true;
        pastry::check(pastry_client_delete(client.get(), o.name_bytes(), o.name.size(),
                                           &existed, nullptr),
                      "pastry_client_delete again");
        if (existed) {
            fail("delete ", o.name, " again: the object still existed");
        }
    }

    void check_error_paths() {
        // A node with an id already in use cannot join.
        PastryNodeOptions options;
        pastry::check(pastry_node_options_init(&options, sizeof options));
        options.id = ids_[0];
        options.security = security_.get();
        pastry::Node twin;
        pastry::check(pastry_node_start(&options, pastry::out_ptr(twin)), "pastry_node_start");
        auto status = status_of([&] {
            pastry::check(pastry_node_join_discovery(twin.get(), address_.c_str()));
        });
        if (status != PASTRY_STATUS_ID_IN_USE) {
            fail("joining with an id in use: ", pastry_status_text(status));
        }

        // A malformed address.
        pastry::Client client;
        status = status_of([&] {
            pastry::check(
                pastry_client_new("not an address", security_.get(), pastry::out_ptr(client)));
        });
        if (status != PASTRY_STATUS_INVALID_ARGUMENT || client) {
            fail("pastry_client_new with a malformed address: ", pastry_status_text(status));
        }

        // An unreachable discovery node: making the client succeeds, using it fails (after
        // the client's retries, cut short here to 200 ms).
        PastryClientOptions client_options;
        pastry::check(pastry_client_options_init(&client_options, sizeof client_options));
        client_options.discovery = "127.0.0.1:1";
        client_options.security = security_.get();
        client_options.retry_ms = 200;
        pastry::check(pastry_client_start(&client_options, pastry::out_ptr(client)));
        try {
            pastry::Buffer data;
            pastry::check(pastry_client_get(client.get(), reinterpret_cast<const std::uint8_t*>("x"),
                                            1, pastry::out_ptr(data), nullptr),
                          "get through an unreachable discovery node");
            fail("get through an unreachable discovery node succeeded");
        } catch (const pastry::Error& e) {
            std::cout << "network: " << e.what() << '\n';
        }
    }

    // A client holding another key is refused (the handshake fails), so its get fails; a new
    // client holding the network's key gets the same object.
    void check_other_key() {
        const auto& o = objects_[3];
        pastry::Client stranger;
        {
            pastry::Security other;
            pastry::check(pastry_security_generate(pastry::out_ptr(other)),
                          "pastry_security_generate");
            PastryClientOptions options;
            pastry::check(pastry_client_options_init(&options, sizeof options));
            options.discovery = address_.c_str();
            options.security = other.get();
            options.retry_ms = 200;  // it will not get in: fail fast
            pastry::check(pastry_client_start(&options, pastry::out_ptr(stranger)),
                          "pastry_client_start");
        }  // the client keeps its own copy of the key
        pastry::Buffer data;
        auto status = status_of([&] {
            pastry::check(pastry_client_get(stranger.get(), o.name_bytes(), o.name.size(),
                                            pastry::out_ptr(data), nullptr));
        });
        if (status == PASTRY_STATUS_OK || data) {
            fail("get with another key: ", pastry_status_text(status));
        }
        std::cout << "network: another key: " << pastry_status_text(status) << ": "
                  << pastry_last_error() << '\n';

        pastry::Client member;
        pastry::check(
            pastry_client_new(address_.c_str(), security_.get(), pastry::out_ptr(member)),
            "pastry_client_new");
        pastry::check(pastry_client_get(member.get(), o.name_bytes(), o.name.size(),
                                        pastry::out_ptr(data), nullptr),
                      "get with the network's key");
        if (data->len != o.data.size() ||
            (data->len > 0 && std::memcmp(data->data, o.data.data(), data->len) != 0)) {
            fail(o.name, ": got ", data->len, " bytes that differ from the ", o.data.size(),
                 " put");
        }
    }

    void leave(std::size_t n) {
        pastry::check(pastry_node_leave(nodes_[n].get()), "pastry_node_leave");
        live_[n] = false;
        std::cout << "network: " << hex(ids_[n]) << " left\n";
    }

private:
    Random random_;
    // Declared first, so freed last (though every handle keeps its own copy).
    pastry::Security security_;
    pastry::Discovery discovery_;
    std::string address_;
    // Declared after the discovery node, so freed before it.
    std::vector<pastry::Node> nodes_;
    std::vector<std::uint16_t> ids_;
    std::vector<bool> live_;  // joined and not left
    std::vector<Object> objects_;
};

}  // namespace

int main(int argc, char** argv) {
    try {
        std::uint64_t seed = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 2024;
        Network net(seed);
        net.check_peers();

        pastry::Client client;
        pastry::check(
            pastry_client_new(net.address().c_str(), net.security(), pastry::out_ptr(client)),
            "pastry_client_new");
        net.make_objects();
        net.put_objects(client);
        auto copies = net.check_placement();
        net.get_objects(client);
        std::cout << "network: " << kObjects << " objects put, read back, each kept by its "
                  << copies << " best-placed nodes\n";

        net.check_other_key();
        net.check_lookups();
        net.check_tables();
        net.delete_one(client);
        net.check_placement();
        net.check_error_paths();
        net.check_peers();

        net.leave(2);
        net.leave(5);
        net.check_peers();
        net.get_objects(client);
        if (net.check_placement() != copies) {
            fail("the number of copies changed after the leaves");
        }
        std::cout << "network: every object still there after the leaves\n";
    } catch (const std::exception& e) {
        std::cerr << "network: FAILED: " << e.what() << '\n';
        return 1;
    }
    std::cout << "network: all checks passed\n";
    return 0;
}
