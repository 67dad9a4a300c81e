#include "catalog/image_features.h"

#include "util/error.h"

#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace svm {
namespace {

namespace fs = std::filesystem;

std::string add_error(const std::string &features, const std::string &image) {
    try {
        add_image_constraint(features, image);
    } catch (const Error &e) {
        return e.what();
    }
    return "";
}

std::string image_error(const std::string &features) {
    try {
        image_from_constraint(features);
    } catch (const Error &e) {
        return e.what();
    }
    return "";
}

// --- add_image_constraint ---

TEST(AddImageConstraint, EmptyConstraintBecomesTheImageFeature) {
    EXPECT_EQ(add_image_constraint("", "tiny"), "vm_tiny");
}

TEST(AddImageConstraint, AndsTheFeatureToASingleFeature) {
    EXPECT_EQ(add_image_constraint("gpu", "tiny"), "gpu&vm_tiny");
}

TEST(AddImageConstraint, AndsTheFeatureToAnAndList) {
    EXPECT_EQ(add_image_constraint("gpu&ib", "tiny"), "gpu&ib&vm_tiny");
    EXPECT_EQ(add_image_constraint("gpu,ib", "tiny"), "gpu,ib&vm_tiny");
}

TEST(AddImageConstraint, WrapsAnOrInParentheses) {
    EXPECT_EQ(add_image_constraint("a|b", "tiny"), "(a|b)&vm_tiny");
    EXPECT_EQ(add_image_constraint("a|b&c", "tiny"), "(a|b&c)&vm_tiny");
}

TEST(AddImageConstraint, AppendsAtTheTopLevelWhenParenthesesExist) {
    // Slurm 22.05 rejects nested parentheses; its left-to-right evaluation makes "X&vm_tiny"
    // require vm_tiny whatever X is.
    EXPECT_EQ(add_image_constraint("(a|b)&c", "tiny"), "(a|b)&c&vm_tiny");
    EXPECT_EQ(add_image_constraint("a|(b&c)", "tiny"), "a|(b&c)&vm_tiny");
}

TEST(AddImageConstraint, AppendsAfterABracketGroupWithoutParentheses) {
    // Parentheses around "[...]" would turn its XOR ("all nodes share one") into a plain OR.
    EXPECT_EQ(add_image_constraint("[rack1|rack2]", "tiny"), "[rack1|rack2]&vm_tiny");
    EXPECT_EQ(add_image_constraint("ib&[rack1|rack2]", "tiny"), "ib&[rack1|rack2]&vm_tiny");
}

TEST(AddImageConstraint, KeepsAConstraintThatAlreadyRequiresTheImage) {
    EXPECT_EQ(add_image_constraint("vm_tiny", "tiny"), "vm_tiny");
    EXPECT_EQ(add_image_constraint("gpu&vm_tiny", "tiny"), "gpu&vm_tiny");
    EXPECT_EQ(add_image_constraint("vm_tiny&gpu", "tiny"), "vm_tiny&gpu");
    EXPECT_EQ(add_image_constraint("(a|b)&vm_tiny", "tiny"), "(a|b)&vm_tiny");
    EXPECT_EQ(add_image_constraint("a|b&vm_tiny", "tiny"), "a|b&vm_tiny");
}

TEST(AddImageConstraint, IsIdempotent) {
    for (const std::string features : {"", "gpu", "a|b", "(a|b)&c", "[r1|r2]", "a,b"}) {
        const std::string once = add_image_constraint(features, "tiny");
        EXPECT_EQ(add_image_constraint(once, "tiny"), once) << features;
    }
}

TEST(AddImageConstraint, RejectsAnotherImagesFeature) {
    EXPECT_EQ(
        add_error("vm_x", "tiny"),
        "--constraint asks for image feature vm_x but --vm-image=tiny (one VM image per job)");
    EXPECT_EQ(
        add_error("gpu&(vm_x|b)", "tiny"),
        "--constraint asks for image feature vm_x but --vm-image=tiny (one VM image per job)");
}

TEST(AddImageConstraint, RejectsTheImageFeatureOutsideTheTopLevelAnd) {
    const std::string tail =
        " must be AND-ed at the top level, not OR-ed, counted, bracketed or in parentheses; "
        "--vm-image=tiny adds it by itself";
    EXPECT_EQ(add_error("vm_tiny|gpu", "tiny"),
              "--constraint 'vm_tiny|gpu': image feature vm_tiny" + tail);
    EXPECT_EQ(add_error("gpu|vm_tiny", "tiny"),
              "--constraint 'gpu|vm_tiny': image feature vm_tiny" + tail);
    EXPECT_EQ(add_error("(vm_tiny&a)", "tiny"),
              "--constraint '(vm_tiny&a)': image feature vm_tiny" + tail);
    EXPECT_EQ(add_error("[vm_tiny|a]", "tiny"),
              "--constraint '[vm_tiny|a]': image feature vm_tiny" + tail);
}

TEST(AddImageConstraint, RejectsNodeCounts) {
    EXPECT_EQ(add_error("[rack1*2&rack2*4]", "tiny"),
              "--constraint '[rack1*2&rack2*4]': node counts ('*') cannot be combined with "
              "--vm-image=tiny (Slurm would not hold the counted nodes to the image's feature)");
}

TEST(AddImageConstraint, NonImageFeaturesWithVmLikeNamesAreNotImages) {
    // "vm_" followed by something that is not an image name is an ordinary feature.
    EXPECT_EQ(add_image_constraint("vm_", "tiny"), "vm_&vm_tiny");
    EXPECT_EQ(add_image_constraint("vmx", "tiny"), "vmx&vm_tiny");
}

TEST(AddImageConstraint, RejectsAnInvalidImageName) {
    EXPECT_EQ(add_error("", "a/b"), "image name 'a/b' is invalid: contains '/'");
}

// --- image_from_constraint ---

TEST(ImageFromConstraint, NoConstraintOrNoImageFeatureIsNoImage) {
    EXPECT_EQ(image_from_constraint(""), std::nullopt);
    EXPECT_EQ(image_from_constraint("gpu&ib"), std::nullopt);
    EXPECT_EQ(image_from_constraint("a|b"), std::nullopt);
    EXPECT_EQ(image_from_constraint("[r1*2&r2*4]"), std::nullopt);
}

TEST(ImageFromConstraint, FindsTheOneTopLevelImageFeature) {
    EXPECT_EQ(image_from_constraint("vm_tiny"), "tiny");
    EXPECT_EQ(image_from_constraint("gpu&vm_tiny"), "tiny");
    EXPECT_EQ(image_from_constraint("vm_tiny,gpu"), "tiny");
    EXPECT_EQ(image_from_constraint("(a|b)&vm_debian-12.1"), "debian-12.1");
    EXPECT_EQ(image_from_constraint("vm_tiny&vm_tiny"), "tiny");
}

TEST(ImageFromConstraint, RejectsTwoImages) {
    EXPECT_EQ(image_error("vm_a&vm_b"),
              "--constraint 'vm_a&vm_b' asks for image features vm_a and vm_b: one VM image per "
              "job");
}

TEST(ImageFromConstraint, RejectsAnImageFeatureThatIsNotRequired) {
    EXPECT_EQ(image_error("vm_a|vm_b"),
              "--constraint 'vm_a|vm_b': image feature vm_a selects the job's VM image and must "
              "be AND-ed at the top level, not OR-ed, counted, bracketed or in parentheses (or "
              "use --vm-image=a)");
    EXPECT_NE(image_error("gpu|vm_a"), "");
    EXPECT_NE(image_error("vm_a*2"), "");
    EXPECT_NE(image_error("(vm_a&gpu)"), "");
    EXPECT_NE(image_error("[vm_a|gpu]"), "");
}

TEST(ImageFromConstraint, QuotesHostileTextPrintably) {
    EXPECT_EQ(image_error("vm_a|b\n"),
              "--constraint 'vm_a|b\\x0a': image feature vm_a selects the job's VM image and "
              "must be AND-ed at the top level, not OR-ed, counted, bracketed or in parentheses "
              "(or use --vm-image=a)");
}

// --- merge_node_features ---

TEST(MergeNodeFeatures, KeepsTheAdminsFeaturesAndReplacesImageFeatures) {
    EXPECT_EQ(merge_node_features("gpu,vm_old,ib", {"vm_tiny", "vm_big"}), "gpu,ib,vm_tiny,vm_big");
}

TEST(MergeNodeFeatures, NoImagesLeavesOnlyTheAdminsFeatures) {
    EXPECT_EQ(merge_node_features("gpu,vm_tiny", {}), "gpu");
    EXPECT_EQ(merge_node_features("vm_tiny", {}), "");
    EXPECT_EQ(merge_node_features("", {}), "");
}

TEST(MergeNodeFeatures, DropsDuplicatesAndEmptyItems) {
    // slurmctld hands the plugin "<configured>,<reported>", with the reported list repeated.
    EXPECT_EQ(merge_node_features("gpu,,vm_tiny,gpu,", {"vm_tiny", "vm_tiny"}), "gpu,vm_tiny");
}

// --- image_features_in, known image features across slurmctld restarts ---

TEST(ImageFeaturesIn, KeepsOnlyImageFeaturesOnce) {
    EXPECT_EQ(image_features_in("svmhost,vm_tiny,gpu,vm_deb,vm_tiny"),
              (std::vector<std::string>{"vm_tiny", "vm_deb"}));
    EXPECT_TRUE(image_features_in("svmhost,vm_,vm_a b").empty());
    EXPECT_TRUE(image_features_in("").empty());
}

TEST(KnownImageFeatures, RoundTripsEveryNodeIncludingOneWithoutImages) {
    const KnownImageFeatures known = {{"node1", {"vm_tiny", "vm_deb"}}, {"node2", {}}};
    const std::string text = render_known_image_features(known);
    EXPECT_EQ(text, "node1 vm_tiny,vm_deb\nnode2 -\n");
    EXPECT_EQ(parse_known_image_features(text), known);
}

TEST(KnownImageFeatures, SkipsDamagedLinesAndKeepsTheRest) {
    const KnownImageFeatures known = parse_known_image_features(
        "node1 vm_tiny\n"
        "node2 vm_tiny,svmhost\n"  // not only image features
        "node 3 vm_tiny\n"         // a space in the name
        "node4\n"                  // no list
        "../x vm_tiny\n"           // not a node name
        "node5 vm_a\x01\n"        // a control character
        "node6 vm_deb");           // no final newline
    EXPECT_EQ(known, (KnownImageFeatures{{"node1", {"vm_tiny"}}, {"node6", {"vm_deb"}}}));
}

TEST(KnownImageFeatures, RendersNoNodeNameThatWouldBreakTheFile) {
    EXPECT_EQ(render_known_image_features({{"bad name", {"vm_tiny"}}, {"n1", {"gpu", "vm_a"}}}),
              "n1 vm_a\n");
}

TEST(RestoreImageFeatures, GivesBackWhatTheNodeLastReportedUntilItRegisters) {
    // slurmctld's start: slurm.conf's features only.
    EXPECT_EQ(restore_image_features("svmhost", {"vm_tiny", "vm_deb"}), "svmhost,vm_tiny,vm_deb");
    EXPECT_EQ(restore_image_features("", {"vm_tiny"}), "vm_tiny");
    // The node has registered already: its own report wins.
    EXPECT_EQ(restore_image_features("svmhost,vm_new", {"vm_tiny"}), "svmhost,vm_new");
    // Nothing known.
    EXPECT_EQ(restore_image_features("svmhost", {}), "svmhost");
}

TEST(DropUnreportedImageFeatures, KeepsSlurmConfsFeaturesAndTheImagesStillReported) {
    // An image left the node while slurmctld held it active.
    EXPECT_EQ(drop_unreported_image_features("svmhost,vm_tiny,vm_gone", {"vm_tiny", "vm_new"}),
              "svmhost,vm_tiny");
    EXPECT_EQ(drop_unreported_image_features("vm_gone", {}), "");
    EXPECT_EQ(drop_unreported_image_features("svmhost,gpu", {"vm_tiny"}), "svmhost,gpu");
    EXPECT_EQ(drop_unreported_image_features("", {"vm_tiny"}), "");
}

// --- resolve_for_node, images_present_on_node ---

Image image_with(const std::string &name, const std::string &kernel, const std::string &initrd = "",
                 const std::string &disk = "") {
    Image image;
    image.name = name;
    image.kernel = kernel;
    image.initrd = initrd;
    image.disk = disk;
    return image;
}

TEST(ResolveForNode, ReplacesEveryNodePlaceholder) {
    const Image resolved = resolve_for_node(
        image_with("tiny", "/img/%n/tiny/vmlinux", "/img/%n/%n.img", "/shared/disk.qcow2"),
        "node2");
    EXPECT_EQ(resolved.kernel, "/img/node2/tiny/vmlinux");
    EXPECT_EQ(resolved.initrd, "/img/node2/node2.img");
    EXPECT_EQ(resolved.disk, "/shared/disk.qcow2");
    EXPECT_EQ(resolved.name, "tiny");
}

TEST(ResolveForNode, RejectsANodeNameThatIsNotAPathComponent) {
    try {
        resolve_for_node(image_with("tiny", "/img/%n/vmlinux"), "../etc");
        FAIL() << "no error";
    } catch (const Error &e) {
        EXPECT_STREQ(e.what(),
                     "image 'tiny': node name '../etc' cannot stand for %n in /img/%n/vmlinux: "
                     "it contains '/'");
    }
    EXPECT_THROW(resolve_for_node(image_with("tiny", "/img/%n/vmlinux"), ".."), Error);
    EXPECT_THROW(resolve_for_node(image_with("tiny", "/img/%n/vmlinux"), ""), Error);
}

TEST(ResolveForNode, PathsWithoutPlaceholderIgnoreTheNodeName) {
    EXPECT_EQ(resolve_for_node(image_with("tiny", "/img/vmlinux"), "").kernel, "/img/vmlinux");
}

class ImagesOnNode : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/svm-features-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        root_ = tmpl;
    }
    void TearDown() override { fs::remove_all(root_); }

    void make_file(const std::string &relative) {
        fs::create_directories(fs::path(root_ + "/" + relative).parent_path());
        std::ofstream(root_ + "/" + relative) << "x";
    }

    Catalog catalog() const {
        const std::string r = root_;
        return Catalog::parse(R"({"images": [
            {"name": "shared", "kernel": ")" +
                                  r + R"(/shared/vmlinux"},
            {"name": "only2", "kernel": ")" +
                                  r + R"(/%n/only2/vmlinux", "initrd": ")" + r +
                                  R"(/%n/only2/initrd.img"},
            {"name": "withdisk", "disk": ")" +
                                  r + R"(/%n/withdisk/base.qcow2"}
        ]})",
                              "test catalog");
    }

    std::string root_;
};

