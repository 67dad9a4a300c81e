#include "catalog/catalog.h"

#include "util/error.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <string>

namespace svm {
namespace {

const std::string data_dir = SVM_TEST_DATA_DIR;

std::string parse_error(const std::string &json) {
    try {
        Catalog::parse(json, "/etc/slurm/vm-images.json");
    } catch (const Error &e) {
        return e.what();
    }
    return "";
}

// One image entry with `fields` added after a valid name and kernel.
std::string one_image(const std::string &fields) {
    return R"({"images": [{"name": "tiny", "kernel": "/boot/vmlinux")" +
           (fields.empty() ? "" : ", " + fields) + "}]}";
}

const std::string prefix = "catalog /etc/slurm/vm-images.json: image 'tiny' (entry 0): ";

TEST(Catalog, LoadsExampleCatalog) {
    const Catalog catalog = Catalog::load(data_dir + "/catalog_example.json");
    ASSERT_EQ(catalog.images().size(), 3u);

    const Image *tiny = catalog.find("tiny");
    ASSERT_NE(tiny, nullptr);
    EXPECT_EQ(tiny->description, "busybox test guest");
    EXPECT_EQ(tiny->kernel, "/var/cache/slurm-vm/guest/X/vmlinux");
    EXPECT_EQ(tiny->initrd, "/var/cache/slurm-vm/guest/X/initrd.img");
    EXPECT_EQ(tiny->cmdline, "console=ttyS0 quiet");
    EXPECT_EQ(tiny->disk, "");
    EXPECT_EQ(tiny->limits.default_vcpus, 1u);
    EXPECT_EQ(tiny->limits.max_vcpus, 64u);
    EXPECT_EQ(tiny->limits.default_memory_mib, 256u);
    EXPECT_EQ(tiny->limits.max_memory_mib, 65536u);
    EXPECT_EQ(tiny->ready_timeout, 60u);
    EXPECT_TRUE(tiny->access.users.empty());

    const Image *deb = catalog.find("debian12");
    ASSERT_NE(deb, nullptr);
    EXPECT_EQ(deb->disk, "/srv/images/deb12.qcow2");
    EXPECT_EQ(deb->disk_format, "qcow2");
    EXPECT_EQ(deb->access.users, std::vector<std::string>{"alice"});
    EXPECT_EQ(deb->access.groups, std::vector<std::string>{"vmusers"});
    EXPECT_EQ(deb->access.accounts, std::vector<std::string>{"physics"});
    EXPECT_EQ(deb->ready_timeout, 0u);

    const Image *raw = catalog.find("bios-raw");
    ASSERT_NE(raw, nullptr);
    EXPECT_EQ(raw->kernel, "");
    EXPECT_EQ(raw->disk_format, "raw");

    EXPECT_EQ(catalog.find("nope"), nullptr);
}

TEST(Catalog, AppliesBuiltInLimitsWhenAbsent) {
    const Catalog catalog = Catalog::parse(one_image(""), "x");
    const ImageLimits &limits = catalog.images().at(0).limits;
    EXPECT_EQ(limits.default_vcpus, 1u);
    EXPECT_EQ(limits.max_vcpus, 256u);
    EXPECT_EQ(limits.default_memory_mib, 512u);
    EXPECT_EQ(limits.max_memory_mib, 1048576u);
    EXPECT_EQ(catalog.images().at(0).disk_format, "qcow2");
}

TEST(Catalog, LowersDefaultWhenOnlyMaxIsBelowIt) {
    const Catalog catalog = Catalog::parse(one_image(R"("memory_mib": {"max": 128})"), "x");
    EXPECT_EQ(catalog.images().at(0).limits.default_memory_mib, 128u);
    EXPECT_EQ(catalog.images().at(0).limits.max_memory_mib, 128u);
}

TEST(Catalog, AcceptsEmptyImageList) {
    EXPECT_TRUE(Catalog::parse(R"({"images": []})", "x").images().empty());
}

TEST(Catalog, ReportsMissingFile) {
    try {
        Catalog::load("/nonexistent/vm-images.json");
        FAIL() << "no error";
    } catch (const Error &e) {
        EXPECT_STREQ(e.what(),
                     "catalog /nonexistent/vm-images.json: cannot open: No such file or directory");
    }
}

TEST(Catalog, ReportsJsonSyntaxErrorWithLine) {
    EXPECT_EQ(parse_error("{\n  \"images\": [\n    {\"name\": \"tiny\",}\n  ]\n}\n"),
              "catalog /etc/slurm/vm-images.json: invalid JSON at line 3: unexpected character");
    EXPECT_EQ(parse_error("{\"images\": ["),
              "catalog /etc/slurm/vm-images.json: invalid JSON at line 1: unexpected end of file");
    EXPECT_EQ(parse_error(""),
              "catalog /etc/slurm/vm-images.json: invalid JSON at line 1: unexpected end of file");
}

TEST(Catalog, RejectsTextAfterTheTopLevelObject) {
    EXPECT_EQ(parse_error("{\"images\": []}\n{}"),
              "catalog /etc/slurm/vm-images.json: invalid JSON at line 2: unexpected character");
    EXPECT_EQ(parse_error("{\"images\": []}\n\n"), "");
}

TEST(Catalog, ReportsSyntaxErrorFromFileWithItsPath) {
    char dir_template[] = "/tmp/svm-catalog-test-XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    const std::string path = std::string(dir_template) + "/bad.json";
    std::ofstream(path) << "{\"images\": [\n\n  oops\n]}";
    std::string message;
    try {
        Catalog::load(path);
    } catch (const Error &e) {
        message = e.what();
    }
    unlink(path.c_str());
    rmdir(dir_template);
    EXPECT_EQ(message, "catalog " + path + ": invalid JSON at line 3: unexpected character");
}

TEST(Catalog, RejectsKeyGivenTwiceInOneObject) {
    EXPECT_EQ(parse_error("{\"images\": [{\"name\": \"tiny\", \"kernel\": \"/k\",\n"
                          "  \"access\": {\"users\": [\"alice\"]},\n"
                          "  \"access\": {}}]}"),
              "catalog /etc/slurm/vm-images.json: line 3: field 'access' appears twice in the "
              "same object");
}

TEST(Catalog, AllowsEqualKeysInDifferentObjects) {
    EXPECT_EQ(parse_error(R"({"images": [{"name": "a", "disk": "/d", "vcpus": {"max": 2}},
                                         {"name": "b", "disk": "/d", "vcpus": {"max": 2}}]})"),
              "");
}

