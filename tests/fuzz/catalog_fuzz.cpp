// libFuzzer target: the admin's catalog text, as Catalog::parse reads it in every plugin and
// tool. Checked besides memory safety:
//   - only svm::Error comes out, with a one-line message (it goes to Slurm's logs and to users);
//   - an accepted catalog holds only valid, distinct image names that find() finds, and the
//     access checks and refusal messages work on it.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "catalog/catalog.h"
#include "util/error.h"
#include "catalog/image_name.h"

namespace {

void check(bool condition, const char *what) {
    if (!condition) {
        std::fprintf(stderr, "invariant broken: %s\n", what);
        std::abort();
    }
}

bool one_line(const std::string &text) {
    return text.find('\n') == std::string::npos && text.find('\r') == std::string::npos;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    const std::string text(reinterpret_cast<const char *>(data), size);
    svm::Catalog catalog;
    try {
        catalog = svm::Catalog::parse(text, "fuzz.json");
    } catch (const svm::Error &e) {
        check(one_line(e.what()), "a catalog error spans lines");
        return 0;
    }
    const svm::UserIdentity who{"alice", {"users", "wheel"}, "physics"};
    for (const svm::Image &image : catalog.images()) {
        check(svm::image_name_problem(image.name).empty(), "an invalid image name was accepted");
        check(catalog.find(image.name) == &image, "find() misses an image or finds another");
        check(image.limits.default_vcpus <= image.limits.max_vcpus, "default vCPUs above max");
        check(image.limits.default_memory_mib <= image.limits.max_memory_mib,
              "default memory above max");
        svm::may_use(image, who);
        check(one_line(svm::image_refusal(catalog, image.name, who)), "a refusal spans lines");
    }
    svm::usable_images(catalog, who);
    check(one_line(svm::image_refusal(catalog, "no-such-image", who)), "a refusal spans lines");
    return 0;
}