TEST_F(ImagesOnNode, CatalogAcceptsNodePlaceholderInPaths) {
    EXPECT_EQ(catalog().find("only2")->kernel, root_ + "/%n/only2/vmlinux");
}

TEST_F(ImagesOnNode, ListsImagesWhoseFilesAllExistForThatNode) {
    make_file("shared/vmlinux");
    make_file("node2/only2/vmlinux");
    make_file("node2/only2/initrd.img");
    make_file("node2/withdisk/base.qcow2");
    make_file("node1/only2/vmlinux");  // no initrd on node1: not usable there
    EXPECT_EQ(images_present_on_node(catalog(), "node1"), std::vector<std::string>{"shared"});
    EXPECT_EQ(images_present_on_node(catalog(), "node2"),
              (std::vector<std::string>{"shared", "only2", "withdisk"}));
    EXPECT_EQ(images_present_on_node(catalog(), "node3"), std::vector<std::string>{"shared"});
}

TEST_F(ImagesOnNode, ADirectoryIsNotAnImageFile) {
    fs::create_directories(root_ + "/shared/vmlinux");
    EXPECT_EQ(images_present_on_node(catalog(), "node1"), std::vector<std::string>{});
}

TEST_F(ImagesOnNode, RemovedFileRemovesTheImage) {
    make_file("node2/withdisk/base.qcow2");
    EXPECT_EQ(images_present_on_node(catalog(), "node2"), std::vector<std::string>{"withdisk"});
    fs::remove(root_ + "/node2/withdisk/base.qcow2");
    EXPECT_EQ(images_present_on_node(catalog(), "node2"), std::vector<std::string>{});
}

TEST(CatalogPath, DefaultsToEtcSlurmAndFollowsTheEnvironment) {
    unsetenv("SLURM_VM_CATALOG");
    EXPECT_EQ(catalog_path_from_environment(), "/etc/slurm/vm-images.json");
    setenv("SLURM_VM_CATALOG", "/srv/catalog.json", 1);
    EXPECT_EQ(catalog_path_from_environment(), "/srv/catalog.json");
    setenv("SLURM_VM_CATALOG", "", 1);
    EXPECT_EQ(catalog_path_from_environment(), "/etc/slurm/vm-images.json");
    unsetenv("SLURM_VM_CATALOG");
}

}  // namespace
}  // namespace svm