TEST(Catalog, RejectsTopLevelThatIsNotAnObject) {
    EXPECT_EQ(parse_error("[]"),
              "catalog /etc/slurm/vm-images.json: expected a JSON object with an \"images\" list "
              "at the top, got []");
}

TEST(Catalog, RejectsMissingImagesList) {
    EXPECT_EQ(parse_error("{}"),
              "catalog /etc/slurm/vm-images.json: field 'images': is required (it may be an "
              "empty list)");
}

TEST(Catalog, RejectsUnknownTopLevelField) {
    EXPECT_EQ(parse_error(R"({"images": [], "imagez": []})"),
              "catalog /etc/slurm/vm-images.json: field 'imagez': unknown field; valid fields: "
              "images");
}

TEST(Catalog, RejectsUnknownImageFieldListingValidOnes) {
    EXPECT_EQ(parse_error(one_image(R"("kernal": "/x")")),
              prefix +
                  "field 'kernal': unknown field; valid fields: name, description, kernel, "
                  "initrd, cmdline, disk, disk_format, vcpus, memory_mib, ready_timeout, access, "
                  "network, firmware, share, warm_start");
}

TEST(Catalog, RejectsUnknownNestedFields) {
    EXPECT_EQ(parse_error(one_image(R"("vcpus": {"maximum": 4})")),
              prefix + "field 'vcpus.maximum': unknown field; valid fields: default, max");
    EXPECT_EQ(parse_error(one_image(R"("access": {"user": ["bob"]})")),
              prefix + "field 'access.user': unknown field; valid fields: users, groups, accounts");
}

TEST(Catalog, RejectsEntryWithoutName) {
    EXPECT_EQ(parse_error(R"({"images": [{"kernel": "/boot/vmlinux"}]})"),
              "catalog /etc/slurm/vm-images.json: entry 0: field 'name': is required");
}

