#include "util/error.h"

#include <cstring>

namespace svm {

std::string errno_text(int err) {
    char buf[256];
    // GNU strerror_r returns the message, which may or may not be buf.
    return strerror_r(err, buf, sizeof buf);
}

}  // namespace svm
