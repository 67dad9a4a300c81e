#include "vm/libvirt_handles.h"

#include "util/error.h"

#include <libvirt/virterror.h>

#include <algorithm>
#include <mutex>

namespace svm {

namespace {

void ignore_libvirt_error(void *, virErrorPtr) {}

}  // namespace

std::string libvirt_last_error() {
    virErrorPtr err = virGetLastError();
    if (err == nullptr || err->message == nullptr || err->message[0] == '\0') {
        return "unknown libvirt error";
    }
    // XML errors add the offending line and a caret under it: keep our messages one line.
    std::string message = err->message;
    message.resize(std::min(message.size(), message.find('\n')));
    return message;
}

int libvirt_last_error_code() {
    virErrorPtr err = virGetLastError();
    return err == nullptr ? VIR_ERR_OK : err->code;
}

void silence_libvirt_stderr() {
    // Without a handler libvirt's default one prints every error to stderr, including the
    // ones we expect and handle (a domain that is already gone).
    static std::once_flag once;
    std::call_once(once, [] { virSetErrorFunc(nullptr, ignore_libvirt_error); });
}

ConnectionPtr open_connection(const std::string &uri) {
    silence_libvirt_stderr();
    ConnectionPtr conn(virConnectOpen(uri.c_str()));
    if (!conn) {
        throw Error("cannot connect to libvirt at " + uri + ": " + libvirt_last_error());
    }
    return conn;
}

}  // namespace svm