TEST(Catalog, RejectsInvalidImageName) {
    EXPECT_EQ(parse_error(R"({"images": [{"name": "a/b", "kernel": "/boot/vmlinux"}]})"),
              "catalog /etc/slurm/vm-images.json: entry 0: field 'name': 'a/b' is invalid: "
              "contains '/'");
    EXPECT_EQ(
        parse_error(R"({"images": [{"name": 12}]})"),
        "catalog /etc/slurm/vm-images.json: entry 0: field 'name': expected a string, got 12");
}

TEST(Catalog, RejectsEntryThatIsNotAnObject) {
    EXPECT_EQ(parse_error(R"({"images": ["tiny"]})"),
              "catalog /etc/slurm/vm-images.json: entry 0: expected an object, got \"tiny\"");
}

TEST(Catalog, RejectsDuplicateImageNames) {
    EXPECT_EQ(parse_error(R"({"images": [{"name": "a", "disk": "/d"},
                                           {"name": "b", "disk": "/d"},
                                           {"name": "a", "disk": "/e"}]})"),
              "catalog /etc/slurm/vm-images.json: image 'a' (entry 2): field 'name': duplicate "
              "of entry 0");
}

TEST(Catalog, RequiresKernelOrDisk) {
    EXPECT_EQ(parse_error(R"({"images": [{"name": "tiny"}]})"),
              prefix +
                  "field 'kernel': an image needs 'kernel' (direct kernel boot) or 'disk' "
                  "(firmware boot) or both");
}

TEST(Catalog, RejectsInitrdWithoutKernel) {
    EXPECT_EQ(parse_error(R"({"images": [{"name": "tiny", "disk": "/d", "initrd": "/i"}]})"),
              prefix + "field 'initrd': is set but 'kernel' is not");
}

TEST(Catalog, RejectsRelativeOrDotDotPaths) {
    EXPECT_EQ(parse_error(R"({"images": [{"name": "tiny", "kernel": "boot/vmlinux"}]})"),
              prefix + "field 'kernel': path 'boot/vmlinux' is not absolute");
    EXPECT_EQ(parse_error(one_image(R"("disk": "/srv/../etc/shadow")")),
              prefix + "field 'disk': path '/srv/../etc/shadow' contains '..'");
}

TEST(Catalog, RejectsNewlineAndNulInStrings) {
    EXPECT_EQ(parse_error(one_image(R"("initrd": "/boot/initrd\n.img")")),
              prefix + "field 'initrd': contains a newline");
    EXPECT_EQ(parse_error(one_image(R"("cmdline": "console=ttyS0\u0000 init=/bin/sh")")),
              prefix + "field 'cmdline': contains a NUL byte");
}

TEST(Catalog, RejectsUnknownDiskFormat) {
    EXPECT_EQ(parse_error(one_image(R"("disk": "/d.vmdk", "disk_format": "vmdk")")),
              prefix + "field 'disk_format': expected \"qcow2\" or \"raw\", got \"vmdk\"");
}

TEST(Catalog, RejectsNonPositiveOrNonIntegerLimits) {
    EXPECT_EQ(parse_error(one_image(R"("memory_mib": {"default": "x"})")),
              prefix + "field 'memory_mib.default': expected a positive integer, got \"x\"");
    EXPECT_EQ(parse_error(one_image(R"("vcpus": {"max": 0})")),
              prefix + "field 'vcpus.max': expected a positive integer up to 4294967295, got 0");
    EXPECT_EQ(parse_error(one_image(R"("vcpus": {"default": 1.5})")),
              prefix + "field 'vcpus.default': expected a positive integer, got 1.5");
    EXPECT_EQ(parse_error(one_image(R"("vcpus": 4)")),
              prefix + "field 'vcpus': expected an object, got 4");
}

TEST(Catalog, RejectsDefaultAboveMax) {
    EXPECT_EQ(parse_error(one_image(R"("vcpus": {"default": 8, "max": 4})")),
              prefix + "field 'vcpus': default 8 is larger than max 4");
}

TEST(Catalog, ReadyTimeoutZeroMeansPluginDefault) {
    EXPECT_EQ(Catalog::parse(one_image(R"("ready_timeout": 0)"), "x").images()[0].ready_timeout,
              0u);
    EXPECT_EQ(
        parse_error(one_image(R"("ready_timeout": -5)")),
        prefix + "field 'ready_timeout': expected a non-negative integer up to 86400, got -5");
}

