// A small C++17 skin over libpastry's C ABI: owning pointers that call the right `_free`,
// and errors as exceptions. Everything else is the C API itself.
//
//     pastry::Security key;
//     pastry::check(pastry_security_from_key_file("cluster.key", pastry::out_ptr(key)));
//     pastry::Client client;
//     pastry::check(pastry_client_new("127.0.0.1:4000", key.get(), pastry::out_ptr(client)));
//     pastry::Buffer data;
//     pastry::check(pastry_client_get(client.get(), name, len, pastry::out_ptr(data), nullptr));

#ifndef PASTRY_HPP
#define PASTRY_HPP

#include <memory>
#include <stdexcept>
#include <string>

#include "pastry.h"

namespace pastry {

// Calls `Free` on what a `std::unique_ptr` owns (`Free` is a no-op on NULL, as every
// `_free` of the library is).
template <auto Free>
struct Deleter {
    template <class T>
    void operator()(T* p) const {
        Free(p);
    }
};

using Security = std::unique_ptr<PastrySecurity, Deleter<pastry_security_free>>;
using Discovery = std::unique_ptr<PastryDiscovery, Deleter<pastry_discovery_free>>;
using Node = std::unique_ptr<PastryNode, Deleter<pastry_node_free>>;
using Client = std::unique_ptr<PastryClient, Deleter<pastry_client_free>>;
using NodeList = std::unique_ptr<PastryNodeList, Deleter<pastry_node_list_free>>;
using Buffer = std::unique_ptr<PastryBuffer, Deleter<pastry_buffer_free>>;
using ObjectList = std::unique_ptr<PastryObjectList, Deleter<pastry_object_list_free>>;
using LeafSet = std::unique_ptr<PastryLeafSet, Deleter<pastry_leaf_set_free>>;
using RoutingTable = std::unique_ptr<PastryRoutingTable, Deleter<pastry_routing_table_free>>;

// A failed call: its status, and a message that ends with `pastry_last_error()`.
class Error : public std::runtime_error {
public:
    Error(PastryStatus status, const std::string& what)
        : std::runtime_error(what + ": " + pastry_status_text(status) + ": " +
                             pastry_last_error()),
          status_(status) {}

    PastryStatus status() const { return status_; }

private:
    PastryStatus status_;
};

// Throws an `Error` unless `status` is PASTRY_STATUS_OK.
inline void check(PastryStatus status, const std::string& what = "libpastry") {
    if (status != PASTRY_STATUS_OK) {
        throw Error(status, what);
    }
}

// Lets a C out-parameter (`T**`) fill a `std::unique_ptr<T>`, like C++23's std::out_ptr:
// `pastry_node_start(&options, out_ptr(node))`. The library writes out-parameters only on
// success; then the owner takes the result at the end of the full expression.
template <class Owner>
class out_ptr {
public:
    explicit out_ptr(Owner& owner) : owner_(owner) {}
    out_ptr(const out_ptr&) = delete;
    out_ptr& operator=(const out_ptr&) = delete;
    ~out_ptr() {
        if (raw_ != nullptr) {
            owner_.reset(raw_);
        }
    }
    operator typename Owner::pointer*() { return &raw_; }

private:
    Owner& owner_;
    typename Owner::pointer raw_ = nullptr;
};

}  // namespace pastry

#endif  // PASTRY_HPP
