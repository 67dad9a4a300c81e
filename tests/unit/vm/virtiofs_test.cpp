#include "vm/virtiofs.h"

#include "util/error.h"

#include <gtest/gtest.h>

namespace svm {
namespace {

TEST(Virtiofs, MapsNamespaceRootToNobodyAndTheJobsIdToItself) {
    EXPECT_EQ(virtiofsd_id_map(1000), "0 65534 1\n1000 1000 1\n");
    EXPECT_EQ(virtiofsd_id_map(0), "0 0 1\n");
}

TEST(Virtiofs, RefusesNobodyAndAMissingDaemonNamingTheShare) {
    VirtiofsdSpec spec;
    spec.shared_dir = "/home";
    spec.socket_path = "/nonexistent/v.sock";
    spec.uid = 65534;
    spec.gid = 100;
    try {
        start_virtiofsd(spec);
        FAIL() << "started";
    } catch (const Error &e) {
        EXPECT_STREQ(e.what(),
                     "virtiofs share /home: the job's user or group is nobody (65534), which "
                     "virtiofsd's namespace keeps for itself");
    }
    spec.uid = 1000;
    spec.binary = "/nonexistent/virtiofsd";
    try {
        start_virtiofsd(spec);
        FAIL() << "started";
    } catch (const Error &e) {
        EXPECT_STREQ(e.what(),
                     "virtiofs share /home: /nonexistent/virtiofsd cannot run: No such file or "
                     "directory (Debian's qemu-system-common ships it)");
    }
}

}  // namespace
}  // namespace svm