TEST(Catalog, RejectsBadAccessLists) {
    EXPECT_EQ(parse_error(one_image(R"("access": {"users": "alice"})")),
              prefix + "field 'access.users': expected a list of strings, got \"alice\"");
    EXPECT_EQ(parse_error(one_image(R"("access": {"groups": ["ok", ""]})")),
              prefix + "field 'access.groups[1]': is empty");
    EXPECT_EQ(parse_error(one_image(R"("access": {"accounts": ["a,b"]})")),
              prefix + "field 'access.accounts[0]': 'a,b' contains whitespace or a comma");
    EXPECT_EQ(parse_error(one_image(R"("access": {"users": [7]})")),
              prefix + "field 'access.users[0]': expected a string, got 7");
}

// --- access ----------------------------------------------------------------------------------

Catalog access_catalog() {
    return Catalog::parse(R"({"images": [
        {"name": "open", "disk": "/d"},
        {"name": "alice-only", "disk": "/d", "access": {"users": ["alice"]}},
        {"name": "vm-group", "disk": "/d", "access": {"groups": ["vmusers", "admins"]}},
        {"name": "physics", "disk": "/d", "access": {"accounts": ["physics"]}},
        {"name": "strict", "disk": "/d",
         "access": {"users": ["alice"], "groups": ["vmusers"], "accounts": ["physics"]}},
        {"name": "empty-lists", "disk": "/d", "access": {"users": [], "groups": []}}
    ]})",
                          "test");
}

TEST(Access, EmptyListsRestrictNothing) {
    const Catalog c = access_catalog();
    const UserIdentity bob{"bob", {"bob"}, "chem"};
    EXPECT_TRUE(may_use(*c.find("open"), bob));
    EXPECT_TRUE(may_use(*c.find("empty-lists"), bob));
}

TEST(Access, EveryRestrictedDimensionMustMatch) {
    const Catalog c = access_catalog();
    const Image &strict = *c.find("strict");
    EXPECT_TRUE(may_use(strict, {"alice", {"alice", "vmusers"}, "physics"}));
    EXPECT_FALSE(may_use(strict, {"alice", {"alice"}, "physics"}));
    EXPECT_FALSE(may_use(strict, {"alice", {"vmusers"}, "chem"}));
    EXPECT_FALSE(may_use(strict, {"bob", {"vmusers"}, "physics"}));
}

TEST(Access, AnyGroupMatches) {
    const Catalog c = access_catalog();
    EXPECT_TRUE(may_use(*c.find("vm-group"), {"bob", {"bob", "admins"}, ""}));
    EXPECT_FALSE(may_use(*c.find("vm-group"), {"bob", {"bob", "users"}, ""}));
}

TEST(Access, UnknownAccountPassesAccountDimension) {
    const Catalog c = access_catalog();
    EXPECT_TRUE(may_use(*c.find("physics"), {"bob", {}, ""}));
    EXPECT_FALSE(may_use(*c.find("physics"), {"bob", {}, "chem"}));
}

TEST(Access, ListsUsableImagesSorted) {
    const Catalog c = access_catalog();
    EXPECT_EQ(usable_images(c, {"bob", {"bob"}, "chem"}),
              (std::vector<std::string>{"empty-lists", "open"}));
    EXPECT_EQ(usable_images(c, {"alice", {"vmusers"}, "physics"}),
              (std::vector<std::string>{"alice-only", "empty-lists", "open", "physics", "strict",
                                        "vm-group"}));
}

TEST(Refusal, AllowedImageGivesNoRefusal) {
    EXPECT_EQ(image_refusal(access_catalog(), "open", {"bob", {}, "chem"}), "");
}

TEST(Refusal, NamesUnknownImageAndUsableOnes) {
    EXPECT_EQ(image_refusal(access_catalog(), "debian13", {"bob", {"bob"}, "chem"}),
              "image 'debian13' is not in the catalog; images you may use: empty-lists, open");
}

TEST(Refusal, NamesForbiddenImageAndWhoMayUseIt) {
    EXPECT_EQ(image_refusal(access_catalog(), "strict", {"bob", {"bob"}, "chem"}),
              "image 'strict' is not available to user 'bob' (allowed users: alice; groups: "
              "vmusers; accounts: physics); images you may use: empty-lists, open");
    EXPECT_EQ(image_refusal(access_catalog(), "vm-group", {"bob", {"bob"}, ""}),
              "image 'vm-group' is not available to user 'bob' (allowed groups: vmusers, admins); "
              "images you may use: empty-lists, open, physics");
}

