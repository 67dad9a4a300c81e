// RAII for the libvirt handles the core uses, and libvirt's error text in our messages.
#pragma once

#include <libvirt/libvirt.h>

#include <memory>
#include <string>

namespace svm {

struct ConnectionCloser {
    void operator()(virConnectPtr conn) const noexcept { virConnectClose(conn); }
};
struct DomainFreer {
    // Frees the client-side handle only: the domain itself keeps running.
    void operator()(virDomainPtr dom) const noexcept { virDomainFree(dom); }
};

using ConnectionPtr = std::unique_ptr<virConnect, ConnectionCloser>;
using DomainPtr = std::unique_ptr<virDomain, DomainFreer>;

// The first line of libvirt's last error message on this thread, or "unknown libvirt error".
std::string libvirt_last_error();

// libvirt's last error code on this thread (VIR_ERR_OK when there is none).
int libvirt_last_error_code();

// Stops libvirt from printing its errors on stderr, which in slurmd ends up nowhere useful:
// we put libvirt's message into our own errors instead. Process-wide, done once; every entry
// point of this file calls it, so callers rarely need to.
void silence_libvirt_stderr();

// Opens a read-write connection, e.g. "qemu:///system" or "test:///default".
// Throws Error: "cannot connect to libvirt at <uri>: <libvirt's message>".
ConnectionPtr open_connection(const std::string &uri);

}  // namespace svm