TEST(RefusalAtStart, RefusesAnAccountThatChangedSinceSubmit) {
    EXPECT_EQ(image_refusal_at_start(access_catalog(), "physics", {"bob", {}, "physics"}, ""), "");
    EXPECT_EQ(image_refusal_at_start(access_catalog(), "physics", {"bob", {"bob"}, "chem"}, ""),
              "account 'chem': image 'physics' is not available to user 'bob' (allowed "
              "accounts: physics); images you may use: empty-lists, open");
}

TEST(RefusalAtStart, RefusesAnAccountRestrictedImageWhenTheAccountIsUnknown) {
    EXPECT_EQ(image_refusal_at_start(access_catalog(), "physics", {"bob", {}, ""},
                                     "cannot load job 7 from slurmctld: timed out"),
              "image 'physics' is for accounts physics only, and the job's account is not "
              "known (cannot load job 7 from slurmctld: timed out)");
    // Without an account rule, the account does not matter.
    EXPECT_EQ(image_refusal_at_start(access_catalog(), "open", {"bob", {}, ""}, "no answer"), "");
}

TEST(Refusal, SaysNoneWhenNothingIsUsable) {
    const Catalog c = Catalog::parse(
        R"({"images": [{"name": "a", "disk": "/d", "access": {"users": ["x"]}}]})", "test");
    EXPECT_EQ(image_refusal(c, "b", {"bob", {}, ""}),
              "image 'b' is not in the catalog; images you may use: none");
}

TEST(Refusal, RejectsMalformedNameBeforeLookingItUp) {
    EXPECT_EQ(image_refusal(access_catalog(), "a/b", {"bob", {}, ""}),
              "image name 'a/b' is invalid: contains '/'");
    EXPECT_EQ(image_refusal(access_catalog(), "x\ny", {"bob", {}, ""}),
              "image name 'x\\x0ay' is invalid: contains character '\\x0a'");
}

TEST(Identity, LooksUpRootByUid) {
    const UserIdentity root = identity_of_uid(0, "admin");
    EXPECT_EQ(root.user, "root");
    EXPECT_EQ(root.account, "admin");
    EXPECT_NE(std::find(root.groups.begin(), root.groups.end(), "root"), root.groups.end());
}

TEST(Identity, ReportsUnknownUid) {
    try {
        identity_of_uid(3999999, "");
        FAIL() << "no error";
    } catch (const Error &e) {
        EXPECT_STREQ(e.what(), "uid 3999999: no such user");
    }
}

TEST(Catalog, ReadsAnImagesNetworkAndRefusesAnUnknownOne) {
    const Catalog c = Catalog::parse(one_image(R"("network": "none")"), "catalog");
    EXPECT_EQ(c.images().front().network, "none");
    EXPECT_EQ(parse_error(one_image(R"("network": "bridge")")),
              prefix + "field 'network': expected \"user\" or \"none\", got \"bridge\"");
}

TEST(Catalog, ReadsAnImagesShareType) {
    EXPECT_EQ(Catalog::parse(one_image(R"("share": "virtiofs")"), "c").images().front().share,
              "virtiofs");
    EXPECT_EQ(Catalog::parse(one_image(""), "c").images().front().share, "");
    EXPECT_EQ(parse_error(one_image(R"("share": "nfs")")),
              prefix + "field 'share': expected \"9p\" or \"virtiofs\", got \"nfs\"");
}

TEST(Catalog, ReadsAFirmwareForDiskImagesOnly) {
    const std::string disk = R"({"images": [{"name": "tiny", "disk": "/img/d.qcow2", )";
    EXPECT_EQ(Catalog::parse(disk + R"("firmware": "uefi"}]})", "c").images().front().firmware,
              "uefi");
    EXPECT_EQ(Catalog::parse(disk + R"("description": ""}]})", "c").images().front().firmware,
              "bios");
    EXPECT_EQ(parse_error(disk + R"("firmware": "efi"}]})"),
              prefix + "field 'firmware': expected \"bios\" or \"uefi\", got \"efi\"");
    EXPECT_EQ(parse_error(one_image(R"("firmware": "uefi")")),
              prefix +
                  "field 'firmware': is for an image that boots its 'disk' by firmware, without "
                  "'kernel'");
}

}  // namespace
}  // namespace svm
